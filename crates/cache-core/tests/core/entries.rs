//! Entries: values, TTL, delete, metadata, statistics and bad input.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use cache_core::{CacheError, CacheOptions, Clock, Coordinator, ManualClock, ValueFormat};
use rstest::rstest;
use tempfile::TempDir;

use crate::{clock, coordinator, open, options_with, root};

#[rstest]
fn set_get_overwrite_and_delete(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    assert_eq!(cache.get(b"k").unwrap(), None);
    cache.set(b"k", b"one", None).unwrap();
    cache.set(b"k", b"two", None).unwrap();
    assert_eq!(cache.get(b"k").unwrap(), Some(b"two".to_vec()));
    assert!(cache.exists(b"k").unwrap());
    assert!(cache.delete(b"k").unwrap());
    assert!(!cache.delete(b"k").unwrap());
    assert!(!cache.exists(b"k").unwrap());
}

#[rstest]
fn delete_many_counts_the_entries_that_existed(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    for key in [&b"a"[..], b"b", b"c"] {
        cache.set(key, b"v", None).unwrap();
    }
    assert_eq!(cache.delete_many(&[b"a", b"c", b"zz"]).unwrap(), 2);
    assert_eq!(cache.keys().unwrap(), vec![b"b".to_vec()]);
    assert_eq!(cache.get_stats().unwrap().counters.deletes, 2);
}

#[rstest]
fn ttl_expiry_is_honoured_everywhere(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let cache = open(&coordinator, &root, "t", options_with(&clock));
    cache
        .set(b"short", b"gone soon", Some(Duration::from_secs(60)))
        .unwrap();
    cache
        .set(b"long", b"stays", Some(Duration::from_secs(3600)))
        .unwrap();
    cache.set(b"forever", b"stays", None).unwrap();
    assert_eq!(cache.get_stats().unwrap().entries, 3);

    clock.advance(Duration::from_secs(61));
    assert_eq!(cache.get(b"short").unwrap(), None);
    assert!(!cache.exists(b"short").unwrap());
    assert_eq!(cache.get_metadata(b"short").unwrap(), None);
    assert!(
        !cache.delete(b"short").unwrap(),
        "an expired entry did not exist for the caller"
    );
    let mut keys = cache.keys().unwrap();
    keys.sort();
    assert_eq!(keys, vec![b"forever".to_vec(), b"long".to_vec()]);
    let stats = cache.get_stats().unwrap();
    assert_eq!(stats.entries, 2);
    // Headers of 14 bytes without an expiry and 19 with one (today's times are 6-byte varints).
    assert_eq!(
        stats.bytes,
        (b"forever".len() + b"long".len()) as u64 + (14 + 5) + (19 + 5)
    );
    assert_eq!(cache.get(b"long").unwrap(), Some(b"stays".to_vec()));
}

#[rstest]
fn expiry_is_exact_at_the_deadline(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let cache = open(&coordinator, &root, "t", options_with(&clock));
    cache
        .set(b"k", b"v", Some(Duration::from_millis(1000)))
        .unwrap();
    clock.advance(Duration::from_millis(999));
    assert!(cache.exists(b"k").unwrap());
    clock.advance(Duration::from_millis(1));
    assert!(!cache.exists(b"k").unwrap());
}

#[rstest]
fn metadata_reports_real_values(root: TempDir, coordinator: Coordinator, clock: Arc<ManualClock>) {
    let cache = open(&coordinator, &root, "t", options_with(&clock));
    let stored_at = clock.now_ms();
    cache
        .set(b"k", b"twelve bytes", Some(Duration::from_secs(600)))
        .unwrap();

    let fresh = cache.get_metadata(b"k").unwrap().unwrap();
    assert_eq!(fresh.key, b"k".to_vec());
    assert_eq!(fresh.tag, "t");
    assert_eq!(fresh.size_bytes, 12);
    assert_eq!(fresh.created, UNIX_EPOCH + Duration::from_millis(stored_at));
    assert_eq!(fresh.last_accessed, None);
    assert_eq!(fresh.access_count, 0);
    assert_eq!(fresh.ttl, Some(Duration::from_secs(600)));
    assert_eq!(
        fresh.expires_at,
        Some(UNIX_EPOCH + Duration::from_millis(stored_at + 600_000))
    );
    assert_eq!(fresh.format, ValueFormat::RAW);

    clock.advance(Duration::from_secs(5));
    cache.get(b"k").unwrap();
    clock.advance(Duration::from_secs(5));
    cache.get(b"k").unwrap();
    let read = cache.get_metadata(b"k").unwrap().unwrap();
    assert_eq!(read.access_count, 2);
    assert_eq!(
        read.last_accessed,
        Some(UNIX_EPOCH + Duration::from_millis(stored_at + 10_000))
    );
    assert_eq!(
        read.created, fresh.created,
        "reads do not change the creation time"
    );
}

#[rstest]
fn access_records_survive_a_reopen(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let cache = open(&coordinator, &root, "t", options_with(&clock));
    cache.set(b"k", b"v", None).unwrap();
    for _ in 0..3 {
        cache.get(b"k").unwrap();
    }
    coordinator.reset().unwrap();
    let reopened = open(&coordinator, &root, "t", options_with(&clock));
    assert_eq!(
        reopened.get_metadata(b"k").unwrap().unwrap().access_count,
        3
    );
}

#[rstest]
fn overwriting_an_entry_resets_its_metadata(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let cache = open(&coordinator, &root, "t", options_with(&clock));
    cache
        .set(b"k", b"old", Some(Duration::from_secs(10)))
        .unwrap();
    cache.get(b"k").unwrap();
    cache.flush().unwrap();
    clock.advance(Duration::from_secs(3));
    cache.set(b"k", b"new", None).unwrap();
    let meta = cache.get_metadata(b"k").unwrap().unwrap();
    assert_eq!(meta.access_count, 0);
    assert_eq!(meta.ttl, None);
    assert_eq!(
        meta.created,
        UNIX_EPOCH + Duration::from_millis(clock.now_ms())
    );
}

#[rstest]
fn stats_count_each_operation(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    let before = cache.get_stats().unwrap().counters;
    cache.set(b"a", b"1", None).unwrap();
    cache.set(b"b", b"2", None).unwrap();
    cache.get(b"a").unwrap();
    cache.get(b"a").unwrap();
    cache.get(b"nope").unwrap();
    cache.delete(b"b").unwrap();
    let after = cache.get_stats().unwrap();
    let delta = after.counters.minus(&before);
    assert_eq!(
        (
            delta.sets,
            delta.hits,
            delta.misses,
            delta.deletes,
            delta.errors
        ),
        (2, 2, 1, 1, 0)
    );
    assert!(delta.operations >= 6);
    assert!(delta.operation_time_ns > 0);
    assert!((after.counters.hit_rate() - 200.0 / 3.0).abs() < 1e-9);
    assert_eq!(after.entries, 1);
    assert_eq!(after.tag, "t");
    assert!(after.enabled);
}

#[rstest]
fn lifetime_counters_survive_a_reopen(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"a", b"1", None).unwrap();
    cache.get(b"a").unwrap();
    cache.get(b"zz").unwrap();
    coordinator.reset().unwrap();
    let reopened = open(&coordinator, &root, "t", CacheOptions::default());
    let stats = reopened.get_stats().unwrap();
    assert_eq!(stats.counters.hits, 0, "instance counters start at zero");
    assert_eq!(
        (
            stats.lifetime.sets,
            stats.lifetime.hits,
            stats.lifetime.misses
        ),
        (1, 1, 1)
    );
}

/// Regression (found by the model suite): what an instance's last commit expired or evicted
/// was added to the lifetime counters only by the next commit, so it was lost on close.
#[rstest]
fn expirations_and_evictions_of_the_last_commit_survive_a_reopen(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let options = CacheOptions {
        max_entries: Some(4),
        ..options_with(&clock)
    };
    let cache = open(&coordinator, &root, "t", options.clone());
    cache
        .set(b"short", b"v", Some(Duration::from_secs(1)))
        .unwrap();
    clock.advance(Duration::from_secs(2));
    for key in [&b"a"[..], b"b", b"c", b"d", b"e"] {
        cache.set(key, b"v", None).unwrap();
    }
    // One commit: the expired entry is swept, and the fifth live entry evicts down to 90 %.
    cache.close().unwrap();
    coordinator.reset().unwrap();
    let reopened = open(&coordinator, &root, "t", options);
    let lifetime = reopened.get_stats().unwrap().lifetime;
    assert_eq!(lifetime.expirations, 1);
    assert_eq!(lifetime.evictions, 2, "5 entries cut to 90 % of 4");
    assert_eq!(reopened.keys().unwrap().len(), 3);
}

/// Operations catch panics (redb panics on some damaged pages, and the file is then quarantined),
/// but a panic in the caller's own reader or writer is the caller's: it reaches them, and the
/// tag's file is not taken for damaged.
#[rstest]
fn a_panicking_reader_or_writer_panics_the_caller_and_the_file_stays(
    root: TempDir,
    coordinator: Coordinator,
) {
    struct Panicking;
    impl std::io::Read for Panicking {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            panic!("the caller's reader");
        }
    }
    impl std::io::Write for Panicking {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            panic!("the caller's writer");
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.set(b"kept", b"value", None).unwrap();
    cache.flush().unwrap();
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.set_from_reader(b"k", &mut Panicking, None)
    }));
    assert!(read.is_err(), "the reader's panic reaches the caller");
    let write = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.get_to_writer(b"kept", &mut Panicking)
    }));
    assert!(write.is_err(), "the writer's panic reaches the caller");
    assert_eq!(cache.get(b"kept").unwrap(), Some(b"value".to_vec()));
    assert_eq!(cache.get(b"k").unwrap(), None);
    let names: Vec<String> = std::fs::read_dir(root.path().join("t"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|name| name.contains(".corrupt-")),
        "nothing quarantined: {names:?}"
    );
    assert_eq!(cache.get_stats().unwrap().counters.errors, 0);
}

#[rstest]
fn bad_keys_and_values_are_refused_and_change_nothing(root: TempDir, coordinator: Coordinator) {
    let options = CacheOptions {
        max_key_bytes: 16,
        max_value_bytes: 32,
        ..CacheOptions::default()
    };
    let cache = open(&coordinator, &root, "t", options);
    cache.set(b"k", b"original", None).unwrap();

    let err = cache.set(b"k", &[7u8; 33], None).unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::ValueTooLarge {
                len: 33,
                max: 32,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("\"k\"") && err.to_string().contains("'t'"),
        "{err}"
    );

    let err = cache.set(&[b'x'; 17], b"v", None).unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::KeyTooLarge {
                len: 17,
                max: 16,
                ..
            }
        ),
        "{err}"
    );
    let err = cache.get(&[b'x'; 17]).unwrap_err();
    assert!(matches!(err, CacheError::KeyTooLarge { .. }), "{err}");

    let err = cache.set(b"", b"v", None).unwrap_err();
    assert!(matches!(err, CacheError::EmptyKey { .. }), "{err}");

    assert_eq!(cache.get(b"k").unwrap(), Some(b"original".to_vec()));
    assert_eq!(cache.keys().unwrap(), vec![b"k".to_vec()]);
    assert_eq!(cache.get_stats().unwrap().counters.errors, 4);
}

#[rstest]
fn a_value_larger_than_the_whole_size_limit_is_refused(root: TempDir, coordinator: Coordinator) {
    let cache = open(
        &coordinator,
        &root,
        "t",
        CacheOptions {
            max_size_bytes: 100,
            ..CacheOptions::default()
        },
    );
    cache.set(b"small", b"kept", None).unwrap();
    // The value must fit together with its key, the longest entry header (31 bytes) and a blob
    // reference (40 bytes): 100 - 1 - 31 - 40 = 28.
    cache.set(b"k", &[0u8; 28], None).unwrap();
    let err = cache.set(b"k", &[0u8; 29], None).unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::ValueTooLarge {
                len: 29,
                max: 28,
                ..
            }
        ),
        "{err}"
    );
    let err = cache.set(b"k2", &[0u8; 101], None).unwrap_err();
    assert!(matches!(err, CacheError::ValueTooLarge { .. }), "{err}");
    assert_eq!(
        cache.get(b"k").unwrap(),
        Some(vec![0u8; 28]),
        "a refused value changes nothing"
    );
}

#[rstest]
fn binary_keys_and_values_round_trip(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    let key = [0u8, 255, 10, 13, 0];
    let value: Vec<u8> = (0..=255u8).collect();
    cache.set(&key, &value, None).unwrap();
    assert_eq!(cache.get(&key).unwrap(), Some(value));
}

#[rstest]
fn a_commit_past_the_limit_evicts_least_recently_stored_first(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    // Each entry is 1 (key) + 14 (header) + 85 (value) = 100 bytes; the limit holds three.
    let options = CacheOptions {
        max_size_bytes: 300,
        ..options_with(&clock)
    };
    let cache = open(&coordinator, &root, "t", options);
    for key in [b"1", b"2", b"3", b"4", b"5"] {
        cache.set(key, &[0u8; 85], None).unwrap();
        cache.flush().unwrap();
        clock.advance(Duration::from_secs(1));
    }
    // The commit of "4" passed the limit and evicted down to 90 % of it ("1" and "2"); "5"
    // then fitted exactly.
    let mut keys = cache.keys().unwrap();
    keys.sort();
    assert_eq!(keys, vec![b"3".to_vec(), b"4".to_vec(), b"5".to_vec()]);
    let stats = cache.get_stats().unwrap();
    assert_eq!(stats.counters.evictions, 2);
    assert_eq!(stats.disk_bytes, 300);
    assert_eq!(
        cache.cleanup().unwrap().evicted,
        0,
        "already under the limit"
    );
}

#[rstest]
fn a_commit_past_the_limit_evicts_least_recently_used_first_when_asked(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let options = CacheOptions {
        max_size_bytes: 300,
        eviction_policy: cache_core::EvictionPolicy::LeastRecentlyUsed,
        ..options_with(&clock)
    };
    let cache = open(&coordinator, &root, "t", options);
    for key in [b"1", b"2", b"3"] {
        cache.set(key, &[0u8; 85], None).unwrap();
        cache.flush().unwrap();
        clock.advance(Duration::from_secs(1));
    }
    cache.get(b"1").unwrap(); // the oldest entry is the most recently used
    cache.set(b"4", &[0u8; 85], None).unwrap();
    cache.flush().unwrap();
    assert!(cache.exists(b"1").unwrap());
    assert!(!cache.exists(b"2").unwrap());
    assert!(!cache.exists(b"3").unwrap());
    assert!(cache.exists(b"4").unwrap());
    assert_eq!(cache.get_stats().unwrap().counters.evictions, 2);
}

#[rstest]
fn an_entry_limit_is_enforced_like_the_size_limit(root: TempDir, coordinator: Coordinator) {
    let options = CacheOptions {
        max_entries: Some(10),
        ..CacheOptions::default()
    };
    let cache = open(&coordinator, &root, "t", options);
    for index in 0..25u32 {
        cache.set(&index.to_be_bytes(), b"v", None).unwrap();
        cache.flush().unwrap();
    }
    let stats = cache.get_stats().unwrap();
    assert!(stats.entries <= 10, "{} entries", stats.entries);
    assert!(
        cache.exists(&24u32.to_be_bytes()).unwrap(),
        "the newest stays"
    );
    assert_eq!(stats.counters.evictions, 25 - stats.entries);
}

#[rstest]
fn expired_entries_are_swept_by_ordinary_commits(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let cache = open(&coordinator, &root, "t", options_with(&clock));
    for index in 0..10u8 {
        cache
            .set(&[b'e', index], b"v", Some(Duration::from_secs(1)))
            .unwrap();
    }
    cache.flush().unwrap();
    clock.advance(Duration::from_secs(2));
    // Any commit sweeps a bounded batch; ten entries fit in one.
    cache.set(b"other", b"v", None).unwrap();
    cache.flush().unwrap();
    let stats = cache.get_stats().unwrap();
    assert_eq!(stats.counters.expirations, 10);
    assert_eq!(
        stats.disk_bytes,
        (5 + 14 + 1) as u64,
        "only the live entry is left"
    );
}

#[rstest]
fn operations_on_a_closed_instance_are_a_clear_error(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    cache.close().unwrap();
    for result in [
        cache.set(b"k", b"v", None).map(drop),
        cache.get(b"k").map(drop),
        cache.keys().map(drop),
    ] {
        let err = result.unwrap_err();
        assert!(matches!(err, CacheError::Closed { .. }), "{err}");
        assert!(err.to_string().contains("'t'"), "{err}");
    }
}
