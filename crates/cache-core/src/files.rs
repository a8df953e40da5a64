//! Files of a cache root: creating the root privately (resolved, checked by `fsys`), private
//! directories and files outside the root, and `TempOutput`. Opening a tag's database (its
//! registration and quarantine) is `store/handle.rs`'s.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{CacheError, Result};
use crate::fsys;

/// File name of a tag's database inside `<root>/<tag>/`.
pub const DATABASE_FILE_NAME: &str = "cache.redb";

/// Creates `root` (mode 0700) if needed, checks that it is a directory that only this user (or
/// root) can change, and returns its canonical path: the form the coordinator keys its registry
/// with. The root itself may be a symlink (the user chose it): it is resolved here, once.
pub fn prepare_root(root: &Path) -> Result<PathBuf> {
    match fs::symlink_metadata(root) {
        Ok(meta) if meta.is_dir() || (meta.file_type().is_symlink() && root.is_dir()) => {}
        Ok(_) => {
            return Err(CacheError::InvalidRoot {
                path: root.to_owned(),
                reason: "is not a directory".to_owned(),
            });
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => create_private_dir(root, true)?,
        Err(source) => return Err(CacheError::io("reading cache root", root, source)),
    }
    let canonical = fs::canonicalize(root)
        .map_err(|source| CacheError::io("resolving cache root", root, source))?;
    fsys::Dir::open_root(&canonical)?;
    Ok(canonical)
}

/// Creates a directory with mode 0700; an existing directory is fine.
pub(crate) fn create_private_dir(path: &Path, recursive: bool) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(recursive);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(CacheError::io("creating directory", path, source)),
    }
}

/// Creates a new file with mode 0600, failing if anything exists under its name (a symlink
/// included: `O_EXCL` never follows one). For files outside the cache root (a caller's
/// destination); below the root, `fsys` creates files.
pub(crate) fn create_new_private_file(path: &Path) -> Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|source| CacheError::io("creating file", path, source))
}

/// A file written beside its destination and renamed over it once complete; dropped before
/// that, it is removed and the destination is untouched.
pub(crate) struct TempOutput {
    path: PathBuf,
    file: fs::File,
    persisted: bool,
}

impl TempOutput {
    pub(crate) fn beside(parent: &Path, destination: &Path) -> Result<TempOutput> {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = destination
            .file_name()
            .map_or_else(|| "output".into(), |name| name.to_string_lossy());
        let path = parent.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = create_new_private_file(&path)?;
        Ok(TempOutput {
            path,
            file,
            persisted: false,
        })
    }

    pub(crate) fn file_mut(&mut self) -> &mut fs::File {
        &mut self.file
    }

    pub(crate) fn persist(mut self, destination: &Path) -> Result<()> {
        fs::rename(&self.path, destination)
            .map_err(|source| CacheError::io("moving the finished file to", destination, source))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}
