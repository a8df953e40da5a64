//! Test fixtures shared by the workspace's integration tests, so that each test binary does not
//! carry its own copy.
//!
//! - [`root`]: a temp cache root, removed when the test ends.
//! - [`coordinator`]: a fresh [`Coordinator`] that sees an empty environment, so that the
//!   developer's own `GLOVEBOX_CACHE_*` variables cannot change a test's outcome.
//! - [`clock`]: a [`ManualClock`] standing at [`START_MS`] (2026-01-01), moved only by the test.
//! - [`options_with`] and [`config_with`]: options and a user config that use such a clock.
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
