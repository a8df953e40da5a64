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
//!
//! # Facets
//!
//! - `handle.rs`: the database handle (latched-error reopen, panic quarantine, exclusive use).
//! - `tables.rs`: the tables and `WriteTables`, the only code that changes entries.
//! - `buffer.rs`: this process's uncommitted writes, suspects and access records.
//! - `commit.rs`: the one write path, and the release of files after a commit.
//! - `read.rs`: lookups through the buffer and the read snapshot; reads never change an entry.
//! - `maintenance.rs`: recount, compaction, integrity, lifetime counters.
//! - `leases.rs`: the single-flight lease table.
//! - `api.rs`: [`CacheManager`] for [`RedbCache`].
//! - `blobs.rs`, `dirs.rs`: the files entries own; `budget.rs`: the root's size budget;
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
//!    when a commit lands), `access_pending`, `sweep_cursor`, `published_usage`, and the
//!    committer's signal.

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
use crate::directory::{CachedDirectory, StagedDirectory};
use crate::error::{CacheError, KeyDisplay, Result};
use crate::files::DATABASE_FILE_NAME;
use crate::flight::{self, FlightWork, Flights, LeaseWrite};
use crate::manager::{AnyFormat, CacheManager, CleanupReport, Compaction, EntryMetadata};
use crate::stats::{AtomicCounters, CacheStats, Counters};
use crate::tag::Tag;
use blobs::{BlobFiles, BlobRead, StageError, StagedBlob};
use committer::{Committer, Tick};
use dirs::DirFiles;

mod api;
pub(crate) mod backend;
pub(crate) mod blobs;
mod budget;
mod buffer;
mod commit;
mod committer;
pub(crate) mod dirs;
#[cfg(test)]
mod faults;
mod handle;
mod leases;
mod maintenance;
mod read;
mod tables;
#[cfg(test)]
mod tests;

use buffer::*;
use handle::*;
pub(crate) use handle::{FileRegistration, move_aside};
pub(crate) use maintenance::{EntryFiles, entries_with_files};
use read::*;
use tables::*;

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
pub struct RedbCache {
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
    /// Reads not yet recorded in the access table; merged by the next commit.
    access_pending: Mutex<KeyMap<AccessDelta>>,
    /// This instance's statistics since it opened.
    counters: AtomicCounters,
    /// The part of `counters` already added to the persisted lifetime counters.
    persisted_counters: Mutex<Counters>,
    /// The group-commit thread's state (`committer.rs`).
    committer: Arc<Committer>,
    /// The tag's blob files (`blobs.rs`).
    blob_files: BlobFiles,
    /// The tag's owned directories (`dirs.rs`).
    dir_files: DirFiles,
    /// Where the next commit's expiry sweep starts (empty: at the first key).
    sweep_cursor: Mutex<Vec<u8>>,
    /// The usage last published to `<root>/<tag>/usage` for the root budget of other tags.
    published_usage: Mutex<(u64, u64)>,
    /// Single-flight computations of this instance's threads (`crate::flight`).
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
        let weak = Arc::downgrade(&cache);
        let commit = Box::new(move || match weak.upgrade() {
            None => Tick::Gone,
            Some(cache) => match cache.commit_pending_in_background() {
                Ok(()) => Tick::Done,
                Err(_) => Tick::Failed,
            },
        });
        cache
            .committer
            .start(commit, cache.options.commit_interval, thread_name)
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
}

impl Drop for RedbCache {
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "closing cache on drop failed");
        }
    }
}
