//! `WorkspaceService`: ZMK west workspaces cached as directories owned by their entries, per
//! repository and per repository + branch.
//!
//! Over 600 lines: the methods of one service type (cache, inject, import, look up, copy,
//! export, list, delete, clean up), each short; a split would cut the type, not a concern.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cache_core::{CachedDirectory, ErrorChain};
use serde::{Deserialize, Serialize};

use crate::archive::{self, ArchiveFormat};
use crate::context::Context;
use crate::error::{CompilationError, Result};
use crate::keys::{WORKSPACE_KEY_PREFIX, WorkspaceId, WorkspaceLevel, repository_key_prefixes};
use crate::manifest::{self, Verified};
use crate::metadata::{self, WorkspaceDetails, WorkspaceMetadata, WorkspaceOrigin};
use crate::progress::{Progress, ProgressStage, Tracker};
use crate::tree::{
    self, GitHandling, Transfer, Tree, WORKSPACE_COMPONENTS, is_real_dir, workspace_keeps,
};

/// How old a workspace must be for [`WorkspaceService::cleanup_stale`] to call it stale, as
/// the original's default: 7 days.
pub const STALE_WORKSPACE_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A workspace found in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedWorkspace {
    /// Which workspace (the level it was found at).
    pub id: WorkspaceId,
    /// Its directory in the cache. It belongs to the cache: read it or copy it out
    /// ([`WorkspaceService::copy_to`]), never change it. It is removed when the entry expires,
    /// is evicted or deleted, possibly while another process is reading it, so copy it out
    /// before a long build.
    pub path: PathBuf,
    /// What was stored with it.
    pub metadata: WorkspaceMetadata,
    /// Bytes of the directory as the cache counts it against the size limit.
    pub size_bytes: u64,
    /// When it was last read, in any process (from the store); `None` if never.
    pub last_accessed: Option<SystemTime>,
    /// When it expires.
    pub expires_at: Option<SystemTime>,
    /// Only on what a store returns: the keys of other workspaces that were cached just before
    /// the store and no longer are after it: evicted to keep the tag under its size limit (or,
    /// rarely, deleted by another process meanwhile). Keys, not names: the names are in the
    /// entries, which are gone. Empty on lookups.
    pub evicted: Vec<String>,
}

/// How a restore puts the cached files in place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LinkMode {
    /// A copy-on-write clone (reflink, `FICLONE`) where the filesystem supports one (btrfs,
    /// XFS, bcachefs, ...), else a full copy. As fast as the filesystem allows, and the copy
    /// is independent of the cache. The default.
    #[default]
    Auto,
    /// A copy-on-write clone, or [`CompilationError::ReflinkUnsupported`].
    Reflink,
    /// Hard links to the cache's own files: near-instant and no extra space, but the restored
    /// files ARE the cache's. Opt-in: a file edited in place (not replaced: most editors and
    /// git write a new file and rename it, which is fine) changes the cached copy. Such a file
    /// is found by its hash on the next read of the entry and the entry is dropped, never
    /// served; a mode changed with `chmod` is not detected. Needs the target on the cache's
    /// filesystem. An entry stored before content manifests existed is copied instead.
    Hardlink,
    /// A full copy.
    Copy,
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreReport {
    /// Where the workspace was restored.
    pub target: PathBuf,
    /// The workspace restored (the lookup may have fallen back to the repository level).
    pub workspace: WorkspaceMetadata,
    /// Files, hard links and symlinks placed.
    pub files: u64,
    /// Bytes of file content placed.
    pub bytes: u64,
    /// How files were placed: the mode asked for, except [`LinkMode::Copy`] for a
    /// [`LinkMode::Hardlink`] restore of an entry that has no content manifest.
    pub placed: LinkMode,
}

/// How to export a workspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// The archive format.
    pub format: ArchiveFormat,
    /// Whether `.git` directories go into the archive (when the cached workspace has them).
    pub include_git: bool,
}

impl ExportOptions {
    /// `format`, without `.git` directories (the original's default).
    pub fn new(format: ArchiveFormat) -> Self {
        ExportOptions {
            format,
            include_git: false,
        }
    }

    /// The format `path`'s name says, without `.git` directories.
    pub fn for_path(path: &Path) -> Result<Self> {
        ArchiveFormat::from_path(path)
            .map(ExportOptions::new)
            .ok_or_else(|| CompilationError::UnknownArchiveFormat {
                path: path.to_owned(),
            })
    }
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportReport {
    /// The archive written.
    pub path: PathBuf,
    /// Its format.
    pub format: ArchiveFormat,
    /// The workspace exported (the lookup may have fallen back to the repository level).
    pub workspace: WorkspaceMetadata,
    /// Files and symlinks written.
    pub files: u64,
    /// Bytes of file content written, before compression.
    pub bytes: u64,
    /// Size of the archive.
    pub archive_bytes: u64,
}

/// ZMK west workspaces (`zmk`, `zephyr`, `modules`, `.west`) per repository and per repository
/// + branch.
///
/// Each workspace is a directory owned by its entry: counted in the tag's size limit, removed
/// when the entry expires, is evicted, deleted or replaced (the original left them on disk
/// outside any limit: its defect 5). The repository level lives
/// [`workspace_base`](crate::ttl::WORKSPACE_BASE) (30 days), the branch level
/// [`workspace_branch`](crate::ttl::WORKSPACE_BRANCH) (1 day). Only the four
/// components are kept; `.git` directories are kept or dropped by
/// [`CompilationOptions::git`](crate::CompilationOptions::git), the same way on every path in.
/// Copies never follow a symlink: symlinks are copied as symlinks.
#[derive(Clone, Debug)]
pub struct WorkspaceService {
    context: Arc<Context>,
}

/// One stored workspace entry, read and checked.
enum Stored {
    /// Boxed: the other variants are empty.
    Usable(Box<UsableEntry>),
    /// It was there but could not be used, and was removed.
    Discarded,
    Absent,
}

struct UsableEntry {
    directory: CachedDirectory,
    metadata: WorkspaceMetadata,
    id: WorkspaceId,
}

impl WorkspaceService {
    pub(crate) fn new(context: Arc<Context>) -> Self {
        WorkspaceService { context }
    }

    /// Caches the workspace at `source` (after a build set it up) as `id`, replacing an earlier
    /// one. Returns what was stored, `None` if the cache is disabled.
    ///
    /// `source` must hold a real `zmk/` directory (not a symlink). What is copied:
    /// `zmk`, `zephyr`, `modules`, `.west`, with `.git` directories as the options say.
    pub fn cache_workspace(
        &self,
        source: &Path,
        id: &WorkspaceId,
        details: WorkspaceDetails,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<CachedWorkspace>> {
        self.store_directory(source, id, details, WorkspaceOrigin::Build, progress)
    }

    /// Caches an existing workspace (the original's `workspace add`): the same as
    /// [`WorkspaceService::cache_workspace`], recorded as injected.
    pub fn inject(
        &self,
        source: &Path,
        id: &WorkspaceId,
        details: WorkspaceDetails,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<CachedWorkspace>> {
        self.store_directory(source, id, details, WorkspaceOrigin::Injected, progress)
    }

    /// Imports a workspace from a directory or an archive (`.tar.gz`, `.tgz`, `.tar`, `.zip`,
    /// as [`WorkspaceService::export`] writes them, or with the workspace inside one top-level
    /// folder).
    ///
    /// An archive is checked whole before anything is written: an entry that could land outside
    /// the workspace (absolute, `..`, a symlink pointing outside, a hard link, a device) refuses
    /// the archive with [`CompilationError::UnsafeArchiveEntry`], and nothing is stored.
    pub fn import(
        &self,
        source: &Path,
        id: &WorkspaceId,
        details: WorkspaceDetails,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<CachedWorkspace>> {
        // The path given may itself be a symlink to the workspace; what is inside is never
        // followed.
        let meta =
            fs::metadata(source).map_err(|err| CompilationError::io("reading", source, err))?;
        if meta.is_dir() {
            return self.store_directory(
                source,
                id,
                details,
                WorkspaceOrigin::ImportedDirectory,
                progress,
            );
        }
        let format = ArchiveFormat::from_path(source).ok_or_else(|| {
            CompilationError::UnknownArchiveFormat {
                path: source.to_owned(),
            }
        })?;
        let git = self.context.options.git;
        let plan = archive::plan_extraction(
            source,
            format,
            "zmk",
            &|relative, _| workspace_keeps(git, relative),
            self.context.options.allow_escaping_symlinks,
        )?;
        if !plan.writes_under("zmk") {
            return Err(not_a_workspace(
                source,
                "the archive holds no zmk/ directory",
            ));
        }
        let cache = &self.context.cache;
        if !cache.is_enabled() {
            return Ok(None);
        }
        self.context.check_fits(&|| describe(id), plan.byte_count)?;
        let staged = cache.stage_directory()?;
        let mut tracker = Tracker::start(
            ProgressStage::Extracting,
            plan.file_count,
            plan.byte_count,
            progress,
        );
        archive::extract(&plan, staged.path(), &mut tracker)?;
        if !is_real_dir(&staged.path().join("zmk")) {
            return Err(not_a_workspace(
                source,
                "the archive's zmk is not a directory",
            ));
        }
        let mut written = tree::list(staged.path(), &|_, _| true)?;
        written.group_hard_links();
        manifest::write(staged.path(), &written)?;
        let metadata = self.new_metadata(
            id,
            details,
            WorkspaceOrigin::ImportedArchive,
            source,
            staged.path(),
            plan.file_count,
            plan.byte_count,
        );
        self.commit(id, staged, metadata)
    }

    fn store_directory(
        &self,
        source: &Path,
        id: &WorkspaceId,
        details: WorkspaceDetails,
        origin: WorkspaceOrigin,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Option<CachedWorkspace>> {
        check_workspace_dir(source)?;
        let cache = &self.context.cache;
        if !cache.is_enabled() {
            return Ok(None);
        }
        let git = self.context.options.git;
        let mut tree = tree::list(source, &|relative, _| workspace_keeps(git, relative))?;
        tree.group_hard_links();
        if !self.context.options.allow_escaping_symlinks {
            tree.check_symlinks_stay_inside(source)?;
        }
        self.context
            .check_fits(&|| describe(id), tree.byte_count())?;
        let staged = cache.stage_directory()?;
        let mut tracker = Tracker::start(
            ProgressStage::Copying,
            tree.file_count(),
            tree.byte_count(),
            progress,
        );
        tree::copy_tree(source, &tree, staged.path(), Transfer::Copy, &mut tracker)?;
        manifest::write(staged.path(), &tree)?;
        let metadata = self.new_metadata(
            id,
            details,
            origin,
            source,
            staged.path(),
            tree.file_count(),
            tree.byte_count(),
        );
        self.commit(id, staged, metadata)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "private: one call per way in, each naming every part"
    )]
    fn new_metadata(
        &self,
        id: &WorkspaceId,
        details: WorkspaceDetails,
        origin: WorkspaceOrigin,
        source: &Path,
        copied: &Path,
        files: u64,
        size_bytes: u64,
    ) -> WorkspaceMetadata {
        let components = WORKSPACE_COMPONENTS
            .iter()
            .filter(|component| fs::symlink_metadata(copied.join(component)).is_ok())
            .map(|component| (*component).to_owned())
            .collect();
        let source = fs::canonicalize(source).unwrap_or_else(|_| source.to_owned());
        WorkspaceMetadata {
            repository: id.repository_name().to_owned(),
            branch: id.branch_name().map(str::to_owned),
            level: id.level(),
            created: self.context.now(),
            origin,
            source: Some(source.display().to_string()),
            components,
            git: self.context.options.git,
            files,
            size_bytes,
            details,
        }
    }

    fn ttl(&self, level: WorkspaceLevel) -> Duration {
        match level {
            WorkspaceLevel::Repository => self.context.ttls.get(&crate::ttl::WORKSPACE_BASE),
            WorkspaceLevel::RepositoryBranch => {
                self.context.ttls.get(&crate::ttl::WORKSPACE_BRANCH)
            }
        }
    }

    fn commit(
        &self,
        id: &WorkspaceId,
        staged: cache_core::StagedDirectory,
        metadata: WorkspaceMetadata,
    ) -> Result<Option<CachedWorkspace>> {
        let key = id.key_bytes();
        let value = metadata::encode(&metadata, || format!("workspace {id:?}"))?;
        let others_before = self.other_workspace_keys(&key)?;
        let Some(directory) = self
            .context
            .cache
            .set_directory(&key, staged, &value, Some(self.ttl(id.level())))
            .map_err(|err| self.context.explain_refusal(&|| describe(id), err))?
        else {
            return Ok(None);
        };
        let others_after = self.other_workspace_keys(&key)?;
        let evicted: Vec<String> = others_before
            .iter()
            .filter(|other| !others_after.contains(other))
            .map(|other| String::from_utf8_lossy(other).into_owned())
            .collect();
        if !evicted.is_empty() {
            tracing::warn!(
                repository = id.repository_name(),
                branch = id.branch_name(),
                evicted = ?evicted,
                limit_bytes = self.context.max_size_bytes,
                "storing a workspace evicted other workspaces to stay within the size limit"
            );
        }
        tracing::info!(
            repository = id.repository_name(),
            branch = id.branch_name(),
            files = metadata.files,
            bytes = metadata.size_bytes,
            "workspace cached"
        );
        let mut found = self.found(id.clone(), &key, directory, metadata)?;
        found.evicted = evicted;
        Ok(Some(found))
    }

    /// The keys of every cached workspace but `key`'s, sorted (keys only: nothing is read, so
    /// no access time changes and eviction order is not disturbed).
    fn other_workspace_keys(&self, key: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut keys = self
            .context
            .keys_with_prefix(WORKSPACE_KEY_PREFIX.as_bytes())?;
        keys.retain(|other| other != key);
        Ok(keys)
    }

    fn found(
        &self,
        id: WorkspaceId,
        key: &[u8],
        directory: CachedDirectory,
        metadata: WorkspaceMetadata,
    ) -> Result<CachedWorkspace> {
        let (last_accessed, expires_at) = self.context.entry_times(key)?;
        Ok(CachedWorkspace {
            id,
            path: directory.path,
            metadata,
            size_bytes: directory.size_bytes,
            last_accessed,
            expires_at,
            evicted: Vec::new(),
        })
    }

    /// The workspace for `id`: for a branch-level id, the branch's workspace if cached, else
    /// the repository's; for a repository-level id, the repository's. A workspace whose
    /// directory has no `zmk/` is not usable: it is removed and the lookup goes on.
    pub fn get(&self, id: &WorkspaceId) -> Result<Option<CachedWorkspace>> {
        if id.branch_name().is_some()
            && let Some(found) = self.get_exact(id)?
        {
            return Ok(Some(found));
        }
        self.get_exact(&id.repository_level())
    }

    /// The workspace cached at exactly `id`'s level, with no fallback.
    ///
    /// A hit does not restart the entry's time to live unless
    /// [`CompilationOptions::extend_ttl_on_hit`](crate::CompilationOptions::extend_ttl_on_hit)
    /// is set.
    pub fn get_exact(&self, id: &WorkspaceId) -> Result<Option<CachedWorkspace>> {
        let key = id.key_bytes();
        let Stored::Usable(entry) = self.read(&key)? else {
            return Ok(None);
        };
        let UsableEntry {
            directory,
            metadata,
            id: found_id,
        } = *entry;
        let directory = if self.context.options.extend_ttl_on_hit {
            self.restart_ttl(&key, directory, found_id.level())
        } else {
            directory
        };
        self.found(found_id, &key, directory, metadata).map(Some)
    }

    /// Reads and checks the entry under `key`, removing it if it cannot be used.
    fn read(&self, key: &[u8]) -> Result<Stored> {
        let Some(directory) = self.context.cache.get_directory(key)? else {
            return Ok(Stored::Absent);
        };
        let checked =
            metadata::decode::<WorkspaceMetadata>(&directory.value).and_then(|metadata| {
                let id = WorkspaceId::new(&metadata.repository, metadata.branch.as_deref())
                    .map_err(|err| format!("metadata names no valid workspace: {err}"))?;
                if id.key_bytes() != key {
                    return Err("metadata names another workspace than its key".to_owned());
                }
                if !is_real_dir(&directory.path.join("zmk")) {
                    return Err(
                        "the cached directory has no zmk/: not a usable workspace".to_owned()
                    );
                }
                Ok((metadata, id))
            });
        // Verify on read: a file a hard-link restore shared that was changed since is never
        // served (an error reading the files is the caller's, as any I/O error).
        let checked = match checked {
            Ok(found) => match manifest::verify(&directory.path, &directory.verified_files)? {
                Verified::Changed(file) => Err(format!(
                    "{} changed after it was stored (edited through a hard link a restore made)",
                    file.display()
                )),
                Verified::Intact | Verified::NoManifest => Ok(found),
            },
            Err(reason) => Err(reason),
        };
        match checked {
            Ok((metadata, id)) => Ok(Stored::Usable(Box::new(UsableEntry {
                directory,
                metadata,
                id,
            }))),
            Err(reason) => {
                self.context.discard(key, &reason)?;
                Ok(Stored::Discarded)
            }
        }
    }

    /// Re-stores a hit with hard links to its files, which restarts its TTL. On any failure
    /// the entry is left as it was and the hit is returned unchanged.
    fn restart_ttl(
        &self,
        key: &[u8],
        directory: CachedDirectory,
        level: WorkspaceLevel,
    ) -> CachedDirectory {
        let relinked = (|| -> Result<Option<CachedDirectory>> {
            let mut tree = tree::list(&directory.path, &|_, _| true)?;
            tree.group_hard_links();
            let staged = self.context.cache.stage_directory()?;
            let mut quiet = |_: Progress| {};
            let mut tracker = Tracker::start(ProgressStage::Copying, 0, 0, &mut quiet);
            tree::copy_tree(
                &directory.path,
                &tree,
                staged.path(),
                Transfer::LinkOrCopy,
                &mut tracker,
            )?;
            Ok(self.context.cache.set_directory(
                key,
                staged,
                &directory.value,
                Some(self.ttl(level)),
            )?)
        })();
        match relinked {
            Ok(Some(renewed)) => renewed,
            Ok(None) => directory,
            Err(err) => {
                tracing::warn!(error = %ErrorChain(&err), "could not restart a workspace's time to live; it keeps its expiry");
                directory
            }
        }
    }

    /// Copies a found workspace out of the cache into `target` (created if missing), as
    /// [`WorkspaceService::copy_to_with`] with [`LinkMode::Copy`].
    pub fn copy_to(
        &self,
        workspace: &CachedWorkspace,
        target: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        self.copy_to_with(workspace, target, LinkMode::Copy, progress)
            .map(drop)
    }

    /// Copies a found workspace out of the cache into `target` (created if missing), placing
    /// files as `link` says, with their modes, modification times and hard links. Refuses a
    /// target that already holds any of the workspace's components: a workspace is never
    /// merged into another. Returns how files were placed (see [`RestoreReport::placed`]).
    pub fn copy_to_with(
        &self,
        workspace: &CachedWorkspace,
        target: &Path,
        link: LinkMode,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RestoreReport> {
        let mut tree = tree::list(&workspace.path, &|relative, _| {
            workspace_keeps(GitHandling::Keep, relative)
        })?;
        tree.group_hard_links();
        for component in WORKSPACE_COMPONENTS {
            let existing = target.join(component);
            if fs::symlink_metadata(&existing).is_ok() {
                return Err(CompilationError::InvalidInput {
                    what: "copy target",
                    reason: format!(
                        "{} already exists; a workspace is not merged into another",
                        existing.display()
                    ),
                });
            }
        }
        // Hard links share the cache's files: only for an entry whose files can be checked
        // on the next read (it has a manifest), else copied.
        let placed = match link {
            LinkMode::Hardlink if !manifest::exists(&workspace.path) => LinkMode::Copy,
            other => other,
        };
        let transfer = match placed {
            LinkMode::Auto => Transfer::ReflinkOrCopy,
            LinkMode::Reflink => Transfer::Reflink,
            LinkMode::Hardlink => Transfer::Link,
            LinkMode::Copy => Transfer::Copy,
        };
        tree::create_dir_all(target)?;
        let mut tracker = Tracker::start(
            ProgressStage::Copying,
            tree.file_count(),
            tree.byte_count(),
            progress,
        );
        tree::copy_tree(&workspace.path, &tree, target, transfer, &mut tracker)?;
        let done = tracker.current();
        Ok(RestoreReport {
            target: target.to_owned(),
            workspace: workspace.metadata.clone(),
            files: done.files_done,
            bytes: done.bytes_done,
            placed,
        })
    }

    /// [`WorkspaceService::get`], with [`CompilationError::WorkspaceNotCached`] for none.
    fn get_cached(&self, id: &WorkspaceId) -> Result<CachedWorkspace> {
        self.get(id)?
            .ok_or_else(|| CompilationError::WorkspaceNotCached {
                repository: id.repository_name().to_owned(),
                branch: id.branch_name().map(str::to_owned),
            })
    }

    /// Restores the workspace for `id` (found as [`WorkspaceService::get`] finds it: the
    /// branch's, else the repository's) into `target`, placing files as `link` says.
    /// [`CompilationError::WorkspaceNotCached`] when there is none.
    pub fn restore(
        &self,
        id: &WorkspaceId,
        target: &Path,
        link: LinkMode,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<RestoreReport> {
        let workspace = self.get_cached(id)?;
        self.copy_to_with(&workspace, target, link, progress)
    }

    /// Removes the workspace cached at exactly `id`'s level; whether one was there. Its
    /// directory is gone when this returns.
    pub fn delete(&self, id: &WorkspaceId) -> Result<bool> {
        Ok(self.context.delete_now(&[&id.key_bytes()])? == 1)
    }

    /// Removes every workspace of `repository`: the repository level and every branch (the
    /// original's `workspace delete` never reached the branch entries: its defect 11). How
    /// many were removed; their directories are gone when this returns.
    pub fn delete_repository(&self, repository: &str) -> Result<usize> {
        let [repository_key, branch_prefix] =
            repository_key_prefixes(WorkspaceId::repository(repository)?.repository_name());
        let keys: Vec<Vec<u8>> = self
            .context
            .keys_with_prefix(WORKSPACE_KEY_PREFIX.as_bytes())?
            .into_iter()
            .filter(|key| *key == repository_key || key.starts_with(&branch_prefix))
            .collect();
        let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        self.context.delete_now(&keys)
    }

    /// Every cached workspace, by repository then branch (the repository level first). Listing
    /// reads each entry (counted as a read in the statistics) but never restarts a TTL;
    /// unusable entries met on the way are removed.
    pub fn list(&self) -> Result<Vec<CachedWorkspace>> {
        let mut found = Vec::new();
        for key in self
            .context
            .keys_with_prefix(WORKSPACE_KEY_PREFIX.as_bytes())?
        {
            if let Stored::Usable(entry) = self.read(&key)? {
                let UsableEntry {
                    directory,
                    metadata,
                    id,
                } = *entry;
                found.push(self.found(id, &key, directory, metadata)?);
            }
        }
        found.sort_by(|a, b| {
            (a.id.repository_name(), a.id.branch_name())
                .cmp(&(b.id.repository_name(), b.id.branch_name()))
        });
        Ok(found)
    }

    /// Removes every workspace stored more than `older_than` ago (by the cache's clock; the
    /// original's default is [`STALE_WORKSPACE_AGE`]) and every unusable one; how many. Their
    /// directories are gone when this returns.
    pub fn cleanup_stale(&self, older_than: Duration) -> Result<usize> {
        let now = self.context.now();
        let mut removed = 0;
        let mut stale = Vec::new();
        for key in self
            .context
            .keys_with_prefix(WORKSPACE_KEY_PREFIX.as_bytes())?
        {
            match self.read(&key)? {
                Stored::Usable(entry) => {
                    let age = now
                        .duration_since(entry.metadata.created)
                        .unwrap_or(Duration::ZERO);
                    if age >= older_than {
                        stale.push(key);
                    }
                }
                Stored::Discarded => removed += 1,
                Stored::Absent => {}
            }
        }
        let stale: Vec<&[u8]> = stale.iter().map(Vec::as_slice).collect();
        Ok(removed + self.context.delete_now(&stale)?)
    }

    /// Writes the workspace for `id` (found as [`WorkspaceService::get`] finds it) to an
    /// archive at `output`, replacing it. The archive is written to a temp file beside `output`
    /// and renamed into place once complete. Modes, modification times and hard links go in
    /// as they are in the cache (zip has no hard links: a second name is a second file).
    /// Symlinks go in as symlinks; one pointing outside the workspace can only be in the cache
    /// if [`CompilationOptions::allow_escaping_symlinks`](crate::CompilationOptions::allow_escaping_symlinks)
    /// let it in, and an import refuses it unless the same option is set.
    pub fn export(
        &self,
        id: &WorkspaceId,
        output: &Path,
        options: ExportOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ExportReport> {
        let workspace = self.get_cached(id)?;
        let git = if options.include_git {
            GitHandling::Keep
        } else {
            GitHandling::Exclude
        };
        let mut tree: Tree = tree::list(&workspace.path, &|relative, _| {
            workspace_keeps(git, relative)
        })?;
        tree.group_hard_links();
        let mut tracker = Tracker::start(
            ProgressStage::Exporting,
            tree.file_count(),
            tree.byte_count(),
            progress,
        );
        let archive_bytes =
            archive::write_archive(&workspace.path, &tree, output, options.format, &mut tracker)?;
        let done = tracker.current();
        Ok(ExportReport {
            path: output.to_owned(),
            format: options.format,
            workspace: workspace.metadata,
            files: done.files_done,
            bytes: done.bytes_done,
            archive_bytes,
        })
    }
}

/// `the workspace of repository "R" [branch "B"]`, for messages.
fn describe(id: &WorkspaceId) -> String {
    match id.branch_name() {
        Some(branch) => format!(
            "the workspace of repository {:?} branch {branch:?}",
            id.repository_name()
        ),
        None => format!("the workspace of repository {:?}", id.repository_name()),
    }
}

fn not_a_workspace(path: &Path, reason: &str) -> CompilationError {
    CompilationError::NotAWorkspace {
        path: path.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Checks that `source` is a directory with a real `zmk/` directory in it.
fn check_workspace_dir(source: &Path) -> Result<()> {
    let meta = fs::metadata(source)
        .map_err(|err| CompilationError::io("reading workspace", source, err))?;
    if !meta.is_dir() {
        return Err(not_a_workspace(source, "it is not a directory"));
    }
    let zmk = source.join("zmk");
    match fs::symlink_metadata(&zmk) {
        Ok(meta) if meta.file_type().is_dir() => Ok(()),
        Ok(meta) if meta.file_type().is_symlink() => Err(not_a_workspace(
            source,
            "zmk is a symlink; the cache copies symlinks as links, never what they point to",
        )),
        _ => Err(not_a_workspace(source, "it has no zmk/ directory")),
    }
}
