//! kill -9 while writing: the file stays consistent, every entry flushed before the kill reads
//! back exactly, and no entry ever reads back wrong.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use cache_core::{CacheOptions, Coordinator, Environment};
use cache_tests::{worker_key, worker_value};
use rstest::rstest;

const WORKER: &str = env!("CARGO_BIN_EXE_cache-worker");

/// Starts a writer, waits until it reports `flushed_target` durable entries, kills it with
/// SIGKILL, and returns the last flushed count it reported.
fn write_then_kill(root: &std::path::Path, flush_every: usize, flushed_target: usize) -> usize {
    let mut child = Command::new(WORKER)
        .arg("write-until-killed")
        .arg(root)
        .args(["crash", &flush_every.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn cache-worker");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut flushed = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("worker output");
        flushed = line
            .strip_prefix("flushed ")
            .and_then(|n| n.parse().ok())
            .expect("a `flushed N` line");
        if flushed >= flushed_target {
            break;
        }
    }
    // Child::kill is SIGKILL on Unix: no destructor, no final flush runs in the worker.
    child.kill().expect("kill the worker");
    child.wait().expect("reap the worker");
    flushed
}

/// Opens the root in this process and checks the promise: every flushed entry exact, anything
/// else absent or exact. Returns how many entries past the flushed ones survived.
fn check_after_kill(root: &std::path::Path, flushed: usize) -> usize {
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let cache = coordinator
        .get_shared_cache_instance(root, "crash", CacheOptions::default())
        .expect("the file opens after a kill -9");
    for index in 0..flushed {
        assert_eq!(
            cache.get(&worker_key("crash", index)).unwrap(),
            Some(worker_value("crash", index)),
            "entry {index} was flushed before the kill"
        );
    }
    let keys = cache.keys().unwrap();
    for key in &keys {
        let index: usize = std::str::from_utf8(key)
            .unwrap()
            .trim_start_matches("crash:")
            .parse()
            .unwrap();
        assert_eq!(
            cache.get(key).unwrap(),
            Some(worker_value("crash", index)),
            "no entry reads back wrong"
        );
    }
    coordinator.reset().unwrap();
    keys.len() - flushed
}

#[rstest]
#[case::flush_often(10, 200)]
#[case::flush_rarely(500, 1_000)]
fn a_kill_after_flush_loses_nothing_flushed(#[case] flush_every: usize, #[case] target: usize) {
    let root = tempfile::tempdir().unwrap();
    let flushed = write_then_kill(root.path(), flush_every, target);
    assert!(flushed >= target);
    check_after_kill(root.path(), flushed);
}

#[rstest]
fn repeated_kills_never_corrupt_the_file() {
    let root = tempfile::tempdir().unwrap();
    for round in 0..5 {
        // Each round starts writing from entry 0 again, overwriting with identical values.
        let flushed = write_then_kill(root.path(), 50, 100 + round * 50);
        check_after_kill(root.path(), flushed);
    }
}
