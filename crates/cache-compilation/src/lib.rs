//! `cache-compilation`: the ZMK workspace cache and the firmware build-artifact cache, kept in
//! the shared cache's `compilation` tag.
//!
//! # Overview
//!
//! - [`create_compilation_cache_service`] (on the process-wide default coordinator) and
//!   [`CompilationCache::open`] (on a given [`cache_core::Coordinator`]) take a
//!   [`cache_core::UserCacheConfig`] and give a [`CompilationCache`]: the tag's shared instance
//!   and three services over it. Both go through the coordinator's
//!   `create_cache_from_user_config`, so the config's root is honoured (the original's factories
//!   disagreed: its defect 7), and TTLs come from the config's [`cache_core::CacheTtlConfig`].
//! - [`WorkspaceService`]: ZMK west workspaces (`zmk`, `zephyr`, `modules`, `.west`) per
//!   repository and per repository + branch ([`WorkspaceId`]), each a directory owned by its
//!   entry (counted in the size limit, removed with the entry). Cache, inject, import from a
//!   directory or archive, look up (branch first, then repository), copy out, export to
//!   tar.gz / tar / zip, list, delete, clean up. [`WorkspaceMetadata`] is stored with each.
//! - [`BuildService`]: firmware artifacts (`*.uf2`, `*.hex`, `*.bin`, `*.elf`, `*.kconfig`,
//!   `*.dts`, `*.dts.pre`, `devicetree_generated.h`) per [`BuildInputs`] (repository, branch,
//!   the commit it resolved to, the toolchain digest, keymap and config content hashes, board,
//!   shield); store, restore into a directory, list,
//!   delete, clean up, and `get_or_build`: from the cache, or built once on the machine
//!   however many threads and processes ask at once (cache-core's single-flight lease).
//!   [`BuildMetadata`] is stored with each.
//! - [`DockerImageCache`]: whether a docker image was available, for an hour.
//! - [`CompilationOptions`]: `.git` handling ([`GitHandling`], one setting for every way into
//!   the cache), whether a hit restarts a workspace's TTL (not by default), the docker TTL.
//! - Long operations report [`Progress`] (files and bytes, done and total) to a
//!   `&mut dyn FnMut(Progress)`.
//! - Keys are readable by kind (`workspace:repo:…`, `workspace:branch:…`, `build:…`,
//!   `docker-image:…`) followed by full-width hashes ([`WorkspaceId::key_bytes`],
//!   [`BuildInputs::key_bytes`], the crate README).
//!
//! # Example
//!
//! ```
//! use std::fs;
//! use cache_core::{Coordinator, UserCacheConfig};
//! use cache_compilation::{BuildInputs, CompilationCache, WorkspaceDetails, WorkspaceId};
//!
//! # fn main() -> Result<(), cache_compilation::CompilationError> {
//! let root = tempfile::tempdir().expect("temp dir");
//! let config = UserCacheConfig { cache_path: Some(root.path().join("cache")), ..UserCacheConfig::default() };
//! let compilation = CompilationCache::open(&Coordinator::new(), &config)?;
//!
//! // A (very small) west workspace, as a build would have set it up.
//! let workspace = root.path().join("workspace");
//! fs::create_dir_all(workspace.join("zmk/app")).expect("mkdir");
//! fs::write(workspace.join("zmk/app/CMakeLists.txt"), "project(zmk)").expect("write");
//! fs::create_dir_all(workspace.join("zephyr")).expect("mkdir");
//!
//! let main = WorkspaceId::branch("zmkfirmware/zmk", "main")?;
//! compilation.workspaces.cache_workspace(&workspace, &main, WorkspaceDetails::default(), &mut |_| {})?;
//! let found = compilation.workspaces.get(&main)?.expect("cached");
//! assert!(found.path.join("zmk/app/CMakeLists.txt").is_file());
//!
//! // Firmware artifacts of a build, keyed by what it was built from.
//! let build_dir = root.path().join("build");
//! fs::create_dir_all(build_dir.join("zephyr")).expect("mkdir");
//! fs::write(build_dir.join("zephyr/zmk.uf2"), b"firmware").expect("write");
//! // Pinned to the commit the branch resolved to and the toolchain image's digest, so that a
//! // build is never served after the branch moves.
//! let inputs = BuildInputs::new("zmkfirmware/zmk", "main", "keymap-hash", "config-hash")
//!     .pinned("4f1c6e0d9b2a8c7e5f3d1b0a9c8e7f6d5c4b3a29", "zmkfirmware/zmk-build-arm@sha256:8b1a99");
//! compilation.builds.store(&inputs, &build_dir, &mut |_| {})?;
//! let out = root.path().join("out");
//! compilation.builds.restore(&inputs, &out, &mut |_| {})?.expect("cached");
//! assert_eq!(fs::read(out.join("zephyr/zmk.uf2")).expect("read"), b"firmware");
//! # Ok(())
//! # }
//! ```

mod archive;
mod build;
mod context;
mod docker;
mod error;
mod keys;
mod manifest;
mod metadata;
mod progress;
mod service;
mod tree;
pub mod ttl;
mod workspace;

pub use archive::ArchiveFormat;
pub use build::{BuildService, CachedBuild, is_artifact};
pub use context::{CompilationOptions, DEFAULT_MAX_SIZE_BYTES};
pub use docker::{DockerImageCache, DockerImageKey};
pub use error::{CompilationError, Result};
pub use keys::{
    BUILD_KEY_PREFIX, BuildInputs, COMPILATION_TAG, DOCKER_IMAGE_KEY_PREFIX, REMOTE_SHARING,
    WORKSPACE_KEY_PREFIX, WorkspaceId, WorkspaceLevel,
};
pub use metadata::{
    BuildArtifact, BuildMetadata, DockerImageCheck, WorkspaceDetails, WorkspaceMetadata,
    WorkspaceOrigin,
};
pub use progress::{PROGRESS_CHUNK_BYTES, Progress, ProgressStage};
pub use service::{CompilationCache, create_compilation_cache_service};
pub use tree::{GitHandling, WORKSPACE_COMPONENTS};
pub use workspace::{
    CachedWorkspace, ExportOptions, ExportReport, LinkMode, RestoreReport, STALE_WORKSPACE_AGE,
    WorkspaceService,
};
