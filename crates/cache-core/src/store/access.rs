//! The reads of one [`RedbCache`] not yet merged into the `access` table: for each key read,
//! when it was last read and how often. What LRU eviction and `get_metadata` need.
//!
//! Recording a read of a key already recorded costs two atomic additions: no lock, no
//! allocation. The records live in two fixed tables of [`SLOTS`] slots (open addressing over a
//! 64-bit hash of the key, with a per-instance random key, so nobody can aim keys at one slot),
//! of which readers use the active one. A key's first read claims a slot and appends the key
//! to its table's key buffer (under that table's lock, with no allocation of its own: a
//! profile of 100 000 distinct keys read once each had a boxed key per slot, and its free at
//! the drain, cost a tenth of every read). [`AccessLog::take`], called by the one who
//! holds the store's `write_lock` (a commit, or a spill), makes the other table active, waits
//! for the readers still inside the old one (they stay nanoseconds), and empties it: a
//! left-right scheme, so a reader never waits for a drain and a drain never loses a read.
//!
//! When the active table is full the reader tries to drain it into the bounded `spilled` map
//! itself (only if no commit holds `write_lock`: a read never waits for a commit); failing
//! that, the read goes to `spilled` directly, or, past [`SPILLED_MAX_KEYS`], is not recorded
//! (counted in [`AccessLog::untracked`]). `spilled` is keyed by the keyed 64-bit hash the
//! tables already computed, through a pass-through hasher, its keys again one after another in
//! one buffer: moving a drained record there hashes no key bytes again, compares none and
//! allocates nothing per key (a profile of 100 000 distinct keys read once each had a SipHash
//! map here cost a fifth of every read). A commit takes everything
//! (`take`); `store::reads_file` appends what a process that never writes is left with at
//! close.
//!
//! Precision: the last access time is the caller's clock in milliseconds, as the read saw it;
//! the count is exact. Two keys whose 64-bit hashes are equal would share a record in this
//! process until the next drain: the hash is keyed per instance, so that takes about 2^32
//! distinct keys between two drains.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::buffer::{AccessDelta, KeyMap, merge_access};
use super::lock;

/// Slots per table: 4096 slots of 48 bytes, 192 KiB, allocated at the first read.
pub(super) const SLOTS: usize = 4096;

/// A key looks at this many slots from its hash before it calls the table full.
const PROBES: usize = 16;

/// Records drained or overflowed out of the tables wait here for the next commit; past this
/// many keys, reads are not recorded until a commit or a spill empties it.
pub(super) const SPILLED_MAX_KEYS: usize = 100_000;

#[derive(Default)]
struct Slot {
    /// The key's hash with the low bit set; 0 while the slot is free.
    hash: AtomicU64,
    last_ms: AtomicU64,
    count: AtomicU64,
    /// Where the claiming reader put the key in its table's `keys`: offset in the high 32
    /// bits, length in the low 32. Set before that reader leaves the table; read by the drain.
    key_at: AtomicU64,
}

#[derive(Default)]
struct Table {
    /// Readers inside this table now.
    readers: AtomicUsize,
    slots: OnceLock<Box<[Slot]>>,
    /// The keys of the claimed slots, one after another: a key's first read appends to it
    /// under this lock (no allocation of its own); the drain empties it.
    keys: Mutex<Vec<u8>>,
}

impl Table {
    fn slots(&self) -> &[Slot] {
        self.slots
            .get_or_init(|| std::iter::repeat_with(Slot::default).take(SLOTS).collect())
    }

    /// Records a read of `key` (hash `hash`); `false` when no slot is left for it (or the key
    /// is too long for the table's offsets, which no valid key is).
    fn record(&self, hash: u64, key: &[u8], now_ms: u64) -> bool {
        let slots = self.slots();
        let start = (hash >> 1) as usize;
        for probe in 0..PROBES {
            let slot = &slots[(start + probe) % SLOTS];
            let mut current = slot.hash.load(Ordering::Acquire);
            if current == 0 {
                match slot
                    .hash
                    .compare_exchange(0, hash, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        let mut keys = lock(&self.keys);
                        let at = u32::try_from(keys.len()).ok();
                        let len = u32::try_from(key.len()).ok();
                        if let (Some(at), Some(len)) = (at, len) {
                            keys.extend_from_slice(key);
                            slot.key_at
                                .store(u64::from(at) << 32 | u64::from(len), Ordering::Relaxed);
                        } else {
                            // No room for its key: the slot stays claimed, keyless, and the
                            // drain drops it; the read goes to the caller's fallback.
                            slot.key_at.store(NO_KEY, Ordering::Relaxed);
                            return false;
                        }
                        current = hash;
                    }
                    Err(other) => current = other,
                }
            }
            if current == hash {
                slot.count.fetch_add(1, Ordering::Relaxed);
                // Reads within one millisecond leave the time as it is: no second atomic write.
                if slot.last_ms.load(Ordering::Relaxed) < now_ms {
                    slot.last_ms.fetch_max(now_ms, Ordering::Relaxed);
                }
                return true;
            }
        }
        false
    }

    /// The reads of `hash` recorded here.
    fn peek(&self, hash: u64) -> AccessDelta {
        let Some(slots) = self.slots.get() else {
            return AccessDelta::default();
        };
        let start = (hash >> 1) as usize;
        for probe in 0..PROBES {
            let slot = &slots[(start + probe) % SLOTS];
            match slot.hash.load(Ordering::Acquire) {
                0 => break,
                current if current == hash => {
                    return AccessDelta {
                        last_ms: slot.last_ms.load(Ordering::Relaxed),
                        count: slot.count.load(Ordering::Relaxed),
                    };
                }
                _ => {}
            }
        }
        AccessDelta::default()
    }

    /// Forgets the reads of `hash` (its value is being replaced).
    fn forget(&self, hash: u64) {
        let Some(slots) = self.slots.get() else {
            return;
        };
        let start = (hash >> 1) as usize;
        for probe in 0..PROBES {
            let slot = &slots[(start + probe) % SLOTS];
            match slot.hash.load(Ordering::Acquire) {
                0 => break,
                current if current == hash => {
                    slot.count.store(0, Ordering::Relaxed);
                    slot.last_ms.store(0, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }

    /// Empties the table, handing each record with its hash and key to `each`. The caller has
    /// made sure no reader is inside.
    fn drain(&self, mut each: impl FnMut(u64, &[u8], AccessDelta)) {
        let Some(slots) = self.slots.get() else {
            return;
        };
        let mut keys = lock(&self.keys);
        for slot in slots.iter() {
            let hash = slot.hash.load(Ordering::Acquire);
            if hash == 0 {
                continue;
            }
            // No reader is inside: plain loads and stores, no atomic read-modify-writes.
            let key_at = slot.key_at.load(Ordering::Relaxed);
            let delta = AccessDelta {
                last_ms: slot.last_ms.load(Ordering::Relaxed),
                count: slot.count.load(Ordering::Relaxed),
            };
            slot.key_at.store(NO_KEY, Ordering::Relaxed);
            slot.last_ms.store(0, Ordering::Relaxed);
            slot.count.store(0, Ordering::Relaxed);
            slot.hash.store(0, Ordering::Release);
            let (at, len) = ((key_at >> 32) as usize, (key_at & 0xffff_ffff) as usize);
            if key_at != NO_KEY
                && delta.count > 0
                && let Some(key) = keys.get(at..at + len)
            {
                each(hash, key, delta);
            }
        }
        keys.clear();
    }
}

/// A slot's `key_at` while it has no key.
const NO_KEY: u64 = u64::MAX;

/// The log's keyed 64-bit hash of a key: a folded multiply per 8 bytes, with two secret seeds
/// drawn per instance (the construction of `foldhash`, hashbrown's default). A profile of
/// 100 000 distinct keys read once each had SipHash cost more than the rest of recording. What
/// a collision costs is bounded: two keys share one record (their reads counted together) until
/// the next drain, and keys aimed at one place only make the table spill sooner; nobody can
/// aim without the seeds.
struct KeyHasher {
    seeds: [u64; 2],
}

impl Default for KeyHasher {
    fn default() -> Self {
        let random = RandomState::new();
        KeyHasher {
            seeds: [random.hash_one(1u64), random.hash_one(2u64)],
        }
    }
}

impl KeyHasher {
    fn hash(&self, key: &[u8]) -> u64 {
        const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;
        let fold = |a: u64, b: u64| {
            let full = u128::from(a) * u128::from(b);
            (full as u64) ^ ((full >> 64) as u64)
        };
        let mut hash = self.seeds[0] ^ key.len() as u64;
        for chunk in key.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            hash = fold(hash ^ u64::from_le_bytes(word), self.seeds[1] ^ SPREAD);
        }
        fold(hash, SPREAD)
    }
}

/// A [`Hasher`] for keys that are already keyed 64-bit hashes: it passes them through.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the map's keys are `u64`); fold anything else in anyway.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// Records out of the tables, by key hash, their keys one after another in `keys`. Two keys
/// with one hash share a record, as in the tables.
#[derive(Default)]
struct Spilled {
    /// Hash -> (offset, length) of the key in `keys`, and the reads.
    records: HashMap<u64, (usize, usize, AccessDelta), BuildHasherDefault<PassThrough>>,
    keys: Vec<u8>,
}

impl Spilled {
    /// Adds `delta` to the record of `hash`; `false` (nothing added) when that would pass
    /// [`SPILLED_MAX_KEYS`].
    fn add(&mut self, hash: u64, key: &[u8], delta: AccessDelta) -> bool {
        let room = self.records.len() < SPILLED_MAX_KEYS;
        match self.records.entry(hash) {
            Entry::Occupied(mut existing) => merge_access(&mut existing.get_mut().2, delta),
            Entry::Vacant(vacant) if room => {
                vacant.insert((self.keys.len(), key.len(), delta));
                self.keys.extend_from_slice(key);
            }
            Entry::Vacant(_) => return false,
        }
        true
    }

    fn into_key_map(self, into: &mut KeyMap<AccessDelta>) {
        into.reserve(self.records.len());
        for (_, (at, len, delta)) in self.records {
            if let Some(key) = self.keys.get(at..at + len) {
                merge_access(into.entry(key.to_vec()).or_default(), delta);
            }
        }
    }
}

/// This instance's reads not yet merged into the `access` table.
#[derive(Default)]
pub(super) struct AccessLog {
    hasher: KeyHasher,
    tables: [Table; 2],
    /// Which table readers record into.
    active: AtomicUsize,
    /// Records drained or overflowed out of the tables, for the next commit.
    spilled: Mutex<Spilled>,
    /// Reads not recorded because `spilled` was full.
    untracked: AtomicU64,
}

/// What recording a read came to.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Recorded {
    /// In a table, or in `spilled`.
    Yes,
    /// The table is full: the caller drains it ([`AccessLog::take_into_spilled`]) if it can
    /// take `write_lock` without waiting, then calls [`AccessLog::record_after_full`].
    TableFull,
}

impl AccessLog {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key) | 1
    }

    /// Records a read of `key` at `now_ms` in the active table.
    pub(super) fn record(&self, key: &[u8], now_ms: u64) -> Recorded {
        self.record_hashed(self.hash(key), key, now_ms)
    }

    fn record_hashed(&self, hash: u64, key: &[u8], now_ms: u64) -> Recorded {
        loop {
            let index = self.active.load(Ordering::SeqCst);
            let table = &self.tables[index];
            table.readers.fetch_add(1, Ordering::SeqCst);
            // A drain that switched tables in between waits for nobody here: go to the new one.
            if self.active.load(Ordering::SeqCst) != index {
                table.readers.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let recorded = table.record(hash, key, now_ms);
            table.readers.fetch_sub(1, Ordering::SeqCst);
            return if recorded {
                Recorded::Yes
            } else {
                Recorded::TableFull
            };
        }
    }

    /// Records a read the full table could not take: in the table again if a drain emptied it,
    /// else in `spilled`, else nowhere (counted).
    pub(super) fn record_after_full(&self, key: &[u8], now_ms: u64) {
        let hash = self.hash(key);
        if self.record_hashed(hash, key, now_ms) == Recorded::Yes {
            return;
        }
        let delta = AccessDelta {
            last_ms: now_ms,
            count: 1,
        };
        if !lock(&self.spilled).add(hash, key, delta) {
            self.untracked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Switches readers to the other table and empties the one they left into `spilled`
    /// (what does not fit is counted as untracked). Called by one thread at a time (the holder
    /// of the store's `write_lock`).
    fn drain_active(&self, spilled: &mut Spilled) {
        let old = self.active.load(Ordering::SeqCst);
        self.active.store(1 - old, Ordering::SeqCst);
        let table = &self.tables[old];
        // Readers that entered before the switch finish two atomic additions, then leave.
        while table.readers.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        spilled.records.reserve(SLOTS);
        table.drain(|hash, key, delta| {
            let count = delta.count;
            if !spilled.add(hash, key, delta) {
                self.untracked.fetch_add(count, Ordering::Relaxed);
            }
        });
    }

    /// Every read recorded so far, leaving the log empty. For the commit that merges them,
    /// under `write_lock`.
    pub(super) fn take(&self) -> KeyMap<AccessDelta> {
        let mut spilled = std::mem::take(&mut *lock(&self.spilled));
        self.drain_active(&mut spilled);
        let mut taken = KeyMap::default();
        spilled.into_key_map(&mut taken);
        taken
    }

    /// Empties the active table into `spilled`, so that reads go on in the other one. Under
    /// `write_lock`; how many keys `spilled` holds then.
    pub(super) fn take_into_spilled(&self) -> usize {
        let mut spilled = lock(&self.spilled);
        self.drain_active(&mut spilled);
        spilled.records.len()
    }

    /// Puts back records a failed commit had taken (past the bound too: they were counted).
    pub(super) fn restore(&self, records: KeyMap<AccessDelta>) {
        let mut guard = lock(&self.spilled);
        let spilled = &mut *guard;
        for (key, delta) in records {
            let hash = self.hash(&key);
            match spilled.records.entry(hash) {
                Entry::Occupied(mut existing) => merge_access(&mut existing.get_mut().2, delta),
                Entry::Vacant(vacant) => {
                    vacant.insert((spilled.keys.len(), key.len(), delta));
                    spilled.keys.extend_from_slice(&key);
                }
            }
        }
    }

    /// This process's unmerged reads of `key`.
    pub(super) fn peek(&self, key: &[u8]) -> AccessDelta {
        let hash = self.hash(key);
        let mut found = lock(&self.spilled)
            .records
            .get(&hash)
            .map(|(_, _, delta)| *delta)
            .unwrap_or_default();
        for table in &self.tables {
            table.readers.fetch_add(1, Ordering::SeqCst);
            merge_access(&mut found, table.peek(hash));
            table.readers.fetch_sub(1, Ordering::SeqCst);
        }
        found
    }

    /// Forgets the unmerged reads of `keys`: their values are being replaced or deleted.
    pub(super) fn forget<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut spilled = lock(&self.spilled);
        for key in keys {
            let hash = self.hash(key);
            spilled.records.remove(&hash);
            for table in &self.tables {
                table.readers.fetch_add(1, Ordering::SeqCst);
                table.forget(hash);
                table.readers.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Forgets every unmerged read (`clear`).
    pub(super) fn clear(&self) {
        drop(self.take());
    }

    /// Whether any read waits to be merged. Racy by nature: a read may land right after.
    pub(super) fn is_empty(&self) -> bool {
        if !lock(&self.spilled).records.is_empty() {
            return false;
        }
        self.tables.iter().all(|table| {
            table.slots.get().is_none_or(|slots| {
                slots
                    .iter()
                    .all(|slot| slot.count.load(Ordering::Relaxed) == 0)
            })
        })
    }

    /// Reads not recorded because the log was full, since the last call.
    pub(super) fn take_untracked(&self) -> u64 {
        self.untracked.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_reads_of_one_key_are_counted_exactly_with_the_latest_time() {
        let log = AccessLog::default();
        for now in [5, 9, 7] {
            assert_eq!(log.record(b"k", now), Recorded::Yes);
        }
        let seen = log.peek(b"k");
        assert_eq!((seen.last_ms, seen.count), (9, 3));
        let taken = log.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[b"k".as_slice()].count, 3);
        assert!(log.is_empty(), "taken");
        assert_eq!(log.peek(b"k").count, 0);
    }

    #[test]
    fn a_full_table_spills_and_nothing_is_lost_up_to_the_bound() {
        let log = AccessLog::default();
        let keys = 3 * SLOTS;
        for index in 0..keys {
            let key = index.to_be_bytes();
            if log.record(&key, 1) == Recorded::TableFull {
                if index % 2 == 0 {
                    log.take_into_spilled();
                }
                log.record_after_full(&key, 1);
            }
        }
        let taken = log.take();
        assert_eq!(taken.len(), keys);
        assert!(taken.values().all(|delta| delta.count == 1));
        assert_eq!(log.take_untracked(), 0);
    }

    #[test]
    fn keys_of_every_length_come_back_intact_from_the_tables_and_the_spill() {
        let log = AccessLog::default();
        let keys: Vec<Vec<u8>> = (1..=300usize)
            .map(|len| (0..len).map(|at| (at * 7 + len) as u8).collect())
            .chain([vec![0xA5; 4096]])
            .collect();
        for (index, key) in keys.iter().enumerate() {
            assert_eq!(log.record(key, index as u64), Recorded::Yes);
            if index % 100 == 99 {
                log.take_into_spilled();
            }
        }
        log.record(&keys[0], 1_000);
        let taken = log.take();
        assert_eq!(taken.len(), keys.len());
        for (index, key) in keys.iter().enumerate() {
            let delta = taken[key.as_slice()];
            let expected = if index == 0 {
                (1_000, 2)
            } else {
                (index as u64, 1)
            };
            assert_eq!(
                (delta.last_ms, delta.count),
                expected,
                "key of {} bytes",
                key.len()
            );
        }
    }

    #[test]
    fn reads_racing_with_drains_are_each_counted_once() {
        let log = std::sync::Arc::new(AccessLog::default());
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let log = std::sync::Arc::clone(&log);
                std::thread::spawn(move || {
                    for round in 0..10_000u64 {
                        let key = (round % 50).to_be_bytes();
                        if log.record(&key, round) == Recorded::TableFull {
                            log.record_after_full(&key, round);
                        }
                    }
                })
            })
            .collect();
        let mut total = 0;
        while readers.iter().any(|reader| !reader.is_finished()) {
            total += log.take().values().map(|delta| delta.count).sum::<u64>();
        }
        for reader in readers {
            reader.join().unwrap();
        }
        total += log.take().values().map(|delta| delta.count).sum::<u64>();
        assert_eq!(total, 40_000);
    }

    #[test]
    fn spilled_reads_are_seen_by_peek_dropped_by_forget_and_put_back_by_restore() {
        let log = AccessLog::default();
        log.record(b"a", 3);
        log.record(b"b", 4);
        assert_eq!(log.take_into_spilled(), 2, "both moved out of the table");
        log.record(b"a", 8);
        let seen = log.peek(b"a");
        assert_eq!(
            (seen.last_ms, seen.count),
            (8, 2),
            "spilled and table merged"
        );
        log.forget([b"b".as_slice()]);
        assert_eq!(log.peek(b"b").count, 0);
        let taken = log.take();
        assert_eq!(taken.len(), 1);
        log.restore(taken);
        let back = log.peek(b"a");
        assert_eq!(
            (back.last_ms, back.count),
            (8, 2),
            "a failed commit's records come back"
        );
        assert_eq!(log.take()[b"a".as_slice()].count, 2);
    }

    #[test]
    fn forgetting_a_key_drops_its_reads_only() {
        let log = AccessLog::default();
        log.record(b"a", 1);
        log.record(b"b", 2);
        log.forget([b"a".as_slice()]);
        assert_eq!(log.peek(b"a").count, 0);
        assert_eq!(log.peek(b"b").count, 1);
    }
}
