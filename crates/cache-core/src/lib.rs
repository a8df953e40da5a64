//! `cache-core`: a persistent, process-safe cache on redb, shared by every part of a program,
//! with each domain isolated in its own namespace (tag).
//!
//! # Overview
//!
//! - [`Coordinator`] hands out one shared instance per `(canonical cache root, tag)`:
//!   same pair, handles on one store; different tag, an isolated instance with its own database file
//!   `<root>/<tag>/cache.redb`. [`default_coordinator`] and the free functions
//!   ([`create_default_cache`], [`get_shared_cache_instance`], ...) use one process-wide
//!   coordinator.
//! - [`Cache`] is the one handle callers hold (cheap to clone): byte values under byte keys,
//!   with TTLs, metadata, statistics, cleanup and flush; streams and files; directories owned by
//!   an entry. Behind it, a redb store (`MultiWriter` mode: several processes share one file),
//!   or nothing at all when the tag is disabled ([`Cache::disabled`]).
//! - [`CacheKey`] and the handle's typed methods (`get_typed`, `set_typed`, ...) give typed
//!   access: a domain declares per key type its tag, value type, schema version and default
//!   TTL; values go through the codec (serde + bincode 2) with the codec and schema version
//!   recorded in each entry.
//! - Single flight computes a missing value once on the whole machine:
//!   [`Cache::get_or_compute`] (bytes), [`Cache::get_or_compute_typed`], and the primitive
//!   [`Cache::single_flight`] that
//!   domain services build on. One caller (any thread, any process on the root) computes under
//!   a lease kept in the tag's file; the others wait, bounded by the instance's `timeout`, and
//!   receive what it stored. A dead owner's lease is taken over; a failed computation wakes its
//!   waiters, who retry once (`flight_retries`).
//! - [`keys`] builds unambiguous, full-width (blake3) keys from parts, maps and files.
//! - Configuration: [`CacheOptions`] per instance, [`UserCacheConfig`] for a whole program
//!   ([`UserCacheConfig::load`] reads the configuration file `cache.toml` and the environment;
//!   [`UserCacheConfig::options_for`] gives a tag's options),
//!   [`CacheTtlConfig`] for the TTL of every level a domain declares ([`TtlLevel`]),
//!   [`resolve_cache_root`] for the root,
//!   and [`Environment`] for kill switches (`GLOVEBOX_CACHE_GLOBAL`, `GLOVEBOX_CACHE_<TAG>`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{CacheOptions, Coordinator};
//!
//! # fn main() -> Result<(), cache_core::CacheError> {
//! let root = tempfile::tempdir().expect("temp dir");
//! let coordinator = Coordinator::new();
//! let cache = coordinator.get_shared_cache_instance(root.path(), "thumbnails", CacheOptions::default())?;
//! cache.set(b"image:42", b"image bytes", Some(Duration::from_secs(3600)))?;
//! assert_eq!(cache.get(b"image:42")?, Some(b"image bytes".to_vec()));
//!
//! let again = coordinator.get_shared_cache_instance(root.path(), "thumbnails", CacheOptions::default())?;
//! assert!(cache.same_instance(&again));
//! coordinator.reset()?; // flushes and closes; never deletes data
//! # Ok(())
//! # }
//! ```
//!
//! Computing a missing value once, however many threads and processes ask for it at once:
//!
//! ```
//! use std::time::Duration;
//! use cache_core::{CacheError, CacheOptions, Coordinator};
//!
//! # fn main() -> Result<(), CacheError> {
//! let root = tempfile::tempdir().expect("temp dir");
//! let coordinator = Coordinator::new();
//! let cache = coordinator.get_shared_cache_instance(root.path(), "reports", CacheOptions::default())?;
//! let runs = std::sync::atomic::AtomicUsize::new(0);
//! std::thread::scope(|scope| {
//!     for _ in 0..4 {
//!         scope.spawn(|| {
//!             let value = cache.get_or_compute(b"render:7", Some(Duration::from_secs(60)), || {
//!                 runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!                 Ok::<_, CacheError>(b"rendered".to_vec())
//!             });
//!             assert_eq!(value.expect("computed or waited for"), b"rendered");
//!         });
//!     }
//! });
//! assert_eq!(runs.into_inner(), 1);
//! # Ok(())
//! # }
//! ```

mod cache;
mod codec;
mod config;
mod config_file;
mod coordinator;
mod directory;
mod doctor;
mod env;
mod error;
mod files;
mod flight;
mod fsys;
// Entry points for the fuzz targets and the decoder property tests; not part of the API.
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
mod process;
mod remote;
mod root_files;
mod stats;
mod store;
mod tag;
mod telemetry;
mod ttl;
mod typed;
mod values;

pub use cache::Cache;
pub use codec::{CodecId, ValueFormat};
pub use config::{
    APPLICATION_DIR, CacheOptions, CacheStrategy, Clock, DiskSpace, EvictionPolicy,
    FilesystemSpace, ManualClock, MinFreeSpace, RemoteConfig, SystemClock, SystemDiskSpace,
    TagSettings, UserCacheConfig, resolve_cache_root,
};
pub use config_file::{
    CONFIG_FILE_NAME, CONFIG_FILE_VARIABLE, ConfigOrigin, ConfigSetting, ExplainedConfig,
    locate_config_file,
};
pub use coordinator::{
    Coordinator, cleanup_shared_cache_instances, create_cache_from_user_config,
    create_default_cache, default_coordinator, get_aggregated_cache_stats,
    get_cache_instance_count, get_cache_instance_keys, get_shared_cache_instance,
    reset_shared_cache_instances,
};
pub use directory::{CachedDirectory, StagedDirectory};
pub use doctor::{
    CheckFinding, CheckStatus, DoctorOptions, EntryFile, StorageFindings, TagDiagnosis,
    diagnose_tag,
};
pub use env::Environment;
pub use error::{CacheError, ErrorChain, KeyDisplay, Result};
pub use files::{DATABASE_FILE_NAME, prepare_root};
pub use remote::{
    DirectoryItem, DirectoryItemKind, DrainReport, PublishedDirectory, PublishedEntry,
    PublishedValue, RemoteEntry, RemoteError, RemoteLease, RemoteLeaseGuard, RemoteStore,
    RemoteValue, SharingRule,
};
pub use root_files::RootFiles;
pub use stats::{AggregatedStats, CacheStats, Counters, RemoteCounters};
pub use tag::Tag;
pub use ttl::{CacheTtlConfig, TTL_VARIABLE_PREFIX, TtlLevel, UNCLAIMED_TTL_LEVELS};
pub use typed::CacheKey;
pub use values::{CleanupReport, Compaction, EntryMetadata};
