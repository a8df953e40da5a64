//! Integration tests of `cache-layout`, one module per area, in one test binary. Every test uses
//! its own temp root, its own `Coordinator` (seeing an empty environment) and a manual clock.

mod factory;
mod keys;
mod service;

use std::sync::Arc;

use cache_core::{CacheOptions, Coordinator, Environment, ManualClock, UserCacheConfig};
use cache_layout::LayoutCache;
use rstest::fixture;
use tempfile::TempDir;

/// A temp cache root, removed when the test ends.
#[fixture]
pub(crate) fn root() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// A fresh coordinator that sees an empty environment, so that the developer's own
/// `GLOVEBOX_CACHE_*` variables cannot change a test's outcome.
#[fixture]
pub(crate) fn coordinator() -> Coordinator {
    Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
}

/// A clock standing at 2026-01-01, moved only by the test.
#[fixture]
pub(crate) fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(1_767_225_600_000))
}

/// A user config rooted at `root`, measuring time with `clock`.
pub(crate) fn config_with(root: &TempDir, clock: &Arc<ManualClock>) -> UserCacheConfig {
    UserCacheConfig {
        cache_path: Some(root.path().to_owned()),
        options: CacheOptions {
            clock: clock.clone(),
            ..CacheOptions::default()
        },
        ..UserCacheConfig::default()
    }
}

/// The layout service for `config` on `coordinator`.
pub(crate) fn open(coordinator: &Coordinator, config: &UserCacheConfig) -> LayoutCache {
    LayoutCache::open(coordinator, config).expect("open layout cache")
}
