//! File-level deduplication of owned directories (`cache-core`'s `store/contents.rs`) on
//! generated trees (`cache_tests::trees`): the disk a second nearly identical directory adds,
//! what deleting one or both of two sharing directories leaves, the accounting, a content file
//! changed on disk, a store killed mid-way by SIGKILL, and two processes storing the same
//! content at once.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cache_core::{
    Cache, CacheOptions, Coordinator, DoctorOptions, Environment, Tag, diagnose_tag, prepare_root,
};
use cache_tests::trees::{TreeSpec, disk_use, generate_tree, snapshot};

const WORKER: &str = env!("CARGO_BIN_EXE_cache-worker");
const TAG: &str = "trees";

fn coordinator() -> Coordinator {
    Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
}

fn open(coordinator: &Coordinator, root: &Path) -> Cache {
    coordinator
        .get_shared_cache_instance(root, TAG, CacheOptions::default())
        .unwrap()
}

fn spec(files: usize, variant: u64) -> TreeSpec {
    TreeSpec {
        files,
        mean_len: 6 * 1024,
        seed: 7,
        variant,
    }
}

/// Stores the generated tree `spec` under `key`; its path in the cache.
fn store(cache: &Cache, key: &[u8], spec: TreeSpec) -> PathBuf {
    let staged = cache.stage_directory().unwrap();
    generate_tree(staged.path(), spec).unwrap();
    cache
        .set_directory(key, staged, b"tree", None)
        .unwrap()
        .unwrap()
        .path
}

/// The expected snapshot of a generated tree, made apart from any cache.
fn expected(spec: TreeSpec) -> BTreeMap<Vec<u8>, String> {
    let dir = tempfile::tempdir().unwrap();
    generate_tree(dir.path(), spec).unwrap();
    snapshot(dir.path()).unwrap()
}

/// Regular files under `<tag>/files/` (content files and anything else left there).
fn content_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.join(TAG).join("files")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_second_nearly_identical_directory_adds_under_ten_percent_of_the_first() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = coordinator();
    let cache = open(&coordinator, root.path());
    cache.flush().unwrap();
    let tag_dir = root.path().join(TAG);
    let empty = disk_use(&tag_dir).unwrap();
    store(&cache, b"workspace:repo", spec(3000, 0));
    cache.flush().unwrap();
    let first = disk_use(&tag_dir).unwrap() - empty;
    store(&cache, b"workspace:branch", spec(3000, 1));
    cache.flush().unwrap();
    let second = disk_use(&tag_dir).unwrap() - empty - first;
    assert!(
        second * 10 < first,
        "the second directory added {second} bytes, the first {first}"
    );
    // The accounting says the same: the usage grew by about what the disk did.
    let stats = cache.get_stats().unwrap();
    assert!(
        stats.disk_bytes < (first + second) * 11 / 10 + 1024 * 1024,
        "usage {} for {} bytes on disk",
        stats.disk_bytes,
        first + second
    );
    for (key, variant) in [(&b"workspace:repo"[..], 0), (b"workspace:branch", 1)] {
        let cached = cache.get_directory(key).unwrap().unwrap();
        assert_eq!(
            snapshot(&cached.path).unwrap(),
            expected(spec(3000, variant))
        );
    }
}

#[test]
fn deleting_one_of_two_sharing_directories_keeps_the_other_and_deleting_both_frees_the_content() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = coordinator();
    let cache = open(&coordinator, root.path());
    store(&cache, b"a", spec(800, 0));
    let b_path = store(&cache, b"b", spec(800, 0));
    let b_before = snapshot(&b_path).unwrap();
    assert_eq!(b_before, expected(spec(800, 0)));
    let both = cache.get_stats().unwrap().disk_bytes;

    assert!(cache.delete(b"a").unwrap());
    cache.flush().unwrap();
    let one = cache.get_stats().unwrap().disk_bytes;
    assert!(
        one <= both && (both - one) * 10 < both,
        "removing a directory whose files are all shared freed {} of {both} bytes",
        both - one
    );
    let b = cache.get_directory(b"b").unwrap().unwrap();
    assert_eq!(b.path, b_path);
    assert_eq!(
        snapshot(&b.path).unwrap(),
        b_before,
        "byte for byte, modes and times"
    );
    assert!(!content_files(root.path()).is_empty());

    assert!(cache.delete(b"b").unwrap());
    cache.flush().unwrap();
    assert_eq!(
        cache.get_stats().unwrap().disk_bytes,
        0,
        "nothing is counted"
    );
    assert_eq!(
        content_files(root.path()),
        Vec::<PathBuf>::new(),
        "the content went with the last directory"
    );
    let report = cache.cleanup().unwrap();
    assert_eq!(report.orphan_files, 0, "{report:?}");
}

#[test]
fn a_content_file_changed_on_disk_is_never_served() {
    let root = tempfile::tempdir().unwrap();
    let coordinator = coordinator();
    let cache = open(&coordinator, root.path());
    let a_path = store(&cache, b"a", spec(300, 0));
    store(&cache, b"b", spec(300, 0));
    // Read once: this process has verified every file and may remember it.
    assert!(cache.get_directory(b"a").unwrap().is_some());

    let victim = a_path.join("module-0/src-1/file-00001.c");
    let content = content_files(root.path())
        .into_iter()
        .find(|path| {
            std::fs::metadata(path).unwrap().ino() == std::fs::metadata(&victim).unwrap().ino()
        })
        .expect("the file is shared with a content file");
    let meta = std::fs::metadata(&content).unwrap();
    // Same length, same modification time: only the bytes differ.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&content)
        .unwrap();
    file.write_all(b"tampered").unwrap();
    file.set_modified(meta.modified().unwrap()).unwrap();
    drop(file);
    assert_eq!(std::fs::metadata(&content).unwrap().len(), meta.len());

    assert_eq!(cache.get_directory(b"a").unwrap(), None);
    assert_eq!(
        cache.get_directory(b"b").unwrap(),
        None,
        "it shared the file"
    );
    cache.flush().unwrap();
    assert!(!cache.exists(b"a").unwrap() && !cache.exists(b"b").unwrap());

    // Stored again, the damaged content file is replaced, not linked.
    store(&cache, b"a", spec(300, 0));
    let again = cache.get_directory(b"a").unwrap().unwrap();
    assert_eq!(snapshot(&again.path).unwrap(), expected(spec(300, 0)));
}

/// Every content file under `files/` has a name in some owned directory, and every entry's
/// directory is its generated tree.
fn assert_consistent(root: &Path, cache: &Cache, files: usize) {
    let trees: Vec<_> = (0..3)
        .map(|variant| expected(worker_spec(files, variant)))
        .collect();
    let mut keys = cache.keys().unwrap();
    keys.sort();
    for key in &keys {
        let index: u64 = String::from_utf8_lossy(key)
            .trim_start_matches("dir:")
            .parse()
            .unwrap();
        let cached = cache.get_directory(key).unwrap().unwrap();
        assert_eq!(
            snapshot(&cached.path).unwrap(),
            trees[(index % 3) as usize],
            "{}",
            String::from_utf8_lossy(key)
        );
    }
    for path in content_files(root) {
        let links = std::fs::metadata(&path).unwrap().nlink();
        assert!(links > 1, "{} is linked by nothing", path.display());
    }
    let staging = root.join(TAG).join("dirs/.staging");
    assert!(
        std::fs::read_dir(&staging)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(true),
        "staging left in {}",
        staging.display()
    );
}

fn worker_spec(files: usize, variant: u64) -> TreeSpec {
    TreeSpec {
        files,
        mean_len: 2048,
        seed: 1,
        variant,
    }
}

#[test]
fn a_store_killed_at_any_point_leaves_a_cache_that_doctor_or_cleanup_makes_consistent() {
    const FILES: usize = 400;
    let root = tempfile::tempdir().unwrap();
    // Several kills, each after a different number of stores: where in a store the kill lands
    // is up to the machine, and every place must leave a consistent cache.
    for round in 0..4u64 {
        let mut worker = Command::new(WORKER)
            .arg("dir-store-until-killed")
            .arg(root.path())
            .args([TAG, &FILES.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(worker.stdout.take().unwrap()).lines();
        let wanted = format!("stored {round}");
        loop {
            let line = lines.next().expect("the worker stopped").unwrap();
            if line == wanted {
                break;
            }
        }
        worker.kill().unwrap();
        worker.wait().unwrap();

        // Repaired by doctor in even rounds, by the next open's cleanup in odd ones.
        if round % 2 == 0 {
            let diagnosis = diagnose_tag(
                &prepare_root(root.path()).unwrap(),
                &Tag::new(TAG).unwrap(),
                &DoctorOptions {
                    repair: true,
                    ..DoctorOptions::default()
                },
            );
            assert!(!diagnosis.is_damaged(), "round {round}: {diagnosis:?}");
        }
        let coordinator = coordinator();
        let cache = open(&coordinator, root.path());
        if round % 2 == 1 {
            cache.cleanup().unwrap();
        }
        assert_consistent(root.path(), &cache, FILES);
        let bytes = cache.get_stats().unwrap().disk_bytes;
        cache.cleanup().unwrap();
        assert_eq!(
            cache.get_stats().unwrap().disk_bytes,
            bytes,
            "round {round}: the usage was exact (a recount finds no drift)"
        );
        cache.close().unwrap();
    }
}

#[test]
fn two_processes_storing_the_same_content_at_once_share_it() {
    const FILES: usize = 600;
    for round in 0..2 {
        let root = tempfile::tempdir().unwrap();
        let barrier = tempfile::tempdir().unwrap();
        let spawn = |me: &str, other: &str| {
            Command::new(WORKER)
                .arg("dir-store")
                .arg(root.path())
                .args([TAG, &format!("dir:{me}"), &FILES.to_string(), me, other])
                .arg(barrier.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let workers = [spawn("alpha", "beta"), spawn("beta", "alpha")];
        for worker in workers {
            let output = worker.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "round {round}: {}\nstderr: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let coordinator = coordinator();
        let cache = open(&coordinator, root.path());
        let expected = expected(worker_spec(FILES, 0));
        let alpha = cache.get_directory(b"dir:alpha").unwrap().unwrap();
        let beta = cache.get_directory(b"dir:beta").unwrap().unwrap();
        assert_eq!(snapshot(&alpha.path).unwrap(), expected);
        assert_eq!(snapshot(&beta.path).unwrap(), expected);
        // Same path, same inode: the content is stored once.
        let inodes = |dir: &Path| -> HashSet<(Vec<u8>, u64)> {
            let mut found = HashSet::new();
            let mut pending = vec![PathBuf::new()];
            while let Some(relative) = pending.pop() {
                for entry in std::fs::read_dir(dir.join(&relative)).unwrap() {
                    let entry = entry.unwrap();
                    let child = relative.join(entry.file_name());
                    let meta = std::fs::symlink_metadata(dir.join(&child)).unwrap();
                    if meta.is_dir() {
                        pending.push(child);
                    } else if meta.is_file() && meta.len() > 0 {
                        use std::os::unix::ffi::OsStrExt;
                        found.insert((child.as_os_str().as_bytes().to_vec(), meta.ino()));
                    }
                }
            }
            found
        };
        let alpha_inodes = inodes(&alpha.path);
        let shared = alpha_inodes.intersection(&inodes(&beta.path)).count();
        assert_eq!(shared, alpha_inodes.len(), "round {round}");
        let bytes = cache.get_stats().unwrap().disk_bytes;
        cache.cleanup().unwrap();
        assert_eq!(
            cache.get_stats().unwrap().disk_bytes,
            bytes,
            "round {round}"
        );
    }
}
