//! Directories owned by entries (a domain's trees of files): staged under
//! `<root>/<tag>/dirs/.staging/`, moved to `<root>/<tag>/dirs/<name>` inside the write
//! transaction that records their entry, counted in the tag's size limit, and removed with the
//! entry.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::codec::is_safe_dir_name;
use crate::directory::{StagedDirectory, unique_name};
use crate::error::{CacheError, Result};
use crate::fsys::{self, Dir, Kind, TreeSize};

/// The directory of owned directories, in the tag directory.
const DIRS: &str = "dirs";
/// Directories being filled, in `dirs/`.
const STAGING: &str = ".staging";

/// The owned directories of one tag. Every path below `dirs/` is reached through the open tag
/// directory, never following a symlink (`fsys`).
#[derive(Debug)]
pub(crate) struct DirFiles {
    tag: Arc<Dir>,
}

impl DirFiles {
    pub(crate) fn new(tag: Arc<Dir>) -> Self {
        DirFiles { tag }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        debug_assert!(
            is_safe_dir_name(name),
            "names come from unique_name or are checked"
        );
        self.tag.join(DIRS).join(name)
    }

    fn staging_path(&self) -> PathBuf {
        self.tag.join(DIRS).join(STAGING)
    }

    /// A new empty staging directory, named after this process (`fsys::temp_name`) so that
    /// cleanup can tell whether its writer is still alive.
    pub(crate) fn stage(&self) -> Result<StagedDirectory> {
        let staging = self.tag.dir_or_create(DIRS)?.dir_or_create(STAGING)?;
        let name = fsys::temp_name(unique_name());
        staging.create_new_dir(&name)?;
        Ok(StagedDirectory::staged_in(staging, name))
    }

    /// Whether `staged` was staged by this tag (and not by another tag or a disabled cache).
    pub(crate) fn owns(&self, staged: &StagedDirectory) -> bool {
        staged.staging().is_some() && staged.path().parent() == Some(self.staging_path().as_path())
    }

    /// Counts and sizes a staged directory without following a symlink in it: what it is
    /// charged (its allocated size) and what [`DirFiles::publish`] checks again.
    pub(crate) fn measure(&self, staged: &StagedDirectory) -> Result<TreeSize> {
        let Some((staging, name)) = staged.staging() else {
            return Err(CacheError::io(
                "measuring",
                staged.path(),
                io::Error::new(io::ErrorKind::InvalidInput, "not staged in a cache"),
            ));
        };
        staging.measure_tree(name)
    }

    /// Moves a staged directory to its place under a new name and checks that what is there is
    /// what was `measured` (entries and lengths; allocation may change by itself): a directory
    /// that changed since, for example files removed by another process, is removed again and
    /// the set fails. Returns the name and path.
    pub(crate) fn publish(
        &self,
        staged: &mut StagedDirectory,
        measured: &TreeSize,
    ) -> Result<(String, PathBuf)> {
        let Some((staging, staged_name)) = staged.staging() else {
            return Err(CacheError::io(
                "moving directory into place",
                staged.path(),
                io::Error::new(io::ErrorKind::InvalidInput, "not staged in a cache"),
            ));
        };
        let dirs = self.tag.dir_or_create(DIRS)?;
        let name = unique_name();
        let path = self.path(&name);
        staging.rename(staged_name, &dirs, &name)?;
        staged.mark_consumed();
        let found = dirs.measure_tree(&name);
        let unchanged = matches!(&found, Ok(found)
            if found.entries == measured.entries && found.length == measured.length);
        if !unchanged {
            if let Err(err) = dirs.remove_tree(&name) {
                tracing::warn!(path = %path.display(), error = %crate::error::ErrorChain(&err), "could not remove a directory that changed while it was stored");
            }
            let found = found?;
            return Err(CacheError::StagedDirectoryChanged {
                path,
                measured_entries: measured.entries,
                measured_bytes: measured.length,
                found_entries: found.entries,
                found_bytes: found.length,
            });
        }
        dirs.sync()?;
        Ok((name, path))
    }

    /// `dirs/` if it exists.
    pub(crate) fn dirs_dir(&self) -> Result<Option<Dir>> {
        self.tag.dir(DIRS)
    }

    /// Whether the directory is there.
    pub(crate) fn is_present(&self, name: &str) -> bool {
        is_safe_dir_name(name)
            && matches!(self.tag.dir(DIRS), Ok(Some(dirs))
                if matches!(dirs.stat(name), Ok(Some(meta)) if meta.kind == Kind::Dir))
    }

    /// The owned directory `name`, opened without following a symlink; `None` if it is not
    /// there.
    pub(crate) fn open(&self, name: &str) -> Result<Option<Dir>> {
        if !is_safe_dir_name(name) {
            return Ok(None);
        }
        match self.tag.dir(DIRS)? {
            Some(dirs) => dirs.dir(name),
            None => Ok(None),
        }
    }

    /// Whether anything (a directory or not) is there under `name`.
    pub(crate) fn exists(&self, name: &str) -> Result<bool> {
        if !is_safe_dir_name(name) {
            return Ok(false);
        }
        match self.tag.dir(DIRS)? {
            Some(dirs) => Ok(dirs.stat(name)?.is_some()),
            None => Ok(false),
        }
    }

    /// Removes an owned directory and everything in it, never following a symlink; a missing
    /// one is fine.
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        if !is_safe_dir_name(name) {
            return Ok(());
        }
        match self.tag.dir(DIRS)? {
            Some(dirs) => dirs.remove_tree(name).map(drop),
            None => Ok(()),
        }
    }

    /// The names of every owned directory present (staging excluded). Anything else is
    /// reported once and skipped, never touched.
    pub(crate) fn list(&self) -> Result<Vec<String>> {
        let Some(dirs) = self.tag.dir(DIRS)? else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for entry in dirs.entries()? {
            if entry.name == STAGING {
                continue;
            }
            match entry.name.to_str() {
                Some(name) if is_safe_dir_name(name) && entry.meta.kind == Kind::Dir => {
                    names.push(name.to_owned());
                }
                _ => fsys::warn_once(
                    &dirs.join(&entry.name),
                    "not a directory the cache owns; skipped",
                ),
            }
        }
        Ok(names)
    }

    /// `dirs/.staging` if it exists.
    fn staging_dir(&self) -> Result<Option<Dir>> {
        match self.tag.dir(DIRS)? {
            Some(dirs) => dirs.dir(STAGING),
            None => Ok(None),
        }
    }

    /// The staging directories cleanup would remove (see `fsys::Dir::stale_temps`), as paths.
    pub(crate) fn stale_staging(&self) -> Result<Vec<PathBuf>> {
        self.staging_dir()?
            .map_or(Ok(Vec::new()), |staging| staging.stale_temp_paths())
    }

    /// Removes staging directories of processes that are gone; how many.
    pub(crate) fn remove_stale_staging(&self) -> Result<u64> {
        self.staging_dir()?
            .map_or(Ok(0), |staging| staging.remove_stale_temps())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;

    fn tag_dir(path: &Path) -> Arc<Dir> {
        Arc::new(Dir::open_root(path).unwrap())
    }

    #[test]
    fn a_dropped_staged_directory_is_removed_and_a_published_one_is_kept() {
        let tag = tempfile::tempdir().unwrap();
        let dirs = DirFiles::new(tag_dir(tag.path()));
        let staged = dirs.stage().unwrap();
        fs::write(staged.path().join("f"), b"x").unwrap();
        let path = staged.path().to_owned();
        drop(staged);
        assert!(!path.exists());

        let mut staged = dirs.stage().unwrap();
        assert!(dirs.owns(&staged));
        fs::write(staged.path().join("f"), b"x").unwrap();
        let measured = dirs.measure(&staged).unwrap();
        assert_eq!((measured.entries, measured.length), (1, 1));
        let (name, published) = dirs.publish(&mut staged, &measured).unwrap();
        drop(staged);
        assert_eq!(fs::read(published.join("f")).unwrap(), b"x");
        assert!(dirs.is_present(&name));
        assert_eq!(dirs.list().unwrap(), vec![name.clone()]);
        dirs.remove(&name).unwrap();
        assert!(!dirs.is_present(&name));
    }

    /// Issue 13, item 11: a directory whose content changed between its measurement and its
    /// move into place (files removed by another process's sweep) is not stored.
    #[test]
    fn trust_11_a_directory_that_changed_after_it_was_measured_is_not_published() {
        let tag = tempfile::tempdir().unwrap();
        let dirs = DirFiles::new(tag_dir(tag.path()));
        let mut staged = dirs.stage().unwrap();
        for index in 0..3 {
            fs::write(staged.path().join(format!("f{index}")), b"xyz").unwrap();
        }
        let measured = dirs.measure(&staged).unwrap();
        fs::remove_file(staged.path().join("f1")).unwrap();
        let err = dirs.publish(&mut staged, &measured).unwrap_err();
        assert!(
            matches!(
                &err,
                CacheError::StagedDirectoryChanged {
                    measured_entries: 3,
                    found_entries: 2,
                    ..
                }
            ),
            "{err}"
        );
        drop(staged);
        assert_eq!(dirs.list().unwrap(), Vec::<String>::new(), "removed again");
        assert!(
            fs::read_dir(tag.path().join("dirs/.staging"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn a_detached_staging_directory_is_not_owned_by_a_tag() {
        let tag = tempfile::tempdir().unwrap();
        let dirs = DirFiles::new(tag_dir(tag.path()));
        let detached = StagedDirectory::detached().unwrap();
        assert!(!dirs.owns(&detached));
        assert!(detached.path().is_dir());
    }
}
