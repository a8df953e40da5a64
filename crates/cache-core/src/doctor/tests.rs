//! Unit tests of doctor (`doctor/`), in a file of their own to keep the checks short.

use super::*;
use crate::config::CacheOptions;
use crate::files::prepare_root;
use crate::store::RedbCache;

fn healthy_tag(root: &Path) -> (PathBuf, Tag) {
    let canonical = prepare_root(root).unwrap();
    let tag = Tag::new("t").unwrap();
    let cache = RedbCache::open(&canonical, tag.clone(), CacheOptions::default()).unwrap();
    for index in 0..2000u32 {
        cache.set(&index.to_be_bytes(), &[7u8; 300], None).unwrap();
    }
    cache.close().unwrap();
    (canonical, tag)
}

fn statuses(diagnosis: &TagDiagnosis) -> Vec<(&'static str, CheckStatus)> {
    diagnosis
        .findings
        .iter()
        .map(|finding| (finding.check, finding.status))
        .collect()
}

fn repair() -> DoctorOptions {
    DoctorOptions {
        repair: true,
        ..DoctorOptions::default()
    }
}

#[test]
fn a_healthy_tag_passes_every_check_and_leaves_no_scratch_file() {
    let root = tempfile::tempdir().unwrap();
    let (canonical, tag) = healthy_tag(root.path());
    let diagnosis = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
    assert_eq!(
        statuses(&diagnosis),
        [
            ("files", CheckStatus::Healthy),
            ("permissions", CheckStatus::Healthy),
            ("integrity", CheckStatus::Healthy),
            ("blobs", CheckStatus::Healthy),
            ("directories", CheckStatus::Healthy),
            ("temp files", CheckStatus::Healthy)
        ],
        "{diagnosis:?}"
    );
    assert_eq!(diagnosis.storage, Some(StorageFindings::default()));
    assert_eq!(
        diagnosis.cleanup, None,
        "nothing to repair, no repair asked"
    );
    assert!(diagnosis.is_healthy());
    let mut names: Vec<String> = fs::read_dir(canonical.join("t"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // The usage file is the tag's own (root budget), written by its commits.
    assert_eq!(names, [DATABASE_FILE_NAME, "usage"]);
}

#[test]
fn a_garbage_file_is_reported_unchanged_then_moved_aside_by_repair() {
    let root = tempfile::tempdir().unwrap();
    let (canonical, tag) = healthy_tag(root.path());
    let database = canonical.join("t").join(DATABASE_FILE_NAME);
    let garbage = vec![0xA5u8; 64 * 1024];
    fs::write(&database, &garbage).unwrap();

    let checked = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
    assert_eq!(
        checked.findings[2].status,
        CheckStatus::Damaged,
        "{checked:?}"
    );
    assert!(!checked.is_healthy());
    assert!(
        fs::read(&database).unwrap() == garbage,
        "a check changes nothing"
    );

    let repaired = diagnose_tag(&canonical, &tag, &repair());
    assert_eq!(
        repaired.findings[2].status,
        CheckStatus::Repaired,
        "{repaired:?}"
    );
    assert!(repaired.findings[2].detail.contains(".corrupt-"));
    assert!(repaired.is_healthy());
    assert_eq!(
        fs::metadata(&database).unwrap().len(),
        0,
        "an empty file in its place"
    );

    let again = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
    assert!(again.is_healthy(), "{again:?}");
    let cache = RedbCache::open(&canonical, tag, CacheOptions::default()).unwrap();
    assert_eq!(
        cache.keys().unwrap(),
        Vec::<Vec<u8>>::new(),
        "the tag starts empty"
    );
}

#[test]
fn a_file_open_in_this_process_is_refused_not_opened_twice() {
    let root = tempfile::tempdir().unwrap();
    let (canonical, tag) = healthy_tag(root.path());
    let _open = RedbCache::open(&canonical, tag.clone(), CacheOptions::default()).unwrap();
    let diagnosis = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
    assert_eq!(diagnosis.findings[2].status, CheckStatus::NotChecked);
    assert!(
        diagnosis.findings[2]
            .detail
            .contains("already open in this process"),
        "{diagnosis:?}"
    );
}

#[cfg(unix)]
#[test]
fn loose_permissions_are_reported_then_tightened_by_repair() {
    use std::os::unix::fs::PermissionsExt;

    let root = tempfile::tempdir().unwrap();
    let (canonical, tag) = healthy_tag(root.path());
    let database = canonical.join("t").join(DATABASE_FILE_NAME);
    fs::set_permissions(&database, fs::Permissions::from_mode(0o644)).unwrap();

    let checked = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
    assert_eq!(checked.findings[1].status, CheckStatus::Damaged);
    assert!(checked.findings[1].detail.contains("0644"), "{checked:?}");

    let repaired = diagnose_tag(&canonical, &tag, &repair());
    assert_eq!(repaired.findings[1].status, CheckStatus::Repaired);
    let mode = fs::metadata(&database).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[cfg(unix)]
#[test]
fn a_symlinked_database_is_damage_that_repair_leaves_alone() {
    let root = tempfile::tempdir().unwrap();
    let (canonical, tag) = healthy_tag(root.path());
    let database = canonical.join("t").join(DATABASE_FILE_NAME);
    let elsewhere = root.path().join("elsewhere.redb");
    fs::rename(&database, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &database).unwrap();

    let diagnosis = diagnose_tag(&canonical, &tag, &repair());
    assert_eq!(
        statuses(&diagnosis),
        [
            ("files", CheckStatus::Damaged),
            ("permissions", CheckStatus::Skipped),
            ("integrity", CheckStatus::Skipped),
            ("blobs", CheckStatus::Skipped),
            ("directories", CheckStatus::Skipped),
            ("temp files", CheckStatus::Skipped)
        ]
    );
    assert_eq!(diagnosis.storage, None);
    assert!(diagnosis.findings[0].detail.contains("symlink"));
    assert!(
        fs::symlink_metadata(&database)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn flipped_bytes_in_the_data_are_found_and_repair_leaves_a_usable_tag() {
    let mut found = 0;
    for fraction in [0.1f64, 0.5, 0.7] {
        let root = tempfile::tempdir().unwrap();
        let (canonical, tag) = healthy_tag(root.path());
        let database = canonical.join("t").join(DATABASE_FILE_NAME);
        let mut bytes = fs::read(&database).unwrap();
        let at = (bytes.len() as f64 * fraction) as usize;
        for byte in &mut bytes[at..at + 64] {
            *byte ^= 0xFF;
        }
        fs::write(&database, &bytes).unwrap();

        let checked = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
        assert!(
            fs::read(&database).unwrap() == bytes,
            "a check changes nothing"
        );
        if checked.findings[2].status == CheckStatus::Damaged {
            found += 1;
        }
        let repaired = diagnose_tag(&canonical, &tag, &repair());
        assert!(repaired.is_healthy(), "{repaired:?}");
        assert!(
            diagnose_tag(&canonical, &tag, &DoctorOptions::default()).is_healthy(),
            "healthy after repair"
        );
    }
    // Flipped bytes may land in a free page, which no checksum covers; most land in live ones.
    assert!(found >= 1, "no damage found at any of the offsets");
}
