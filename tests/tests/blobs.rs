//! Blobs across processes: two processes storing the same large value at the same moment end
//! with one blob file, and both entries read back; readers racing a writer that deletes and
//! stores the same blob values again never remove the fresh entries.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cache_core::{CacheOptions, Coordinator, Environment};
use cache_tests::{blob_value, size_from_env};

const WORKER: &str = env!("CARGO_BIN_EXE_cache-worker");

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn two_processes_storing_the_same_blob_at_once_share_one_file() {
    const LEN: usize = 3 * 1024 * 1024;
    for round in 0..3 {
        let root = tempfile::tempdir().unwrap();
        let barrier = tempfile::tempdir().unwrap();
        let spawn = |me: &str, other: &str| {
            Command::new(WORKER)
                .arg("same-blob")
                .arg(root.path())
                .args(["firmware", me, other, &LEN.to_string()])
                .arg(barrier.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let workers = [spawn("alpha", "beta"), spawn("beta", "alpha")];
        for worker in workers {
            let output = worker.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success() && stdout.trim() == "read 2",
                "round {round}: {}\nstdout: {stdout}\nstderr: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let blobs_dir = root.path().join("firmware/blobs");
        let blobs: Vec<PathBuf> = files_under(&blobs_dir)
            .into_iter()
            .filter(|path| !path.starts_with(blobs_dir.join("tmp")))
            .collect();
        assert_eq!(blobs.len(), 1, "round {round}: {blobs:?}");
        assert_eq!(std::fs::metadata(&blobs[0]).unwrap().len(), LEN as u64);
        assert!(
            files_under(&blobs_dir.join("tmp")).is_empty(),
            "no temp file left behind"
        );

        let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
        let cache = coordinator
            .get_shared_cache_instance(root.path(), "firmware", CacheOptions::default())
            .unwrap();
        let expected: Vec<u8> = (0..LEN).map(|index| (index % 251) as u8).collect();
        for key in [&b"blob:alpha"[..], b"blob:beta"] {
            assert_eq!(
                cache.get(key).unwrap().as_deref(),
                Some(expected.as_slice())
            );
        }
        // Deleting one entry keeps the shared blob for the other.
        cache.delete(b"blob:alpha").unwrap();
        cache.flush().unwrap();
        assert_eq!(
            cache.get(b"blob:beta").unwrap().as_deref(),
            Some(expected.as_slice())
        );
        coordinator.reset().unwrap();
    }
}

/// Item 3 of issue 13: four reader processes read a writer's blob entries in a loop while the
/// writer deletes them all and stores them again with the same content (so the same blob file,
/// named by its hash), round after round. A reader whose snapshot still showed an entry whose
/// blob had just been removed used to treat the missing file as damage and remove "the entry if
/// it still refers to that blob": the fresh entry, stored again since with the same hash. Reads
/// never write now, so every entry the writer stored and flushed is there until the writer
/// deletes it (it looks before each round's deletes), and every one it stored last is there
/// afterwards.
/// `CACHE_RESTORE_ROUNDS` sets the rounds (default 15, `CACHE_SOAK=1`: 60).
#[test]
fn trust_03_readers_never_remove_an_entry_stored_again_with_the_same_blob() {
    const KEYS: u64 = 40;
    const LEN: usize = 4096;
    const READERS: usize = 4;
    // Passes each reader makes after the writer is done: reads from snapshots taken during the
    // writer's last round included.
    const PASSES_AFTER: u64 = 3;
    let rounds = size_from_env("CACHE_RESTORE_ROUNDS", 15, 60).unwrap();
    let root = tempfile::tempdir().unwrap();
    let markers = tempfile::tempdir().unwrap();
    let done = markers.path().join("done");
    let spawn = |arguments: &[String]| {
        Command::new(WORKER)
            .args(arguments)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let root_arg = root.path().display().to_string();
    let done_arg = done.display().to_string();
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            spawn(&[
                "blob-reader".into(),
                root_arg.clone(),
                "restore".into(),
                KEYS.to_string(),
                LEN.to_string(),
                done_arg.clone(),
                PASSES_AFTER.to_string(),
            ])
        })
        .collect();
    let writer = spawn(&[
        "blob-restorer".into(),
        root_arg.clone(),
        "restore".into(),
        KEYS.to_string(),
        LEN.to_string(),
        rounds.to_string(),
        done_arg,
    ]);
    let output = writer.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the writer failed: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // Entries of earlier rounds that were gone when the writer looked, before its next deletes.
    let vanished_earlier: Vec<u64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(" missing ")?.1.parse().ok())
        .collect();
    assert_eq!(
        vanished_earlier.len() as u64,
        rounds - 1,
        "one report per round"
    );
    let vanished_earlier: u64 = vanished_earlier.iter().sum();
    let (mut reads, mut hits) = (0u64, 0u64);
    for reader in readers {
        let output = reader.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "a reader failed (a value read back wrong, or an error): {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let counts: Vec<u64> = stdout
            .split_whitespace()
            .filter_map(|word| word.parse().ok())
            .collect();
        let [reader_reads, reader_hits] = counts[..] else {
            panic!("a reader's report is not `reads N hits N`: {stdout:?}");
        };
        reads += reader_reads;
        hits += reader_hits;
    }

    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
    let cache = coordinator
        .get_shared_cache_instance(root.path(), "restore", CacheOptions::default())
        .unwrap();
    let listed = cache.keys().unwrap();
    let mut vanished = Vec::new();
    for index in 0..KEYS {
        let key = format!("restore:{index:03}").into_bytes();
        match cache.get(&key).unwrap() {
            Some(value) => assert_eq!(value, blob_value(&key, "restorer", 0, LEN)),
            None => vanished.push(String::from_utf8_lossy(&key).into_owned()),
        }
    }
    coordinator.reset().unwrap();
    eprintln!(
        "blobs: {READERS} readers ({reads} reads, {hits} hits) against {rounds} rounds of delete \
         and store again of {KEYS} blob entries: {vanished_earlier} of {} stored in earlier \
         rounds and {} of {KEYS} stored last vanished, {} listed",
        (rounds - 1) * KEYS,
        vanished.len(),
        listed.len()
    );
    assert!(
        vanished_earlier == 0 && vanished.is_empty(),
        "readers removed entries the writer had stored again and flushed: {vanished_earlier} in \
         earlier rounds, {} of the last ({vanished:?})",
        vanished.len()
    );
    assert_eq!(
        listed.len() as u64,
        KEYS,
        "keys() lists every entry stored last"
    );
}
