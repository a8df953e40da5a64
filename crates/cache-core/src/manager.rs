//! The `CacheManager` trait every cache implements, the values it returns, and `DisabledCache`.

use std::fmt::{self, Display};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::codec::ValueFormat;
use crate::directory::{CachedDirectory, StagedDirectory};
use crate::error::{CacheError, ErrorChain, KeyDisplay, Result};
use crate::files::TempOutput;
use crate::flight::{FlightWork, Lookup};
use crate::stats::{CacheStats, Counters};
use crate::tag::Tag;

/// A cache of byte values under byte keys, in one tag.
///
/// Object safe, `Send + Sync`: the coordinator hands instances out as [`SharedCache`]
/// (`Arc<dyn CacheManager>`), and many threads use one instance. Typed access is layered on top
/// by [`crate::TypedCache`].
///
/// Expiry is honoured everywhere: an expired entry is absent for `get`, `exists`, `keys`,
/// `get_metadata`, `delete`'s return value, and the entry and byte counts of `get_stats`.
pub trait CacheManager: Send + Sync + fmt::Debug {
    /// The instance's tag.
    fn tag(&self) -> &Tag;

    /// Whether this cache stores anything (`false` for [`DisabledCache`]).
    fn is_enabled(&self) -> bool;

    /// The value stored under `key`, if live. An empty value is a hit (`Some(vec![])`).
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with_format(key, ValueFormat::RAW, AnyFormat::Yes)
    }

    /// The value under `key`, if live and written in `format` (or in any format when `any` is
    /// `AnyFormat::Yes`). An entry in another format is a miss and is removed, with a warning:
    /// it was written by an older schema of the key type.
    fn get_with_format(
        &self,
        key: &[u8],
        format: ValueFormat,
        any: AnyFormat,
    ) -> Result<Option<Vec<u8>>>;

    /// Stores `value` under `key`, replacing any earlier entry; `ttl` of `None` never expires.
    ///
    /// Visible to every thread of this process at once; durable and visible to other processes
    /// within the instance's `commit_interval`, or at once after [`CacheManager::flush`].
    fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.set_with_format(key, value, ttl, ValueFormat::RAW)
    }

    /// Stores `value` recording the `format` it was encoded in.
    fn set_with_format(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        format: ValueFormat,
    ) -> Result<()>;

    /// Stores every `(key, value)` of `items` with one `ttl`, committed together.
    fn set_many(&self, items: &[(&[u8], &[u8])], ttl: Option<Duration>) -> Result<()> {
        self.set_many_with_format(items, ttl, ValueFormat::RAW)
    }

    /// [`CacheManager::set_many`] recording the `format` the values were encoded in. Either every
    /// item is accepted or, when one is invalid (empty or oversized key, oversized value), none.
    fn set_many_with_format(
        &self,
        items: &[(&[u8], &[u8])],
        ttl: Option<Duration>,
        format: ValueFormat,
    ) -> Result<()> {
        for (key, value) in items {
            self.set_with_format(key, value, ttl, format)?;
        }
        Ok(())
    }

    /// Stores the bytes `source` yields under `key`, reading them in pieces: a value larger than
    /// the blob threshold goes to a blob file without ever being held in memory whole. Returns
    /// the number of bytes stored. Committed before it returns (durable and visible to other
    /// processes). A value larger than the tag's size limit is refused and nothing is stored;
    /// an error reading `source` is returned as [`CacheError::Source`] and nothing is stored.
    fn set_from_reader(
        &self,
        key: &[u8],
        source: &mut dyn Read,
        ttl: Option<Duration>,
    ) -> Result<u64>;

    /// Writes the value under `key` to `sink`, in pieces; `None` on a miss (nothing written).
    /// A blob is verified against its hash before any byte reaches `sink`.
    fn get_to_writer(&self, key: &[u8], sink: &mut dyn Write) -> Result<Option<u64>>;

    /// [`CacheManager::set_from_reader`] from a file.
    fn set_from_path(&self, key: &[u8], path: &Path, ttl: Option<Duration>) -> Result<u64> {
        let mut file = std::fs::File::open(path)
            .map_err(|source| CacheError::io("opening the file to cache", path, source))?;
        self.set_from_reader(key, &mut file, ttl)
    }

    /// Writes the value under `key` to a file at `path` (replacing it), through a temp file
    /// beside it that is renamed into place only once complete; `None` on a miss, and then
    /// `path` is left as it was.
    fn get_to_path(&self, key: &[u8], path: &Path) -> Result<Option<u64>> {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => std::path::PathBuf::from("."),
        };
        let mut temp = TempOutput::beside(&parent, path)?;
        let written = match self.get_to_writer(key, temp.file_mut())? {
            Some(written) => written,
            None => return Ok(None),
        };
        temp.persist(path)?;
        Ok(Some(written))
    }

    /// A new empty directory to fill and then store with [`CacheManager::set_directory`]. If
    /// it is dropped instead, it is removed.
    fn stage_directory(&self) -> Result<StagedDirectory>;

    /// Stores `staged` as a directory owned by the entry `key`, with `value` (for example the
    /// directory's metadata). The directory's size counts in the tag's size limit, and it is
    /// removed when the entry expires, is evicted, deleted or replaced. Committed before it
    /// returns. A directory larger than the size limit is refused (and removed). `None` from a
    /// cache that stores nothing (a disabled one), which drops the directory.
    fn set_directory(
        &self,
        key: &[u8],
        staged: StagedDirectory,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Option<CachedDirectory>>;

    /// The directory owned by `key`, with its value, if live and present. An entry whose
    /// directory has gone is a miss, and is removed.
    fn get_directory(&self, key: &[u8]) -> Result<Option<CachedDirectory>>;

    /// Removes `key`; whether a live entry existed.
    fn delete(&self, key: &[u8]) -> Result<bool>;

    /// Removes every key in `keys` at once; how many live entries existed.
    fn delete_many(&self, keys: &[&[u8]]) -> Result<usize>;

    /// Whether a live entry exists under `key`. Does not count as a read in the statistics.
    fn exists(&self, key: &[u8]) -> Result<bool>;

    /// Removes every entry of the tag. Statistics (tag and counters) are kept.
    fn clear(&self) -> Result<()>;

    /// Every live key.
    fn keys(&self) -> Result<Vec<Vec<u8>>>;

    /// What is stored about `key`, if live. All values are real, read from the store.
    fn get_metadata(&self, key: &[u8]) -> Result<Option<EntryMetadata>>;

    /// Counters and sizes.
    fn get_stats(&self) -> Result<CacheStats>;

    /// Removes expired entries (with the blobs and directories they own), entries that cannot
    /// be read or whose blob or directory is missing, orphan blobs, directories and temp files;
    /// evicts until the tag is under its limits; compacts the file when much of it is dead
    /// space. Returns what it did.
    fn cleanup(&self) -> Result<CleanupReport>;

    /// Makes everything this instance has written, and its statistics, durable and visible to
    /// other processes.
    fn flush(&self) -> Result<()>;

    /// Flushes and releases the database; later calls return [`crate::CacheError::Closed`].
    /// Closing twice is not an error. Never deletes data.
    fn close(&self) -> Result<()>;

    /// Whether [`CacheManager::close`] has been called.
    fn is_closed(&self) -> bool;

    /// The tag's database file, if there is one.
    fn database_path(&self) -> Option<&Path>;

    /// Removes an entry whose value a typed layer could not decode, and counts the read as a miss
    /// and an error instead of a hit. Used by [`crate::TypedCache`]; rarely useful elsewhere.
    fn discard_undecodable(&self, key: &[u8], reason: &str) -> Result<()>;

    /// Runs `work` as the single flight of `key`: the object-safe machinery behind
    /// [`crate::SingleFlight`], which is what to call. On a miss, exactly one caller on the
    /// machine computes while the others wait for it, then look again. `Ok` once `work` has its
    /// answer (found, computed, or its own error); `Err` when waiting failed (the instance's
    /// `timeout`, [`CacheError::ComputationFailed`] with no retry left, a storage error).
    ///
    /// The provided implementation coordinates nothing: it looks, then computes on a miss. That
    /// is what a cache that stores nothing ([`DisabledCache`]) needs; [`crate::RedbCache`]
    /// coordinates threads in memory and processes through a lease in the tag's file.
    fn run_single_flight(&self, key: &[u8], work: &mut dyn FlightWork) -> Result<()> {
        let _ = key;
        crate::flight::run_alone(work);
        Ok(())
    }
}

/// Whether a format-checked read accepts any stored format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnyFormat {
    /// Return the value whatever format wrote it (untyped reads).
    Yes,
    /// Only the requested format; another is a miss and the entry is removed.
    No,
}

/// The instances the coordinator hands out.
pub type SharedCache = std::sync::Arc<dyn CacheManager>;

/// What is stored about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMetadata {
    /// The key.
    pub key: Vec<u8>,
    /// The tag it lives in.
    pub tag: String,
    /// Size of the value in bytes.
    pub size_bytes: u64,
    /// When the value was stored.
    pub created: SystemTime,
    /// When it was last read by `get`, in any process; `None` if never.
    pub last_accessed: Option<SystemTime>,
    /// How many times it was read by `get`, in any process.
    pub access_count: u64,
    /// The time to live it was stored with; `None` never expires.
    pub ttl: Option<Duration>,
    /// When it expires; `None` never.
    pub expires_at: Option<SystemTime>,
    /// How the value was encoded.
    pub format: ValueFormat,
}

/// What `cleanup()` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Expired entries removed.
    pub expired: u64,
    /// Entries evicted to get under the size limit or the entry limit.
    pub evicted: u64,
    /// Entries removed because they could not be read.
    pub unreadable: u64,
    /// Entries removed because their blob or directory was missing or damaged.
    pub missing_files: u64,
    /// Blob files and directories removed because no entry owned them.
    pub orphan_files: u64,
    /// Temp files and staging directories of dead processes removed.
    pub temp_files: u64,
    /// Whether the database file was compacted.
    pub compaction: Compaction,
}

impl CleanupReport {
    /// Entries removed.
    pub fn total(&self) -> u64 {
        self.expired + self.evicted + self.unreadable + self.missing_files
    }
}

/// Whether `cleanup()` compacted the tag's database file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Compaction {
    /// Dead space was under the threshold.
    #[default]
    NotNeeded,
    /// Compacted: the file's size before and after.
    Compacted {
        /// Bytes before.
        before: u64,
        /// Bytes after.
        after: u64,
    },
    /// Compaction was due but could not run; the reason (for example another process reading
    /// the file at that moment).
    Skipped(String),
}

/// A cache that stores nothing: every read misses, every write succeeds and is dropped.
///
/// Chosen by `enabled = false`, the `disabled` strategy, or a kill switch. Never registered in a
/// coordinator.
#[derive(Debug, Clone)]
pub struct DisabledCache {
    tag: Tag,
}

impl DisabledCache {
    /// A disabled cache for `tag`.
    pub fn new(tag: Tag) -> Self {
        DisabledCache { tag }
    }
}

impl CacheManager for DisabledCache {
    fn tag(&self) -> &Tag {
        &self.tag
    }

    fn is_enabled(&self) -> bool {
        false
    }

    fn get_with_format(&self, _: &[u8], _: ValueFormat, _: AnyFormat) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    fn set_with_format(
        &self,
        _: &[u8],
        _: &[u8],
        _: Option<Duration>,
        _: ValueFormat,
    ) -> Result<()> {
        Ok(())
    }

    fn set_from_reader(&self, _: &[u8], _: &mut dyn Read, _: Option<Duration>) -> Result<u64> {
        Ok(0)
    }

    fn get_to_writer(&self, _: &[u8], _: &mut dyn Write) -> Result<Option<u64>> {
        Ok(None)
    }

    fn stage_directory(&self) -> Result<StagedDirectory> {
        StagedDirectory::detached()
    }

    fn set_directory(
        &self,
        _: &[u8],
        staged: StagedDirectory,
        _: &[u8],
        _: Option<Duration>,
    ) -> Result<Option<CachedDirectory>> {
        // Nothing is kept: the directory is removed as `staged` drops.
        drop(staged);
        Ok(None)
    }

    fn get_directory(&self, _: &[u8]) -> Result<Option<CachedDirectory>> {
        Ok(None)
    }

    fn delete(&self, _: &[u8]) -> Result<bool> {
        Ok(false)
    }

    fn delete_many(&self, _: &[&[u8]]) -> Result<usize> {
        Ok(0)
    }

    fn exists(&self, _: &[u8]) -> Result<bool> {
        Ok(false)
    }

    fn clear(&self) -> Result<()> {
        Ok(())
    }

    fn keys(&self) -> Result<Vec<Vec<u8>>> {
        Ok(Vec::new())
    }

    fn get_metadata(&self, _: &[u8]) -> Result<Option<EntryMetadata>> {
        Ok(None)
    }

    fn get_stats(&self) -> Result<CacheStats> {
        Ok(CacheStats {
            tag: self.tag.to_string(),
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
        })
    }

    fn cleanup(&self) -> Result<CleanupReport> {
        Ok(CleanupReport::default())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn close(&self) -> Result<()> {
        Ok(())
    }

    fn is_closed(&self) -> bool {
        false
    }

    fn database_path(&self) -> Option<&Path> {
        None
    }

    fn discard_undecodable(&self, _: &[u8], _: &str) -> Result<()> {
        Ok(())
    }
}

/// Single-flight computation, available on every [`CacheManager`] (including
/// `Arc<dyn CacheManager>`).
///
/// On a miss, exactly one caller on the machine (any thread, any process using the same cache
/// root) runs its computation; the others wait for it and return what it stored. Waiting is
/// bounded by the instance's `timeout` ([`CacheError::FlightTimeout`], naming the key and the
/// process computing it). When the computation a caller waited for fails, the caller tries again
/// `flight_retries` times (default once), then returns [`CacheError::ComputationFailed`]. A
/// disabled cache computes every time.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{CacheError, CacheOptions, Coordinator, SingleFlight};
///
/// # fn main() -> Result<(), CacheError> {
/// let root = tempfile::tempdir().expect("temp dir");
/// let coordinator = Coordinator::new();
/// let cache = coordinator.get_shared_cache_instance(root.path(), "thumbnails", CacheOptions::default())?;
/// let ttl = Some(Duration::from_secs(600));
///
/// // However many threads and processes ask at once, one of them renders the thumbnail.
/// let rendered = cache.get_or_compute(b"render:42", ttl, || Ok::<_, CacheError>(b"<svg/>".to_vec()))?;
/// assert_eq!(rendered, b"<svg/>");
/// // Later callers read it; their closure does not run.
/// let again = cache.get_or_compute(b"render:42", ttl, || -> Result<Vec<u8>, CacheError> {
///     unreachable!("the value is cached")
/// })?;
/// assert_eq!(again, rendered);
/// assert_eq!(cache.get_stats()?.counters.computations, 1);
/// # Ok(())
/// # }
/// ```
pub trait SingleFlight: CacheManager {
    /// The single-flight primitive: `lookup` finds the result (`None` on a miss); on a miss,
    /// one caller on the machine runs `compute`, which must store the result where `lookup` finds
    /// it, and the others wait and then call `lookup` again.
    ///
    /// `lookup` runs before anything else, once more after this caller takes the key's lease,
    /// and after every wait; `compute` runs at most once, and its result (or error) is this
    /// caller's. The error of a computation another caller ran reaches this one as
    /// [`CacheError::ComputationFailed`] with the error's text (hence `E: Display`). If
    /// `compute` panics, the lease is released as failed before the panic goes on, so no waiter
    /// is left hanging. A `compute` that asks for the same key again waits for itself until the
    /// timeout.
    fn single_flight<T, E, L, F>(&self, key: &[u8], lookup: L, compute: F) -> Result<T, E>
    where
        E: From<CacheError> + Display,
        L: FnMut() -> Result<Option<T>, E>,
        F: FnOnce() -> Result<T, E>,
    {
        let mut work = Work {
            lookup,
            compute: Some(compute),
            outcome: None,
        };
        let flown = self.run_single_flight(key, &mut work);
        match (work.outcome, flown) {
            (Some(outcome), _) => outcome,
            (None, Err(err)) => Err(err.into()),
            // A flight that ends without an answer, which no implementation does: computing
            // is then the answer that is always right.
            (None, Ok(())) => match work.compute {
                Some(compute) => compute(),
                None => Err(CacheError::ComputationFailed {
                    tag: self.tag().to_string(),
                    key: KeyDisplay::new(key),
                    owner_pid: std::process::id(),
                    message: "the computation ended without a result".to_owned(),
                }
                .into()),
            },
        }
    }

    /// The value under `key`, or `compute`'s, which is stored with `ttl`; on a miss, one caller
    /// on the machine computes and the others receive what it stored (see [`SingleFlight`]).
    ///
    /// A failure to store the computed value does not lose it: the computing caller gets it and
    /// the failure is logged, since the cache is an optimisation of `compute`, not its owner.
    /// Waiters then find nothing and compute in their turn.
    fn get_or_compute<E, F>(
        &self,
        key: &[u8],
        ttl: Option<Duration>,
        compute: F,
    ) -> Result<Vec<u8>, E>
    where
        E: From<CacheError> + Display,
        F: FnOnce() -> Result<Vec<u8>, E>,
    {
        self.single_flight(
            key,
            || self.get(key).map_err(E::from),
            || {
                let value = compute()?;
                if let Err(err) = self.set(key, &value, ttl) {
                    tracing::warn!(tag = %self.tag(), key = %KeyDisplay::new(key), error = %ErrorChain(&err), "computed value could not be cached");
                }
                Ok(value)
            },
        )
    }
}

impl<C: CacheManager + ?Sized> SingleFlight for C {}

/// [`FlightWork`] from two closures; the caller's answer ends up in `outcome`.
struct Work<L, F, T, E> {
    lookup: L,
    compute: Option<F>,
    outcome: Option<Result<T, E>>,
}

impl<L, F, T, E> FlightWork for Work<L, F, T, E>
where
    E: Display,
    L: FnMut() -> Result<Option<T>, E>,
    F: FnOnce() -> Result<T, E>,
{
    fn look_up(&mut self) -> Lookup {
        match (self.lookup)() {
            Ok(None) => Lookup::Missing,
            found => {
                self.outcome = found.transpose();
                Lookup::Answered
            }
        }
    }

    fn compute(&mut self) -> std::result::Result<(), String> {
        let Some(compute) = self.compute.take() else {
            debug_assert!(false, "a flight computes at most once");
            return Ok(());
        };
        let computed = compute();
        let failure = computed.as_ref().err().map(ToString::to_string);
        self.outcome = Some(computed);
        failure.map_or(Ok(()), Err)
    }
}
