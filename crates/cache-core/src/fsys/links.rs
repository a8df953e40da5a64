//! Hard links and file walks below the root, for content-addressed files
//! (`store/contents.rs`): `Dir::link` (`linkat` without `AT_SYMLINK_FOLLOW`, so a symlink is
//! linked as itself, never followed), `Dir::walk_files` (every regular file of a tree with its
//! path relative to the tree's top, no symlink followed) and `meta_of_file` (`fstat` of an open
//! file).

use std::ffi::OsStr;
use std::fs::File;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::AtFlags;
use rustix::io::Errno;

use super::{Dir, Entry, Kind, Meta, component, io_error};
use crate::error::{CacheError, Result};

/// What [`Dir::walk_files`] calls for each regular file: its relative path, its open parent
/// directory and its entry.
pub(crate) type FileVisitor<'a> = dyn FnMut(&[u8], &Dir, &Entry) -> Result<()> + 'a;

/// What [`Dir::link`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Linked {
    /// The new name is in place.
    Done,
    /// Something already has the new name (nothing was changed).
    NameTaken,
    /// The file to link is gone (removed by another process in between).
    SourceGone,
    /// The file has as many names as its filesystem allows.
    TooManyLinks,
}

impl Dir {
    /// Gives the file `name` of this directory a second name, `to_name` in `to`. A symlink is
    /// linked as itself; nothing is followed.
    pub(crate) fn link(
        &self,
        name: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
    ) -> Result<Linked> {
        let name = component(&self.path, name.as_ref())?;
        let to_name = component(&to.path, to_name.as_ref())?;
        match rustix::fs::linkat(&self.fd, name, &to.fd, to_name, AtFlags::empty()) {
            Ok(()) => Ok(Linked::Done),
            Err(Errno::EXIST) => Ok(Linked::NameTaken),
            Err(Errno::NOENT) => Ok(Linked::SourceGone),
            Err(Errno::MLINK) => Ok(Linked::TooManyLinks),
            Err(errno) => Err(CacheError::io("linking", to.join(to_name), io_error(errno))),
        }
    }

    /// What `fstat` of this open directory says.
    pub(crate) fn meta(&self) -> Result<Meta> {
        rustix::fs::fstat(&self.fd)
            .map(|stat| Meta::of(&stat))
            .map_err(|errno| CacheError::io("reading", &self.path, io_error(errno)))
    }

    /// Sets this directory's modification (and access) time to `mtime` (seconds, nanoseconds):
    /// renaming inside a directory moves its time, which a cached tree keeps as it was copied.
    #[allow(
        clippy::useless_conversion,
        reason = "tv_nsec's type differs between platforms; i64 on Linux x86-64"
    )]
    pub(crate) fn set_modified(&self, mtime: (i64, i64)) -> Result<()> {
        use rustix::fs::{Timespec, Timestamps};
        let time = Timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1.try_into().unwrap_or(0),
        };
        let times = Timestamps {
            last_access: time,
            last_modification: time,
        };
        rustix::fs::futimens(&self.fd, &times).map_err(|errno| {
            CacheError::io(
                "setting the modification time of",
                &self.path,
                io_error(errno),
            )
        })
    }

    /// Calls `visit` with every regular file of the tree `name` (a directory of this one): its
    /// path relative to the tree's top (components joined by `/`), its open parent directory and
    /// its entry. Symlinks and anything else that is not a regular file or a directory are
    /// passed over; a directory is entered through `openat(O_NOFOLLOW)`. A parent stays open only
    /// while some child of it waits, so open descriptors are bounded by the tree's depth.
    pub(crate) fn walk_files(
        &self,
        name: impl AsRef<OsStr>,
        visit: &mut FileVisitor<'_>,
    ) -> Result<()> {
        use std::os::unix::ffi::OsStrExt;
        let name = component(&self.path, name.as_ref())?;
        let Some(top) = self.dir(name)? else {
            return Err(CacheError::io(
                "listing",
                self.join(name),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        };
        let top = Rc::new(top);
        let mut pending: Vec<(Rc<Dir>, Vec<u8>, Entry)> = top
            .entries()?
            .into_iter()
            .map(|entry| (Rc::clone(&top), Vec::new(), entry))
            .collect();
        drop(top);
        while let Some((parent, prefix, entry)) = pending.pop() {
            let mut relative = prefix;
            if !relative.is_empty() {
                relative.push(b'/');
            }
            relative.extend_from_slice(entry.name.as_bytes());
            match entry.meta.kind {
                Kind::File => visit(&relative, &parent, &entry)?,
                Kind::Dir => {
                    let Some(dir) = parent.dir(&entry.name)? else {
                        continue;
                    };
                    drop(parent);
                    let dir = Rc::new(dir);
                    for child in dir.entries()? {
                        pending.push((Rc::clone(&dir), relative.clone(), child));
                    }
                }
                Kind::Symlink | Kind::Other => {}
            }
        }
        Ok(())
    }
}

/// What `fstat` says about an open file (`path` names it in an error).
pub(crate) fn meta_of_file(file: &File, path: &Path) -> Result<Meta> {
    rustix::fs::fstat(file)
        .map(|stat| Meta::of(&stat))
        .map_err(|errno| CacheError::io("reading", path, io_error(errno)))
}
