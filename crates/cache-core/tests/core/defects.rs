//! One regression test per defect of the Python original that `cache-core` owns (numbers from
//! `shared/reference/original-behaviour.md`). Each would fail on the original's behaviour.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use cache_core::{CacheKey, CacheOptions, Coordinator, ManualClock, keys};
use rstest::rstest;
use tempfile::TempDir;

use crate::{clock, coordinator, open, options_with, root};

/// Defect 1: `cleanup()` never removed expired entries and evictions were always 0.
#[rstest]
fn defect_01_cleanup_removes_expired_and_counts_evictions(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    // Writes stay buffered until cleanup commits them, so that cleanup is what meets the
    // expired entries (a commit's opportunistic sweep would otherwise remove them first).
    let options = CacheOptions {
        max_size_bytes: 250,
        commit_interval: Duration::from_secs(3600),
        ..options_with(&clock)
    };
    let cache = open(&coordinator, &root, "t", options);
    cache
        .set(b"e1", &[1u8; 10], Some(Duration::from_secs(5)))
        .unwrap();
    cache
        .set(b"e2", &[1u8; 10], Some(Duration::from_secs(5)))
        .unwrap();
    clock.advance(Duration::from_secs(6));
    for key in [b"k1", b"k2", b"k3"] {
        cache.set(key, &[2u8; 84], None).unwrap(); // 2 + 14 (header) + 84 = 100 bytes each
        clock.advance(Duration::from_secs(1));
    }

    // 300 bytes of live entries under a 250-byte limit: the oldest goes, down to 90 % of it.
    let report = cache.cleanup().unwrap();
    assert_eq!(report.expired, 2);
    assert_eq!(report.evicted, 1);
    assert_eq!(report.total(), 3);
    let stats = cache.get_stats().unwrap();
    assert_eq!(
        (stats.counters.expirations, stats.counters.evictions),
        (2, 1)
    );
    assert_eq!(stats.entries, 2);
    // The expired entries are gone from the file, not just hidden.
    clock.advance(Duration::from_secs(0));
    assert_eq!(cache.cleanup().unwrap().total(), 0);
}

/// Defect 2: `keys()` and the entry count included expired entries.
#[rstest]
fn defect_02_keys_and_counts_exclude_expired(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let cache = open(&coordinator, &root, "t", options_with(&clock));
    cache.set(b"live", b"v", None).unwrap();
    cache
        .set(b"dead", b"v", Some(Duration::from_secs(1)))
        .unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.keys().unwrap(), vec![b"live".to_vec()]);
    assert_eq!(cache.get_stats().unwrap().entries, 1);
}

/// Defect 8: the coordinator had no lock, and a request with other settings was ignored.
#[rstest]
fn defect_08_concurrent_requests_share_one_instance_and_settings_are_checked(
    root: TempDir,
    coordinator: Coordinator,
) {
    let barrier = Barrier::new(8);
    let instances: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    coordinator
                        .get_shared_cache_instance(root.path(), "race", CacheOptions::default())
                        .unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    assert!(
        instances
            .windows(2)
            .all(|pair| pair[0].same_instance(&pair[1]))
    );
    assert_eq!(coordinator.instance_count(), 1);

    let other = CacheOptions {
        timeout: Duration::from_secs(1),
        ..CacheOptions::default()
    };
    let err = coordinator
        .get_shared_cache_instance(root.path(), "race", other)
        .unwrap_err();
    assert!(
        err.to_string().contains("timeout"),
        "the error names the setting: {err}"
    );
}

/// Defect 9: `clear()` lost the stats' tag and counters.
#[rstest]
fn defect_09_clear_keeps_tag_and_counters(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "layout", CacheOptions::default());
    cache.set(b"a", b"1", None).unwrap();
    cache.get(b"a").unwrap();
    cache.get(b"b").unwrap();
    cache.clear().unwrap();
    let stats = cache.get_stats().unwrap();
    assert_eq!(stats.tag, "layout");
    assert_eq!(stats.entries, 0);
    assert_eq!(
        (
            stats.counters.sets,
            stats.counters.hits,
            stats.counters.misses
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (
            stats.lifetime.sets,
            stats.lifetime.hits,
            stats.lifetime.misses
        ),
        (1, 1, 1)
    );
    assert_eq!(cache.keys().unwrap(), Vec::<Vec<u8>>::new());
    cache.set(b"after", b"clear", None).unwrap();
    assert_eq!(cache.get(b"after").unwrap(), Some(b"clear".to_vec()));
}

/// Defect 10: resetting the coordinator deleted the cache directory. Here it never deletes.
#[rstest]
fn defect_10_reset_never_deletes_data(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"k", b"v", None).unwrap();
    drop(cache);
    coordinator.reset().unwrap();
    assert!(root.path().join("t").join("cache.redb").is_file());
    assert_eq!(
        open(&coordinator, &root, "t", CacheOptions::default())
            .get(b"k")
            .unwrap(),
        Some(b"v".to_vec())
    );
}

/// A typed key whose value may be "falsy".
struct MaybeNote(&'static str);

impl CacheKey for MaybeNote {
    type Value = Option<String>;
    const TAG: &'static str = "t";
    const SCHEMA_VERSION: u32 = 1;
    fn default_ttl(&self) -> Option<Duration> {
        None
    }
    fn key_bytes(&self) -> Vec<u8> {
        self.0.as_bytes().to_vec()
    }
}

/// Defect 12: a cached falsy value read as a miss; `from_parts` dropped empty parts; keys were
/// truncated to 64 bits; `get_metadata` invented values.
#[rstest]
fn defect_12_falsy_values_are_hits_and_keys_are_unambiguous(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let cache = open(&coordinator, &root, "t", options_with(&clock));
    cache.set(b"empty", b"", None).unwrap();
    assert_eq!(cache.get(b"empty").unwrap(), Some(Vec::new()));
    cache.set_typed(&MaybeNote("none"), &None).unwrap();
    assert_eq!(cache.get_typed(&MaybeNote("none")).unwrap(), Some(None));
    cache
        .set_typed(&MaybeNote("blank"), &Some(String::new()))
        .unwrap();
    assert_eq!(
        cache.get_typed(&MaybeNote("blank")).unwrap(),
        Some(Some(String::new()))
    );
    assert_eq!(cache.get_stats().unwrap().counters.hits, 3);

    assert_ne!(
        keys::from_parts(["a", "", "b"]),
        keys::from_parts(["a", "b"])
    );
    assert_eq!(keys::from_parts(["a"]).len(), 64, "256 bits in hex");

    // Metadata is what happened, not made up: never read, so no access time and a zero count.
    let meta = cache.get_metadata(b"empty").unwrap().unwrap();
    assert_eq!((meta.size_bytes, meta.access_count), (0, 1));
    let never_read = {
        cache.set(b"unread", b"x", None).unwrap();
        cache.get_metadata(b"unread").unwrap().unwrap()
    };
    assert_eq!(
        (never_read.access_count, never_read.last_accessed),
        (0, None)
    );
}

/// Defect 5: workspace and build directories were outside the size limit and were left behind
/// when their entry expired, so the disk grew without bound.
#[rstest]
fn defect_05_expired_owned_directories_are_removed_and_counted(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let options = CacheOptions {
        commit_interval: Duration::from_secs(3600),
        ..options_with(&clock)
    };
    let cache = open(&coordinator, &root, "compilation", options);
    let staged = cache.stage_directory().unwrap();
    std::fs::create_dir_all(staged.path().join("zmk")).unwrap();
    std::fs::write(staged.path().join("zmk/west.yml"), [b'x'; 5000]).unwrap();
    let stored = cache
        .set_directory(b"workspace", staged, b"meta", Some(Duration::from_secs(60)))
        .unwrap()
        .unwrap();
    assert!(
        cache.get_stats().unwrap().disk_bytes >= 5000,
        "the directory counts in the size limit"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(cache.get_directory(b"workspace").unwrap(), None);
    let report = cache.cleanup().unwrap();
    assert_eq!(report.expired, 1);
    assert!(!stored.path.exists(), "the directory went with its entry");
    assert_eq!(cache.get_stats().unwrap().disk_bytes, 0);
}

#[test]
fn hex_round_trips_any_bytes_and_refuses_what_is_not_hex() {
    use cache_core::keys::{from_hex, hex};
    let bytes: Vec<u8> = (0..=255u8).collect();
    assert_eq!(from_hex(&hex(&bytes)), Some(bytes));
    assert_eq!(from_hex("00FFab"), Some(vec![0, 255, 0xab]));
    for bad in ["0", "0g", "+f", "é0", " 00"] {
        assert_eq!(from_hex(bad), None, "{bad:?}");
    }
}
