//! Integration tests of `cache-compilation`'s public API on real temp directories, one module
//! per area, in one test binary. Every test uses its own temp root and its own `Coordinator`.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed unwrap is a failed test with its location"
)]

mod archives;
mod builds;
mod defects;
mod docker;
mod faithful;
mod keys;
mod restore;
mod ttl;
mod workspaces;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cache_compilation::{
    CompilationCache, CompilationOptions, Progress, WorkspaceDetails, WorkspaceId,
};
use cache_core::{Coordinator, ManualClock, UserCacheConfig};
use tempfile::TempDir;

/// A full commit id and a toolchain digest, what every build's inputs are pinned to.
pub(crate) const COMMIT: &str = "4f1c6e0d9b2a8c7e5f3d1b0a9c8e7f6d5c4b3a29";
pub(crate) const TOOLCHAIN: &str = "zmkfirmware/zmk-build-arm@sha256:8b1a9953c4611296a827abf8c47804d7e6c49c6b2b6bd4f8e3f6a1c2b5d7e9f0";

pub(crate) const HOUR: Duration = Duration::from_secs(60 * 60);
pub(crate) const DAY: Duration = Duration::from_secs(24 * 60 * 60);

// The shared fixtures: a temp directory (for the cache root and the test's own files), a fresh
// coordinator, a manual clock.
pub(crate) use cache_test_support::{clock, coordinator, root};

/// A user config whose cache root is `<root>/cache` and whose clock is `clock`.
pub(crate) fn config(root: &TempDir, clock: &Arc<ManualClock>) -> UserCacheConfig {
    cache_test_support::config_with(root.path().join("cache"), clock)
}

/// The compilation cache for `config` with `options`.
pub(crate) fn open_with(
    coordinator: &Coordinator,
    config: &UserCacheConfig,
    options: CompilationOptions,
) -> CompilationCache {
    CompilationCache::open_with_options(coordinator, config, options).unwrap()
}

/// The compilation cache under `root` with default options.
pub(crate) fn open(
    coordinator: &Coordinator,
    root: &TempDir,
    clock: &Arc<ManualClock>,
) -> CompilationCache {
    open_with(
        coordinator,
        &config(root, clock),
        CompilationOptions::default(),
    )
}

/// A progress callback that ignores progress.
pub(crate) fn quiet() -> impl FnMut(Progress) {
    |_| {}
}

pub(crate) fn write(path: &Path, content: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

#[cfg(unix)]
pub(crate) fn symlink(target: &str, at: &Path) {
    fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, at).unwrap();
}

#[cfg(unix)]
pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(unix)]
pub(crate) fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

/// A small fake west workspace under `<root>/<name>`: the four components with `.git`
/// directories at three depths, an executable script, relative symlinks (one with a long
/// target), a path longer than 100 bytes, a non-ASCII name, and two top-level directories that
/// are not part of a workspace (`config`, `build`).
pub(crate) fn fake_workspace(root: &TempDir, name: &str) -> PathBuf {
    let ws = root.path().join(name);
    write(&ws.join("zmk/app/CMakeLists.txt"), b"project(zmk)\n");
    write(&ws.join("zmk/app/west.yml"), b"manifest:\n  projects: []\n");
    write(&ws.join("zmk/.git/HEAD"), b"ref: refs/heads/main\n");
    write(&ws.join("zmk/.git/objects/pack/pack-1.pack"), &[7u8; 4096]);
    write(&ws.join("zephyr/README.rst"), b"Zephyr\n");
    write(&ws.join("zephyr/.git/HEAD"), b"ref: refs/heads/v3.5\n");
    write(
        &ws.join("zephyr/scripts/build.sh"),
        b"#!/bin/sh\necho build\n",
    );
    write(&ws.join("modules/hal/nordic/nrfx.h"), b"#define NRFX 1\n");
    write(
        &ws.join("modules/hal/nordic/.git/HEAD"),
        b"ref: refs/heads/main\n",
    );
    write(&ws.join(".west/config"), b"[manifest]\npath = config\n");
    // Longer than a tar header's 100-byte name field, and not ASCII: archives must keep both.
    let deep = "modules/lib/a-rather-long-directory-name-for-a-module/and-another-long-one-below-it/include/deeply/nested";
    write(
        &ws.join(deep).join("header-with-a-long-name.h"),
        b"#pragma once\n",
    );
    write(&ws.join("zmk/docs/\u{fc}berblick.md"), b"Deutsch\n");
    write(&ws.join("config/glove80.keymap"), b"/ { keymap {}; };\n");
    write(&ws.join("build/zephyr/zmk.uf2"), b"UF2");
    #[cfg(unix)]
    {
        set_mode(&ws.join("zephyr/scripts/build.sh"), 0o755);
        symlink("README.rst", &ws.join("zephyr/doc-link"));
        symlink(
            &format!("../../{deep}/header-with-a-long-name.h"),
            &ws.join("zmk/app/long-link"),
        );
    }
    ws
}

/// What a tree holds, without following symlinks: relative `/` path to `"dir"`, `"link -> t"`,
/// or the file's content as text. A cached workspace's content manifest (`.glovebox-manifest`
/// at its top, not part of the workspace) is left out.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(base)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            if relative == ".glovebox-manifest" {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.insert(relative, format!("link -> {}", target.display()));
            } else if meta.is_dir() {
                out.insert(relative, "dir".to_owned());
                walk(base, &path, out);
            } else {
                out.insert(
                    relative,
                    String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `snapshot` of a workspace limited to what the cache keeps: the four components, with or
/// without `.git`.
pub(crate) fn expected_workspace(ws: &Path, with_git: bool) -> BTreeMap<String, String> {
    snapshot(ws)
        .into_iter()
        .filter(|(path, _)| {
            let first = path.split('/').next().unwrap();
            ["zmk", "zephyr", "modules", ".west"].contains(&first)
                && (with_git || !path.split('/').any(|part| part == ".git"))
        })
        .collect()
}

/// Whether any path in the tree has a `.git` component.
pub(crate) fn has_git(dir: &Path) -> bool {
    snapshot(dir)
        .keys()
        .any(|path| path.split('/').any(|part| part == ".git"))
}

/// Caches `ws` as `id` with no details and no progress.
pub(crate) fn cache_ws(
    compilation: &CompilationCache,
    ws: &Path,
    id: &WorkspaceId,
) -> cache_compilation::CachedWorkspace {
    compilation
        .workspaces
        .cache_workspace(ws, id, WorkspaceDetails::default(), &mut quiet())
        .unwrap()
        .unwrap()
}

pub(crate) fn repo() -> WorkspaceId {
    WorkspaceId::repository("zmkfirmware/zmk").unwrap()
}

pub(crate) fn branch(name: &str) -> WorkspaceId {
    WorkspaceId::branch("zmkfirmware/zmk", name).unwrap()
}
