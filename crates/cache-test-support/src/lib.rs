//! Test fixtures shared by the workspace's integration tests, so that each test binary does not
//! carry its own copy.
//!
//! - [`root`]: a temp cache root, removed when the test ends.
//! - [`coordinator`]: a fresh [`Coordinator`] that sees an empty environment, so that the
//!   developer's own `GLOVEBOX_CACHE_*` variables cannot change a test's outcome.
//! - [`clock`]: a [`ManualClock`] standing at [`START_MS`] (2026-01-01), moved only by the test.
//! - [`options_with`] and [`config_with`]: options and a user config that use such a clock.
//! - [`temp_name_of`]: the name the cache gives a temp file of a given process, to plant temp
//!   files whose writer is alive, gone, or of another pid namespace.
//! - [`redis::RedisServer`]: a `redis-server` on a unix socket in a temp directory, for the
//!   remote tier's tests, killed by its pid on drop.
//! - [`tree`]: a snapshot of a directory tree (paths, modes, bytes) and a file written with a
//!   mode, for the tests of directories through the remote tier.
//! - [`s3::S3Server`]: SeaweedFS (`weed mini`) on free loopback ports with SigV4 keys, for the
//!   remote tier's S3 tests, killed by its pid on drop.
//!
//! The first three are `rstest` fixtures: in a test binary a test names them as arguments
//! (`#[rstest] fn stores(root: TempDir, coordinator: Coordinator)`); they are plain functions
//! too:
//!
//! ```
//! use cache_test_support::{clock, config_with, coordinator, root};
//!
//! let (root, coordinator, clock) = (root(), coordinator(), clock());
//! let config = config_with(&root, &clock);
//! assert_eq!(config.cache_path.as_deref(), Some(root.path()));
//! let _cache = coordinator.create_cache_from_user_config(&config, "notes");
//! ```
//!
//! **API boundary:** a dev-dependency only (`publish = false`); failures here are test failures,
//! so the helpers panic with a message instead of returning errors.

pub mod redis;
pub mod s3;
pub mod tree;

use std::path::Path;
use std::sync::Arc;

use cache_core::{CacheOptions, Coordinator, Environment, ManualClock, UserCacheConfig};
use rstest::fixture;
use tempfile::TempDir;

/// Where [`clock`] stands: 2026-01-01T00:00:00Z, in milliseconds since the Unix epoch.
pub const START_MS: u64 = 1_767_225_600_000;

/// A temp cache root, removed when the test ends.
#[fixture]
pub fn root() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A fresh coordinator that sees an empty environment, so that the developer's own
/// `GLOVEBOX_CACHE_*` variables cannot change a test's outcome.
#[fixture]
pub fn coordinator() -> Coordinator {
    Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
}

/// A clock standing at a fixed, realistic time ([`START_MS`], 2026-01-01), moved only by the test.
#[fixture]
pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(START_MS))
}

/// Default options that measure time with `clock`.
pub fn options_with(clock: &Arc<ManualClock>) -> CacheOptions {
    CacheOptions {
        clock: clock.clone(),
        ..CacheOptions::default()
    }
}

/// A user config rooted at `root`, measuring time with `clock`.
pub fn config_with(root: impl AsRef<Path>, clock: &Arc<ManualClock>) -> UserCacheConfig {
    UserCacheConfig {
        cache_path: Some(root.as_ref().to_owned()),
        options: options_with(clock),
        ..UserCacheConfig::default()
    }
}

/// The name the cache gives a temp file or staging directory written by process `pid` of the
/// pid namespace `namespace` (`None`: this process's) on this boot of this machine:
/// `<pid>-<pid namespace>-<boot id>-<suffix>` (`docs/design.md`, "Temp names").
pub fn temp_name_of(pid: u32, namespace: Option<u64>, suffix: &str) -> String {
    let link = std::fs::read_link("/proc/self/ns/pid").expect("/proc/self/ns/pid");
    let own: u64 = link
        .to_str()
        .and_then(|text| text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok())
        .expect("/proc/self/ns/pid reads pid:[inode]");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("/proc/sys/kernel/random/boot_id")
        .trim()
        .replace('-', "");
    format!("{pid}-{}-{boot}-{suffix}", namespace.unwrap_or(own))
}
