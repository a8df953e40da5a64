//! A remote that is stopped, killed or silent never fails a local operation: the first
//! operations pay their timeout, then the breaker skips the server; a full upload queue drops
//! and counts.

use cache_test_support::redis::RedisServer;

use crate::{config, machine};

#[test]
fn a_killed_server_costs_misses_and_then_is_skipped_by_the_breaker() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = machine(config(&server));
    a.cache.set(b"k", b"v", None).unwrap();
    a.cache.flush().unwrap();
    let b = machine(config(&server));
    server.signal("-KILL");
    for index in 0..10u32 {
        let key = format!("missing {index}");
        assert_eq!(b.cache.get(key.as_bytes()).unwrap(), None);
    }
    let stats = b.remote.stats();
    // Three failures open the breaker (the default); the other reads did not try.
    assert_eq!(stats.errors, 3, "{stats:?}");
    assert_eq!(stats.skipped, 7, "{stats:?}");
    // Local writes and reads go on.
    b.cache.set(b"local", b"still works", None).unwrap();
    b.cache.flush().unwrap();
    assert_eq!(
        b.cache.get(b"local").unwrap(),
        Some(b"still works".to_vec())
    );
}

#[test]
fn a_server_that_never_answers_times_out_and_reads_stay_misses() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let b = machine(config(&server));
    // Connected first, so that the stop hits an operation, not a connect.
    assert_eq!(b.cache.get(b"warm").unwrap(), None);
    server.signal("-STOP");
    assert_eq!(b.cache.get(b"k").unwrap(), None);
    let stats = b.remote.stats();
    server.signal("-CONT");
    assert_eq!(stats.timeouts, 1, "{stats:?}");
}

#[test]
fn a_full_upload_queue_drops_and_counts_and_never_fails_the_write() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let mut small_queue = config(&server);
    small_queue.queue_entries = 2;
    let a = machine(small_queue);
    // The server is stopped: the upload thread blocks on its first upload, so at most one
    // upload is in progress and two wait; of five, at least two are dropped at once.
    server.signal("-STOP");
    let items: Vec<(Vec<u8>, Vec<u8>)> = (0..5u8).map(|i| (vec![b'k', i], vec![i; 10])).collect();
    let borrowed: Vec<(&[u8], &[u8])> = items
        .iter()
        .map(|(key, value)| (key.as_slice(), value.as_slice()))
        .collect();
    a.cache.set_many(&borrowed, None).unwrap();
    a.cache.flush().unwrap();
    server.signal("-CONT");
    let stats = a.remote.stats();
    assert!(stats.dropped >= 2, "{stats:?}");
    for (key, value) in &items {
        assert_eq!(a.cache.get(key).unwrap().as_ref(), Some(value));
    }
}
