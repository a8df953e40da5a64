//! Integration tests of `cache-core`'s public API, one module per area, in one test binary.
//! Every test uses its own temp root and its own `Coordinator`: none touches the user's cache.

mod capacity;
mod defects;
mod disabled;
mod doctor;
mod entries;
mod flight;
mod registry;
mod threads;
mod typed;

use cache_core::{CacheOptions, Coordinator, SharedCache};
use tempfile::TempDir;

// The shared fixtures (temp root, fresh coordinator, manual clock) and options over the clock.
pub(crate) use cache_test_support::{clock, coordinator, options_with, root};

/// The name a temp file or staging directory gets from the process `pid` of the pid namespace
/// `namespace` (`None`: this process's) on this boot of this machine, as the cache names them:
/// `<pid>-<pid namespace>-<boot id>-<suffix>`.
pub(crate) fn temp_name_of(pid: u32, namespace: Option<u64>, suffix: &str) -> String {
    let link = std::fs::read_link("/proc/self/ns/pid").expect("/proc/self/ns/pid");
    let own: u64 = link
        .to_str()
        .and_then(|text| text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok())
        .expect("pid:[inode]");
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("boot id")
        .trim()
        .replace('-', "");
    format!("{pid}-{}-{boot}-{suffix}", namespace.unwrap_or(own))
}

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
) -> SharedCache {
    coordinator
        .get_shared_cache_instance(root.path(), tag, options)
        .expect("open cache")
}
