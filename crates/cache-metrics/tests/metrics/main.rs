//! Integration tests of `cache-metrics`, one module per area, in one test binary. Every test uses
//! its own temp root, its own `Coordinator` (seeing an empty environment) and a manual clock.

mod factory;
mod keys;
mod service;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::{Clock, Coordinator, ManualClock, UserCacheConfig};
use cache_metrics::MetricsCache;

// The shared fixtures (temp root, fresh coordinator, manual clock) and the config over them.
pub(crate) use cache_test_support::{clock, config_with, coordinator, root};

/// The metrics service for `config` on `coordinator`.
pub(crate) fn open(coordinator: &Coordinator, config: &UserCacheConfig) -> MetricsCache {
    MetricsCache::open(coordinator, config).expect("open metrics cache")
}

/// What `clock` says now, as a `SystemTime`.
pub(crate) fn now(clock: &ManualClock) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(clock.now_ms())
}
