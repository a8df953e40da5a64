//! The redb tables of one tag (`entries`, `access`, `blobs`, `usage`, `counters`) and
//! `WriteTables`, the tables of one write transaction.
//!
//! `WriteTables::put` and `WriteTables::remove` change entries and keep the tag's usage (bytes,
//! entry count) and the blob reference counts in step with them; a blob or directory whose last
//! entry goes is listed as released, for `commit.rs` to remove after the commit has landed.

use super::*;

/// Key bytes -> entry header + value bytes.
pub(super) const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

/// Key bytes -> (last access ms, access count). Kept apart from entries so that recording reads
/// never rewrites values.
pub(super) const ACCESS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("access");

/// Counter name -> value: the tag's lifetime statistics, summed over every process.
pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Blob hash -> (entries referring to it, its length). Identical values share one blob file,
/// which is removed when its last entry goes.
pub(super) const BLOBS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("blobs");

/// What the limits count, kept exact by every commit: `bytes` (keys, entries, each blob once,
/// owned directories) and `entries`; and `last_cleanup_ms`.
pub(super) const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");

pub(super) const USAGE_BYTES: &str = "bytes";

pub(super) const USAGE_ENTRIES: &str = "entries";

pub(super) const LAST_CLEANUP_MS: &str = "last_cleanup_ms";

/// What an entry owns on disk besides its own bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Owned {
    pub(super) blob: Option<BlobRef>,
    pub(super) dir: Option<(String, u64)>,
}

impl Owned {
    pub(super) fn of(stored: &[u8]) -> Owned {
        let Ok((header, payload)) = EntryHeader::parse(stored) else {
            return Owned::default();
        };
        match header.kind {
            EntryKind::Inline => Owned::default(),
            EntryKind::Blob => Owned {
                blob: BlobRef::decode(payload).ok(),
                dir: None,
            },
            EntryKind::Directory => Owned {
                blob: None,
                dir: DirRef::decode(payload)
                    .ok()
                    .map(|(dir, _)| (dir.name.to_owned(), dir.size)),
            },
        }
    }

    /// Bytes an entry counts for in the size limit, its blob aside (blobs count once, when their
    /// first entry takes them).
    pub(super) fn accounted(&self, key_len: usize, stored_len: usize) -> u64 {
        (key_len + stored_len) as u64 + self.dir.as_ref().map_or(0, |(_, size)| *size)
    }
}

/// The tables of one write transaction, and what it changes besides them.
pub(super) struct WriteTables<'txn> {
    /// The transaction, for tables only some commits open (the single-flight leases).
    pub(super) txn: &'txn WriteTransaction,
    pub(super) entries: Table<'txn, &'static [u8], &'static [u8]>,
    pub(super) access: Table<'txn, &'static [u8], (u64, u64)>,
    pub(super) blobs: Table<'txn, &'static [u8], (u64, u64)>,
    /// The tag's usage as of this transaction: loaded at its start, kept by `put` and `remove`,
    /// stored at its end.
    pub(super) bytes: u64,
    pub(super) entry_count: u64,
    /// Blobs whose last entry went: their files are removed after the commit has landed, and
    /// only if no commit since has taken them again (`RedbCache::remove_released_blobs`).
    pub(super) released_blobs: Vec<BlobRef>,
    /// Directories whose entry went: removed after the commit (their names are never reused).
    pub(super) released_dirs: Vec<String>,
    pub(super) expired: u64,
    pub(super) evicted: u64,
    /// Set by `cleanup()`: recorded in the usage table.
    pub(super) last_cleanup_ms: Option<u64>,
}

pub(super) type StorageResult<T> = std::result::Result<T, redb::StorageError>;

impl WriteTables<'_> {
    /// Stores `entry` under `key`, releasing what the entry it replaces owned. A blob `entry`
    /// refers to must already be in place.
    pub(super) fn put(&mut self, key: &[u8], entry: &[u8]) -> StorageResult<()> {
        let owned = Owned::of(entry);
        // Taken before the old entry is released, so that rewriting a key with the same blob
        // never drops the blob's count to zero on the way.
        if let Some(blob) = &owned.blob {
            self.retain_blob(blob)?;
        }
        let old = self
            .entries
            .insert(key, entry)?
            .map(|old| (old.value().len(), Owned::of(old.value())));
        if let Some((old_len, old_owned)) = old {
            self.forget(key.len(), old_len, old_owned)?;
        }
        self.access.remove(key)?;
        self.bytes = self
            .bytes
            .saturating_add(owned.accounted(key.len(), entry.len()));
        self.entry_count += 1;
        Ok(())
    }

    /// Removes `key` with what it owns; whether it was there.
    pub(super) fn remove(&mut self, key: &[u8]) -> StorageResult<bool> {
        let old = self
            .entries
            .remove(key)?
            .map(|old| (old.value().len(), Owned::of(old.value())));
        self.access.remove(key)?;
        match old {
            Some((old_len, old_owned)) => {
                self.forget(key.len(), old_len, old_owned)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub(super) fn forget(
        &mut self,
        key_len: usize,
        stored_len: usize,
        owned: Owned,
    ) -> StorageResult<()> {
        self.bytes = self
            .bytes
            .saturating_sub(owned.accounted(key_len, stored_len));
        self.entry_count = self.entry_count.saturating_sub(1);
        if let Some(blob) = owned.blob {
            self.release_blob(&blob)?;
        }
        if let Some((name, _)) = owned.dir {
            self.released_dirs.push(name);
        }
        Ok(())
    }

    pub(super) fn retain_blob(&mut self, blob: &BlobRef) -> StorageResult<()> {
        let refs = self
            .blobs
            .get(blob.hash.as_slice())?
            .map_or(0, |row| row.value().0);
        if refs == 0 {
            self.bytes = self.bytes.saturating_add(blob.len);
        }
        self.blobs
            .insert(blob.hash.as_slice(), (refs + 1, blob.len))?;
        Ok(())
    }

    pub(super) fn release_blob(&mut self, blob: &BlobRef) -> StorageResult<()> {
        let refs = self
            .blobs
            .get(blob.hash.as_slice())?
            .map(|row| row.value().0);
        match refs {
            Some(refs) if refs > 1 => {
                self.blobs
                    .insert(blob.hash.as_slice(), (refs - 1, blob.len))?;
            }
            Some(_) => {
                self.blobs.remove(blob.hash.as_slice())?;
                self.bytes = self.bytes.saturating_sub(blob.len);
                self.released_blobs.push(*blob);
            }
            None => self.released_blobs.push(*blob),
        }
        Ok(())
    }
}

/// What the entries of a tag refer to: blobs (with their reference count and length) and owned
/// directories.
#[derive(Default)]
pub(super) struct Referenced {
    pub(super) blobs: HashMap<[u8; 32], (u64, u64)>,
    pub(super) dirs: HashSet<String>,
}

impl RedbCache {
    /// Creates the tables on a new file, so that readers never meet a missing table.
    pub(super) fn ensure_tables(&self) -> Result<()> {
        let open = self.open_database()?;
        let read = open.database.begin_read().or_db(self)?;
        let names: Vec<String> = read
            .list_tables()
            .or_db(self)?
            .map(|handle| handle.name().to_owned())
            .collect();
        drop(read);
        if [
            ENTRIES.name(),
            ACCESS.name(),
            COUNTERS.name(),
            BLOBS.name(),
            USAGE.name(),
        ]
        .iter()
        .all(|name| names.iter().any(|n| n == name))
        {
            return Ok(());
        }
        // A file from before usage was kept (or a new one): count it once.
        self.write(|tables, _| self.recount(tables)).map(|_| ())
    }
}
