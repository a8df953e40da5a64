//! [`CacheManager`] for [`RedbCache`]: the public operations, each a composition of the
//! facets beside it (reads from `read.rs`, writes into `buffer.rs`, commits through
//! `commit.rs`, upkeep from `maintenance.rs`). Nothing here touches a table or a file directly
//! except through those facets.

use super::*;

impl CacheManager for RedbCache {
    fn tag(&self) -> &Tag {
        &self.tag
    }

    fn is_enabled(&self) -> bool {
        true
    }

    fn get_with_format(
        &self,
        key: &[u8],
        format: ValueFormat,
        any: AnyFormat,
    ) -> Result<Option<Vec<u8>>> {
        self.measure("get", |started| {
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

    fn set_with_format(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        format: ValueFormat,
    ) -> Result<()> {
        self.set_many_with_format(&[(key, value)], ttl, format)
    }

    fn set_many_with_format(
        &self,
        items: &[(&[u8], &[u8])],
        ttl: Option<Duration>,
        format: ValueFormat,
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
                    .map(|(key, value)| (*key, Some(header.encode_with(key, value)))),
            )?;
            for (key, value) in large {
                let staged = self.stage_blob(key, &mut &value[..])?;
                self.store_blob(key, staged, format, ttl)?;
            }
            AtomicCounters::add(&self.counters.sets, items.len() as u64);
            Ok(())
        })
    }

    fn set_from_reader(
        &self,
        key: &[u8],
        source: &mut dyn Read,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        self.measure("set", |_| {
            self.check_key(key)?;
            let staged = self.stage_blob(key, &mut CallerIo(source))?;
            let len = staged.blob.len;
            self.forget_pending_reads([key]);
            if len > self.options.blob_threshold_bytes {
                self.store_blob(key, staged, ValueFormat::RAW, ttl)?;
            } else {
                // Small after all: inline, like any small value, and committed like the rest
                // of this method's writes.
                let value = self.blob_files.read_staged(&staged)?;
                let header = self.header(EntryKind::Inline, ValueFormat::RAW, ttl);
                let entry = header.encode_with(key, &value);
                self.write(|tables, _| tables.put(key, &entry).or_db(self))?;
            }
            AtomicCounters::add(&self.counters.sets, 1);
            Ok(len)
        })
    }

    fn get_to_writer(&self, key: &[u8], sink: &mut dyn Write) -> Result<Option<u64>> {
        self.measure("get", |started| {
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
                |sink, blob| self.blob_files.copy_to(blob, sink),
            )?;
            self.count_read(key, now, found.is_some());
            Ok(found)
        })
    }

    fn stage_directory(&self) -> Result<StagedDirectory> {
        self.dir_files.stage()
    }

    fn set_directory(
        &self,
        key: &[u8],
        mut staged: StagedDirectory,
        value: &[u8],
        ttl: Option<Duration>,
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
            let measured = self.dir_files.measure(&staged)?;
            let size = measured.allocated;
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
                Ok(path)
            });
            match result {
                Ok(path) => {
                    AtomicCounters::add(&self.counters.sets, 1);
                    Ok(Some(CachedDirectory {
                        path,
                        value: value.to_vec(),
                        size_bytes: size,
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

    fn get_directory(&self, key: &[u8]) -> Result<Option<CachedDirectory>> {
        self.measure("get", |started| {
            self.check_key(key)?;
            let now = self.now_ms();
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
                    Some((name, size, value, _)) if self.dir_files.is_present(&name) => {
                        break Some(CachedDirectory {
                            path: self.dir_files.path(&name),
                            value,
                            size_bytes: size,
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

    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.delete_many(&[key]).map(|removed| removed == 1)
    }

    fn delete_many(&self, keys: &[&[u8]]) -> Result<usize> {
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
            {
                let mut access = lock(&self.access_pending);
                for key in keys {
                    access.remove(*key);
                }
            }
            // Deleted even when this process did not see it: another process may have just
            // written it.
            self.buffer_writes(keys.iter().map(|key| (*key, None)))?;
            AtomicCounters::add(&self.counters.deletes, existed as u64);
            Ok(existed)
        })
    }

    fn exists(&self, key: &[u8]) -> Result<bool> {
        self.measure("exists", |started| {
            self.check_key(key)?;
            let now = self.now_ms();
            self.lookup(key, started, |stored, _| Ok(is_live(key, stored, now)))
        })
    }

    fn clear(&self) -> Result<()> {
        self.measure("clear", |_| {
            lock(&self.access_pending).clear();
            self.write(|tables, _| {
                // One by one, so that blobs and directories go with their entries.
                tables.clear().or_db(self)?;
                Ok(())
            })
        })
    }

    fn keys(&self) -> Result<Vec<Vec<u8>>> {
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

    fn get_metadata(&self, key: &[u8]) -> Result<Option<EntryMetadata>> {
        self.measure("get_metadata", |started| {
            self.check_key(key)?;
            let now = self.now_ms();
            let pending = lock(&self.access_pending)
                .get(key)
                .copied()
                .unwrap_or_default();
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
                // A buffered value is new: the stored access record belongs to the old one.
                let (stored_last, stored_count) = match snapshot {
                    Some(snapshot) => snapshot
                        .access
                        .get(key)
                        .or_db(self)?
                        .map_or((0, 0), |row| row.value()),
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

    fn get_stats(&self) -> Result<CacheStats> {
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
                lifetime: self.persisted_lifetime()?.plus(&unpersisted),
            })
        })
    }

    fn cleanup(&self) -> Result<CleanupReport> {
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

    fn flush(&self) -> Result<()> {
        self.measure("flush", |_| {
            // Under `write_lock`: a commit in progress (the commit thread's) has landed when it
            // is ours, so "nothing uncommitted" then means durable.
            let writer = lock(&self.write_lock);
            if self.has_uncommitted() {
                self.write_holding(&writer, |_, _| Ok(())).map(|_| ())
            } else {
                Ok(())
            }
        })
    }

    fn close(&self) -> Result<()> {
        {
            if lock(&self.buffer).close() {
                return Ok(());
            }
        }
        let flushed = self.flush();
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

    fn is_closed(&self) -> bool {
        self.database
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    fn database_path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn discard_undecodable(&self, key: &[u8], reason: &str) -> Result<()> {
        self.check_key(key)?;
        // The read was counted as a hit by the store; it was not one.
        self.counters
            .hits
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        AtomicCounters::add(&self.counters.misses, 1);
        AtomicCounters::add(&self.counters.errors, 1);
        // The version to judge is the one stored now, as this process sees it; the commit that
        // judges it removes it only if it is still that version.
        let stored = self.lookup(key, Instant::now(), |stored, _| {
            Ok(stored.map(<[u8]>::to_vec))
        })?;
        if let Some(stored) = stored {
            self.suspect(key, &stored, reason.to_owned());
        }
        Ok(())
    }

    fn run_single_flight(&self, key: &[u8], work: &mut dyn FlightWork) -> Result<()> {
        self.check_key(key)?;
        flight::run(self, key, work)
    }
}
