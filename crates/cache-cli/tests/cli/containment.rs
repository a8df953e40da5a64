//! Containment through the binary (issue 13, items 5, 6 and 14): symlinks planted below the root
//! are never followed by `set`, `cleanup` or `doctor --repair`, and a stray file stops neither.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is a failed test with its location"
)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::support::Sandbox;

/// Every file under `dir` with its content (directories as empty entries), never following a
/// symlink.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        for entry in fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                pending.push(path.clone());
                found.insert(path, Vec::new());
            } else if meta.is_file() {
                found.insert(path.clone(), fs::read(&path).unwrap());
            } else {
                found.insert(path.clone(), b"symlink".to_vec());
            }
        }
    }
    found
}

/// A tag `t` holding a blob value and a staged-and-stored directory, and `outside/` holding the
/// user's files, which a sweep that followed a link would remove.
fn prepared() -> (Sandbox, PathBuf) {
    let sandbox = Sandbox::new();
    let big = sandbox.path("big");
    fs::write(&big, vec![7u8; 300_000]).unwrap();
    sandbox
        .run(&[
            "set",
            "--tag",
            "t",
            "large",
            "--file",
            &big.to_string_lossy(),
        ])
        .expect_code(0);
    let outside = sandbox.path("outside");
    fs::create_dir_all(outside.join("files")).unwrap();
    fs::create_dir_all(outside.join("projects/firmware")).unwrap();
    fs::write(outside.join("files/sentinel"), b"precious").unwrap();
    fs::write(outside.join("files/notes.txt"), b"the user's").unwrap();
    fs::write(outside.join("projects/firmware/main.c"), b"int main;").unwrap();
    (sandbox, outside)
}

/// Issue 13, item 5: with `<tag>/blobs/tmp` or `<tag>/dirs/.staging` a symlink out of the root,
/// `glovebox-cache cleanup`, `doctor --repair` and `set` fail with an error naming the link and
/// delete nothing it points to (before, cleanup deleted every file there and exited 0).
#[test]
fn trust_05_cleanup_and_repair_never_follow_a_symlinked_temp_directory() {
    for (relative, target) in [("t/blobs/tmp", "files"), ("t/dirs/.staging", "projects")] {
        let (sandbox, outside) = prepared();
        let link = sandbox.root().join(relative);
        if link.exists() {
            fs::remove_dir_all(&link).unwrap();
        }
        fs::create_dir_all(link.parent().unwrap()).unwrap();
        symlink(outside.join(target), &link).unwrap();
        let before = contents(&outside);
        let link_text = link.to_string_lossy().into_owned();
        for args in [
            &["cleanup"][..],
            &["doctor", "--repair"],
            &[
                "set",
                "--tag",
                "t",
                "again",
                "--file",
                &sandbox.path("big").to_string_lossy(),
            ],
            &["cleanup"],
        ] {
            let run = sandbox.run(args);
            // A maintenance step must look there, so it fails naming the link; a `set` of a
            // blob that does not need the staging directory may succeed.
            let must_refuse = args[0] != "set" || relative == "t/blobs/tmp";
            if must_refuse || run.code != 0 {
                assert_ne!(run.code, 0, "{args:?} with {relative} planted: {run:?}");
                assert!(
                    run.stderr.contains(&link_text) || run.stdout().contains(&link_text),
                    "{args:?} names the link: {run:?}"
                );
            }
            assert_eq!(
                contents(&outside),
                before,
                "{args:?} with {relative} planted"
            );
        }
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}

/// Issue 13, item 14: a `README` directly under `<tag>/blobs/` and under `<tag>/dirs/` is
/// skipped (and left alone) by `cleanup`, `doctor` and `doctor --repair`, which all succeed.
#[test]
fn trust_14_a_stray_readme_never_stops_cleanup_or_doctor() {
    let (sandbox, _) = prepared();
    let strays = [
        sandbox.root().join("t/blobs/README"),
        sandbox.root().join("t/dirs/README"),
    ];
    for stray in &strays {
        fs::create_dir_all(stray.parent().unwrap()).unwrap();
        fs::write(stray, b"notes").unwrap();
    }
    for args in [
        &["cleanup"][..],
        &["doctor"],
        &["doctor", "--repair"],
        &["cleanup"],
    ] {
        sandbox.run(args).expect_code(0);
    }
    assert_eq!(
        sandbox
            .run(&["get", "--tag", "t", "large"])
            .expect_code(0)
            .stdout,
        vec![7u8; 300_000]
    );
    for stray in &strays {
        assert_eq!(fs::read(stray).unwrap(), b"notes");
    }
}
