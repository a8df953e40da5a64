//! The build service on real directories: which files are artifacts, store and restore with
//! relative paths, damaged builds, list, delete, and `get_or_build` (one build for concurrent
//! callers).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cache_compilation::{BuildArtifact, BuildInputs, CompilationCache, CompilationError};
use cache_core::{CacheOptions, CacheStrategy, Coordinator, ManualClock, UserCacheConfig};
use rstest::rstest;
use tempfile::TempDir;

use crate::{clock, config, coordinator, open, open_with, quiet, root, snapshot, write};

fn inputs() -> BuildInputs {
    BuildInputs::new("zmkfirmware/zmk", "main", "keymap-hash", "config-hash")
        .pinned(crate::COMMIT, crate::TOOLCHAIN)
        .with_board("glove80_lh")
}

/// A ZMK build directory: artifacts at several depths among files that are not artifacts.
fn fake_build(root: &TempDir) -> PathBuf {
    let build = root.path().join("build");
    fill_build(&build);
    build
}

/// Writes what a ZMK build leaves in `build`.
fn fill_build(build: &Path) {
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

    let other = BuildInputs::new("zmkfirmware/zmk", "main", "other", "config-hash")
        .pinned(crate::COMMIT, crate::TOOLCHAIN);
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
    // Other firmware: a build with the same bytes would share the file (deduplication), and an
    // edit of it in place damages every build that shares it.
    write(
        &build.join("zephyr/zmk.uf2"),
        b"UF2 firmware for the other shield",
    );
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
    let bad = BuildInputs::new("", "main", "k", "c").pinned(crate::COMMIT, crate::TOOLCHAIN);
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

/// The error of the builds below: a build's own failure, or the cache's.
#[derive(Debug)]
enum BuildError {
    Compiler(String),
    Cache(CompilationError),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Compiler(message) => write!(f, "compiler: {message}"),
            BuildError::Cache(err) => err.fmt(f),
        }
    }
}

impl From<CompilationError> for BuildError {
    fn from(err: CompilationError) -> Self {
        BuildError::Cache(err)
    }
}

#[rstest]
fn two_threads_asking_for_one_build_build_it_once(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let builds = AtomicUsize::new(0);
    let barrier = Barrier::new(2);
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["out-a", "out-b"]
            .into_iter()
            .map(|out| {
                let (compilation, builds, barrier) = (&compilation, &builds, &barrier);
                let target = root.path().join(out);
                scope.spawn(move || {
                    barrier.wait();
                    let build = |dir: &Path| {
                        builds.fetch_add(1, Ordering::SeqCst);
                        // Hold the build until the other caller waits for it (an event, not a
                        // duration: the bound only ends a broken test).
                        let bound = Instant::now() + Duration::from_secs(30);
                        while compilation.cache.get_stats().unwrap().counters.waits == 0
                            && Instant::now() < bound
                        {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        fill_build(dir);
                        Ok::<(), BuildError>(())
                    };
                    let cached = compilation
                        .builds
                        .get_or_build(&inputs(), &target, build, &mut quiet())
                        .unwrap();
                    (target, cached)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        builds.load(Ordering::SeqCst),
        1,
        "one build for both callers"
    );
    let counters = compilation.cache.get_stats().unwrap().counters;
    assert_eq!(counters.computations, 1);
    assert_eq!(counters.waits, 1);
    let (first, second) = (&results[0].1, &results[1].1);
    assert_eq!(
        first.as_ref().unwrap().path,
        second.as_ref().unwrap().path,
        "both got the one cached build"
    );
    for (target, _) in &results {
        assert_eq!(files_only(target), ARTIFACTS, "{}", target.display());
    }
    // The scratch directory the build ran in is gone; only the cached build remains.
    let staging = root.path().join("cache/compilation/dirs/.staging");
    assert_eq!(fs::read_dir(&staging).unwrap().count(), 0);
}

#[rstest]
fn get_or_build_on_a_hit_copies_without_building(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let stored = store(&compilation, &fake_build(&root));
    let target = root.path().join("out");
    let found = compilation
        .builds
        .get_or_build(
            &inputs(),
            &target,
            |_: &Path| -> Result<(), BuildError> { panic!("a hit must not build") },
            &mut quiet(),
        )
        .unwrap();
    assert_eq!(found.unwrap().path, stored.path);
    assert_eq!(files_only(&target), ARTIFACTS);
}

#[rstest]
fn a_failed_build_caches_nothing_and_the_next_call_builds(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let target = root.path().join("out");
    let err = compilation
        .builds
        .get_or_build(
            &inputs(),
            &target,
            |dir: &Path| {
                write(&dir.join("zephyr/zmk.uf2"), b"half a build");
                Err(BuildError::Compiler("undefined reference".to_owned()))
            },
            &mut quiet(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::Compiler(message) if message == "undefined reference"),
        "the build's own error comes back: {err}"
    );
    assert_eq!(compilation.builds.get(&inputs()).unwrap(), None);
    assert!(!target.exists(), "nothing was copied out");

    let err = compilation
        .builds
        .get_or_build(
            &inputs(),
            &target,
            |_: &Path| Ok::<(), BuildError>(()),
            &mut quiet(),
        )
        .unwrap_err();
    assert!(
        matches!(err, BuildError::Cache(CompilationError::NoArtifacts { .. })),
        "a build that leaves no artifact: {err}"
    );

    let built = compilation
        .builds
        .get_or_build(
            &inputs(),
            &target,
            |dir: &Path| {
                fill_build(dir);
                Ok::<(), BuildError>(())
            },
            &mut quiet(),
        )
        .unwrap();
    assert_eq!(files_only(&built.unwrap().path), ARTIFACTS);
    assert_eq!(files_only(&target), ARTIFACTS);
    assert_eq!(
        compilation.cache.get_stats().unwrap().counters.computations,
        3
    );
}

#[rstest]
fn get_or_build_on_a_disabled_cache_builds_into_the_target_every_time(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let config = UserCacheConfig {
        strategy: CacheStrategy::Disabled,
        options: CacheOptions {
            clock: clock.clone(),
            ..CacheOptions::default()
        },
        ..config(&root, &clock)
    };
    let compilation = open_with(&coordinator, &config, Default::default());
    let builds = AtomicUsize::new(0);
    for out in ["out-1", "out-2"] {
        let target = root.path().join(out);
        let cached = compilation
            .builds
            .get_or_build(
                &inputs(),
                &target,
                |dir: &Path| {
                    builds.fetch_add(1, Ordering::SeqCst);
                    fill_build(dir);
                    Ok::<(), BuildError>(())
                },
                &mut quiet(),
            )
            .unwrap();
        assert_eq!(cached, None, "nothing is kept");
        assert_eq!(files_only(&target), ARTIFACTS);
    }
    assert_eq!(builds.load(Ordering::SeqCst), 2);
    assert!(
        !root.path().join("cache").exists(),
        "a disabled cache creates no files"
    );
}

/// Issue 19: a firmware cached for a branch was served for 7 days after the branch moved. The
/// build key is pinned to the commit the branch resolved to and the toolchain: a build for the
/// moved branch, or in another toolchain, is a miss.
#[rstest]
fn a_build_is_never_served_after_its_branch_moves_or_its_toolchain_changes(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let build = fake_build(&root);
    store(&compilation, &build);
    assert!(compilation.builds.get(&inputs()).unwrap().is_some());

    let moved = inputs().pinned(&"0".repeat(40), crate::TOOLCHAIN);
    assert_eq!(moved.branch, inputs().branch, "the same branch name");
    assert!(compilation.builds.get(&moved).unwrap().is_none());
    let other_toolchain = inputs().pinned(crate::COMMIT, "zmkfirmware/zmk-build-arm@sha256:00");
    assert!(compilation.builds.get(&other_toolchain).unwrap().is_none());
}

/// Builds are shared through the remote tier: what is stored with one says nothing of the
/// machine it was made on (no build directory path).
#[rstest]
fn a_stored_build_records_no_local_path(
    root: TempDir,
    coordinator: Coordinator,
    clock: Arc<ManualClock>,
) {
    let compilation = open(&coordinator, &root, &clock);
    let build = fake_build(&root);
    let cached = store(&compilation, &build);
    assert_eq!(cached.metadata.source, None);
    let found = compilation.builds.get(&inputs()).unwrap().unwrap();
    assert_eq!(found.metadata.source, None);
}
