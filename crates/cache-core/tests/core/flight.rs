//! Single-flight computation within one process: threads on one instance compute a key once,
//! failures and panics wake the waiters (who retry or return the error), waiting is bounded by
//! the instance's timeout, and the counters record it. The multi-process cases are in the
//! workspace's `tests/tests/flight.rs`.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, mpsc};
use std::time::{Duration, Instant};

use cache_core::{Cache, CacheError, CacheOptions, Coordinator, Tag};
use rstest::rstest;
use tempfile::TempDir;

use crate::typed::Note;
use crate::{coordinator, open, root};

/// The error type of the computations here: a message, and a way to carry the cache's errors.
#[derive(Debug, PartialEq)]
enum ComputeError {
    Failed(String),
    Cache(String),
}

impl std::fmt::Display for ComputeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ComputeError::Failed(message) => write!(f, "failed: {message}"),
            ComputeError::Cache(message) => write!(f, "cache: {message}"),
        }
    }
}

impl From<CacheError> for ComputeError {
    fn from(err: CacheError) -> Self {
        ComputeError::Cache(err.to_string())
    }
}

/// Blocks until `waits` callers of `cache` are waiting for a computation. Waits for an event,
/// not a duration: the bound only ends a test whose waiters never arrive, whose assertions then
/// fail.
fn until_waiting(cache: &Cache, waits: u64) {
    let bound = Instant::now() + Duration::from_secs(30);
    while cache.get_stats().unwrap().counters.waits < waits && Instant::now() < bound {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[rstest]
fn eight_threads_on_one_key_compute_it_once_and_all_get_the_value(
    root: TempDir,
    coordinator: Coordinator,
) {
    const THREADS: usize = 8;
    let cache = open(&coordinator, &root, "flight", CacheOptions::default());
    let runs = AtomicUsize::new(0);
    let barrier = Barrier::new(THREADS);
    let values: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    cache
                        .get_or_compute(b"layout:42", None, || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            // Hold the computation until every other thread waits for it, so
                            // that all eight really overlap.
                            until_waiting(&cache, (THREADS - 1) as u64);
                            Ok::<_, ComputeError>(b"rendered once".to_vec())
                        })
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the closure ran once");
    assert_eq!(values, vec![b"rendered once".to_vec(); THREADS]);
    let counters = cache.get_stats().unwrap().counters;
    assert_eq!(counters.computations, 1);
    assert_eq!(counters.waits, (THREADS - 1) as u64);
    assert_eq!(counters.takeovers, 0);
    assert_eq!(
        cache.get(b"layout:42").unwrap(),
        Some(b"rendered once".to_vec())
    );
}

#[rstest]
fn a_hit_never_computes(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "flight", CacheOptions::default());
    cache.set(b"k", b"stored", None).unwrap();
    let value = cache
        .get_or_compute(b"k", None, || -> Result<Vec<u8>, ComputeError> {
            panic!("a hit must not compute")
        })
        .unwrap();
    assert_eq!(value, b"stored");
    assert_eq!(cache.get_stats().unwrap().counters.computations, 0);
}

#[rstest]
fn the_computed_value_is_stored_with_the_ttl(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "flight", CacheOptions::default());
    let ttl = Duration::from_secs(90);
    cache
        .get_or_compute(b"k", Some(ttl), || Ok::<_, ComputeError>(b"v".to_vec()))
        .unwrap();
    assert_eq!(cache.get_metadata(b"k").unwrap().unwrap().ttl, Some(ttl));
}

/// A leader whose computation fails once another thread waits for it; the waiter's own result.
fn fail_while_another_waits(cache: &Cache) -> (ComputeError, Result<Vec<u8>, ComputeError>) {
    let (started, leader_started) = mpsc::channel();
    std::thread::scope(|scope| {
        let leader = scope.spawn(|| {
            cache.get_or_compute(b"k", None, || {
                started.send(()).unwrap();
                until_waiting(cache, 1);
                Err::<Vec<u8>, _>(ComputeError::Failed("compiler said no".to_owned()))
            })
        });
        leader_started.recv().unwrap();
        let waiter = scope.spawn(|| {
            cache.get_or_compute(b"k", None, || Ok::<_, ComputeError>(b"second try".to_vec()))
        });
        let leader_error = leader.join().unwrap().unwrap_err();
        (leader_error, waiter.join().unwrap())
    })
}

#[rstest]
fn a_failed_computation_wakes_its_waiter_who_retries_once_by_default(
    root: TempDir,
    coordinator: Coordinator,
) {
    let cache = open(&coordinator, &root, "flight", CacheOptions::default());
    let (leader_error, waiter) = fail_while_another_waits(&cache);
    assert_eq!(
        leader_error,
        ComputeError::Failed("compiler said no".to_owned()),
        "the computing caller gets its own error"
    );
    assert_eq!(
        waiter.unwrap(),
        b"second try",
        "the waiter retried and computed"
    );
    let counters = cache.get_stats().unwrap().counters;
    assert_eq!(counters.computations, 2);
    assert_eq!(counters.waits, 1);
}

#[rstest]
fn a_failed_computation_is_the_waiters_error_when_no_retry_is_left(
    root: TempDir,
    coordinator: Coordinator,
) {
    let options = CacheOptions {
        flight_retries: 0,
        ..CacheOptions::default()
    };
    let cache = open(&coordinator, &root, "flight", options);
    let (_, waiter) = fail_while_another_waits(&cache);
    let ComputeError::Cache(message) = waiter.unwrap_err() else {
        panic!("the waiter gets the cache's error")
    };
    assert_eq!(
        message,
        format!(
            "computing key \"k\" in tag 'flight' failed in process {}: failed: compiler said no",
            std::process::id()
        )
    );
    assert_eq!(cache.get_stats().unwrap().counters.computations, 1);
    assert_eq!(cache.get(b"k").unwrap(), None);
}

#[rstest]
#[case::retried(1, true)]
#[case::not_retried(0, false)]
fn a_panicking_computation_releases_its_waiter(
    root: TempDir,
    coordinator: Coordinator,
    #[case] flight_retries: u32,
    #[case] waiter_computes: bool,
) {
    let options = CacheOptions {
        flight_retries,
        ..CacheOptions::default()
    };
    let cache = open(&coordinator, &root, "flight", options);
    let (started, leader_started) = mpsc::channel();
    let (leader, waiter) = std::thread::scope(|scope| {
        let leader = scope.spawn(|| {
            cache.get_or_compute(b"k", None, || -> Result<Vec<u8>, ComputeError> {
                started.send(()).unwrap();
                until_waiting(&cache, 1);
                panic!("the computation panics (expected by this test)")
            })
        });
        leader_started.recv().unwrap();
        let waiter = scope.spawn(|| {
            cache.get_or_compute(b"k", None, || Ok::<_, ComputeError>(b"after".to_vec()))
        });
        (leader.join(), waiter.join().unwrap())
    });
    assert!(leader.is_err(), "the panic reaches the panicking caller");
    if waiter_computes {
        assert_eq!(waiter.unwrap(), b"after");
    } else {
        let ComputeError::Cache(message) = waiter.unwrap_err() else {
            panic!("the waiter gets the cache's error")
        };
        assert!(message.contains("the computation panicked"), "{message}");
    }
    // Nothing is left held: the next caller computes at once.
    let next = cache
        .get_or_compute(b"other", None, || Ok::<_, ComputeError>(b"x".to_vec()))
        .unwrap();
    assert_eq!(next, b"x");
}

#[rstest]
fn a_waiter_gives_up_at_the_timeout_naming_key_and_owner(root: TempDir, coordinator: Coordinator) {
    let options = CacheOptions {
        timeout: Duration::from_millis(200),
        ..CacheOptions::default()
    };
    let cache = open(&coordinator, &root, "flight", options);
    let (started, leader_started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let (cache, started) = (&cache, &started);
        let leader = scope.spawn(move || {
            cache.get_or_compute(b"slow:key", None, || {
                started.send(()).unwrap();
                // Runs until the waiter has given up (or a generous bound).
                let _ = released.recv_timeout(Duration::from_secs(60));
                Ok::<_, ComputeError>(b"late".to_vec())
            })
        });
        leader_started.recv().unwrap();
        let err = cache
            .get_or_compute(b"slow:key", None, || {
                Ok::<_, ComputeError>(b"mine".to_vec())
            })
            .unwrap_err();
        release.send(()).unwrap();
        let ComputeError::Cache(message) = err else {
            panic!("a timeout is the cache's error")
        };
        assert!(message.starts_with("timed out after "), "{message}");
        assert!(
            message.ends_with(&format!(
                "waiting for process {} to compute key \"slow:key\" in tag 'flight'",
                std::process::id()
            )),
            "{message}"
        );
        assert_eq!(leader.join().unwrap().unwrap(), b"late");
    });
    assert_eq!(cache.get_stats().unwrap().counters.errors, 1);
}

#[rstest]
fn the_typed_form_computes_once_and_checks_the_tag(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "t", CacheOptions::default());
    let runs = AtomicUsize::new(0);
    for _ in 0..3 {
        let value = cache
            .get_or_compute_typed(&Note("n"), || {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, CacheError>("typed value".to_owned())
            })
            .unwrap();
        assert_eq!(value, "typed value");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.get_typed(&Note("n")).unwrap().as_deref(),
        Some("typed value")
    );

    let other = open(&coordinator, &root, "other", CacheOptions::default());
    let err = other
        .get_or_compute_typed(&Note("n"), || Ok::<_, CacheError>(String::new()))
        .unwrap_err();
    assert!(matches!(err, CacheError::WrongTag { .. }), "{err}");
}

#[test]
fn a_disabled_cache_just_computes() {
    let cache = Cache::disabled(Tag::new("t").unwrap());
    let runs = AtomicUsize::new(0);
    for _ in 0..2 {
        let value = cache
            .get_or_compute(b"k", None, || {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, CacheError>(b"v".to_vec())
            })
            .unwrap();
        assert_eq!(value, b"v");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "nothing is stored, so each call computes"
    );
}

#[rstest]
fn an_empty_key_is_refused_before_anything_runs(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "flight", CacheOptions::default());
    let err = cache
        .get_or_compute(b"", None, || -> Result<Vec<u8>, CacheError> {
            panic!("must not compute")
        })
        .unwrap_err();
    assert!(matches!(err, CacheError::EmptyKey { .. }), "{err}");
}

#[rstest]
fn the_counters_are_persisted_and_aggregated(root: TempDir, coordinator: Coordinator) {
    let cache = open(&coordinator, &root, "flight", CacheOptions::default());
    cache
        .get_or_compute(b"k", None, || Ok::<_, CacheError>(b"v".to_vec()))
        .unwrap();
    cache.flush().unwrap();
    let aggregated = coordinator.aggregated_stats().unwrap();
    assert_eq!(aggregated.totals.computations, 1);
    coordinator.reset().unwrap();
    // A new instance (as another process would) reads the lifetime counters from the file.
    let reopened = open(&coordinator, &root, "flight", CacheOptions::default());
    let stats = reopened.get_stats().unwrap();
    assert_eq!(stats.counters.computations, 0);
    assert_eq!(stats.lifetime.computations, 1);
}

#[test]
fn a_zero_lease_duration_is_refused() {
    let options = CacheOptions {
        lease_duration: Duration::ZERO,
        ..CacheOptions::default()
    };
    let err = options.validate().unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::InvalidOption {
                option: "lease_duration",
                ..
            }
        ),
        "{err}"
    );
}
