//! Upkeep of one tag's file: recounting usage and blob references from the entries
//! (`recount`), compaction when enough of the file is dead, the integrity check, the persisted
//! lifetime counters (read, and zeroed by `reset_lifetime_counters`), and the list of entries that own files (for doctor). Changes go through
//! the commit path; compaction and the integrity check take the only handle (`handle.rs`).

use super::*;

/// `cleanup()` compacts the file when its dead space passes both of these.
pub(super) const COMPACT_MIN_DEAD_BYTES: u64 = 16 * 1024 * 1024;

pub(super) const COMPACT_MIN_DEAD_SHARE_PERCENT: u64 = 25;

/// An entry that refers to a file beside the database: its key, and its blob or its directory.
pub(crate) struct EntryFiles {
    pub(crate) key: Vec<u8>,
    pub(crate) blob: Option<BlobRef>,
    pub(crate) dir: Option<String>,
}

/// Every entry of `txn`'s snapshot that refers to a blob or an owned directory, expired ones
/// included (they own their files until they are removed), read as [`Owned::of`] reads them
/// for cleanup. For the doctor's read-only storage checks, which hold no [`RedbCache`]: only
/// reads. A file without the entries table (a new tag) has none.
pub(crate) fn entries_with_files(
    txn: &redb::ReadTransaction,
) -> std::result::Result<Vec<EntryFiles>, redb::Error> {
    let entries = match txn.open_table(ENTRIES) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(err) => return Err(err.into()),
    };
    let mut found = Vec::new();
    for row in entries.iter()? {
        let (key, stored) = row?;
        let Owned { blob, dir } = Owned::of(stored.value());
        if blob.is_some() || dir.is_some() {
            found.push(EntryFiles {
                key: key.value().to_vec(),
                blob,
                dir: dir.map(|(name, _)| name),
            });
        }
    }
    Ok(found)
}

impl RedbCache {
    /// Recomputes the usage and every blob's reference count from the entries, correcting any
    /// drift (for example a directory whose size changed since it was stored). Returns the
    /// referenced blobs.
    pub(super) fn recount(&self, tables: &mut WriteTables<'_>) -> Result<Referenced> {
        tables.fold_legacy_access().or_db(self)?;
        tables.recount().or_db(self)
    }

    /// Compacts the file when its dead space passes the thresholds; says why not otherwise.
    pub(super) fn compact_if_worthwhile(&self) -> Compaction {
        let dead = {
            let mut open = match self.open_database() {
                Ok(open) => open,
                Err(err) => return Compaction::Skipped(err.to_string()),
            };
            let _writer = lock(&self.write_lock);
            let measured = self.begin_write(&mut open).and_then(|txn| {
                let stats = txn.stats().or_db(self)?;
                txn.abort().or_db(self)?;
                Ok(stats.fragmented_bytes())
            });
            match measured {
                Ok(dead) => dead,
                Err(err) => return Compaction::Skipped(err.to_string()),
            }
        };
        let before = std::fs::metadata(&self.path).map_or(0, |meta| meta.len());
        if dead < COMPACT_MIN_DEAD_BYTES
            || dead.saturating_mul(100) < before.saturating_mul(COMPACT_MIN_DEAD_SHARE_PERCENT)
        {
            return Compaction::NotNeeded;
        }
        let compacted = self.with_exclusive_database(|database| {
            database
                .compact()
                .map_err(|err| CacheError::database(self.tag.as_str(), &self.path, err))
        });
        match compacted {
            Ok(_) => {
                let after = std::fs::metadata(&self.path).map_or(0, |meta| meta.len());
                tracing::debug!(tag = %self.tag, before, after, "compacted the database file");
                Compaction::Compacted { before, after }
            }
            Err(err) => {
                tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "compaction was due but did not run");
                Compaction::Skipped(err.to_string())
            }
        }
    }

    /// Checks every page of the tag's database file against its checksum (redb's integrity
    /// check); `false` when damage was found (redb repairs what it can on the next open).
    /// Needs the instance to itself for the moment: fails with [`CacheError::Busy`] while
    /// another thread is inside an operation.
    pub(crate) fn check_integrity(&self) -> Result<bool> {
        self.with_exclusive_database(|database| {
            database
                .check_integrity()
                .map_err(|err| CacheError::database(self.tag.as_str(), &self.path, err))
        })
    }

    /// Zeroes the tag's lifetime counters (hits, misses, sets, ... as `get_stats().lifetime`
    /// reports them), as `sccache --zero-stats` does. One transaction under the tag's write
    /// lock: every process's persisted counts go, and so do this instance's counts so far.
    /// Another process's counts that it has not committed yet are added after the reset, when
    /// it commits them. Entries, usage and the last cleanup time are untouched.
    pub(crate) fn reset_lifetime_counters(&self) -> Result<()> {
        let writer = lock(&self.write_lock);
        // First a commit that folds in what is pending: this instance's counts and the reads
        // file other processes left (`reads_file.rs`), or those counts would come back after the
        // reset, added by the next commit.
        self.write_holding(&writer, |_, _| Ok(()))?;
        let mut open = self.open_database()?;
        let txn = self.begin_write(&mut open)?;
        {
            let mut table = txn.open_table(COUNTERS).or_db(self)?;
            table.retain(|_, _| false).or_db(self)?;
        }
        txn.commit().or_db(self)?;
        // What this instance counted up to now was part of what was zeroed: the next commit
        // persists only what it counts from here on.
        *lock(&self.persisted_counters) = self.counters.snapshot();
        Ok(())
    }

    /// The lifetime counters persisted in the file.
    pub(super) fn persisted_lifetime(&self) -> Result<Counters> {
        let txn = self.begin_read_on_current()?;
        let table = match txn.open_table(COUNTERS) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Counters::default()),
            Err(err) => return Err(err).or_db(self),
        };
        let mut counters = Counters::default();
        for row in table.iter().or_db(self)? {
            let (name, value) = row.or_db(self)?;
            counters.set_field(name.value(), value.value());
        }
        Ok(counters)
    }
}
