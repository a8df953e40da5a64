//! The doctor's storage checks (`blobs`, `directories`, `temp files`): what they find without
//! writing anything, and what repair (the tag's cleanup) fixes.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cache_core::{
    CacheOptions, CheckStatus, Coordinator, DoctorOptions, EntryFile, StorageFindings, Tag,
    TagDiagnosis, diagnose_tag, prepare_root,
};
use rstest::rstest;
use tempfile::TempDir;

use crate::{coordinator, dead_temp_name, open, root};

/// Values above 1 KiB are blobs.
fn options() -> CacheOptions {
    CacheOptions {
        blob_threshold_bytes: 1024,
        ..CacheOptions::default()
    }
}

fn value(seed: u8) -> Vec<u8> {
    (0..4096u32)
        .map(|index| (index as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// The blob file of a value, as the store names it.
fn blob_path(root: &Path, value: &[u8]) -> PathBuf {
    let hash = blake3::hash(value).to_hex().to_string();
    root.join("t/blobs").join(&hash[..2]).join(&hash)
}

/// A tag `t` with an inline entry, two blob entries (`big-a`, `big-b`) and a directory entry
/// (`dir`), closed; returns the directory entry's path.
fn seed(root: &TempDir, coordinator: &Coordinator) -> PathBuf {
    let cache = open(coordinator, root, "t", options());
    cache.set(b"small", b"inline", None).unwrap();
    cache.set(b"big-a", &value(1), None).unwrap();
    cache.set(b"big-b", &value(2), None).unwrap();
    let staged = cache.stage_directory().unwrap();
    fs::create_dir_all(staged.path().join("zmk")).unwrap();
    fs::write(staged.path().join("zmk/file"), b"workspace").unwrap();
    let directory = cache
        .set_directory(b"dir", staged, b"metadata", None)
        .unwrap()
        .unwrap();
    coordinator.reset().unwrap();
    directory.path
}

fn diagnose(root: &TempDir, repair: bool) -> TagDiagnosis {
    let canonical = prepare_root(root.path()).unwrap();
    let options = DoctorOptions {
        repair,
        ..DoctorOptions::default()
    };
    diagnose_tag(&canonical, &Tag::new("t").unwrap(), &options)
}

/// The status of the check named `check`.
fn status(diagnosis: &TagDiagnosis, check: &str) -> CheckStatus {
    diagnosis
        .findings
        .iter()
        .find(|finding| finding.check == check)
        .unwrap_or_else(|| panic!("no {check} check in {diagnosis:?}"))
        .status
}

fn detail<'d>(diagnosis: &'d TagDiagnosis, check: &str) -> &'d str {
    &diagnosis
        .findings
        .iter()
        .find(|finding| finding.check == check)
        .unwrap()
        .detail
}

/// Every path under `root` with its kind, length, content hash and modification time: equal
/// before and after means nothing was written, created or removed. The tag directory's own
/// time is left out: the integrity check copies the database next to it (and removes the copy).
fn tree_state(root: &Path) -> BTreeMap<PathBuf, String> {
    let tag_directory = root.join("t");
    let mut state = BTreeMap::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let mut described = if meta.is_dir() {
            pending.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            "dir".to_owned()
        } else {
            format!(
                "file {} {}",
                meta.len(),
                blake3::hash(&fs::read(&path).unwrap())
            )
        };
        if path != tag_directory {
            described.push_str(&format!(" {:?}", meta.modified().unwrap()));
        }
        state.insert(path, described);
    }
    state
}

fn canonical(path: PathBuf) -> PathBuf {
    let parent = fs::canonicalize(path.parent().unwrap()).unwrap();
    parent.join(path.file_name().unwrap())
}

#[rstest]
fn a_healthy_tag_with_blobs_and_directories_passes_and_repair_removes_nothing(
    root: TempDir,
    coordinator: Coordinator,
) {
    seed(&root, &coordinator);
    let without_database = |mut state: BTreeMap<PathBuf, String>| {
        state.retain(|path, _| !path.ends_with("cache.redb"));
        state
    };
    let before = tree_state(root.path());
    for repair in [false, true] {
        let diagnosis = diagnose(&root, repair);
        if repair {
            // redb's integrity check with repair runs on the file itself, which may rewrite it;
            // no other file is touched.
            assert_eq!(
                without_database(before.clone()),
                without_database(tree_state(root.path()))
            );
        } else {
            assert_eq!(
                before,
                tree_state(root.path()),
                "without repair nothing is written"
            );
        }
        for check in ["blobs", "directories", "temp files"] {
            assert_eq!(
                status(&diagnosis, check),
                CheckStatus::Healthy,
                "{diagnosis:?}"
            );
        }
        assert!(diagnosis.is_healthy());
        assert_eq!(diagnosis.storage, Some(StorageFindings::default()));
        assert_eq!(diagnosis.cleanup, None, "nothing to fix: cleanup never ran");
    }
}

#[rstest]
fn a_deleted_blob_file_is_reported_without_writing_and_repair_removes_its_entry(
    root: TempDir,
    coordinator: Coordinator,
) {
    seed(&root, &coordinator);
    let lost = blob_path(root.path(), &value(1));
    fs::remove_file(&lost).unwrap();
    let before = tree_state(root.path());

    let checked = diagnose(&root, false);
    assert_eq!(
        status(&checked, "blobs"),
        CheckStatus::Damaged,
        "{checked:?}"
    );
    assert_eq!(status(&checked, "directories"), CheckStatus::Healthy);
    assert!(!checked.is_healthy());
    let lost = canonical(lost);
    assert_eq!(
        checked.storage.as_ref().unwrap().missing_blobs,
        [EntryFile {
            key: b"big-a".to_vec(),
            path: lost.clone()
        }]
    );
    let said = detail(&checked, "blobs");
    assert!(
        said.contains("\"big-a\"") && said.contains(lost.to_str().unwrap()),
        "{said}"
    );
    assert_eq!(
        before,
        tree_state(root.path()),
        "without repair nothing is written"
    );

    let repaired = diagnose(&root, true);
    assert_eq!(
        status(&repaired, "blobs"),
        CheckStatus::Repaired,
        "{repaired:?}"
    );
    assert!(repaired.is_healthy());
    assert_eq!(repaired.cleanup.as_ref().unwrap().missing_files, 1);
    assert!(diagnose(&root, false).is_healthy(), "healthy after repair");

    let cache = open(&coordinator, &root, "t", options());
    assert_eq!(cache.get(b"big-a").unwrap(), None);
    assert_eq!(cache.get(b"big-b").unwrap(), Some(value(2)));
    assert!(cache.get_directory(b"dir").unwrap().is_some());
}

#[rstest]
fn a_blob_whose_content_changed_is_found_by_its_hash_and_repair_removes_it(
    root: TempDir,
    coordinator: Coordinator,
) {
    seed(&root, &coordinator);
    let damaged = blob_path(root.path(), &value(2));
    let mut bytes = fs::read(&damaged).unwrap();
    bytes[100] ^= 0xFF;
    fs::write(&damaged, &bytes).unwrap();

    let checked = diagnose(&root, false);
    assert_eq!(status(&checked, "blobs"), CheckStatus::Damaged);
    let storage = checked.storage.unwrap();
    assert_eq!(storage.corrupt_blobs.len(), 1, "{storage:?}");
    assert_eq!(storage.corrupt_blobs[0].key, b"big-b");
    assert!(storage.missing_blobs.is_empty());
    assert!(detail(&diagnose(&root, false), "blobs").contains("does not match its hash"));
    assert_eq!(
        fs::read(&damaged).unwrap(),
        bytes,
        "the damaged file is left as it is"
    );

    let repaired = diagnose(&root, true);
    assert_eq!(
        status(&repaired, "blobs"),
        CheckStatus::Repaired,
        "{repaired:?}"
    );
    assert_eq!(repaired.cleanup.unwrap().missing_files, 1);
    assert!(!damaged.exists(), "the damaged file is gone");
    let cache = open(&coordinator, &root, "t", options());
    assert!(!cache.exists(b"big-b").unwrap());
    assert_eq!(cache.get(b"big-a").unwrap(), Some(value(1)));
}

#[rstest]
fn orphans_missing_directories_and_stale_temps_are_listed_then_removed_by_repair(
    root: TempDir,
    coordinator: Coordinator,
) {
    let owned = seed(&root, &coordinator);
    fs::remove_dir_all(&owned).unwrap();
    let orphan_blob = root.path().join("t/blobs/ab").join("ab".repeat(32));
    fs::create_dir_all(orphan_blob.parent().unwrap()).unwrap();
    fs::write(&orphan_blob, b"nobody's").unwrap();
    let stray = root.path().join("t/blobs/ab/notes.txt");
    fs::write(&stray, b"not the cache's").unwrap();
    let orphan_dir = root.path().join("t/dirs").join("cd".repeat(16));
    fs::create_dir_all(orphan_dir.join("zmk")).unwrap();
    let dead_temp = root.path().join("t/blobs/tmp").join(dead_temp_name("0"));
    fs::create_dir_all(dead_temp.parent().unwrap()).unwrap();
    fs::write(&dead_temp, b"half a blob").unwrap();
    let dead_staging = root
        .path()
        .join("t/dirs/.staging")
        .join(dead_temp_name("ab"));
    fs::create_dir_all(&dead_staging).unwrap();
    let before = tree_state(root.path());

    let checked = diagnose(&root, false);
    for check in ["blobs", "directories", "temp files"] {
        assert_eq!(
            status(&checked, check),
            CheckStatus::Damaged,
            "{check}: {checked:?}"
        );
    }
    let storage = checked.storage.clone().unwrap();
    assert_eq!(storage.orphan_blobs, [canonical(orphan_blob.clone())]);
    assert_eq!(storage.orphan_directories, [canonical(orphan_dir.clone())]);
    assert_eq!(
        storage.missing_directories,
        [EntryFile {
            key: b"dir".to_vec(),
            path: canonical(owned.clone())
        }]
    );
    assert_eq!(
        storage.stale_temp_files,
        [
            canonical(dead_temp.clone()),
            canonical(dead_staging.clone())
        ]
    );
    assert!(storage.missing_blobs.is_empty() && storage.corrupt_blobs.is_empty());
    assert!(detail(&checked, "directories").contains("no entry owns"));
    assert_eq!(
        before,
        tree_state(root.path()),
        "without repair nothing is written"
    );

    let repaired = diagnose(&root, true);
    for check in ["blobs", "directories", "temp files"] {
        assert_eq!(
            status(&repaired, check),
            CheckStatus::Repaired,
            "{check}: {repaired:?}"
        );
    }
    assert!(repaired.is_healthy());
    let cleanup = repaired.cleanup.unwrap();
    assert_eq!(
        (
            cleanup.missing_files,
            cleanup.orphan_files,
            cleanup.temp_files
        ),
        // Orphans: the blob, the directory, and the content file the directory's one file
        // shared (deduplication), which nothing links once the directory is gone.
        (1, 3, 2)
    );
    for gone in [&orphan_blob, &orphan_dir, &dead_temp, &dead_staging] {
        assert!(!gone.exists(), "{} is still there", gone.display());
    }
    assert!(
        stray.exists(),
        "a file that is not the cache's is never touched"
    );
    assert!(diagnose(&root, false).is_healthy());
    let cache = open(&coordinator, &root, "t", options());
    assert!(cache.get_directory(b"dir").unwrap().is_none());
    assert_eq!(cache.get(b"small").unwrap(), Some(b"inline".to_vec()));
}

#[rstest]
fn blobs_left_by_a_database_moved_aside_are_orphans_the_same_repair_removes(
    root: TempDir,
    coordinator: Coordinator,
) {
    seed(&root, &coordinator);
    let database = root.path().join("t/cache.redb");
    fs::write(&database, vec![0xA5u8; 64 * 1024]).unwrap();

    let checked = diagnose(&root, false);
    assert_eq!(status(&checked, "integrity"), CheckStatus::Damaged);
    assert_eq!(
        status(&checked, "blobs"),
        CheckStatus::NotChecked,
        "the entries of an unreadable database cannot be compared with the files, so the \
         storage checks did not look (never healthy): {checked:?}"
    );
    assert_eq!(checked.storage, None);

    let repaired = diagnose(&root, true);
    assert_eq!(status(&repaired, "integrity"), CheckStatus::Repaired);
    assert_eq!(
        status(&repaired, "blobs"),
        CheckStatus::Repaired,
        "{repaired:?}"
    );
    assert_eq!(status(&repaired, "directories"), CheckStatus::Repaired);
    let storage = repaired.storage.unwrap();
    assert_eq!(
        storage.orphan_blobs.len(),
        2,
        "both blobs lost their entries"
    );
    assert_eq!(storage.orphan_directories.len(), 1);
    // Two blobs, the directory and the content file its one file shared.
    assert_eq!(repaired.cleanup.unwrap().orphan_files, 4);
    assert!(!blob_path(root.path(), &value(1)).exists());
    assert!(diagnose(&root, false).is_healthy());
}

#[rstest]
fn a_tag_open_in_this_process_is_refused_by_the_storage_checks_too(
    root: TempDir,
    coordinator: Coordinator,
) {
    seed(&root, &coordinator);
    let _open = open(&coordinator, &root, "t", options());
    let diagnosis = diagnose(&root, false);
    assert_eq!(status(&diagnosis, "blobs"), CheckStatus::NotChecked);
    assert!(
        detail(&diagnosis, "blobs").contains("already open in this process"),
        "{diagnosis:?}"
    );
}

/// Issue 13, item 14: a stray file directly under `blobs/` (a `README`), a stray directory
/// there, and unknown names under `dirs/`, `blobs/<2 hex>/`, `blobs/tmp/` and `dirs/.staging/`
/// are reported and skipped by cleanup, doctor and doctor with repair: none stops maintenance,
/// and none is touched.
#[rstest]
fn trust_14_a_stray_file_never_stops_maintenance(root: TempDir, coordinator: Coordinator) {
    seed(&root, &coordinator);
    let tag = root.path().join("t");
    let strays = [
        tag.join("blobs/README"),
        tag.join("blobs/notes/inside"),
        tag.join("blobs/ab/notes.txt"),
        tag.join("blobs/tmp/README"),
        tag.join("dirs/README"),
        tag.join("dirs/.staging/README"),
    ];
    for stray in &strays {
        fs::create_dir_all(stray.parent().unwrap()).unwrap();
        fs::write(stray, b"not the cache's").unwrap();
    }

    let cache = open(&coordinator, &root, "t", options());
    let report = cache.cleanup().unwrap();
    assert_eq!(report.temp_files, 0, "{report:?}");
    assert_eq!(cache.get(b"big-a").unwrap(), Some(value(1)));
    coordinator.reset().unwrap();

    for repair in [false, true] {
        let checked = diagnose(&root, repair);
        for check in ["blobs", "directories", "temp files"] {
            assert_eq!(
                status(&checked, check),
                CheckStatus::Healthy,
                "repair {repair}, {check}: {checked:?}"
            );
        }
    }
    for stray in &strays {
        assert_eq!(fs::read(stray).unwrap(), b"not the cache's", "{stray:?}");
    }
}
