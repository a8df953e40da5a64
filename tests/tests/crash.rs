//! kill -9 while writing: the file stays consistent, every entry flushed before the kill reads
//! back exactly, and no entry ever reads back wrong. The first tests kill at known flush points;
//! the last kills a scripted writer at random moments, many times over one root.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cache_core::{CacheOptions, Coordinator, Environment};
use cache_tests::{
    CrashOp, SeededRng, apply_crash_op, check_stamped, crash_script, size_from_env, worker_key,
    worker_value,
};
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

/// Opens the file with redb directly, as a second opener after the kill would, and runs redb's
/// own integrity check (every page checksum of the committed trees, and the allocator state).
/// `Ok(false)` would mean redb found damage and repaired it: also a failure here.
fn assert_redb_integrity(database: &Path) {
    let mut handle = redb::Database::builder()
        .set_concurrency_mode(redb::ConcurrencyMode::MultiWriter)
        .create(database)
        .expect("redb opens the file after a kill -9");
    assert!(
        handle
            .check_integrity()
            .expect("redb's integrity check runs"),
        "redb's integrity check found damage in {}",
        database.display()
    );
}

/// Every entry of the tag, read through a fresh coordinator; each value must be stamped for the
/// key it is stored under.
fn read_all(root: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let cache = coordinator
        .get_shared_cache_instance(root, "crash", CacheOptions::default())
        .expect("the cache opens after a kill -9");
    let mut entries = BTreeMap::new();
    for key in cache.keys().unwrap() {
        let value = cache.get(&key).unwrap().expect("a listed key reads back");
        if let Err(wrong) = check_stamped(&key, &value) {
            panic!("a value reads back wrong after a kill -9: {wrong}");
        }
        entries.insert(key, value);
    }
    coordinator.reset().unwrap();
    entries
}

/// What one killed round left: how many operations it had flushed, and the prefix of its script
/// the file holds.
struct Round {
    flushed: usize,
    survived_prefix: usize,
}

/// Runs the crash writer with `seed` on `root`, kills it after `delay`, and checks that the file
/// holds `base` plus exactly a prefix of the writer's script that includes every flushed
/// operation. Returns the new state and what the round showed.
fn kill_round(
    root: &Path,
    base: &BTreeMap<Vec<u8>, Vec<u8>>,
    seed: u64,
    delay: Duration,
) -> (BTreeMap<Vec<u8>, Vec<u8>>, Round) {
    const FLUSH_EVERY: usize = 25;
    const KEYS: u64 = 300;
    let mut child = Command::new(WORKER)
        .arg("crash-writer")
        .arg(root)
        .args([
            "crash",
            &seed.to_string(),
            &FLUSH_EVERY.to_string(),
            &KEYS.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cache-worker");
    std::thread::sleep(delay);
    child.kill().expect("kill the worker");
    let output = child.wait_with_output().expect("reap the worker");
    assert_eq!(
        output.status.signal(),
        Some(9),
        "seed {seed}: the worker ended before the kill: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // Every line reached the pipe before the kill; the last one counts.
    let flushed = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("flushed ")?.parse::<usize>().ok())
        .next_back()
        .unwrap_or(0);

    let database = root.join("crash").join(cache_core::DATABASE_FILE_NAME);
    if database.exists() {
        assert_redb_integrity(&database);
    }
    let found = read_all(root);

    // The file must hold the state after some prefix of the script: at least the flushed
    // operations, and at most those before the next flush returned (the worker runs no
    // operation between a flush and its report).
    let script: Vec<CrashOp> = crash_script(seed, KEYS)
        .take(flushed + FLUSH_EVERY)
        .collect();
    let mut model = base.clone();
    for op in &script[..flushed] {
        apply_crash_op(&mut model, *op);
    }
    let mut prefix = flushed;
    while model != found {
        assert!(
            prefix < script.len(),
            "seed {seed}, killed after {delay:?}: the file holds no prefix of the script between \
             operation {flushed} (flushed) and {}: {} entries found, {} expected at {flushed}",
            script.len(),
            found.len(),
            {
                let mut at_flush = base.clone();
                script[..flushed]
                    .iter()
                    .for_each(|op| apply_crash_op(&mut at_flush, *op));
                at_flush.len()
            }
        );
        apply_crash_op(&mut model, script[prefix]);
        prefix += 1;
    }
    (
        found,
        Round {
            flushed,
            survived_prefix: prefix,
        },
    )
}

/// SIGKILL at random moments (during start-up, open, writes, commits, cleanups, clears), many
/// times over one root: after each kill the file passes redb's integrity check, opens, holds every
/// flushed write, and holds exactly the state after some prefix of the writer's operations, so no
/// entry reads back wrong. `CACHE_CRASH_KILLS` sets the number of kills (`CACHE_SOAK=1`: 60).
#[test]
fn random_kills_lose_nothing_flushed_and_never_tear_the_state() {
    let kills = size_from_env("CACHE_CRASH_KILLS", 20, 60).unwrap();
    let base_seed = size_from_env("CACHE_CRASH_SEED", 0x5EED, 0x5EED).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut state = BTreeMap::new();
    let mut delays = SeededRng::new(base_seed);
    let (mut flushed_total, mut unflushed_kept, mut before_first_flush) = (0, 0, 0);
    for round in 0..kills {
        let seed = base_seed + round + 1;
        // Up to 250 ms: some kills land before the open finishes, most while writing.
        let delay = Duration::from_millis(delays.below(250));
        let (found, outcome) = kill_round(root.path(), &state, seed, delay);
        flushed_total += outcome.flushed;
        unflushed_kept += outcome.survived_prefix - outcome.flushed;
        before_first_flush += usize::from(outcome.flushed == 0);
        state = found;
    }
    eprintln!(
        "crash: {kills} SIGKILLs survived (seeds {}..={}), {flushed_total} flushed operations all \
         kept, {unflushed_kept} unflushed operations kept as whole prefixes, {before_first_flush} \
         kills before the first flush, {} entries at the end, 0 lost, 0 wrong, integrity ok",
        base_seed + 1,
        base_seed + kills,
        state.len()
    );
}
