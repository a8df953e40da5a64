//! The set of tables a tag's file has: `ensure_tables` (at open, and after a quarantine),
//! `create_tables` (a fresh file), `has_every_table` and `readable_as_is` (whether a read-only
//! handle can serve the file as it is), and the seeds of the file's access hash
//! (`access_seeds`, `access_seeds_or_new`). Files from before the access hash are migrated by
//! the write path (`WriteTables::fold_legacy_access`, `tables.rs`); here they are recognised.

use super::*;

impl RedbCache {
    /// Creates the tables on a new file, so that readers never meet a missing table.
    pub(super) fn ensure_tables(&self) -> Result<()> {
        let open = self.open_database()?;
        let read = open.database.begin_read().or_db(self)?;
        let complete = has_every_table(&read).or_db(self)?;
        drop(read);
        // A read-only handle serves a file from before the access hash as it is
        // (`readable_as_is`; the root may be read-only): the first commit of a writer migrates
        // it (`write_in`).
        let reading = matches!(open.database, Handle::Reading(_));
        drop(open);
        if !complete && !reading {
            // A file from before usage was kept or before the access hash (or a new one):
            // count it once, folding in its access records by key.
            self.write(|tables, _| self.recount(tables))?;
        }
        // Reads are recorded by the file's access hash from now on.
        let read = self.open_database()?.database.begin_read().or_db(self)?;
        if let Some(seeds) = access_seeds(&read.open_table(USAGE).or_db(self)?).or_db(self)? {
            self.access.use_seeds(seeds);
        }
        Ok(())
    }
}

/// The seeds of the file's access hash ([`ACCESS_SEEDS`]), if it has them.
pub(super) fn access_seeds(
    usage: &impl ReadableTable<&'static str, u64>,
) -> StorageResult<Option<[u64; 2]>> {
    let [first, second] = ACCESS_SEEDS;
    let first = usage.get(first)?.map(|seed| seed.value());
    let second = usage.get(second)?.map(|seed| seed.value());
    Ok(first.zip(second).map(|(first, second)| [first, second]))
}

/// The seeds of the file's access hash, drawn and stored first if it has none.
pub(super) fn access_seeds_or_new(
    usage: &mut Table<'_, &'static str, u64>,
) -> StorageResult<[u64; 2]> {
    if let Some(seeds) = access_seeds(usage)? {
        return Ok(seeds);
    }
    let seeds = AccessHasher::random_seeds();
    for (name, seed) in ACCESS_SEEDS.into_iter().zip(seeds) {
        usage.insert(name, seed)?;
    }
    Ok(seeds)
}

/// Creates every table of the cache in `database` (a fresh file), in one commit, so that a
/// handle that replaces a quarantined file serves reads at once: a reader that replaced it
/// holds locks the cache's own write path takes, so it cannot call [`RedbCache::ensure_tables`].
pub(super) fn create_tables(database: &Database) -> std::result::Result<(), redb::Error> {
    let txn = database.begin_write()?;
    txn.open_table(ENTRIES)?;
    txn.open_table(ACCESS)?;
    txn.open_table(COUNTERS)?;
    txn.open_table(BLOBS)?;
    access_seeds_or_new(&mut txn.open_table(USAGE)?)?;
    txn.commit()?;
    Ok(())
}

/// Whether the file `read` reads has every table of the cache and its access hash's seeds, and
/// no access table by key bytes ([`LEGACY_ACCESS`]) to fold in.
pub(super) fn has_every_table(
    read: &redb::ReadTransaction,
) -> std::result::Result<bool, redb::Error> {
    let names: Vec<String> = read
        .list_tables()?
        .map(|handle| handle.name().to_owned())
        .collect();
    let complete = [
        ENTRIES.name(),
        ACCESS.name(),
        COUNTERS.name(),
        BLOBS.name(),
        USAGE.name(),
    ]
    .iter()
    .all(|name| names.iter().any(|n| n == name));
    if !complete || names.iter().any(|name| name == LEGACY_ACCESS.name()) {
        return Ok(false);
    }
    Ok(access_seeds(&read.open_table(USAGE)?)?.is_some())
}

/// Whether a read-only handle can serve the file as it is: its table tree reads, every table
/// is there, and the tables reads use open with their types. A file from before the access
/// hash (its access table by key bytes, no seeds) can be served too: reads find its records
/// by key ([`AccessTable`]), and the first commit of a writer migrates it. Anything else (a
/// panic of redb's on damaged pages included) is `false`, for the read-write open to recover,
/// create or quarantine, as it does for every file.
pub(super) fn readable_as_is(database: &redb::ReadOnlyDatabase) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let Ok(read) = database.begin_read() else {
            return false;
        };
        let Ok(names) = read.list_tables() else {
            return false;
        };
        let names: Vec<String> = names.map(|handle| handle.name().to_owned()).collect();
        [ENTRIES.name(), COUNTERS.name(), BLOBS.name(), USAGE.name()]
            .iter()
            .all(|name| names.iter().any(|n| n == name))
            && read.open_table(ENTRIES).is_ok()
            && AccessTable::open(&read).is_ok()
    }))
    .unwrap_or(false)
}
