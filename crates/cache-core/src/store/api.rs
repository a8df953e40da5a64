//! The operations of [`RedbCache`] that the public handle (`crate::Cache`) calls, each a
//! composition of the facets beside it (reads from `read.rs`, writes into `buffer.rs`, commits
//! through `commit.rs`, upkeep from `maintenance.rs`). Nothing here touches a table or a file
//! directly except through those facets.
//!
//! Over 600 lines: one short method per public operation (and the local/remote-origin forms of
//! the writes); what makes them long lives in the facets, and grouping them here keeps the list
//! of what the store offers in one place.

use super::*;

/// A value [`RedbCache::backfill_stream`] stored: a blob's file as written.
pub(crate) struct Backfilled {
    written: Option<blobs::WrittenBlob>,
}

impl RedbCache {
    pub(crate) fn tag(&self) -> &Tag {
        &self.tag
    }

    pub(crate) fn get_with_format(
        &self,
        key: &[u8],
        format: ValueFormat,
        any: AnyFormat,
    ) -> Result<Option<Vec<u8>>> {
        self.measure_read("get", |started| {
            self.check_key(key)?;
            let (found, now) = self.read_entry(
                key,
                started,
                Some((format, any)),
                &mut (),
                |(), value| Ok(value),
                |(), blob| self.blob_files.read(blob),
            )?;
            self.count_read(key, now, found.is_some());
            Ok(found)
        })
    }

    pub(crate) fn set_with_format(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        format: ValueFormat,
    ) -> Result<()> {
        self.set_many_with_format(&[(key, value)], ttl, format)
    }

    pub(crate) fn set_many_with_format(
        &self,
        items: &[(&[u8], &[u8])],
        ttl: Option<Duration>,
        format: ValueFormat,
    ) -> Result<()> {
        self.set_many_from(items, ttl, format, Origin::Local)
    }

    /// Stores a value fetched from the remote tier after a local miss: like a local set, except
    /// that it is not published back.
    pub(crate) fn backfill(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        format: ValueFormat,
    ) -> Result<()> {
        self.set_many_from(&[(key, value)], ttl, format, Origin::Remote)?;
        self.count_backfill();
        Ok(())
    }

    fn set_many_from(
        &self,
        items: &[(&[u8], &[u8])],
        ttl: Option<Duration>,
        format: ValueFormat,
        origin: Origin,
    ) -> Result<()> {
        self.measure("set", |_| {
            for (key, value) in items {
                self.check_key(key)?;
                self.check_value_len(key, value.len() as u64, self.options.max_value_bytes)?;
            }
            let header = self.header(EntryKind::Inline, format, ttl);
            self.forget_pending_reads(items.iter().map(|(key, _)| *key));
            let (large, small): (Vec<_>, Vec<_>) = items
                .iter()
                .partition(|(_, value)| value.len() as u64 > self.options.blob_threshold_bytes);
            self.buffer_writes(
                small
                    .iter()
                    .map(|(key, value)| (*key, Some((&header, *value)))),
                origin,
            )?;
            for (key, value) in large {
                let staged = self.stage_blob(key, &mut &value[..])?;
                let blob = staged.blob;
                self.store_blob(key, staged, format, ttl)?;
                if origin == Origin::Local {
                    self.publish_blob(key, &blob, &header);
                }
            }
            AtomicCounters::add(&self.counters.sets, items.len() as u64);
            Ok(())
        })
    }

    pub(crate) fn set_from_reader(
        &self,
        key: &[u8],
        source: &mut dyn Read,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        self.set_from_reader_from(key, source, ttl, Origin::Local, None)
            .map(|stored| stored.map_or(0, |(len, _)| len))
    }

    /// [`RedbCache::backfill`] of a value the remote tier streams (`RemoteValue::Stream`):
    /// `len` bytes whose blake3 hash is `digest`. The bytes are staged, hashed on the way as any
    /// blob's, and checked against `digest` and `len` before anything is committed: bytes that
    /// do not match store nothing, are counted as rejected and return `Ok(None)`.
    pub(crate) fn backfill_stream(
        &self,
        key: &[u8],
        source: &mut dyn Read,
        expected: (u64, &[u8; 32]),
        ttl: Option<Duration>,
    ) -> Result<Option<Backfilled>> {
        let Some((_, written)) =
            self.set_from_reader_from(key, source, ttl, Origin::Remote, Some(expected))?
        else {
            self.count_rejected();
            tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(key), "a value from the remote tier does not match its digest; treated as a miss, nothing stored");
            return Ok(None);
        };
        self.count_backfill();
        Ok(Some(Backfilled { written }))
    }

    /// Writes a value [`RedbCache::backfill_stream`] has just stored to `sink`: a blob from the
    /// file that call wrote and hashed (`BlobFiles::copy_written_to`; not hashed again),
    /// counted as a read hit as a read after the backfill would be; else (a small value stored
    /// inline, or a file changed since) as any read does.
    pub(crate) fn write_backfilled(
        &self,
        key: &[u8],
        backfilled: Backfilled,
        sink: &mut dyn Write,
    ) -> Result<Option<u64>> {
        if let Some(written) = backfilled.written
            && let Some(served) = self
                .blob_files
                .copy_written_to(written, &mut CallerIo(&mut *sink))?
        {
            self.count_read(key, self.now_ms(), true);
            return Ok(Some(served));
        }
        self.get_to_writer(key, sink)
    }

    /// Stages `source` and stores it under `key`: its length and, for a blob, the file as
    /// written (`StagedBlob::take_written`). With `expected` (length, blake3 hash), bytes that
    /// do not match store nothing and return `Ok(None)`.
    fn set_from_reader_from(
        &self,
        key: &[u8],
        source: &mut dyn Read,
        ttl: Option<Duration>,
        origin: Origin,
        expected: Option<(u64, &[u8; 32])>,
    ) -> Result<Option<(u64, Option<blobs::WrittenBlob>)>> {
        self.measure("set", |_| {
            self.check_key(key)?;
            let mut staged = self.stage_blob(key, &mut CallerIo(source))?;
            let len = staged.blob.len;
            if let Some((expected_len, digest)) = expected
                && (len != expected_len || staged.blob.hash != *digest)
            {
                return Ok(None);
            }
            self.forget_pending_reads([key]);
            let mut written = None;
            if len > self.options.blob_threshold_bytes {
                let blob = staged.blob;
                written = staged.take_written();
                self.store_blob(key, staged, ValueFormat::RAW, ttl)?;
                if origin == Origin::Local {
                    let header = self.header(EntryKind::Blob, ValueFormat::RAW, ttl);
                    self.publish_blob(key, &blob, &header);
                }
            } else {
                // Small after all: inline, like any small value, and committed like the rest
                // of this method's writes.
                let value = self.blob_files.read_staged(&staged)?;
                let header = self.header(EntryKind::Inline, ValueFormat::RAW, ttl);
                let entry = header.encode_with(key, &value);
                self.write(|tables, _| tables.put(key, &entry).or_db(self))?;
                if origin == Origin::Local {
                    self.publish_inline(key, value, &header);
                }
            }
            AtomicCounters::add(&self.counters.sets, 1);
            Ok(Some((len, written)))
        })
    }

    pub(crate) fn get_to_writer(&self, key: &[u8], sink: &mut dyn Write) -> Result<Option<u64>> {
        self.measure_read("get", |started| {
            let sink = &mut CallerIo(sink);
            self.check_key(key)?;
            let (found, now) = self.read_entry(
                key,
                started,
                None,
                sink,
                |sink, value| {
                    sink.write_all(&value).map_err(|source| CacheError::Io {
                        operation: "writing a cached value to the caller's writer for",
                        path: self.path.clone(),
                        source,
                    })?;
                    Ok(value.len() as u64)
                },
                |sink, blob| self.blob_files.copy_to(blob, sink, blobs::Trust::Known),
            )?;
            self.count_read(key, now, found.is_some());
            Ok(found)
        })
    }

    pub(crate) fn stage_directory(&self) -> Result<StagedDirectory> {
        self.dir_files.stage()
    }

    pub(crate) fn set_directory(
        &self,
        key: &[u8],
        staged: StagedDirectory,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Option<CachedDirectory>> {
        self.set_directory_from(key, staged, value, ttl, Origin::Local)
    }

    /// [`RedbCache::set_directory`], published to the remote tier once committed unless it came
    /// from there (`Origin::Remote`: a backfill, `remote_dirs.rs`).
    pub(super) fn set_directory_from(
        &self,
        key: &[u8],
        mut staged: StagedDirectory,
        value: &[u8],
        ttl: Option<Duration>,
        origin: Origin,
    ) -> Result<Option<CachedDirectory>> {
        self.measure("set", |_| {
            self.check_key(key)?;
            if !self.dir_files.owns(&staged) {
                return Err(CacheError::ForeignStagedDirectory {
                    tag: self.tag.to_string(),
                    path: staged.path().to_owned(),
                });
            }
            self.check_value_len(key, value.len() as u64, self.options.max_value_bytes)?;
            // Files shared with the tag's content files (`contents.rs`) are counted once for
            // the tag, through `attach_contents`, not in the directory's own size.
            let uses = match staged.staging() {
                Some((staging, name)) => self.content_files.dedup(staging, name)?,
                None => Vec::new(),
            };
            let measured = self.dir_files.measure(&staged)?;
            let size = measured.allocated;
            // Hashed just now, as they were shared: verified, as a read reports them.
            let shared_paths: Vec<PathBuf> = uses
                .iter()
                .map(|content| {
                    use std::os::unix::ffi::OsStringExt;
                    PathBuf::from(std::ffi::OsString::from_vec(content.path.clone()))
                })
                .collect();
            self.check_value_len(key, size.saturating_add(value.len() as u64), u64::MAX)?;
            // The staged directory is already on the disk: if the filesystem is short of
            // `min_free_space` by more than the whole tag could give back, refuse (the staged
            // copy is removed when `staged` drops); a smaller shortfall is made up by eviction
            // in this commit.
            if let Some(shortfall) = self.free_space_shortfall() {
                let tag_bytes = self.read_usage()?.get(USAGE_BYTES).copied().unwrap_or(0);
                if shortfall > tag_bytes
                    && let Some(space) = self.options.disk_space.space(self.tag_dir())
                {
                    return Err(CacheError::InsufficientFreeSpace {
                        tag: self.tag.to_string(),
                        path: self.tag_dir().to_owned(),
                        free_bytes: space.free_bytes,
                        min_free_bytes: self.options.min_free_space.bytes_of(space.total_bytes),
                        tag_bytes,
                    });
                }
            }
            let header = self.header(EntryKind::Directory, ValueFormat::RAW, ttl);
            self.forget_pending_reads([key]);
            let mut published: Option<String> = None;
            let result = self.write(|tables, _| {
                let (name, path) = self.dir_files.publish(&mut staged, &measured)?;
                published = Some(name.clone());
                let dir = DirRef { name: &name, size };
                tables
                    .put(key, &header.encode_with(key, &dir.encode_with(value)))
                    .or_db(self)?;
                tables.attach_contents(&name, &uses).or_db(self)?;
                self.record_content_stats(
                    tables,
                    uses.iter().map(|content| content.name.as_str()),
                )?;
                Ok(path)
            });
            match result {
                Ok(path) => {
                    AtomicCounters::add(&self.counters.sets, 1);
                    if origin == Origin::Local
                        && let Some(name) = &published
                    {
                        self.publish_directory(key, &header, name, value);
                    }
                    Ok(Some(CachedDirectory {
                        path,
                        value: value.to_vec(),
                        size_bytes: size,
                        verified_files: shared_paths,
                    }))
                }
                Err(err) => {
                    if let Some(name) = published {
                        // Moved into place, but its entry never committed: nothing owns it.
                        let _ = self.dir_files.remove(&name);
                    }
                    Err(err)
                }
            }
        })
    }

    pub(crate) fn get_directory(&self, key: &[u8]) -> Result<Option<CachedDirectory>> {
        self.measure_read("get", |started| {
            self.check_key(key)?;
            let now = self.now_ms_at(started);
            let mut first = true;
            let directory = loop {
                let found = self.lookup(key, started, |stored, _| {
                    let Some(stored) = stored else { return Ok(None) };
                    Ok(match EntryHeader::decode(key, stored) {
                        Ok((header, payload))
                            if header.kind == EntryKind::Directory && !header.is_expired(now) =>
                        {
                            DirRef::decode(payload).ok().map(|(dir, value)| {
                                let name = dir.name.to_owned();
                                (name, dir.size, value.to_vec(), stored.to_vec())
                            })
                        }
                        _ => None,
                    })
                })?;
                match found {
                    Some((name, size, value, stored)) if self.dir_files.is_present(&name) => {
                        let verified = self.verify_contents(&name)?;
                        if let Err(path) = &verified {
                            let path = String::from_utf8_lossy(path).into_owned();
                            tracing::error!(tag = %self.tag, key = %KeyDisplay::new(key), name, path, "a shared file of a cached directory does not match its content; treated as a miss");
                            AtomicCounters::add(&self.counters.errors, 1);
                            self.suspect(key, &stored, format!("its file {path} changed"));
                            break None;
                        }
                        break Some(CachedDirectory {
                            path: self.dir_files.path(&name),
                            value,
                            size_bytes: size,
                            verified_files: verified.unwrap_or_default(),
                        });
                    }
                    // An entry replaced or removed since the snapshot was taken has had its
                    // directory removed: look again in a fresh snapshot before calling it damage.
                    Some(_) if first => {
                        first = false;
                        self.refresh_snapshot();
                    }
                    Some((name, _, _, stored)) => {
                        tracing::error!(tag = %self.tag, key = %KeyDisplay::new(key), name, "owned directory of a cached entry is missing; treated as a miss");
                        AtomicCounters::add(&self.counters.errors, 1);
                        self.suspect(key, &stored, "its directory is missing".to_owned());
                        break None;
                    }
                    None => break None,
                }
            };
            self.count_read(key, now, directory.is_some());
            Ok(directory)
        })
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<bool> {
        self.delete_many(&[key]).map(|removed| removed == 1)
    }

    pub(crate) fn delete_many(&self, keys: &[&[u8]]) -> Result<usize> {
        self.measure("delete", |started| {
            for key in keys {
                self.check_key(key)?;
            }
            let now = self.now_ms();
            let mut existed = 0;
            for key in keys {
                if self.lookup(key, started, |stored, _| Ok(is_live(key, stored, now)))? {
                    existed += 1;
                }
            }
            self.access.forget(keys.iter().copied());
            // Deleted even when this process did not see it: another process may have just
            // written it.
            self.buffer_writes(keys.iter().map(|key| (*key, None)), Origin::Local)?;
            AtomicCounters::add(&self.counters.deletes, existed as u64);
            Ok(existed)
        })
    }

    pub(crate) fn exists(&self, key: &[u8]) -> Result<bool> {
        self.measure_read("exists", |started| {
            self.check_key(key)?;
            let now = self.now_ms_at(started);
            self.lookup(key, started, |stored, _| Ok(is_live(key, stored, now)))
        })
    }

    pub(crate) fn clear(&self) -> Result<()> {
        self.measure("clear", |_| {
            self.access.clear();
            self.write(|tables, _| {
                // One by one, so that blobs and directories go with their entries.
                tables.clear().or_db(self)?;
                Ok(())
            })
        })
    }

    pub(crate) fn keys(&self) -> Result<Vec<Vec<u8>>> {
        self.measure("keys", |_| {
            let now = self.now_ms();
            let mut keys = Vec::new();
            self.commit_if_buffered()?;
            self.scan(|key, stored| {
                if is_live(key, Some(stored), now) {
                    keys.push(key.to_vec());
                }
            })?;
            Ok(keys)
        })
    }

    pub(crate) fn get_metadata(&self, key: &[u8]) -> Result<Option<EntryMetadata>> {
        self.measure_read("get_metadata", |started| {
            self.check_key(key)?;
            let now = self.now_ms_at(started);
            let hasher = self.access.hasher();
            let hash = hasher.hash(key);
            let mut pending = self.access.peek(key);
            let left = self.reads_file.peek(hasher)?.access.get(&hash).copied();
            self.lookup(key, started, |stored, snapshot| {
                let Some((header, payload)) =
                    stored.and_then(|stored| EntryHeader::decode(key, stored).ok())
                else {
                    return Ok(None);
                };
                if header.is_expired(now) {
                    return Ok(None);
                }
                let Some(size_bytes) = value_size(&header, payload) else {
                    return Ok(None);
                };
                // A buffered value is new: the stored access record, and the reads other
                // processes left in the reads file, belong to the old one.
                let (stored_last, stored_count) = match snapshot {
                    Some(snapshot) => {
                        if let Some(left) = left {
                            merge_access(&mut pending, left);
                        }
                        snapshot.access.reads_of(key, hash).or_db(self)?
                    }
                    None => (0, 0),
                };
                let last_ms = stored_last.max(pending.last_ms);
                Ok(Some(EntryMetadata {
                    key: key.to_vec(),
                    tag: self.tag.to_string(),
                    size_bytes,
                    created: system_time(header.created_ms),
                    last_accessed: (last_ms != 0).then(|| system_time(last_ms)),
                    access_count: stored_count + pending.count,
                    ttl: header.expires_ms.map(|expires| {
                        Duration::from_millis(expires.saturating_sub(header.created_ms))
                    }),
                    expires_at: header.expires_ms.map(system_time),
                    format: header.format,
                }))
            })
        })
    }

    pub(crate) fn get_stats(&self) -> Result<CacheStats> {
        self.measure("get_stats", |_| {
            let now = self.now_ms();
            let (mut entries, mut bytes) = (0u64, 0u64);
            self.commit_if_buffered()?;
            self.scan(|key, stored| {
                if let Ok((header, payload)) = EntryHeader::decode(key, stored)
                    && !header.is_expired(now)
                {
                    entries += 1;
                    let owned = value_size(&header, payload).unwrap_or(0).saturating_sub(
                        match header.kind {
                            EntryKind::Inline => payload.len() as u64,
                            _ => 0,
                        },
                    );
                    bytes += (key.len() + stored.len()) as u64 + owned;
                }
            })?;
            let usage = self.read_usage()?;
            self.take_remote_counters();
            let counters = self.counters.snapshot();
            let unpersisted = counters.minus(&lock(&self.persisted_counters));
            Ok(CacheStats {
                tag: self.tag.to_string(),
                enabled: true,
                entries,
                bytes,
                disk_bytes: usage.get(USAGE_BYTES).copied().unwrap_or(0),
                max_size_bytes: self.options.max_size_bytes,
                max_entries: self.options.max_entries,
                filesystem: self.options.disk_space.space(self.tag_dir()),
                min_free_bytes: self
                    .options
                    .disk_space
                    .space(self.tag_dir())
                    .map(|space| self.options.min_free_space.bytes_of(space.total_bytes)),
                last_cleanup: usage.get(LAST_CLEANUP_MS).map(|ms| system_time(*ms)),
                counters,
                lifetime: self
                    .persisted_lifetime()?
                    .plus(&unpersisted)
                    .plus(&self.reads_file.peek(self.access.hasher())?.counters),
            })
        })
    }

    pub(crate) fn cleanup(&self) -> Result<CleanupReport> {
        self.measure("cleanup", |_| {
            let mut report = CleanupReport::default();
            report.temp_files += self.blob_files.remove_stale_temps()?;
            report.temp_files += self.dir_files.remove_stale_staging()?;
            let aftermath = self.write_counting(|tables, now| {
                tables.mark_cleanup(now);
                let mut doomed: Vec<Vec<u8>> = Vec::new();
                for row in tables.entries().iter().or_db(self)? {
                    let (key, stored) = row.or_db(self)?;
                    let key = key.value();
                    match EntryHeader::decode(key, stored.value()) {
                        Ok((header, _)) if header.is_expired(now) => {
                            report.expired += 1;
                            doomed.push(key.to_vec());
                        }
                        Ok(_) => {
                            let owned = Owned::of(stored.value());
                            let blob_missing = owned
                                .blob
                                .as_ref()
                                .is_some_and(|blob| !self.blob_files.is_present(blob));
                            let dir_missing = owned
                                .dir
                                .as_ref()
                                .is_some_and(|(name, _)| !self.dir_files.is_present(name));
                            if blob_missing || dir_missing {
                                report.missing_files += 1;
                                doomed.push(key.to_vec());
                            }
                        }
                        Err(EntryDecodeError::NewerFormat(_)) => {}
                        Err(EntryDecodeError::Corrupt(_)) => {
                            report.unreadable += 1;
                            doomed.push(key.to_vec());
                        }
                    }
                }
                for key in &doomed {
                    tables.remove(key).or_db(self)?;
                }
                tables.count_expired(report.expired);
                let referenced = self.recount(tables)?;
                // Inside the transaction: no other process can be publishing a blob or a
                // directory (that happens under the write lock too), so a file without an entry
                // here is debris, not a write in progress. Files released by this transaction
                // are removed after its commit (a kill before then must not leave its doomed
                // entries committed without their files), not counted as orphans.
                for (hash, _) in self.blob_files.list()? {
                    let released = tables.releases_blob(&hash);
                    if !referenced.blobs.contains_key(&hash) && !released {
                        self.blob_files.remove(&BlobRef { hash, len: 0 })?;
                        report.orphan_files += 1;
                    }
                }
                for name in self.dir_files.list()? {
                    if !referenced.dirs.contains(&name) && !tables.releases_dir(&name) {
                        self.dir_files.remove(&name)?;
                        report.orphan_files += 1;
                    }
                }
                // After the orphan directories: their files no longer hold content files.
                report.orphan_files += self.content_files.sweep(&referenced.contents)?;
                self.record_content_stats(tables, referenced.contents.iter().map(String::as_str))?;
                // Eviction follows in the commit (`enforce_limits`), on the recounted usage.
                Ok(())
            });
            let ((), outcome) = aftermath?;
            report.expired = outcome.expired;
            report.evicted = outcome.evicted;
            report.compaction = self.compact_if_worthwhile();
            if report.total() + report.orphan_files + report.temp_files > 0 {
                tracing::debug!(tag = %self.tag, ?report, "cleanup removed entries and files");
            }
            Ok(report)
        })
    }

    pub(crate) fn flush(&self) -> Result<()> {
        self.measure("flush", |_| {
            // Under `write_lock`: a commit in progress (the commit thread's) has landed when it
            // is ours, so "nothing uncommitted" then means durable.
            let writer = lock(&self.write_lock);
            if !self.writable.load(std::sync::atomic::Ordering::Acquire)
                && lock(&self.buffer).nothing_pending()
            {
                // An instance that has only read has nothing to make durable: its reads'
                // counts and times go to the reads file at close, without a commit.
                return Ok(());
            }
            if self.has_uncommitted() {
                self.write_holding(&writer, |_, _| Ok(())).map(|_| ())
            } else {
                Ok(())
            }
        })
    }

    /// What `close` leaves behind: an instance that wrote (or has writes or damage found to
    /// commit) commits, with the reads and counters; one that never wrote appends its reads
    /// and counters to the reads file (`reads_file.rs`) instead, so that a process that only
    /// read writes no commit.
    fn flush_at_close(&self) -> Result<()> {
        self.measure("flush", |_| {
            let writer = lock(&self.write_lock);
            // An instance that has written commits at close as it always did (folding in the
            // reads file); only one that never wrote leaves its reads instead.
            let must_commit = self.committer.is_started()
                || self.commits.load(std::sync::atomic::Ordering::Relaxed) > 0
                || {
                    let buffer = lock(&self.buffer);
                    !buffer.nothing_pending() || buffer.has_suspects()
                };
            if !must_commit && self.leave_reads(&writer) {
                return Ok(());
            }
            if !must_commit && !self.writable.load(std::sync::atomic::Ordering::Acquire) {
                // Only reads' counts and times are left (the reads file is full, or cannot be
                // written): a commit folds them in, but failing to (a read-only root) loses
                // statistics, never fails the close of an instance that only read.
                if let Err(err) = self.write_holding(&writer, |_, _| Ok(())) {
                    tracing::debug!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not commit the counts of an instance that only read; lost");
                }
                return Ok(());
            }
            if self.has_uncommitted() {
                self.write_holding(&writer, |_, _| Ok(())).map(|_| ())
            } else {
                Ok(())
            }
        })
    }

    /// Appends this instance's unmerged reads and counters to the reads file; `false`, with
    /// nothing taken, when it cannot (or the file is over its size), for the caller to commit
    /// them instead.
    fn leave_reads(&self, _writer: &MutexGuard<'_, ()>) -> bool {
        self.take_remote_counters();
        let counters_now = self.counters.snapshot();
        let batch = ReadsBatch {
            counters: counters_now.minus(&lock(&self.persisted_counters)),
            seeds: self.access.hasher().seeds(),
            access: self.access.take(),
        };
        if batch.is_empty() {
            return true;
        }
        let appended = self
            .reads_file
            .len()
            .and_then(|len| {
                if len < reads_file::MAX_READS_FILE_BYTES {
                    self.reads_file.append(&batch).map(|()| true)
                } else {
                    Ok(false)
                }
            })
            .unwrap_or_else(|err| {
                tracing::debug!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not leave reads in the reads file; committing them");
                false
            });
        if appended {
            *lock(&self.persisted_counters) = counters_now;
        } else {
            self.access.restore(batch.access);
        }
        appended
    }

    pub(crate) fn close(&self) -> Result<()> {
        {
            if lock(&self.buffer).close() {
                return Ok(());
            }
        }
        let flushed = self.flush_at_close();
        self.committer.shut_down();
        // The snapshot's read transaction must end before the database closes.
        lock(&self.buffer).drop_snapshot();
        let taken = self
            .database
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(open) = taken {
            self.close_when_released(open)?;
        }
        tracing::debug!(tag = %self.tag, "closed cache");
        flushed
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.database
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    pub(crate) fn database_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    pub(crate) fn discard_undecodable(&self, key: &[u8], reason: &str) -> Result<()> {
        self.check_key(key)?;
        // The read was counted as a hit by the store; it was not one.
        self.counters
            .hits
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        AtomicCounters::add(&self.counters.misses, 1);
        AtomicCounters::add(&self.counters.errors, 1);
        // The version to judge is the one stored now, as this process sees it; the commit that
        // judges it removes it only if it is still that version.
        let stored = self.lookup(key, Moment::now(), |stored, _| {
            Ok(stored.map(<[u8]>::to_vec))
        })?;
        if let Some(stored) = stored {
            self.suspect(key, &stored, reason.to_owned());
        }
        Ok(())
    }

    pub(crate) fn run_single_flight(&self, key: &[u8], work: &mut dyn FlightWork) -> Result<()> {
        self.check_key(key)?;
        flight::run(self, key, work)
    }
}
