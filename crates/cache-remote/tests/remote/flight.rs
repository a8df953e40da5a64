//! One computation per fleet: the machine whose leader takes the fleet's lease computes; another
//! machine's leader waits for the value to appear on the server and backfills it; a lease whose
//! owner is gone (not renewed: killed, partitioned) expires and another machine computes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cache_core::CacheError;
use cache_test_support::redis::RedisServer;

use crate::{config, machine};

/// Polls `done` until it holds, bounded only against a hang.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn two_machines_compute_a_value_once_and_the_waiter_gets_it_from_the_server() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let a = machine(config(&server));
    let b = machine(config(&server));
    let computed = &AtomicUsize::new(0);
    let a = &a;
    let (computing, started) = mpsc::channel::<()>();
    let (finish, finished) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let first = scope.spawn(move || {
            a.cache.get_or_compute(b"firmware:x", None, || {
                computed.fetch_add(1, Ordering::SeqCst);
                computing.send(()).expect("the test listens");
                finished.recv().expect("the test says when");
                Ok::<_, CacheError>(b"built on a".to_vec())
            })
        });
        started.recv().expect("a computes");
        let b = &b;
        let second = scope.spawn(move || {
            b.cache.get_or_compute(b"firmware:x", None, || {
                computed.fetch_add(1, Ordering::SeqCst);
                Ok::<_, CacheError>(b"built on b".to_vec())
            })
        });
        // B's leader has found the fleet's lease held: only then does A finish.
        eventually("b waits for a", || b.remote.stats().leases_busy >= 1);
        finish.send(()).expect("a listens");
        assert_eq!(first.join().expect("a").expect("a's value"), b"built on a");
        assert_eq!(second.join().expect("b").expect("b's value"), b"built on a");
    });
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    assert_eq!(a.remote.stats().leases_taken, 1);
    assert_eq!(b.cache.get_stats().unwrap().counters.computations, 0);
    // The wait and the backfill, counted in the tag's remote tier counters.
    let remote = b.cache.get_stats().unwrap().lifetime.remote;
    assert_eq!((remote.fleet_waits, remote.backfills), (1, 1));
    assert_eq!(
        b.cache.get(b"firmware:x").unwrap(),
        Some(b"built on a".to_vec())
    );
    // Released after the value was published: nothing holds the lease now.
    let leases = server.command("KEYS glovebox/v1/l/*");
    assert!(!leases.contains("glovebox/"), "{leases}");
}

#[test]
fn a_lease_whose_owner_is_gone_expires_and_another_machine_computes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let b = machine(config(&server));
    // What a machine killed while computing leaves: its lease, no longer renewed.
    let entry = cache_remote::entry_name("glovebox", "layout", b"firmware:y");
    let lease = entry.replace("/v1/e/", "/v1/l/");
    let reply = server.command(&format!("SET {lease} dead-machine PX 300"));
    assert!(reply.starts_with("+OK"), "{reply}");
    let value = b
        .cache
        .get_or_compute(b"firmware:y", None, || {
            Ok::<_, CacheError>(b"built on b".to_vec())
        })
        .unwrap();
    assert_eq!(value, b"built on b");
    let stats = b.remote.stats();
    assert!(stats.leases_busy >= 1, "{stats:?}");
    assert_eq!(stats.leases_taken, 1, "{stats:?}");
    assert_eq!(b.cache.get_stats().unwrap().counters.computations, 1);
}

#[test]
fn without_a_reachable_server_each_machine_computes() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let b = machine(config(&server));
    server.signal("-KILL");
    let value = b
        .cache
        .get_or_compute(b"k", None, || Ok::<_, CacheError>(b"local".to_vec()))
        .unwrap();
    assert_eq!(value, b"local");
    assert_eq!(b.cache.get_stats().unwrap().counters.computations, 1);
}
