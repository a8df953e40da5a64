//! Single-flight computation across real processes: three processes asking for one key compute
//! it once; a waiter takes the lease over from an owner killed with SIGKILL; a failed
//! computation in another process wakes the waiter, who retries or returns the error; and a
//! waiter gives up at its timeout naming the key and the owner's pid.
//!
//! The workers are `cache-worker compute` processes. Ordering between processes goes through
//! files (a worker records its call, its computation waits until every caller has called) and
//! through this process's own `waits` counter, never through sleeps.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cache_core::{Cache, CacheError, CacheOptions, Coordinator, Environment};
use cache_tests::{append_line, computed_value, lines_of, until_lines};
use rstest::rstest;

const WORKER: &str = env!("CARGO_BIN_EXE_cache-worker");
const TAG: &str = "flight";
const KEY: &str = "firmware:glove80";
/// Long enough for anything the test does meanwhile; the worker is killed or released first.
const HOLD_FOREVER_MS: &str = "600000";

/// The files a flight's processes record in.
struct Records {
    dir: tempfile::TempDir,
}

impl Records {
    fn new() -> Self {
        Records {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// One line per computation: the pid that ran it.
    fn computations(&self) -> std::path::PathBuf {
        self.dir.path().join("computations")
    }

    /// One line per caller that has asked for the key.
    fn calls(&self) -> std::path::PathBuf {
        self.dir.path().join("calls")
    }
}

fn spawn_compute(
    root: &Path,
    records: &Records,
    callers: usize,
    hold_ms: &str,
    outcome: &str,
) -> Child {
    Command::new(WORKER)
        .arg("compute")
        .arg(root)
        .args([TAG, KEY])
        .arg(records.computations())
        .arg(records.calls())
        .args([&callers.to_string(), hold_ms, outcome])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cache-worker")
}

/// The worker's `value` and `counters` lines, after checking that it succeeded.
fn worker_report(output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "worker failed: {}\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in {stdout:?}"))
            .to_owned()
    };
    (line("value "), line("counters "))
}

/// This process's view of the root, waiting at most `timeout` and retrying `flight_retries`.
fn open_here(root: &Path, timeout: Duration, flight_retries: u32) -> (Coordinator, Cache) {
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let options = CacheOptions {
        timeout,
        flight_retries,
        ..CacheOptions::default()
    };
    let cache = coordinator
        .get_shared_cache_instance(root, TAG, options)
        .unwrap();
    (coordinator, cache)
}

/// Blocks until this process has a caller waiting for another process's computation. Waits for
/// that event, not for a duration: the bound only ends a broken test.
fn until_waiting(cache: &Cache) {
    let bound = Instant::now() + Duration::from_secs(60);
    while cache.get_stats().unwrap().counters.waits == 0 && Instant::now() < bound {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        cache.get_stats().unwrap().counters.waits,
        1,
        "a caller here is waiting"
    );
}

#[test]
fn three_processes_asking_for_one_key_compute_it_once() {
    let root = tempfile::tempdir().unwrap();
    let records = Records::new();
    // Whoever computes holds until all three have asked, and a moment more, so that the others
    // ask while the computation runs.
    let workers: Vec<Child> = (0..3)
        .map(|_| spawn_compute(root.path(), &records, 3, "300", "ok"))
        .collect();
    let reports: Vec<(String, String)> = workers
        .into_iter()
        .map(|worker| worker_report(&worker.wait_with_output().unwrap()))
        .collect();

    let computations = lines_of(&records.computations());
    assert_eq!(
        computations.len(),
        1,
        "one process computed: {computations:?}"
    );
    let computer: u32 = computations[0].parse().unwrap();
    for (value, _) in &reports {
        assert_eq!(
            value,
            &computed_value(computer),
            "every process got the one value"
        );
    }
    let computed_here = reports
        .iter()
        .filter(|(_, counters)| counters.starts_with("computations=1 "))
        .count();
    assert_eq!(computed_here, 1, "{reports:?}");
    assert!(
        reports
            .iter()
            .all(|(_, counters)| counters.ends_with("takeovers=0")),
        "nobody died, nothing was taken over: {reports:?}"
    );
}

#[test]
fn a_waiter_takes_over_from_an_owner_killed_mid_computation() {
    let root = tempfile::tempdir().unwrap();
    let records = Records::new();
    let mut owner = spawn_compute(root.path(), &records, 1, HOLD_FOREVER_MS, "ok");
    until_lines(&records.computations(), 1, Duration::from_secs(60)).unwrap();

    let (coordinator, cache) = open_here(root.path(), Duration::from_secs(60), 1);
    let me = std::process::id();
    let value = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            cache.get_or_compute(KEY.as_bytes(), None, || {
                append_line(&records.computations(), &me.to_string()).unwrap();
                Ok::<_, CacheError>(computed_value(me).into_bytes())
            })
        });
        until_waiting(&cache);
        // SIGKILL: no destructor, no release; the lease stays in the file, owned by a dead pid.
        owner.kill().unwrap();
        owner.wait().unwrap();
        waiter.join().unwrap()
    });

    assert_eq!(value.unwrap(), computed_value(me).into_bytes());
    assert_eq!(
        lines_of(&records.computations()),
        vec![owner.id().to_string(), me.to_string()],
        "the killed owner started, the waiter completed"
    );
    let counters = cache.get_stats().unwrap().counters;
    assert_eq!(counters.takeovers, 1);
    assert_eq!(counters.computations, 1);
    coordinator.reset().unwrap();

    // The lease was released: a later process finds the value and computes nothing.
    let later = spawn_compute(root.path(), &records, 1, "0", "ok");
    let (value, counters) = worker_report(&later.wait_with_output().unwrap());
    assert_eq!(value, computed_value(me));
    assert!(counters.starts_with("computations=0 waits=0"), "{counters}");
}

#[rstest]
#[case::retried(1)]
#[case::not_retried(0)]
fn a_computation_failing_in_another_process_wakes_the_waiter(#[case] flight_retries: u32) {
    let root = tempfile::tempdir().unwrap();
    let records = Records::new();
    // The owner fails once two callers have asked: itself, and this process once it waits.
    let owner = spawn_compute(root.path(), &records, 2, "0", "fail");
    until_lines(&records.computations(), 1, Duration::from_secs(60)).unwrap();

    let (coordinator, cache) = open_here(root.path(), Duration::from_secs(60), flight_retries);
    let me = std::process::id();
    let result = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            cache.get_or_compute(KEY.as_bytes(), None, || {
                append_line(&records.computations(), &me.to_string()).unwrap();
                Ok::<_, CacheError>(computed_value(me).into_bytes())
            })
        });
        until_waiting(&cache);
        append_line(&records.calls(), &me.to_string()).unwrap();
        waiter.join().unwrap()
    });

    let output = owner.wait_with_output().unwrap();
    assert!(!output.status.success(), "the owner's computation failed");
    let owner_pid = output_pid(&records);
    if flight_retries == 1 {
        assert_eq!(result.unwrap(), computed_value(me).into_bytes());
        assert_eq!(
            lines_of(&records.computations()),
            vec![owner_pid.to_string(), me.to_string()],
            "the waiter retried and computed"
        );
    } else {
        let err = result.unwrap_err();
        assert!(
            matches!(err, CacheError::ComputationFailed { owner_pid: pid, .. } if pid == owner_pid),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "computing key \"{KEY}\" in tag '{TAG}' failed in process {owner_pid}: \
                 the computation of process {owner_pid} failed as asked"
            )
        );
        assert_eq!(lines_of(&records.computations()).len(), 1, "nobody retried");
    }
    coordinator.reset().unwrap();
}

/// The pid of the first computation recorded.
fn output_pid(records: &Records) -> u32 {
    lines_of(&records.computations())[0].parse().unwrap()
}

#[test]
fn a_waiter_past_its_timeout_gets_an_error_naming_key_and_owner() {
    let root = tempfile::tempdir().unwrap();
    let records = Records::new();
    let mut owner = spawn_compute(root.path(), &records, 1, HOLD_FOREVER_MS, "ok");
    until_lines(&records.computations(), 1, Duration::from_secs(60)).unwrap();

    let (coordinator, cache) = open_here(root.path(), Duration::from_millis(300), 1);
    let err = cache
        .get_or_compute(KEY.as_bytes(), None, || -> Result<Vec<u8>, CacheError> {
            panic!("the owner is alive: this process must not compute")
        })
        .unwrap_err();
    owner.kill().unwrap();
    owner.wait().unwrap();

    assert!(
        matches!(err, CacheError::FlightTimeout { owner_pid, .. } if owner_pid == owner.id()),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.ends_with(&format!(
            "waiting for process {} to compute key \"{KEY}\" in tag '{TAG}'",
            owner.id()
        )),
        "{message}"
    );
    coordinator.reset().unwrap();
}
