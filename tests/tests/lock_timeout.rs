//! Another process holding the tag's write lock past `timeout`: the commit fails with a clear
//! error on `flush()`, the write is not lost, and it lands once the lock is free.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use cache_core::{CacheError, CacheOptions, Coordinator, Environment};

const WORKER: &str = env!("CARGO_BIN_EXE_cache-worker");

#[test]
fn a_write_lock_held_past_timeout_is_a_clear_error_and_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let options = CacheOptions {
        timeout: Duration::from_millis(200),
        commit_interval: Duration::from_secs(3600),
        ..CacheOptions::default()
    };
    let cache = coordinator
        .get_shared_cache_instance(root.path(), "locked", options.clone())
        .unwrap();

    let mut holder = Command::new(WORKER)
        .arg("hold-write-lock")
        .arg(cache.database_path().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    cache.set(b"k", b"v", None).unwrap();
    let err = cache.flush().unwrap_err();
    assert!(matches!(err, CacheError::LockTimeout { .. }), "{err}");
    assert!(
        err.to_string().contains("'locked'"),
        "the message names the tag: {err}"
    );
    assert_eq!(
        cache.get(b"k").unwrap(),
        Some(b"v".to_vec()),
        "the write is still there"
    );
    assert!(
        cache.get_stats().is_err(),
        "a scan needs the buffer committed, which cannot happen yet"
    );

    holder.kill().unwrap();
    holder.wait().unwrap();
    cache.flush().unwrap();
    coordinator.reset().unwrap();
    let reopened = coordinator
        .get_shared_cache_instance(root.path(), "locked", options)
        .unwrap();
    assert_eq!(
        reopened.get(b"k").unwrap(),
        Some(b"v".to_vec()),
        "the write landed once the lock was free"
    );
    assert!(
        reopened.get_stats().unwrap().lifetime.errors >= 2,
        "the failed commits were counted"
    );
}
