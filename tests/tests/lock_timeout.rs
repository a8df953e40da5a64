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

// ---------------------------------------------------------------------------------------------
// Issue 13, item 10: every open (and every read behind a commit) is bounded by `timeout`.

/// The longest a test waits for a child before calling it hung: a bound on a hang, not a timing
/// the test depends on (the children's own timeout is 300 ms).
const HANG: Duration = Duration::from_secs(60);

/// A child process stopped with SIGSTOP; dropping it resumes and kills it, whatever the test did.
struct Stopped(std::process::Child);

impl Stopped {
    fn stop(child: std::process::Child) -> Stopped {
        signal("-STOP", child.id());
        Stopped(child)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal("-CONT", self.0.id());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .arg(which)
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill {which} {pid}");
}

/// Starts `args` of the worker with stdout piped and waits for its first line, `expected`.
fn start_holder(args: &[&str], expected: &str) -> std::process::Child {
    let mut holder = Command::new(WORKER)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), expected, "the holder's first line");
    holder
}

/// Waits for `child` at most [`HANG`]; a child still running then is killed and the test fails.
/// Returns its stdout lines.
fn lines_of(mut child: std::process::Child, what: &str) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map(|line| line.unwrap())
            .collect::<Vec<String>>()
    });
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still waited after {HANG:?}: an unbounded wait");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    reader.join().unwrap()
}

/// A tag with one entry, closed; its database file.
fn existing_tag(root: &std::path::Path, tag: &str) -> std::path::PathBuf {
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let cache = coordinator
        .get_shared_cache_instance(root, tag, CacheOptions::default())
        .unwrap();
    cache.set(b"k", b"v", None).unwrap();
    let path = cache.database_path().unwrap().to_path_buf();
    coordinator.reset().unwrap();
    path
}

/// An open behind a writer stopped while it holds the write lock (not mid-commit): the open is
/// read-only until the first write, so it needs no lock the writer holds, and the open, a read
/// of the last committed state and the close go on without waiting. (Before, the open waited
/// forever; then it timed out.) A write behind the lock still times out:
/// `a_write_lock_held_past_timeout_is_a_clear_error_and_loses_nothing`.
#[test]
fn trust_10_an_open_and_a_read_behind_a_stopped_writer_go_on_without_waiting() {
    let root = tempfile::tempdir().unwrap();
    let database = existing_tag(root.path(), "stopped");
    let holder = start_holder(&["hold-write-lock", database.to_str().unwrap()], "locked");
    let _stopped = Stopped::stop(holder);

    let opener = Command::new(WORKER)
        .args([
            "open-and-read",
            root.path().to_str().unwrap(),
            "stopped",
            "300",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let lines = lines_of(opener, "an open behind a stopped writer");
    assert_eq!(
        lines,
        ["open ok", "read ok 1", "close ok"],
        "open, read and close go on behind the stopped writer"
    );
}

#[test]
fn trust_10_a_read_behind_a_writer_stopped_mid_commit_times_out() {
    let root = tempfile::tempdir().unwrap();
    let database = existing_tag(root.path(), "midcommit");
    // Opened before the holder stops mid-commit: the open is not what waits, the read is.
    let mut reader = Command::new(WORKER)
        .args([
            "open-and-read",
            root.path().to_str().unwrap(),
            "midcommit",
            "300",
            "wait",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut reader_out = BufReader::new(reader.stdout.take().unwrap());
    let mut line = String::new();
    reader_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "open ok");

    let holder = start_holder(&["hold-mid-commit", database.to_str().unwrap()], "holding");
    let _stopped = Stopped::stop(holder);

    std::io::Write::write_all(reader.stdin.as_mut().unwrap(), b"go\n").unwrap();
    reader.stdout = Some(reader_out.into_inner());
    let lines = lines_of(reader, "a read behind a writer stopped mid-commit");
    let read = lines.first().map(String::as_str).unwrap_or_default();
    assert!(
        read.starts_with("read error LockTimeout "),
        "the read gives up with LockTimeout: {lines:?}"
    );
    assert!(
        read.contains("'midcommit'") && read.contains(database.to_str().unwrap()),
        "the error names the tag and the file: {read}"
    );
}
