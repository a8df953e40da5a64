//! Configuration: cache-root resolution, per-instance options (with free-space settings), the
//! user-level config, and the clock that TTLs are measured with. Just over 600 lines: the
//! documented fields of `CacheOptions` and `UserCacheConfig` are most of it; the file format is
//! `config_file.rs`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::env::Environment;
use crate::error::{CacheError, Result};
use crate::ttl::CacheTtlConfig;

/// The directory name used under the XDG or platform cache directory.
pub const APPLICATION_DIR: &str = "glovebox";

/// Resolves the cache root: `explicit` > `GLOVEBOX_CACHE_PATH` > `$XDG_CACHE_HOME/glovebox` >
/// the platform cache directory + `glovebox`.
///
/// Every factory and the CLI use this one function, so a custom path is honoured everywhere (the
/// original's factories disagreed: its defect 7). The result is not created or canonicalised
/// here; the store does that when it opens a tag.
pub fn resolve_cache_root(explicit: Option<&Path>, env: &Environment) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Some(path) = env.var("GLOVEBOX_CACHE_PATH") {
        return Ok(PathBuf::from(path));
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = env
        .var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
    {
        return Ok(xdg.join(APPLICATION_DIR));
    }
    platform_cache_dir(env)
        .map(|dir| dir.join(APPLICATION_DIR))
        .ok_or_else(|| CacheError::InvalidRoot {
            path: PathBuf::new(),
            reason: "no cache root: set GLOVEBOX_CACHE_PATH, XDG_CACHE_HOME or HOME".to_owned(),
        })
}

fn platform_cache_dir(env: &Environment) -> Option<PathBuf> {
    if cfg!(windows) {
        return env.var("LOCALAPPDATA").map(PathBuf::from);
    }
    let home = PathBuf::from(env.var("HOME")?);
    if cfg!(target_os = "macos") {
        Some(home.join("Library").join("Caches"))
    } else {
        Some(home.join(".cache"))
    }
}

/// Which entries eviction removes first when a tag is over its size limit. In the configuration
/// file: `least-recently-stored` or `least-recently-used`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvictionPolicy {
    /// The entries stored longest ago (the original's default).
    #[default]
    LeastRecentlyStored,
    /// The entries read longest ago (never-read entries by their store time).
    LeastRecentlyUsed,
}

/// The source of "now" for TTLs and metadata, in milliseconds since the Unix epoch.
///
/// Injectable so that expiry can be tested without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a broken machine; treating it as the epoch keeps entries valid
        // rather than panicking.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to. For tests of TTL behaviour.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        ManualClock {
            now_ms: AtomicU64::new(start_ms),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.now_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// How much of the filesystem holding the cache must stay free ([`CacheOptions::min_free_space`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinFreeSpace {
    /// At least this many bytes.
    Bytes(u64),
    /// At least this share of the filesystem's size, in percent (0 to 100).
    Percent(u8),
}

impl MinFreeSpace {
    /// The bytes to keep free on a filesystem of `filesystem_bytes`.
    pub fn bytes_of(self, filesystem_bytes: u64) -> u64 {
        match self {
            MinFreeSpace::Bytes(bytes) => bytes,
            MinFreeSpace::Percent(percent) => {
                (u128::from(filesystem_bytes) * u128::from(percent.min(100)) / 100) as u64
            }
        }
    }
}

impl Default for MinFreeSpace {
    /// 1 GiB. Why a fixed size and not a share: what must stay free is room for the work
    /// around the cache (a program's scratch trees, version control, temp files), which does
    /// not grow with the disk, while 5 % of a 2 TB disk would keep 100 GB from the cache.
    /// Below 1 GiB the machine itself starts failing (linkers, package managers), so a cache
    /// must not be what takes it.
    fn default() -> Self {
        MinFreeSpace::Bytes(1024 * 1024 * 1024)
    }
}

/// The free and total bytes of a filesystem, as [`DiskSpace`] reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilesystemSpace {
    /// Bytes an unprivileged process may still write (`f_bavail`).
    pub free_bytes: u64,
    /// The filesystem's size (`f_blocks`).
    pub total_bytes: u64,
}

/// Where a cache reads the free space of the filesystem it lives on. The default,
/// [`SystemDiskSpace`], asks the system (`statvfs`); tests give a fake, so that no test has to
/// fill a disk.
pub trait DiskSpace: Send + Sync + fmt::Debug {
    /// The space of the filesystem holding `dir`; `None` where it cannot be read (then no
    /// free-space rule applies).
    fn space(&self, dir: &Path) -> Option<FilesystemSpace>;
}

/// [`DiskSpace`] from the system: `statvfs` of the directory.
#[derive(Debug, Default)]
pub struct SystemDiskSpace;

impl DiskSpace for SystemDiskSpace {
    fn space(&self, dir: &Path) -> Option<FilesystemSpace> {
        let (free_bytes, total_bytes) = crate::fsys::filesystem_space(dir)?;
        Some(FilesystemSpace {
            free_bytes,
            total_bytes,
        })
    }
}

/// One shared system disk-space source, so that default options compare equal (sources compare
/// by identity, as clocks do).
static SYSTEM_DISK_SPACE: LazyLock<Arc<dyn DiskSpace>> =
    LazyLock::new(|| Arc::new(SystemDiskSpace));

/// One shared system clock, so that default options compare equal (clocks compare by identity).
static SYSTEM_CLOCK: LazyLock<Arc<dyn Clock>> = LazyLock::new(|| Arc::new(SystemClock));

/// Whether `clock` is the shared system clock of the default options: then the store may derive
/// the wall time from the monotonic clock it reads anyway (`store::RedbCache::now_ms_at`).
pub(crate) fn is_system_clock(clock: &Arc<dyn Clock>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(clock), Arc::as_ptr(&SYSTEM_CLOCK))
}

/// Settings of one cache instance. Build with `CacheOptions::default()` and struct update syntax.
///
/// Asking the coordinator again for a registered `(root, tag)` with options that differ in any
/// field is an error naming the field ([`CacheError::SettingsConflict`]).
#[derive(Clone, Debug)]
pub struct CacheOptions {
    /// `false` gives a disabled cache (all misses, nothing stored, never registered).
    pub enabled: bool,
    /// Size limit of the tag in bytes, counting everything it stores on disk: keys and inline
    /// values, blob files, and directories owned by entries. A commit that passes it evicts the
    /// tag down to 90 % of it. Default 2 GiB.
    pub max_size_bytes: u64,
    /// Limit on the number of entries of the tag; `None` (the default) for no limit. Enforced
    /// like `max_size_bytes`.
    pub max_entries: Option<u64>,
    /// A budget for the whole cache root, shared fairly by its tags; `None` (the default) for no
    /// budget. See `docs/caching-system.md`, "Capacity".
    pub root_max_size_bytes: Option<u64>,
    /// Values larger than this are stored as content-addressed blob files under
    /// `<root>/<tag>/blobs/` instead of inside the database file. Default 256 KiB.
    pub blob_threshold_bytes: u64,
    /// How long an operation waits for another process's write lock, and how long a
    /// single-flight caller ([`crate::Cache::single_flight`]) waits in all for a computation running in
    /// another thread or process. Default 30 s.
    pub timeout: Duration,
    /// Which entries are evicted first.
    pub eviction_policy: EvictionPolicy,
    /// Longest key accepted, in bytes. Default 4 KiB.
    pub max_key_bytes: usize,
    /// Largest value accepted by the in-memory API (`set`, `get`), in bytes. Default 256 MiB.
    /// The streaming API (`set_from_reader`, `get_to_writer`, directories) is bounded by
    /// `max_size_bytes` only.
    pub max_value_bytes: u64,
    /// Group commit: how long a write may wait in memory before it is committed (durable and
    /// visible to other processes), and the longest a read may serve an older snapshot of other
    /// processes' writes. `flush()` commits at once. Default 20 ms.
    pub commit_interval: Duration,
    /// Back-pressure: when this many bytes of writes wait in memory, the writer commits them
    /// itself instead of waiting for the commit thread. Default 64 MiB.
    pub max_pending_bytes: usize,
    /// redb's page cache for this tag, in bytes. Default 32 MiB: it fills only as pages are read,
    /// so a CLI process that reads a few entries stays small, while a 100 k-entry tag still fits
    /// (at 16 MiB random reads of such a tag went to the OS for pages and ran about 40 % slower,
    /// measured with `cargo bench -p cache-core --bench compare -- --only small`). redb's own
    /// default, 1 GiB, is far too much for a CLI.
    pub page_cache_bytes: usize,
    /// Single-flight: how long a computation's lease lasts without renewal. While the
    /// computation runs its lease is renewed every third of this, so another process takes it
    /// over only when its owner has died or stopped renewing for this long. Default 30 s.
    pub lease_duration: Duration,
    /// Single-flight: how many times a waiter whose awaited computation failed tries again
    /// (computing itself, or waiting for whoever does) before returning
    /// [`CacheError::ComputationFailed`]. Default 1.
    pub flight_retries: u32,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// How much of the filesystem holding the cache must stay free. Below it every commit of
    /// the tag evicts (oldest or least recently used first) until the shortfall is made up, and
    /// storing a directory is refused ([`CacheError::InsufficientFreeSpace`]) when even
    /// evicting the whole tag would not make it up. Default 1 GiB ([`MinFreeSpace::default`]
    /// says why).
    pub min_free_space: MinFreeSpace,
    /// Where the free space is read from. Default [`SystemDiskSpace`].
    pub disk_space: Arc<dyn DiskSpace>,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            enabled: true,
            max_size_bytes: 2 * 1024 * 1024 * 1024,
            max_entries: None,
            root_max_size_bytes: None,
            blob_threshold_bytes: 256 * 1024,
            timeout: Duration::from_secs(30),
            eviction_policy: EvictionPolicy::default(),
            max_key_bytes: 4 * 1024,
            max_value_bytes: 256 * 1024 * 1024,
            commit_interval: Duration::from_millis(20),
            max_pending_bytes: 64 * 1024 * 1024,
            page_cache_bytes: 32 * 1024 * 1024,
            lease_duration: Duration::from_secs(30),
            flight_retries: 1,
            clock: SYSTEM_CLOCK.clone(),
            min_free_space: MinFreeSpace::default(),
            disk_space: SYSTEM_DISK_SPACE.clone(),
        }
    }
}

impl CacheOptions {
    /// Checks values that cannot work.
    pub fn validate(&self) -> Result<()> {
        let invalid = |option, reason: &str| {
            Err(CacheError::InvalidOption {
                option,
                reason: reason.to_owned(),
            })
        };
        if self.max_size_bytes == 0 {
            return invalid("max_size_bytes", "must be greater than zero");
        }
        if self.timeout.is_zero() {
            return invalid("timeout", "must be greater than zero");
        }
        if self.lease_duration.is_zero() {
            return invalid("lease_duration", "must be greater than zero");
        }
        if self.max_key_bytes == 0 {
            return invalid("max_key_bytes", "must be greater than zero");
        }
        if self.max_value_bytes == 0 {
            return invalid("max_value_bytes", "must be greater than zero");
        }
        if self.max_entries == Some(0) {
            return invalid(
                "max_entries",
                "must be greater than zero (or None for no limit)",
            );
        }
        if self.root_max_size_bytes == Some(0) {
            return invalid(
                "root_max_size_bytes",
                "must be greater than zero (or None for no budget)",
            );
        }
        if matches!(self.min_free_space, MinFreeSpace::Percent(percent) if percent > 100) {
            return invalid("min_free_space", "a percentage must be at most 100");
        }
        Ok(())
    }

    /// The first setting in which `self` and `other` differ: its name, then both values.
    pub(crate) fn first_difference(
        &self,
        other: &CacheOptions,
    ) -> Option<(&'static str, String, String)> {
        macro_rules! compare {
            ($($field:ident),*) => {$(
                if self.$field != other.$field {
                    return Some((stringify!($field), format!("{:?}", self.$field), format!("{:?}", other.$field)));
                }
            )*};
        }
        compare!(
            enabled,
            max_size_bytes,
            max_entries,
            root_max_size_bytes,
            blob_threshold_bytes,
            timeout,
            eviction_policy,
            max_key_bytes,
            max_value_bytes,
            commit_interval,
            max_pending_bytes,
            page_cache_bytes,
            lease_duration,
            flight_retries,
            min_free_space
        );
        if !Arc::ptr_eq(&self.disk_space, &other.disk_space) {
            return Some((
                "disk_space",
                format!("{:?}", self.disk_space),
                format!("{:?}", other.disk_space),
            ));
        }
        if !Arc::ptr_eq(&self.clock, &other.clock) {
            return Some((
                "clock",
                format!("{:?}", self.clock),
                format!("{:?}", other.clock),
            ));
        }
        None
    }
}

/// `shared` (the default) or `disabled`, as in `GLOVEBOX_CACHE_STRATEGY`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheStrategy {
    /// One shared instance per (root, tag).
    #[default]
    Shared,
    /// Every cache is disabled.
    Disabled,
}

impl std::str::FromStr for CacheStrategy {
    type Err = CacheError;

    fn from_str(value: &str) -> Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "shared" => Ok(CacheStrategy::Shared),
            "disabled" => Ok(CacheStrategy::Disabled),
            _ => Err(CacheError::InvalidOption {
                option: "GLOVEBOX_CACHE_STRATEGY",
                reason: format!("{value:?} is neither \"shared\" nor \"disabled\""),
            }),
        }
    }
}

/// One tag's settings from the configuration file (`[tags.<tag>]`), on top of
/// [`UserCacheConfig::options`]: each `None` keeps the value of the options underneath.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagSettings {
    /// [`CacheOptions::max_size_bytes`].
    pub max_size_bytes: Option<u64>,
    /// [`CacheOptions::max_entries`].
    pub max_entries: Option<u64>,
    /// [`CacheOptions::eviction_policy`].
    pub eviction_policy: Option<EvictionPolicy>,
    /// [`CacheOptions::timeout`].
    pub timeout: Option<Duration>,
    /// [`CacheOptions::commit_interval`].
    pub commit_interval: Option<Duration>,
}

impl TagSettings {
    /// Writes every setting that is `Some` into `options`.
    pub fn apply_to(&self, options: &mut CacheOptions) {
        if let Some(max_size_bytes) = self.max_size_bytes {
            options.max_size_bytes = max_size_bytes;
        }
        if let Some(max_entries) = self.max_entries {
            options.max_entries = Some(max_entries);
        }
        if let Some(eviction_policy) = self.eviction_policy {
            options.eviction_policy = eviction_policy;
        }
        if let Some(timeout) = self.timeout {
            options.timeout = timeout;
        }
        if let Some(commit_interval) = self.commit_interval {
            options.commit_interval = commit_interval;
        }
    }
}

/// The `[remote]` section of the configuration file, its keys kept as given (each value as TOML
/// text): the core has no network code, and `cache-remote` (`RemoteConfig::from_sources`) gives
/// them meaning (`docs/configuration.md`, `docs/remote.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Every key of the section and its value, as TOML text.
    pub settings: BTreeMap<String, String>,
}

/// The user-level cache configuration that every factory (and the CLI) takes, so that all
/// domains agree on the root, the strategy, the limits per tag and the TTLs.
///
/// [`UserCacheConfig::load`] reads it from the configuration file and the environment (see
/// `docs/configuration.md`); [`UserCacheConfig::from_env`] from the environment only.
#[derive(Clone, Debug, Default)]
pub struct UserCacheConfig {
    /// An explicit cache root; `None` uses [`resolve_cache_root`]'s order.
    pub cache_path: Option<PathBuf>,
    /// `Shared` or `Disabled`.
    pub strategy: CacheStrategy,
    /// Options for the instances this config creates (`enabled` is combined with `strategy`),
    /// the file's `[defaults]` included; [`UserCacheConfig::options_for`] adds a tag's own.
    pub options: CacheOptions,
    /// Per-tag settings (`[tags.<tag>]`) by tag name, over `options`.
    pub tags: BTreeMap<String, TagSettings>,
    /// The time to live of every domain's cache levels; domain crates read their TTLs here.
    pub ttls: CacheTtlConfig,
    /// The `[remote]` section, for the remote tier (see [`RemoteConfig`]).
    pub remote: Option<RemoteConfig>,
}

impl UserCacheConfig {
    /// Reads `GLOVEBOX_CACHE_PATH`, `GLOVEBOX_CACHE_STRATEGY` and the TTL overrides
    /// `GLOVEBOX_CACHE_TTL_<LEVEL>` ([`CacheTtlConfig::from_env`]) from `env`; everything else
    /// takes its default. An unknown strategy or a bad TTL is an error, not a silent default.
    pub fn from_env(env: &Environment) -> Result<Self> {
        let strategy = match env.var("GLOVEBOX_CACHE_STRATEGY") {
            Some(value) => value.parse()?,
            None => CacheStrategy::Shared,
        };
        Ok(UserCacheConfig {
            cache_path: env.var("GLOVEBOX_CACHE_PATH").map(PathBuf::from),
            strategy,
            options: CacheOptions::default(),
            tags: BTreeMap::new(),
            ttls: CacheTtlConfig::from_env(env)?,
            remote: None,
        })
    }

    /// The options of `tag`'s instance: [`UserCacheConfig::options`] with the tag's own
    /// settings (`[tags.<tag>]`) on top. `None` is the default tag.
    pub fn options_for(&self, tag: Option<&str>) -> CacheOptions {
        let mut options = self.options.clone();
        let name = tag.unwrap_or(crate::tag::Tag::DEFAULT);
        if let Some(settings) = self.tags.get(name) {
            settings.apply_to(&mut options);
        }
        options
    }

    /// The cache root this config points at.
    pub fn cache_root(&self, env: &Environment) -> Result<PathBuf> {
        resolve_cache_root(self.cache_path.as_deref(), env)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use rstest::rstest;

    use super::*;
    use crate::tag::Tag;

    #[rstest]
    #[case::explicit_wins(Some("/explicit"), &[("GLOVEBOX_CACHE_PATH", "/env"), ("XDG_CACHE_HOME", "/xdg")], "/explicit")]
    #[case::env_path_next(None, &[("GLOVEBOX_CACHE_PATH", "/env"), ("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")], "/env")]
    #[case::xdg_next(None, &[("XDG_CACHE_HOME", "/xdg"), ("HOME", "/home/u")], "/xdg/glovebox")]
    #[case::relative_xdg_ignored(None, &[("XDG_CACHE_HOME", "rel"), ("HOME", "/home/u")], "/home/u/.cache/glovebox")]
    #[case::empty_env_path_ignored(None, &[("GLOVEBOX_CACHE_PATH", " "), ("HOME", "/home/u")], "/home/u/.cache/glovebox")]
    #[cfg_attr(not(any(windows, target_os = "macos")), case::home_last(None, &[("HOME", "/home/u")], "/home/u/.cache/glovebox"))]
    fn cache_root_resolution_order(
        #[case] explicit: Option<&str>,
        #[case] vars: &[(&str, &str)],
        #[case] expected: &str,
    ) {
        let env = Environment::from_pairs(vars.iter().copied());
        let root = resolve_cache_root(explicit.map(Path::new), &env).unwrap();
        assert_eq!(root, PathBuf::from(expected));
    }

    #[test]
    fn no_home_at_all_is_a_clear_error() {
        let err = resolve_cache_root(None, &Environment::from_pairs::<&str, &str>([])).unwrap_err();
        assert!(err.to_string().contains("GLOVEBOX_CACHE_PATH"), "{err}");
    }

    #[rstest]
    #[case("false", true)]
    #[case("FALSE", true)]
    #[case("False", true)]
    #[case("0", true)]
    #[case("disabled", true)]
    #[case("DISABLED", true)]
    #[case(" disabled ", true)]
    #[case("true", false)]
    #[case("1", false)]
    #[case("enabled", false)]
    #[case("no", false)]
    fn kill_switch_values(#[case] value: &str, #[case] disables: bool) {
        let tag = Tag::new("thumbnails").unwrap();
        let global = Environment::from_pairs([("GLOVEBOX_CACHE_GLOBAL", value)]);
        let per_tag = Environment::from_pairs([("GLOVEBOX_CACHE_THUMBNAILS", value)]);
        let other_tag = Environment::from_pairs([("GLOVEBOX_CACHE_REPORTS", value)]);
        assert_eq!(global.kill_switch_disables(&tag), disables);
        assert_eq!(per_tag.kill_switch_disables(&tag), disables);
        assert!(!other_tag.kill_switch_disables(&tag));
    }

    #[rstest]
    #[case("shared", CacheStrategy::Shared)]
    #[case("SHARED", CacheStrategy::Shared)]
    #[case("Disabled", CacheStrategy::Disabled)]
    fn strategy_parses_in_any_case(#[case] value: &str, #[case] expected: CacheStrategy) {
        let config = UserCacheConfig::from_env(&Environment::from_pairs([(
            "GLOVEBOX_CACHE_STRATEGY",
            value,
        )]))
        .unwrap();
        assert_eq!(config.strategy, expected);
    }

    #[test]
    fn unknown_strategy_is_an_error_naming_the_variable() {
        let err = UserCacheConfig::from_env(&Environment::from_pairs([(
            "GLOVEBOX_CACHE_STRATEGY",
            "fast",
        )]))
        .unwrap_err();
        assert!(err.to_string().contains("GLOVEBOX_CACHE_STRATEGY"), "{err}");
    }

    #[test]
    fn options_differences_name_the_setting() {
        let base = CacheOptions::default();
        let other = CacheOptions {
            max_size_bytes: 1,
            ..base.clone()
        };
        assert_eq!(base.first_difference(&base.clone()).map(|d| d.0), None);
        assert_eq!(
            base.first_difference(&other).map(|d| d.0),
            Some("max_size_bytes")
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now_ms(), 3_000);
    }
}
