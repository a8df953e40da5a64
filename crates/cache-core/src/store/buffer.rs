//! The write buffer of one [`RedbCache`]: writes not yet committed (`pending`), the writes of
//! the commit in progress (`in_flight`), the read snapshot, the suspects reads found damaged,
//! and the access records and counters waiting for the next commit.
//!
//! Invariant (with `commit.rs`): **a process sees its own writes.** `WriteBuffer`'s fields are
//! private to this module. A write is in `pending` from the moment `set`/`delete` returns; a
//! commit takes it with `take_for_commit`, which moves it to `in_flight`, where reads still find
//! it; `landed` drops `in_flight` (and the snapshot) only once the commit has landed, and
//! `restore_failed` puts it back in `pending` if the commit failed, without overwriting newer
//! writes. Reads look here before the snapshot. Nothing outside this module can empty
//! `pending` or `in_flight` any other way.
//!
//! Entries for blobs are built here too: the blob is staged (`blobs.rs`) before its entry is
//! buffered, so a buffered entry never refers to a blob that is not in place.

use super::*;

/// Back-pressure on the number of buffered writes (bytes are bounded by `max_pending_bytes`).
pub(super) const MAX_PENDING_WRITES: usize = 100_000;

/// Damaged entries remembered for the next commit to judge; more wait for a later read or for
/// `cleanup()`.
pub(super) const MAX_SUSPECTS: usize = 1024;

/// An entry a read found unusable: its key, the exact stored bytes the read saw, and why.
#[derive(Clone)]
pub(super) struct Suspect {
    pub(super) key: Vec<u8>,
    pub(super) stored: Vec<u8>,
    pub(super) reason: String,
}

/// Where a write comes from: this process's caller, or a backfill from the remote tier, which
/// the commit that lands it does not publish back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    Local,
    Remote,
}

/// A write to buffer: an inline value to encode under its header, or `None` to delete.
pub(super) type NewWrite<'a> = Option<(&'a EntryHeader, &'a [u8])>;

/// This process's writes that are not yet committed, and the read snapshot.
#[derive(Default)]
pub(super) struct WriteBuffer {
    /// Writes no commit has taken yet.
    pending: Writes,
    /// Writes taken by the commit in progress; served to readers until that commit lands.
    /// Invariant: empty whenever no commit is in progress.
    in_flight: Arc<Writes>,
    /// A recent read snapshot; dropped by each of our commits so the next read sees it.
    snapshot: Option<Arc<Snapshot>>,
    /// Set by `close` before its final commit: later writes are refused, so none can slip in
    /// after that commit and be lost.
    closed: bool,
    /// Entry versions reads found damaged: hidden from this process's reads, and judged (and
    /// removed if still damaged) by the next commit, which drops them from here once it lands.
    suspects: Vec<Suspect>,
    /// Keys whose write in `pending` is a backfill from the remote tier, which the commit that
    /// lands it does not publish back. A later local write of the key drops it from here.
    pending_from_remote: HashSet<Vec<u8>>,
    /// The same for `in_flight`. Invariant: empty whenever no commit is in progress.
    in_flight_from_remote: HashSet<Vec<u8>>,
}

impl WriteBuffer {
    /// Takes the pending writes for a commit: they move to `in_flight`, where reads still find
    /// them until the commit has landed ([`WriteBuffer::landed`]) or failed
    /// ([`WriteBuffer::restore_failed`]). Called under `write_lock` only.
    /// Also returns which of them are backfills from the remote tier (not to publish).
    /// The next batch starts with room for one the size of this one.
    pub(super) fn take_for_commit(&mut self) -> (Arc<Writes>, HashSet<Vec<u8>>) {
        debug_assert!(
            self.in_flight.is_empty(),
            "commits are serialised by write_lock"
        );
        let room = Writes::with_capacity(self.pending.len(), self.pending.stored_len());
        let taken = Arc::new(std::mem::replace(&mut self.pending, room));
        self.in_flight = Arc::clone(&taken);
        self.in_flight_from_remote = std::mem::take(&mut self.pending_from_remote);
        (taken, self.in_flight_from_remote.clone())
    }

    /// The commit that took `in_flight` has landed: its writes are in the file. Drops them and
    /// the read snapshot (so the next read sees the commit), and the suspects it `judged`
    /// (removed, or no longer current).
    pub(super) fn landed(&mut self, judged: &[Suspect]) {
        self.in_flight = Arc::default();
        self.in_flight_from_remote.clear();
        self.snapshot = None;
        self.suspects
            .retain(|suspect| !judged.iter().any(|judged| judged.stored == suspect.stored));
    }

    /// The commit that took `in_flight` failed: its writes go back to `pending`, except where a
    /// write made since is newer and wins.
    pub(super) fn restore_failed(&mut self) {
        let in_flight = std::mem::take(&mut self.in_flight);
        let from_remote = std::mem::take(&mut self.in_flight_from_remote);
        for (key, write) in in_flight.iter() {
            if !self.pending.contains_key(key) {
                self.pending.insert(key, write);
                if from_remote.contains(key) {
                    self.pending_from_remote.insert(key.to_vec());
                }
            }
        }
    }

    /// The suspects the next commit is to judge.
    pub(super) fn suspects_to_judge(&self) -> Vec<Suspect> {
        self.suspects.clone()
    }

    /// Whether reads of this process found damaged entries not judged yet.
    pub(super) fn has_suspects(&self) -> bool {
        !self.suspects.is_empty()
    }

    /// Whether no write waits for a commit.
    pub(super) fn nothing_pending(&self) -> bool {
        self.pending.is_empty()
    }

    /// How many writes are pending, for tests of the buffer.
    #[cfg(test)]
    pub(super) fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Bytes of the pending writes, for tests of the buffer.
    #[cfg(test)]
    pub(super) fn pending_bytes(&self) -> usize {
        self.pending.live_bytes()
    }

    /// Bytes the pending writes hold, rewritten keys' earlier bytes included, for tests.
    #[cfg(test)]
    pub(super) fn pending_stored_len(&self) -> usize {
        self.pending.stored_len()
    }

    /// Refuses later writes (`close`); whether it was closed already.
    pub(super) fn close(&mut self) -> bool {
        std::mem::replace(&mut self.closed, true)
    }

    /// The read snapshot, if one was taken.
    pub(super) fn snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.snapshot.as_ref()
    }

    /// Keeps `snapshot` for the reads that follow.
    pub(super) fn keep_snapshot(&mut self, snapshot: Arc<Snapshot>) {
        self.snapshot = Some(snapshot);
    }

    /// Drops the read snapshot: the next read takes a fresh one.
    pub(super) fn drop_snapshot(&mut self) {
        self.snapshot = None;
    }

    /// Drops the read snapshot if it is still `stale`.
    pub(super) fn drop_snapshot_if(&mut self, stale: &Arc<Snapshot>) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, stale))
        {
            self.snapshot = None;
        }
    }

    /// This process's write of `key` not yet landed: `Some(Some(entry))`, `Some(None)` for a
    /// deletion, `None` when there is none.
    pub(super) fn buffered(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        self.pending.get(key).or_else(|| self.in_flight.get(key))
    }

    /// Buffers `write` of `key`, its entry encoded straight into the buffer.
    pub(super) fn insert(&mut self, key: &[u8], write: NewWrite<'_>) {
        if !self.pending_from_remote.is_empty() {
            self.pending_from_remote.remove(key);
        }
        self.pending.insert_with(
            key,
            write.map(|(header, value)| {
                move |out: &mut Vec<u8>| header.encode_into(key, value, out)
            }),
        );
    }

    /// [`WriteBuffer::insert`] of a backfill from the remote tier: not published back.
    pub(super) fn insert_from_remote(&mut self, key: &[u8], write: NewWrite<'_>) {
        self.insert(key, write);
        self.pending_from_remote.insert(key.to_vec());
    }

    /// Whether `stored` is an entry version a read of this process found damaged.
    pub(super) fn is_suspect(&self, stored: &[u8]) -> bool {
        self.suspects.iter().any(|suspect| suspect.stored == stored)
    }

    /// Whether the pending writes hold more than `max_bytes` (the earlier bytes of rewritten
    /// keys included) or more than [`MAX_PENDING_WRITES`] writes.
    pub(super) fn is_over(&self, max_bytes: usize) -> bool {
        self.pending.stored_len() > max_bytes || self.pending.len() > MAX_PENDING_WRITES
    }
}

/// Reads not yet written to the access table.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct AccessDelta {
    pub(super) last_ms: u64,
    pub(super) count: u64,
}

pub(super) fn merge_access(into: &mut AccessDelta, delta: AccessDelta) {
    into.last_ms = into.last_ms.max(delta.last_ms);
    into.count += delta.count;
}

impl RedbCache {
    /// Notes an entry a read found damaged, for the next commit to judge and remove
    /// ([`RedbCache::settle_suspects`]). A read never writes: it reports, counts and misses.
    pub(super) fn suspect(&self, key: &[u8], stored: &[u8], reason: String) {
        tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(key), %reason, "cache entry is unusable; treated as a miss");
        let suspects = &mut lock(&self.buffer).suspects;
        // Bounded: past this many, later ones wait for another read or for cleanup().
        if suspects.len() < MAX_SUSPECTS && !suspects.iter().any(|s| s.stored == stored) {
            suspects.push(Suspect {
                key: key.to_vec(),
                stored: stored.to_vec(),
                reason,
            });
        }
    }

    /// Whether anything waits to be committed: buffered writes, access records or counters.
    pub(super) fn has_uncommitted(&self) -> bool {
        let buffered = {
            let buffer = lock(&self.buffer);
            !buffer.pending.is_empty() || !buffer.suspects.is_empty()
        };
        buffered
            || !self.access.is_empty()
            || !self
                .counters
                .snapshot()
                .minus(&lock(&self.persisted_counters))
                .is_zero()
    }

    /// Adds writes to the buffer and schedules their commit; past the back-pressure bound the
    /// caller commits them itself.
    pub(super) fn buffer_writes<'k>(
        &self,
        writes: impl IntoIterator<Item = (&'k [u8], NewWrite<'k>)>,
        origin: Origin,
    ) -> Result<()> {
        self.ready_to_write()?;
        let over = {
            let mut buffer = lock(&self.buffer);
            if buffer.closed {
                return Err(CacheError::Closed {
                    tag: self.tag.to_string(),
                });
            }
            for (key, write) in writes {
                match origin {
                    Origin::Local => buffer.insert(key, write),
                    Origin::Remote => buffer.insert_from_remote(key, write),
                }
            }
            buffer.is_over(self.options.max_pending_bytes)
        };
        if over {
            self.write(|_, _| Ok(()))
        } else {
            self.wake_committer()
        }
    }

    /// Counts a read as a hit (recording the access) or a miss.
    pub(super) fn count_read(&self, key: &[u8], now: u64, hit: bool) {
        self.telemetry.read(hit);
        if hit {
            AtomicCounters::add(&self.counters.hits, 1);
            self.record_access(key, now);
        } else {
            AtomicCounters::add(&self.counters.misses, 1);
        }
    }

    /// Records a read of `key` for LRU and `get_metadata` (`access.rs`): no lock, no
    /// allocation for a key read before, never a commit, never a wait for one.
    pub(super) fn record_access(&self, key: &[u8], now_ms: u64) {
        self.access.record(key, now_ms);
    }

    /// Reads of the values being replaced belong to them, not to the new ones.
    pub(super) fn forget_pending_reads<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        self.access.forget(keys);
    }

    /// Refuses a value of `len` bytes under `key` when it passes `inline_limit` or could not fit
    /// in the tag's size limit even alone (then nothing else is evicted for it).
    pub(super) fn check_value_len(&self, key: &[u8], len: u64, inline_limit: u64) -> Result<()> {
        let overhead = (key.len() + ENTRY_HEADER_MAX_LEN + BlobRef::ENCODED_LEN) as u64;
        let max = inline_limit.min(self.options.max_size_bytes.saturating_sub(overhead));
        if len > max {
            return Err(CacheError::ValueTooLarge {
                tag: self.tag.to_string(),
                key: KeyDisplay::new(key),
                len,
                max,
            });
        }
        Ok(())
    }

    pub(super) fn header(
        &self,
        kind: EntryKind,
        format: ValueFormat,
        ttl: Option<Duration>,
    ) -> EntryHeader {
        let now = self.now_ms();
        EntryHeader {
            kind,
            format,
            created_ms: now,
            expires_ms: ttl
                .map(|ttl| now.saturating_add(ttl.as_millis().min(u128::from(u64::MAX)) as u64)),
        }
    }

    /// Copies a value into a temp blob file, refusing it past the size limit.
    pub(super) fn stage_blob(&self, key: &[u8], source: &mut dyn Read) -> Result<StagedBlob> {
        let overhead = (key.len() + ENTRY_HEADER_MAX_LEN + BlobRef::ENCODED_LEN) as u64;
        let limit = self.options.max_size_bytes.saturating_sub(overhead);
        self.blob_files
            .stage(source, limit)
            .map_err(|err| match err {
                StageError::TooLarge => CacheError::ValueTooLarge {
                    tag: self.tag.to_string(),
                    key: KeyDisplay::new(key),
                    len: limit + 1,
                    max: limit,
                },
                StageError::Source(source) => CacheError::Source {
                    tag: self.tag.to_string(),
                    key: KeyDisplay::new(key),
                    source,
                },
                StageError::Cache(err) => err,
            })
    }

    /// Records a staged blob under `key` in one commit: the blob goes into place (unless an
    /// intact copy is there already) inside the transaction, before the entry commits.
    pub(super) fn store_blob(
        &self,
        key: &[u8],
        staged: StagedBlob,
        format: ValueFormat,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let blob = staged.blob;
        let entry = self
            .header(EntryKind::Blob, format, ttl)
            .encode_with(key, &blob.encode());
        self.write(|tables, _| {
            let shared = tables.is_blob_referenced(&blob).or_db(self)?;
            if shared && self.blob_files.is_present(&blob) {
                drop(staged);
            } else {
                self.blob_files.publish(staged)?;
            }
            tables.put(key, &entry).or_db(self)
        })
    }
}
