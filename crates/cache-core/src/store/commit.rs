//! The one write path: [`RedbCache::write`] and its relatives (`write_counting`,
//! `write_holding`, `write_in`), then `after_commit`. A commit takes `write_lock`, begins the
//! transaction with a bounded wait, takes the buffer (`buffer.rs`), applies it with the caller's
//! change to the tables (`tables.rs`), settles suspects, sweeps expired entries, enforces the
//! limits, merges access records and counters, and commits. `write_holding` runs the steps of
//! one [`Commit`] in order: `take_commit` (what it carries), `write_in` (one transaction),
//! then `commit_landed` and `after_commit`, or `commit_failed`.
//!
//! Invariant: **files are released only after the commit has landed.** A blob whose last entry
//! goes, or a directory whose entry goes, is only listed by the transaction (`WriteTables`'
//! released lists); `after_commit` removes them once the commit is durable, still under
//! `write_lock`, and a blob only if no commit since has taken it again
//! (`remove_released_blobs`). A failed commit removes nothing and puts its writes back in the
//! buffer.
//!
//! A commit whose transaction cannot begin because an earlier I/O error latched the handle
//! replaces the handle (`handle.rs`, `reopen_if_latched`) and begins on the new one, before it
//! takes anything from the buffer; only a failure of its own fails it.

use super::*;

/// Every commit looks at this many entries (from where the last one stopped) and removes the
/// expired ones, so that expired entries go without a full `cleanup()`, at a bounded cost.
pub(super) const SWEEP_BATCH: usize = 32;

/// A commit that passes a limit evicts down to this share of it (percent), so that eviction,
/// which scans the tag, runs once per tenth of the limit written rather than on every commit.
pub(super) const EVICT_TO_PERCENT: u64 = 90;

/// What a landed commit leaves to do, and what it did.
pub(super) struct Aftermath {
    /// Blobs whose last reference this commit dropped: their files go once it has landed.
    pub(super) released_blobs: Vec<BlobRef>,
    /// Directories whose entry this commit removed: they go once it has landed.
    pub(super) released_dirs: Vec<String>,
    /// Content files to settle once the directories are gone (`settle_contents`).
    pub(super) contents: ContentsToSettle,
    pub(super) expired: u64,
    pub(super) evicted: u64,
    pub(super) bytes: u64,
    pub(super) entries: u64,
}

impl Aftermath {
    /// The commit's expirations and evictions as counters.
    pub(super) fn removal_counters(&self) -> Counters {
        removal_counters(self.expired, self.evicted)
    }
}

/// Expirations and evictions as counters.
pub(super) fn removal_counters(expired: u64, evicted: u64) -> Counters {
    Counters {
        expirations: expired,
        evictions: evicted,
        ..Counters::default()
    }
}

/// What one commit of this process carries, taken in its first step (`take_commit`) and
/// given back in its last: `commit_landed` then `after_commit`, or `commit_failed`.
pub(super) struct Commit {
    /// The buffered writes it applies; readable in the buffer's `in_flight` meanwhile.
    in_flight: Arc<Writes>,
    /// Which of them are backfills from the remote tier, not to publish once landed.
    from_remote: HashSet<Vec<u8>>,
    /// This process's access records, merged into the access table after its writes: reads
    /// of the values this process sees (a write forgets the reads of the value it replaces,
    /// `forget_pending_reads`).
    pending_access: AccessRecords,
    /// Suspects it judges (removing those still damaged).
    suspects: Vec<Suspect>,
    /// The counters as of its start, and what of them is not persisted yet.
    counters_now: Counters,
    counters_delta: Counters,
    /// What other processes left in the reads file (`reads_file.rs`), folded in by this
    /// commit: counters, and access records merged before its writes, because they are reads
    /// of values committed before it (a write of this commit replaces them with the value).
    folded: ReadsBatch,
}

/// What one commit removed besides what it was asked to.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct CommitOutcome {
    pub(super) expired: u64,
    pub(super) evicted: u64,
}

impl RedbCache {
    /// The single write path: one durable transaction that applies the write buffer, runs
    /// `change`, merges pending access records and unpersisted counters, and commits. On
    /// failure nothing is lost: the buffered writes and access records go back to the buffer.
    pub(super) fn write<R>(
        &self,
        change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>,
    ) -> Result<R> {
        self.write_counting(change).map(|(value, _)| value)
    }

    /// [`RedbCache::write`], also returning what the commit expired and evicted.
    pub(super) fn write_counting<R>(
        &self,
        change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>,
    ) -> Result<(R, CommitOutcome)> {
        let writer = lock(&self.write_lock);
        self.write_holding(&writer, change)
    }

    /// The write path, for a caller that already holds `write_lock` (`writer` proves it).
    pub(super) fn write_holding<R>(
        &self,
        writer: &MutexGuard<'_, ()>,
        change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>,
    ) -> Result<(R, CommitOutcome)> {
        let mut open = self.open_database()?;
        let txn = match self.begin_write(&mut open) {
            Ok(txn) => txn,
            Err(err) if is_latched(&err) => {
                // The handle failed before this commit began (an earlier I/O error latched it,
                // here or in another thread): replace it and, if the file opens again, commit
                // on the new handle, as a read does (`read.rs`). Nothing was taken from the
                // buffer yet, so trying again loses nothing.
                self.reopen_if_latched(&open, &err);
                lock(&self.buffer).drop_snapshot();
                let current = self.open_database()?;
                if Arc::ptr_eq(&current, &open) {
                    return Err(err);
                }
                open = current;
                self.begin_write(&mut open).inspect_err(|err| {
                    if self.reopen_if_latched(&open, err) {
                        lock(&self.buffer).drop_snapshot();
                    }
                })?
            }
            Err(err) => return Err(err),
        };
        let commit = self.take_commit();
        let result = self.write_in(txn, change, &commit);
        if let Err(err) = &result
            && self.reopen_if_latched(&open, err)
        {
            lock(&self.buffer).drop_snapshot();
        }
        match result {
            Ok((value, aftermath)) => {
                self.commit_landed(&commit, &aftermath);
                let outcome = CommitOutcome {
                    expired: aftermath.expired,
                    evicted: aftermath.evicted,
                };
                self.after_commit(writer, &open, aftermath);
                self.publish_landed(&commit.in_flight, &commit.from_remote);
                Ok((value, outcome))
            }
            Err(err) => {
                self.commit_failed(commit);
                Err(err)
            }
        }
    }

    /// The first step of a commit: takes what it carries (the pending writes, which stay
    /// readable in flight; the access records; the suspects to judge; the counters not yet
    /// persisted). Called under `write_lock`, after the transaction has begun.
    fn take_commit(&self) -> Commit {
        let (in_flight, from_remote) = lock(&self.buffer).take_for_commit();
        let pending_access = self.access.take();
        let folded = self.reads_file.take(self.access.hasher()).unwrap_or_else(|err| {
            tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not fold in the reads other processes left; the next commit tries again");
            ReadsBatch::default()
        });
        let untracked = self.access.take_untracked();
        if untracked > 0 {
            tracing::debug!(tag = %self.tag, untracked, "reads not recorded for LRU and metadata: too many distinct keys read between two commits");
        }
        let suspects = lock(&self.buffer).suspects_to_judge();
        self.take_remote_counters();
        let counters_now = self.counters.snapshot();
        let counters_delta = counters_now.minus(&lock(&self.persisted_counters));
        Commit {
            in_flight,
            from_remote,
            pending_access,
            suspects,
            counters_now,
            counters_delta,
            folded,
        }
    }

    /// The commit has landed: its writes leave the buffer, the suspects it judged go, and the
    /// counters it persisted (its own removals too; `after_commit` adds them to the live
    /// counters) are noted as persisted. Its files are released next, by `after_commit`.
    fn commit_landed(&self, commit: &Commit, aftermath: &Aftermath) {
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut buffer = lock(&self.buffer);
        buffer.landed(&commit.suspects);
        *lock(&self.persisted_counters) = commit.counters_now.plus(&aftermath.removal_counters());
    }

    /// The commit failed: its writes go back to the buffer (newer ones win), its access
    /// records to the access log, what it folded back to the reads file (where the next commit
    /// merges its reads before its writes again); nothing is released.
    fn commit_failed(&self, commit: Commit) {
        lock(&self.buffer).restore_failed();
        self.access.restore(commit.pending_access);
        if !commit.folded.is_empty()
            && let Err(err) = self.reads_file.append(&commit.folded)
        {
            tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not put back the reads and counters other processes left, taken by a failed commit; lost");
        }
    }

    /// What a commit leaves to do once it has landed: removing the files it released, and
    /// publishing the tag's usage. Runs with `write_lock` still held (`_writer`), so this
    /// process's next commit cannot take a released blob again before it is judged.
    pub(super) fn after_commit(
        &self,
        _writer: &MutexGuard<'_, ()>,
        open: &Arc<OpenDatabase>,
        aftermath: Aftermath,
    ) {
        if !aftermath.released_blobs.is_empty() {
            self.remove_released_blobs(open, &aftermath.released_blobs);
        }
        // Directory names are never reused, so no other writer can have taken one again.
        for name in &aftermath.released_dirs {
            if let Err(err) = self.dir_files.remove(name) {
                // Left as an orphan: cleanup() removes it.
                tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not remove the directory of a removed entry");
            }
        }
        self.settle_contents(open, &aftermath.contents);
        let usage = (aftermath.bytes, aftermath.entries);
        let mut published = lock(&self.published_usage);
        if *published != usage {
            match budget::publish_usage(self.tag_dir(), aftermath.bytes, aftermath.entries) {
                Ok(()) => *published = usage,
                Err(err) => {
                    tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not publish the tag's usage for the root budget");
                }
            }
        }
        drop(published);
        AtomicCounters::add(&self.counters.expirations, aftermath.expired);
        AtomicCounters::add(&self.counters.evictions, aftermath.evicted);
        if aftermath.evicted > 0 {
            tracing::debug!(tag = %self.tag, evicted = aftermath.evicted, bytes = aftermath.bytes, entries = aftermath.entries, "evicted entries to get under the limits");
        }
    }

    /// Removes the files of `released` blobs that are still unreferenced, under redb's write
    /// lock: another process may have stored the same content (same name) and committed a
    /// reference to it since our commit landed, and while we hold the lock none can. Without
    /// the lock (another writer holds it past `timeout`), or if this process dies first, the
    /// files stay as orphans, which `cleanup()` removes.
    pub(super) fn remove_released_blobs(&self, open: &Arc<OpenDatabase>, released: &[BlobRef]) {
        let mut open = Arc::clone(open);
        let judged = self.begin_write(&mut open).and_then(|txn| {
            let blobs = txn.open_table(BLOBS).or_db(self)?;
            let mut unreferenced = Vec::with_capacity(released.len());
            for blob in released {
                if blobs.get(blob.hash.as_slice()).or_db(self)?.is_none() {
                    unreferenced.push(*blob);
                }
            }
            for blob in &unreferenced {
                if let Err(err) = self.blob_files.remove(blob) {
                    tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not remove an unreferenced blob; cleanup() will");
                }
            }
            drop(blobs);
            // Nothing was written: ending it commits nothing and syncs nothing.
            txn.abort().or_db(self)
        });
        if let Err(err) = judged {
            tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), blobs = released.len(), "could not remove the files of released blobs; cleanup() will");
        }
    }

    /// Removes the entries reads found damaged, each only if it is still the very version the
    /// read saw (byte for byte) and its damage is still there now, judged under the write lock:
    /// a read may have seen an old snapshot, or a file another process was just replacing, and
    /// a fresh entry must never be removed for it.
    pub(super) fn settle_suspects(
        &self,
        tables: &mut WriteTables<'_>,
        suspects: &[Suspect],
    ) -> Result<()> {
        for suspect in suspects {
            let same_version = tables
                .entries()
                .get(suspect.key.as_slice())
                .or_db(self)?
                .is_some_and(|stored| stored.value() == suspect.stored.as_slice());
            if !same_version {
                continue;
            }
            // A blob that cannot be read now (permissions, I/O) is not judged: the entry stays,
            // and the commit, carrying everyone's buffered writes, goes on without it.
            match self.still_damaged(&suspect.key, &suspect.stored) {
                Ok(true) => {
                    tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(&suspect.key), reason = %suspect.reason, "removing a damaged cache entry");
                    tables.remove(&suspect.key).or_db(self)?;
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(&suspect.key), error = %crate::error::ErrorChain(&err), "could not judge an entry a read found damaged; kept");
                }
            }
        }
        Ok(())
    }

    /// Whether the stored entry bytes of `key`, which a read found unusable, are unusable now:
    /// unreadable bytes, or a blob or directory that is missing (or, for a blob, does not match
    /// its hash). An intact inline entry was unusable to the reader that reported it (another
    /// schema, a value that does not decode): it stays unusable as long as it is this version.
    pub(super) fn still_damaged(&self, key: &[u8], stored: &[u8]) -> Result<bool> {
        let Ok((header, payload)) = EntryHeader::decode(key, stored) else {
            return Ok(true);
        };
        Ok(match header.kind {
            EntryKind::Inline => true,
            EntryKind::Blob => match BlobRef::decode(payload) {
                Ok(blob) => !matches!(
                    self.blob_files
                        .copy_to(&blob, &mut std::io::sink(), blobs::Trust::Nothing)?,
                    BlobRead::Verified(_)
                ),
                Err(_) => true,
            },
            EntryKind::Directory => match DirRef::decode(payload) {
                Ok((dir, _)) => {
                    !self.dir_files.is_present(dir.name) || self.verify_contents(dir.name)?.is_err()
                }
                Err(_) => true,
            },
        })
    }

    pub(super) fn write_in<R>(
        &self,
        txn: WriteTransaction,
        change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>,
        commit: &Commit,
    ) -> Result<(R, Aftermath)> {
        let Commit {
            in_flight,
            pending_access,
            suspects,
            folded,
            ..
        } = commit;
        let counters_delta = commit.counters_delta.plus(&folded.counters);
        let now = self.now_ms();
        let (value, aftermath) = {
            let mut usage = txn.open_table(USAGE).or_db(self)?;
            let read_usage = |name| -> Result<u64> {
                Ok(usage
                    .get(name)
                    .or_db(self)?
                    .map_or(0, |value| value.value()))
            };
            let (bytes, entry_count) = (read_usage(USAGE_BYTES)?, read_usage(USAGE_ENTRIES)?);
            let hasher = AccessHasher::new(access_seeds_or_new(&mut usage).or_db(self)?);
            // Reads recorded by another hash than the file's were recorded for a file replaced
            // since (a quarantine in another process): they belong to entries gone with it.
            let reads_belong = hasher == self.access.hasher();
            if !reads_belong {
                tracing::debug!(tag = %self.tag, records = pending_access.len() + folded.access.len(), "the cache file was replaced since these reads; their access records are dropped");
                self.access.use_seeds(hasher.seeds());
            }
            let mut tables = WriteTables::open(&txn, bytes, entry_count, hasher).or_db(self)?;
            // A file a read-only handle served as it was, from before the access hash.
            tables.fold_legacy_access().or_db(self)?;
            // Reads other processes left: of values committed before this commit, so merged
            // before its writes, which drop the records of the values they replace.
            if reads_belong {
                for (hash, delta) in in_hash_order(&folded.access) {
                    tables.record_reads(hash, delta).or_db(self)?;
                }
            }
            // In key order: neighbouring keys share B-tree pages, so each page is found and
            // rewritten once per run of keys rather than once per key (a hash map's order),
            // and the leaves are left full (in hash order about 65 % full, with 43 % more
            // leaves for every later read to go through).
            for (key, write) in in_flight.in_key_order() {
                match write {
                    // A new value starts with no reads; reads of it since are merged below.
                    Some(entry) => tables.put(key, entry).or_db(self)?,
                    None => {
                        tables.remove(key).or_db(self)?;
                    }
                }
            }
            let value = change(&mut tables, now)?;
            self.settle_suspects(&mut tables, suspects)?;
            self.sweep_expired(&mut tables, now)?;
            if reads_belong {
                for (hash, delta) in in_hash_order(pending_access) {
                    tables.record_reads(hash, delta).or_db(self)?;
                }
            }
            self.enforce_limits(&mut tables, now)?;
            let (bytes, entry_count) = tables.usage();
            usage.insert(USAGE_BYTES, bytes).or_db(self)?;
            usage.insert(USAGE_ENTRIES, entry_count).or_db(self)?;
            if let Some(now) = tables.last_cleanup_ms() {
                usage.insert(LAST_CLEANUP_MS, now).or_db(self)?;
            }
            // What this commit expired and evicted is persisted by the commit itself, so that it
            // is not lost when this commit is the instance's last.
            let (expired, evicted) = tables.removals();
            let counters_delta = counters_delta.plus(&removal_counters(expired, evicted));
            let mut counters = txn.open_table(COUNTERS).or_db(self)?;
            for (name, delta) in counters_delta.fields() {
                if delta != 0 {
                    let old = counters
                        .get(name)
                        .or_db(self)?
                        .map_or(0, |value| value.value());
                    counters
                        .insert(name, old.saturating_add(delta))
                        .or_db(self)?;
                }
            }
            // Released files are removed only once this commit has landed (`after_commit`): a
            // kill or a failed commit before then leaves orphans, which cleanup removes, never
            // a committed entry without its file.
            let (released_blobs, released_dirs) = tables.take_released();
            let aftermath = Aftermath {
                released_blobs,
                released_dirs,
                contents: tables.take_released_contents(),
                expired,
                evicted,
                bytes,
                entries: entry_count,
            };
            (value, aftermath)
        };
        txn.commit().or_db(self)?;
        Ok((value, aftermath))
    }

    /// Removes the expired entries among the next [`SWEEP_BATCH`] after the sweep cursor.
    pub(super) fn sweep_expired(&self, tables: &mut WriteTables<'_>, now: u64) -> Result<()> {
        let mut cursor = lock(&self.sweep_cursor);
        let mut expired = Vec::new();
        let mut seen = 0;
        let mut last: Option<Vec<u8>> = None;
        for row in tables
            .entries()
            .range::<&[u8]>(cursor.as_slice()..)
            .or_db(self)?
            .take(SWEEP_BATCH)
        {
            let (key, stored) = row.or_db(self)?;
            seen += 1;
            if EntryHeader::parse(stored.value()).is_ok_and(|(header, _)| header.is_expired(now)) {
                expired.push(key.value().to_vec());
            }
            last = Some(key.value().to_vec());
        }
        *cursor = match last {
            // The smallest key after `last`.
            Some(mut next) if seen == SWEEP_BATCH => {
                next.push(0);
                next
            }
            _ => Vec::new(),
        };
        drop(cursor);
        for key in expired {
            if tables.remove(&key).or_db(self)? {
                tables.count_expired(1);
            }
        }
        Ok(())
    }

    /// Evicts when the tag is over its size or entry limit: expired entries first, then in the
    /// policy's order (oldest stored, or least recently used), down to [`EVICT_TO_PERCENT`] of
    /// the limit.
    pub(super) fn enforce_limits(&self, tables: &mut WriteTables<'_>, now: u64) -> Result<()> {
        let mut max_bytes = self.options.max_size_bytes;
        if let Some(budget) = self.options.root_max_size_bytes {
            let others = budget::sibling_usage(self.tag_dir(), &self.tag);
            if let Some(level) = budget::fair_level(budget, tables.usage().0, &others) {
                max_bytes = max_bytes.min(level);
            }
        }
        if let Some(shortfall) = self.free_space_shortfall() {
            // Below `min_free_space`: evict at least what is missing (the files of what goes
            // are removed once this commit lands).
            let bytes = tables.usage().0;
            max_bytes = max_bytes.min(bytes.saturating_sub(shortfall));
            tracing::warn!(tag = %self.tag, shortfall, "the filesystem holding the cache is below min_free_space; evicting to make room");
        }
        let max_entries = self.options.max_entries.unwrap_or(u64::MAX);
        let (bytes, entries) = tables.usage();
        if bytes <= max_bytes && entries <= max_entries {
            return Ok(());
        }
        let low_water =
            |limit: u64| (u128::from(limit) * u128::from(EVICT_TO_PERCENT) / 100) as u64;
        let target_bytes = low_water(max_bytes);
        let target_entries = if max_entries == u64::MAX {
            u64::MAX
        } else {
            low_water(max_entries)
        };
        // (expired first, order, key) of every entry.
        let mut order: Vec<(bool, u64, Vec<u8>)> = Vec::new();
        for row in tables.entries().iter().or_db(self)? {
            let (key, stored) = row.or_db(self)?;
            let (expired, stamp) = match EntryHeader::parse(stored.value()) {
                Ok((header, _)) => (header.is_expired(now), header.created_ms),
                // Unreadable entries go first too: nothing can read them.
                Err(_) => (true, 0),
            };
            order.push((!expired, stamp, key.value().to_vec()));
        }
        if self.options.eviction_policy == EvictionPolicy::LeastRecentlyUsed {
            for (_, stamp, key) in &mut order {
                let (last_read, _) = tables.reads_of(key).or_db(self)?;
                *stamp = (*stamp).max(last_read);
            }
        }
        order.sort_unstable();
        for (live, _, key) in order {
            let (bytes, entries) = tables.usage();
            if bytes <= target_bytes && entries <= target_entries {
                break;
            }
            if tables.remove(&key).or_db(self)? {
                if live {
                    tables.count_evicted();
                } else {
                    tables.count_expired(1);
                }
            }
        }
        Ok(())
    }

    /// How many bytes the filesystem holding the tag is short of `min_free_space`; `None` when
    /// it is not short (or its space cannot be read).
    pub(super) fn free_space_shortfall(&self) -> Option<u64> {
        let space = self.options.disk_space.space(self.tag_dir())?;
        let min = self.options.min_free_space.bytes_of(space.total_bytes);
        (space.free_bytes < min).then(|| min - space.free_bytes)
    }

    /// Commits buffered writes, if any, with the access records and counters waiting; called
    /// by the commit thread. Access records alone never make it commit: they wait for a write,
    /// a `flush`, or the close (`reads_file.rs`).
    pub(super) fn commit_pending_in_background(&self) -> Result<()> {
        let idle = lock(&self.buffer).nothing_pending();
        if idle || self.is_closed() {
            return Ok(());
        }
        self.catching_panics("commit", || self.write(|_, _| Ok(())))
            .inspect_err(|err| {
            AtomicCounters::add(&self.counters.errors, 1);
            tracing::error!(tag = %self.tag, error = %crate::error::ErrorChain(err), "group commit failed; the writes stay buffered and will be retried");
        })
    }

    /// Makes every write this process made before the call land in the file, so that a scan
    /// of the file sees them: commits what is buffered (and judges suspects), and waits for a
    /// commit in progress.
    /// A commit holds `write_lock` from taking the buffer until its writes have landed (or,
    /// failing, have gone back to the buffer), so holding it here means nothing of ours is in
    /// flight; what is still pending is committed under the same hold.
    pub(super) fn commit_if_buffered(&self) -> Result<()> {
        let writer = lock(&self.write_lock);
        let idle = {
            let buffer = lock(&self.buffer);
            // Suspects too, so that a listing never shows an entry this process found damaged.
            buffer.nothing_pending() && !buffer.has_suspects()
        };
        if idle {
            return Ok(());
        }
        self.write_holding(&writer, |_, _| Ok(())).map(|_| ())
    }
}
