//! `RedbCache`: the redb-backed [`CacheManager`], one database file per (root, tag), opened in
//! `MultiWriter` mode so that several processes share it.
//!
//! Every write goes through [`RedbCache::write`]: it is the one place that takes the write lock,
//! begins the transaction with a bounded wait, merges pending access records and statistics,
//! and commits. Batching writes (group commit) changes that function alone.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use once_cell::sync::Lazy;
use redb::{
    ConcurrencyMode, Database, DatabaseError, ReadableDatabase, ReadableTable, StorageError, Table,
    TableDefinition, TableError, TableHandle, TransactionError, WriteTransaction,
};

use crate::codec::{EntryDecodeError, EntryHeader, ValueFormat};
use crate::config::CacheOptions;
use crate::error::{CacheError, KeyDisplay, Result};
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

/// File name of a tag's database inside `<root>/<tag>/`.
pub const DATABASE_FILE_NAME: &str = "cache.redb";

/// Pending access records are merged by the next write; past this many distinct keys a read
/// triggers a write of its own, so memory stays bounded.
const ACCESS_PENDING_LIMIT: usize = 10_000;

/// Database files this process has open. redb allows one handle per file per process, so a
/// second coordinator opening the same tag gets a clear error instead of a confusing one.
static OPEN_FILES: Lazy<Mutex<HashSet<PathBuf>>> = Lazy::new(|| Mutex::new(HashSet::new()));

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of our locks cannot leave the guarded data half-updated (every
    // critical section is a single insert/swap), so the data is still valid: recover it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Creates `root` (mode 0700) if needed, checks that it is a directory, and returns its
/// canonical path: the form the coordinator keys its registry with.
pub fn prepare_root(root: &Path) -> Result<PathBuf> {
    match fs::symlink_metadata(root) {
        Ok(meta) if meta.is_dir() || (meta.file_type().is_symlink() && root.is_dir()) => {}
        Ok(_) => {
            return Err(CacheError::InvalidRoot {
                path: root.to_owned(),
                reason: "is not a directory".to_owned(),
            });
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => create_private_dir(root, true)?,
        Err(source) => return Err(CacheError::io("reading cache root", root, source)),
    }
    fs::canonicalize(root).map_err(|source| CacheError::io("resolving cache root", root, source))
}

fn create_private_dir(path: &Path, recursive: bool) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(recursive);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(CacheError::io("creating directory", path, source)),
    }
}

/// Creates `<root>/<tag>/` and an empty database file (mode 0600), refusing symlinks, so that
/// nothing the cache writes can land outside the root.
fn prepare_tag_files(canonical_root: &Path, tag: &Tag) -> Result<PathBuf> {
    let tag_dir = canonical_root.join(tag.as_str());
    match fs::symlink_metadata(&tag_dir) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(CacheError::InvalidRoot {
                path: tag_dir,
                reason: "tag directory is a symlink; refusing to follow it out of the cache root"
                    .to_owned(),
            });
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(CacheError::InvalidRoot {
                path: tag_dir,
                reason: "tag directory is not a directory".to_owned(),
            });
        }
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(&tag_dir, false)?
        }
        Err(source) => return Err(CacheError::io("reading tag directory", tag_dir, source)),
    }
    let path = tag_dir.join(DATABASE_FILE_NAME);
    match fs::symlink_metadata(&path) {
        Ok(meta) if !meta.is_file() => {
            return Err(CacheError::InvalidRoot {
                path,
                reason: "database path is not a regular file (a symlink or directory)".to_owned(),
            });
        }
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options
                .open(&path)
                .map_err(|source| CacheError::io("creating database file", &path, source))?;
        }
        Err(source) => return Err(CacheError::io("reading database file", path, source)),
    }
    Ok(path)
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

/// An open database and its entry in [`OPEN_FILES`]; fields drop in order, so the file is
/// closed before it is unregistered.
struct OpenDatabase {
    database: Database,
    _registration: FileRegistration,
}

struct FileRegistration(PathBuf);

impl FileRegistration {
    fn register(path: &Path) -> Result<Self> {
        if lock(&OPEN_FILES).insert(path.to_owned()) {
            Ok(FileRegistration(path.to_owned()))
        } else {
            Err(CacheError::AlreadyOpenInProcess {
                path: path.to_owned(),
            })
        }
    }
}

impl Drop for FileRegistration {
    fn drop(&mut self) {
        lock(&OPEN_FILES).remove(&self.0);
    }
}

/// Reads not yet written to the access table.
#[derive(Clone, Copy, Debug, Default)]
struct AccessDelta {
    last_ms: u64,
    count: u64,
}

/// The tables of one write transaction.
struct WriteTables<'txn> {
    entries: Table<'txn, &'static [u8], &'static [u8]>,
    access: Table<'txn, &'static [u8], (u64, u64)>,
}

impl WriteTables<'_> {
    /// Removes `key`'s entry and access record; the removed entry's header, if it had a readable
    /// one (`Some(None)` for an unreadable entry).
    fn remove(
        &mut self,
        key: &[u8],
    ) -> std::result::Result<Option<Option<EntryHeader>>, redb::StorageError> {
        let removed = self
            .entries
            .remove(key)?
            .map(|old| EntryHeader::decode(old.value()).ok().map(|(h, _)| h));
        self.access.remove(key)?;
        Ok(removed)
    }
}

/// The redb-backed cache of one (root, tag). Obtain it from a [`crate::Coordinator`].
pub struct RedbCache {
    tag: Tag,
    path: PathBuf,
    options: CacheOptions,
    /// `None` once closed. Operations clone the `Arc` and release the lock at once, so `close`
    /// waits only for operations already inside redb.
    database: RwLock<Option<Arc<OpenDatabase>>>,
    /// Serialises this process's writers, so that threads queue here (fairly, cheaply) instead of
    /// polling redb's cross-process lock.
    write_lock: Mutex<()>,
    counters: AtomicCounters,
    /// The part of `counters` already added to the persisted lifetime counters.
    persisted_counters: Mutex<Counters>,
    access_pending: Mutex<HashMap<Vec<u8>, AccessDelta>>,
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
    /// from [`prepare_root`]. A corrupt file is moved aside and the tag starts empty.
    pub fn open(canonical_root: &Path, tag: Tag, options: CacheOptions) -> Result<Self> {
        options.validate()?;
        let path = prepare_tag_files(canonical_root, &tag)?;
        let registration = FileRegistration::register(&path)?;
        let database = open_or_quarantine(&path, &tag, &options)?;
        let cache = RedbCache {
            tag,
            path,
            options,
            database: RwLock::new(Some(Arc::new(OpenDatabase {
                database,
                _registration: registration,
            }))),
            write_lock: Mutex::new(()),
            counters: AtomicCounters::default(),
            persisted_counters: Mutex::new(Counters::default()),
            access_pending: Mutex::new(HashMap::new()),
        };
        cache.ensure_tables()?;
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
    fn measure<T>(&self, operation: &'static str, run: impl FnOnce() -> Result<T>) -> Result<T> {
        let _span = tracing::trace_span!("cache", operation, tag = %self.tag).entered();
        let started = Instant::now();
        let result = run();
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

    /// The single write path: one transaction that runs `change`, merges the pending access
    /// records and the not-yet-persisted counters, and commits durably.
    fn write<R>(&self, change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>) -> Result<R> {
        let open = self.open_database()?;
        let _writer = lock(&self.write_lock);
        let txn = self.begin_write(&open.database)?;
        let pending_access = std::mem::take(&mut *lock(&self.access_pending));
        let counters_now = self.counters.snapshot();
        let persisted = *lock(&self.persisted_counters);
        let result = self.write_in(txn, change, &pending_access, counters_now.minus(&persisted));
        match result {
            Ok(value) => {
                *lock(&self.persisted_counters) = counters_now;
                Ok(value)
            }
            Err(err) => {
                // Nothing was committed: keep the access records for the next write.
                let mut pending = lock(&self.access_pending);
                for (key, delta) in pending_access {
                    merge_access(pending.entry(key).or_default(), delta);
                }
                Err(err)
            }
        }
    }

    fn write_in<R>(
        &self,
        txn: WriteTransaction,
        change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>,
        pending_access: &HashMap<Vec<u8>, AccessDelta>,
        counters_delta: Counters,
    ) -> Result<R> {
        let value = {
            let mut tables = WriteTables {
                entries: txn.open_table(ENTRIES).or_db(self)?,
                access: txn.open_table(ACCESS).or_db(self)?,
            };
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
            if !counters_delta.is_zero() {
                let mut counters = txn.open_table(COUNTERS).or_db(self)?;
                for (name, delta) in counters_delta.fields() {
                    if delta == 0 {
                        continue;
                    }
                    let old = counters
                        .get(name)
                        .or_db(self)?
                        .map_or(0, |value| value.value());
                    counters
                        .insert(name, old.saturating_add(delta))
                        .or_db(self)?;
                }
            } else {
                txn.open_table(COUNTERS).or_db(self)?;
            }
            value
        };
        txn.commit().or_db(self)?;
        Ok(value)
    }

    fn record_access(&self, key: &[u8]) {
        let now = self.now_ms();
        let over_limit = {
            let mut pending = lock(&self.access_pending);
            merge_access(
                pending.entry(key.to_vec()).or_default(),
                AccessDelta {
                    last_ms: now,
                    count: 1,
                },
            );
            pending.len() > ACCESS_PENDING_LIMIT
        };
        if over_limit && let Err(err) = self.write(|_, _| Ok(())) {
            tracing::warn!(tag = %self.tag, error = %err, "could not record access times; will retry");
        }
    }

    /// Removes an entry found unusable by a read (older schema, corrupt bytes), logging why.
    fn remove_unusable(&self, key: &[u8], reason: &str) {
        tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(key), reason, "removing unusable cache entry");
        if let Err(err) = self.write(|tables, _| tables.remove(key).or_db(self).map(drop)) {
            tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(key), error = %err, "could not remove unusable entry");
        }
    }

    fn read_entry<T>(
        &self,
        key: &[u8],
        read: impl FnOnce(Option<&[u8]>, &redb::ReadOnlyTable<&'static [u8], (u64, u64)>) -> Result<T>,
    ) -> Result<T> {
        let open = self.open_database()?;
        let txn = open.database.begin_read().or_db(self)?;
        let entries = txn.open_table(ENTRIES).or_db(self)?;
        let access = txn.open_table(ACCESS).or_db(self)?;
        let guard = entries.get(key).or_db(self)?;
        read(guard.as_ref().map(|guard| guard.value()), &access)
    }

    fn pending_access(&self, key: &[u8]) -> AccessDelta {
        lock(&self.access_pending)
            .get(key)
            .copied()
            .unwrap_or_default()
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

fn merge_access(into: &mut AccessDelta, delta: AccessDelta) {
    into.last_ms = into.last_ms.max(delta.last_ms);
    into.count += delta.count;
}

fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Opens the file; a file redb reports as corrupt (or that panics redb while opening) is renamed
/// to `cache.redb.corrupt-<ms>` and a fresh one is created: a cache can always be rebuilt, a
/// crash loop cannot.
fn open_or_quarantine(path: &Path, tag: &Tag, options: &CacheOptions) -> Result<Database> {
    let page_cache_bytes = options.page_cache_bytes;
    let open = || {
        std::panic::catch_unwind(|| {
            let mut builder = Database::builder();
            builder
                .set_concurrency_mode(ConcurrencyMode::MultiWriter)
                .set_cache_size(page_cache_bytes);
            builder.create(path)
        })
    };
    let reason = match open() {
        Ok(Ok(database)) => return Ok(database),
        Ok(Err(err)) if is_corruption(&err) => err.to_string(),
        Ok(Err(err)) => return Err(CacheError::database(tag.as_str(), path, err)),
        Err(_) => "redb panicked while opening it".to_owned(),
    };
    let quarantined = path.with_extension(format!("redb.corrupt-{}", options.clock.now_ms()));
    tracing::error!(tag = %tag, path = %path.display(), quarantined = %quarantined.display(), reason, "cache file is corrupt; moved aside, starting empty");
    fs::rename(path, &quarantined)
        .map_err(|source| CacheError::io("quarantining corrupt database", path, source))?;
    let mut options_file = fs::OpenOptions::new();
    options_file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options_file, 0o600);
    options_file
        .open(path)
        .map_err(|source| CacheError::io("creating database file", path, source))?;
    match open() {
        Ok(result) => result.map_err(|err| CacheError::database(tag.as_str(), path, err)),
        Err(_) => Err(CacheError::InvalidRoot {
            path: path.to_owned(),
            reason: "redb panicked opening a fresh file".to_owned(),
        }),
    }
}

fn is_corruption(err: &DatabaseError) -> bool {
    match err {
        DatabaseError::RepairAborted | DatabaseError::UpgradeRequired(_) => true,
        DatabaseError::Storage(StorageError::Corrupted(_)) => true,
        DatabaseError::Storage(StorageError::Io(io)) => {
            io.kind() == std::io::ErrorKind::InvalidData
        }
        _ => false,
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
        self.measure("get", || {
            self.check_key(key)?;
            let now = self.now_ms();
            enum Outcome {
                Hit(Vec<u8>),
                Miss,
                Unusable(String),
            }
            let outcome = self.read_entry(key, |stored, _| {
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
                    self.record_access(key);
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
        self.measure("set", || {
            self.check_key(key)?;
            let limit = self
                .options
                .max_value_bytes
                .min(self.options.max_size_bytes);
            if value.len() as u64 > limit {
                return Err(CacheError::ValueTooLarge {
                    tag: self.tag.to_string(),
                    key: KeyDisplay::new(key),
                    len: value.len() as u64,
                    max: limit,
                });
            }
            // Reads of the value being replaced belong to it, not to the new one.
            lock(&self.access_pending).remove(key);
            self.write(|tables, now| {
                let expires_ms =
                    ttl.map(|ttl| now.saturating_add(ttl.as_millis().min(u64::MAX as u128) as u64));
                let header = EntryHeader {
                    format,
                    created_ms: now,
                    expires_ms,
                };
                tables
                    .entries
                    .insert(key, header.encode_with(value).as_slice())
                    .or_db(self)?;
                tables.access.remove(key).or_db(self)?;
                Ok(())
            })?;
            AtomicCounters::add(&self.counters.sets, 1);
            Ok(())
        })
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        self.delete_many(&[key]).map(|removed| removed == 1)
    }

    fn delete_many(&self, keys: &[&[u8]]) -> Result<usize> {
        self.measure("delete", || {
            for key in keys {
                self.check_key(key)?;
            }
            let removed = self.write(|tables, now| {
                let mut removed = 0;
                for key in keys {
                    if let Some(Some(header)) = tables.remove(key).or_db(self)?
                        && !header.is_expired(now)
                    {
                        removed += 1;
                    }
                }
                Ok(removed)
            })?;
            AtomicCounters::add(&self.counters.deletes, removed as u64);
            Ok(removed)
        })
    }

    fn exists(&self, key: &[u8]) -> Result<bool> {
        self.measure("exists", || {
            self.check_key(key)?;
            let now = self.now_ms();
            self.read_entry(key, |stored, _| {
                Ok(stored
                    .and_then(|stored| EntryHeader::decode(stored).ok())
                    .is_some_and(|(header, _)| !header.is_expired(now)))
            })
        })
    }

    fn clear(&self) -> Result<()> {
        self.measure("clear", || {
            lock(&self.access_pending).clear();
            self.write(|tables, _| {
                tables.entries.retain(|_, _| false).or_db(self)?;
                tables.access.retain(|_, _| false).or_db(self)?;
                Ok(())
            })
        })
    }

    fn keys(&self) -> Result<Vec<Vec<u8>>> {
        self.measure("keys", || {
            let now = self.now_ms();
            let open = self.open_database()?;
            let txn = open.database.begin_read().or_db(self)?;
            let entries = txn.open_table(ENTRIES).or_db(self)?;
            let mut keys = Vec::new();
            for row in entries.iter().or_db(self)? {
                let (key, value) = row.or_db(self)?;
                if EntryHeader::decode(value.value())
                    .is_ok_and(|(header, _)| !header.is_expired(now))
                {
                    keys.push(key.value().to_vec());
                }
            }
            Ok(keys)
        })
    }

    fn get_metadata(&self, key: &[u8]) -> Result<Option<EntryMetadata>> {
        self.measure("get_metadata", || {
            self.check_key(key)?;
            let now = self.now_ms();
            let pending = self.pending_access(key);
            self.read_entry(key, |stored, access| {
                let Some((header, payload)) =
                    stored.and_then(|stored| EntryHeader::decode(stored).ok())
                else {
                    return Ok(None);
                };
                if header.is_expired(now) {
                    return Ok(None);
                }
                let (stored_last, stored_count) = access
                    .get(key)
                    .or_db(self)?
                    .map_or((0, 0), |row| row.value());
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
        self.measure("get_stats", || {
            let now = self.now_ms();
            let (mut entries, mut bytes) = (0u64, 0u64);
            {
                let open = self.open_database()?;
                let txn = open.database.begin_read().or_db(self)?;
                let table = txn.open_table(ENTRIES).or_db(self)?;
                for row in table.iter().or_db(self)? {
                    let (key, value) = row.or_db(self)?;
                    if EntryHeader::decode(value.value())
                        .is_ok_and(|(header, _)| !header.is_expired(now))
                    {
                        entries += 1;
                        bytes += (key.value().len() + value.value().len()) as u64;
                    }
                }
            }
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
        self.measure("cleanup", || {
            let pending_access: HashMap<Vec<u8>, AccessDelta> = lock(&self.access_pending).clone();
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
                    if self.options.eviction_policy == crate::EvictionPolicy::LeastRecentlyUsed {
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
        self.measure("flush", || {
            let nothing_pending = lock(&self.access_pending).is_empty()
                && self
                    .counters
                    .snapshot()
                    .minus(&lock(&self.persisted_counters))
                    .is_zero();
            if nothing_pending {
                Ok(())
            } else {
                self.write(|_, _| Ok(()))
            }
        })
    }

    fn close(&self) -> Result<()> {
        if self.is_closed() {
            return Ok(());
        }
        let flushed = self.flush();
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
    fn a_corrupt_file_is_quarantined_and_the_tag_starts_empty() {
        let root = tempfile::tempdir().unwrap();
        let canonical = prepare_root(root.path()).unwrap();
        let tag_dir = canonical.join("t");
        fs::create_dir(&tag_dir).unwrap();
        fs::write(tag_dir.join(DATABASE_FILE_NAME), vec![0xA5u8; 64 * 1024]).unwrap();
        let cache =
            RedbCache::open(&canonical, Tag::new("t").unwrap(), CacheOptions::default()).unwrap();
        assert_eq!(cache.keys().unwrap(), Vec::<Vec<u8>>::new());
        cache.set(b"k", b"v", None).unwrap();
        assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
        let quarantined: Vec<_> = fs::read_dir(&tag_dir)
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(
            quarantined.len(),
            1,
            "the corrupt file is kept aside for inspection"
        );
    }
}
