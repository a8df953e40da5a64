//! Faithful copies and archives (issue 19): modes (0600, 0444, directory modes), modification
//! times, hard links, empty directories, dangling and relative symlinks and non-UTF-8 names
//! survive add, restore, export and import; symlinks that leave the workspace are refused the
//! same way on every way in.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use cache_compilation::{
    ArchiveFormat, CompilationCache, CompilationOptions, ExportOptions, GitHandling,
    WorkspaceDetails, WorkspaceId,
};
use cache_core::{Coordinator, ManualClock};
use rstest::rstest;
use tempfile::TempDir;

use crate::{branch, clock, config, coordinator, open, open_with, quiet, repo, root, write};

/// An old time, in whole seconds (tar and zip keep seconds), different per path.
fn old_time(index: u64) -> std::time::SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_000_000_000 + index * 3_600)
}

fn set_mtime_nofollow(path: &Path, index: u64) {
    // `touch -h` sets a symlink's own time; std cannot.
    let seconds = 1_000_000_000 + index * 3_600;
    let status = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{seconds}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A generated workspace holding every case: file modes 0600, 0444, 0640, 0755, directory
/// modes 0700, 0750 and a read-only 0555 directory with a file in it, an empty directory, a
/// relative and a dangling symlink, two names of one file (a hard link), a non-UTF-8 name
/// (unless `utf8_only`: zip names must be UTF-8), and old modification times on everything.
pub(crate) fn rich_workspace(root: &TempDir, name: &str, utf8_only: bool) -> std::path::PathBuf {
    let ws = root.path().join(name);
    write(&ws.join("zmk/app/CMakeLists.txt"), b"project(zmk)\n");
    write(&ws.join("zmk/private.key"), b"secret\n");
    write(&ws.join("zmk/readonly.txt"), b"read only\n");
    write(&ws.join("zmk/group.txt"), b"group\n");
    write(&ws.join("zephyr/scripts/build.sh"), b"#!/bin/sh\n");
    write(
        &ws.join("zephyr/.git/objects/pack/pack-1.pack"),
        &[7u8; 3000],
    );
    write(&ws.join("modules/locked/inside.h"), b"#pragma once\n");
    write(&ws.join(".west/config"), b"[manifest]\n");
    fs::create_dir_all(ws.join("modules/empty")).unwrap();
    fs::create_dir_all(ws.join("zmk/private-dir")).unwrap();
    fs::create_dir_all(ws.join("zmk/group-dir")).unwrap();
    fs::hard_link(ws.join("zmk/group.txt"), ws.join("zephyr/linked.txt")).unwrap();
    std::os::unix::fs::symlink("app/CMakeLists.txt", ws.join("zmk/relative-link")).unwrap();
    std::os::unix::fs::symlink("no-such-file", ws.join("zmk/dangling-link")).unwrap();
    if !utf8_only {
        write(
            &ws.join(OsStr::from_bytes(b"zmk/caf\xe9.txt")),
            b"latin-1 name\n",
        );
    }
    for (path, mode) in [
        ("zmk/private.key", 0o600),
        ("zmk/readonly.txt", 0o444),
        ("zmk/group.txt", 0o640),
        ("zephyr/scripts/build.sh", 0o755),
        ("zmk/private-dir", 0o700),
        ("zmk/group-dir", 0o750),
    ] {
        fs::set_permissions(ws.join(path), fs::Permissions::from_mode(mode)).unwrap();
    }
    // Times last, deepest first, so that creating a child does not move its parent's time;
    // the read-only directory's mode after its times.
    let mut all: Vec<_> = walk(&ws).into_iter().map(|(path, _)| path).collect();
    all.sort_by_key(|path| std::cmp::Reverse(path.len()));
    for (index, path) in all.iter().enumerate() {
        set_mtime_nofollow(&ws.join(OsStr::from_bytes(path)), index as u64);
    }
    fs::set_permissions(ws.join("modules/locked"), fs::Permissions::from_mode(0o555)).unwrap();
    for path in ["zmk", "zmk/dangling-link", "zmk/readonly.txt"] {
        let mtime = fs::symlink_metadata(ws.join(path))
            .unwrap()
            .modified()
            .unwrap();
        assert!(mtime < old_time(1_000), "{path} has an old time");
    }
    ws
}

/// Every path under `dir` (raw bytes, relative), not following symlinks, without the cache's
/// manifest.
fn walk(dir: &Path) -> Vec<(Vec<u8>, fs::Metadata)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(dir)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            if relative == b".glovebox-manifest" {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path);
            }
            out.push((relative, meta));
        }
    }
    out
}

/// What must survive, per path: kind and content (or target), mode, modification time, and
/// for a second name of a file, the first name it is linked to.
pub(crate) fn faithful_snapshot(dir: &Path, keep_links: bool) -> BTreeMap<String, String> {
    let mut entries = walk(dir);
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut first_names: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (relative, meta) in entries {
        let name = String::from_utf8_lossy(&relative).into_owned();
        let path = dir.join(OsStr::from_bytes(&relative));
        let kind = if meta.file_type().is_symlink() {
            format!("link -> {}", fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            format!("dir {:o}", meta.mode() & 0o777)
        } else {
            let linked = if keep_links && meta.nlink() > 1 {
                match first_names.get(&(meta.dev(), meta.ino())) {
                    Some(first) => format!(" linked to {first}"),
                    None => {
                        first_names.insert((meta.dev(), meta.ino()), name.clone());
                        String::new()
                    }
                }
            } else {
                String::new()
            };
            format!(
                "file {:o} {:?}{linked}",
                meta.mode() & 0o777,
                String::from_utf8_lossy(&fs::read(&path).unwrap())
            )
        };
        let mtime = meta.modified().unwrap();
        out.insert(name, format!("{kind} @{mtime:?}"));
    }
    out
}

fn inject(compilation: &CompilationCache, ws: &Path, id: &WorkspaceId) -> std::path::PathBuf {
    compilation
        .workspaces
        .inject(ws, id, WorkspaceDetails::default(), &mut quiet())
        .unwrap()
        .unwrap()
        .path
}

#[rstest]
fn faithful_add_and_copy_out_keep_modes_times_hard_links_and_odd_names(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = rich_workspace(&root, "ws", false);
    let expected = faithful_snapshot(&ws, true);
    assert!(expected["zmk/readonly.txt"].starts_with("file 444"));
    assert!(expected["zmk/group.txt"].contains("linked to zephyr/linked.txt"));

    let cached = inject(&compilation, &ws, &repo());
    assert_eq!(faithful_snapshot(&cached, true), expected, "in the cache");

    let found = compilation.workspaces.get(&repo()).unwrap().unwrap();
    let target = root.path().join("restored");
    compilation
        .workspaces
        .copy_to(&found, &target, &mut quiet())
        .unwrap();
    assert_eq!(faithful_snapshot(&target, true), expected, "copied out");
}

#[rstest]
fn faithful_export_then_import_keeps_modes_times_and_hard_links(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[values(ArchiveFormat::TarGz, ArchiveFormat::Tar, ArchiveFormat::Zip)] format: ArchiveFormat,
) {
    let compilation = open(&coordinator, &root, &clock);
    let zip = format == ArchiveFormat::Zip;
    let ws = rich_workspace(&root, "ws", zip);
    // Zip has no hard links: the second name comes back as a file of its own, same content.
    let expected = faithful_snapshot(&ws, !zip);
    inject(&compilation, &ws, &repo());
    let archive = root.path().join(format!("ws.{}", format.extension()));
    compilation
        .workspaces
        .export(
            &repo(),
            &archive,
            ExportOptions {
                format,
                include_git: true,
            },
            &mut quiet(),
        )
        .unwrap();

    let imported = compilation
        .workspaces
        .import(
            &archive,
            &branch("main"),
            WorkspaceDetails::default(),
            &mut quiet(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(faithful_snapshot(&imported.path, !zip), expected);
}

/// Issue 19: an archive made by `tar` of a workspace with a hard link in it was refused
/// outright. Both names inside the workspace: imported, and still one file.
#[rstest]
fn a_tar_made_archive_with_a_hard_link_is_imported_linked(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = rich_workspace(&root, "ws", false);
    let archive = root.path().join("by-tar.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&ws)
        .args(["zmk", "zephyr", "modules", ".west"])
        .status()
        .unwrap();
    assert!(status.success());

    let imported = compilation
        .workspaces
        .import(&archive, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap()
        .unwrap();
    let first = fs::metadata(imported.path.join("zmk/group.txt")).unwrap();
    let second = fs::metadata(imported.path.join("zephyr/linked.txt")).unwrap();
    assert_eq!(first.ino(), second.ino(), "still one file");
    assert_eq!(
        faithful_snapshot(&imported.path, true),
        faithful_snapshot(&ws, true)
    );
}

/// A hard link whose first name is left out (a `.git` directory, with `.git` excluded) is
/// written as a file of its own from the first name's content.
#[rstest]
fn a_hard_link_to_a_file_left_out_gets_the_content(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open_with(
        &coordinator,
        &config(&root, &clock),
        CompilationOptions {
            git: GitHandling::Exclude,
            ..Default::default()
        },
    );
    let ws = root.path().join("ws");
    write(&ws.join("zmk/.git/objects/blob"), b"shared content");
    fs::hard_link(ws.join("zmk/.git/objects/blob"), ws.join("zmk/kept")).unwrap();
    let archive = root.path().join("ws.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&ws)
        .arg("zmk")
        .status()
        .unwrap();
    assert!(status.success());

    let imported = compilation
        .workspaces
        .import(&archive, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap()
        .unwrap();
    assert_eq!(
        fs::read(imported.path.join("zmk/kept")).unwrap(),
        b"shared content"
    );
    assert!(!imported.path.join("zmk/.git").exists());
}

/// Issue 19: a symlink out of the workspace was accepted by `add`, exported, then refused by
/// `import` of the same archive. Now refused on every way in by default, naming the link, and
/// accepted on every way in when allowed.
#[rstest]
fn escaping_symlinks_are_refused_on_every_way_in_naming_the_link(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
    #[values("/etc", "../../outside")] target: &str,
) {
    let compilation = open(&coordinator, &root, &clock);
    let ws = rich_workspace(&root, "ws", false);
    std::os::unix::fs::symlink(target, ws.join("zmk/escaping")).unwrap();
    let archive = root.path().join("ws.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&archive)
        .arg("-C")
        .arg(&ws)
        .args(["zmk", "zephyr", "modules", ".west"])
        .status()
        .unwrap();
    assert!(status.success());
    let workspaces = &compilation.workspaces;

    let by_add = workspaces
        .inject(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap_err()
        .to_string();
    let by_dir_import = workspaces
        .import(&ws, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap_err()
        .to_string();
    let by_archive_import = workspaces
        .import(&archive, &repo(), WorkspaceDetails::default(), &mut quiet())
        .unwrap_err()
        .to_string();
    for message in [&by_add, &by_dir_import, &by_archive_import] {
        assert!(message.contains("zmk/escaping"), "{message}");
        assert!(message.contains("outside"), "{message}");
    }
    assert!(
        compilation.cache.keys().unwrap().is_empty(),
        "nothing stored"
    );

    let allowing = open_with(
        &Coordinator::new(),
        &cache_test_support::config_with(root.path().join("another-cache"), &clock),
        CompilationOptions {
            allow_escaping_symlinks: true,
            ..Default::default()
        },
    );
    let stored = inject(&allowing, &ws, &repo());
    assert_eq!(
        fs::read_link(stored.join("zmk/escaping")).unwrap(),
        Path::new(target)
    );
    allowing
        .workspaces
        .import(
            &archive,
            &branch("main"),
            WorkspaceDetails::default(),
            &mut quiet(),
        )
        .unwrap()
        .unwrap();
}
