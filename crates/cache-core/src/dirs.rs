//! Directories owned by entries (the compilation domain's workspaces): staged under
//! `<root>/<tag>/dirs/.staging/`, moved to `<root>/<tag>/dirs/<name>` inside the write
//! transaction that records their entry, counted in the tag's size limit, and removed with the
//! entry.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec::{hex, is_safe_dir_name};
use crate::error::{CacheError, Result};
use crate::files::{create_private_dir, read_dir_if_present, remove_stale_entries, sync_dir};

static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory being filled before it is stored with
/// [`CacheManager::set_directory`](crate::CacheManager::set_directory). Fill it through
/// [`StagedDirectory::path`]; if it is dropped without being stored, it is removed.
#[derive(Debug)]
pub struct StagedDirectory {
    path: PathBuf,
    /// Set once the directory has been moved into place (or handed back by a disabled cache).
    consumed: bool,
}

impl StagedDirectory {
    /// Where to put the directory's content.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A staging directory outside any cache, for a disabled cache: dropped, it is removed.
    pub(crate) fn detached() -> Result<StagedDirectory> {
        let path = std::env::temp_dir().join(format!("glovebox-cache-staged-{}", unique_name()));
        create_private_dir(&path, true)?;
        Ok(StagedDirectory {
            path,
            consumed: false,
        })
    }
}

impl Drop for StagedDirectory {
    fn drop(&mut self) {
        if !self.consumed {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A directory stored in the cache: where it is, the value stored with it, and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedDirectory {
    /// The directory, under `<root>/<tag>/dirs/`. It belongs to the cache: read it or copy it
    /// out, do not change it; it is removed when its entry expires, is evicted or is deleted.
    pub path: PathBuf,
    /// The value stored with the directory (for example its metadata).
    pub value: Vec<u8>,
    /// Bytes of the directory's files (and symlinks) as measured when it was stored.
    pub size_bytes: u64,
}

/// The owned directories of one tag.
#[derive(Debug)]
pub(crate) struct DirFiles {
    dir: PathBuf,
    staging: PathBuf,
}

/// A name no other directory of any process has: hex of a hash of the process id, a counter and
/// the time.
fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut hasher = blake3::Hasher::new();
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(&STAGE_COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(&nanos.to_le_bytes());
    hex(&hasher.finalize().as_bytes()[..16])
}

impl DirFiles {
    pub(crate) fn new(tag_dir: &Path) -> Self {
        let dir = tag_dir.join("dirs");
        let staging = dir.join(".staging");
        DirFiles { dir, staging }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        debug_assert!(
            is_safe_dir_name(name),
            "names come from unique_name or are checked"
        );
        self.dir.join(name)
    }

    /// A new empty staging directory, named `<pid>-<unique>` so that cleanup can tell whether
    /// its process is still alive.
    pub(crate) fn stage(&self) -> Result<StagedDirectory> {
        create_private_dir(&self.dir, false)?;
        create_private_dir(&self.staging, false)?;
        let path = self
            .staging
            .join(format!("{}-{}", std::process::id(), unique_name()));
        create_private_dir(&path, false)?;
        Ok(StagedDirectory {
            path,
            consumed: false,
        })
    }

    /// Whether `staged` was staged by this tag (and not by another tag or a disabled cache).
    pub(crate) fn owns(&self, staged: &StagedDirectory) -> bool {
        staged.path.parent() == Some(self.staging.as_path())
    }

    /// Moves a staged directory to its place under a new name; returns the name and path.
    pub(crate) fn publish(&self, staged: &mut StagedDirectory) -> Result<(String, PathBuf)> {
        let name = unique_name();
        let path = self.path(&name);
        fs::rename(&staged.path, &path)
            .map_err(|source| CacheError::io("moving directory into place", &path, source))?;
        staged.consumed = true;
        sync_dir(&self.dir)?;
        Ok((name, path))
    }

    /// Whether the directory is there.
    pub(crate) fn is_present(&self, name: &str) -> bool {
        is_safe_dir_name(name)
            && fs::symlink_metadata(self.path(name)).is_ok_and(|meta| meta.is_dir())
    }

    /// Removes an owned directory and everything in it; a missing one is fine.
    pub(crate) fn remove(&self, name: &str) -> Result<()> {
        if !is_safe_dir_name(name) {
            return Ok(());
        }
        let path = self.path(name);
        match fs::remove_dir_all(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CacheError::io("removing owned directory", path, source)),
        }
    }

    /// The names of every owned directory present (staging excluded; other names ignored).
    pub(crate) fn list(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in read_dir_if_present(&self.dir)? {
            let entry = entry.map_err(|source| CacheError::io("listing", &self.dir, source))?;
            if let Some(name) = entry.file_name().to_str()
                && is_safe_dir_name(name)
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    /// Removes staging directories of processes that are gone; how many.
    pub(crate) fn remove_stale_staging(&self) -> Result<u64> {
        remove_stale_entries(&self.staging, |path| fs::remove_dir_all(path))
    }
}

/// The bytes under `path`: lengths of regular files and symlinks, found without following any
/// symlink.
pub(crate) fn measure(path: &Path) -> Result<u64> {
    let mut total = 0u64;
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries =
            fs::read_dir(&dir).map_err(|source| CacheError::io("measuring", &dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| CacheError::io("measuring", &dir, source))?;
            let meta = fs::symlink_metadata(entry.path())
                .map_err(|source| CacheError::io("measuring", entry.path(), source))?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_counts_files_in_nested_directories_and_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/one"), [0u8; 10]).unwrap();
        fs::write(dir.path().join("a/b/two"), [0u8; 32]).unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("big"), vec![0u8; 4096]).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        let measured = measure(dir.path()).unwrap();
        assert!(
            (42..42 + 4096).contains(&measured),
            "the link counts its own length, not its target's: {measured}"
        );
    }

    #[test]
    fn a_dropped_staged_directory_is_removed_and_a_published_one_is_kept() {
        let tag = tempfile::tempdir().unwrap();
        let dirs = DirFiles::new(tag.path());
        let staged = dirs.stage().unwrap();
        fs::write(staged.path().join("f"), b"x").unwrap();
        let path = staged.path().to_owned();
        drop(staged);
        assert!(!path.exists());

        let mut staged = dirs.stage().unwrap();
        assert!(dirs.owns(&staged));
        fs::write(staged.path().join("f"), b"x").unwrap();
        let (name, published) = dirs.publish(&mut staged).unwrap();
        drop(staged);
        assert_eq!(fs::read(published.join("f")).unwrap(), b"x");
        assert!(dirs.is_present(&name));
        assert_eq!(dirs.list().unwrap(), vec![name.clone()]);
        dirs.remove(&name).unwrap();
        assert!(!dirs.is_present(&name));
    }

    #[test]
    fn a_detached_staging_directory_is_not_owned_by_a_tag() {
        let tag = tempfile::tempdir().unwrap();
        let dirs = DirFiles::new(tag.path());
        let detached = StagedDirectory::detached().unwrap();
        assert!(!dirs.owns(&detached));
        assert!(detached.path().is_dir());
    }
}
