//! Whole trees below a [`Dir`]: removing one and measuring one, never following a symlink, with
//! open directories bounded by the tree's depth.

use std::ffi::{OsStr, OsString};
use std::io;
use std::rc::Rc;

use rustix::fs::AtFlags;
use rustix::io::Errno;

use super::{Dir, Entry, Kind, Meta, component, io_error};
use crate::error::{CacheError, Result};

/// A tree as [`Dir::measure_tree`] found it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TreeSize {
    /// Entries below the top directory: files, directories, symlinks and anything else.
    pub(crate) entries: u64,
    /// Lengths of everything that is not a directory (a symlink counts its own length).
    pub(crate) length: u64,
    /// Bytes allocated on disk for the top directory and everything below it.
    pub(crate) allocated: u64,
}

impl Dir {
    /// Removes `name` and, if it is a directory, everything below it, never following a symlink
    /// (one inside the tree is unlinked itself); `false` if nothing was there. Open directories
    /// are bounded by the tree's depth, not its width. A directory whose owner lacks write or
    /// search permission (a read-only directory of an owned tree) is given them first.
    pub(crate) fn remove_tree(&self, name: impl AsRef<OsStr>) -> Result<bool> {
        let name = component(&self.path, name.as_ref())?;
        let Some(meta) = self.stat(name)? else {
            return Ok(false);
        };
        if meta.kind != Kind::Dir {
            return self.remove_file(name);
        }
        struct Frame {
            dir: Dir,
            name: OsString,
            pending: Vec<Entry>,
        }
        let open = |parent: &Dir, name: &OsStr| -> Result<Option<Frame>> {
            match parent.dir(name) {
                Ok(Some(dir)) => {
                    dir.let_owner_empty_it()?;
                    let pending = dir.entries()?;
                    Ok(Some(Frame {
                        dir,
                        name: name.to_owned(),
                        pending,
                    }))
                }
                Ok(None) => Ok(None),
                // Replaced by a symlink or a file since it was listed: unlink that instead.
                Err(CacheError::UnsafePath { .. }) => {
                    parent.remove_file(name)?;
                    Ok(None)
                }
                Err(err) => Err(err),
            }
        };
        let Some(top) = open(self, name)? else {
            return Ok(true);
        };
        let mut stack = vec![top];
        while let Some(frame) = stack.last_mut() {
            if let Some(entry) = frame.pending.pop() {
                if entry.meta.kind == Kind::Dir {
                    if let Some(child) = open(&frame.dir, &entry.name)? {
                        stack.push(child);
                    }
                } else {
                    frame.dir.remove_file(&entry.name)?;
                }
                continue;
            }
            let Some(done) = stack.pop() else { break };
            let parent = stack.last().map_or(self, |frame| &frame.dir);
            match rustix::fs::unlinkat(&parent.fd, &done.name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(errno) => {
                    return Err(CacheError::io(
                        "removing directory",
                        parent.join(&done.name),
                        io_error(errno),
                    ));
                }
            }
        }
        Ok(true)
    }

    /// Counts and sizes the directory `name` and everything below it, never following a
    /// symlink (a symlink counts as itself). Open directories are bounded by the tree's depth.
    pub(crate) fn measure_tree(&self, name: impl AsRef<OsStr>) -> Result<TreeSize> {
        let name = component(&self.path, name.as_ref())?;
        let top = self.dir(name)?.ok_or_else(|| {
            CacheError::io(
                "measuring",
                self.join(name),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })?;
        let stat = rustix::fs::fstat(&top.fd)
            .map_err(|errno| CacheError::io("measuring", top.path(), io_error(errno)))?;
        let mut size = TreeSize {
            allocated: Meta::of(&stat).allocated,
            ..TreeSize::default()
        };
        // Directories still to visit, each with its (shared) parent: a parent stays open only
        // while some child of it waits.
        let top = Rc::new(top);
        let mut pending: Vec<(Rc<Dir>, Entry)> = top
            .entries()?
            .into_iter()
            .map(|entry| (Rc::clone(&top), entry))
            .collect();
        drop(top);
        while let Some((parent, entry)) = pending.pop() {
            size.entries += 1;
            size.allocated = size.allocated.saturating_add(entry.meta.allocated);
            if entry.meta.kind != Kind::Dir {
                size.length = size.length.saturating_add(entry.meta.len);
                continue;
            }
            let dir = parent.dir(&entry.name)?.ok_or_else(|| {
                CacheError::io(
                    "measuring",
                    parent.join(&entry.name),
                    io::Error::new(io::ErrorKind::NotFound, "removed while being measured"),
                )
            })?;
            drop(parent);
            let dir = Rc::new(dir);
            for child in dir.entries()? {
                pending.push((Rc::clone(&dir), child));
            }
        }
        Ok(size)
    }
}
