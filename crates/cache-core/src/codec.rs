//! The value codec (serde + bincode 2) behind one small interface, and the on-disk entry format
//! that records which codec and schema version wrote each value.
//!
//! bincode is unmaintained (RUSTSEC-2025-0141) and its 3.0.0 is a tombstone, so it is pinned to
//! 2.x and kept behind [`CodecId`]: a future codec (postcard is the planned one) gets a new id,
//! and entries written with the old one keep decoding or read as a miss, never as a wrong value.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Which codec wrote a stored value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecId {
    /// Bytes stored as given (the untyped `Cache::set`).
    Raw,
    /// serde through bincode 2, standard configuration (varint integers, little endian).
    Bincode2,
}

impl CodecId {
    /// The codec's byte in the entry header (`docs/design.md`); also what a remote tier stores.
    pub fn to_byte(self) -> u8 {
        match self {
            CodecId::Raw => 0,
            CodecId::Bincode2 => 1,
        }
    }

    /// The codec a header byte names; `None` for a byte no codec of this version has.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(CodecId::Raw),
            1 => Some(CodecId::Bincode2),
            _ => None,
        }
    }
}

/// How a value was encoded: codec and the key type's schema version. A typed read whose expected
/// format differs from the stored one treats the entry as a miss and removes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ValueFormat {
    /// The codec.
    pub codec: CodecId,
    /// The schema version of the value type (0 for raw bytes).
    pub schema_version: u32,
}

impl ValueFormat {
    /// Untyped bytes.
    pub const RAW: ValueFormat = ValueFormat {
        codec: CodecId::Raw,
        schema_version: 0,
    };

    /// Values of a typed key at `schema_version`, in the current codec.
    pub fn typed(schema_version: u32) -> Self {
        ValueFormat {
            codec: CodecId::Bincode2,
            schema_version,
        }
    }
}

/// Upper bound on what bincode may allocate while decoding one value, so that garbage claiming a
/// huge length is refused instead of exhausting memory.
const DECODE_LIMIT_BYTES: usize = 1 << 30;

/// Encodes `value` with the current codec.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|err| err.to_string())
}

/// Decodes a whole value; trailing bytes are an error (they mean the type does not match).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT_BYTES>();
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config).map_err(|err| err.to_string())?;
    if read != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the value",
            bytes.len() - read
        ));
    }
    Ok(value)
}

/// How an entry holds its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// The value follows the header.
    Inline,
    /// The value is a blob file under `blobs/`; a [`BlobRef`] follows the header.
    Blob,
    /// The entry owns a directory under `dirs/`; a [`DirRef`] and then the value follow the
    /// header.
    Directory,
}

impl EntryKind {
    /// The kind byte this version writes: the kind, checksummed with XXH3.
    fn to_byte(self) -> u8 {
        match self {
            EntryKind::Inline => 7,
            EntryKind::Blob => 8,
            EntryKind::Directory => 9,
        }
    }
}

/// How an entry's checksum was computed, which its kind byte tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Checksum {
    /// Kind bytes 4 to 6: CRC-32 (IEEE), written before XXH3 and still read.
    Crc32,
    /// Kind bytes 7 to 9: the low 32 bits of XXH3-64, what this version writes.
    Xxh3,
}

/// The highest entry format byte this version reads; a higher one was written by a newer
/// version of this library. Bytes 1 to 3 were the same kinds without a checksum, written before
/// the first release; they read as damaged.
const NEWEST_ENTRY_FORMAT: u8 = 9;

/// The entry header stored in front of every value.
///
/// Format (little endian):
/// `kind:u8 | codec:u8 | schema:u32 | created_ms:u64 | expires_ms:u64 (0 = never; an expiry at
/// the epoch is stored as 1) | checksum:u32 | payload`,
/// where `kind` is 7 (inline: the payload is the value), 8 (blob: the payload is a [`BlobRef`])
/// or 9 (directory: the payload is a [`DirRef`] followed by the value), and `checksum` covers
/// the key, the 22 bytes before it and the payload ([`entry_checksum`]): a byte changed on
/// disk, or an entry found under another key, fails [`EntryHeader::decode`]. Kinds 4 to 6 are
/// the same entries with a CRC-32 for checksum, written by earlier versions and still read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryHeader {
    pub(crate) kind: EntryKind,
    pub(crate) format: ValueFormat,
    pub(crate) created_ms: u64,
    pub(crate) expires_ms: Option<u64>,
}

pub(crate) const ENTRY_HEADER_LEN: usize = CHECKSUM_AT + 4;

/// Where the checksum starts: after kind, codec, schema, created and expires.
const CHECKSUM_AT: usize = 1 + 1 + 4 + 8 + 8;

/// Why stored entry bytes could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum EntryDecodeError {
    /// Written by a newer version of this library: a miss, but left in place for it.
    NewerFormat(u8),
    /// Damaged or not an entry at all: a miss, and removed.
    Corrupt(&'static str),
}

/// A blob's identity: the blake3 hash of its content, and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BlobRef {
    pub(crate) hash: [u8; 32],
    pub(crate) len: u64,
}

impl BlobRef {
    pub(crate) const ENCODED_LEN: usize = 32 + 8;

    pub(crate) fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut bytes = [0u8; Self::ENCODED_LEN];
        bytes[..32].copy_from_slice(&self.hash);
        bytes[32..].copy_from_slice(&self.len.to_le_bytes());
        bytes
    }

    pub(crate) fn decode(payload: &[u8]) -> Result<BlobRef, EntryDecodeError> {
        if payload.len() != Self::ENCODED_LEN {
            return Err(EntryDecodeError::Corrupt(
                "blob reference of the wrong length",
            ));
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&payload[..32]);
        Ok(BlobRef {
            hash,
            len: u64_at(payload, 32),
        })
    }

    /// The blob's file name: the hash in hex.
    pub(crate) fn file_name(&self) -> String {
        hex(&self.hash)
    }
}

/// The directory an entry owns (its name under `dirs/`) and the bytes it held when stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DirRef<'a> {
    pub(crate) name: &'a str,
    pub(crate) size: u64,
}

impl DirRef<'_> {
    /// Encodes the reference followed by `value`: `size:u64 | name_len:u8 | name | value`.
    pub(crate) fn encode_with(&self, value: &[u8]) -> Vec<u8> {
        debug_assert!(
            self.name.len() <= usize::from(u8::MAX),
            "directory names are short"
        );
        let mut bytes = Vec::with_capacity(9 + self.name.len() + value.len());
        bytes.extend_from_slice(&self.size.to_le_bytes());
        bytes.push(self.name.len() as u8);
        bytes.extend_from_slice(self.name.as_bytes());
        bytes.extend_from_slice(value);
        bytes
    }

    /// Splits a directory entry's payload into the reference and the value.
    pub(crate) fn decode(payload: &[u8]) -> Result<(DirRef<'_>, &[u8]), EntryDecodeError> {
        if payload.len() < 9 {
            return Err(EntryDecodeError::Corrupt("directory reference too short"));
        }
        let size = u64_at(payload, 0);
        let name_len = usize::from(payload[8]);
        let rest = &payload[9..];
        if rest.len() < name_len {
            return Err(EntryDecodeError::Corrupt("directory name cut short"));
        }
        let (name, value) = rest.split_at(name_len);
        let name = std::str::from_utf8(name)
            .ok()
            .filter(|name| is_safe_dir_name(name))
            .ok_or(EntryDecodeError::Corrupt(
                "directory name is not a plain name",
            ))?;
        Ok((DirRef { name, size }, value))
    }
}

/// Whether `name` is one of our directory names: lower-case hex only, so that a damaged entry
/// can never name a path outside `dirs/`.
pub(crate) fn is_safe_dir_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Lower-case hex of `bytes` (also `cache_core::keys::hex`).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Decodes [`hex`]'s output (either case); `None` for an odd length or a non-hex digit.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

impl EntryHeader {
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|expires| expires <= now_ms)
    }

    /// The stored bytes of an entry under `key`: header, checksum, `payload`.
    pub(crate) fn encode_with(&self, key: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(ENTRY_HEADER_LEN + payload.len());
        self.encode_into(key, payload, &mut bytes);
        bytes
    }

    /// [`EntryHeader::encode_with`], appended to `out` (the write buffer's bytes) rather than
    /// returned in a vector of its own.
    pub(crate) fn encode_into(&self, key: &[u8], payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(ENTRY_HEADER_LEN + payload.len());
        out.push(self.kind.to_byte());
        out.push(self.format.codec.to_byte());
        out.extend_from_slice(&self.format.schema_version.to_le_bytes());
        out.extend_from_slice(&self.created_ms.to_le_bytes());
        // 0 means "never", so an expiry at the epoch itself is stored as 1 ms: already past for
        // any clock that reads it later, and never mistaken for "never".
        let expires = self.expires_ms.map_or(0, |ms| ms.max(1));
        out.extend_from_slice(&expires.to_le_bytes());
        let checksum = entry_checksum(Checksum::Xxh3, key, &out[start..], payload);
        out.extend_from_slice(&checksum.to_le_bytes());
        out.extend_from_slice(payload);
        debug_assert_eq!(out.len() - start, ENTRY_HEADER_LEN + payload.len());
    }

    /// Splits the stored bytes of the entry under `key` into header and payload, verifying the
    /// checksum: what this returns is what was stored under `key`.
    pub(crate) fn decode<'a>(
        key: &[u8],
        bytes: &'a [u8],
    ) -> Result<(EntryHeader, &'a [u8]), EntryDecodeError> {
        let (header, checksum, payload) = EntryHeader::parse_with_checksum(bytes)?;
        let stored = u32::from_le_bytes([
            bytes[CHECKSUM_AT],
            bytes[CHECKSUM_AT + 1],
            bytes[CHECKSUM_AT + 2],
            bytes[CHECKSUM_AT + 3],
        ]);
        if stored != entry_checksum(checksum, key, &bytes[..CHECKSUM_AT], payload) {
            return Err(EntryDecodeError::Corrupt("checksum mismatch"));
        }
        Ok((header, payload))
    }

    /// Splits stored bytes into header and payload without verifying the checksum: for
    /// bookkeeping that must see every entry whatever its state (what it owns, whether it has
    /// expired). Never for what a caller is given.
    pub(crate) fn parse(bytes: &[u8]) -> Result<(EntryHeader, &[u8]), EntryDecodeError> {
        EntryHeader::parse_with_checksum(bytes).map(|(header, _, payload)| (header, payload))
    }

    /// [`EntryHeader::parse`], with the checksum the kind byte names.
    fn parse_with_checksum(
        bytes: &[u8],
    ) -> Result<(EntryHeader, Checksum, &[u8]), EntryDecodeError> {
        let Some((&kind, rest)) = bytes.split_first() else {
            return Err(EntryDecodeError::Corrupt("empty entry"));
        };
        let (kind, checksum) = match kind {
            7 => (EntryKind::Inline, Checksum::Xxh3),
            8 => (EntryKind::Blob, Checksum::Xxh3),
            9 => (EntryKind::Directory, Checksum::Xxh3),
            4 => (EntryKind::Inline, Checksum::Crc32),
            5 => (EntryKind::Blob, Checksum::Crc32),
            6 => (EntryKind::Directory, Checksum::Crc32),
            1..=3 => return Err(EntryDecodeError::Corrupt("entry without a checksum")),
            newer if newer > NEWEST_ENTRY_FORMAT => {
                return Err(EntryDecodeError::NewerFormat(newer));
            }
            _ => return Err(EntryDecodeError::Corrupt("unknown entry format")),
        };
        if bytes.len() < ENTRY_HEADER_LEN {
            return Err(EntryDecodeError::Corrupt("entry shorter than its header"));
        }
        let codec =
            CodecId::from_byte(rest[0]).ok_or(EntryDecodeError::Corrupt("unknown codec"))?;
        let schema_version = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let header = EntryHeader {
            kind,
            format: ValueFormat {
                codec,
                schema_version,
            },
            created_ms: u64_at(bytes, 6),
            expires_ms: Some(u64_at(bytes, 14)).filter(|&ms| ms != 0),
        };
        Ok((header, checksum, &bytes[ENTRY_HEADER_LEN..]))
    }
}

/// The checksum of an entry under `key` with the 22 header bytes before the checksum `header`
/// and `payload`.
///
/// XXH3 (what this version writes): three chained one-shot XXH3-64 calls, each seeded with the
/// one before (the first with the key's length): of the key, the header, the payload; the low
/// 32 bits. Chosen over CRC-32 by measurement: 11 ns against 29 ns for a 10-byte key and a
/// 100-byte value, checked on every read (`docs/caching-system.md`); RocksDB made XXH3 its
/// default block checksum for the same reason. CRC-32 (entries written before): of the key's
/// length (u64 LE), the key, the header and the payload.
fn entry_checksum(checksum: Checksum, key: &[u8], header: &[u8], payload: &[u8]) -> u32 {
    match checksum {
        Checksum::Xxh3 => {
            use xxhash_rust::xxh3::xxh3_64_with_seed;
            let seed = xxh3_64_with_seed(key, key.len() as u64);
            let seed = xxh3_64_with_seed(header, seed);
            let [low @ .., _, _, _, _] = xxh3_64_with_seed(payload, seed).to_le_bytes();
            u32::from_le_bytes(low)
        }
        Checksum::Crc32 => {
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&(key.len() as u64).to_le_bytes());
            hasher.update(key);
            hasher.update(header);
            hasher.update(payload);
            hasher.finalize()
        }
    }
}

#[cfg(test)]
mod tests;
