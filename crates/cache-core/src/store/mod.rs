//! `RedbCache`: the redb-backed store behind [`crate::Cache`], one database file per (root, tag), opened in
//! `MultiWriter` mode so that several processes share it.
//!
//! Writes are group-committed. `set` and `delete` go into this process's write buffer, where
//! every thread of the process sees them at once; the commit thread ([`crate::store::committer`])
//! commits the buffer in one transaction when its oldest write is `commit_interval` old, and
//! `flush`, `close` and drop commit at once. Every commit goes through [`RedbCache::write`]: the
//! one place that takes the write lock, begins the transaction with a bounded wait, applies the
//! buffer, merges access records and statistics, and commits. (The one exception,
//! `settle_contents` in `content_records.rs`, writes only `content_stat` rows after a landed commit,
//! under its write lock: no entry, count or usage.)
//!
//! Reads look in the write buffer first, then in a read snapshot that is refreshed after each of
//! our commits and whenever it is older than `commit_interval`, so a `get` does not pay for a
//! read transaction of its own.
//!
//! # Facets
//!
//! - `handle.rs`: the database handle (latched-error reopen, panic quarantine, exclusive use).
//! - `tables.rs`: the tables and `WriteTables`, the only code that changes entries.
//! - `buffer.rs`: this process's uncommitted writes and suspects.
//! - `access.rs`: this process's reads not yet merged (lock-free on a read).
//! - `commit.rs`: the one write path, and the release of files after a commit.
//! - `read.rs`: lookups through the buffer and the read snapshot; reads never change an entry.
//! - `maintenance.rs`: recount, compaction, integrity, lifetime counters.
//! - `leases.rs`: the single-flight lease table.
//! - `api.rs`: the operations [`crate::Cache`] calls.
//! - `publish.rs`: what landed commits offer the remote tier, if one is attached;
//!   `remote_dirs.rs`: directories to and from the remote tier (listed and read to publish;
//!   checked and written to backfill).
//! - `blobs.rs`, `dirs.rs`: the files entries own; `contents.rs`: the content files owned
//!   directories share (file-level deduplication), `content_records.rs` their records in the
//!   store; `budget.rs`: the root's size budget;
//!   `committer.rs`: the group-commit thread.
//! - `faults.rs` (tests only): the fault-injecting storage backend and, in `faults/tests.rs`,
//!   the deterministic in-process fault suite.
//!
//! # Locks
//!
//! Taken in this order, never the other way round (a lock may be skipped):
//!
//! 1. `write_lock`: held by a commit from taking the buffer until its files are released.
//! 2. `buffer`: readers take it, then the database lock inside it (`current_snapshot`); so
//!    nobody takes `buffer` while holding `database`, and the snapshot is dropped before
//!    `database` is taken for writing (`with_exclusive_database`, `close`).
//! 3. `database` (`RwLock`): read-locked only to clone the handle's `Arc`; write-locked to
//!    replace or take the handle.
//! 4. Leaves, under which no other lock is taken: `persisted_counters` (taken under `buffer`
//!    when a commit lands), the access log's `restored` map (`access.rs`; a read records its
//!    access holding no other lock), `sweep_cursor`, `published_usage`, and the committer's
//!    signal.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, Table, TableDefinition, TableError,
    TableHandle, TransactionError, WriteTransaction,
};

use crate::codec::{
    BlobRef, DirRef, ENTRY_HEADER_MAX_LEN, EntryDecodeError, EntryHeader, EntryKind, ValueFormat,
};
use crate::config::{CacheOptions, EvictionPolicy};
use crate::directory::{CachedDirectory, StagedDirectory};
use crate::error::{CacheError, KeyDisplay, Result};
use crate::files::DATABASE_FILE_NAME;
use crate::flight::{self, FlightWork, Flights, LeaseWrite};
use crate::remote::{RemoteStore, SharingPolicy};
use crate::stats::{AtomicCounters, CacheStats, Counters};
use crate::tag::Tag;
use crate::telemetry::Telemetry;
use crate::values::{AnyFormat, CleanupReport, Compaction, EntryMetadata};
use blobs::{BlobFiles, BlobRead, StageError, StagedBlob};
use committer::{Committer, Tick};
use content_records::{ContentsToSettle, decode_uses, encode_uses};
use contents::{ContentFiles, ContentUse};
use dirs::DirFiles;

mod access;
mod api;
pub(crate) mod backend;
pub(crate) mod blobs;
mod budget;
mod buffer;
mod commit;
mod committer;
mod content_records;
pub(crate) mod contents;
pub(crate) mod dirs;
#[cfg(test)]
mod faults;
mod handle;
mod leases;
mod maintenance;
mod publish;
mod read;
pub(crate) mod reads_file;
mod remote_dirs;
mod schema;
mod tables;
#[cfg(test)]
mod tests;
mod writes;

use access::{AccessHasher, AccessLog, AccessRecords, in_hash_order};
pub(crate) use api::Backfilled;
use buffer::*;
use handle::*;
pub(crate) use handle::{FileRegistration, move_aside};
pub(crate) use maintenance::{EntryFiles, entries_with_files};
use read::*;
use reads_file::{ReadsBatch, ReadsFile};
use schema::*;
use tables::*;
use writes::Writes;

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

fn system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The redb-backed cache of one (root, tag). Obtain it from a [`crate::Coordinator`].
pub(crate) struct RedbCache {
    /// The tag this instance stores, and names in every error and log line.
    tag: Tag,
    /// `<root>/<tag>/cache.redb`.
    path: PathBuf,
    /// Limits, timeouts, the clock (`CacheOptions`), fixed at open.
    options: CacheOptions,
    /// `None` once closed. Operations clone the `Arc` and release the lock at once, so `close`
    /// waits only for operations already inside redb.
    database: RwLock<Option<Arc<OpenDatabase>>>,
    /// Serialises this process's commits, so that threads queue here (fairly, cheaply) instead of
    /// polling redb's cross-process lock.
    write_lock: Mutex<()>,
    /// Uncommitted writes, the writes of the commit in progress, the read snapshot, suspects
    /// (`buffer.rs`).
    buffer: Mutex<WriteBuffer>,
    /// Reads not yet recorded in the access table; merged by the next commit (`access.rs`).
    access: AccessLog,
    /// This instance's statistics since it opened.
    counters: AtomicCounters,
    /// The part of `counters` already added to the persisted lifetime counters.
    persisted_counters: Mutex<Counters>,
    /// The group-commit thread's state (`committer.rs`); the thread starts with the first
    /// buffered write.
    committer: Arc<Committer>,
    /// This instance, for the commit thread it starts (which holds it weakly).
    me: Weak<RedbCache>,
    /// `<root>/<tag>/reads`: reads and counters of processes that only read (`reads_file.rs`).
    reads_file: ReadsFile,
    /// Commits of this instance that landed.
    commits: AtomicU64,
    /// Whether the database handle is read-write (`handle.rs`: a handle is read-only until the
    /// first write). Derivable from the handle, but kept apart so that every `set` can check it
    /// with one atomic load instead of taking the handle's lock and cloning its `Arc`.
    writable: AtomicBool,
    /// How reads derive the wall time from the monotonic clock.
    wall: WallClock,
    /// The tag's blob files (`blobs.rs`).
    blob_files: BlobFiles,
    /// The tag's owned directories (`dirs.rs`).
    dir_files: DirFiles,
    /// The content files owned directories share (`contents.rs`).
    content_files: ContentFiles,
    /// Where the next commit's expiry sweep starts (empty: at the first key).
    sweep_cursor: Mutex<Vec<u8>>,
    /// The usage last published to `<root>/<tag>/usage` for the root budget of other tags.
    published_usage: Mutex<(u64, u64)>,
    /// Single-flight computations of this instance's threads (`crate::flight`).
    flights: Flights,
    /// The remote tier landed commits are published to (`publish.rs`); attached by the
    /// coordinator right after the open, if it has one.
    remote: OnceLock<(Arc<dyn RemoteStore>, SharingPolicy)>,
    /// Operation counts and timings for the `metrics` facade (`crate::telemetry`).
    telemetry: Telemetry,
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
    /// from [`crate::prepare_root`]. A corrupt file is moved aside and the tag starts empty.
    /// The commit thread starts with the first buffered write, not here.
    pub(crate) fn open(
        canonical_root: &Path,
        tag: Tag,
        options: CacheOptions,
    ) -> Result<Arc<Self>> {
        options.validate()?;
        let (path, tag_dir) = prepare_tag_files(canonical_root, &tag)?;
        let registration = FileRegistration::register(&path)?;
        let database = open_for_reading_first(&path, &tag, &options)?;
        let tag_dir = Arc::new(tag_dir);
        let access = AccessLog::new(options.clock.now_ms());
        let cache = Arc::new_cyclic(|me| RedbCache {
            me: me.clone(),
            reads_file: ReadsFile::new(Arc::clone(&tag_dir)),
            commits: AtomicU64::new(0),
            writable: AtomicBool::new(matches!(database, Handle::Writing(_))),
            wall: WallClock::new(&options),
            blob_files: BlobFiles::new(Arc::clone(&tag_dir)),
            content_files: ContentFiles::new(Arc::clone(&tag_dir)),
            dir_files: DirFiles::new(tag_dir),
            sweep_cursor: Mutex::new(Vec::new()),
            published_usage: Mutex::new((u64::MAX, u64::MAX)),
            flights: Flights::default(),
            remote: OnceLock::new(),
            telemetry: Telemetry::register(tag.as_str()),
            tag,
            path,
            database: RwLock::new(Some(Arc::new(OpenDatabase {
                database,
                registration: Arc::new(registration),
            }))),
            write_lock: Mutex::new(()),
            buffer: Mutex::new(WriteBuffer::default()),
            access,
            counters: AtomicCounters::default(),
            persisted_counters: Mutex::new(Counters::default()),
            committer: Arc::new(Committer::default()),
            options,
        });
        cache.calibrate_wall();
        // `ensure_tables` reads the usage table, where redb may panic on a damaged page: that
        // moves the file aside for a fresh one (`catching_panics`), which a second call checks.
        match cache.catching_panics("open", || cache.ensure_tables()) {
            Err(CacheError::Damaged { .. }) => {
                cache.catching_panics("open", || cache.ensure_tables())?;
            }
            other => other?,
        }
        tracing::debug!(tag = %cache.tag, path = %cache.path.display(), "opened cache");
        Ok(cache)
    }

    /// Tells the commit thread a write waits, starting it first if this is the first. If it
    /// cannot be started, commits at once in the caller's thread.
    fn wake_committer(&self) -> Result<()> {
        let started = self.committer.start_once(
            || {
                let weak = self.me.clone();
                Box::new(move || match weak.upgrade() {
                    None => Tick::Gone,
                    Some(cache) => match cache.commit_pending_in_background() {
                        Ok(()) => Tick::Done,
                        Err(_) => Tick::Failed,
                    },
                })
            },
            self.options.commit_interval,
            || format!("cache-commit-{}", self.tag),
        );
        match started {
            Ok(()) => {
                self.committer.work_arrived();
                Ok(())
            }
            Err(err) => {
                tracing::warn!(tag = %self.tag, error = %err, "could not start the commit thread; committing in the caller's thread");
                self.write(|_, _| Ok(()))
            }
        }
    }

    /// `<root>/<tag>/`.
    fn tag_dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    /// The options this instance was opened with.
    pub(crate) fn options(&self) -> &CacheOptions {
        &self.options
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.options.clock.now_ms()
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
    /// `run` gets the operation's start time ([`Moment`]), which reads use to judge the
    /// snapshot's age and, through [`RedbCache::now_ms_at`], the wall time: the one clock read
    /// of a read that is not timed.
    ///
    /// No tracing span: failures are logged with the operation and the tag, and a span per
    /// call is a cost on every read for a trace level nobody runs by default.
    /// `catching_panics` stays on every operation: each goes into redb, which panics on a
    /// damaged page, and unwinding costs nothing until a panic happens.
    fn measure<T>(
        &self,
        operation: &'static str,
        run: impl FnOnce(Moment) -> Result<T>,
    ) -> Result<T> {
        self.measure_timed(operation, 1, run)
    }

    /// [`RedbCache::measure`] for reads: only one read in [`TIME_ONE_READ_IN`] reads the
    /// precise clock twice to time itself, and counts its time that many times over, so that
    /// `operation_time_ns` stays an estimate of the time spent while the others read only the
    /// coarse one ([`Moment`]). The first read of an instance is timed.
    fn measure_read<T>(
        &self,
        operation: &'static str,
        run: impl FnOnce(Moment) -> Result<T>,
    ) -> Result<T> {
        self.measure_timed(operation, TIME_ONE_READ_IN, run)
    }

    fn measure_timed<T>(
        &self,
        operation: &'static str,
        one_in: u64,
        run: impl FnOnce(Moment) -> Result<T>,
    ) -> Result<T> {
        let sequence = self
            .counters
            .operations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let timer = sequence.is_multiple_of(one_in).then(Instant::now);
        let result = self.catching_panics(operation, || run(Moment::now()));
        let timed = timer.map(|timer| timer.elapsed());
        if let Some(took) = timed {
            AtomicCounters::add(
                &self.counters.operation_time_ns,
                (took.as_nanos() as u64).saturating_mul(one_in),
            );
        }
        self.telemetry.operation(operation, result.is_ok(), timed);
        if let Err(err) = &result {
            AtomicCounters::add(&self.counters.errors, 1);
            tracing::debug!(operation, tag = %self.tag, error = %crate::error::ErrorChain(err), "cache operation failed; the error goes to the caller, which reports it");
        }
        result
    }

    /// The wall time (ms since the epoch) at `at`, an `Instant` the caller read already. With
    /// the default system clock it is derived from `at` and the offset between the wall and
    /// monotonic clocks taken at the last calibration (at open, at each new read snapshot, and
    /// at least every [`CALIBRATE_EVERY_MS`]): no clock read. Another clock (a test's manual
    /// one) is asked.
    pub(crate) fn now_ms_at(&self, at: Moment) -> u64 {
        if !self.wall.system {
            return self.now_ms();
        }
        let monotonic = at.since(self.wall.epoch).as_millis() as i64;
        let calibrated = self
            .wall
            .calibrated_at_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if monotonic.saturating_sub(calibrated) > CALIBRATE_EVERY_MS {
            return self.calibrate_wall();
        }
        let offset = self
            .wall
            .offset_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        u64::try_from(monotonic.saturating_add(offset)).unwrap_or(0)
    }

    /// Reads the wall clock and the monotonic one together, and keeps their offset; the wall
    /// time now.
    pub(crate) fn calibrate_wall(&self) -> u64 {
        if !self.wall.system {
            return self.now_ms();
        }
        let wall = self.now_ms();
        let monotonic = Moment::now().since(self.wall.epoch).as_millis() as i64;
        let offset = i64::try_from(wall)
            .unwrap_or(i64::MAX)
            .saturating_sub(monotonic);
        self.wall
            .offset_ms
            .store(offset, std::sync::atomic::Ordering::Relaxed);
        self.wall
            .calibrated_at_ms
            .store(monotonic, std::sync::atomic::Ordering::Relaxed);
        wall
    }
}

/// Reads time one in this many of themselves (`measure_read`).
const TIME_ONE_READ_IN: u64 = 16;

/// The wall clock is read again at least this often (ms) by reads that derive it.
const CALIBRATE_EVERY_MS: i64 = 1000;

/// A moment on the monotonic clock as operations read it at their start: Linux's
/// `CLOCK_MONOTONIC_COARSE`, which costs about 2 ns against 20 ns for `Instant::now` (measured
/// in a loop of 20 million on the 2-core VM) and moves by the kernel's tick (4 ms here, 1 to 10
/// ms on Linux systems). Reads take the snapshot's age and the wall time from it
/// ([`RedbCache::now_ms_at`]), so both are known to within a tick: a read snapshot may be kept
/// up to one tick past `commit_interval`, and an entry read within one tick after it expires may
/// still be served (`docs/caching-system.md`, "Precision"). Elsewhere, `Instant`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Moment {
    nanos: u64,
}

impl Moment {
    pub(crate) fn now() -> Moment {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
            let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
            let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
            Moment {
                nanos: seconds.saturating_mul(1_000_000_000).saturating_add(nanos),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            static ORIGIN: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
            Moment {
                nanos: u64::try_from(ORIGIN.elapsed().as_nanos()).unwrap_or(u64::MAX),
            }
        }
    }

    /// The time from `earlier` to this moment; zero if `earlier` is later.
    pub(crate) fn since(self, earlier: Moment) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }
}

/// How reads derive the wall time from the monotonic clock (`RedbCache::now_ms_at`).
struct WallClock {
    /// Whether the instance's clock is the system clock; otherwise it is always asked.
    system: bool,
    /// The monotonic origin of the two figures below.
    epoch: Moment,
    /// Wall ms minus monotonic ms (since `epoch`) at the last calibration.
    offset_ms: std::sync::atomic::AtomicI64,
    /// Monotonic ms (since `epoch`) of the last calibration.
    calibrated_at_ms: std::sync::atomic::AtomicI64,
}

impl WallClock {
    fn new(options: &CacheOptions) -> Self {
        WallClock {
            system: crate::config::is_system_clock(&options.clock),
            epoch: Moment::now(),
            offset_ms: std::sync::atomic::AtomicI64::new(0),
            calibrated_at_ms: std::sync::atomic::AtomicI64::new(i64::MIN / 2),
        }
    }
}

impl Drop for RedbCache {
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "closing cache on drop failed");
        }
    }
}
