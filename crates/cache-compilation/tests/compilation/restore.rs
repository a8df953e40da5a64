//! `restore` and `copy_to_with` in every link mode (issue 19), and the check on read that keeps a
//! file edited through a hard-link restore from ever being served.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use cache_compilation::{CompilationError, LinkMode, WorkspaceDetails};
use cache_core::{Coordinator, ManualClock};
use rstest::rstest;
use tempfile::TempDir;

use crate::faithful::{faithful_snapshot, rich_workspace};
use crate::{branch, clock, coordinator, open, quiet, repo, root};

#[rstest]
fn restore_in_every_link_mode_gives_the_workspace_back(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[values(LinkMode::Auto, LinkMode::Reflink, LinkMode::Hardlink, LinkMode::Copy)] link: LinkMode,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = rich_workspace(&root, "ws", false);
    let expected = faithful_snapshot(&ws, true);
    let cached = compilation
        .workspaces
        .inject(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap()
        .unwrap();
    let target = root.path().join("restored");

    let restored = compilation
        .workspaces
        .restore(&branch("main"), &target, link, &mut quiet());
    let report = match (link, restored) {
        // The test's filesystem may have no copy-on-write clones: a clear error is the answer.
        (LinkMode::Reflink, Err(CompilationError::ReflinkUnsupported { path, reason })) => {
            assert!(path.starts_with(&target), "{path:?}");
            assert!(!reason.is_empty());
            return;
        }
        (_, restored) => restored.unwrap(),
    };
    assert_eq!(report.placed, link);
    assert_eq!(report.workspace.branch, None, "fell back to the repository");
    assert_eq!(faithful_snapshot(&target, true), expected);
    let same_inode = fs::metadata(target.join("zmk/app/CMakeLists.txt"))
        .unwrap()
        .ino()
        == fs::metadata(cached.path.join("zmk/app/CMakeLists.txt"))
            .unwrap()
            .ino();
    assert_eq!(same_inode, link == LinkMode::Hardlink);
    // An untouched hard-link restore is still served.
    assert!(compilation.workspaces.get(&repo()).unwrap().is_some());
}

/// Issue 19: with `hardlink`, a restored file edited in place changes the cache's copy. The next
/// read finds it by its hash and drops the entry instead of serving it.
#[rstest]
fn a_file_edited_through_a_hard_link_restore_drops_the_entry_on_the_next_read(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = rich_workspace(&root, "ws", false);
    compilation
        .workspaces
        .inject(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap()
        .unwrap();
    let target = root.path().join("restored");
    compilation
        .workspaces
        .restore(&repo(), &target, LinkMode::Hardlink, &mut quiet())
        .unwrap();

    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(target.join("zmk/app/CMakeLists.txt"))
        .unwrap();
    file.write_all(b"# edited in place\n").unwrap();
    drop(file);

    assert_eq!(
        compilation.workspaces.get(&repo()).unwrap(),
        None,
        "never served"
    );
    assert!(
        compilation.cache.keys().unwrap().is_empty(),
        "the entry is dropped"
    );
    assert_eq!(
        fs::read(target.join("zmk/app/CMakeLists.txt")).unwrap(),
        b"project(zmk)\n# edited in place\n",
        "the user's file is left alone"
    );
}

/// A workspace without a content manifest (stored before manifests existed) cannot be checked
/// after a hard-link restore, so it is copied instead, and the report says so.
#[rstest]
fn a_hard_link_restore_of_a_workspace_without_a_manifest_copies(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = rich_workspace(&root, "ws", false);
    let cached = compilation
        .workspaces
        .inject(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap()
        .unwrap();
    // An entry as a release before manifests stored it: the same directory and value, no
    // manifest (stored through the core, so the cache's own record of the directory holds).
    let key = repo().key_bytes();
    let stored = compilation.cache.get_directory(&key).unwrap().unwrap();
    let staged = compilation.cache.stage_directory().unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(cached.path.join("."))
        .arg(staged.path())
        .status()
        .unwrap();
    assert!(copied.success());
    fs::remove_file(staged.path().join(".glovebox-manifest")).unwrap();
    let cached = compilation
        .cache
        .set_directory(
            &key,
            staged,
            &stored.value,
            Some(std::time::Duration::from_secs(3600)),
        )
        .unwrap()
        .unwrap();
    let target = root.path().join("restored");
    let report = compilation
        .workspaces
        .restore(&repo(), &target, LinkMode::Hardlink, &mut quiet())
        .unwrap();
    assert_eq!(report.placed, LinkMode::Copy);
    assert_ne!(
        fs::metadata(target.join("zmk/app/CMakeLists.txt"))
            .unwrap()
            .ino(),
        fs::metadata(cached.path.join("zmk/app/CMakeLists.txt"))
            .unwrap()
            .ino()
    );
}

#[rstest]
fn restore_of_a_workspace_not_cached_is_an_error_and_writes_nothing(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let target = root.path().join("restored");
    let err = compilation
        .workspaces
        .restore(&repo(), &target, LinkMode::Auto, &mut quiet())
        .unwrap_err();
    assert!(
        matches!(err, CompilationError::WorkspaceNotCached { .. }),
        "{err}"
    );
    assert!(!target.exists());
}

/// Issue 19, deduplication: the repository and branch copies of one workspace share their files
/// (one inode per file); either restores faithfully in every link mode, also once the other is
/// gone.
#[rstest]
fn after_dedup_restore_in_every_link_mode_keeps_modes_and_times(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[values(LinkMode::Auto, LinkMode::Reflink, LinkMode::Hardlink, LinkMode::Copy)] link: LinkMode,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = rich_workspace(&root, "ws", false);
    let expected = faithful_snapshot(&ws, true);
    let repository = compilation
        .workspaces
        .inject(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap()
        .unwrap();
    let feature = compilation
        .workspaces
        .inject(
            &ws,
            &branch("feature"),
            WorkspaceDetails::default(),
            &mut quiet(),
        )
        .unwrap()
        .unwrap();
    let inode = |dir: &std::path::Path| {
        fs::metadata(dir.join("zmk/app/CMakeLists.txt"))
            .unwrap()
            .ino()
    };
    assert_eq!(inode(&repository.path), inode(&feature.path), "shared");

    // Restored once with both copies cached, then again once the repository's copy is gone.
    for round in 0..2 {
        let target = root.path().join(format!("restored-{round}"));
        let restored =
            compilation
                .workspaces
                .restore(&branch("feature"), &target, link, &mut quiet());
        let report = match (link, restored) {
            (LinkMode::Reflink, Err(CompilationError::ReflinkUnsupported { .. })) => return,
            (_, restored) => restored.unwrap(),
        };
        assert_eq!(report.placed, link);
        assert_eq!(report.workspace.branch.as_deref(), Some("feature"));
        assert_eq!(faithful_snapshot(&target, true), expected, "round {round}");
        if round == 0 {
            assert!(compilation.workspaces.delete(&repo()).unwrap());
        }
    }
}

/// Issue 19, deduplication with `--link hardlink`: a restored file edited in place changes the
/// content every workspace sharing it holds; every one of them is dropped on its next read,
/// none is served.
#[rstest]
fn an_edit_through_a_hard_link_restore_drops_every_workspace_sharing_the_file(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = rich_workspace(&root, "ws", false);
    for id in [repo(), branch("feature")] {
        compilation
            .workspaces
            .inject(&ws, &id, WorkspaceDetails::default(), &mut quiet())
            .unwrap()
            .unwrap();
    }
    let target = root.path().join("restored");
    compilation
        .workspaces
        .restore(
            &branch("feature"),
            &target,
            LinkMode::Hardlink,
            &mut quiet(),
        )
        .unwrap();
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(target.join("zmk/app/CMakeLists.txt"))
        .unwrap();
    file.write_all(b"# edited in place\n").unwrap();
    drop(file);

    assert_eq!(compilation.workspaces.get_exact(&repo()).unwrap(), None);
    assert_eq!(
        compilation
            .workspaces
            .get_exact(&branch("feature"))
            .unwrap(),
        None
    );
    assert!(compilation.cache.keys().unwrap().is_empty(), "both dropped");
}

/// Issue 19, deduplication: an empty file is not shared with a content file, so the cache does
/// not verify it; the workspace's manifest still does. Appended to through a hard-link restore,
/// it drops the entry.
#[rstest]
fn an_unshared_file_edited_through_a_hard_link_restore_still_drops_the_entry(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = rich_workspace(&root, "ws", false);
    fs::write(ws.join("zmk/app/empty.conf"), b"").unwrap();
    let cached = compilation
        .workspaces
        .inject(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap()
        .unwrap();
    let target = root.path().join("restored");
    compilation
        .workspaces
        .restore(&repo(), &target, LinkMode::Hardlink, &mut quiet())
        .unwrap();
    assert_eq!(
        fs::metadata(target.join("zmk/app/empty.conf"))
            .unwrap()
            .ino(),
        fs::metadata(cached.path.join("zmk/app/empty.conf"))
            .unwrap()
            .ino()
    );
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(target.join("zmk/app/empty.conf"))
        .unwrap();
    file.write_all(b"CONFIG_EDITED=y\n").unwrap();
    drop(file);

    assert_eq!(compilation.workspaces.get(&repo()).unwrap(), None);
    assert!(compilation.cache.keys().unwrap().is_empty());
}
