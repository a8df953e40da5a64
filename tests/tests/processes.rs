//! Several real processes on one cache root: they write one tag at the same moment, and every
//! entry is readable by each of them and by a third process afterwards.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::process::{Command, Output};

use cache_core::{CacheOptions, Coordinator, Environment};
use cache_tests::{worker_key, worker_value};
use rstest::rstest;

const WORKER: &str = env!("CARGO_BIN_EXE_cache-worker");

fn spawn_worker(
    root: &std::path::Path,
    tag: &str,
    me: &str,
    other: &str,
    count: usize,
    barrier: &std::path::Path,
) -> std::process::Child {
    Command::new(WORKER)
        .arg("pair")
        .arg(root)
        .args([tag, me, other, &count.to_string()])
        .arg(barrier)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn cache-worker")
}

fn assert_worker_succeeded(output: Output, expected_reads: usize) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "worker failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    assert_eq!(
        stdout.trim(),
        format!("read {expected_reads}"),
        "stderr: {stderr}"
    );
}

#[rstest]
#[case::few(50)]
#[case::more(400)]
fn two_processes_write_one_tag_at_once_and_both_read_everything(#[case] count: usize) {
    let root = tempfile::tempdir().unwrap();
    let barrier = tempfile::tempdir().unwrap();
    let first = spawn_worker(
        root.path(),
        "shared",
        "alpha",
        "beta",
        count,
        barrier.path(),
    );
    let second = spawn_worker(
        root.path(),
        "shared",
        "beta",
        "alpha",
        count,
        barrier.path(),
    );
    assert_worker_succeeded(first.wait_with_output().unwrap(), 2 * count);
    assert_worker_succeeded(second.wait_with_output().unwrap(), 2 * count);

    // And this process, a third one, sees exactly both sets.
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let cache = coordinator
        .get_shared_cache_instance(root.path(), "shared", CacheOptions::default())
        .unwrap();
    for writer in ["alpha", "beta"] {
        for index in 0..count {
            assert_eq!(
                cache.get(&worker_key(writer, index)).unwrap(),
                Some(worker_value(writer, index))
            );
        }
    }
    let stats = cache.get_stats().unwrap();
    assert_eq!(stats.entries, 2 * count as u64);
    assert_eq!(
        stats.lifetime.sets,
        2 * count as u64,
        "both processes' counters were merged into the file"
    );
}

#[test]
fn four_writer_processes_on_one_tag_lose_nothing() {
    // Two pairs of workers, each pair meeting at its own barrier, all four writing at once:
    // every commit of each waits for the others' at the file's lock.
    let count = 3000;
    let root = tempfile::tempdir().unwrap();
    let barrier = tempfile::tempdir().unwrap();
    let pairs = [
        ("alpha", "beta"),
        ("beta", "alpha"),
        ("gamma", "delta"),
        ("delta", "gamma"),
    ];
    let workers: Vec<_> = pairs
        .iter()
        .map(|(me, other)| spawn_worker(root.path(), "shared", me, other, count, barrier.path()))
        .collect();
    for worker in workers {
        assert_worker_succeeded(worker.wait_with_output().unwrap(), 2 * count);
    }

    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let cache = coordinator
        .get_shared_cache_instance(root.path(), "shared", CacheOptions::default())
        .unwrap();
    for (writer, _) in pairs {
        for index in 0..count {
            assert_eq!(
                cache.get(&worker_key(writer, index)).unwrap(),
                Some(worker_value(writer, index)),
                "{writer} #{index}"
            );
        }
    }
    let stats = cache.get_stats().unwrap();
    assert_eq!(stats.entries, 4 * count as u64);
    assert_eq!(stats.lifetime.sets, 4 * count as u64);
}

#[rstest]
fn processes_on_different_tags_of_one_root_stay_isolated() {
    let root = tempfile::tempdir().unwrap();
    let barrier = tempfile::tempdir().unwrap();
    // Each worker pairs with a partner on the same tag, so four processes run at once.
    let workers = [
        spawn_worker(root.path(), "layout", "l1", "l2", 30, barrier.path()),
        spawn_worker(root.path(), "layout", "l2", "l1", 30, barrier.path()),
        spawn_worker(root.path(), "metrics", "m1", "m2", 30, barrier.path()),
        spawn_worker(root.path(), "metrics", "m2", "m1", 30, barrier.path()),
    ];
    for worker in workers {
        assert_worker_succeeded(worker.wait_with_output().unwrap(), 60);
    }
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let layout = coordinator
        .get_shared_cache_instance(root.path(), "layout", CacheOptions::default())
        .unwrap();
    let metrics = coordinator
        .get_shared_cache_instance(root.path(), "metrics", CacheOptions::default())
        .unwrap();
    assert_eq!(layout.keys().unwrap().len(), 60);
    assert_eq!(metrics.keys().unwrap().len(), 60);
    assert_eq!(layout.get(&worker_key("m1", 0)).unwrap(), None);
}

/// Issue 15: processes that only read commit nothing (no commit thread, no commit at close),
/// yet their reads count: four reader processes at once leave their reads and counters in the
/// tag's `reads` file (concurrent appends), every later process sees them in `get_metadata` and
/// the lifetime counters, and the next writer folds them in exactly once.
#[test]
fn reads_of_processes_that_only_read_count_once_after_a_writer_folds_them_in() {
    const COUNT: usize = 40;
    const ROUNDS: usize = 3;
    const READERS: usize = 4;
    let root = tempfile::tempdir().unwrap();
    let open = |coordinator: &Coordinator| {
        coordinator
            .get_shared_cache_instance(root.path(), "reads", CacheOptions::default())
            .unwrap()
    };
    {
        let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
        let cache = open(&coordinator);
        for index in 0..COUNT {
            cache
                .set(&worker_key("w", index), &worker_value("w", index), None)
                .unwrap();
        }
        drop(cache);
        coordinator.reset().unwrap();
    }
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            Command::new(WORKER)
                .arg("only-read")
                .arg(root.path())
                .args(["reads", "w", &COUNT.to_string(), &ROUNDS.to_string()])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn cache-worker")
        })
        .collect();
    for reader in readers {
        let output = reader.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "reader failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            format!("hits {}", COUNT * ROUNDS)
        );
    }
    let reads_file = root.path().join("reads").join("reads");
    assert!(reads_file.exists(), "the readers left their reads");

    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let cache = open(&coordinator);
    let seen = |cache: &cache_core::Cache| {
        (
            cache
                .get_metadata(&worker_key("w", 7))
                .unwrap()
                .unwrap()
                .access_count,
            cache.get_stats().unwrap().lifetime.hits,
        )
    };
    let expected = ((READERS * ROUNDS) as u64, (READERS * COUNT * ROUNDS) as u64);
    assert_eq!(
        seen(&cache),
        expected,
        "seen before any writer folds them in"
    );
    cache.set(b"fold", b"now", None).unwrap();
    cache.flush().unwrap();
    assert!(!reads_file.exists(), "folded in by the commit");
    assert_eq!(seen(&cache), expected, "counted once");
    drop(cache);
    coordinator.reset().unwrap();
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    assert_eq!(seen(&open(&coordinator)), expected, "persisted");
}
