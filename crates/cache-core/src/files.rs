//! Files of a cache root: creating the root and tag directories privately, refusing symlinks,
//! registering which database files this process has open, and opening a tag's database with
//! quarantine of a corrupt file.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use once_cell::sync::Lazy;
use redb::Database;

use crate::config::CacheOptions;
use crate::error::{CacheError, Result};
use crate::fsys;
use crate::store::backend::{Access, HandleSettings, Opened, open_database};
use crate::tag::Tag;

/// File name of a tag's database inside `<root>/<tag>/`.
pub const DATABASE_FILE_NAME: &str = "cache.redb";

/// Database files this process has open. redb allows one handle per file per process, so a
/// second coordinator opening the same tag gets a clear error instead of a confusing one.
static OPEN_FILES: Lazy<Mutex<HashSet<PathBuf>>> = Lazy::new(|| Mutex::new(HashSet::new()));

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

/// Opens (creating if needed) `<root>/<tag>/` and creates an empty database file (mode 0600)
/// if there is none, refusing symlinks and a root or tag directory another user could change,
/// so that nothing the cache writes can land outside the root. Returns the database's path and
/// the open tag directory.
pub(crate) fn prepare_tag_files(canonical_root: &Path, tag: &Tag) -> Result<(PathBuf, fsys::Dir)> {
    let tag_path = canonical_root.join(tag.as_str());
    let tag_dir = match fsys::Dir::open_tag(canonical_root, tag.as_str(), true) {
        Ok(Some(tag_dir)) => tag_dir,
        Ok(None) => {
            return Err(CacheError::InvalidRoot {
                path: tag_path,
                reason: "tag directory vanished while it was being created".to_owned(),
            });
        }
        // A symlink or a file where the tag directory goes: the error callers have always had.
        Err(CacheError::UnsafePath { path, reason }) if path == tag_path => {
            let reason = if reason.contains("symlink") {
                "tag directory is a symlink; refusing to follow it out of the cache root".to_owned()
            } else if reason.contains("not a directory") {
                "tag directory is not a directory".to_owned()
            } else {
                reason
            };
            return Err(CacheError::InvalidRoot { path, reason });
        }
        Err(err) => return Err(err),
    };
    let path = tag_dir.join(DATABASE_FILE_NAME);
    match tag_dir.stat(DATABASE_FILE_NAME)? {
        Some(meta) if meta.kind != fsys::Kind::File => {
            return Err(CacheError::InvalidRoot {
                path,
                reason: "database path is not a regular file (a symlink or directory)".to_owned(),
            });
        }
        Some(_) => {}
        None => match tag_dir.create_new_file(DATABASE_FILE_NAME) {
            Ok(_) => {}
            // Created by another process at the same moment: theirs is as good.
            Err(CacheError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists
                    && tag_dir
                        .stat(DATABASE_FILE_NAME)?
                        .is_some_and(|meta| meta.kind == fsys::Kind::File) => {}
            Err(err) => return Err(err),
        },
    }
    Ok((path, tag_dir))
}

/// An open database and its entry in [`OPEN_FILES`]; fields drop in order, so the file is
/// closed before it is unregistered.
pub(crate) struct OpenDatabase {
    pub(crate) database: Database,
    /// Shared with a handle that replaced this one after an I/O error: the path stays
    /// registered until every handle to it is gone.
    pub(crate) registration: Arc<FileRegistration>,
}

impl OpenDatabase {
    /// A handle on a new `database` for the same file, replacing this one: the path stays
    /// registered until both are gone.
    pub(crate) fn replaced_by(&self, database: Database) -> Arc<OpenDatabase> {
        Arc::new(OpenDatabase {
            database,
            registration: Arc::clone(&self.registration),
        })
    }
}

pub(crate) struct FileRegistration(PathBuf);

impl FileRegistration {
    pub(crate) fn register(path: &Path) -> Result<Self> {
        if lock(&OPEN_FILES).insert(path.to_owned()) {
            Ok(FileRegistration(path.to_owned()))
        } else {
            Err(CacheError::AlreadyOpenInProcess {
                path: path.to_owned(),
            })
        }
    }
}

impl Drop for FileRegistration {
    fn drop(&mut self) {
        lock(&OPEN_FILES).remove(&self.0);
    }
}

/// Opens the file (through [`open_database`], so every wait for another process's lock is bounded
/// by `options.timeout`); a file redb reports as corrupt (or that panics redb while opening) is
/// moved aside by [`quarantine_and_start_fresh`]: a cache can always be rebuilt, a crash loop
/// cannot.
pub(crate) fn open_or_quarantine(
    path: &Path,
    tag: &Tag,
    options: &CacheOptions,
) -> Result<Database> {
    match open_database(path, tag.as_str(), &shared_handle(options))? {
        Opened::Database(database) => Ok(database),
        Opened::Corrupt(reason) => quarantine_and_start_fresh(path, tag, options, &reason),
    }
}

/// Renames the damaged file at `path` to `cache.redb.corrupt-<ms>` and opens a fresh one in its
/// place, created first with mode 0600 so that redb never creates it with the umask's mode.
pub(crate) fn quarantine_and_start_fresh(
    path: &Path,
    tag: &Tag,
    options: &CacheOptions,
    reason: &str,
) -> Result<Database> {
    let quarantined = path.with_extension(format!("redb.corrupt-{}", options.clock.now_ms()));
    tracing::error!(tag = %tag, path = %path.display(), quarantined = %quarantined.display(), reason, "cache file is corrupt; moved aside, starting empty");
    let tag_path = path.parent().unwrap_or(path);
    let tag_dir = fsys::Dir::open_tag_path(tag_path, false)?.ok_or_else(|| {
        CacheError::io(
            "quarantining corrupt database",
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    let quarantined_name = quarantined
        .file_name()
        .unwrap_or(std::ffi::OsStr::new("cache.redb.corrupt"));
    tag_dir.rename(DATABASE_FILE_NAME, &tag_dir, quarantined_name)?;
    tag_dir.create_new_file(DATABASE_FILE_NAME)?;
    match open_database(path, tag.as_str(), &shared_handle(options))? {
        Opened::Database(database) => Ok(database),
        Opened::Corrupt(reason) => Err(CacheError::InvalidRoot {
            path: path.to_owned(),
            reason: format!("a fresh database file cannot be opened: {reason}"),
        }),
    }
}

/// The cache's own handle on a tag's file: read-write, shared with other processes.
fn shared_handle(options: &CacheOptions) -> HandleSettings {
    HandleSettings {
        access: Access::Shared,
        timeout: options.timeout,
        page_cache_bytes: options.page_cache_bytes,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The set is updated by single inserts and removes: a panic cannot leave it torn.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::CacheManager;
    use crate::store::RedbCache;

    #[test]
    fn a_corrupt_file_is_quarantined_and_the_tag_starts_empty() {
        let root = tempfile::tempdir().unwrap();
        let canonical = prepare_root(root.path()).unwrap();
        let tag_dir = canonical.join("t");
        fs::create_dir(&tag_dir).unwrap();
        fs::write(tag_dir.join(DATABASE_FILE_NAME), vec![0xA5u8; 64 * 1024]).unwrap();
        let cache =
            RedbCache::open(&canonical, Tag::new("t").unwrap(), CacheOptions::default()).unwrap();
        assert_eq!(cache.keys().unwrap(), Vec::<Vec<u8>>::new());
        cache.set(b"k", b"v", None).unwrap();
        assert_eq!(cache.get(b"k").unwrap(), Some(b"v".to_vec()));
        let quarantined: Vec<_> = fs::read_dir(&tag_dir)
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().to_string_lossy().contains(".corrupt-"))
            .collect();
        assert_eq!(
            quarantined.len(),
            1,
            "the corrupt file is kept aside for inspection"
        );
    }
}
