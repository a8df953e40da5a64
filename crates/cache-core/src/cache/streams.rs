//! Values streamed in and out: `set_from_reader` / `get_to_writer` and their file forms. A value
//! larger than the blob threshold goes to a blob file and is never held in memory whole.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Cache;
use crate::error::{CacheError, Result};
use crate::files::TempOutput;

impl Cache {
    /// Stores the bytes `source` yields under `key`, reading them in pieces: a value larger than
    /// the blob threshold goes to a blob file without ever being held in memory whole. Returns
    /// the number of bytes stored. Committed before it returns (durable and visible to other
    /// processes). A value larger than the tag's size limit is refused and nothing is stored;
    /// an error reading `source` is returned as [`CacheError::Source`] and nothing is stored.
    /// A disabled cache reads nothing and returns 0.
    pub fn set_from_reader(
        &self,
        key: &[u8],
        source: &mut dyn Read,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        self.store()
            .map_or(Ok(0), |store| store.set_from_reader(key, source, ttl))
    }

    /// Writes the value under `key` to `sink`, in pieces; `None` on a miss (nothing written).
    /// A blob is verified against its hash before any byte reaches `sink`.
    pub fn get_to_writer(&self, key: &[u8], sink: &mut dyn Write) -> Result<Option<u64>> {
        let Some(store) = self.store() else {
            return Ok(None);
        };
        // On a miss, the remote tier if one is attached and shares the key (else a miss).
        match store.get_to_writer(key, sink)? {
            None => super::remote::read_through_to(store, key, sink),
            found => Ok(found),
        }
    }

    /// [`Cache::set_from_reader`] from a file.
    pub fn set_from_path(&self, key: &[u8], path: &Path, ttl: Option<Duration>) -> Result<u64> {
        let mut file = std::fs::File::open(path)
            .map_err(|source| CacheError::io("opening the file to cache", path, source))?;
        self.set_from_reader(key, &mut file, ttl)
    }

    /// Writes the value under `key` to a file at `path` (replacing it), through a temp file
    /// beside it that is renamed into place only once complete; `None` on a miss, and then
    /// `path` is left as it was.
    pub fn get_to_path(&self, key: &[u8], path: &Path) -> Result<Option<u64>> {
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut temp = TempOutput::beside(&parent, path)?;
        let written = match self.get_to_writer(key, temp.file_mut())? {
            Some(written) => written,
            None => return Ok(None),
        };
        temp.persist(path)?;
        Ok(Some(written))
    }
}
