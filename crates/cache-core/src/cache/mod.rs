//! [`Cache`], the one handle callers hold: a tag's cache, cheap to clone, with the operations
//! grouped by what they work on.
//!
//! - `mod.rs` (here): the handle, its two modes, and upkeep (statistics, cleanup, flush, close).
//! - `bytes.rs`: byte values under byte keys (get, set, delete, keys, metadata).
//! - `streams.rs`: values streamed from readers and files to writers and files.
//! - `dirs.rs`: directories owned by an entry.
//! - `flight.rs`: single-flight computation (`single_flight`, `get_or_compute`).
//! - `typed.rs`: typed keys ([`crate::CacheKey`]) and their values.
//! - `remote.rs`: read-through from the remote tier on a local miss.
//!
//! A handle is in one of two modes: **stored** (an `Arc` of the tag's store, shared by every
//! handle the coordinator gave out for the same root and tag) or **disabled** (stores nothing:
//! every read misses, every write succeeds and is dropped, a single flight always computes).
//! The disabled mode is a branch in each method, not a second implementation, so a new
//! operation cannot forget it. Like the original's, a disabled cache refuses nothing.
//!
//! When the coordinator was given a remote tier ([`crate::RemoteStore`]), a stored handle
//! consults it on a local miss (`bytes.rs`, `streams.rs`) and the store publishes what its
//! commits land.
//!
//! There is no trait: nothing outside the core implements a cache, and one concrete type keeps
//! the API in one place (rustdoc lists every operation on one page) and out of the caller's
//! imports. The traits that remain are the ones others implement: [`crate::Clock`],
//! [`crate::CacheKey`] and [`crate::RemoteStore`].

use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
use crate::stats::{CacheStats, Counters};
use crate::store::RedbCache;
use crate::tag::Tag;
use crate::values::CleanupReport;

mod bytes;
mod dirs;
mod flight;
mod remote;
mod streams;
mod typed;

/// A cache of values under keys, in one tag: what the coordinator hands out.
///
/// Cheap to clone (an `Arc` inside); `Send + Sync`, so many threads use one handle or clones of
/// it. Every handle of one `(root, tag)` from one coordinator shares one store
/// ([`Cache::same_instance`]).
///
/// Expiry is honoured everywhere: an expired entry is absent for `get`, `exists`, `keys`,
/// `get_metadata`, `delete`'s return value, and the entry and byte counts of `get_stats`.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{CacheOptions, Coordinator};
///
/// # fn main() -> Result<(), cache_core::CacheError> {
/// let root = tempfile::tempdir().expect("temp dir");
/// let coordinator = Coordinator::new();
/// let cache = coordinator.get_shared_cache_instance(root.path(), "thumbnails", CacheOptions::default())?;
/// cache.set(b"image:42", b"image bytes", Some(Duration::from_secs(3600)))?;
/// assert_eq!(cache.get(b"image:42")?, Some(b"image bytes".to_vec()));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Cache {
    mode: Mode,
}

#[derive(Clone, Debug)]
enum Mode {
    /// The tag's store, shared with every other handle of the same root and tag.
    Stored(Arc<RedbCache>),
    /// Stores nothing.
    Disabled(Tag),
}

impl Cache {
    /// A cache for `tag` that stores nothing: every read misses, every write succeeds and is
    /// dropped. What the coordinator hands out when the tag is disabled (`enabled = false`, the
    /// `disabled` strategy, or a kill switch); never registered.
    pub fn disabled(tag: Tag) -> Self {
        Cache {
            mode: Mode::Disabled(tag),
        }
    }

    /// A handle on an open store.
    pub(crate) fn stored(store: Arc<RedbCache>) -> Self {
        Cache {
            mode: Mode::Stored(store),
        }
    }

    /// The store behind the handle; `None` when disabled.
    fn store(&self) -> Option<&RedbCache> {
        match &self.mode {
            Mode::Stored(store) => Some(store),
            Mode::Disabled(_) => None,
        }
    }

    /// The handle's tag.
    pub fn tag(&self) -> &Tag {
        match &self.mode {
            Mode::Stored(store) => store.tag(),
            Mode::Disabled(tag) => tag,
        }
    }

    /// Whether this cache stores anything (`false` for a disabled one).
    pub fn is_enabled(&self) -> bool {
        matches!(self.mode, Mode::Stored(_))
    }

    /// Whether `self` and `other` share one store: the same `(root, tag)` from the same
    /// coordinator, not reset in between. Two disabled handles share nothing.
    pub fn same_instance(&self, other: &Cache) -> bool {
        match (&self.mode, &other.mode) {
            (Mode::Stored(a), Mode::Stored(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Counters and sizes.
    pub fn get_stats(&self) -> Result<CacheStats> {
        match self.store() {
            Some(store) => store.get_stats(),
            None => Ok(CacheStats {
                tag: self.tag().to_string(),
                enabled: false,
                entries: 0,
                bytes: 0,
                disk_bytes: 0,
                max_size_bytes: 0,
                max_entries: None,
                filesystem: None,
                min_free_bytes: None,
                last_cleanup: None,
                counters: Counters::default(),
                lifetime: Counters::default(),
            }),
        }
    }

    /// Removes expired entries (with the blobs and directories they own), entries that cannot
    /// be read or whose blob or directory is missing, orphan blobs, directories and temp files;
    /// evicts until the tag is under its limits; compacts the file when much of it is dead
    /// space. Returns what it did.
    pub fn cleanup(&self) -> Result<CleanupReport> {
        self.store()
            .map_or_else(|| Ok(CleanupReport::default()), RedbCache::cleanup)
    }

    /// Makes everything this instance has written, and its statistics, durable and visible to
    /// other processes.
    ///
    /// With a remote tier attached, then waits (at most the instance's `timeout`) for the
    /// uploads of what was written to finish; a remote that fails or is slow never fails this.
    pub fn flush(&self) -> Result<()> {
        let Some(store) = self.store() else {
            return Ok(());
        };
        store.flush()?;
        drain_remote(store);
        Ok(())
    }

    /// Flushes and releases the database; later calls on any handle of this instance return
    /// [`crate::CacheError::Closed`]. Closing twice is not an error. Never deletes data.
    pub fn close(&self) -> Result<()> {
        let Some(store) = self.store() else {
            return Ok(());
        };
        let closed = store.close();
        drain_remote(store);
        // What the uploads came to arrived after the close's commit: persisted apart.
        store.leave_late_counters();
        closed
    }

    /// Whether [`Cache::close`] has been called on this instance.
    pub fn is_closed(&self) -> bool {
        self.store().is_some_and(RedbCache::is_closed)
    }

    /// Zeroes the tag's lifetime counters (what `get_stats().lifetime` reports), as
    /// `sccache --zero-stats` does: every process's persisted counts, and this instance's so
    /// far. Entries, usage and the last cleanup time are untouched. Another process's counts not
    /// committed yet are added when it commits them.
    pub fn reset_lifetime_counters(&self) -> Result<()> {
        self.store()
            .map_or(Ok(()), RedbCache::reset_lifetime_counters)
    }

    /// Checks every page of the tag's database file against its checksum (redb's integrity
    /// check); `false` when damage was found (redb repairs what it can on the next open).
    /// Needs the instance to itself for the moment: fails with [`crate::CacheError::Busy`]
    /// while another thread is inside an operation. A disabled cache has nothing to damage.
    pub fn check_integrity(&self) -> Result<bool> {
        self.store().map_or(Ok(true), RedbCache::check_integrity)
    }

    /// The tag's database file, if there is one.
    pub fn database_path(&self) -> Option<&Path> {
        self.store().and_then(RedbCache::database_path)
    }
}

/// Waits for the remote tier's uploads, if a remote is attached, at most the store's `timeout`.
fn drain_remote(store: &RedbCache) {
    if let Some(remote) = store.remote() {
        let report = remote.drain(store.options().timeout);
        if report.dropped > 0 || report.pending > 0 {
            tracing::warn!(tag = %store.tag(), published = report.published, dropped = report.dropped, pending = report.pending, "not everything written reached the remote tier");
        }
    }
}
