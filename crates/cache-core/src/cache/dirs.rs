//! Directories owned by an entry: staged, filled by the caller, stored, and removed with the
//! entry.

use std::time::Duration;

use super::Cache;
use crate::directory::{CachedDirectory, StagedDirectory};
use crate::error::Result;

impl Cache {
    /// A new empty directory to fill and then store with [`Cache::set_directory`]. If it is
    /// dropped instead, it is removed.
    pub fn stage_directory(&self) -> Result<StagedDirectory> {
        match self.store() {
            Some(store) => store.stage_directory(),
            None => StagedDirectory::detached(),
        }
    }

    /// Stores `staged` as a directory owned by the entry `key`, with `value` (for example the
    /// directory's metadata). Its non-empty regular files become hard links to the tag's
    /// content files, shared with every other owned directory holding the same bytes, mode and
    /// modification time (`docs/caching-system.md`, "Owned directories share their files").
    /// The directory's size counts in the tag's size limit, each shared file once for the tag,
    /// and it is removed when the entry expires, is evicted, deleted or replaced. Committed before it
    /// returns. A directory larger than the size limit is refused (and removed). `None` from a
    /// disabled cache, which drops the directory.
    pub fn set_directory(
        &self,
        key: &[u8],
        staged: StagedDirectory,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Option<CachedDirectory>> {
        match self.store() {
            Some(store) => store.set_directory(key, staged, value, ttl),
            // Nothing is kept: the directory is removed as `staged` drops.
            None => Ok(None),
        }
    }

    /// The directory owned by `key`, with its value, if live and present. An entry whose
    /// directory has gone, or one of whose shared files no longer matches its content (bytes,
    /// mode or time), is a miss, and is removed.
    ///
    /// With a remote tier attached that shares the key, a local miss asks it: a directory found
    /// there is checked whole (as an archive import is), written into a staged directory and
    /// stored with the time it has left, then returned; anything wrong with it is a miss.
    pub fn get_directory(&self, key: &[u8]) -> Result<Option<CachedDirectory>> {
        match self.store() {
            Some(store) => match store.get_directory(key)? {
                None => super::remote::read_through_directory(store, key),
                found => Ok(found),
            },
            None => Ok(None),
        }
    }
}
