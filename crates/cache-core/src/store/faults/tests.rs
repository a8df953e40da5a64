//! The deterministic in-process fault suite: a seeded script of cache operations run against a
//! `BTreeMap` model while [`FaultBackend`](super::FaultBackend) fails the file's writes or syncs
//! at one position, swept over every position the script reaches.
//!
//! What is checked, after every operation (the contract in `docs/caching-system.md`, "Ordering
//! rules" and "What a caller may rely on"):
//!
//! - an operation that returned `Ok` is visible to every later read of the process;
//! - an operation that returned an error leaves each key it touched at its old or its new value,
//!   never a third one, never a damaged entry, and nothing panics;
//! - after `flush()` returned `Ok`, the file is durable: a copy of the tag directory taken at
//!   that moment (what a kill -9 would leave) opens, without the fault, to exactly what the
//!   process reads;
//! - an operation fails only if the fault failed a call during it: a handle an earlier failure
//!   latched is replaced by the operation that finds it, without failing it, once the file
//!   works again;
//! - at the end (fault cleared): the cache commits again, and after `close()` and a fresh open
//!   without the fault every key holds a modelled value, every blob an entry refers to exists,
//!   and `cleanup()` leaves exactly the referenced blob files (no orphan, no temp file).
//!
//! The cases: (a) one failed write (a commit that fails part way), (b) one failed `sync_data`
//! (a commit whose data may or may not have reached the file), (c) a latched device error
//! (every read, write and sync fails from the countdown on) that is cleared a few operations
//! later, after which the cache must replace its handle (`handle.rs`, `reopen_if_latched`) and
//! go on with acknowledged writes intact.
//!
//! Deterministic: the script comes from a fixed seed, time from a `ManualClock`, and the commit
//! thread never wakes (a `commit_interval` of an hour), so the file sees the same calls in the
//! same order on every run and a countdown position means the same call each time. The sweep
//! covers every position by default; `CACHE_FAULT_SWEEP_STRIDE=<n>` tests every n-th only,
//! `CACHE_FAULT_SWEEP_SEEDS=<n>` runs n scripts instead of one and
//! `CACHE_FAULT_SWEEP_FIRST_SEED=<s>` starts at another seed (for long or `--release` runs). A
//! failure message names the case, seed, position and operation; the seed, given as the first,
//! replays it.

use super::run::*;
use super::script::*;
use super::{FaultPlan, Persistence, inject};
use redb::StorageBackend as _;

/// Case (a): a commit whose write fails part way, at every write of the script.
#[test]
fn fault_suite_a_failed_write_at_every_position_keeps_the_model() {
    sweep(Case::FailedWrite);
}

/// Case (b): a commit whose `sync_data` fails, at every sync of the script.
#[test]
fn fault_suite_b_failed_sync_at_every_position_keeps_the_model() {
    sweep(Case::FailedSync);
}

/// Case (c): a latched device error from a write on, cleared later: the cache replaces its
/// handle and goes on, acknowledged writes intact.
#[test]
fn fault_suite_c_latched_error_from_a_write_then_cleared_keeps_the_model() {
    sweep(Case::LatchedWrite);
}

/// Case (c), starting at a sync instead of a write.
#[test]
fn fault_suite_c_latched_error_from_a_sync_then_cleared_keeps_the_model() {
    sweep(Case::LatchedSync);
}

/// A commit that meets a handle an earlier I/O error latched, once the device works again,
/// replaces the handle and commits on the new one, as a read does (`read.rs`,
/// `current_snapshot`). Before, that commit failed ("previous I/O error") and only the one
/// after it succeeded: the first write after the disk recovered failed for nothing.
#[test]
fn fault_a_commit_after_the_device_recovered_succeeds_on_a_new_handle() {
    let mut run = Run::start("recovered device".to_owned());
    run.begin_op();
    run.apply(&Op::Set(key(1), b"before the fault".to_vec()));
    run.apply(&Op::Flush);
    run.fault().arm(FaultPlan {
        writes_before_failure: Some(0),
        syncs_before_failure: None,
        persistence: Persistence::Latched,
    });
    run.cache().set(&key(2), b"while failing", None).unwrap();
    assert!(
        run.cache().flush().is_err(),
        "the device fails: the commit must fail"
    );
    assert!(
        run.cache().flush().is_err(),
        "still failing: the reopen fails too"
    );
    run.fault().clear();
    run.cache()
        .flush()
        .expect("the device works again: the commit replaces the latched handle and lands");
    run.model
        .acknowledged(&key(2), Some(b"while failing".to_vec()));
    run.check_durable();
    run.finish();
}

/// A listing or the statistics, with nothing buffered to commit, once the device works again
/// after a latched error whose reopen failed: they read from a fresh transaction, which on the
/// latched handle failed ("previous I/O error") although the disk worked, until some commit
/// replaced the handle. Found by the sweep with more seeds (a failed `clear()` and then
/// `keys()`).
#[test]
fn fault_a_listing_after_the_device_recovered_reads_from_a_new_handle() {
    let mut run = Run::start("recovered device, listing".to_owned());
    run.begin_op();
    run.apply(&Op::Set(key(1), b"kept".to_vec()));
    run.apply(&Op::Flush);
    run.fault().arm(FaultPlan {
        writes_before_failure: Some(0),
        syncs_before_failure: None,
        persistence: Persistence::Latched,
    });
    assert!(
        run.cache().clear().is_err(),
        "the device fails: clear must fail"
    );
    run.model.failed(&key(1), None);
    run.fault().clear();
    let listed = run
        .cache()
        .keys()
        .expect("the device works again: the listing reads from a new handle");
    assert_eq!(
        listed,
        vec![key(1)],
        "clear failed, so its entry is still there"
    );
    run.cache()
        .get_stats()
        .expect("the device works again: the statistics read from a new handle");
    run.finish();
}

/// A commit that fails after it took the reads file (what processes that only read left)
/// appends what it took back to the file, so that the next commit merges those reads before
/// its writes again: a read of the value the failed commit was replacing does not count for
/// the new value, and a read of a value still there counts once. Before, the failed commit
/// gave the reads to the access log, whose reads are merged after the writes: the old value's
/// read counted for the new one.
#[test]
fn fault_a_failed_commit_gives_back_the_reads_other_processes_left() {
    let mut run = Run::start("failed commit, reads file".to_owned());
    run.begin_op();
    run.apply(&Op::Set(key(1), b"old".to_vec()));
    run.apply(&Op::Set(key(2), b"kept".to_vec()));
    run.apply(&Op::Flush);
    let read = super::super::buffer::AccessDelta {
        last_ms: 5,
        count: 1,
    };
    run.cache().leave_reads_of(&[&key(1), &key(2)], read);
    let count = |run: &Run, k: &[u8]| {
        let metadata = run.cache().get_metadata(k).unwrap().unwrap();
        metadata.access_count
    };
    // The harness reads every key after each operation: this process's reads, and the one
    // in the reads file.
    let kept_reads = count(&run, &key(2));
    assert!(kept_reads > 1, "{kept_reads}");
    run.fault().arm(FaultPlan {
        writes_before_failure: Some(0),
        syncs_before_failure: None,
        persistence: Persistence::Once,
    });
    run.cache().set(&key(1), b"new", None).unwrap();
    run.model.acknowledged(&key(1), Some(b"new".to_vec()));
    assert!(
        run.cache().flush().is_err(),
        "the commit's first write fails"
    );
    let reads_file = run
        .cache()
        .tag_dir()
        .join(super::super::reads_file::READS_FILE_NAME);
    assert!(reads_file.exists(), "the failed commit gave the reads back");
    run.cache()
        .flush()
        .expect("the device works again: the commit lands");
    assert!(!reads_file.exists(), "the commit folded them in");
    assert_eq!(count(&run, &key(1)), 0, "the new value has not been read");
    assert_eq!(
        count(&run, &key(2)),
        kept_reads,
        "the kept value's reads count once each"
    );
    run.check_durable();
    run.finish();
}

/// The backend itself: a countdown lets that many calls through, fails the next, and then
/// (once) lets calls through again or (latched) fails everything until cleared.
#[test]
fn fault_backend_fails_on_its_countdown_once_or_latched() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("file");
    std::fs::write(&path, b"").unwrap();
    let injection = inject(&path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let backend =
        super::FaultBackend::for_path(&path, redb::backends::FileBackend::new(file).unwrap());
    injection.fault.arm(FaultPlan {
        writes_before_failure: Some(2),
        syncs_before_failure: Some(0),
        persistence: Persistence::Once,
    });
    assert!(backend.write(0, b"a").is_ok());
    assert!(backend.write(1, b"b").is_ok());
    assert!(backend.write(2, b"c").is_err());
    assert!(
        backend.write(2, b"c").is_ok(),
        "a single fault fails one call"
    );
    assert!(backend.sync_data().is_err());
    assert!(backend.sync_data().is_ok());
    let mut out = [0u8; 3];
    backend.read(0, &mut out).unwrap();
    assert_eq!(&out, b"abc");

    injection.fault.arm(FaultPlan {
        writes_before_failure: Some(0),
        syncs_before_failure: None,
        persistence: Persistence::Latched,
    });
    assert!(backend.write(3, b"d").is_err());
    assert!(
        backend.sync_data().is_err(),
        "a latched fault fails syncs too"
    );
    assert!(backend.read(0, &mut out).is_err(), "and reads");
    assert_eq!(injection.fault.injected(), 5);
    injection.fault.clear();
    assert!(backend.write(3, b"d").is_ok());
    assert!(backend.read(0, &mut out).is_ok());
    assert_eq!(
        (injection.fault.writes_seen(), injection.fault.syncs_seen()),
        (6, 3)
    );

    let elsewhere = temp.path().join("other");
    std::fs::write(&elsewhere, b"").unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&elsewhere)
        .unwrap();
    let untouched =
        super::FaultBackend::for_path(&elsewhere, redb::backends::FileBackend::new(file).unwrap());
    injection.fault.arm(FaultPlan {
        writes_before_failure: Some(0),
        syncs_before_failure: Some(0),
        persistence: Persistence::Latched,
    });
    assert!(
        untouched.write(0, b"x").is_ok(),
        "a fault is armed for its own path only"
    );
    assert!(untouched.sync_data().is_ok());
}
