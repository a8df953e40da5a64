//! `RedbCache`: the redb-backed [`CacheManager`], one database file per (root, tag), opened in
//! `MultiWriter` mode so that several processes share it.
//!
//! Writes are group-committed. `set` and `delete` go into this process's write buffer, where
//! every thread of the process sees them at once; the commit thread ([`crate::store::committer`])
//! commits the buffer in one transaction when its oldest write is `commit_interval` old, and
//! `flush`, `close` and drop commit at once. Every commit goes through [`RedbCache::write`]: the
//! one place that takes the write lock, begins the transaction with a bounded wait, applies the
//! buffer, merges access records and statistics, and commits.
//!
//! Reads look in the write buffer first, then in a read snapshot that is refreshed after each of
//! our commits and whenever it is older than `commit_interval`, so a `get` does not pay for a
//! read transaction of its own.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition, TableError,
    TableHandle, TransactionError, WriteTransaction,
};

use crate::codec::{
    BlobRef, DirRef, ENTRY_HEADER_LEN, EntryDecodeError, EntryHeader, EntryKind, ValueFormat,
};
use crate::config::{CacheOptions, EvictionPolicy};
use crate::error::{CacheError, KeyDisplay, Result};
use crate::files::{
    FileRegistration, OpenDatabase, open_or_quarantine, prepare_tag_files,
    quarantine_and_start_fresh,
};
use crate::flight::{self, FlightWork, Flights};
use crate::manager::{AnyFormat, CacheManager, CleanupReport, Compaction, EntryMetadata};
use crate::stats::{AtomicCounters, CacheStats, Counters};
use crate::tag::Tag;
use blobs::{BlobFiles, BlobRead, StageError, StagedBlob};
use committer::Committer;
use dirs::{CachedDirectory, DirFiles, StagedDirectory};

pub(crate) mod blobs;
mod budget;
mod committer;
pub(crate) mod dirs;

/// Key bytes -> entry header + value bytes.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// Key bytes -> (last access ms, access count). Kept apart from entries so that recording reads
/// never rewrites values.
const ACCESS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("access");
/// Counter name -> value: the tag's lifetime statistics, summed over every process.
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Blob hash -> (entries referring to it, its length). Identical values share one blob file,
/// which is removed when its last entry goes.
const BLOBS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("blobs");
/// What the limits count, kept exact by every commit: `bytes` (keys, entries, each blob once,
/// owned directories) and `entries`; and `last_cleanup_ms`.
const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
const USAGE_BYTES: &str = "bytes";
const USAGE_ENTRIES: &str = "entries";
const LAST_CLEANUP_MS: &str = "last_cleanup_ms";

/// Every commit looks at this many entries (from where the last one stopped) and removes the
/// expired ones, so that expired entries go without a full `cleanup()`, at a bounded cost.
const SWEEP_BATCH: usize = 32;
/// A commit that passes a limit evicts down to this share of it (percent), so that eviction,
/// which scans the tag, runs once per tenth of the limit written rather than on every commit.
const EVICT_TO_PERCENT: u64 = 90;
/// `cleanup()` compacts the file when its dead space passes both of these.
const COMPACT_MIN_DEAD_BYTES: u64 = 16 * 1024 * 1024;
const COMPACT_MIN_DEAD_SHARE_PERCENT: u64 = 25;

/// Pending access records are merged by the next commit. Past this many distinct keys a read
/// asks the commit thread for a commit, so that a read-only process still persists them.
const ACCESS_PENDING_SOFT_LIMIT: usize = 50_000;
/// Past this many, the reader commits them itself: memory stays bounded even if the commit
/// thread cannot keep up.
const ACCESS_PENDING_HARD_LIMIT: usize = 200_000;

/// Back-pressure on the number of buffered writes (bytes are bounded by `max_pending_bytes`).
const MAX_PENDING_WRITES: usize = 100_000;

/// Damaged entries remembered for the next commit to judge; more wait for a later read or for
/// `cleanup()`.
const MAX_SUSPECTS: usize = 1024;

/// An entry a read found unusable: its key, the exact stored bytes the read saw, and why.
#[derive(Clone)]
struct Suspect {
    key: Vec<u8>,
    stored: Vec<u8>,
    reason: String,
}

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
    /// Entry versions reads found damaged: hidden from this process's reads, and judged (and
    /// removed if still damaged) by the next commit, which drops them from here once it lands.
    suspects: Vec<Suspect>,
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

    /// Whether `stored` is an entry version a read of this process found damaged.
    fn is_suspect(&self, stored: &[u8]) -> bool {
        self.suspects.iter().any(|suspect| suspect.stored == stored)
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

/// What an entry owns on disk besides its own bytes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Owned {
    blob: Option<BlobRef>,
    dir: Option<(String, u64)>,
}

impl Owned {
    fn of(stored: &[u8]) -> Owned {
        let Ok((header, payload)) = EntryHeader::parse(stored) else {
            return Owned::default();
        };
        match header.kind {
            EntryKind::Inline => Owned::default(),
            EntryKind::Blob => Owned {
                blob: BlobRef::decode(payload).ok(),
                dir: None,
            },
            EntryKind::Directory => Owned {
                blob: None,
                dir: DirRef::decode(payload)
                    .ok()
                    .map(|(dir, _)| (dir.name.to_owned(), dir.size)),
            },
        }
    }

    /// Bytes an entry counts for in the size limit, its blob aside (blobs count once, when their
    /// first entry takes them).
    fn accounted(&self, key_len: usize, stored_len: usize) -> u64 {
        (key_len + stored_len) as u64 + self.dir.as_ref().map_or(0, |(_, size)| *size)
    }
}

/// The tables of one write transaction, and what it changes besides them.
struct WriteTables<'txn> {
    /// The transaction, for tables only some commits open (the single-flight leases).
    txn: &'txn WriteTransaction,
    entries: Table<'txn, &'static [u8], &'static [u8]>,
    access: Table<'txn, &'static [u8], (u64, u64)>,
    blobs: Table<'txn, &'static [u8], (u64, u64)>,
    /// The tag's usage as of this transaction: loaded at its start, kept by `put` and `remove`,
    /// stored at its end.
    bytes: u64,
    entry_count: u64,
    /// Blobs whose last entry went: their files are removed after the commit has landed, and
    /// only if no commit since has taken them again (`RedbCache::remove_released_blobs`).
    released_blobs: Vec<BlobRef>,
    /// Directories whose entry went: removed after the commit (their names are never reused).
    released_dirs: Vec<String>,
    expired: u64,
    evicted: u64,
    /// Set by `cleanup()`: recorded in the usage table.
    last_cleanup_ms: Option<u64>,
}

type StorageResult<T> = std::result::Result<T, redb::StorageError>;

impl WriteTables<'_> {
    /// Stores `entry` under `key`, releasing what the entry it replaces owned. A blob `entry`
    /// refers to must already be in place.
    fn put(&mut self, key: &[u8], entry: &[u8]) -> StorageResult<()> {
        let owned = Owned::of(entry);
        // Taken before the old entry is released, so that rewriting a key with the same blob
        // never drops the blob's count to zero on the way.
        if let Some(blob) = &owned.blob {
            self.retain_blob(blob)?;
        }
        let old = self
            .entries
            .insert(key, entry)?
            .map(|old| (old.value().len(), Owned::of(old.value())));
        if let Some((old_len, old_owned)) = old {
            self.forget(key.len(), old_len, old_owned)?;
        }
        self.access.remove(key)?;
        self.bytes = self
            .bytes
            .saturating_add(owned.accounted(key.len(), entry.len()));
        self.entry_count += 1;
        Ok(())
    }

    /// Removes `key` with what it owns; whether it was there.
    fn remove(&mut self, key: &[u8]) -> StorageResult<bool> {
        let old = self
            .entries
            .remove(key)?
            .map(|old| (old.value().len(), Owned::of(old.value())));
        self.access.remove(key)?;
        match old {
            Some((old_len, old_owned)) => {
                self.forget(key.len(), old_len, old_owned)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn forget(&mut self, key_len: usize, stored_len: usize, owned: Owned) -> StorageResult<()> {
        self.bytes = self
            .bytes
            .saturating_sub(owned.accounted(key_len, stored_len));
        self.entry_count = self.entry_count.saturating_sub(1);
        if let Some(blob) = owned.blob {
            self.release_blob(&blob)?;
        }
        if let Some((name, _)) = owned.dir {
            self.released_dirs.push(name);
        }
        Ok(())
    }

    fn retain_blob(&mut self, blob: &BlobRef) -> StorageResult<()> {
        let refs = self
            .blobs
            .get(blob.hash.as_slice())?
            .map_or(0, |row| row.value().0);
        if refs == 0 {
            self.bytes = self.bytes.saturating_add(blob.len);
        }
        self.blobs
            .insert(blob.hash.as_slice(), (refs + 1, blob.len))?;
        Ok(())
    }

    fn release_blob(&mut self, blob: &BlobRef) -> StorageResult<()> {
        let refs = self
            .blobs
            .get(blob.hash.as_slice())?
            .map(|row| row.value().0);
        match refs {
            Some(refs) if refs > 1 => {
                self.blobs
                    .insert(blob.hash.as_slice(), (refs - 1, blob.len))?;
            }
            Some(_) => {
                self.blobs.remove(blob.hash.as_slice())?;
                self.bytes = self.bytes.saturating_sub(blob.len);
                self.released_blobs.push(*blob);
            }
            None => self.released_blobs.push(*blob),
        }
        Ok(())
    }
}

/// What the entries of a tag refer to: blobs (with their reference count and length) and owned
/// directories.
#[derive(Default)]
struct Referenced {
    blobs: HashMap<[u8; 32], (u64, u64)>,
    dirs: HashSet<String>,
}

/// What a read found under a key. `Blob` and `Unusable` keep the stored entry bytes, which
/// identify the very version read if it has to be reported as damaged.
enum Found {
    Value(Vec<u8>),
    Blob { blob: BlobRef, stored: Vec<u8> },
    Nothing,
    Unusable { reason: String, stored: Vec<u8> },
}

/// What delivering a found entry came to.
enum Delivered<T> {
    /// The value (or a miss), counted.
    Done(Option<T>),
    /// The entry's blob is missing, which a snapshot older than the commit that replaced or
    /// removed the entry explains: read again from a fresh one before calling it damage.
    BlobMissing,
}

/// What a landed commit leaves to do, and what it did.
struct Aftermath {
    /// Blobs whose last reference this commit dropped: their files go once it has landed.
    released_blobs: Vec<BlobRef>,
    /// Directories whose entry this commit removed: they go once it has landed.
    released_dirs: Vec<String>,
    expired: u64,
    evicted: u64,
    bytes: u64,
    entries: u64,
}

impl Aftermath {
    /// The commit's expirations and evictions as counters.
    fn removal_counters(&self) -> Counters {
        removal_counters(self.expired, self.evicted)
    }
}

/// Expirations and evictions as counters.
fn removal_counters(expired: u64, evicted: u64) -> Counters {
    Counters {
        expirations: expired,
        evictions: evicted,
        ..Counters::default()
    }
}

/// What one commit removed besides what it was asked to.
#[derive(Clone, Copy, Debug, Default)]
struct CommitOutcome {
    expired: u64,
    evicted: u64,
}

/// The size of an entry's value: inline bytes, the blob's length, or the directory's size plus
/// the value stored with it. `None` when the reference is damaged.
fn value_size(header: &EntryHeader, payload: &[u8]) -> Option<u64> {
    match header.kind {
        EntryKind::Inline => Some(payload.len() as u64),
        EntryKind::Blob => BlobRef::decode(payload).ok().map(|blob| blob.len),
        EntryKind::Directory => DirRef::decode(payload)
            .ok()
            .map(|(dir, value)| dir.size + value.len() as u64),
    }
}

/// Whether the stored entry bytes of `key` hold a live, intact entry at `now_ms`.
fn is_live(key: &[u8], stored: Option<&[u8]>, now_ms: u64) -> bool {
    stored
        .and_then(|bytes| EntryHeader::decode(key, bytes).ok())
        .is_some_and(|(header, _)| !header.is_expired(now_ms))
}

/// Whether `err` is an I/O failure of a redb handle, after which redb refuses every later
/// operation on that handle ("previous I/O error") until it is closed.
fn is_latched(err: &CacheError) -> bool {
    matches!(err, CacheError::Database { source, .. }
        if matches!(**source, redb::Error::Io(_) | redb::Error::PreviousIo))
}

fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

thread_local! {
    /// Set when a caller's reader or writer panicked inside an operation, so that
    /// [`RedbCache::catching_panics`] lets that panic go on instead of taking it for damage.
    static CALLER_PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A caller's reader or writer: a panic in it is marked as the caller's before it unwinds.
struct CallerIo<'a, T: ?Sized>(&'a mut T);

impl<T: ?Sized> CallerIo<'_, T> {
    fn call<R>(&mut self, run: impl FnOnce(&mut T) -> R) -> R {
        let inner = &mut *self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(inner))) {
            Ok(result) => result,
            Err(payload) => {
                CALLER_PANICKED.set(true);
                std::panic::resume_unwind(payload)
            }
        }
    }
}

impl<T: Read + ?Sized> Read for CallerIo<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.call(|inner| inner.read(buf))
    }
}

impl<T: Write + ?Sized> Write for CallerIo<'_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.call(|inner| inner.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.call(|inner| inner.flush())
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
    /// Serialises this process's commits, so that threads queue here (fairly, cheaply) instead of
    /// polling redb's cross-process lock.
    write_lock: Mutex<()>,
    buffer: Mutex<WriteBuffer>,
    access_pending: Mutex<KeyMap<AccessDelta>>,
    counters: AtomicCounters,
    /// The part of `counters` already added to the persisted lifetime counters.
    persisted_counters: Mutex<Counters>,
    committer: Arc<Committer>,
    blob_files: BlobFiles,
    dir_files: DirFiles,
    /// Where the next commit's expiry sweep starts (empty: at the first key).
    sweep_cursor: Mutex<Vec<u8>>,
    /// The usage last published to `<root>/<tag>/usage` for the root budget of other tags.
    published_usage: Mutex<(u64, u64)>,
    /// Single-flight computations of this instance's threads (`flight.rs`).
    flights: Flights,
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
        let (path, tag_dir) = prepare_tag_files(canonical_root, &tag)?;
        let registration = FileRegistration::register(&path)?;
        let database = open_or_quarantine(&path, &tag, &options)?;
        let tag_dir = Arc::new(tag_dir);
        let cache = Arc::new(RedbCache {
            blob_files: BlobFiles::new(Arc::clone(&tag_dir)),
            dir_files: DirFiles::new(tag_dir),
            sweep_cursor: Mutex::new(Vec::new()),
            published_usage: Mutex::new((u64::MAX, u64::MAX)),
            flights: Flights::default(),
            tag,
            path,
            database: RwLock::new(Some(Arc::new(OpenDatabase {
                database,
                registration: Arc::new(registration),
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

    /// `<root>/<tag>/`.
    fn tag_dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
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

    /// After an I/O error, redb refuses every later operation on the handle ("previous I/O
    /// error") until it is closed. This replaces the handle `failed` with a new one on the same
    /// file, so that the instance recovers by itself; the write buffer is untouched, so nothing
    /// buffered is lost and the next commit retries it. A no-op for other errors, or when
    /// `failed` is no longer the current handle. If the file cannot be opened again (the disk is
    /// still failing), the old handle stays and the next failure tries again.
    ///
    /// Returns whether it replaced the handle; the caller then drops the read snapshot (which
    /// belongs to the old handle), since the buffer lock must not be taken here: a reader calls
    /// this holding it.
    fn reopen_if_latched(&self, failed: &Arc<OpenDatabase>, err: &CacheError) -> bool {
        if !is_latched(err) {
            return false;
        }
        let mut current = self
            .database
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, failed))
        {
            return false;
        }
        // The old handle stays open until its last user is done with it; redb's byte-range
        // locks are per handle, so both may be open at once.
        match open_or_quarantine(&self.path, &self.tag, &self.options) {
            Ok(database) => {
                *current = Some(failed.replaced_by(database));
                tracing::warn!(tag = %self.tag, path = %self.path.display(), error = %crate::error::ErrorChain(err), "reopened the cache file after an I/O error");
                true
            }
            Err(reopen) => {
                tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&reopen), "could not reopen the cache file after an I/O error; will try again");
                false
            }
        }
    }

    /// Runs `run`, turning a panic into [`CacheError::Damaged`]. Our own code is written not to
    /// panic on any input (no unwrap, indexing only within checked bounds), so a panic is taken
    /// to come from redb meeting a damaged file: redb asserts on page contents it does not
    /// expect rather than returning an error. Such a file is moved aside, as a damaged file found
    /// at open is: a cache can be rebuilt, a panic in the caller cannot be taken back.
    fn catching_panics<T>(
        &self,
        operation: &'static str,
        run: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(result) => result,
            // The caller's own reader or writer panicked: theirs to see, not damage.
            Err(payload) if CALLER_PANICKED.take() => std::panic::resume_unwind(payload),
            Err(_) => Err(self.quarantine_after_panic(operation)),
        }
    }

    /// Moves the tag's damaged file aside and goes on with a fresh one: the handle is replaced
    /// (other processes find the damage themselves), the snapshot is dropped, writes a panicking
    /// commit had taken go back to the buffer, and the new file gets its tables.
    fn quarantine_after_panic(&self, operation: &'static str) -> CacheError {
        let damaged = CacheError::Damaged {
            tag: self.tag.to_string(),
            path: self.path.clone(),
            operation,
        };
        {
            let mut current = self
                .database
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(failed) = current.as_ref() else {
                return damaged;
            };
            let reason = format!("redb panicked during {operation}");
            match quarantine_and_start_fresh(&self.path, &self.tag, &self.options, &reason) {
                Ok(database) => *current = Some(failed.replaced_by(database)),
                Err(err) => {
                    tracing::error!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not move a damaged cache file aside and start a fresh one");
                    return damaged;
                }
            }
        }
        {
            // No guard is held here: the panic unwound them all.
            let mut buffer = lock(&self.buffer);
            buffer.snapshot = None;
            let in_flight = std::mem::take(&mut buffer.in_flight);
            for (key, write) in in_flight.iter() {
                if !buffer.pending.contains_key(key) {
                    buffer.insert(key, write.clone());
                }
            }
        }
        lock(&self.sweep_cursor).clear();
        *lock(&self.published_usage) = (u64::MAX, u64::MAX);
        if let Err(err) = self.ensure_tables() {
            tracing::error!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not create the tables of the fresh cache file");
        }
        damaged
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
        if [
            ENTRIES.name(),
            ACCESS.name(),
            COUNTERS.name(),
            BLOBS.name(),
            USAGE.name(),
        ]
        .iter()
        .all(|name| names.iter().any(|n| n == name))
        {
            return Ok(());
        }
        // A file from before usage was kept (or a new one): count it once.
        self.write(|tables, _| self.recount(tables)).map(|_| ())
    }

    /// Recomputes the usage and every blob's reference count from the entries, correcting any
    /// drift (for example a directory whose size changed since it was stored). Returns the
    /// referenced blobs.
    fn recount(&self, tables: &mut WriteTables<'_>) -> Result<Referenced> {
        let mut referenced = Referenced::default();
        let (mut bytes, mut entry_count) = (0u64, 0u64);
        for row in tables.entries.iter().or_db(self)? {
            let (key, stored) = row.or_db(self)?;
            let owned = Owned::of(stored.value());
            bytes += owned.accounted(key.value().len(), stored.value().len());
            entry_count += 1;
            if let Some(blob) = owned.blob {
                referenced.blobs.entry(blob.hash).or_insert((0, blob.len)).0 += 1;
            }
            if let Some((name, _)) = owned.dir {
                referenced.dirs.insert(name);
            }
        }
        let mut stale: Vec<Vec<u8>> = Vec::new();
        for row in tables.blobs.iter().or_db(self)? {
            let (hash, _) = row.or_db(self)?;
            let known = <[u8; 32]>::try_from(hash.value())
                .is_ok_and(|hash| referenced.blobs.contains_key(&hash));
            if !known {
                stale.push(hash.value().to_vec());
            }
        }
        for hash in stale {
            tables.blobs.remove(hash.as_slice()).or_db(self)?;
        }
        for (hash, value) in &referenced.blobs {
            tables.blobs.insert(hash.as_slice(), *value).or_db(self)?;
            bytes += value.1;
        }
        tables.bytes = bytes;
        tables.entry_count = entry_count;
        Ok(referenced)
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
        let result = self.catching_panics(operation, || run(started));
        AtomicCounters::add(&self.counters.operations, 1);
        AtomicCounters::add(
            &self.counters.operation_time_ns,
            started.elapsed().as_nanos() as u64,
        );
        if let Err(err) = &result {
            AtomicCounters::add(&self.counters.errors, 1);
            tracing::debug!(operation, tag = %self.tag, error = %crate::error::ErrorChain(err), "cache operation failed; the error goes to the caller, which reports it");
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
        self.write_counting(change).map(|(value, _)| value)
    }

    /// [`RedbCache::write`], also returning what the commit expired and evicted.
    fn write_counting<R>(
        &self,
        change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>,
    ) -> Result<(R, CommitOutcome)> {
        let writer = lock(&self.write_lock);
        self.write_holding(&writer, change)
    }

    /// The write path, for a caller that already holds `write_lock` (`writer` proves it).
    fn write_holding<R>(
        &self,
        writer: &MutexGuard<'_, ()>,
        change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>,
    ) -> Result<(R, CommitOutcome)> {
        let open = self.open_database()?;
        let txn = self.begin_write(&open.database).inspect_err(|err| {
            if self.reopen_if_latched(&open, err) {
                lock(&self.buffer).snapshot = None;
            }
        })?;
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
        let suspects = lock(&self.buffer).suspects.clone();
        let counters_now = self.counters.snapshot();
        let counters_delta = counters_now.minus(&lock(&self.persisted_counters));
        let result = self.write_in(
            txn,
            change,
            &in_flight,
            &pending_access,
            &suspects,
            counters_delta,
        );
        if let Err(err) = &result
            && self.reopen_if_latched(&open, err)
        {
            lock(&self.buffer).snapshot = None;
        }
        let mut buffer = lock(&self.buffer);
        let in_flight = std::mem::take(&mut buffer.in_flight);
        match result {
            Ok((value, aftermath)) => {
                buffer.snapshot = None;
                // Judged by the commit that just landed: removed, or no longer current.
                buffer.suspects.retain(|suspect| {
                    !suspects
                        .iter()
                        .any(|judged| judged.stored == suspect.stored)
                });
                // The commit persisted its own removals too; after_commit adds them to the live
                // counters.
                *lock(&self.persisted_counters) = counters_now.plus(&aftermath.removal_counters());
                drop(buffer);
                let outcome = CommitOutcome {
                    expired: aftermath.expired,
                    evicted: aftermath.evicted,
                };
                self.after_commit(writer, &open, aftermath);
                Ok((value, outcome))
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

    /// What a commit leaves to do once it has landed: removing the files it released, and
    /// publishing the tag's usage. Runs with `write_lock` still held (`_writer`), so this
    /// process's next commit cannot take a released blob again before it is judged.
    fn after_commit(
        &self,
        _writer: &MutexGuard<'_, ()>,
        open: &OpenDatabase,
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
    fn remove_released_blobs(&self, open: &OpenDatabase, released: &[BlobRef]) {
        let judged = self.begin_write(&open.database).and_then(|txn| {
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
    fn settle_suspects(&self, tables: &mut WriteTables<'_>, suspects: &[Suspect]) -> Result<()> {
        for suspect in suspects {
            let same_version = tables
                .entries
                .get(suspect.key.as_slice())
                .or_db(self)?
                .is_some_and(|stored| stored.value() == suspect.stored.as_slice());
            if same_version && self.still_damaged(&suspect.key, &suspect.stored)? {
                tracing::warn!(tag = %self.tag, key = %KeyDisplay::new(&suspect.key), reason = %suspect.reason, "removing a damaged cache entry");
                tables.remove(&suspect.key).or_db(self)?;
            }
        }
        Ok(())
    }

    /// Whether the stored entry bytes of `key`, which a read found unusable, are unusable now:
    /// unreadable bytes, or a blob or directory that is missing (or, for a blob, does not match
    /// its hash). An intact inline entry was unusable to the reader that reported it (another
    /// schema, a value that does not decode): it stays unusable as long as it is this version.
    fn still_damaged(&self, key: &[u8], stored: &[u8]) -> Result<bool> {
        let Ok((header, payload)) = EntryHeader::decode(key, stored) else {
            return Ok(true);
        };
        Ok(match header.kind {
            EntryKind::Inline => true,
            EntryKind::Blob => match BlobRef::decode(payload) {
                Ok(blob) => !matches!(
                    self.blob_files.copy_to(&blob, &mut std::io::sink())?,
                    BlobRead::Verified(_)
                ),
                Err(_) => true,
            },
            EntryKind::Directory => match DirRef::decode(payload) {
                Ok((dir, _)) => !self.dir_files.is_present(dir.name),
                Err(_) => true,
            },
        })
    }

    /// Notes an entry a read found damaged, for the next commit to judge and remove
    /// ([`RedbCache::settle_suspects`]). A read never writes: it reports, counts and misses.
    fn suspect(&self, key: &[u8], stored: &[u8], reason: String) {
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

    fn write_in<R>(
        &self,
        txn: WriteTransaction,
        change: impl FnOnce(&mut WriteTables<'_>, u64) -> Result<R>,
        in_flight: &KeyMap<BufferedWrite>,
        pending_access: &KeyMap<AccessDelta>,
        suspects: &[Suspect],
        counters_delta: Counters,
    ) -> Result<(R, Aftermath)> {
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
            let mut tables = WriteTables {
                txn: &txn,
                entries: txn.open_table(ENTRIES).or_db(self)?,
                access: txn.open_table(ACCESS).or_db(self)?,
                blobs: txn.open_table(BLOBS).or_db(self)?,
                bytes,
                entry_count,
                released_blobs: Vec::new(),
                released_dirs: Vec::new(),
                expired: 0,
                evicted: 0,
                last_cleanup_ms: None,
            };
            for (key, write) in in_flight {
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
            self.enforce_limits(&mut tables, now)?;
            usage.insert(USAGE_BYTES, tables.bytes).or_db(self)?;
            usage
                .insert(USAGE_ENTRIES, tables.entry_count)
                .or_db(self)?;
            if let Some(now) = tables.last_cleanup_ms {
                usage.insert(LAST_CLEANUP_MS, now).or_db(self)?;
            }
            // What this commit expired and evicted is persisted by the commit itself, so that it
            // is not lost when this commit is the instance's last.
            let counters_delta =
                counters_delta.plus(&removal_counters(tables.expired, tables.evicted));
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
            let aftermath = Aftermath {
                released_blobs: std::mem::take(&mut tables.released_blobs),
                released_dirs: std::mem::take(&mut tables.released_dirs),
                expired: tables.expired,
                evicted: tables.evicted,
                bytes: tables.bytes,
                entries: tables.entry_count,
            };
            (value, aftermath)
        };
        txn.commit().or_db(self)?;
        Ok((value, aftermath))
    }

    /// Removes the expired entries among the next [`SWEEP_BATCH`] after the sweep cursor.
    fn sweep_expired(&self, tables: &mut WriteTables<'_>, now: u64) -> Result<()> {
        let mut cursor = lock(&self.sweep_cursor);
        let mut expired = Vec::new();
        let mut seen = 0;
        let mut last: Option<Vec<u8>> = None;
        for row in tables
            .entries
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
                tables.expired += 1;
            }
        }
        Ok(())
    }

    /// Evicts when the tag is over its size or entry limit: expired entries first, then in the
    /// policy's order (oldest stored, or least recently used), down to [`EVICT_TO_PERCENT`] of
    /// the limit.
    fn enforce_limits(&self, tables: &mut WriteTables<'_>, now: u64) -> Result<()> {
        let mut max_bytes = self.options.max_size_bytes;
        if let Some(budget) = self.options.root_max_size_bytes {
            let others = budget::sibling_usage(self.tag_dir(), &self.tag);
            if let Some(level) = budget::fair_level(budget, tables.bytes, &others) {
                max_bytes = max_bytes.min(level);
            }
        }
        let max_entries = self.options.max_entries.unwrap_or(u64::MAX);
        if tables.bytes <= max_bytes && tables.entry_count <= max_entries {
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
        for row in tables.entries.iter().or_db(self)? {
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
                let last_read = tables
                    .access
                    .get(key.as_slice())
                    .or_db(self)?
                    .map_or(0, |row| row.value().0);
                *stamp = (*stamp).max(last_read);
            }
        }
        order.sort_unstable();
        for (live, _, key) in order {
            if tables.bytes <= target_bytes && tables.entry_count <= target_entries {
                break;
            }
            if tables.remove(&key).or_db(self)? {
                if live {
                    tables.evicted += 1;
                } else {
                    tables.expired += 1;
                }
            }
        }
        Ok(())
    }

    /// Whether anything waits to be committed: buffered writes, access records or counters.
    fn has_uncommitted(&self) -> bool {
        let buffered = {
            let buffer = lock(&self.buffer);
            !buffer.pending.is_empty() || !buffer.suspects.is_empty()
        };
        buffered
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
        self.catching_panics("commit", || self.write(|_, _| Ok(())))
            .inspect_err(|err| {
            AtomicCounters::add(&self.counters.errors, 1);
            tracing::error!(tag = %self.tag, error = %crate::error::ErrorChain(err), "group commit failed; the writes stay buffered and will be retried");
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
        let (snapshot, any_suspect) = {
            let mut buffer = lock(&self.buffer);
            if let Some(write) = buffer.buffered(key) {
                let stored = write.as_deref().filter(|stored| !buffer.is_suspect(stored));
                return read(stored, None);
            }
            let snapshot = self.current_snapshot(&mut buffer, now)?;
            (snapshot, !buffer.suspects.is_empty())
        };
        let guard = match snapshot.entries.get(key).or_db(self) {
            Ok(guard) => guard,
            // The snapshot belongs to a handle that failed since (another thread's commit met
            // a full disk, say) and has been replaced: read from a snapshot of the current one.
            Err(err) if is_latched(&err) => {
                let mut buffer = lock(&self.buffer);
                if buffer
                    .snapshot
                    .as_ref()
                    .is_some_and(|current| Arc::ptr_eq(current, &snapshot))
                {
                    buffer.snapshot = None;
                }
                let fresh = self.current_snapshot(&mut buffer, Instant::now())?;
                drop(buffer);
                if Arc::ptr_eq(&fresh, &snapshot) {
                    return Err(err);
                }
                return self.read_snapshot(&fresh, key, any_suspect, read);
            }
            Err(err) => return Err(err),
        };
        let stored = guard.as_ref().map(|guard| guard.value());
        // A version a read found damaged reads as absent until a commit has judged it.
        let stored = stored.filter(|stored| !any_suspect || !lock(&self.buffer).is_suspect(stored));
        read(stored, Some(&snapshot))
    }

    /// Reads `key` from `snapshot` for [`RedbCache::lookup`], without a second chance.
    fn read_snapshot<T>(
        &self,
        snapshot: &Snapshot,
        key: &[u8],
        any_suspect: bool,
        read: impl FnOnce(Option<&[u8]>, Option<&Snapshot>) -> Result<T>,
    ) -> Result<T> {
        let guard = snapshot.entries.get(key).or_db(self)?;
        let stored = guard.as_ref().map(|guard| guard.value());
        let stored = stored.filter(|stored| !any_suspect || !lock(&self.buffer).is_suspect(stored));
        read(stored, Some(snapshot))
    }

    fn current_snapshot(&self, buffer: &mut WriteBuffer, now: Instant) -> Result<Arc<Snapshot>> {
        if let Some(snapshot) = &buffer.snapshot
            && now.saturating_duration_since(snapshot.taken) < self.options.commit_interval
        {
            return Ok(Arc::clone(snapshot));
        }
        let open = self.open_database()?;
        let txn = match open.database.begin_read().or_db(self) {
            Ok(txn) => txn,
            Err(err) if is_latched(&err) => {
                // This handle failed, here or in another thread's commit, which may have
                // replaced it already: read from the current handle if there is a new one.
                self.reopen_if_latched(&open, &err);
                buffer.snapshot = None;
                let current = self.open_database()?;
                if Arc::ptr_eq(&current, &open) {
                    return Err(err);
                }
                current.database.begin_read().or_db(self)?
            }
            Err(err) => return Err(err),
        };
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
                tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not record access times; will retry");
            }
        } else if pending_keys > ACCESS_PENDING_SOFT_LIMIT {
            self.committer.work_arrived();
        }
    }

    /// What stored bytes hold for a read; `check` is the format a typed read expects.
    fn classify(
        &self,
        key: &[u8],
        stored: Option<&[u8]>,
        now: u64,
        check: Option<(ValueFormat, AnyFormat)>,
    ) -> Found {
        let Some(stored) = stored else {
            return Found::Nothing;
        };
        let (header, payload) = match EntryHeader::decode(key, stored) {
            Ok(decoded) => decoded,
            Err(EntryDecodeError::NewerFormat(version)) => {
                tracing::debug!(tag = %self.tag, key = %KeyDisplay::new(key), version, "entry written by a newer version; treated as a miss");
                return Found::Nothing;
            }
            Err(EntryDecodeError::Corrupt(reason)) => {
                return Found::Unusable {
                    reason: reason.to_owned(),
                    stored: stored.to_vec(),
                };
            }
        };
        if header.is_expired(now) {
            return Found::Nothing;
        }
        if let Some((format, AnyFormat::No)) = check
            && header.format != format
        {
            return Found::Unusable {
                reason: format!(
                    "stored as {:?}, read as {:?} (schema changed)",
                    header.format, format
                ),
                stored: stored.to_vec(),
            };
        }
        match header.kind {
            EntryKind::Inline => Found::Value(payload.to_vec()),
            EntryKind::Blob => match BlobRef::decode(payload) {
                Ok(blob) => Found::Blob {
                    blob,
                    stored: stored.to_vec(),
                },
                Err(_) => Found::Unusable {
                    reason: "damaged blob reference".to_owned(),
                    stored: stored.to_vec(),
                },
            },
            EntryKind::Directory => match DirRef::decode(payload) {
                Ok((_, value)) => Found::Value(value.to_vec()),
                Err(_) => Found::Unusable {
                    reason: "damaged directory reference".to_owned(),
                    stored: stored.to_vec(),
                },
            },
        }
    }

    /// Reads `key` and turns what was found into the result: an inline value through `value`,
    /// a blob through `blob`; counts the read. A missing blob is first read again from a fresh
    /// snapshot (the entry may have been replaced or removed since the shared one was taken);
    /// damage found then is reported as a suspect and is a miss: a read never writes.
    fn read_entry<T, S: ?Sized>(
        &self,
        key: &[u8],
        started: Instant,
        check: Option<(ValueFormat, AnyFormat)>,
        sink: &mut S,
        mut value: impl FnMut(&mut S, Vec<u8>) -> Result<T>,
        mut blob: impl FnMut(&mut S, &BlobRef) -> Result<BlobRead<T>>,
    ) -> Result<Option<T>> {
        let now = self.now_ms();
        let mut first = true;
        loop {
            let found = self.lookup(key, started, |stored, _| {
                Ok(self.classify(key, stored, now, check))
            })?;
            match self.deliver(key, found, first, sink, &mut value, &mut blob)? {
                Delivered::Done(delivered) => {
                    self.count_read(key, now, delivered.is_some());
                    return Ok(delivered);
                }
                Delivered::BlobMissing => {
                    first = false;
                    self.refresh_snapshot();
                }
            }
        }
    }

    /// Turns what a read found into its result (see [`RedbCache::read_entry`]).
    fn deliver<T, S: ?Sized>(
        &self,
        key: &[u8],
        found: Found,
        first: bool,
        sink: &mut S,
        value: &mut impl FnMut(&mut S, Vec<u8>) -> Result<T>,
        blob: &mut impl FnMut(&mut S, &BlobRef) -> Result<BlobRead<T>>,
    ) -> Result<Delivered<T>> {
        let delivered = match found {
            Found::Value(bytes) => Some(value(sink, bytes)?),
            Found::Blob {
                blob: reference,
                stored,
            } => match blob(sink, &reference)? {
                BlobRead::Verified(delivered) => Some(delivered),
                BlobRead::Missing if first => return Ok(Delivered::BlobMissing),
                damaged => {
                    let corrupt = matches!(damaged, BlobRead::Corrupt);
                    tracing::error!(tag = %self.tag, key = %KeyDisplay::new(key), blob = %reference.file_name(), corrupt, "blob of a cached entry is missing or does not match its hash; treated as a miss");
                    AtomicCounters::add(&self.counters.errors, 1);
                    let reason = if corrupt {
                        "its blob does not match its hash"
                    } else {
                        "its blob is missing"
                    };
                    self.suspect(key, &stored, reason.to_owned());
                    None
                }
            },
            Found::Nothing => None,
            Found::Unusable { reason, stored } => {
                self.suspect(key, &stored, reason);
                None
            }
        };
        Ok(Delivered::Done(delivered))
    }

    /// Counts a read as a hit (recording the access) or a miss.
    fn count_read(&self, key: &[u8], now: u64, hit: bool) {
        if hit {
            AtomicCounters::add(&self.counters.hits, 1);
            self.record_access(key, now);
        } else {
            AtomicCounters::add(&self.counters.misses, 1);
        }
    }

    /// Refuses a value of `len` bytes under `key` when it passes `inline_limit` or could not fit
    /// in the tag's size limit even alone (then nothing else is evicted for it).
    fn check_value_len(&self, key: &[u8], len: u64, inline_limit: u64) -> Result<()> {
        let overhead = (key.len() + ENTRY_HEADER_LEN + BlobRef::ENCODED_LEN) as u64;
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

    fn header(&self, kind: EntryKind, format: ValueFormat, ttl: Option<Duration>) -> EntryHeader {
        let now = self.now_ms();
        EntryHeader {
            kind,
            format,
            created_ms: now,
            expires_ms: ttl
                .map(|ttl| now.saturating_add(ttl.as_millis().min(u128::from(u64::MAX)) as u64)),
        }
    }

    /// Reads of the values being replaced belong to them, not to the new ones.
    fn forget_pending_reads<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>) {
        let mut access = lock(&self.access_pending);
        for key in keys {
            access.remove(key);
        }
    }

    /// Copies a value into a temp blob file, refusing it past the size limit.
    fn stage_blob(&self, key: &[u8], source: &mut dyn Read) -> Result<StagedBlob> {
        let overhead = (key.len() + ENTRY_HEADER_LEN + BlobRef::ENCODED_LEN) as u64;
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
    fn store_blob(
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
            let shared = tables
                .blobs
                .get(blob.hash.as_slice())
                .or_db(self)?
                .is_some_and(|row| row.value().0 > 0);
            if shared && self.blob_files.is_present(&blob) {
                drop(staged);
            } else {
                self.blob_files.publish(staged)?;
            }
            tables.put(key, &entry).or_db(self)
        })
    }

    /// Makes every write this process made before the call land in the file, so that a scan
    /// of the file sees them: commits what is buffered (and judges suspects), and waits for a
    /// commit in progress.
    /// A commit holds `write_lock` from taking the buffer until its writes have landed (or,
    /// failing, have gone back to the buffer), so holding it here means nothing of ours is in
    /// flight; what is still pending is committed under the same hold.
    fn commit_if_buffered(&self) -> Result<()> {
        let writer = lock(&self.write_lock);
        let idle = {
            let buffer = lock(&self.buffer);
            // Suspects too, so that a listing never shows an entry this process found damaged.
            buffer.pending.is_empty() && buffer.suspects.is_empty()
        };
        if idle {
            return Ok(());
        }
        self.write_holding(&writer, |_, _| Ok(())).map(|_| ())
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

    /// The usage table: `bytes`, `entries`, `last_cleanup_ms`.
    fn read_usage(&self) -> Result<HashMap<String, u64>> {
        let open = self.open_database()?;
        let txn = open.database.begin_read().or_db(self)?;
        let table = match txn.open_table(USAGE) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
            Err(err) => return Err(err).or_db(self),
        };
        let mut usage = HashMap::new();
        for row in table.iter().or_db(self)? {
            let (name, value) = row.or_db(self)?;
            usage.insert(name.value().to_owned(), value.value());
        }
        Ok(usage)
    }

    /// Compacts the file when its dead space passes the thresholds; says why not otherwise.
    fn compact_if_worthwhile(&self) -> Compaction {
        let dead = {
            let open = match self.open_database() {
                Ok(open) => open,
                Err(err) => return Compaction::Skipped(err.to_string()),
            };
            let _writer = lock(&self.write_lock);
            let measured = self.begin_write(&open.database).and_then(|txn| {
                let stats = txn.stats().or_db(self)?;
                txn.abort().or_db(self)?;
                Ok(stats.fragmented_bytes())
            });
            match measured {
                Ok(dead) => dead,
                Err(err) => return Compaction::Skipped(err.to_string()),
            }
        };
        let before = std::fs::metadata(&self.path).map_or(0, |meta| meta.len());
        if dead < COMPACT_MIN_DEAD_BYTES
            || dead.saturating_mul(100) < before.saturating_mul(COMPACT_MIN_DEAD_SHARE_PERCENT)
        {
            return Compaction::NotNeeded;
        }
        let compacted = self.with_exclusive_database(|database| {
            database
                .compact()
                .map_err(|err| CacheError::database(self.tag.as_str(), &self.path, err))
        });
        match compacted {
            Ok(_) => {
                let after = std::fs::metadata(&self.path).map_or(0, |meta| meta.len());
                tracing::debug!(tag = %self.tag, before, after, "compacted the database file");
                Compaction::Compacted { before, after }
            }
            Err(err) => {
                tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "compaction was due but did not run");
                Compaction::Skipped(err.to_string())
            }
        }
    }

    /// Runs `run` with the only handle to the database, which redb's compaction and integrity
    /// check need: commits what is buffered, drops the read snapshot, and holds off this
    /// instance's other operations meanwhile. Fails, doing nothing, while another thread is
    /// inside an operation.
    fn with_exclusive_database<T>(
        &self,
        run: impl FnOnce(&mut Database) -> Result<T>,
    ) -> Result<T> {
        self.commit_if_buffered()?;
        // Dropped before the database lock is taken, never under it: readers take the buffer
        // lock and then the database lock, so taking them the other way round could deadlock.
        // A snapshot taken again in between makes redb refuse, as a transaction in progress.
        lock(&self.buffer).snapshot = None;
        let mut guard = self
            .database
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(handle) = guard.as_mut() else {
            return Err(CacheError::Closed {
                tag: self.tag.to_string(),
            });
        };
        let Some(open) = Arc::get_mut(handle) else {
            return Err(CacheError::Busy {
                tag: self.tag.to_string(),
                reason: "another thread of this process is using the database",
            });
        };
        run(&mut open.database)
    }

    /// Checks every page of the tag's database file against its checksum (redb's integrity
    /// check); `false` when damage was found (redb repairs what it can on the next open).
    /// Needs the instance to itself for the moment: fails with [`CacheError::Busy`] while
    /// another thread is inside an operation.
    pub fn check_integrity(&self) -> Result<bool> {
        self.with_exclusive_database(|database| {
            database
                .check_integrity()
                .map_err(|err| CacheError::database(self.tag.as_str(), &self.path, err))
        })
    }

    /// Closes the database once no other thread of this process holds the handle (an operation
    /// that began before `close`), so that the file is released, and can be opened again, when
    /// `close` returns. The commit thread has ended by then; other threads' operations are
    /// waited for up to `timeout`, after which the file closes when the last of them is done
    /// and `close` says so.
    fn close_when_released(&self, mut open: Arc<OpenDatabase>) -> Result<()> {
        let started = Instant::now();
        let mut backoff = Duration::from_micros(50);
        loop {
            match Arc::try_unwrap(open) {
                Ok(OpenDatabase {
                    database,
                    registration: _,
                }) => {
                    return database
                        .close()
                        .map_err(|err| CacheError::database(self.tag.as_str(), &self.path, err));
                }
                Err(shared) => {
                    let waited = started.elapsed();
                    if waited >= self.options.timeout {
                        return Err(CacheError::Busy {
                            tag: self.tag.to_string(),
                            reason: "another thread of this process was still using the database \
                                     when close gave up waiting; the file closes when it is done",
                        });
                    }
                    open = shared;
                    std::thread::sleep(backoff.min(self.options.timeout - waited));
                    backoff = (backoff * 2).min(Duration::from_millis(10));
                }
            }
        }
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
        self.measure("get", |started| {
            self.check_key(key)?;
            self.read_entry(
                key,
                started,
                Some((format, any)),
                &mut (),
                |(), value| Ok(value),
                |(), blob| self.blob_files.read(blob),
            )
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
            self.read_entry(
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
            )
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
                let keys: Vec<Vec<u8>> = tables
                    .entries
                    .iter()
                    .or_db(self)?
                    .map(|row| row.map(|(key, _)| key.value().to_vec()))
                    .collect::<StorageResult<_>>()
                    .or_db(self)?;
                for key in keys {
                    tables.remove(&key).or_db(self)?;
                }
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
                tables.last_cleanup_ms = Some(now);
                let mut doomed: Vec<Vec<u8>> = Vec::new();
                for row in tables.entries.iter().or_db(self)? {
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
                tables.expired += report.expired;
                let referenced = self.recount(tables)?;
                // Inside the transaction: no other process can be publishing a blob or a
                // directory (that happens under the write lock too), so a file without an entry
                // here is debris, not a write in progress. Files released by this transaction
                // are removed after its commit (a kill before then must not leave its doomed
                // entries committed without their files), not counted as orphans.
                for (hash, _) in self.blob_files.list()? {
                    let released = tables.released_blobs.iter().any(|blob| blob.hash == hash);
                    if !referenced.blobs.contains_key(&hash) && !released {
                        self.blob_files.remove(&BlobRef { hash, len: 0 })?;
                        report.orphan_files += 1;
                    }
                }
                for name in self.dir_files.list()? {
                    if !referenced.dirs.contains(&name) && !tables.released_dirs.contains(&name) {
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

/// Single-flight leases: key bytes -> the lease record of the computation of that key
/// (`flight.rs` encodes it). Created by the first lease written; absent means no lease.
const LEASES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("leases");

/// What [`RedbCache::update_lease`] does to a key's lease row.
pub(crate) enum LeaseWrite {
    /// Leave it as it is.
    Keep,
    /// Store this record.
    Put(Vec<u8>),
    /// Remove the row.
    Remove,
}

/// The storage side of single-flight (`flight.rs`): the in-process flights, the lease table,
/// and the counters it keeps.
impl RedbCache {
    pub(crate) fn flights(&self) -> &Flights {
        &self.flights
    }

    pub(crate) fn counters(&self) -> &AtomicCounters {
        &self.counters
    }

    /// Reads the lease row of `key` and changes it as `decide` says, in one commit through the
    /// one write path: the change is durable and visible to other processes when this returns,
    /// and this process's buffered writes (a computed value among them) commit with it.
    pub(crate) fn update_lease<R>(
        &self,
        key: &[u8],
        decide: impl FnOnce(Option<&[u8]>) -> (LeaseWrite, R),
    ) -> Result<R> {
        self.write(|tables, _| {
            let mut leases = tables.txn.open_table(LEASES).or_db(self)?;
            let current = leases.get(key).or_db(self)?.map(|row| row.value().to_vec());
            let (write, decided) = decide(current.as_deref());
            match write {
                LeaseWrite::Keep => {}
                LeaseWrite::Put(record) => {
                    leases.insert(key, record.as_slice()).or_db(self)?;
                }
                LeaseWrite::Remove => {
                    leases.remove(key).or_db(self)?;
                }
            }
            Ok(decided)
        })
    }

    /// The lease row of `key` as last committed by any process, in a fresh read transaction
    /// (never the shared snapshot, which may be `commit_interval` old).
    pub(crate) fn read_lease(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let open = self.open_database()?;
        let txn = open.database.begin_read().or_db(self)?;
        let leases = match txn.open_table(LEASES) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(err) => return Err(err).or_db(self),
        };
        let row = leases.get(key).or_db(self)?;
        Ok(row.map(|row| row.value().to_vec()))
    }

    /// Drops the read snapshot, so that the next read sees what other processes committed up to
    /// now (a waiter whose computation finished elsewhere reads the result at once).
    pub(crate) fn refresh_snapshot(&self) {
        lock(&self.buffer).snapshot = None;
    }
}

impl Drop for RedbCache {
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "closing cache on drop failed");
        }
    }
}

/// An entry that refers to a file beside the database: its key, and its blob or its directory.
pub(crate) struct EntryFiles {
    pub(crate) key: Vec<u8>,
    pub(crate) blob: Option<BlobRef>,
    pub(crate) dir: Option<String>,
}

/// Every entry of `txn`'s snapshot that refers to a blob or an owned directory, expired ones
/// included (they own their files until they are removed), read as [`Owned::of`] reads them
/// for cleanup. For the doctor's read-only storage checks, which hold no [`RedbCache`]: only
/// reads. A file without the entries table (a new tag) has none.
pub(crate) fn entries_with_files(
    txn: &redb::ReadTransaction,
) -> std::result::Result<Vec<EntryFiles>, redb::Error> {
    let entries = match txn.open_table(ENTRIES) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let mut found = Vec::new();
    for row in entries.iter()? {
        let (key, stored) = row?;
        let Owned { blob, dir } = Owned::of(stored.value());
        if blob.is_some() || dir.is_some() {
            found.push(EntryFiles {
                key: key.value().to_vec(),
                blob,
                dir: dir.map(|(name, _)| name),
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::prepare_root;

    fn open_in(root: &Path, options: CacheOptions) -> Arc<RedbCache> {
        let canonical = prepare_root(root).unwrap();
        RedbCache::open(&canonical, Tag::new("t").unwrap(), options).unwrap()
    }

    /// How long a test lets a call that should wait run before it lets the wait end. On fixed
    /// code both branches assert the same thing, so the figure only decides how likely the
    /// test is to catch the old defect, never whether correct code passes.
    const LET_IT_WAIT: Duration = Duration::from_secs(2);

    /// Runs `call` on a thread while a commit of this instance is held in progress (its writes
    /// taken from the buffer, its transaction not yet committed), lets the commit land after
    /// `call` returned or after [`LET_IT_WAIT`], and returns what `call` returned.
    fn during_a_commit_in_progress<T: Send + 'static>(
        cache: &Arc<RedbCache>,
        call: impl FnOnce(&RedbCache) -> T + Send + 'static,
    ) -> T {
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let committing = {
            let cache = Arc::clone(cache);
            std::thread::spawn(move || {
                cache
                    .write(|_, _| {
                        entered_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        Ok(())
                    })
                    .unwrap();
            })
        };
        entered_rx.recv().unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let caller = {
            let cache = Arc::clone(cache);
            std::thread::spawn(move || done_tx.send(call(&cache)).unwrap())
        };
        let result = match done_rx.recv_timeout(LET_IT_WAIT) {
            Ok(result) => {
                release_tx.send(()).unwrap();
                result
            }
            Err(_) => {
                release_tx.send(()).unwrap();
                done_rx.recv().unwrap()
            }
        };
        caller.join().unwrap();
        committing.join().unwrap();
        result
    }

    /// Trust item 1: a write the commit thread has taken into its in-flight set, and not yet
    /// committed, was invisible to `keys()` (it committed only what was still pending, then
    /// scanned the file).
    #[test]
    fn trust_01_keys_and_stats_see_writes_of_a_commit_in_progress() {
        let root = tempfile::tempdir().unwrap();
        let cache = open_in(root.path(), CacheOptions::default());
        cache.set(b"in-flight", b"value", None).unwrap();
        let keys = during_a_commit_in_progress(&cache, |cache| cache.keys().unwrap());
        assert_eq!(keys, vec![b"in-flight".to_vec()]);

        cache.set(b"second", b"value", None).unwrap();
        let stats = during_a_commit_in_progress(&cache, |cache| cache.get_stats().unwrap());
        assert_eq!(stats.entries, 2, "{stats:?}");
    }

    /// `flush()` must not return while the commit thread is still committing this process's
    /// writes (it did not before either, but only because the commit's counters were still
    /// unpersisted: this keeps it so by rule).
    #[test]
    fn flush_returns_only_once_a_commit_in_progress_has_landed() {
        let root = tempfile::tempdir().unwrap();
        let cache = open_in(root.path(), CacheOptions::default());
        cache.set(b"in-flight", b"value", None).unwrap();
        let seen_by_a_fresh_reader = during_a_commit_in_progress(&cache, |cache| {
            cache.flush().unwrap();
            let open = cache.open_database().unwrap();
            let txn = open.database.begin_read().unwrap();
            let entries = txn.open_table(ENTRIES).unwrap();
            entries.get(b"in-flight".as_slice()).unwrap().is_some()
        });
        assert!(seen_by_a_fresh_reader, "flushed, so committed");
    }

    /// Trust item 4: `close()` returned while another thread (the commit thread, in the field)
    /// still held the database handle, so the file stayed registered and opening the tag again
    /// right after failed with `AlreadyOpenInProcess`.
    #[test]
    fn trust_04_close_returns_only_once_the_file_is_released() {
        let root = tempfile::tempdir().unwrap();
        let cache = open_in(root.path(), CacheOptions::default());
        cache.set(b"k", b"v", None).unwrap();
        let held = cache.open_database().unwrap();
        let (closed_tx, closed_rx) = std::sync::mpsc::channel();
        let closing = {
            let cache = Arc::clone(&cache);
            std::thread::spawn(move || closed_tx.send(cache.close()).unwrap())
        };
        let closed = match closed_rx.recv_timeout(LET_IT_WAIT) {
            Ok(closed) => {
                let reopened = RedbCache::open(
                    &prepare_root(root.path()).unwrap(),
                    Tag::new("t").unwrap(),
                    CacheOptions::default(),
                );
                assert!(
                    reopened.is_ok(),
                    "close returned, so the file is released: {:?}",
                    reopened.err()
                );
                drop(held);
                closed
            }
            Err(_) => {
                drop(held);
                closed_rx.recv().unwrap()
            }
        };
        closing.join().unwrap();
        closed.unwrap();
        let reopened = RedbCache::open(
            &prepare_root(root.path()).unwrap(),
            Tag::new("t").unwrap(),
            CacheOptions::default(),
        )
        .unwrap();
        assert_eq!(reopened.get(b"k").unwrap(), Some(b"v".to_vec()));
    }

    /// The committed entry bytes of `key`, read in a fresh transaction.
    fn committed(cache: &RedbCache, key: &[u8]) -> Option<Vec<u8>> {
        let open = cache.open_database().unwrap();
        let txn = open.database.begin_read().unwrap();
        let entries = txn.open_table(ENTRIES).unwrap();
        entries.get(key).unwrap().map(|row| row.value().to_vec())
    }

    fn blob_path(cache: &RedbCache, stored: &[u8]) -> PathBuf {
        let Owned {
            blob: Some(blob), ..
        } = Owned::of(stored)
        else {
            panic!("a blob entry")
        };
        cache.blob_files.path(&blob)
    }

    /// Trust item 3: a read that found an entry's blob missing removed "the entry if it still
    /// refers to that blob" at once; blob names are content hashes, so an entry stored again
    /// since with the same content matched and the fresh entry was removed. Now a read only
    /// reports; a commit removes the entry under the write lock, and only the very version the
    /// read saw, and only if its damage is still there.
    #[test]
    fn trust_03_a_read_never_removes_an_entry_and_a_fresh_version_survives() {
        let root = tempfile::tempdir().unwrap();
        let options = CacheOptions {
            blob_threshold_bytes: 16,
            ..CacheOptions::default()
        };
        let cache = open_in(root.path(), options);
        let value = vec![7u8; 4096];
        cache.set(b"k", &value, None).unwrap();
        cache.flush().unwrap();
        let first = committed(&cache, b"k").unwrap();
        std::fs::remove_file(blob_path(&cache, &first)).unwrap();

        assert_eq!(cache.get(b"k").unwrap(), None, "a missing blob is a miss");
        assert_eq!(
            committed(&cache, b"k"),
            Some(first.clone()),
            "the read wrote nothing"
        );

        // Stored again with the same content: the same blob name, a new version of the entry.
        // The commit that stores it also judges the suspect, which is no longer current.
        cache.set(b"k", &value, None).unwrap();
        cache.flush().unwrap();
        assert_eq!(
            cache.get(b"k").unwrap(),
            Some(value.clone()),
            "fresh entry kept"
        );

        // Damage still there at the next commit, on the very version read: removed then.
        let second = committed(&cache, b"k").unwrap();
        std::fs::remove_file(blob_path(&cache, &second)).unwrap();
        assert_eq!(cache.get(b"k").unwrap(), None);
        cache.set(b"other", b"x", None).unwrap();
        cache.flush().unwrap();
        assert_eq!(
            committed(&cache, b"k"),
            None,
            "damaged entry removed by a writer"
        );
        assert_eq!(cache.keys().unwrap(), vec![b"other".to_vec()]);
    }

    /// The mechanism behind the garbage-block fault test, made deterministic: a panic inside an
    /// operation (as redb's on a damaged page) moves the file aside, starts a fresh 0600 file
    /// with its tables, and keeps this process's buffered writes.
    #[test]
    fn a_panic_inside_an_operation_quarantines_the_file_and_keeps_buffered_writes() {
        let root = tempfile::tempdir().unwrap();
        let cache = open_in(
            root.path(),
            CacheOptions {
                commit_interval: Duration::from_secs(3600),
                ..CacheOptions::default()
            },
        );
        cache.set(b"flushed", b"v", None).unwrap();
        cache.flush().unwrap();
        cache.set(b"buffered", b"w", None).unwrap();
        let err = cache
            .catching_panics("get", || -> Result<()> {
                panic!("as redb asserts on a damaged page")
            })
            .unwrap_err();
        assert!(
            matches!(
                err,
                CacheError::Damaged {
                    operation: "get",
                    ..
                }
            ),
            "{err}"
        );
        let aside: Vec<_> = std::fs::read_dir(cache.tag_dir())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("cache.redb.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cache.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            cache.get(b"flushed").unwrap(),
            None,
            "the old file's entries are gone"
        );
        assert_eq!(cache.get(b"buffered").unwrap(), Some(b"w".to_vec()));
        cache.flush().unwrap();
        assert_eq!(cache.keys().unwrap(), vec![b"buffered".to_vec()]);
        assert_eq!(cache.get_stats().unwrap().entries, 1);
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
            assert!(lock(&cache.buffer).pending_bytes <= 1024 + 2 + 100 + ENTRY_HEADER_LEN);
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
