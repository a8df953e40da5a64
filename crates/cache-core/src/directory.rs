//! The directories of the API: [`StagedDirectory`], which a caller fills before storing it, and
//! [`CachedDirectory`], what a read of a stored directory returns. The store's owned directories
//! (`store/dirs.rs`) make and consume them; the traits of `manager.rs` name them, so they live
//! below both.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::codec::hex;
use crate::error::Result;
use crate::files::create_private_dir;
use crate::fsys::Dir;

static STAGE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory being filled before it is stored with
/// [`Cache::set_directory`](crate::Cache::set_directory). Fill it through
/// [`StagedDirectory::path`]; if it is dropped without being stored, it is removed.
#[derive(Debug)]
pub struct StagedDirectory {
    path: PathBuf,
    /// `dirs/.staging` as it was opened when the directory was staged, and the directory's name
    /// in it: the cache's own operations on it (measure, move into place, remove) go through
    /// these, never through `path`. `None` for a detached directory (a disabled cache's).
    staging: Option<(Dir, String)>,
    /// Set once the directory has been moved into place (or handed back by a disabled cache).
    consumed: bool,
}

impl StagedDirectory {
    /// Where to put the directory's content.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A directory `name` just created in `staging` (a tag's `dirs/.staging`).
    pub(crate) fn staged_in(staging: Dir, name: String) -> StagedDirectory {
        StagedDirectory {
            path: staging.join(&name),
            staging: Some((staging, name)),
            consumed: false,
        }
    }

    /// The staging directory and the name in it; `None` for a detached directory.
    pub(crate) fn staging(&self) -> Option<(&Dir, &str)> {
        self.staging
            .as_ref()
            .map(|(staging, name)| (staging, name.as_str()))
    }

    /// The directory has been moved into place (or handed back): dropping it removes nothing.
    pub(crate) fn mark_consumed(&mut self) {
        self.consumed = true;
    }

    /// A staging directory outside any cache, for a disabled cache: dropped, it is removed.
    pub(crate) fn detached() -> Result<StagedDirectory> {
        let path = std::env::temp_dir().join(format!("glovebox-cache-staged-{}", unique_name()));
        create_private_dir(&path, true)?;
        Ok(StagedDirectory {
            path,
            staging: None,
            consumed: false,
        })
    }
}

impl Drop for StagedDirectory {
    fn drop(&mut self) {
        if self.consumed {
            return;
        }
        match &self.staging {
            Some((staging, name)) => {
                let _ = staging.remove_tree(name);
            }
            None => {
                let _ = fs::remove_dir_all(&self.path);
            }
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
    /// Bytes the directory occupies on disk (allocated blocks of its files, directories and
    /// symlinks), as measured when it was stored.
    pub size_bytes: u64,
    /// The files (relative paths) the cache verified on this read: files shared with the tag's
    /// content files, each found to hold the bytes, mode and modification time it was stored
    /// with (from `set_directory`: the files it shared, hashed as they were). A caller that
    /// checks its own record of the files need not read these again.
    pub verified_files: Vec<PathBuf>,
}

/// A name no other directory of any process has: hex of a hash of the process id, a counter and
/// the time.
pub(crate) fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut hasher = blake3::Hasher::new();
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(&STAGE_COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(&nanos.to_le_bytes());
    hex(&hasher.finalize().as_bytes()[..16])
}
