//! Operation metrics reach a recorder installed before the cache opens (`metrics` facade;
//! metrics-util's debugging recorder here, scoped to this thread so tests do not share one).

use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use rstest::rstest;
use tempfile::TempDir;

use crate::{coordinator, root};
use cache_core::{CacheOptions, Coordinator};

/// The value of the counter `name` whose labels include every one of `labels`.
fn counter(
    snapshot: &[(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    name: &str,
    labels: &[(&str, &str)],
) -> u64 {
    snapshot
        .iter()
        .filter(|(key, ..)| key.kind() == MetricKind::Counter && key.key().name() == name)
        .filter(|(key, ..)| {
            labels.iter().all(|(label, value)| {
                key.key()
                    .labels()
                    .any(|l| l.key() == *label && l.value() == *value)
            })
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(count) => *count,
            _ => 0,
        })
        .sum()
}

#[rstest]
fn operations_hits_misses_errors_and_durations_reach_the_recorder(
    root: TempDir,
    coordinator: Coordinator,
) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let cache = coordinator
            .get_shared_cache_instance(root.path(), "notes", CacheOptions::default())
            .expect("open");
        cache.set(b"k", b"v", None).expect("set");
        // Reads time one in 16 of themselves: 32 in a row include timed ones.
        for _ in 0..32 {
            assert!(cache.get(b"k").expect("get").is_some());
        }
        assert!(cache.get(b"missing").expect("get").is_none());
        assert!(
            cache.set(b"", b"v", None).is_err(),
            "an empty key is refused"
        );
        cache.flush().expect("flush");
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let ops = "glovebox_cache_operations_total";
    assert_eq!(
        counter(
            &snapshot,
            ops,
            &[("tag", "notes"), ("operation", "get"), ("result", "ok")]
        ),
        33
    );
    assert_eq!(
        counter(&snapshot, ops, &[("operation", "set"), ("result", "ok")]),
        1
    );
    assert_eq!(
        counter(&snapshot, ops, &[("operation", "set"), ("result", "error")]),
        1
    );
    assert_eq!(
        counter(
            &snapshot,
            "glovebox_cache_errors_total",
            &[("operation", "set")]
        ),
        1
    );
    let requests = "glovebox_cache_requests_total";
    assert_eq!(
        counter(&snapshot, requests, &[("tag", "notes"), ("result", "hit")]),
        32
    );
    assert_eq!(
        counter(&snapshot, requests, &[("tag", "notes"), ("result", "miss")]),
        1
    );
    let timed_gets = snapshot
        .iter()
        .filter(|(key, ..)| {
            key.kind() == MetricKind::Histogram
                && key.key().name() == "glovebox_cache_operation_duration_seconds"
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "operation" && l.value() == "get")
        })
        .map(|(.., value)| match value {
            DebugValue::Histogram(samples) => samples.len(),
            _ => 0,
        })
        .sum::<usize>();
    assert!(timed_gets >= 1, "no get was timed");
}
