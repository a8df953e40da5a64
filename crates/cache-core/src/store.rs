//! `RedbCache`: the redb-backed [`CacheManager`], one database file per (root, tag), opened in
//! `MultiWriter` mode so that several processes share it.
//!
//! Writes are group-committed. `set` and `delete` go into this process's write buffer, where
//! every thread of the process sees them at once; the commit thread ([`crate::committer`])
//! commits the buffer in one transaction when its oldest write is `commit_interval` old, and
//! `flush`, `close` and drop commit at once. Every commit goes through [`RedbCache::write`]: the
//! one place that takes the write lock, begins the transaction with a bounded wait, applies the
//! buffer, merges access records and statistics, and commits.
//!
//! Reads look in the write buffer first, then in a read snapshot that is refreshed after each of
//! our commits and whenever it is older than `commit_interval`, so a `get` does not pay for a
//! read transaction of its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition, TableError,
    TableHandle, TransactionError, WriteTransaction,
};

use crate::codec::{EntryDecodeError, EntryHeader, ValueFormat};
use crate::committer::Committer;
use crate::config::{CacheOptions, EvictionPolicy};
use crate::error::{CacheError, KeyDisplay, Result};
use crate::files::{FileRegistration, OpenDatabase, open_or_quarantine, prepare_tag_files};
use crate::manager::{AnyFormat, CacheManager, CleanupReport, EntryMetadata};
use crate::stats::{AtomicCounters, CacheStats, Counters};
use crate::tag::Tag;

/// Key bytes -> entry header + value bytes.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// Key bytes -> (last access ms, access count). Kept apart from entries so that recording reads
/// never rewrites values.
const ACCESS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("access");
/// Counter name -> value: the tag's lifetime statistics, summed over every process.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Pending access records are merged by the next commit. Past this many distinct keys a read
/// asks the commit thread for a commit, so that a read-only process still persists them.
const ACCESS_PENDING_SOFT_LIMIT: usize = 50_000;
/// Past this many, the reader commits them itself: memory stays bounded even if the commit
/// thread cannot keep up.
const ACCESS_PENDING_HARD_LIMIT: usize = 200_000;

/// Back-pressure on the number of buffered writes (bytes are bounded by `max_pending_bytes`).
const MAX_PENDING_WRITES: usize = 100_000;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section over our mutexes is a map insert/remove/swap that cannot leave the
    // data half-updated, so data behind a poisoned lock is still valid: recover it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Maps any redb error of this tag into [`CacheError::Database`].
trait OrDatabaseError<T> {
    fn or_db(self, cache: &RedbCache) -> Result<T>;
}

impl<T, E: Into<redb::Error>> OrDatabaseError<T> for std::result::Result<T, E> {
    fn or_db(self, cache: &RedbCache) -> Result<T> {
        self.map_err(|err| CacheError::database(cache.tag.as_str(), &cache.path, err))
    }
}

/// A map keyed by cache keys.
type KeyMap<V> = HashMap<Vec<u8>, V>;

/// A buffered write: the encoded entry to store, or `None` to delete.
type BufferedWrite = Option<Vec<u8>>;

/// This process's writes that are not yet committed, and the read snapshot.
#[derive(Default)]
struct WriteBuffer {
    /// Writes no commit has taken yet.
    pending: KeyMap<BufferedWrite>,
    /// Bytes of keys and values in `pending`.
    pending_bytes: usize,
    /// Writes taken by the commit in progress; served to readers until that commit lands.
    /// Invariant: empty whenever no commit is in progress.
    in_flight: Arc<KeyMap<BufferedWrite>>,
    /// A recent read snapshot; dropped by each of our commits so the next read sees it.
    snapshot: Option<Arc<Snapshot>>,
    /// Set by `close` before its final commit: later writes are refused, so none can slip in
    /// after that commit and be lost.
    closed: bool,
}

impl WriteBuffer {
    fn buffered(&self, key: &[u8]) -> Option<&BufferedWrite> {
        self.pending.get(key).or_else(|| self.in_flight.get(key))
    }

    fn insert(&mut self, key: &[u8], write: BufferedWrite) {
        let added = key.len() + write.as_ref().map_or(0, Vec::len);
        if let Some(old) = self.pending.insert(key.to_vec(), write) {
            self.pending_bytes -= key.len() + old.as_ref().map_or(0, Vec::len);
        }
        self.pending_bytes += added;
    }

    fn is_over(&self, max_bytes: usize) -> bool {
        self.pending_bytes > max_bytes || self.pending.len() > MAX_PENDING_WRITES
    }
}

/// A read transaction's tables, shared by reads for up to `commit_interval`.
struct Snapshot {
    taken: Instant,
    entries: ReadOnlyTable<&'static [u8], &'static [u8]>,
    access: ReadOnlyTable<&'static [u8], (u64, u64)>,
}

/// Reads not yet written to the access table.
#[derive(Clone, Copy, Debug, Default)]
struct AccessDelta {
    last_ms: u64,
    count: u64,
}

fn merge_access(into: &mut AccessDelta, delta: AccessDelta) {
    into.last_ms = into.last_ms.max(delta.last_ms);
    into.count += delta.count;
}

/// The tables of one write transaction.
struct WriteTables<'txn> {
    entries: Table<'txn, &'static [u8], &'static [u8]>,
    access: Table<'txn, &'static [u8], (u64, u64)>,
}

impl WriteTables<'_> {
    fn remove(&mut self, key: &[u8]) -> std::result::Result<(), redb::StorageError> {
        self.entries.remove(key)?;
        self.access.remove(key)?;
        Ok(())
    }
}

/// Whether stored entry bytes hold a live entry at `now_ms`.
fn is_live(stored: Option<&[u8]>, now_ms: u64) -> bool {
    stored
        .and_then(|bytes| EntryHeader::decode(bytes).ok())
        .is_some_and(|(header, _)| !header.is_expired(now_ms))
}

fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The redb-backed cache of one (root, tag). Obtain it from a [`crate::Coordinator`].
pub struct RedbCache {
    tag: Tag,
    path: PathBuf,
    options: CacheOptions,
    /// `None` once closed. Operations clone the `Arc` and release the lock at once, so `close`
    /// waits only for operations already inside redb.
    database: RwLock<Option<Arc<OpenDatabase>>>,
    /// Serialises this process's commits, so that threads queue here (fairly, cheaply) instead of
    /// polling redb's cross-process lock.
    write_lock: Mutex<()>,
    buffer: Mutex<WriteBuffer>,
    access_pending: Mutex<KeyMap<AccessDelta>>,
    counters: AtomicCounters,
    /// The part of `counters` already added to the persisted lifetime counters.
    persisted_counters: Mutex<Counters>,
    committer: Arc<Committer>,
}

impl std::fmt::Debug for RedbCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbCache")
            .field("tag", &self.tag)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbCache {
    /// Opens (creating if needed) the database of `tag` under `canonical_root`, which must come
    /// from [`crate::prepare_root`], and starts its commit thread. A corrupt file is moved aside
    /// and the tag starts empty.
    pub fn open(canonical_root: &Path, tag: Tag, options: CacheOptions) -> Result<Arc<Self>> {
        options.validate()?;
        let path = prepare_tag_files(canonical_root, &tag)?;
        let registration = FileRegistration::register(&path)?;
        let database = open_or_quarantine(&path, &tag, &options)?;
        let cache = Arc::new(RedbCache {
            tag,
            path,
            database: RwLock::new(Some(Arc::new(OpenDatabase {
                database,
                _registration: registration,
            }))),
            write_lock: Mutex::new(()),
            buffer: Mutex::new(WriteBuffer::default()),
            access_pending: Mutex::new(KeyMap::default()),
            counters: AtomicCounters::default(),
            persisted_counters: Mutex::new(Counters::default()),
            committer: Arc::new(Committer::default()),
            options,
        });
        cache.ensure_tables()?;
        let thread_name = format!("cache-commit-{}", cache.tag);
        cache
            .committer
            .start(
                Arc::downgrade(&cache),
                cache.options.commit_interval,
                thread_name,
            )
            .map_err(|source| {
                CacheError::io("starting the commit thread for", &cache.path, source)
            })?;
        tracing::debug!(tag = %cache.tag, path = %cache.path.display(), "opened cache");
        Ok(cache)
    }

    /// The options this instance was opened with.
    pub fn options(&self) -> &CacheOptions {
        &self.options
    }

    fn now_ms(&self) -> u64 {
        self.options.clock.now_ms()
    }

    fn open_database(&self) -> Result<Arc<OpenDatabase>> {
        let guard = self.database.read().unwrap_or_else(PoisonError::into_inner);
        guard.clone().ok_or_else(|| CacheError::Closed {
            tag: self.tag.to_string(),
        })
    }

    /// Creates the tables on a new file, so that readers never meet a missing table.
    fn ensure_tables(&self) -> Result<()> {
        let open = self.open_database()?;
        let read = open.database.begin_read().or_db(self)?;
        let names: Vec<String> = read
            .list_tables()
            .or_db(self)?
            .map(|handle| handle.name().to_owned())
            .collect();
        drop(read);
        if [ENTRIES.name(), ACCESS.name(), COUNTERS.name()]
            .iter()
            .all(|name| names.iter().any(|n| n == name))
        {
            return Ok(());
        }
        self.write(|_, _| Ok(()))
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(CacheError::EmptyKey {
                tag: self.tag.to_string(),
            });
        }
        if key.len() > self.options.max_key_bytes {
            return Err(CacheError::KeyTooLarge {
                tag: self.tag.to_string(),
                key: KeyDisplay::new(key),
                len: key.len(),
                max: self.options.max_key_bytes,
            });
        }
        Ok(())
    }

    /// Runs one operation: counts it, times it, counts its failure, and logs failures.
    /// `run` gets the operation's start time, which reads reuse to judge the snapshot's age
    /// instead of reading the clock again.
    fn measure<T>(
        &self,
        operation: &'static str,
        run: impl FnOnce(Instant) -> Result<T>,
    ) -> Result<T> {
        let _span = tracing::trace_span!("cache", operation, tag = %self.tag).entered();
        let started = Instant::now();
        let result = run(started);
        AtomicCounters::add(&self.counters.operations, 1);
        AtomicCounters::add(
            &self.counters.operation_time_ns,
            started.elapsed().as_nanos() as u64,
        );
        if let Err(err) = &result {
            AtomicCounters::add(&self.counters.errors, 1);
            tracing::error!(operation, tag = %self.tag, error = %err, "cache operation failed");
        }
        result
    }

    /// Begins a write transaction, waiting at most `timeout` for another process's writer.
    fn begin_write(&self, database: &Database) -> Result<WriteTransaction> {
        let started = Instant::now();
        let mut backoff = Duration::from_micros(50);
        loop {
            match database.try_begin_write() {
                Ok(txn) => return Ok(txn),
                Err(TransactionError::WouldBlock) => {
                    let waited = started.elapsed();
                    if waited >= self.options.timeout {
                        return Err(CacheError::LockTimeout {
                            tag: self.tag.to_string(),
                            path: self.path.clone(),
                            waited,
                        });
                    }
                    std::thread::sleep(backoff.min(self.options.timeout - waited));
                    backoff = (backoff * 2).min(Duration::from_millis(10));
                }
                Err(err) => return Err(err).or_db(self),
            }
        }
    }

    /// The single write path: one durable transaction that applies the write buffer, runs
    /// `change`, merges pending access records and unpersisted counters, and commits. On
    /// failure nothing is lost: the buffered writes and access records go back to the buffer.
    fn write<R>(&self, change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>) -> Result<R> {
        let open = self.open_database()?;
        let _writer = lock(&self.write_lock);
        let txn = self.begin_write(&open.database)?;
        let in_flight = {
            let mut buffer = lock(&self.buffer);
            debug_assert!(
                buffer.in_flight.is_empty(),
                "commits are serialised by write_lock"
            );
            buffer.pending_bytes = 0;
            let taken = Arc::new(std::mem::take(&mut buffer.pending));
            buffer.in_flight = Arc::clone(&taken);
            taken
        };
        let pending_access = std::mem::take(&mut *lock(&self.access_pending));
        let counters_now = self.counters.snapshot();
        let counters_delta = counters_now.minus(&lock(&self.persisted_counters));
        let result = self.write_in(txn, change, &in_flight, &pending_access, counters_delta);
        let mut buffer = lock(&self.buffer);
        let in_flight = std::mem::take(&mut buffer.in_flight);
        match result {
            Ok(value) => {
                buffer.snapshot = None;
                *lock(&self.persisted_counters) = counters_now;
                Ok(value)
            }
            Err(err) => {
                // Writes made since this commit began are newer and win.
                for (key, write) in in_flight.iter() {
                    if !buffer.pending.contains_key(key) {
                        buffer.insert(key, write.clone());
                    }
                }
                drop(buffer);
                let mut access = lock(&self.access_pending);
                for (key, delta) in pending_access {
                    merge_access(access.entry(key).or_default(), delta);
                }
                Err(err)
            }
        }
    }

    fn write_in<R>(
        &self,
        txn: WriteTransaction,
        change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>,
        in_flight: &KeyMap<BufferedWrite>,
        pending_access: &KeyMap<AccessDelta>,
        counters_delta: Counters,
    ) -> Result<R> {
        let value = {
            let mut tables = WriteTables {
                entries: txn.open_table(ENTRIES).or_db(self)?,
                access: txn.open_table(ACCESS).or_db(self)?,
            };
            for (key, write) in in_flight {
                match write {
                    // A new value starts with no reads; reads of it since are merged below.
                    Some(entry) => {
                        tables
                            .entries
                            .insert(key.as_slice(), entry.as_slice())
                            .or_db(self)?;
                        tables.access.remove(key.as_slice()).or_db(self)?;
                    }
                    None => tables.remove(key).or_db(self)?,
                }
            }
            let value = change(&mut tables, self.now_ms())?;
            for (key, delta) in pending_access {
                // Reads of entries removed since are dropped with them.
                if tables.entries.get(key.as_slice()).or_db(self)?.is_none() {
                    continue;
                }
                let (last, count) = tables
                    .access
                    .get(key.as_slice())
                    .or_db(self)?
                    .map_or((0, 0), |old| old.value());
                tables
                    .access
                    .insert(
                        key.as_slice(),
                        (last.max(delta.last_ms), count + delta.count),
                    )
                    .or_db(self)?;
            }
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
            value
        };
        txn.commit().or_db(self)?;
        Ok(value)
    }

    /// Whether anything waits to be committed: buffered writes, access records or counters.
    fn has_uncommitted(&self) -> bool {
        !lock(&self.buffer).pending.is_empty()
            || !lock(&self.access_pending).is_empty()
            || !self
                .counters
                .snapshot()
                .minus(&lock(&self.persisted_counters))
                .is_zero()
    }

    /// Commits buffered writes and access records, if any; called by the commit thread.
    pub(crate) fn commit_pending_in_background(&self) -> Result<()> {
        let idle = lock(&self.buffer).pending.is_empty() && lock(&self.access_pending).is_empty();
        if idle || self.is_closed() {
            return Ok(());
        }
        self.write(|_, _| Ok(())).inspect_err(|err| {
            AtomicCounters::add(&self.counters.errors, 1);
            tracing::error!(tag = %self.tag, error = %err, "group commit failed; the writes stay buffered and will be retried");
        })
    }

    /// Adds writes to the buffer and schedules their commit; past the back-pressure bound the
    /// caller commits them itself.
    fn buffer_writes<'k>(
        &self,
        writes: impl IntoIterator<Item = (&'k [u8], BufferedWrite)>,
    ) -> Result<()> {
        let over = {
            let mut buffer = lock(&self.buffer);
            if buffer.closed {
                return Err(CacheError::Closed {
                    tag: self.tag.to_string(),
                });
            }
            for (key, write) in writes {
                buffer.insert(key, write);
            }
            buffer.is_over(self.options.max_pending_bytes)
        };
        if over {
            self.write(|_, _| Ok(()))
        } else {
            self.committer.work_arrived();
            Ok(())
        }
    }

    /// Finds `key` as this process sees it: its own uncommitted writes first, then the snapshot.
    /// `read` gets the stored bytes, and the snapshot when they came from it.
    fn lookup<T>(
        &self,
        key: &[u8],
        now: Instant,
        read: impl FnOnce(Option<&[u8]>, Option<&Snapshot>) -> Result<T>,
    ) -> Result<T> {
        let snapshot = {
            let mut buffer = lock(&self.buffer);
            if let Some(write) = buffer.buffered(key) {
                return read(write.as_deref(), None);
            }
            self.current_snapshot(&mut buffer, now)?
        };
        let guard = snapshot.entries.get(key).or_db(self)?;
        read(guard.as_ref().map(|guard| guard.value()), Some(&snapshot))
    }

    fn current_snapshot(&self, buffer: &mut WriteBuffer, now: Instant) -> Result<Arc<Snapshot>> {
        if let Some(snapshot) = &buffer.snapshot
            && now.saturating_duration_since(snapshot.taken) < self.options.commit_interval
        {
            return Ok(Arc::clone(snapshot));
        }
        let open = self.open_database()?;
        let txn = open.database.begin_read().or_db(self)?;
        let snapshot = Arc::new(Snapshot {
            taken: Instant::now(),
            entries: txn.open_table(ENTRIES).or_db(self)?,
            access: txn.open_table(ACCESS).or_db(self)?,
        });
        buffer.snapshot = Some(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    fn record_access(&self, key: &[u8], now_ms: u64) {
        let delta = AccessDelta {
            last_ms: now_ms,
            count: 1,
        };
        let pending_keys = {
            let mut pending = lock(&self.access_pending);
            match pending.get_mut(key) {
                Some(existing) => merge_access(existing, delta),
                None => {
                    pending.insert(key.to_vec(), delta);
                }
            }
            pending.len()
        };
        if pending_keys > ACCESS_PENDING_HARD_LIMIT {
            if let Err(err) = self.write(|_, _| Ok(())) {
                tracing::warn!(tag = %self.tag, error = %err, "could not record access times; will retry");
            }
        } else if pending_keys > ACCESS_PENDING_SOFT_LIMIT {
            self.committer.work_arrived();
        }
    }

    /// Schedules the removal of an entry a read found unusable (older schema, corrupt bytes).
    fn remove_unusable(&self, key: &[u8], reason: &str) {
        tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(key), reason, "removing unusable cache entry");
        if let Err(err) = self.buffer_writes([(key, None)]) {
            tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(key), error = %err, "could not remove unusable entry");
        }
    }

    /// Commits whatever is buffered, so that a scan of the file sees this process's writes.
    fn commit_if_buffered(&self) -> Result<()> {
        if lock(&self.buffer).pending.is_empty() {
            Ok(())
        } else {
            self.write(|_, _| Ok(()))
        }
    }

    /// Calls `visit` with every stored (key, entry bytes) in a fresh read transaction.
    fn scan(&self, mut visit: impl FnMut(&[u8], &[u8])) -> Result<()> {
        self.commit_if_buffered()?;
        let open = self.open_database()?;
        let txn = open.database.begin_read().or_db(self)?;
        let entries = txn.open_table(ENTRIES).or_db(self)?;
        for row in entries.iter().or_db(self)? {
            let (key, value) = row.or_db(self)?;
            visit(key.value(), value.value());
        }
        Ok(())
    }

    /// The lifetime counters persisted in the file.
    fn persisted_lifetime(&self) -> Result<Counters> {
        let open = self.open_database()?;
        let txn = open.database.begin_read().or_db(self)?;
        let table = match txn.open_table(COUNTERS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Counters::default()),
            Err(err) => return Err(err).or_db(self),
        };
        let mut counters = Counters::default();
        for row in table.iter().or_db(self)? {
            let (name, value) = row.or_db(self)?;
            counters.set_field(name.value(), value.value());
        }
        Ok(counters)
    }
}

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
        enum Outcome {
            Hit(Vec<u8>),
            Miss,
            Unusable(String),
        }
        self.measure("get", |started| {
            self.check_key(key)?;
            let now = self.now_ms();
            let outcome = self.lookup(key, started, |stored, _| {
                let Some(stored) = stored else { return Ok(Outcome::Miss) };
                Ok(match EntryHeader::decode(stored) {
                    Ok((header, _)) if header.is_expired(now) => Outcome::Miss,
                    Ok((header, _)) if any == AnyFormat::No && header.format != format => Outcome::Unusable(format!(
                        "stored as {:?}, read as {:?} (schema changed)",
                        header.format, format
                    )),
                    Ok((_, payload)) => Outcome::Hit(payload.to_vec()),
                    Err(EntryDecodeError::NewerFormat(version)) => {
                        tracing::debug!(tag = %self.tag, version, "entry written by a newer version; treated as a miss");
                        Outcome::Miss
                    }
                    Err(EntryDecodeError::Corrupt(reason)) => Outcome::Unusable(reason.to_owned()),
                })
            })?;
            match outcome {
                Outcome::Hit(value) => {
                    AtomicCounters::add(&self.counters.hits, 1);
                    self.record_access(key, now);
                    Ok(Some(value))
                }
                Outcome::Miss => {
                    AtomicCounters::add(&self.counters.misses, 1);
                    Ok(None)
                }
                Outcome::Unusable(reason) => {
                    AtomicCounters::add(&self.counters.misses, 1);
                    self.remove_unusable(key, &reason);
                    Ok(None)
                }
            }
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
            let limit = self
                .options
                .max_value_bytes
                .min(self.options.max_size_bytes);
            for (key, value) in items {
                self.check_key(key)?;
                if value.len() as u64 > limit {
                    return Err(CacheError::ValueTooLarge {
                        tag: self.tag.to_string(),
                        key: KeyDisplay::new(key),
                        len: value.len() as u64,
                        max: limit,
                    });
                }
            }
            let now = self.now_ms();
            let expires_ms =
                ttl.map(|ttl| now.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64));
            let header = EntryHeader {
                format,
                created_ms: now,
                expires_ms,
            };
            {
                // Reads of the values being replaced belong to them, not to the new ones.
                let mut access = lock(&self.access_pending);
                for (key, _) in items {
                    access.remove(*key);
                }
            }
            self.buffer_writes(
                items
                    .iter()
                    .map(|(key, value)| (*key, Some(header.encode_with(value)))),
            )?;
            AtomicCounters::add(&self.counters.sets, items.len() as u64);
            Ok(())
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
                if self.lookup(key, started, |stored, _| Ok(is_live(stored, now)))? {
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
            self.lookup(key, started, |stored, _| Ok(is_live(stored, now)))
        })
    }

    fn clear(&self) -> Result<()> {
        self.measure("clear", |_| {
            lock(&self.access_pending).clear();
            self.write(|tables, _| {
                tables.entries.retain(|_, _| false).or_db(self)?;
                tables.access.retain(|_, _| false).or_db(self)?;
                Ok(())
            })
        })
    }

    fn keys(&self) -> Result<Vec<Vec<u8>>> {
        self.measure("keys", |_| {
            let now = self.now_ms();
            let mut keys = Vec::new();
            self.scan(|key, stored| {
                if is_live(Some(stored), now) {
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
                    stored.and_then(|stored| EntryHeader::decode(stored).ok())
                else {
                    return Ok(None);
                };
                if header.is_expired(now) {
                    return Ok(None);
                }
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
                    size_bytes: payload.len() as u64,
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
            self.scan(|key, stored| {
                if is_live(Some(stored), now) {
                    entries += 1;
                    bytes += (key.len() + stored.len()) as u64;
                }
            })?;
            let counters = self.counters.snapshot();
            let unpersisted = counters.minus(&lock(&self.persisted_counters));
            Ok(CacheStats {
                tag: self.tag.to_string(),
                enabled: true,
                entries,
                bytes,
                max_size_bytes: self.options.max_size_bytes,
                counters,
                lifetime: self.persisted_lifetime()?.plus(&unpersisted),
            })
        })
    }

    fn cleanup(&self) -> Result<CleanupReport> {
        self.measure("cleanup", |_| {
            let pending_access: KeyMap<AccessDelta> = lock(&self.access_pending).clone();
            let report = self.write(|tables, now| {
                let mut report = CleanupReport::default();
                // (eviction order, key, bytes) of every live entry.
                let mut live: Vec<(u64, Vec<u8>, u64)> = Vec::new();
                let mut doomed: Vec<Vec<u8>> = Vec::new();
                for row in tables.entries.iter().or_db(self)? {
                    let (key, value) = row.or_db(self)?;
                    let key_bytes = key.value().to_vec();
                    match EntryHeader::decode(value.value()) {
                        Ok((header, _)) if header.is_expired(now) => {
                            report.expired += 1;
                            doomed.push(key_bytes);
                        }
                        Ok((header, _)) => {
                            let size = (key_bytes.len() + value.value().len()) as u64;
                            live.push((header.created_ms, key_bytes, size));
                        }
                        Err(EntryDecodeError::NewerFormat(_)) => {}
                        Err(EntryDecodeError::Corrupt(_)) => {
                            report.unreadable += 1;
                            doomed.push(key_bytes);
                        }
                    }
                }
                for key in &doomed {
                    tables.remove(key).or_db(self)?;
                }
                let mut total: u64 = live.iter().map(|(_, _, size)| size).sum();
                if total > self.options.max_size_bytes {
                    if self.options.eviction_policy == EvictionPolicy::LeastRecentlyUsed {
                        for (order, key, _) in &mut live {
                            let stored = tables
                                .access
                                .get(key.as_slice())
                                .or_db(self)?
                                .map_or(0, |row| row.value().0);
                            let pending = pending_access.get(key).map_or(0, |delta| delta.last_ms);
                            *order = (*order).max(stored).max(pending);
                        }
                    }
                    live.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
                    for (_, key, size) in &live {
                        if total <= self.options.max_size_bytes {
                            break;
                        }
                        tables.remove(key).or_db(self)?;
                        total -= size;
                        report.evicted += 1;
                    }
                }
                Ok(report)
            })?;
            AtomicCounters::add(&self.counters.expirations, report.expired);
            AtomicCounters::add(&self.counters.evictions, report.evicted);
            if report.total() > 0 {
                tracing::debug!(tag = %self.tag, ?report, "cleanup removed entries");
            }
            Ok(report)
        })
    }

    fn flush(&self) -> Result<()> {
        self.measure("flush", |_| {
            if self.has_uncommitted() {
                self.write(|_, _| Ok(()))
            } else {
                Ok(())
            }
        })
    }

    fn close(&self) -> Result<()> {
        {
            let mut buffer = lock(&self.buffer);
            if buffer.closed {
                return Ok(());
            }
            buffer.closed = true;
        }
        let flushed = self.flush();
        self.committer.shut_down();
        // The snapshot's read transaction must end before the database closes.
        lock(&self.buffer).snapshot = None;
        let taken = self
            .database
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(open) = taken {
            // Other threads may still hold the handle for an operation in flight; the file then
            // closes when the last of them finishes.
            if let Ok(open) = Arc::try_unwrap(open) {
                let OpenDatabase {
                    database,
                    _registration,
                } = open;
                database
                    .close()
                    .map_err(|err| CacheError::database(self.tag.as_str(), &self.path, err))?;
            }
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
        self.remove_unusable(key, reason);
        Ok(())
    }
}

impl Drop for RedbCache {
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            tracing::warn!(tag = %self.tag, error = %err, "closing cache on drop failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::prepare_root;

    fn open_in(root: &Path, options: CacheOptions) -> Arc<RedbCache> {
        let canonical = prepare_root(root).unwrap();
        RedbCache::open(&canonical, Tag::new("t").unwrap(), options).unwrap()
    }

    #[test]
    fn a_second_open_of_one_file_in_one_process_is_a_clear_error() {
        let root = tempfile::tempdir().unwrap();
        let canonical = prepare_root(root.path()).unwrap();
        let tag = Tag::new("t").unwrap();
        let first = RedbCache::open(&canonical, tag.clone(), CacheOptions::default()).unwrap();
        let second = RedbCache::open(&canonical, tag.clone(), CacheOptions::default()).unwrap_err();
        assert!(
            matches!(second, CacheError::AlreadyOpenInProcess { .. }),
            "{second}"
        );
        first.close().unwrap();
        // Closing releases the registration: the file can be opened again.
        RedbCache::open(&canonical, tag, CacheOptions::default()).unwrap();
    }

    #[test]
    fn writes_are_buffered_until_the_commit_interval_or_a_flush() {
        let root = tempfile::tempdir().unwrap();
        let options = CacheOptions {
            commit_interval: Duration::from_secs(3600),
            ..CacheOptions::default()
        };
        let cache = open_in(root.path(), options);
        cache.set(b"k", b"v", None).unwrap();
        assert_eq!(
            cache.get(b"k").unwrap(),
            Some(b"v".to_vec()),
            "a process reads its own writes at once"
        );
        assert_eq!(lock(&cache.buffer).pending.len(), 1, "not committed yet");
        cache.flush().unwrap();
        assert!(lock(&cache.buffer).pending.is_empty());
        assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn the_commit_thread_commits_within_the_interval() {
        let root = tempfile::tempdir().unwrap();
        let options = CacheOptions {
            commit_interval: Duration::from_millis(5),
            ..CacheOptions::default()
        };
        let cache = open_in(root.path(), options);
        cache.set(b"k", b"v", None).unwrap();
        // Waits for an event, not a duration: the loop ends as soon as the buffer is committed,
        // and only a commit thread that never runs would exhaust it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !lock(&cache.buffer).pending.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            lock(&cache.buffer).pending.is_empty(),
            "the commit thread never committed"
        );
    }

    #[test]
    fn back_pressure_commits_in_the_writer_when_the_buffer_is_full() {
        let root = tempfile::tempdir().unwrap();
        let options = CacheOptions {
            commit_interval: Duration::from_secs(3600),
            max_pending_bytes: 1024,
            ..CacheOptions::default()
        };
        let cache = open_in(root.path(), options);
        for index in 0..20u8 {
            cache.set(&[b'k', index], &[0u8; 100], None).unwrap();
            assert!(lock(&cache.buffer).pending_bytes <= 1024 + 2 + 100 + 22);
        }
        assert!(
            lock(&cache.buffer).pending.len() < 20,
            "some writes were committed by the writer itself"
        );
    }

    #[test]
    fn set_many_with_one_invalid_item_stores_none_of_them() {
        let root = tempfile::tempdir().unwrap();
        let options = CacheOptions {
            max_value_bytes: 8,
            ..CacheOptions::default()
        };
        let cache = open_in(root.path(), options);
        let items: [(&[u8], &[u8]); 3] = [(b"a", b"ok"), (b"b", b"far too long"), (b"c", b"ok")];
        let err = cache.set_many(&items, None).unwrap_err();
        assert!(matches!(err, CacheError::ValueTooLarge { .. }), "{err}");
        assert!(lock(&cache.buffer).pending.is_empty());
        assert_eq!(cache.keys().unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn set_many_buffers_all_items_for_one_commit() {
        let root = tempfile::tempdir().unwrap();
        let options = CacheOptions {
            commit_interval: Duration::from_secs(3600),
            ..CacheOptions::default()
        };
        let cache = open_in(root.path(), options);
        let items: Vec<(Vec<u8>, Vec<u8>)> = (0..100u32)
            .map(|i| (i.to_be_bytes().to_vec(), vec![1u8; 10]))
            .collect();
        let borrowed: Vec<(&[u8], &[u8])> = items
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        cache.set_many(&borrowed, None).unwrap();
        assert_eq!(lock(&cache.buffer).pending.len(), 100);
        assert_eq!(
            cache.keys().unwrap().len(),
            100,
            "keys() commits the buffer and scans the file"
        );
    }
}
