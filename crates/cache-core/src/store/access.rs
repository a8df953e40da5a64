//! The reads of one [`RedbCache`] not yet merged into the `access` table: for each key read,
//! when it was last read and how often. What LRU eviction and `get_metadata` need.
//!
//! **Records are kept by the key's access hash, never by the key.** The `access` table is
//! keyed by a keyed 64-bit hash of the key ([`AccessHasher`], its two seeds stored in the file,
//! so that every process computes the same hash), so a read never copies its key: appending
//! each first-read key to a buffer for the commit measured 5 % of every get (100 000 distinct
//! keys read once each, `docs/caching-system.md`).
//!
//! Recording a read of a key already recorded costs two atomic additions: no lock, no
//! allocation. The records live in a ring of [`RING`] tables of [`SLOTS`] slots of 16 bytes
//! each (open addressing over the access hash, so nobody without the seeds can aim keys at one
//! slot); readers record into the active one. A key's first read claims a slot (its hash's top
//! 40 bits and a count of one, in one compare-and-swap) and stores the hash's low 24 bits
//! beside the time: the slot alone gives the whole hash back. A slot counts up to [`SPILL_AT`]
//! reads; the read that gets it there moves them to the log's spill records (under a lock,
//! once per 8 388 608 reads of one key).
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
//! after may lose its later millisecond to it), within about 17 years either side of the log's
//! creation (a slot keeps 40 bits of it; a time outside is clamped); the count is exact. Two
//! keys read in the same table whose hashes agree in their top 40 bits and meet on one probe
//! path ([`PROBES`]) share a record (under the first one's hash) until the next commit: a table
//! holds at most 2 048 keys (2.1 million pairs, each agreeing with a chance of 2^-40), so that
//! is fewer than 2 tables in a million. Two keys whose whole hashes agree share one record in
//! the `access` table for good: among a million keys, a chance of about 2^-25.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::buffer::{AccessDelta, merge_access};
use super::lock;

mod hash;
pub(super) use hash::AccessHasher;
#[cfg(test)]
use hash::with_tag_bits;

/// Slots per table: 2048 slots of 16 bytes, 32 KiB, allocated when the table is first used
/// and kept. Chosen by measurement: a first read claims a slot at random in the active table,
/// and a table this size stays in the CPU's cache while redb's pages stream past; 100 000
/// distinct keys read once each (the compare bench's `get_hit`, single pass), ours ÷ raw redb
/// over 21 interleaved runs, with 32-byte slots: 1.31x with 4096 slots, 1.29x with 2048 and
/// 1024, 1.30x with 512. Every commit moves readers on around the ring, so a process that
/// reads and commits for long enough has all of it allocated: 2 MiB per instance.
pub(super) const SLOTS: usize = 2048;

const _: () = assert!(SLOTS.is_power_of_two());

/// A key looks at this many slots from its hash before it calls the table full, the `n`-th at
/// `n (n + 1) / 2` slots past the first (triangular probing: it reaches every slot of a table
/// whose size is a power of two). Measured, 200 000 distinct keys into a fresh log: tables are
/// sealed 86 % full, the first read untracked after 108 000 to 110 000 keys (six runs). The
/// earlier 16 probes in a line sealed tables at the first crowded neighbourhood, 57 % full, so
/// that 42 % of 100 000 distinct keys went untracked.
const PROBES: usize = 32;

/// The low bits of a slot's `tag` that count its reads; the high bits hold the top 40 bits of
/// the key's hash. The same number of bits of a slot's `last` word hold the hash's low bits.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// The low bits of a slot's `last` word: the time of its last read ([`AccessLog::stamp`]).
const TIME_BITS: u32 = 64 - COUNT_BITS;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

/// A slot's count is moved out to the log's spill records when it reaches this, so that it
/// never carries into the hash bits: readers would have to add `COUNT_MASK - SPILL_AT` more
/// between one reader's increment and its subtraction.
const SPILL_AT: u64 = 1 << (COUNT_BITS - 1);

/// One key's reads in a table: 16 bytes (a profile of 100 000 distinct keys read once each
/// measured a 32-byte slot, with the key's place and a 64-bit hash in it, 3 % slower: the
/// tables are written all over while redb's pages stream through the same caches).
#[derive(Default)]
struct Slot {
    /// The top 40 bits of the key's hash ([`tag_of`]) over [`COUNT_BITS`] bits of reads; 0
    /// while the slot is free. A claim sets both at once, so the claiming read is counted with
    /// it.
    tag: AtomicU64,
    /// The low [`COUNT_BITS`] bits of the key's hash over [`TIME_BITS`] bits of the last read's
    /// stamp ([`AccessLog::stamp`]; 0: none). The hash bits never change while the slot is
    /// claimed, so `fetch_max` keeps the latest stamp.
    last: AtomicU64,
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
}

/// The tag bits a key's `hash` gives: its top 40 bits over a zero count, never all zero
/// ([`AccessHasher::hash`] never gives such a hash: a slot whose tag is 0 is free, which a
/// forgotten slot, its count 0, must not become).
fn tag_of(hash: u64) -> u64 {
    hash & !COUNT_MASK
}

/// A slot's `last` word for a read of `hash` stamped `stamp`.
fn last_of(hash: u64, stamp: u64) -> u64 {
    (hash & COUNT_MASK) << TIME_BITS | stamp
}

/// The whole hash a claimed slot's two words hold.
fn hash_of(tag: u64, last: u64) -> u64 {
    tag & !COUNT_MASK | last >> TIME_BITS
}

/// Reads as a table holds them: the last read's stamp, not yet a time.
#[derive(Clone, Copy, Default)]
struct Stamped {
    stamp: u64,
    count: u64,
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

    /// Records a read of the key whose hash is `hash`, stamped `stamp`.
    fn record(&self, hash: u64, stamp: u64) -> Recorded {
        let slots = self.slots();
        let tag = tag_of(hash);
        let last = last_of(hash, stamp);
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
                        slot.last.store(last, Ordering::Relaxed);
                        return Recorded::Yes;
                    }
                    Err(other) => current = other,
                }
            }
            if current & !COUNT_MASK == tag {
                let count = (slot.tag.fetch_add(1, Ordering::Relaxed) & COUNT_MASK) + 1;
                // Reads within one millisecond leave the time as it is: no second atomic write.
                if slot.last.load(Ordering::Relaxed) < last {
                    slot.last.fetch_max(last, Ordering::Relaxed);
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
    fn peek(&self, hash: u64) -> Stamped {
        self.find(hash)
            .map(|slot| Stamped {
                stamp: slot.last.load(Ordering::Relaxed) & TIME_MASK,
                count: slot.tag.load(Ordering::Relaxed) & COUNT_MASK,
            })
            .unwrap_or_default()
    }

    /// Forgets the reads of `hash` (its value is being replaced): its slot stays claimed with
    /// no reads, so the key's next read counts from one.
    fn forget(&self, hash: u64) {
        if let Some(slot) = self.find(hash) {
            slot.tag.fetch_and(!COUNT_MASK, Ordering::Relaxed);
            slot.last.store(last_of(hash, 0), Ordering::Relaxed);
        }
    }

    /// Empties the table, handing the hash of each key read here with its reads to `each`. The
    /// caller has made sure no reader is inside.
    fn drain(&self, mut each: impl FnMut(u64, Stamped)) {
        let Some(slots) = self.slots.get() else {
            return;
        };
        for slot in slots {
            // No reader is inside: plain loads and stores, no atomic read-modify-writes.
            let tag = slot.tag.load(Ordering::Acquire);
            if tag == 0 {
                continue;
            }
            let last = slot.last.load(Ordering::Relaxed);
            slot.last.store(0, Ordering::Relaxed);
            slot.tag.store(0, Ordering::Release);
            let reads = Stamped {
                stamp: last & TIME_MASK,
                count: tag & COUNT_MASK,
            };
            if reads.count > 0 {
                each(hash_of(tag, last), reads);
            }
        }
    }
}

/// Access records by the key's access hash ([`AccessHasher`]): what a commit merges into the
/// `access` table.
pub(super) type AccessRecords = HashMap<u64, AccessDelta>;

/// The records of `records` sorted by hash: the order a commit merges them in, so that B-tree
/// updates of neighbouring hashes find and rewrite each page once per run.
pub(super) fn in_hash_order(records: &AccessRecords) -> Vec<(u64, AccessDelta)> {
    let mut sorted: Vec<(u64, AccessDelta)> = records
        .iter()
        .map(|(&hash, &delta)| (hash, delta))
        .collect();
    sorted.sort_unstable_by_key(|&(hash, _)| hash);
    sorted
}

/// Tables in the ring: with [`SLOTS`] each, filled to about 86 % ([`PROBES`]), room for about
/// 108 000 keys between two commits (the ring keeps one table free and seals the last).
pub(super) const RING: usize = 64;

/// A slot's stamp is the time since this much before the log's creation, so that it covers
/// 2^39 ms (17 years) either way.
const STAMP_BACK_MS: u64 = 1 << (TIME_BITS - 1);

/// This instance's reads not yet merged into the `access` table.
pub(super) struct AccessLog {
    /// The seeds of the [`AccessHasher`] the reads are recorded by: the file's, set by
    /// [`AccessLog::use_seeds`] when the instance reads them; random until then.
    seeds: [AtomicU64; 2],
    /// The time stamps count from ([`AccessLog::stamp`]).
    epoch_ms: u64,
    /// The ring of tables: those from `oldest` to `active` (in ring order) hold reads, the
    /// others are empty. Readers record into `active`; a full one is sealed by moving `active`
    /// on, as long as a table stays free for a commit to move readers into.
    tables: Box<[Table]>,
    active: AtomicUsize,
    oldest: AtomicUsize,
    /// Records a failed commit gave back, and reads moved out of a full slot ([`SPILL_AT`]),
    /// for the next commit.
    restored: Mutex<AccessRecords>,
    /// Reads not recorded because every table was full.
    untracked: AtomicU64,
}

impl AccessLog {
    /// An empty log whose clock reads `now_ms` now.
    pub(super) fn new(now_ms: u64) -> Self {
        let [first, second] = AccessHasher::random_seeds();
        AccessLog {
            seeds: [AtomicU64::new(first), AtomicU64::new(second)],
            epoch_ms: now_ms.saturating_sub(STAMP_BACK_MS),
            tables: std::iter::repeat_with(Table::default).take(RING).collect(),
            active: AtomicUsize::new(0),
            oldest: AtomicUsize::new(0),
            restored: Mutex::default(),
            untracked: AtomicU64::new(0),
        }
    }

    /// The hasher reads are recorded by now.
    pub(super) fn hasher(&self) -> AccessHasher {
        AccessHasher::new([
            self.seeds[0].load(Ordering::Relaxed),
            self.seeds[1].load(Ordering::Relaxed),
        ])
    }

    /// Records reads by the hasher of `seeds` from now on: the file's (read at open, and again
    /// when a commit finds the file replaced by one with other seeds).
    pub(super) fn use_seeds(&self, seeds: [u64; 2]) {
        self.seeds[0].store(seeds[0], Ordering::Relaxed);
        self.seeds[1].store(seeds[1], Ordering::Relaxed);
    }

    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher().hash(key)
    }

    /// `now_ms` as a slot keeps it: milliseconds since `epoch_ms`, plus one (0 is "no read"),
    /// clamped to [`TIME_BITS`] bits.
    fn stamp(&self, now_ms: u64) -> u64 {
        now_ms
            .saturating_sub(self.epoch_ms)
            .saturating_add(1)
            .min(TIME_MASK)
    }

    /// The reads a table held, with their time again.
    fn unstamp(&self, reads: Stamped) -> AccessDelta {
        AccessDelta {
            last_ms: match reads.stamp {
                0 => 0,
                stamp => self.epoch_ms.saturating_add(stamp - 1),
            },
            count: reads.count,
        }
    }

    /// Records a read of `key` at `now_ms` in the active table; when it is full, seals it and
    /// goes on in the next; when no table is left, counts the read as untracked.
    pub(super) fn record(&self, key: &[u8], now_ms: u64) {
        let hash = self.hash(key);
        let stamp = self.stamp(now_ms);
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
            let recorded = table.record(hash, stamp);
            table.readers.fetch_sub(1, Ordering::SeqCst);
            match recorded {
                Recorded::Yes => return,
                Recorded::Spilled(count) => {
                    self.spill(
                        hash,
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

    /// Every read recorded so far, by access hash, leaving the log empty. For the commit that
    /// merges them, under `write_lock` (so one at a time): moves readers to a free table, waits
    /// for those still inside the others (they stay nanoseconds), and empties them.
    pub(super) fn take(&self) -> AccessRecords {
        let mut taken = std::mem::take(&mut *lock(&self.restored));
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
            table.drain(|hash, reads| {
                merge_access(taken.entry(hash).or_default(), self.unstamp(reads));
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
    pub(super) fn restore(&self, records: AccessRecords) {
        let mut restored = lock(&self.restored);
        for (hash, delta) in records {
            merge_access(restored.entry(hash).or_default(), delta);
        }
    }

    /// Keeps reads a table's slot could not count any higher ([`SPILL_AT`]) with the restored
    /// records, where `take` and `peek` find them.
    fn spill(&self, hash: u64, delta: AccessDelta) {
        merge_access(lock(&self.restored).entry(hash).or_default(), delta);
    }

    /// This process's unmerged reads of `key`.
    pub(super) fn peek(&self, key: &[u8]) -> AccessDelta {
        let hash = self.hash(key);
        let mut found = lock(&self.restored).get(&hash).copied().unwrap_or_default();
        self.visit_tables_in_use(|table| merge_access(&mut found, self.unstamp(table.peek(hash))));
        found
    }

    /// Forgets the unmerged reads of `keys`: their values are being replaced or deleted.
    pub(super) fn forget<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let hasher = self.hasher();
        let mut restored = lock(&self.restored);
        for key in keys {
            let hash = hasher.hash(key);
            restored.remove(&hash);
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
        if !lock(&self.restored).is_empty() {
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
