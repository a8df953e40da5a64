//! Byte values under byte keys: `get`, `set`, `set_many`, `delete`, `delete_many`, `exists`,
//! `clear`, `keys`, `get_metadata`, and the format-checked forms the typed layer uses.

use std::time::Duration;

use super::Cache;
use crate::codec::ValueFormat;
use crate::error::Result;
use crate::values::{AnyFormat, EntryMetadata};

impl Cache {
    /// The value stored under `key`, if live. An empty value is a hit (`Some(vec![])`).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with_format(key, ValueFormat::RAW, AnyFormat::Yes)
    }

    /// The value under `key`, if live and written in `format` (or in any format when `any` is
    /// `AnyFormat::Yes`). An entry in another format is a miss and is removed, with a warning:
    /// it was written by an older schema of the key type.
    pub(crate) fn get_with_format(
        &self,
        key: &[u8],
        format: ValueFormat,
        any: AnyFormat,
    ) -> Result<Option<Vec<u8>>> {
        match self.store() {
            // On a miss, the remote tier if one is attached and shares the key (else a miss).
            Some(store) => match store.get_with_format(key, format, any)? {
                None => super::remote::read_through(store, key, format, any),
                found => Ok(found),
            },
            None => Ok(None),
        }
    }

    /// Stores `value` under `key`, replacing any earlier entry; `ttl` of `None` never expires.
    ///
    /// Visible to every thread of this process at once; durable and visible to other processes
    /// within the instance's `commit_interval`, or at once after [`Cache::flush`].
    pub fn set(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.set_with_format(key, value, ttl, ValueFormat::RAW)
    }

    /// Stores `value` recording the `format` it was encoded in.
    pub(crate) fn set_with_format(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        format: ValueFormat,
    ) -> Result<()> {
        match self.store() {
            Some(store) => store.set_with_format(key, value, ttl, format),
            None => Ok(()),
        }
    }

    /// Stores every `(key, value)` of `items` with one `ttl`, committed together. Either every
    /// item is accepted or, when one is invalid (empty or oversized key, oversized value), none.
    pub fn set_many(&self, items: &[(&[u8], &[u8])], ttl: Option<Duration>) -> Result<()> {
        match self.store() {
            Some(store) => store.set_many_with_format(items, ttl, ValueFormat::RAW),
            None => Ok(()),
        }
    }

    /// Removes `key`; whether a live entry existed.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.store().map_or(Ok(false), |store| store.delete(key))
    }

    /// Removes every key in `keys` at once; how many live entries existed.
    pub fn delete_many(&self, keys: &[&[u8]]) -> Result<usize> {
        self.store().map_or(Ok(0), |store| store.delete_many(keys))
    }

    /// Whether a live entry exists under `key`. Does not count as a read in the statistics.
    pub fn exists(&self, key: &[u8]) -> Result<bool> {
        self.store().map_or(Ok(false), |store| store.exists(key))
    }

    /// Removes every entry of the tag. Statistics (tag and counters) are kept.
    pub fn clear(&self) -> Result<()> {
        self.store().map_or(Ok(()), |store| store.clear())
    }

    /// Every live key.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        self.store()
            .map_or_else(|| Ok(Vec::new()), |store| store.keys())
    }

    /// What is stored about `key`, if live. All values are real, read from the store.
    pub fn get_metadata(&self, key: &[u8]) -> Result<Option<EntryMetadata>> {
        self.store()
            .map_or(Ok(None), |store| store.get_metadata(key))
    }

    /// Removes an entry whose value the typed layer could not decode, and counts the read as a
    /// miss and an error instead of a hit.
    pub(crate) fn discard_undecodable(&self, key: &[u8], reason: &str) -> Result<()> {
        self.store()
            .map_or(Ok(()), |store| store.discard_undecodable(key, reason))
    }
}
