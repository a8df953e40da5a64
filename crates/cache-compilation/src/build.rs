//! `BuildService`: firmware build artifacts, kept as one directory owned by one entry per build.

use std::ffi::OsStr;
use std::fmt::Display;
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cache_core::{CacheError, CachedDirectory};

use crate::context::Context;
use crate::error::{CompilationError, Result};
use crate::keys::{BUILD_KEY_PREFIX, BuildInputs};
use crate::metadata::{self, BuildArtifact, BuildMetadata};
use crate::progress::{Progress, ProgressStage, Tracker};
use crate::tree::{self, Node, NodeKind, Transfer, Tree, is_real_dir, slash_path};

/// File name endings of firmware artifacts, as the original's patterns (`*.uf2`, ...).
const ARTIFACT_SUFFIXES: [&str; 7] = [
    ".uf2", ".hex", ".bin", ".elf", ".kconfig", ".dts", ".dts.pre",
];
/// File names that are artifacts whatever their ending.
const ARTIFACT_NAMES: [&str; 1] = ["devicetree_generated.h"];

/// Whether a file name is a firmware artifact: `*.uf2`, `*.hex`, `*.bin`, `*.elf`,
/// `*.kconfig`, `*.dts`, `*.dts.pre` or `devicetree_generated.h` (case-sensitive, as the
/// original's globs on Linux).
pub fn is_artifact(file_name: &OsStr) -> bool {
    let Some(name) = file_name.to_str() else {
        return false;
    };
    ARTIFACT_NAMES.contains(&name)
        || ARTIFACT_SUFFIXES
            .iter()
            .any(|suffix| name.len() > suffix.len() && name.ends_with(suffix))
}

/// A build found in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedBuild {
    /// Its artifacts' directory in the cache (relative paths kept). It belongs to the cache:
    /// read it or [`BuildService::restore`] it, never change it.
    pub path: PathBuf,
    /// What was stored with it.
    pub metadata: BuildMetadata,
    /// Bytes of the directory as the cache counts it against the size limit.
    pub size_bytes: u64,
    /// When it was last read, in any process (from the store); `None` if never.
    pub last_accessed: Option<SystemTime>,
    /// When it expires.
    pub expires_at: Option<SystemTime>,
}

/// Firmware build artifacts by [`BuildInputs`], for
/// [`firmware_build`](crate::ttl::FIRMWARE_BUILD) (7 days).
///
/// **Storage decision:** a build's artifacts are one directory owned by one entry (whose value
/// is the [`BuildMetadata`]), not one blob per artifact. The directory and its metadata are
/// committed in one transaction, so a build is cached whole or not at all, and goes whole when
/// it expires or is evicted; blobs would commit one by one (a reader could meet half a build)
/// and need a manifest entry kept in step with them. What blobs would have given, sharing
/// identical files between builds, matters little for artifacts of a few MiB. Relative paths
/// are kept (`zephyr/zmk.uf2`, `glove80_lh/zephyr/zmk.uf2`). Symlinks in a build directory are
/// not artifacts and are left out.
///
/// **Sharing:** builds go through a remote tier when one is attached (`REMOTE_SHARING`): a
/// build stored on one machine is a hit on the others, the directory fetched and checked like
/// an archive import, and `get_or_build` builds once per fleet. So nothing machine-local is
/// stored with a build: its metadata records no source path.
#[derive(Clone, Debug)]
pub struct BuildService {
    context: Arc<Context>,
}

impl BuildService {
    pub(crate) fn new(context: Arc<Context>) -> Self {
        BuildService { context }
    }

    /// Caches the artifacts found under `build_dir` (at any depth) as the build of `inputs`,
    /// replacing an earlier one. Returns what was stored; `None` if the cache is disabled.
    /// A build directory without any artifact is [`CompilationError::NoArtifacts`].
    pub fn store(
        &self,
        inputs: &BuildInputs,
        build_dir: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<CachedBuild>> {
        inputs.validate()?;
        let artifacts = list_artifacts(build_dir)?;
        let mut recorded = Vec::with_capacity(artifacts.nodes.len());
        for node in &artifacts.nodes {
            let path =
                slash_path(&node.relative).ok_or_else(|| CompilationError::InvalidInput {
                    what: "artifact path",
                    reason: format!("{} is not valid UTF-8", node.relative.display()),
                })?;
            let size_bytes = match node.kind {
                NodeKind::File { len, .. } => len,
                _ => 0,
            };
            recorded.push(BuildArtifact { path, size_bytes });
        }
        let cache = &self.context.cache;
        if !cache.is_enabled() {
            return Ok(None);
        }
        let key = inputs.key_bytes();
        let what = || {
            format!(
                "the firmware build of repository {:?} branch {:?}",
                inputs.repository, inputs.branch
            )
        };
        self.context.check_fits(&what, artifacts.byte_count())?;
        let staged = cache.stage_directory()?;
        let mut tracker = Tracker::start(
            ProgressStage::Copying,
            artifacts.file_count(),
            artifacts.byte_count(),
            progress,
        );
        tree::copy_tree(
            build_dir,
            &artifacts,
            staged.path(),
            Transfer::Copy,
            &mut tracker,
        )?;
        // Sizes as copied: a file that grew or shrank since it was listed is recorded as it is.
        for artifact in &mut recorded {
            let copied = staged.path().join(&artifact.path);
            artifact.size_bytes = fs::symlink_metadata(&copied)
                .map_err(|err| CompilationError::io("reading metadata of", &copied, err))?
                .len();
        }
        // No `source`: builds go through the remote tier, and a local path is this machine's
        // (see `BuildMetadata::source`).
        let metadata = BuildMetadata {
            inputs: inputs.clone(),
            size_bytes: recorded.iter().map(|a| a.size_bytes).sum(),
            artifacts: recorded,
            created: self.context.now(),
            source: None,
        };
        let value = metadata::encode(&metadata, || format!("build {inputs:?}"))?;
        let Some(directory) = cache
            .set_directory(
                &key,
                staged,
                &value,
                Some(self.context.ttls.get(&crate::ttl::FIRMWARE_BUILD)),
            )
            .map_err(|err| self.context.explain_refusal(&what, err))?
        else {
            return Ok(None);
        };
        tracing::info!(repository = %inputs.repository, branch = %inputs.branch, artifacts = metadata.artifacts.len(), "build artifacts cached");
        self.found(&key, directory, metadata).map(Some)
    }

    /// The cached build of `inputs`. A build whose metadata does not decode, or one of whose
    /// artifacts is missing or of another size than recorded, is removed and is a miss.
    pub fn get(&self, inputs: &BuildInputs) -> Result<Option<CachedBuild>> {
        inputs.validate()?;
        self.read(&inputs.key_bytes())
    }

    /// Copies the artifacts of the cached build of `inputs` into `target` (created if
    /// missing), keeping their relative paths and replacing files of the same name. Returns the
    /// build restored, `None` on a miss (then nothing is written).
    pub fn restore(
        &self,
        inputs: &BuildInputs,
        target: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<CachedBuild>> {
        let Some(build) = self.get(inputs)? else {
            return Ok(None);
        };
        copy_out(&build, target, progress)?;
        Ok(Some(build))
    }

    /// Puts the artifacts of the build of `inputs` into `target` (created if missing, relative
    /// paths kept, files of the same name replaced): from the cache, or by running `build`.
    ///
    /// On a miss, exactly one caller on the machine (any thread, any process on the cache root)
    /// runs `build`; the others wait for it and copy what it cached
    /// ([`cache_core::Cache::single_flight`]). `build` gets an empty scratch directory (under the tag's
    /// staging directory) to build into; the artifacts it leaves there, at any depth, are
    /// cached as [`BuildService::store`] caches a build directory, and the scratch directory is
    /// removed. The lease is held from before `build` starts until the build is cached, so a
    /// waiter never meets half a build.
    ///
    /// A `build` that fails or leaves no artifact ([`CompilationError::NoArtifacts`]) caches
    /// nothing and returns its error; callers waiting for it try once more (the cache's
    /// `flight_retries`), so a flaky build is retried by the next caller, not by all of them. A
    /// `build` that panics releases its waiters the same way before the panic goes on. Waiting
    /// is bounded by the cache's `timeout` (30 s by default): configure it above the longest
    /// build expected, or waiters return [`cache_core::CacheError::FlightTimeout`].
    ///
    /// Returns the cached build (found, or just built); `None` when the cache is disabled: then
    /// `build` runs every time, its artifacts are copied to `target`, and nothing is kept.
    pub fn get_or_build<E, F>(
        &self,
        inputs: &BuildInputs,
        target: &Path,
        build: F,
        progress: &mut dyn FnMut(Progress),
    ) -> std::result::Result<Option<CachedBuild>, E>
    where
        E: From<CompilationError> + Display,
        F: FnOnce(&Path) -> std::result::Result<(), E>,
    {
        inputs.validate()?;
        let key = inputs.key_bytes();
        let cache = &self.context.cache;
        let obtained = cache
            .single_flight(
                &key,
                || {
                    self.read(&key)
                        .map(|found| found.map(|build| Obtained::Cached(Box::new(build))))
                        .map_err(FlightError::Compilation)
                },
                || {
                    let scratch = cache
                        .stage_directory()
                        .map_err(|err| FlightError::Compilation(err.into()))?;
                    build(scratch.path()).map_err(FlightError::Build)?;
                    match self
                        .store(inputs, scratch.path(), &mut *progress)
                        .map_err(FlightError::Compilation)?
                    {
                        Some(cached) => Ok(Obtained::Cached(Box::new(cached))),
                        None => Ok(Obtained::NotCached(scratch)),
                    }
                },
            )
            .map_err(|err| match err {
                FlightError::Build(err) => err,
                FlightError::Compilation(err) => E::from(err),
            })?;
        match obtained {
            Obtained::Cached(build) => {
                copy_out(&build, target, progress)?;
                Ok(Some(*build))
            }
            Obtained::NotCached(scratch) => {
                let artifacts = list_artifacts(scratch.path())?;
                copy_artifacts(scratch.path(), &artifacts, target, progress)?;
                Ok(None)
            }
        }
    }

    /// Removes the cached build of `inputs`; whether one was there. Its artifacts are gone when
    /// this returns.
    pub fn delete(&self, inputs: &BuildInputs) -> Result<bool> {
        Ok(self.context.delete_now(&[&inputs.key_bytes()])? == 1)
    }

    /// Every cached build, newest first. Damaged builds met on the way are removed.
    pub fn list(&self) -> Result<Vec<CachedBuild>> {
        let mut builds = Vec::new();
        for key in self.context.keys_with_prefix(BUILD_KEY_PREFIX.as_bytes())? {
            if let Some(build) = self.read(&key)? {
                builds.push(build);
            }
        }
        builds.sort_by_key(|build| std::cmp::Reverse(build.metadata.created));
        Ok(builds)
    }

    /// Checks every cached build and removes the damaged ones (metadata that does not decode,
    /// an artifact missing or of another size); how many were removed. Expired builds are
    /// removed by [`crate::CompilationCache::cleanup`].
    pub fn cleanup(&self) -> Result<usize> {
        let mut removed = 0;
        for key in self.context.keys_with_prefix(BUILD_KEY_PREFIX.as_bytes())? {
            if self.context.cache.exists(&key)? && self.read(&key)?.is_none() {
                removed += 1;
            }
        }
        if removed > 0 {
            // A build the cache itself found damaged (a shared file that no longer matches its
            // content) is removed by the next commit: make it now, as a discard is.
            self.context.cache.flush()?;
        }
        Ok(removed)
    }

    fn read(&self, key: &[u8]) -> Result<Option<CachedBuild>> {
        let Some(directory) = self.context.cache.get_directory(key)? else {
            return Ok(None);
        };
        let checked = metadata::decode::<BuildMetadata>(&directory.value).and_then(|metadata| {
            if metadata.inputs.key_bytes() != key {
                return Err("metadata names other build inputs than its key".to_owned());
            }
            for artifact in &metadata.artifacts {
                check_artifact(&directory.path, artifact)?;
            }
            Ok(metadata)
        });
        match checked {
            Ok(metadata) => self.found(key, directory, metadata).map(Some),
            Err(reason) => {
                self.context.discard(key, &reason)?;
                Ok(None)
            }
        }
    }

    fn found(
        &self,
        key: &[u8],
        directory: CachedDirectory,
        metadata: BuildMetadata,
    ) -> Result<CachedBuild> {
        let (last_accessed, expires_at) = self.context.entry_times(key)?;
        Ok(CachedBuild {
            path: directory.path,
            metadata,
            size_bytes: directory.size_bytes,
            last_accessed,
            expires_at,
        })
    }
}

/// What a single flight of [`BuildService::get_or_build`] hands back.
enum Obtained {
    /// A build in the cache (found, or built and stored); boxed, being ten times the size of
    /// the other variant.
    Cached(Box<CachedBuild>),
    /// Built, but the cache is disabled: the scratch directory holding it, removed when dropped.
    NotCached(cache_core::StagedDirectory),
}

/// The errors of a single flight of [`BuildService::get_or_build`]: ours, or the caller's
/// build's, kept apart so that the caller gets its own error back unchanged.
enum FlightError<E> {
    Compilation(CompilationError),
    Build(E),
}

impl<E> From<CacheError> for FlightError<E> {
    fn from(err: CacheError) -> Self {
        FlightError::Compilation(err.into())
    }
}

impl<E: Display> Display for FlightError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlightError::Compilation(err) => err.fmt(f),
            FlightError::Build(err) => err.fmt(f),
        }
    }
}

/// The artifacts under `build_dir`, at any depth (regular files whose name is an artifact's);
/// [`CompilationError::NoArtifacts`] when there is none.
fn list_artifacts(build_dir: &Path) -> Result<Tree> {
    if !is_real_dir(build_dir) {
        return Err(CompilationError::InvalidInput {
            what: "build directory",
            reason: format!("{} is not a directory", build_dir.display()),
        });
    }
    let listed = tree::list(build_dir, &|relative, is_dir| {
        is_dir || relative.file_name().is_some_and(is_artifact)
    })?;
    let artifacts = Tree {
        nodes: listed
            .nodes
            .into_iter()
            .filter(|node| matches!(node.kind, NodeKind::File { .. }))
            .collect(),
    };
    if artifacts.nodes.is_empty() {
        return Err(CompilationError::NoArtifacts {
            path: build_dir.to_owned(),
        });
    }
    Ok(artifacts)
}

/// Copies the recorded artifacts of a cached build into `target`.
fn copy_out(build: &CachedBuild, target: &Path, progress: &mut dyn FnMut(Progress)) -> Result<()> {
    let artifacts = Tree {
        nodes: build
            .metadata
            .artifacts
            .iter()
            .map(|artifact| {
                Node::bare(
                    PathBuf::from(&artifact.path),
                    NodeKind::File {
                        len: artifact.size_bytes,
                        links: 1,
                    },
                )
            })
            .collect(),
    };
    copy_artifacts(&build.path, &artifacts, target, progress)
}

/// Copies `artifacts` (relative to `from`) into `target`, created if missing.
fn copy_artifacts(
    from: &Path,
    artifacts: &Tree,
    target: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<()> {
    tree::create_dir_all(target)?;
    let mut tracker = Tracker::start(
        ProgressStage::Copying,
        artifacts.file_count(),
        artifacts.byte_count(),
        progress,
    );
    tree::copy_tree(from, artifacts, target, Transfer::Copy, &mut tracker)
}

/// Whether a recorded artifact is in the cached directory as recorded: a plain relative path
/// to a regular file of the recorded size.
fn check_artifact(dir: &Path, artifact: &BuildArtifact) -> std::result::Result<(), String> {
    let relative = Path::new(&artifact.path);
    if relative.as_os_str().is_empty()
        || !relative
            .components()
            .all(|component| matches!(component, Component::Normal(_)))
    {
        return Err(format!(
            "artifact path {:?} is not a plain relative path",
            artifact.path
        ));
    }
    match fs::symlink_metadata(dir.join(relative)) {
        Ok(meta) if meta.file_type().is_file() && meta.len() == artifact.size_bytes => Ok(()),
        Ok(_) => Err(format!("artifact {} is not as recorded", artifact.path)),
        Err(_) => Err(format!("artifact {} is missing", artifact.path)),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("zmk.uf2", true)]
    #[case("zmk.hex", true)]
    #[case("zmk.bin", true)]
    #[case("zmk.elf", true)]
    #[case("zmk.kconfig", true)]
    #[case("zephyr.dts", true)]
    #[case("zephyr.dts.pre", true)]
    #[case("devicetree_generated.h", true)]
    #[case("zmk.UF2", false)]
    #[case(".uf2", false)]
    #[case("zmk.o", false)]
    #[case("zephyr.dts.pre.tmp", false)]
    #[case("other_generated.h", false)]
    #[case("CMakeCache.txt", false)]
    fn artifacts_by_name(#[case] name: &str, #[case] artifact: bool) {
        assert_eq!(is_artifact(OsStr::new(name)), artifact, "{name}");
    }
}
