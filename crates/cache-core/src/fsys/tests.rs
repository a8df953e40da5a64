//! Unit tests of the filesystem layer (`fsys/`), in a file of their own to keep it short.

use super::temps::{TempOwner, boot_id, judge_temp_name};
use super::*;
use crate::process::ProcessIdentity;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{PermissionsExt, symlink};

/// A scratch root (0700, this user's) with an outside directory beside it holding a sentinel.
struct Scratch {
    _temp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    sentinel: PathBuf,
}

fn scratch() -> Scratch {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("root");
    let outside = temp.path().join("outside");
    fs::create_dir(&root).unwrap();
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir(&outside).unwrap();
    let sentinel = outside.join("sentinel");
    fs::write(&sentinel, b"precious").unwrap();
    Scratch {
        _temp: temp,
        root,
        outside,
        sentinel,
    }
}

impl Scratch {
    fn assert_outside_untouched(&self) {
        assert_eq!(fs::read(&self.sentinel).unwrap(), b"precious");
        let names: Vec<_> = fs::read_dir(&self.outside)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["sentinel"], "nothing created outside the root");
    }
}

#[test]
fn a_symlinked_directory_is_refused_naming_its_path() {
    let scratch = scratch();
    symlink(&scratch.outside, scratch.root.join("blobs")).unwrap();
    let root = Dir::open_root(&scratch.root).unwrap();
    for result in [
        root.dir("blobs").map(drop),
        root.dir_or_create("blobs").map(drop),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, CacheError::UnsafePath { path, reason }
                if *path == scratch.root.join("blobs") && reason.contains("symlink")),
            "{err}"
        );
    }
    fs::write(scratch.root.join("file"), b"x").unwrap();
    let err = root.dir("file").unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    assert!(root.dir("missing").unwrap().is_none());
    scratch.assert_outside_untouched();
}

#[test]
fn files_are_created_exclusively_and_never_written_through_a_symlink() {
    let scratch = scratch();
    let root = Dir::open_root(&scratch.root).unwrap();
    symlink(&scratch.sentinel, scratch.root.join("planted")).unwrap();
    symlink(scratch.outside.join("new"), scratch.root.join("dangling")).unwrap();
    for name in ["planted", "dangling"] {
        let err = root.create_new_file(name).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
    let mut file = root.create_new_file("fresh").unwrap();
    file.write_all(b"ours").unwrap();
    let mode = fs::metadata(scratch.root.join("fresh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(root.create_new_file("fresh").is_err(), "exclusive");
    assert!(root.open_file("planted").unwrap().is_none(), "not followed");
    let mut read = String::new();
    root.open_file("fresh")
        .unwrap()
        .unwrap()
        .read_to_string(&mut read)
        .unwrap();
    assert_eq!(read, "ours");
    scratch.assert_outside_untouched();
}

#[test]
fn replace_file_unlinks_a_planted_temp_and_replaces_a_symlinked_destination() {
    let scratch = scratch();
    let root = Dir::open_root(&scratch.root).unwrap();
    symlink(&scratch.sentinel, scratch.root.join("usage.tmp-1")).unwrap();
    symlink(&scratch.sentinel, scratch.root.join("usage")).unwrap();
    root.replace_file("usage", "usage.tmp-1", |file| file.write_all(b"1 1\n"))
        .unwrap();
    let meta = fs::symlink_metadata(scratch.root.join("usage")).unwrap();
    assert!(meta.is_file(), "the link was replaced, not followed");
    assert_eq!(fs::read(scratch.root.join("usage")).unwrap(), b"1 1\n");
    assert!(!scratch.root.join("usage.tmp-1").exists());
    scratch.assert_outside_untouched();
}

/// Issue 13, item 16: a write that fails (a full disk) leaves no temp file behind.
#[test]
fn trust_16_a_failed_replace_leaves_no_temp_file() {
    let scratch = scratch();
    let root = Dir::open_root(&scratch.root).unwrap();
    let err = root
        .replace_file("usage", "usage.tmp-7", |file| {
            file.write_all(b"12")?;
            Err(io::Error::from_raw_os_error(28))
        })
        .unwrap_err();
    assert!(err.to_string().contains("usage.tmp-7"), "{err}");
    // A rename that fails (a directory in the way) too.
    fs::create_dir(scratch.root.join("blocked")).unwrap();
    fs::write(scratch.root.join("blocked/inside"), b"x").unwrap();
    root.replace_file("blocked", "blocked.tmp", |file| file.write_all(b"x"))
        .unwrap_err();
    let names: Vec<_> = fs::read_dir(&scratch.root)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["blocked"], "no temp file is left behind");
}

#[test]
fn remove_tree_unlinks_symlinks_inside_and_never_follows_them() {
    let scratch = scratch();
    let tree = scratch.root.join("tree");
    fs::create_dir_all(tree.join("a/b/c")).unwrap();
    fs::write(tree.join("a/b/c/file"), b"x").unwrap();
    symlink(&scratch.outside, tree.join("a/to-outside")).unwrap();
    symlink(&scratch.sentinel, tree.join("a/b/to-sentinel")).unwrap();
    for index in 0..50 {
        fs::create_dir(tree.join(format!("wide-{index}"))).unwrap();
    }
    let root = Dir::open_root(&scratch.root).unwrap();
    assert!(root.remove_tree("tree").unwrap());
    assert!(!tree.exists());
    assert!(!root.remove_tree("tree").unwrap(), "already gone");
    // A symlink given as the tree is unlinked itself.
    symlink(&scratch.outside, scratch.root.join("link")).unwrap();
    assert!(root.remove_tree("link").unwrap());
    assert!(fs::symlink_metadata(scratch.root.join("link")).is_err());
    scratch.assert_outside_untouched();
}

/// Issue 13, item 13: a tree is charged what it occupies on disk, directories and symlinks
/// included, not the lengths of its files.
#[test]
fn trust_13_measure_tree_counts_allocated_blocks_and_does_not_follow_symlinks() {
    let scratch = scratch();
    let tree = scratch.root.join("tree");
    fs::create_dir_all(tree.join("a/b")).unwrap();
    for index in 0..20 {
        fs::write(tree.join(format!("a/one-{index}")), b"1").unwrap();
        fs::create_dir(tree.join(format!("a/b/empty-{index}"))).unwrap();
    }
    fs::write(scratch.outside.join("big"), vec![7u8; 1 << 20]).unwrap();
    symlink(scratch.outside.join("big"), tree.join("link")).unwrap();
    let root = Dir::open_root(&scratch.root).unwrap();
    let size = root.measure_tree("tree").unwrap();
    // What `du` would add up: every entry's own blocks, found without following links.
    let mut expected = 0u64;
    let mut entries = 0u64;
    let mut length = 0u64;
    let mut visit = vec![tree.clone()];
    expected += std::os::unix::fs::MetadataExt::blocks(&fs::metadata(&tree).unwrap()) * 512;
    while let Some(dir) = visit.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            entries += 1;
            expected += std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
            if meta.is_dir() {
                visit.push(path);
            } else {
                length += meta.len();
            }
        }
    }
    assert_eq!(size.entries, entries);
    assert_eq!(size.entries, 2 + 20 + 20 + 1);
    assert_eq!(size.length, length);
    assert_eq!(size.allocated, expected);
    assert!(size.length < 1 << 20, "the link's target is not counted");
    assert!(
        size.allocated >= size.length,
        "one-byte files occupy whole blocks: {size:?}"
    );
}

#[test]
fn a_root_or_tag_directory_another_user_could_change_is_refused() {
    let scratch = scratch();
    fs::set_permissions(&scratch.root, fs::Permissions::from_mode(0o775)).unwrap();
    let err = Dir::open_root(&scratch.root).unwrap_err();
    assert!(
        matches!(&err, CacheError::UnsafePath { path, reason }
            if *path == scratch.root && reason.contains("writable by its group")),
        "{err}"
    );
    fs::set_permissions(&scratch.root, fs::Permissions::from_mode(0o700)).unwrap();
    let tag = scratch.root.join("t");
    fs::create_dir(&tag).unwrap();
    fs::set_permissions(&tag, fs::Permissions::from_mode(0o1777)).unwrap();
    let err = Dir::open_tag(&scratch.root, "t", false).unwrap_err();
    assert!(err.to_string().contains("writable by others"), "{err}");
    fs::set_permissions(&tag, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&tag, Some(65534), None)
        .unwrap_or_else(|err| panic!("chown to 65534 (tests run as root): {err}"));
    let err = Dir::open_tag(&scratch.root, "t", false).unwrap_err();
    assert!(err.to_string().contains("owned by uid 65534"), "{err}");
}

#[test]
fn temp_names_say_whose_they_are() {
    let mine = temp_name(7);
    assert!(mine.starts_with(&format!("{}-", std::process::id())));
    let me = ProcessIdentity::current();
    if me.pid_namespace == 0 || boot_id() == "0" {
        // No /proc: nothing can be judged.
        assert_eq!(judge_temp_name(OsStr::new(&mine)), TempOwner::Unknown);
        return;
    }
    assert_eq!(judge_temp_name(OsStr::new(&mine)), TempOwner::Running);
    // No process has id 4 000 000 000 (pid_max is at most 2^22).
    let dead = format!("4000000000-{}-{}-0", me.pid_namespace, boot_id());
    assert_eq!(judge_temp_name(OsStr::new(&dead)), TempOwner::Ended);
    let other_namespace = format!("4000000000-{}-{}-0", me.pid_namespace + 1, boot_id());
    assert_eq!(
        judge_temp_name(OsStr::new(&other_namespace)),
        TempOwner::Unknown
    );
    let other_host = format!("4000000000-{}-{}-0", me.pid_namespace, "ab".repeat(16));
    assert_eq!(judge_temp_name(OsStr::new(&other_host)), TempOwner::Unknown);
    assert_eq!(
        judge_temp_name(OsStr::new("4000000000-0")),
        TempOwner::Unknown,
        "the older form does not say which namespace"
    );
    for stray in ["README", "-1", "x-1", "12", ""] {
        assert_eq!(judge_temp_name(OsStr::new(stray)), TempOwner::NotATemp);
    }
}
