//! Blobs across processes: two processes storing the same large value at the same moment end
//! with one blob file, and both entries read back.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cache_core::{CacheOptions, Coordinator, Environment};

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
