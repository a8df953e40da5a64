//! The one way into a cache root: every directory and file below it is opened, created, listed,
//! renamed, removed and measured here, relative to an open directory, and a symlink below the
//! root is never followed.
//!
//! [`Dir`] is an open directory (a file descriptor) and its path, kept for messages only. A
//! directory below it is reached one component at a time with `openat(O_DIRECTORY |
//! O_NOFOLLOW)`, so a symlink planted where the cache keeps a directory of its own (`blobs`,
//! `blobs/tmp`, `dirs/.staging`...) is refused with [`CacheError::UnsafePath`], never followed.
//! Files are opened with `O_NOFOLLOW`, created with `O_CREAT | O_EXCL` (mode 0600: a name that
//! already exists, a symlink included, is never written through), trees are removed with
//! `unlinkat` (a symlink inside one is unlinked, never followed) and measured with `fstatat(...,
//! AT_SYMLINK_NOFOLLOW)`.
//!
//! The root and tag directories are checked as OpenSSH checks the files it trusts: owned by this
//! user (or root) and writable by nobody else. Below a directory only its owner can change, no
//! one else can plant a link, so the checks of those two directories are what make the rest
//! hold for other users; `O_NOFOLLOW` everywhere makes it hold for a link planted anyway.
//!
//! Temp files and staging directories are named after their writer ([`temp_name`]: process id,
//! pid namespace and boot id), so that a sweep can tell a dead writer of this machine and pid
//! namespace from one it cannot judge (another container or host sharing the root), which it
//! leaves until it is old ([`temps::STALE_TEMP_AGE`]).
//!
//! What this cannot cover: redb opens `<tag>/cache.redb` by path, and callers fill a staged
//! directory by path. Both paths lead through directories checked here, which only this user
//! can change.
//!
//! The folder keeps that one layer together, by concern: `mod.rs` the [`Dir`] (opening,
//! creating, listing, renaming, removing one entry), `tree.rs` the removal and measuring of a
//! whole tree, `temps.rs` the names of temp files and the judgement of stale ones. Every
//! `openat` / `unlinkat` / `renameat` under the root is in this folder, so a reviewer checks the
//! containment invariant by reading it alone. Its tests are in `fsys/tests.rs`.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::sync::LazyLock;

use crate::error::{CacheError, Result};

mod links;
mod temps;
mod tree;

pub(crate) use links::{Linked, meta_of_file};
pub(crate) use temps::temp_name;
pub(crate) use tree::TreeSize;

/// Mode of every directory the cache creates.
const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of every file the cache creates.
const PRIVATE_FILE_MODE: u32 = 0o600;

/// What an entry is, seen without following it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    /// A device, FIFO or socket: nothing the cache makes.
    Other,
}

impl Kind {
    fn of(stat: &rustix::fs::Stat) -> Kind {
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        }
    }
}

/// What `fstatat(AT_SYMLINK_NOFOLLOW)` says about an entry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub(crate) kind: Kind,
    /// Length in bytes (of the link itself, for a symlink).
    pub(crate) len: u64,
    /// Bytes allocated on disk (`st_blocks * 512`).
    pub(crate) allocated: u64,
    pub(crate) modified: SystemTime,
    /// Names the inode has (`st_nlink`).
    pub(crate) links: u64,
    /// Device and inode number: which file this is, whatever its name.
    pub(crate) identity: (u64, u64),
    /// Permission bits (`0o7777`).
    pub(crate) mode: u32,
    /// Modification time as stored (seconds, nanoseconds), for exact comparison.
    pub(crate) mtime: (i64, i64),
    /// Status change time (seconds, nanoseconds): any write, chmod or link moves it.
    pub(crate) ctime: (i64, i64),
}

impl Meta {
    #[allow(
        clippy::useless_conversion,
        reason = "the stat fields' types differ between platforms; same type on Linux x86-64"
    )]
    fn of(stat: &rustix::fs::Stat) -> Meta {
        let seconds = u64::try_from(stat.st_mtime).unwrap_or(0);
        let nanos = u32::try_from(stat.st_mtime_nsec).unwrap_or(0);
        Meta {
            kind: Kind::of(stat),
            len: u64::try_from(stat.st_size).unwrap_or(0),
            allocated: u64::try_from(stat.st_blocks)
                .unwrap_or(0)
                .saturating_mul(512),
            modified: UNIX_EPOCH + Duration::new(seconds, nanos.min(999_999_999)),
            links: u64::from(stat.st_nlink),
            identity: (u64::from(stat.st_dev), u64::from(stat.st_ino)),
            mode: u32::from(stat.st_mode) & 0o7777,
            mtime: (
                i64::from(stat.st_mtime),
                i64::try_from(stat.st_mtime_nsec).unwrap_or(0),
            ),
            ctime: (
                i64::from(stat.st_ctime),
                i64::try_from(stat.st_ctime_nsec).unwrap_or(0),
            ),
        }
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) name: OsString,
    pub(crate) meta: Meta,
}

/// handed to callers).
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

fn io_error(errno: Errno) -> io::Error {
    io::Error::from(errno)
}

/// Refuses a name that is not one plain component: every name below the root is reached one
/// directory at a time.
fn component<'a>(dir: &Path, name: &'a OsStr) -> Result<&'a OsStr> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(CacheError::UnsafePath {
            path: dir.join(name),
            reason: "not a single file name; the cache reaches every path one directory at a time"
                .to_owned(),
        });
    }
    Ok(name)
}

impl Dir {
    /// Opens the cache root (already resolved by `prepare_root`: the root itself may be a symlink
    /// the user chose) and checks that only this user can change it.
    pub(crate) fn open_root(root: &Path) -> Result<Dir> {
        let fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| CacheError::io("opening cache root", root, io_error(errno)))?;
        let dir = Dir {
            fd,
            path: root.to_owned(),
        };
        dir.check_private("cache root")?;
        Ok(dir)
    }

    /// Opens the root at `root` and its tag directory `tag` (created 0700 when `create`), both
    /// checked as private to this user. `None` when the tag directory does not exist and
    /// `create` is false.
    pub(crate) fn open_tag(root: &Path, tag: &str, create: bool) -> Result<Option<Dir>> {
        let root = Dir::open_root(root)?;
        let tag_dir = if create {
            Some(root.dir_or_create(tag)?)
        } else {
            root.dir(tag)?
        };
        if let Some(tag_dir) = &tag_dir {
            tag_dir.check_private("tag directory")?;
        }
        Ok(tag_dir)
    }

    /// [`Dir::open_tag`] for a tag directory given by its path (`<root>/<tag>`).
    pub(crate) fn open_tag_path(tag_dir: &Path, create: bool) -> Result<Option<Dir>> {
        let (Some(root), Some(tag)) = (tag_dir.parent(), tag_dir.file_name()) else {
            return Err(CacheError::UnsafePath {
                path: tag_dir.to_owned(),
                reason: "not a tag directory below a cache root".to_owned(),
            });
        };
        let Some(tag) = tag.to_str() else {
            return Err(CacheError::UnsafePath {
                path: tag_dir.to_owned(),
                reason: "a tag directory's name is a tag".to_owned(),
            });
        };
        Dir::open_tag(root, tag, create)
    }

    /// The directory's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in this directory (for messages and for callers' paths).
    pub(crate) fn join(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.path.join(name.as_ref())
    }

    /// Refuses this directory if another user could change it: owned by someone other than this
    /// user or root, or writable by group or others (as OpenSSH refuses such paths).
    pub(crate) fn check_private(&self, what: &str) -> Result<()> {
        let stat = rustix::fs::fstat(&self.fd)
            .map_err(|errno| CacheError::io("reading", &self.path, io_error(errno)))?;
        let me = rustix::process::geteuid().as_raw();
        if stat.st_uid != me && stat.st_uid != 0 {
            return Err(CacheError::UnsafePath {
                path: self.path.clone(),
                reason: format!(
                    "the {what} is owned by uid {}, not by this user (uid {me}) or root: its \
                     owner could plant links in it; use a directory of your own",
                    stat.st_uid
                ),
            });
        }
        let mode = stat.st_mode & 0o7777;
        if mode & 0o022 != 0 {
            return Err(CacheError::UnsafePath {
                path: self.path.clone(),
                reason: format!(
                    "the {what} is writable by {} (mode {mode:04o}): another user could plant \
                     links in it; run `chmod go-w {}`",
                    if mode & 0o002 != 0 {
                        "others"
                    } else {
                        "its group"
                    },
                    self.path.display()
                ),
            });
        }
        Ok(())
    }

    /// Gives this directory's owner write and search permission if it lacks them (an owned
    /// directory keeps the modes its caller gave, a read-only 0555 one included), so that its
    /// entries can be removed by a process that permission bits apply to. Through the open
    /// descriptor: never a path, never a symlink.
    pub(crate) fn let_owner_empty_it(&self) -> Result<()> {
        let stat = rustix::fs::fstat(&self.fd)
            .map_err(|errno| CacheError::io("reading the mode of", &self.path, io_error(errno)))?;
        let mode = stat.st_mode & 0o7777;
        if mode & 0o700 != 0o700 {
            rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode | 0o700)).map_err(|errno| {
                CacheError::io("making writable for removal", &self.path, io_error(errno))
            })?;
        }
        Ok(())
    }

    /// Sets this directory's permission bits to `mode` (masked to `0o777`), through the open
    /// descriptor: never a path, never a symlink.
    pub(crate) fn set_mode(&self, mode: u32) -> Result<()> {
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode & 0o777))
            .map_err(|errno| CacheError::io("setting the mode of", &self.path, io_error(errno)))
    }

    /// The child directory `name`, opened without following a symlink; `None` if it does not
    /// exist. A symlink or a file there is refused.
    pub(crate) fn dir(&self, name: impl AsRef<OsStr>) -> Result<Option<Dir>> {
        let name = component(&self.path, name.as_ref())?;
        match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(Dir {
                fd,
                path: self.join(name),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(errno @ (Errno::LOOP | Errno::NOTDIR)) => Err(self.refusal(name, errno)),
            Err(errno) => Err(CacheError::io(
                "opening directory",
                self.join(name),
                io_error(errno),
            )),
        }
    }

    /// The child directory `name`, created (0700) if missing; a symlink or a file there is
    /// refused.
    pub(crate) fn dir_or_create(&self, name: impl AsRef<OsStr>) -> Result<Dir> {
        let name = component(&self.path, name.as_ref())?;
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(PRIVATE_DIR_MODE)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(errno) => {
                return Err(CacheError::io(
                    "creating directory",
                    self.join(name),
                    io_error(errno),
                ));
            }
        }
        self.just_created(name)
    }

    /// Opens the child directory `name` this process has just created; gone already is an error
    /// (another process removed it in between).
    fn just_created(&self, name: &OsStr) -> Result<Dir> {
        self.dir(name)?.ok_or_else(|| {
            CacheError::io(
                "opening directory",
                self.join(name),
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "removed by another process just after it was created",
                ),
            )
        })
    }

    /// Creates the child directory `name` (0700), failing if anything exists under that name,
    /// and opens it.
    pub(crate) fn create_new_dir(&self, name: impl AsRef<OsStr>) -> Result<Dir> {
        let name = component(&self.path, name.as_ref())?;
        rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(PRIVATE_DIR_MODE)).map_err(
            |errno| CacheError::io("creating directory", self.join(name), io_error(errno)),
        )?;
        self.just_created(name)
    }

    /// Why `name` cannot be opened as a directory: it is a symlink, or not a directory.
    fn refusal(&self, name: &OsStr, errno: Errno) -> CacheError {
        let path = self.join(name);
        let reason = match self.stat(name) {
            Ok(Some(meta)) if meta.kind == Kind::Symlink => {
                "is a symlink where the cache keeps a directory of its own; the cache never \
                 follows a symlink below its root: remove it"
            }
            Ok(Some(_)) => {
                "is not a directory where the cache keeps a directory of its own: remove it"
            }
            _ => return CacheError::io("opening directory", path, io_error(errno)),
        };
        CacheError::UnsafePath {
            path,
            reason: reason.to_owned(),
        }
    }

    /// What `name` is, without following it; `None` if it does not exist.
    pub(crate) fn stat(&self, name: impl AsRef<OsStr>) -> Result<Option<Meta>> {
        let name = component(&self.path, name.as_ref())?;
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(Meta::of(&stat))),
            Err(Errno::NOENT) => Ok(None),
            Err(errno) => Err(CacheError::io("reading", self.join(name), io_error(errno))),
        }
    }

    /// Creates the file `name` (mode 0600), failing if anything exists under that name: a file,
    /// a directory or a symlink, which is never written through.
    pub(crate) fn create_new_file(&self, name: impl AsRef<OsStr>) -> Result<File> {
        let name = component(&self.path, name.as_ref())?;
        rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(PRIVATE_FILE_MODE),
        )
        .map(File::from)
        .map_err(|errno| CacheError::io("creating file", self.join(name), io_error(errno)))
    }

    /// Opens the regular file `name` for reading; `None` if nothing is there, or something that
    /// is not a regular file (a symlink is not followed).
    pub(crate) fn open_file(&self, name: impl AsRef<OsStr>) -> Result<Option<File>> {
        let name = component(&self.path, name.as_ref())?;
        // O_NONBLOCK: a FIFO planted under the name must not block the open; it is refused below.
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::LOOP) => return Ok(None),
            Err(errno) => {
                return Err(CacheError::io("opening", self.join(name), io_error(errno)));
            }
        };
        let stat = rustix::fs::fstat(&fd)
            .map_err(|errno| CacheError::io("reading", self.join(name), io_error(errno)))?;
        if Kind::of(&stat) != Kind::File {
            return Ok(None);
        }
        // Back to blocking reads (a regular file ignores the flag, but say what is meant).
        rustix::fs::fcntl_setfl(&fd, OFlags::empty())
            .map_err(|errno| CacheError::io("opening", self.join(name), io_error(errno)))?;
        Ok(Some(File::from(fd)))
    }

    /// Opens the regular file `name` for appending, creating it (mode 0600) if it is not there;
    /// a symlink or anything but a regular file under the name is refused, never written
    /// through. Each `write` of the returned file lands at the end of the file, whole, even
    /// with other processes appending at the same time (`O_APPEND`).
    pub(crate) fn open_append(&self, name: impl AsRef<OsStr>) -> Result<File> {
        let name = component(&self.path, name.as_ref())?;
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(PRIVATE_FILE_MODE),
        )
        .map_err(|errno| CacheError::io("opening for append", self.join(name), io_error(errno)))?;
        let stat = rustix::fs::fstat(&fd)
            .map_err(|errno| CacheError::io("reading", self.join(name), io_error(errno)))?;
        if Kind::of(&stat) != Kind::File {
            return Err(CacheError::UnsafePath {
                path: self.join(name),
                reason: "not a regular file; refusing to write to it".to_owned(),
            });
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::APPEND).map_err(|errno| {
            CacheError::io("opening for append", self.join(name), io_error(errno))
        })?;
        Ok(File::from(fd))
    }

    /// Every entry of the directory (but `.` and `..`), each seen without following it. An entry
    /// removed while the listing runs is left out.
    pub(crate) fn entries(&self) -> Result<Vec<Entry>> {
        let listing = rustix::fs::Dir::read_from(&self.fd)
            .map_err(|errno| CacheError::io("listing", &self.path, io_error(errno)))?;
        let mut entries = Vec::new();
        for entry in listing {
            let entry =
                entry.map_err(|errno| CacheError::io("listing", &self.path, io_error(errno)))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            if let Some(meta) = self.stat(name)? {
                entries.push(Entry {
                    name: name.to_owned(),
                    meta,
                });
            }
        }
        Ok(entries)
    }

    /// Renames `from` in this directory to `to_name` in `to`, replacing what is there (a symlink
    /// there is replaced, not followed).
    pub(crate) fn rename(
        &self,
        from: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
    ) -> Result<()> {
        let from = component(&self.path, from.as_ref())?;
        let to_name = component(&to.path, to_name.as_ref())?;
        rustix::fs::renameat(&self.fd, from, &to.fd, to_name)
            .map_err(|errno| CacheError::io("moving into place", to.join(to_name), io_error(errno)))
    }

    /// Removes the file (or symlink) `name`; `false` if it was not there.
    pub(crate) fn remove_file(&self, name: impl AsRef<OsStr>) -> Result<bool> {
        let name = component(&self.path, name.as_ref())?;
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(errno) => Err(CacheError::io("removing", self.join(name), io_error(errno))),
        }
    }

    /// Makes the creation, rename or removal of entries of this directory durable.
    pub(crate) fn sync(&self) -> Result<()> {
        rustix::fs::fsync(&self.fd)
            .map_err(|errno| CacheError::io("syncing directory", &self.path, io_error(errno)))
    }

    /// The size of the filesystem this directory is on, in bytes; `None` where unknown.
    pub(crate) fn filesystem_bytes(&self) -> Option<u64> {
        let stat = rustix::fs::fstatvfs(&self.fd).ok()?;
        Some(stat.f_blocks.saturating_mul(stat.f_frsize))
    }

    /// Replaces the file `name` with one whose content `write` produces, through the temp file
    /// `temp_name` (created exclusively: a leftover under that name, a symlink included, is
    /// unlinked first) renamed over it. On every error the temp file is removed.
    pub(crate) fn replace_file(
        &self,
        name: impl AsRef<OsStr>,
        temp_name: impl AsRef<OsStr>,
        write: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<()> {
        let (name, temp_name) = (name.as_ref(), temp_name.as_ref());
        let mut file = match self.create_new_file(temp_name) {
            Err(CacheError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                // Named after this process: left by a dead process that had this id, or planted.
                self.remove_file(temp_name)?;
                self.create_new_file(temp_name)?
            }
            other => other?,
        };
        let written = write(&mut file)
            .map_err(|source| CacheError::io("writing", self.join(temp_name), source));
        drop(file);
        let result = written.and_then(|()| self.rename(temp_name, self, name));
        if result.is_err()
            && let Err(err) = self.remove_file(temp_name)
        {
            tracing::warn!(error = %crate::error::ErrorChain(&err), "could not remove a temp file after a failed write");
        }
        result
    }
}

/// Logs `message` about `path` as a warning, once per process: what maintenance skips, it skips
/// on every run.
/// The free bytes (`f_bavail`: what an unprivileged process may still write) and the total
/// bytes of the filesystem holding `dir` (`statvfs`: it opens nothing); `None` where they
/// cannot be read.
pub(crate) fn filesystem_space(dir: &Path) -> Option<(u64, u64)> {
    let stat = rustix::fs::statvfs(dir).ok()?;
    Some((
        stat.f_bavail.saturating_mul(stat.f_frsize),
        stat.f_blocks.saturating_mul(stat.f_frsize),
    ))
}

pub(crate) fn warn_once(path: &Path, message: &str) {
    static WARNED: LazyLock<Mutex<HashSet<(PathBuf, String)>>> =
        LazyLock::new(|| Mutex::new(HashSet::new()));
    let first = WARNED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((path.to_owned(), message.to_owned()));
    if first {
        tracing::warn!(path = %path.display(), "{message}");
    }
}

#[cfg(test)]
mod tests;
