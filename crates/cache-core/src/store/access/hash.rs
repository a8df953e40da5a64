//! The access hash ([`AccessHasher`]): the keyed 64-bit hash of a key that access records are
//! kept by, in the access log's slots and in the `access_by_hash` table. Part of the file
//! format (`docs/design.md`, "The access hash").

use std::hash::{BuildHasher, RandomState};

use super::COUNT_BITS;

/// The keyed 64-bit hash the access records are kept by: a folded multiply per 8 bytes, with
/// two secret seeds (the construction of `foldhash`, hashbrown's default). A profile of 100 000
/// distinct keys read once each had SipHash cost more than the rest of recording. The seeds are
/// drawn once per file and stored in it (the `usage` table, `schema.rs`), so that every process
/// reading it agrees: **this function is part of the file format** and never changes. What a
/// collision costs is bounded: two keys share one record (their reads counted together), and
/// keys aimed at one place only make a table fill sooner; nobody can aim without the seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::store) struct AccessHasher {
    seeds: [u64; 2],
}

impl AccessHasher {
    pub(in crate::store) const fn new(seeds: [u64; 2]) -> Self {
        AccessHasher { seeds }
    }

    /// Fresh seeds from the process's random source (a new file's).
    pub(in crate::store) fn random_seeds() -> [u64; 2] {
        let random = RandomState::new();
        [random.hash_one(1u64), random.hash_one(2u64)]
    }

    pub(in crate::store) fn seeds(&self) -> [u64; 2] {
        self.seeds
    }

    /// The key's hash; its top 40 bits are never all zero (a slot's tag is its top 40 bits, and
    /// a tag of 0 marks a free slot).
    pub(in crate::store) fn hash(&self, key: &[u8]) -> u64 {
        const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;
        let fold = |a: u64, b: u64| {
            let full = u128::from(a) * u128::from(b);
            (full as u64) ^ ((full >> 64) as u64)
        };
        let mut hash = self.seeds[0] ^ key.len() as u64;
        let mut words = key.chunks_exact(8);
        for word in words.by_ref() {
            let word = u64::from_le_bytes([
                word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
            ]);
            hash = fold(hash ^ word, self.seeds[1] ^ SPREAD);
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            // The last 1 to 7 bytes, zero-padded (the length, folded in first, tells apart keys
            // that differ only by trailing zeros).
            let word = rest
                .iter()
                .rev()
                .fold(0u64, |word, &byte| word << 8 | u64::from(byte));
            hash = fold(hash ^ word, self.seeds[1] ^ SPREAD);
        }
        with_tag_bits(fold(hash, SPREAD))
    }
}

/// `hash`, with its top bit set if its top 40 bits are all zero (a chance of 2^-40).
pub(super) fn with_tag_bits(hash: u64) -> u64 {
    if hash >> COUNT_BITS == 0 {
        hash | 1 << 63
    } else {
        hash
    }
}
