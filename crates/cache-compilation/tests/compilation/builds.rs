//! The build service on real directories: which files are artifacts, store and restore with
//! relative paths, damaged builds, list, delete.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cache_compilation::{BuildArtifact, BuildInputs, CompilationCache, CompilationError};
use cache_core::{Coordinator, ManualClock};
use rstest::rstest;
use tempfile::TempDir;

use crate::{clock, coordinator, open, quiet, root, snapshot, write};

fn inputs() -> BuildInputs {
    BuildInputs::new("zmkfirmware/zmk", "main", "keymap-hash", "config-hash")
        .with_board("glove80_lh")
}

/// A ZMK build directory: artifacts at several depths among files that are not artifacts.
fn fake_build(root: &TempDir) -> PathBuf {
    let build = root.path().join("build");
    write(&build.join("zephyr/zmk.uf2"), b"UF2 firmware");
    write(&build.join("zephyr/zmk.hex"), b":10000000");
    write(&build.join("zephyr/zmk.bin"), &[1u8; 300]);
    write(&build.join("zephyr/zmk.elf"), b"\x7fELF");
    write(&build.join("zephyr/.config"), b"CONFIG_X=y");
    write(&build.join("zephyr/zephyr.dts"), b"/dts-v1/;");
    write(&build.join("zephyr/zephyr.dts.pre"), b"# 1 \"dts\"");
    write(
        &build.join("zephyr/include/generated/devicetree_generated.h"),
        b"#define DT 1",
    );
    write(&build.join("zephyr/misc/zmk.kconfig"), b"config ZMK");
    write(&build.join("CMakeCache.txt"), b"not an artifact");
    write(&build.join("zephyr/app/libapp.a"), b"not an artifact");
    write(&build.join("zephyr/main.c.obj"), b"not an artifact");
    build
}

const ARTIFACTS: [&str; 8] = [
    "zephyr/include/generated/devicetree_generated.h",
    "zephyr/misc/zmk.kconfig",
    "zephyr/zephyr.dts",
    "zephyr/zephyr.dts.pre",
    "zephyr/zmk.bin",
    "zephyr/zmk.elf",
    "zephyr/zmk.hex",
    "zephyr/zmk.uf2",
];

fn files_only(dir: &Path) -> Vec<String> {
    snapshot(dir)
        .into_iter()
        .filter(|(_, kind)| kind != "dir")
        .map(|(path, _)| path)
        .collect()
}

fn store(compilation: &CompilationCache, build: &Path) -> cache_compilation::CachedBuild {
    compilation
        .builds
        .store(&inputs(), build, &mut quiet())
        .unwrap()
        .unwrap()
}

#[rstest]
fn only_artifacts_are_stored_with_their_relative_paths(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let build = fake_build(&root);
    let cached = store(&compilation, &build);

    assert_eq!(files_only(&cached.path), ARTIFACTS);
    let recorded: Vec<&str> = cached
        .metadata
        .artifacts
        .iter()
        .map(|a| a.path.as_str())
        .collect();
    assert_eq!(recorded, ARTIFACTS);
    assert!(cached.metadata.artifacts.contains(&BuildArtifact {
        path: "zephyr/zmk.bin".to_owned(),
        size_bytes: 300,
    }));
    assert_eq!(cached.metadata.inputs, inputs());
    assert_eq!(
        cached.metadata.size_bytes,
        cached
            .metadata
            .artifacts
            .iter()
            .map(|a| a.size_bytes)
            .sum::<u64>()
    );
    assert_eq!(
        compilation.builds.get(&inputs()).unwrap().unwrap().path,
        cached.path
    );
}

#[rstest]
fn restore_writes_the_artifacts_into_a_target_and_replaces_what_is_there(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let build = fake_build(&root);
    store(&compilation, &build);

    let target = root.path().join("restored");
    write(&target.join("zephyr/zmk.uf2"), b"stale firmware");
    write(&target.join("keep.txt"), b"unrelated");
    #[cfg(unix)]
    {
        // A symlink where an artifact goes is replaced, never written through.
        write(&root.path().join("victim"), b"untouched");
        crate::symlink(
            root.path().join("victim").to_str().unwrap(),
            &target.join("zephyr/zmk.hex"),
        );
    }
    let mut last = None;
    let restored = compilation
        .builds
        .restore(&inputs(), &target, &mut |p| last = Some(p))
        .unwrap()
        .unwrap();

    assert_eq!(restored.metadata.inputs, inputs());
    for artifact in ARTIFACTS {
        assert_eq!(
            fs::read(target.join(artifact)).unwrap(),
            fs::read(build.join(artifact)).unwrap(),
            "{artifact}"
        );
    }
    assert_eq!(fs::read(target.join("keep.txt")).unwrap(), b"unrelated");
    assert_eq!(fs::read(root.path().join("victim")).unwrap(), b"untouched");
    let last = last.unwrap();
    assert!(
        last.is_complete() && last.files_total == ARTIFACTS.len() as u64,
        "{last:?}"
    );

    let other = BuildInputs::new("zmkfirmware/zmk", "main", "other", "config-hash");
    let missing_target = root.path().join("never");
    assert_eq!(
        compilation
            .builds
            .restore(&other, &missing_target, &mut quiet())
            .unwrap(),
        None
    );
    assert!(!missing_target.exists(), "a miss writes nothing");
}

#[rstest]
fn a_build_directory_without_artifacts_is_refused(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let build = root.path().join("empty-build");
    write(&build.join("CMakeCache.txt"), b"nothing to flash");
    #[cfg(unix)]
    crate::symlink("/etc/hostname", &build.join("linked.uf2"));
    let err = compilation
        .builds
        .store(&inputs(), &build, &mut quiet())
        .unwrap_err();
    assert!(matches!(err, CompilationError::NoArtifacts { .. }), "{err}");

    let err = compilation
        .builds
        .store(&inputs(), &root.path().join("nowhere"), &mut quiet())
        .unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
}

#[rstest]
fn a_damaged_build_is_a_miss_and_is_removed(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let build = fake_build(&root);
    let cached = store(&compilation, &build);
    let intact_inputs = inputs().with_shield("other");
    compilation
        .builds
        .store(&intact_inputs, &build, &mut quiet())
        .unwrap();

    fs::write(cached.path.join("zephyr/zmk.uf2"), b"truncated").unwrap();
    assert_eq!(compilation.builds.cleanup().unwrap(), 1);
    assert_eq!(compilation.builds.get(&inputs()).unwrap(), None);
    assert!(!cached.path.exists());
    assert!(compilation.builds.get(&intact_inputs).unwrap().is_some());

    let again = store(&compilation, &build);
    fs::remove_file(again.path.join("zephyr/zmk.elf")).unwrap();
    assert_eq!(
        compilation.builds.get(&inputs()).unwrap(),
        None,
        "missing artifact"
    );
}

#[rstest]
fn list_is_newest_first_and_delete_removes_one(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let build = fake_build(&root);
    let older = store(&compilation, &build);
    clock.advance(std::time::Duration::from_secs(60));
    let newer_inputs = inputs().with_shield("nice_view");
    compilation
        .builds
        .store(&newer_inputs, &build, &mut quiet())
        .unwrap();

    let listed: Vec<BuildInputs> = compilation
        .builds
        .list()
        .unwrap()
        .into_iter()
        .map(|b| b.metadata.inputs)
        .collect();
    assert_eq!(listed, [newer_inputs.clone(), inputs()]);

    assert!(compilation.builds.delete(&inputs()).unwrap());
    assert!(!compilation.builds.delete(&inputs()).unwrap());
    assert!(!older.path.exists(), "its artifacts went with it");
    assert_eq!(compilation.builds.list().unwrap().len(), 1);
}

#[rstest]
fn invalid_inputs_are_refused_before_anything_is_read(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let bad = BuildInputs::new("", "main", "k", "c");
    let err = compilation
        .builds
        .store(&bad, root.path(), &mut quiet())
        .unwrap_err();
    assert!(
        matches!(
            err,
            CompilationError::InvalidInput {
                what: "repository",
                ..
            }
        ),
        "{err}"
    );
    assert!(compilation.builds.get(&bad).is_err());
}
