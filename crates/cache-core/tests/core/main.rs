//! Integration tests of `cache-core`'s public API, one module per area, in one test binary.
//! Every test uses its own temp root and its own `Coordinator`: none touches the user's cache.

mod capacity;
mod defects;
mod disabled;
mod doctor;
mod entries;
mod flight;
mod registry;
mod remote;
mod remote_dirs;
mod telemetry;
mod threads;
mod typed;

use cache_core::{Cache, CacheOptions, Coordinator};
use tempfile::TempDir;

// The shared fixtures (temp root, fresh coordinator, manual clock) and options over the clock.
pub(crate) use cache_test_support::{clock, coordinator, options_with, root, temp_name_of};

/// A temp name of a process that does not exist: no process has id 4 000 000 000 (pid_max is
/// at most 2^22).
pub(crate) fn dead_temp_name(suffix: &str) -> String {
    temp_name_of(4_000_000_000, None, suffix)
}

/// The instance of `tag` under `root` with `options`.
pub(crate) fn open(
    coordinator: &Coordinator,
    root: &TempDir,
    tag: &str,
    options: CacheOptions,
) -> Cache {
    coordinator
        .get_shared_cache_instance(root.path(), tag, options)
        .expect("open cache")
}
