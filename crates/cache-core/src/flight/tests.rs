//! Unit tests of single-flight (`flight.rs`), in a file of their own to keep that one short.

use std::path::Path;

use super::*;
use crate::config::CacheOptions;
use crate::files::prepare_root;
use crate::store::RedbCache;
use crate::tag::Tag;

fn open_in(root: &Path, options: CacheOptions) -> Arc<RedbCache> {
    let canonical = prepare_root(root).unwrap();
    RedbCache::open(&canonical, Tag::new("t").unwrap(), options).unwrap()
}

/// A running lease of a process that is certainly alive (this one) with the given deadline.
fn live_record(deadline_ms: u64) -> LeaseRecord {
    LeaseRecord {
        deadline_ms,
        ..LeaseRecord::running(now_ms(), Duration::from_secs(60))
    }
}

#[test]
fn lease_records_round_trip_and_refuse_what_they_do_not_know() {
    let running = live_record(42);
    assert_eq!(
        LeaseRecord::decode(&running.encode()),
        Some(running.clone())
    );
    let failed = LeaseRecord {
        state: LeaseState::Failed,
        message: "compiler said no: ü".to_owned(),
        ..running.clone()
    };
    assert_eq!(LeaseRecord::decode(&failed.encode()), Some(failed));
    let mut newer = running.encode();
    newer[0] = LeaseRecord::VERSION + 1;
    assert_eq!(LeaseRecord::decode(&newer), None);
    assert_eq!(LeaseRecord::decode(&running.encode()[..10]), None);
}

#[test]
fn classify_tells_free_busy_stale_finished_and_failed_apart() {
    let now = now_ms();
    let busy = live_record(now + 60_000);
    let expired = live_record(now - 1);
    assert_eq!(classify(None, None, now), Seen::Free);
    assert_eq!(classify(Some(b"garbage"), None, now), Seen::Free);
    assert_eq!(
        classify(Some(&busy.encode()), None, now),
        Seen::Busy(busy.clone())
    );
    assert_eq!(
        classify(Some(&expired.encode()), None, now),
        Seen::Stale(expired.clone())
    );
    // The watched lease released, or replaced by a later flight.
    assert_eq!(classify(None, Some(busy.id), now), Seen::Finished);
    assert_eq!(
        classify(Some(&busy.encode()), Some(expired.id), now),
        Seen::Finished
    );
    let failed = LeaseRecord {
        state: LeaseState::Failed,
        message: "boom".to_owned(),
        ..busy.clone()
    };
    assert_eq!(
        classify(Some(&failed.encode()), Some(busy.id), now),
        Seen::Failed(failed.clone())
    );
    // A failure nobody here waited for is no reason to fail: the lease is free.
    assert_eq!(classify(Some(&failed.encode()), None, now), Seen::Free);
}

#[test]
fn a_lease_whose_owner_process_is_gone_is_stale_before_its_deadline() {
    let me = ProcessIdentity::current();
    if me.pid_namespace == 0 {
        return; // No /proc: only deadlines can tell, and they are tested above.
    }
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let orphaned = LeaseRecord {
        owner: ProcessIdentity {
            pid,
            start_ticks: 0,
            pid_namespace: me.pid_namespace,
        },
        ..live_record(now_ms() + 60_000)
    };
    assert!(orphaned.is_stale(now_ms()));
}

#[test]
fn a_lease_past_its_deadline_is_taken_over_and_counted() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    let abandoned = live_record(now_ms() - 1);
    cache
        .update_lease(b"k", |_| (LeaseWrite::Put(abandoned.encode()), ()))
        .unwrap();
    let value = crate::Cache::stored(cache.clone())
        .get_or_compute(b"k", None, || Ok::<_, CacheError>(b"v".to_vec()))
        .unwrap();
    assert_eq!(value, b"v");
    let counters = cache.counters().snapshot();
    assert_eq!(counters.takeovers, 1);
    assert_eq!(counters.computations, 1);
    assert_eq!(
        cache.read_lease(b"k").unwrap(),
        None,
        "released after computing"
    );
}

#[test]
fn a_live_lease_of_another_owner_makes_the_caller_wait_until_the_timeout() {
    let root = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        timeout: Duration::from_millis(100),
        ..CacheOptions::default()
    };
    let cache = open_in(root.path(), options);
    let held = live_record(now_ms() + 60_000);
    cache
        .update_lease(b"k", |_| (LeaseWrite::Put(held.encode()), ()))
        .unwrap();
    let err = crate::Cache::stored(cache.clone())
        .get_or_compute(b"k", None, || Ok::<_, CacheError>(b"v".to_vec()))
        .unwrap_err();
    match &err {
        CacheError::FlightTimeout { owner_pid, .. } => {
            assert_eq!(*owner_pid, std::process::id());
        }
        other => panic!("expected a flight timeout, got {other}"),
    }
    assert_eq!(cache.counters().snapshot().waits, 1);
    assert_eq!(cache.counters().snapshot().computations, 0);
    assert!(
        cache.read_lease(b"k").unwrap().is_some(),
        "a live lease is left alone"
    );
}

#[test]
fn a_lease_taken_over_while_computing_is_left_to_its_new_owner() {
    let root = tempfile::tempdir().unwrap();
    let cache = open_in(root.path(), CacheOptions::default());
    let intruder = live_record(now_ms() + 60_000);
    let value = crate::Cache::stored(cache.clone())
        .get_or_compute(b"k", None, || {
            // Another owner takes the lease while this computation runs.
            cache
                .update_lease(b"k", |_| (LeaseWrite::Put(intruder.encode()), ()))
                .unwrap();
            Ok::<_, CacheError>(b"v".to_vec())
        })
        .unwrap();
    assert_eq!(value, b"v");
    let row = cache.read_lease(b"k").unwrap().unwrap();
    assert_eq!(LeaseRecord::decode(&row), Some(intruder));
}

#[test]
fn long_failure_messages_are_cut_at_a_character_boundary() {
    let message = truncated("é".repeat(MAX_MESSAGE_BYTES));
    assert!(message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8());
    assert!(message.ends_with('…'));
    assert_eq!(truncated("short".to_owned()), "short");
}
