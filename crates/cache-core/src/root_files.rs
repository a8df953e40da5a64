//! [`RootFiles`]: small files an extension keeps directly under the cache root (the remote
//! tier's breaker hint), reached through `fsys` like every path below the root: a symlink
//! planted under the name is never followed, a read is bounded, a write goes through an
//! exclusive temp file renamed over the name. Not synced: what lives here is a hint, which a
//! crash may lose.
//!
//! A name must hold a `.`, which no tag may: such a file can never stand where a tag's
//! directory would.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{CacheError, Result};
use crate::fsys::{self, Dir};

/// Distinguishes this process's temp names.
static TEMPS: AtomicU64 = AtomicU64::new(0);

/// The cache root, opened for an extension's small files (see the module docs). Cheap to clone.
#[derive(Clone, Debug)]
pub struct RootFiles {
    root: Arc<Dir>,
}

impl RootFiles {
    /// The root at `root`, if it exists (nothing is created), checked as the cache checks its
    /// root (this user's, not writable by others).
    pub fn open_existing(root: &Path) -> Result<Option<RootFiles>> {
        let resolved = match std::fs::canonicalize(root) {
            Ok(resolved) => resolved,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::io("resolving cache root", root, source)),
        };
        Dir::open_root(&resolved).map(|root| Some(RootFiles::of(root)))
    }

    pub(crate) fn of(root: Dir) -> RootFiles {
        RootFiles {
            root: Arc::new(root),
        }
    }

    /// The root's path.
    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// The path of the file `name`, for messages.
    pub fn join(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn check_name(&self, name: &str) -> Result<()> {
        if name.contains('.') && !name.starts_with('.') && !name.contains('/') {
            Ok(())
        } else {
            Err(CacheError::UnsafePath {
                path: self.root.join(name),
                reason: "a file of the root is one name holding a `.` (a tag cannot), not starting with one".to_owned(),
            })
        }
    }

    /// The content of `name`; `None` when there is none, when something other than a regular
    /// file is there (a symlink is not followed), or when it is longer than `max_bytes`.
    pub fn read(&self, name: &str, max_bytes: usize) -> Result<Option<Vec<u8>>> {
        self.check_name(name)?;
        let Some(file) = self.root.open_file(name)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        file.take(max_bytes as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| CacheError::io("reading", self.root.join(name), source))?;
        Ok((bytes.len() <= max_bytes).then_some(bytes))
    }

    /// Replaces `name` with `bytes`: written to an exclusive temp file, renamed over the name (a
    /// symlink there is replaced, not followed). Not synced.
    pub fn replace(&self, name: &str, bytes: &[u8]) -> Result<()> {
        self.check_name(name)?;
        let temp = format!(
            "{name}.{}",
            fsys::temp_name(TEMPS.fetch_add(1, Ordering::Relaxed))
        );
        self.root
            .replace_file(name, &temp, |file| file.write_all(bytes))
    }

    /// Removes `name`; `false` when it was not there.
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.check_name(name)?;
        self.root.remove_file(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_file_is_written_read_and_removed_and_a_symlink_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let files = RootFiles::open_existing(root.path()).unwrap().unwrap();
        files.replace("hint.x", b"hello").unwrap();
        assert_eq!(files.read("hint.x", 5).unwrap().unwrap(), b"hello");
        assert_eq!(files.read("hint.x", 4).unwrap(), None, "over the bound");
        assert!(files.remove("hint.x").unwrap());
        assert_eq!(files.read("hint.x", 5).unwrap(), None);

        let secret = root.path().join("elsewhere");
        std::fs::write(&secret, b"secret").unwrap();
        std::os::unix::fs::symlink(&secret, root.path().join("hint.x")).unwrap();
        assert_eq!(files.read("hint.x", 64).unwrap(), None, "not followed");
        files.replace("hint.x", b"new").unwrap();
        assert_eq!(
            std::fs::read(&secret).unwrap(),
            b"secret",
            "not written through"
        );
        assert_eq!(files.read("hint.x", 64).unwrap().unwrap(), b"new");

        for bad in ["tagname", "a/b.c", ".hidden.x"] {
            let err = files.read(bad, 1).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(
            RootFiles::open_existing(&root.path().join("missing"))
                .unwrap()
                .is_none()
        );
    }
}
