//! The reads of one [`RedbCache`] not yet merged into the `access` table: for each key read,
//! when it was last read and how often. What LRU eviction and `get_metadata` need.
//!
//! Recording a read of a key already recorded costs two atomic additions: no lock, no
//! allocation. The records live in a ring of [`RING`] tables of [`SLOTS`] slots each (open
//! addressing over a 64-bit hash of the key, keyed per instance, so nobody can aim keys at one
//! slot); readers record into the active one. A key's first read claims a slot and appends the
//! key to its table's key buffer (under that table's lock, with no allocation of its own: a
//! profile of 100 000 distinct keys read once each had a boxed key per slot, and its free at
//! the drain, cost a tenth of every read).
//!
//! **A full table is sealed, not emptied.** The reader that finds the active table full moves
//! readers on to the next table of the ring and records there: the sealed table keeps its
//! records, untouched, until a commit takes them. Nothing is moved on the read path (an earlier
//! design emptied a full table into an overflow hash map on the reader's thread; its random
//! inserts and fresh pages cost a read about 0.1x of raw redb's time, `docs/caching-system.md`).
//! The ring always keeps one table free; past that (about 100 000 distinct keys between two
//! commits) reads are served but not recorded, and counted ([`AccessLog::take_untracked`]).
//!
//! [`AccessLog::take`], called by the holder of the store's `write_lock` (a commit), moves
//! readers on to the next table (free: the ring always keeps one), waits for the readers still
//! inside the others (they stay
//! nanoseconds), and empties them: a generalised left-right scheme, so a reader never waits
//! for a commit and a commit never loses a read. A key read in several tables (before and after
//! a seal) has a record in each; `take` and `peek` add them up. `store::reads_file` appends what
//! a process that never writes is left with at close.
//!
//! Precision: the last access time is the caller's clock in milliseconds, as the read saw it
//! (the read that claims a slot stores its time plainly: a read of the same key racing in right
//! after may lose its later millisecond to it); the count is exact. Two keys whose 64-bit
//! hashes are equal would share a record in this process until the next commit: the hash is keyed per instance, so that takes about 2^32
//! distinct keys between two commits.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::buffer::{AccessDelta, KeyMap, merge_access};
use super::lock;

/// Slots per table: 2048 slots of 32 bytes, 64 KiB, allocated when the table is first used
/// and kept. Chosen by measurement: a first read claims a slot at random in the active table,
/// and a table this size stays in the CPU's cache while redb's pages stream past; 100 000
/// distinct keys read once each (the compare bench's `get_hit`, single pass), ours ÷ raw redb
/// over 21 interleaved runs: 1.31x with 4096 slots, 1.29x with 2048 and 1024, 1.30x with 512.
/// Every commit moves readers on around the ring, so a process that reads and commits for long
/// enough has all of it allocated: 3.3 MiB per instance, and its key buffers.
pub(super) const SLOTS: usize = 2048;

/// A key looks at this many slots from its hash before it calls the table full.
const PROBES: usize = 16;

#[derive(Default)]
struct Slot {
    /// The key's hash with the low bit set; 0 while the slot is free.
    hash: AtomicU64,
    last_ms: AtomicU64,
    /// Reads after the one that claimed the slot (which counts without touching this: see
    /// [`Slot::reads`]); `u64::MAX` once forgotten, so that the next read makes it one.
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
                        let (Some(at), Some(len)) = (at, len) else {
                            // No room for its key: the slot stays claimed, keyless, holding no
                            // read (as if forgotten), and the drain drops it; the read goes to
                            // the caller's fallback.
                            slot.key_at.store(NO_KEY, Ordering::Relaxed);
                            slot.count.store(u64::MAX, Ordering::Relaxed);
                            return false;
                        };
                        keys.extend_from_slice(key);
                        drop(keys);
                        slot.key_at
                            .store(u64::from(at) << 32 | u64::from(len), Ordering::Relaxed);
                        // The claim is this read's count (`Slot::reads`), and its time a plain
                        // store: a read of the same key racing in right after the claim may
                        // have stored a later millisecond, which this can only move back by
                        // the time between the two (the precision the module docs give).
                        slot.last_ms.store(now_ms, Ordering::Relaxed);
                        return true;
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
                        count: slot.reads(),
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
                    slot.count.store(u64::MAX, Ordering::Relaxed);
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
                count: slot.reads(),
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

impl Slot {
    /// The reads recorded in this claimed slot: the claiming read, and those counted after it
    /// (`count` wraps from `u64::MAX` to 0 when the slot was forgotten and not read since).
    fn reads(&self) -> u64 {
        self.count.load(Ordering::Relaxed).wrapping_add(1)
    }
}

/// The log's keyed 64-bit hash of a key: a folded multiply per 8 bytes, with two secret seeds
/// drawn per instance (the construction of `foldhash`, hashbrown's default). A profile of
/// 100 000 distinct keys read once each had SipHash cost more than the rest of recording. What
/// a collision costs is bounded: two keys share one record (their reads counted together) until
/// the next commit, and keys aimed at one place only make a table fill sooner; nobody can
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

/// Records a failed commit gave back, by key hash, their keys one after another in `keys`. Two
/// keys with one hash share a record, as in the tables.
#[derive(Default)]
struct Restored {
    /// Hash -> (offset, length) of the key in `keys`, and the reads.
    records: HashMap<u64, (usize, usize, AccessDelta), BuildHasherDefault<PassThrough>>,
    keys: Vec<u8>,
}

impl Restored {
    fn into_key_map(self, into: &mut KeyMap<AccessDelta>) {
        into.reserve(self.records.len());
        for (_, (at, len, delta)) in self.records {
            if let Some(key) = self.keys.get(at..at + len) {
                merge_access(into.entry(key.to_vec()).or_default(), delta);
            }
        }
    }
}

/// Tables in the ring: with [`SLOTS`] each, room for about 100 000 keys between two commits.
pub(super) const RING: usize = 52;

/// This instance's reads not yet merged into the `access` table.
pub(super) struct AccessLog {
    hasher: KeyHasher,
    /// The ring of tables: those from `oldest` to `active` (in ring order) hold reads, the
    /// others are empty. Readers record into `active`; a full one is sealed by moving `active`
    /// on, as long as a table stays free for a commit to move readers into.
    tables: Box<[Table]>,
    active: AtomicUsize,
    oldest: AtomicUsize,
    /// Records a failed commit gave back, for the next one.
    restored: Mutex<Restored>,
    /// Reads not recorded because every table was full.
    untracked: AtomicU64,
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            hasher: KeyHasher::default(),
            tables: std::iter::repeat_with(Table::default).take(RING).collect(),
            active: AtomicUsize::new(0),
            oldest: AtomicUsize::new(0),
            restored: Mutex::default(),
            untracked: AtomicU64::new(0),
        }
    }
}

impl AccessLog {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key) | 1
    }

    /// Records a read of `key` at `now_ms` in the active table; when it is full, seals it and
    /// goes on in the next; when no table is left, counts the read as untracked.
    pub(super) fn record(&self, key: &[u8], now_ms: u64) {
        let hash = self.hash(key);
        loop {
            let index = self.active.load(Ordering::SeqCst);
            let table = &self.tables[index];
            table.readers.fetch_add(1, Ordering::SeqCst);
            // A commit that moved readers on in between waits for nobody here: go to the new
            // table.
            if self.active.load(Ordering::SeqCst) != index {
                table.readers.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let recorded = table.record(hash, key, now_ms);
            table.readers.fetch_sub(1, Ordering::SeqCst);
            if recorded {
                return;
            }
            if !self.seal(index) {
                self.untracked.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Moves readers from the full table `index` to the next one, if that leaves a table free;
    /// `false` when it would not. Another reader (or a commit) may have moved them already.
    fn seal(&self, index: usize) -> bool {
        // `oldest` first: a commit moves readers on before it moves `oldest`, so if `index` is
        // still active below, `oldest` was read before any commit that emptied `index`.
        let oldest = self.oldest.load(Ordering::SeqCst);
        if self.active.load(Ordering::SeqCst) != index {
            return true;
        }
        let in_use = (index + RING - oldest) % RING + 1;
        if in_use + 2 > RING {
            return false;
        }
        let _ = self.active.compare_exchange(
            index,
            (index + 1) % RING,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        true
    }

    /// Every read recorded so far, leaving the log empty. For the commit that merges them,
    /// under `write_lock` (so one at a time): moves readers to a free table, waits for those
    /// still inside the others (they stay nanoseconds), and empties them.
    pub(super) fn take(&self) -> KeyMap<AccessDelta> {
        let mut taken = KeyMap::default();
        std::mem::take(&mut *lock(&self.restored)).into_key_map(&mut taken);
        let oldest = self.oldest.load(Ordering::SeqCst);
        let last = loop {
            let active = self.active.load(Ordering::SeqCst);
            if self
                .active
                .compare_exchange(
                    active,
                    (active + 1) % RING,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                )
                .is_ok()
            {
                break active;
            }
        };
        let mut index = oldest;
        loop {
            let table = &self.tables[index];
            while table.readers.load(Ordering::SeqCst) != 0 {
                std::thread::yield_now();
            }
            table.drain(|_, key, delta| {
                merge_access(taken.entry(key.to_vec()).or_default(), delta);
            });
            if index == last {
                break;
            }
            index = (index + 1) % RING;
        }
        self.oldest.store((last + 1) % RING, Ordering::SeqCst);
        taken
    }

    /// Puts back records a failed commit had taken.
    pub(super) fn restore(&self, records: KeyMap<AccessDelta>) {
        let mut guard = lock(&self.restored);
        let restored = &mut *guard;
        for (key, delta) in records {
            let hash = self.hash(&key);
            match restored.records.entry(hash) {
                Entry::Occupied(mut existing) => merge_access(&mut existing.get_mut().2, delta),
                Entry::Vacant(vacant) => {
                    vacant.insert((restored.keys.len(), key.len(), delta));
                    restored.keys.extend_from_slice(&key);
                }
            }
        }
    }

    /// This process's unmerged reads of `key`.
    pub(super) fn peek(&self, key: &[u8]) -> AccessDelta {
        let hash = self.hash(key);
        let mut found = lock(&self.restored)
            .records
            .get(&hash)
            .map(|(_, _, delta)| *delta)
            .unwrap_or_default();
        for table in self.tables.iter() {
            table.readers.fetch_add(1, Ordering::SeqCst);
            merge_access(&mut found, table.peek(hash));
            table.readers.fetch_sub(1, Ordering::SeqCst);
        }
        found
    }

    /// Forgets the unmerged reads of `keys`: their values are being replaced or deleted.
    pub(super) fn forget<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut restored = lock(&self.restored);
        for key in keys {
            let hash = self.hash(key);
            restored.records.remove(&hash);
            for table in self.tables.iter() {
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
        if !lock(&self.restored).records.is_empty() {
            return false;
        }
        self.tables.iter().all(|table| {
            table.slots.get().is_none_or(|slots| {
                slots
                    .iter()
                    .all(|slot| slot.hash.load(Ordering::Acquire) == 0 || slot.reads() == 0)
            })
        })
    }

    /// Reads not recorded because the log was full, since the last call.
    pub(super) fn take_untracked(&self) -> u64 {
        self.untracked.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
