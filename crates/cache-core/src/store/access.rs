//! The reads of one [`RedbCache`] not yet merged into the `access` table: for each key read,
//! when it was last read and how often. What LRU eviction and `get_metadata` need.
//!
//! Recording a read of a key already recorded costs two atomic additions: no lock, no
//! allocation. The records live in a ring of [`RING`] tables of [`SLOTS`] slots of 16 bytes
//! each (open addressing over a 64-bit hash of the key, keyed per instance, so nobody can aim
//! keys at one slot); readers record into the active one. A key's first read claims a slot
//! (its hash's top 40 bits and a count of one, in one compare-and-swap) and appends the slot's
//! index and the key to its table's key buffer (under that table's lock, with no allocation of
//! its own: a profile of 100 000 distinct keys read once each had a boxed key per slot, and
//! its free at the drain, cost a tenth of every read). A slot counts up to [`SPILL_AT`] reads;
//! the read that gets it there moves them to the log's spill records (under a lock, once per
//! 8 388 608 reads of one key).
//!
//! **A full table is sealed, not emptied.** The reader that finds the active table full moves
//! readers on to the next table of the ring and records there: the sealed table keeps its
//! records, untouched, until a commit takes them. Nothing is moved on the read path (an earlier
//! design emptied a full table into an overflow hash map on the reader's thread; its random
//! inserts and fresh pages cost a read about 0.1x of raw redb's time, `docs/caching-system.md`).
//! The ring always keeps one table free; past that (about 108 000 distinct keys between two
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
//! after may lose its later millisecond to it); the count is exact. Two keys read in the same
//! table whose hashes agree in their top 40 bits and meet on one probe path ([`PROBES`]) share a
//! record (counted under the first one's key) until the next commit: the hash is keyed per
//! instance, and a table holds at most 2 048 keys (2.1 million pairs, each agreeing with a
//! chance of 2^-40), so that is fewer than 2 tables in a million.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::buffer::{AccessDelta, KeyMap, merge_access};
use super::lock;
use crate::codec::{push_varint, read_varint};

/// Slots per table: 2048 slots of 16 bytes, 32 KiB, allocated when the table is first used
/// and kept. Chosen by measurement: a first read claims a slot at random in the active table,
/// and a table this size stays in the CPU's cache while redb's pages stream past; 100 000
/// distinct keys read once each (the compare bench's `get_hit`, single pass), ours ÷ raw redb
/// over 21 interleaved runs, with 32-byte slots: 1.31x with 4096 slots, 1.29x with 2048 and
/// 1024, 1.30x with 512. Every commit moves readers on around the ring, so a process that
/// reads and commits for long enough has all of it allocated: 2 MiB per instance, and as much
/// again in key buffers (32 KiB reserved by each table's first key).
pub(super) const SLOTS: usize = 2048;

// A slot's index goes into its table's key buffer as a u16.
const _: () = assert!(SLOTS <= 1 << 16 && SLOTS.is_power_of_two());

/// A key looks at this many slots from its hash before it calls the table full, the `n`-th at
/// `n (n + 1) / 2` slots past the first (triangular probing: it reaches every slot of a table
/// whose size is a power of two). Measured, 200 000 distinct keys into a fresh log: tables are
/// sealed 86 % full, the first read untracked after 108 000 to 110 000 keys (six runs). The
/// earlier 16 probes in a line sealed tables at the first crowded neighbourhood, 57 % full, so
/// that 42 % of 100 000 distinct keys went untracked.
const PROBES: usize = 32;

/// The low bits of a slot's `tag` that count its reads; the high bits hold 40 bits of the
/// key's hash.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// A slot's count is moved out to the log's spill records when it reaches this, so that it
/// never carries into the hash bits: readers would have to add `COUNT_MASK - SPILL_AT` more
/// between one reader's increment and its subtraction.
const SPILL_AT: u64 = 1 << (COUNT_BITS - 1);

/// One key's reads in a table: 16 bytes (a profile of 100 000 distinct keys read once each
/// measured a 32-byte slot, with the key's place and a 64-bit hash in it, 3 % slower: the
/// tables are written all over while redb's pages stream through the same caches).
#[derive(Default)]
struct Slot {
    /// 40 bits of the key's hash ([`tag_of`]) over [`COUNT_BITS`] bits of reads; 0 while the
    /// slot is free. A claim sets both at once, so the claiming read is counted with it.
    tag: AtomicU64,
    last_ms: AtomicU64,
}

/// What recording a read in a table came to.
enum Recorded {
    Yes,
    /// No slot left in this table.
    Full,
    /// Recorded, and this many reads were taken out of the slot's count for the caller to
    /// keep elsewhere ([`SPILL_AT`]).
    Spilled(u64),
}

#[derive(Default)]
struct Table {
    /// Readers inside this table now.
    readers: AtomicUsize,
    slots: OnceLock<Box<[Slot]>>,
    /// The keys of the claimed slots, one after another, each as its slot's index (u16 LE),
    /// its length (LEB128, `codec::push_varint`) and its bytes: a key's first read appends to it under this lock,
    /// after its claim (no allocation of its own); the drain walks it and empties it.
    keys: Mutex<Vec<u8>>,
}

/// The tag bits a key's `hash` gives: its top 40 bits over a zero count, never all zero (a
/// slot whose tag is 0 is free, which a forgotten slot, its count 0, must not become).
fn tag_of(hash: u64) -> u64 {
    (hash >> COUNT_BITS << COUNT_BITS).max(1 << COUNT_BITS)
}

/// The slot a key's `hash` is first looked for at.
fn home_of(hash: u64) -> usize {
    hash as usize % SLOTS
}

impl Table {
    fn slots(&self) -> &[Slot] {
        self.slots
            .get_or_init(|| std::iter::repeat_with(Slot::default).take(SLOTS).collect())
    }

    /// Records a read of `key` (hash `hash`).
    fn record(&self, hash: u64, key: &[u8], now_ms: u64) -> Recorded {
        let slots = self.slots();
        let tag = tag_of(hash);
        let home = home_of(hash);
        for probe in 0..PROBES {
            let index = (home + probe * (probe + 1) / 2) % SLOTS;
            let slot = &slots[index];
            let mut current = slot.tag.load(Ordering::Acquire);
            if current == 0 {
                match slot
                    .tag
                    .compare_exchange(0, tag | 1, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        // A plain store of the time: a read of the same key racing in right
                        // after the claim may have stored a later millisecond, which this can
                        // only move back by the time between the two (the precision the
                        // module docs give).
                        slot.last_ms.store(now_ms, Ordering::Relaxed);
                        let mut keys = lock(&self.keys);
                        if keys.capacity() == 0 {
                            keys.reserve(SLOTS * 16);
                        }
                        keys.extend_from_slice(&(index as u16).to_le_bytes());
                        push_varint(&mut keys, key.len() as u64);
                        keys.extend_from_slice(key);
                        return Recorded::Yes;
                    }
                    Err(other) => current = other,
                }
            }
            if current & !COUNT_MASK == tag {
                let count = (slot.tag.fetch_add(1, Ordering::Relaxed) & COUNT_MASK) + 1;
                // Reads within one millisecond leave the time as it is: no second atomic write.
                if slot.last_ms.load(Ordering::Relaxed) < now_ms {
                    slot.last_ms.fetch_max(now_ms, Ordering::Relaxed);
                }
                // Only the read that brings the count to `SPILL_AT` moves it out (every value
                // up to it is some read's), unless a `forget` emptied the slot meanwhile.
                if count == SPILL_AT
                    && slot
                        .tag
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
                            (current & COUNT_MASK >= SPILL_AT).then(|| current - SPILL_AT)
                        })
                        .is_ok()
                {
                    return Recorded::Spilled(SPILL_AT);
                }
                return Recorded::Yes;
            }
        }
        Recorded::Full
    }

    /// The slot holding `hash`'s reads, if any.
    fn find(&self, hash: u64) -> Option<&Slot> {
        let slots = self.slots.get()?;
        let tag = tag_of(hash);
        let home = home_of(hash);
        for probe in 0..PROBES {
            let slot = &slots[(home + probe * (probe + 1) / 2) % SLOTS];
            match slot.tag.load(Ordering::Acquire) {
                0 => return None,
                current if current & !COUNT_MASK == tag => return Some(slot),
                _ => {}
            }
        }
        None
    }

    /// The reads of `hash` recorded here.
    fn peek(&self, hash: u64) -> AccessDelta {
        self.find(hash)
            .map(|slot| AccessDelta {
                last_ms: slot.last_ms.load(Ordering::Relaxed),
                count: slot.tag.load(Ordering::Relaxed) & COUNT_MASK,
            })
            .unwrap_or_default()
    }

    /// Forgets the reads of `hash` (its value is being replaced): its slot stays claimed with
    /// no reads, so the key's next read counts from one.
    fn forget(&self, hash: u64) {
        if let Some(slot) = self.find(hash) {
            slot.tag.fetch_and(!COUNT_MASK, Ordering::Relaxed);
            slot.last_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Empties the table, handing each key read here with its reads to `each`. The caller has
    /// made sure no reader is inside.
    fn drain(&self, mut each: impl FnMut(&[u8], AccessDelta)) {
        let Some(slots) = self.slots.get() else {
            return;
        };
        let mut keys = lock(&self.keys);
        let mut rest = keys.as_slice();
        while let Some((index, key, after)) = next_key(rest) {
            rest = after;
            let Some(slot) = slots.get(index) else {
                continue;
            };
            // No reader is inside: plain loads and stores, no atomic read-modify-writes.
            let delta = AccessDelta {
                last_ms: slot.last_ms.load(Ordering::Relaxed),
                count: slot.tag.load(Ordering::Relaxed) & COUNT_MASK,
            };
            slot.last_ms.store(0, Ordering::Relaxed);
            slot.tag.store(0, Ordering::Release);
            if delta.count > 0 {
                each(key, delta);
            }
        }
        keys.clear();
    }
}

/// The first key of a table's key buffer: its slot's index, its bytes, and the rest.
fn next_key(keys: &[u8]) -> Option<(usize, &[u8], &[u8])> {
    let (index, rest) = keys.split_first_chunk::<2>()?;
    let mut at = 0;
    let len = usize::try_from(read_varint(rest, &mut at, u64::MAX).ok()?).ok()?;
    let (key, rest) = rest.get(at..)?.split_at_checked(len)?;
    Some((usize::from(u16::from_le_bytes(*index)), key, rest))
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

/// Records a failed commit gave back, and reads moved out of a full slot ([`SPILL_AT`]), by
/// key hash, their keys one after another in `keys`. Two keys with one 64-bit hash share a
/// record.
#[derive(Default)]
struct Restored {
    /// Hash -> (offset, length) of the key in `keys`, and the reads.
    records: HashMap<u64, (usize, usize, AccessDelta), BuildHasherDefault<PassThrough>>,
    keys: Vec<u8>,
}

impl Restored {
    fn add(&mut self, hash: u64, key: &[u8], delta: AccessDelta) {
        match self.records.entry(hash) {
            Entry::Occupied(mut existing) => merge_access(&mut existing.get_mut().2, delta),
            Entry::Vacant(vacant) => {
                vacant.insert((self.keys.len(), key.len(), delta));
                self.keys.extend_from_slice(key);
            }
        }
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

/// Tables in the ring: with [`SLOTS`] each, filled to about 86 % ([`PROBES`]), room for about
/// 108 000 keys between two commits (the ring keeps one table free and seals the last).
pub(super) const RING: usize = 64;

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
        self.hasher.hash(key)
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
            match recorded {
                Recorded::Yes => return,
                Recorded::Spilled(count) => {
                    self.spill(
                        hash,
                        key,
                        AccessDelta {
                            last_ms: now_ms,
                            count,
                        },
                    );
                    return;
                }
                Recorded::Full => {}
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
            table.drain(|key, delta| {
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
        let mut restored = lock(&self.restored);
        for (key, delta) in records {
            restored.add(self.hash(&key), &key, delta);
        }
    }

    /// Keeps reads a table's slot could not count any higher ([`SPILL_AT`]) with the restored
    /// records, where `take` and `peek` find them.
    fn spill(&self, hash: u64, key: &[u8], delta: AccessDelta) {
        lock(&self.restored).add(hash, key, delta);
    }

    /// This process's unmerged reads of `key`.
    pub(super) fn peek(&self, key: &[u8]) -> AccessDelta {
        let hash = self.hash(key);
        let mut found = lock(&self.restored)
            .records
            .get(&hash)
            .map(|(_, _, delta)| *delta)
            .unwrap_or_default();
        self.visit_tables_in_use(|table| merge_access(&mut found, table.peek(hash)));
        found
    }

    /// Forgets the unmerged reads of `keys`: their values are being replaced or deleted.
    pub(super) fn forget<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut restored = lock(&self.restored);
        for key in keys {
            let hash = self.hash(key);
            restored.records.remove(&hash);
            self.visit_tables_in_use(|table| table.forget(hash));
        }
    }

    /// Calls `visit` with each table that may hold reads, from `oldest` to `active` in ring
    /// order, skipping those never used, as one of its readers (so no commit drains it
    /// meanwhile). Every write forgets its key's reads: visiting the whole ring, two atomic
    /// read-modify-writes for each of its tables on every set, cost writers about a fifth of
    /// their time (`compare`, ours ÷ raw redb, 12 and 8 alternating runs: `multi_4proc` 1.22x
    /// before, 1.00x after; `set_100b` 1.04x before, 0.85x after). A read that lands meanwhile
    /// in a table sealed after `active` was read is concurrent with the caller, and may or may
    /// not count.
    fn visit_tables_in_use(&self, mut visit: impl FnMut(&Table)) {
        // `oldest` first, as in `seal`: a commit moves `active` on before it moves `oldest`.
        let oldest = self.oldest.load(Ordering::SeqCst);
        let active = self.active.load(Ordering::SeqCst);
        let mut index = oldest;
        loop {
            let table = &self.tables[index];
            if table.slots.get().is_some() {
                table.readers.fetch_add(1, Ordering::SeqCst);
                visit(table);
                table.readers.fetch_sub(1, Ordering::SeqCst);
            }
            if index == active {
                break;
            }
            index = (index + 1) % RING;
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
                    .all(|slot| slot.tag.load(Ordering::Acquire) & COUNT_MASK == 0)
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
