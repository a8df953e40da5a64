//! Integration tests of `cache-moergo`, one module per area, in one test binary. Every test uses
//! its own temp root, its own `Coordinator` (seeing an empty environment) and a manual clock.

mod factory;
mod keys;
mod service;

use cache_core::{Coordinator, UserCacheConfig};
use cache_moergo::MoergoCache;

// The shared fixtures (temp root, fresh coordinator, manual clock) and the config over them.
pub(crate) use cache_test_support::{clock, config_with, coordinator, root};

/// The MoErgo service for `config` on `coordinator`.
pub(crate) fn open(coordinator: &Coordinator, config: &UserCacheConfig) -> MoergoCache {
    MoergoCache::open(coordinator, config).expect("open moergo cache")
}
