//! The service: round trips, listing, JSON, cleaning, TTL, timings and the cache's own activity.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{CacheKey, CacheOptions, CacheTtlConfig, Coordinator, ManualClock};
use cache_metrics::{SessionId, SessionMetrics, TIMING_BUCKET_BOUNDS, Timing};
use rstest::rstest;
use tempfile::TempDir;

use crate::{clock, config_with, coordinator, now, open, root};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn session(clock: &ManualClock, command: &str, started_ago: Duration) -> SessionMetrics {
    SessionMetrics::new(SessionId::generate(), command, now(clock) - started_ago)
}

#[rstest]
fn a_recorded_session_reads_back_whole(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let metrics = open(&coordinator, &config_with(&root, &clock));
    let mut recorded = session(&clock, "layout compile", Duration::from_secs(3));
    recorded.increment("layers", 8);
    recorded.increment("layers", 2);
    recorded.observe("compile", Duration::from_millis(420));
    recorded.finish(now(&clock), 2);
    metrics.record(&recorded).unwrap();

    let read = metrics.get(&recorded.session_id).unwrap().unwrap();
    assert_eq!(read, recorded);
    assert_eq!(read.counters["layers"], 10);
    assert_eq!(read.exit_status, Some(2));
    assert_eq!(read.duration(), Some(Duration::from_secs(3)));
    assert_eq!(
        metrics.get(&SessionId::generate()).unwrap(),
        None,
        "an unknown session is a miss"
    );
}

#[rstest]
fn recording_a_session_again_replaces_it(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let metrics = open(&coordinator, &config_with(&root, &clock));
    let mut running = session(&clock, "firmware flash", Duration::ZERO);
    metrics.record(&running).unwrap();
    running.finish(now(&clock), 0);
    metrics.record(&running).unwrap();
    assert_eq!(metrics.list().unwrap(), vec![running]);
}

#[rstest]
fn list_is_newest_first_and_ignores_other_keys_of_the_tag(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let metrics = open(&coordinator, &config_with(&root, &clock));
    let old = session(&clock, "old", 2 * DAY);
    let new = session(&clock, "new", Duration::ZERO);
    let middle = session(&clock, "middle", DAY);
    for s in [&old, &new, &middle] {
        metrics.record(s).unwrap();
    }
    metrics.cache().set(b"not-a-session", b"x", None).unwrap();

    let commands: Vec<String> = metrics
        .list()
        .unwrap()
        .into_iter()
        .map(|s| s.command)
        .collect();
    assert_eq!(commands, ["new", "middle", "old"]);
}

#[rstest]
fn an_undecodable_session_entry_is_dropped_from_the_list(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let metrics = open(&coordinator, &config_with(&root, &clock));
    let good = session(&clock, "good", Duration::ZERO);
    metrics.record(&good).unwrap();
    let broken = metrics.key(&SessionId::generate()).key_bytes();
    metrics.cache().set(&broken, b"garbage", None).unwrap();

    assert_eq!(metrics.list().unwrap(), vec![good]);
    assert!(
        !metrics.cache().exists(&broken).unwrap(),
        "the unreadable entry is removed"
    );
}

#[rstest]
fn dump_json_is_the_list_as_a_json_array(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let metrics = open(&coordinator, &config_with(&root, &clock));
    assert_eq!(
        serde_json::from_str::<Vec<SessionMetrics>>(&metrics.dump_json().unwrap()).unwrap(),
        Vec::<SessionMetrics>::new()
    );
    let mut one = session(&clock, "layout show", Duration::ZERO);
    one.observe("render", Duration::from_millis(3));
    metrics.record(&one).unwrap();
    metrics.record(&session(&clock, "cache keys", DAY)).unwrap();

    let dumped = metrics.dump_json().unwrap();
    let parsed: Vec<SessionMetrics> = serde_json::from_str(&dumped).unwrap();
    assert_eq!(parsed, metrics.list().unwrap());
    let single: SessionMetrics = serde_json::from_str(&one.to_json_pretty().unwrap()).unwrap();
    assert_eq!(single, one);
}

#[rstest]
fn clean_older_than_removes_only_sessions_started_before_the_cutoff(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let metrics = open(&coordinator, &config_with(&root, &clock));
    let ten_days = session(&clock, "ten days", 10 * DAY);
    let three_days = session(&clock, "three days", 3 * DAY);
    let today = session(&clock, "today", Duration::ZERO);
    for s in [&ten_days, &three_days, &today] {
        metrics.record(s).unwrap();
    }

    assert_eq!(metrics.clean_older_than(5).unwrap(), 1);
    assert_eq!(metrics.get(&ten_days.session_id).unwrap(), None);
    assert_eq!(metrics.list().unwrap(), vec![today.clone(), three_days]);

    assert_eq!(metrics.clean_older_than(0).unwrap(), 1);
    assert_eq!(metrics.list().unwrap(), vec![today]);
}

#[rstest]
fn delete_removes_one_session(root: TempDir, coordinator: Coordinator, clock: Arc<ManualClock>) {
    let metrics = open(&coordinator, &config_with(&root, &clock));
    let one = session(&clock, "one", Duration::ZERO);
    let two = session(&clock, "two", Duration::ZERO);
    metrics.record(&one).unwrap();
    metrics.record(&two).unwrap();
    assert!(metrics.delete(&one.session_id).unwrap());
    assert!(!metrics.delete(&one.session_id).unwrap());
    assert_eq!(metrics.list().unwrap(), vec![two]);
}

#[rstest]
#[case::default_seven_days(CacheTtlConfig::default(), 7 * DAY)]
#[case::overridden(CacheTtlConfig::default().with(&cache_metrics::ttl::METRICS_SESSIONS, Duration::from_secs(3600)), Duration::from_secs(3600))]
fn a_session_expires_after_the_configured_level(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[case] ttls: CacheTtlConfig,
    #[case] ttl: Duration,
) {
    let config = cache_core::UserCacheConfig {
        ttls,
        ..config_with(&root, &clock)
    };
    let metrics = open(&coordinator, &config);
    let recorded = session(&clock, "layout compile", Duration::ZERO);
    metrics.record(&recorded).unwrap();

    clock.advance(ttl - Duration::from_secs(1));
    assert!(
        metrics.get(&recorded.session_id).unwrap().is_some(),
        "alive before its TTL"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        metrics.get(&recorded.session_id).unwrap(),
        None,
        "expired at its TTL"
    );
    assert!(metrics.list().unwrap().is_empty());
}

#[rstest]
fn the_stored_entry_carries_the_configured_ttl(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let metrics = open(&coordinator, &config_with(&root, &clock));
    let recorded = session(&clock, "x", Duration::ZERO);
    metrics.record(&recorded).unwrap();
    let meta = metrics
        .cache()
        .get_metadata(&metrics.key(&recorded.session_id).key_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(meta.ttl, Some(7 * DAY));
}

#[test]
fn timings_count_into_the_original_buckets() {
    let mut timing = Timing::default();
    assert_eq!(timing.mean(), None);
    for millis in [0, 1, 2, 7_000] {
        timing.observe(Duration::from_millis(millis));
    }
    assert_eq!(timing.count(), 4);
    assert_eq!(timing.total(), Duration::from_millis(7_003));
    assert_eq!(timing.min(), Some(Duration::ZERO));
    assert_eq!(timing.max(), Some(Duration::from_secs(7)));
    assert_eq!(timing.mean(), Some(Duration::from_micros(1_750_750)));
    let buckets: Vec<(Option<Duration>, u64)> = timing.buckets().collect();
    assert_eq!(buckets.len(), TIMING_BUCKET_BOUNDS.len() + 1);
    assert_eq!(buckets[0], (Some(Duration::from_micros(100)), 1), "0 ms");
    assert_eq!(
        buckets[2],
        (Some(Duration::from_millis(1)), 1),
        "1 ms is in the 1 ms bucket"
    );
    assert_eq!(buckets[3], (Some(Duration::from_millis(5)), 1), "2 ms");
    assert_eq!(buckets[10], (None, 1), "7 s is above every bound");
    assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 4);
}

#[test]
fn a_timing_whose_stored_buckets_are_damaged_recovers_on_observe() {
    let mut damaged: Timing = serde_json::from_str(
        r#"{"count":1,"total":{"secs":0,"nanos":0},"min":null,"max":null,"buckets":[1,2,3,4,5,6,7,8,9,10,11,12,13]}"#,
    )
    .unwrap();
    damaged.observe(Duration::from_secs(60));
    assert_eq!(damaged.buckets().count(), TIMING_BUCKET_BOUNDS.len() + 1);
    assert_eq!(damaged.count(), 2);
}

#[rstest]
fn the_caches_own_activity_is_recorded_per_tag(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let config = config_with(&root, &clock);
    let metrics = open(&coordinator, &config);
    let layout = coordinator
        .get_shared_cache_instance(
            root.path(),
            "layout",
            CacheOptions {
                clock: clock.clone(),
                ..CacheOptions::default()
            },
        )
        .unwrap();
    assert_eq!(layout.get(b"k").unwrap(), None);
    layout.set(b"k", b"v", None).unwrap();
    assert!(layout.get(b"k").unwrap().is_some());

    let mut recorded = session(&clock, "layout compile", Duration::ZERO);
    recorded.record_cache_activity(&coordinator.aggregated_stats().unwrap());
    let activity = recorded.cache_activity["layout"];
    assert_eq!((activity.hits, activity.misses, activity.sets), (1, 1, 1));
    assert_eq!(activity.errors, 0);
    assert!(activity.operations >= 3, "{activity:?}");
    assert_eq!(activity.hit_rate(), 50.0);
    assert!(recorded.cache_activity.contains_key("metrics"));

    let baseline = coordinator.aggregated_stats().unwrap();
    assert!(layout.get(b"k").unwrap().is_some());
    recorded.record_cache_activity_since(&baseline, &coordinator.aggregated_stats().unwrap());
    let layout_since = recorded.cache_activity["layout"];
    assert_eq!(
        (layout_since.hits, layout_since.misses, layout_since.sets),
        (1, 0, 0)
    );
    let metrics_since = recorded.cache_activity["metrics"];
    assert_eq!(
        (metrics_since.hits, metrics_since.misses, metrics_since.sets),
        (0, 0, 0)
    );

    metrics.record(&recorded).unwrap();
    assert_eq!(metrics.get(&recorded.session_id).unwrap(), Some(recorded));
}

#[rstest]
fn a_session_key_reads_through_the_typed_api_too(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let metrics = open(&coordinator, &config_with(&root, &clock));
    let recorded = session(&clock, "x", Duration::ZERO);
    metrics.record(&recorded).unwrap();
    let key = metrics.key(&recorded.session_id);
    assert_eq!(metrics.cache().get_typed(&key).unwrap(), Some(recorded));
}
