//! The redb tables of one tag (`entries`, `access`, `blobs`, `usage`, `counters`, `leases`) and
//! `WriteTables`, the tables of one write transaction.
//!
//! Invariant: **entries, usage and blob counts change together, only here.** `WriteTables`'
//! fields are private to this module: only `put`, `remove`, `clear` and `recount` change
//! entries, and each keeps the tag's usage (bytes, entry count) and the blob reference counts in
//! step, and so do the content files owned directories share (`attach_contents` with the
//! entry, released with it). Others get read access (`entries`, `reads_of`, `usage`) and the counting notes
//! (`count_expired`, `count_evicted`, `mark_cleanup`). A blob or directory whose last entry goes
//! is only listed as released (`take_released`), for `commit.rs` to remove after the commit has
//! landed: nothing here touches a file.

use super::*;

/// Key bytes -> entry header + value bytes.
pub(super) const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

/// The key's access hash (`access::AccessHasher`, seeded by [`ACCESS_SEEDS`]) -> (last access
/// ms, access count). Kept apart from entries so that recording reads never rewrites values;
/// keyed by the hash so that a read never has to keep its key for the commit.
pub(super) const ACCESS: TableDefinition<u64, (u64, u64)> = TableDefinition::new("access_by_hash");

/// The `access` table of files written before the access hash: key bytes -> (last access ms,
/// access count). Folded into [`ACCESS`] and deleted by [`WriteTables::recount`], which every
/// open of a file without [`ACCESS`] (or with this table, an older version's) runs.
pub(super) const LEGACY_ACCESS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("access");

/// The names in the `usage` table of the two seeds of the file's access hash: drawn by the
/// first write to the file, never changed.
pub(super) const ACCESS_SEEDS: [&str; 2] = ["access_hash_seed_0", "access_hash_seed_1"];

/// Counter name -> value: the tag's lifetime statistics, summed over every process.
pub(super) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

/// Blob hash -> (entries referring to it, its length). Identical values share one blob file,
/// which is removed when its last entry goes.
pub(super) const BLOBS: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("blobs");

/// Content file name -> (owned directories whose files are names of it, its allocated bytes).
/// A content file counts once in the usage while any directory refers to it
/// (`store/contents.rs`).
pub(super) const CONTENTS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("contents");

/// Owned directory name -> its files that are names of content files (`contents::encode_uses`).
/// Written with the entry that owns the directory, removed with it.
pub(super) const DIR_CONTENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("dir_contents");

/// Content file name -> (inode, length, change time seconds, nanoseconds) of the content file
/// as last seen after its names changed (a directory attached it, or one let it go): a shared
/// file of an owned directory that still looks exactly so is trusted without hashing it
/// (`store/contents.rs`, verification). Any write, chmod or link moves the change time.
pub(super) const CONTENT_STAT: TableDefinition<&str, (u64, u64, i64, i64)> =
    TableDefinition::new("content_stat");

/// What the limits count, kept exact by every commit: `bytes` (keys, entries, each blob once,
/// owned directories) and `entries`; and `last_cleanup_ms` and the access hash's seeds
/// ([`ACCESS_SEEDS`]).
pub(super) const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");

pub(super) const USAGE_BYTES: &str = "bytes";

pub(super) const USAGE_ENTRIES: &str = "entries";

pub(super) const LAST_CLEANUP_MS: &str = "last_cleanup_ms";

/// Single-flight leases: key bytes -> the lease record of the computation of that key
/// (`flight.rs` encodes it). Created by the first lease written; absent means no lease.
pub(super) const LEASES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("leases");

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
    txn: &'txn WriteTransaction,
    entries: Table<'txn, &'static [u8], &'static [u8]>,
    access: Table<'txn, u64, (u64, u64)>,
    /// The file's access hash, by which `access` is keyed.
    hasher: AccessHasher,
    blobs: Table<'txn, &'static [u8], (u64, u64)>,
    contents: Table<'txn, &'static str, (u64, u64)>,
    dir_contents: Table<'txn, &'static str, &'static [u8]>,
    content_stat: Table<'txn, &'static str, (u64, u64, i64, i64)>,
    /// The tag's usage as of this transaction: loaded at its start, kept by `put` and `remove`,
    /// stored at its end.
    bytes: u64,
    entry_count: u64,
    /// Blobs whose last entry went: their files are removed after the commit has landed, and
    /// only if no commit since has taken them again (`RedbCache::remove_released_blobs`).
    released_blobs: Vec<BlobRef>,
    /// Directories whose entry went: removed after the commit (their names are never reused).
    released_dirs: Vec<String>,
    /// Content files whose last directory went: removed after the commit has landed, if still
    /// unreferenced and linked by nothing else (`RedbCache::settle_contents`).
    released_contents: Vec<String>,
    /// Content files a directory let go of that others still share: their names changed, so
    /// their change time is recorded again after the directories are removed.
    touched_contents: Vec<String>,
    /// Access hashes of the keys this transaction removed (and did not write again): reads of
    /// them merged later in it are dropped, not left as records no entry has.
    removed: HashSet<u64>,
    expired: u64,
    evicted: u64,
    /// Set by `cleanup()`: recorded in the usage table.
    last_cleanup_ms: Option<u64>,
}

pub(super) type StorageResult<T> = std::result::Result<T, redb::StorageError>;

impl<'txn> WriteTables<'txn> {
    /// The tables of `txn`, with the tag's usage as the transaction found it and the file's
    /// access hash.
    pub(super) fn open(
        txn: &'txn WriteTransaction,
        bytes: u64,
        entry_count: u64,
        hasher: AccessHasher,
    ) -> std::result::Result<Self, TableError> {
        Ok(WriteTables {
            txn,
            entries: txn.open_table(ENTRIES)?,
            access: txn.open_table(ACCESS)?,
            hasher,
            blobs: txn.open_table(BLOBS)?,
            contents: txn.open_table(CONTENTS)?,
            dir_contents: txn.open_table(DIR_CONTENTS)?,
            content_stat: txn.open_table(CONTENT_STAT)?,
            bytes,
            entry_count,
            released_blobs: Vec::new(),
            released_dirs: Vec::new(),
            released_contents: Vec::new(),
            touched_contents: Vec::new(),
            removed: HashSet::new(),
            expired: 0,
            evicted: 0,
            last_cleanup_ms: None,
        })
    }

    /// The entries, to read: entries change only through `put`, `remove` and `clear`.
    pub(super) fn entries(&self) -> &Table<'txn, &'static [u8], &'static [u8]> {
        &self.entries
    }

    /// When `key` was last read and how often, as committed (`(0, 0)` when never).
    pub(super) fn reads_of(&self, key: &[u8]) -> StorageResult<(u64, u64)> {
        self.reads_by_hash(self.hasher.hash(key))
    }

    fn reads_by_hash(&self, hash: u64) -> StorageResult<(u64, u64)> {
        Ok(self.access.get(hash)?.map_or((0, 0), |row| row.value()))
    }

    /// Adds reads to the access record of the key whose access hash is `hash`. Reads of an
    /// entry this transaction removed are dropped; those of an entry an earlier commit removed
    /// leave a record no entry has, which the next [`WriteTables::recount`] (a `cleanup()`)
    /// removes.
    pub(super) fn record_reads(&mut self, hash: u64, delta: AccessDelta) -> StorageResult<()> {
        if self.removed.contains(&hash) {
            return Ok(());
        }
        let (last, count) = self.reads_by_hash(hash)?;
        self.access
            .insert(hash, (last.max(delta.last_ms), count + delta.count))?;
        Ok(())
    }

    /// The single-flight lease table (`leases.rs`), created by the first lease written.
    pub(super) fn leases(
        &self,
    ) -> std::result::Result<Table<'txn, &'static [u8], &'static [u8]>, TableError> {
        self.txn.open_table(LEASES)
    }

    /// Folds the access records of the key-bytes table of files written before the access
    /// hash ([`LEGACY_ACCESS`]) into [`ACCESS`], and deletes that table. An older version
    /// sharing the file may create it again; the next open of this version folds it again.
    pub(super) fn fold_legacy_access(&mut self) -> std::result::Result<(), TableError> {
        let legacy = self
            .txn
            .list_tables()?
            .any(|handle| handle.name() == LEGACY_ACCESS.name());
        if !legacy {
            return Ok(());
        }
        let rows: Vec<(u64, AccessDelta)> = {
            let table = self.txn.open_table(LEGACY_ACCESS)?;
            let rows = table.iter()?.map(|row| {
                row.map(|(key, reads)| {
                    let (last_ms, count) = reads.value();
                    (
                        self.hasher.hash(key.value()),
                        AccessDelta { last_ms, count },
                    )
                })
            });
            rows.collect::<StorageResult<_>>()?
        };
        for (hash, delta) in rows {
            self.record_reads(hash, delta)?;
        }
        self.txn.delete_table(LEGACY_ACCESS)?;
        Ok(())
    }

    /// Removes every entry with what it owns, and every access record.
    pub(super) fn clear(&mut self) -> StorageResult<()> {
        let keys: Vec<Vec<u8>> = self
            .entries
            .iter()?
            .map(|row| row.map(|(key, _)| key.value().to_vec()))
            .collect::<StorageResult<_>>()?;
        for key in keys {
            self.remove(&key)?;
        }
        self.access.retain(|_, _| false)?;
        Ok(())
    }

    /// Whether an entry refers to `blob` already (its file is then in place, or due back).
    pub(super) fn is_blob_referenced(&self, blob: &BlobRef) -> StorageResult<bool> {
        Ok(self
            .blobs
            .get(blob.hash.as_slice())?
            .is_some_and(|row| row.value().0 > 0))
    }

    /// The tag's usage as of now in this transaction: bytes and entries.
    pub(super) fn usage(&self) -> (u64, u64) {
        (self.bytes, self.entry_count)
    }

    /// Counts entries this transaction removed because they had expired.
    pub(super) fn count_expired(&mut self, count: u64) {
        self.expired += count;
    }

    /// Counts an entry this transaction evicted.
    pub(super) fn count_evicted(&mut self) {
        self.evicted += 1;
    }

    /// What this transaction expired and evicted.
    pub(super) fn removals(&self) -> (u64, u64) {
        (self.expired, self.evicted)
    }

    /// Records that `cleanup()` ran at `now_ms`.
    pub(super) fn mark_cleanup(&mut self, now_ms: u64) {
        self.last_cleanup_ms = Some(now_ms);
    }

    pub(super) fn last_cleanup_ms(&self) -> Option<u64> {
        self.last_cleanup_ms
    }

    /// Whether this transaction released the blob `hash` (its file goes after the commit).
    pub(super) fn releases_blob(&self, hash: &[u8; 32]) -> bool {
        self.released_blobs.iter().any(|blob| &blob.hash == hash)
    }

    /// Whether this transaction released the directory `name`.
    pub(super) fn releases_dir(&self, name: &str) -> bool {
        self.released_dirs.iter().any(|released| released == name)
    }

    /// The blobs and directories this transaction released, for `commit.rs` to remove once
    /// the commit has landed.
    pub(super) fn take_released(&mut self) -> (Vec<BlobRef>, Vec<String>) {
        (
            std::mem::take(&mut self.released_blobs),
            std::mem::take(&mut self.released_dirs),
        )
    }

    /// The content files this transaction released, for `commit.rs` to remove once the commit
    /// has landed.
    pub(super) fn take_released_contents(&mut self) -> ContentsToSettle {
        ContentsToSettle {
            released: std::mem::take(&mut self.released_contents),
            touched: std::mem::take(&mut self.touched_contents),
        }
    }

    /// Records how the content file `name` looks now (see [`CONTENT_STAT`]); `None` forgets it.
    pub(super) fn record_content_stat(
        &mut self,
        name: &str,
        seen: Option<(u64, u64, i64, i64)>,
    ) -> StorageResult<()> {
        match seen {
            Some(seen) => {
                self.content_stat.insert(name, seen)?;
            }
            None => {
                self.content_stat.remove(name)?;
            }
        }
        Ok(())
    }

    /// Records the shared files of the owned directory `dir` (which the entry just put owns)
    /// and takes a reference to each content file: the directory's size counted by `put` loses
    /// its shared files, and a content file is counted when its first directory takes it. Call
    /// after `put` of the entry (so that the content files of the entry it replaced, released
    /// by `put`, are taken again before the commit judges them).
    pub(super) fn attach_contents(&mut self, dir: &str, uses: &[ContentUse]) -> StorageResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        self.dir_contents
            .insert(dir, encode_uses(uses).as_slice())?;
        self.bytes = self.bytes.saturating_sub(shared_bytes(uses));
        let mut seen: HashSet<&str> = HashSet::new();
        for content in uses {
            if !seen.insert(content.name.as_str()) {
                continue;
            }
            let (refs, allocated) = self
                .contents
                .get(content.name.as_str())?
                .map_or((0, content.allocated), |row| row.value());
            if refs == 0 {
                self.bytes = self.bytes.saturating_add(allocated);
            }
            self.contents
                .insert(content.name.as_str(), (refs + 1, allocated))?;
        }
        Ok(())
    }

    /// Drops the content references of the owned directory `dir`, whose entry went.
    fn detach_contents(&mut self, dir: &str) -> StorageResult<()> {
        let Some(row) = self.dir_contents.remove(dir)? else {
            return Ok(());
        };
        let uses = decode_uses(row.value()).unwrap_or_default();
        drop(row);
        self.bytes = self.bytes.saturating_add(shared_bytes(&uses));
        let names: HashSet<String> = uses.into_iter().map(|content| content.name).collect();
        for name in names {
            let row = self.contents.get(name.as_str())?.map(|row| row.value());
            match row {
                Some((refs, allocated)) if refs > 1 => {
                    self.contents.insert(name.as_str(), (refs - 1, allocated))?;
                    self.touched_contents.push(name);
                }
                Some((_, allocated)) => {
                    self.contents.remove(name.as_str())?;
                    self.content_stat.remove(name.as_str())?;
                    self.bytes = self.bytes.saturating_sub(allocated);
                    self.released_contents.push(name);
                }
                None => self.released_contents.push(name),
            }
        }
        Ok(())
    }

    /// Recomputes the usage and every blob's reference count from the entries, correcting any
    /// drift (for example a directory whose size changed since it was stored). Returns the
    /// referenced blobs and directories.
    pub(super) fn recount(&mut self) -> StorageResult<Referenced> {
        let mut referenced = Referenced::default();
        let (mut bytes, mut entry_count) = (0u64, 0u64);
        let mut read_keys: HashSet<u64> = HashSet::new();
        for row in self.entries.iter()? {
            let (key, stored) = row?;
            read_keys.insert(self.hasher.hash(key.value()));
            let owned = Owned::of(stored.value());
            bytes += owned.accounted(key.value().len(), stored.value().len());
            entry_count += 1;
            if let Some(blob) = owned.blob {
                referenced.blobs.entry(blob.hash).or_insert((0, blob.len)).0 += 1;
            }
            if let Some((name, _)) = owned.dir {
                referenced.dirs.insert(name);
            }
        }
        let mut stale: Vec<Vec<u8>> = Vec::new();
        for row in self.blobs.iter()? {
            let (hash, _) = row?;
            let known = <[u8; 32]>::try_from(hash.value())
                .is_ok_and(|hash| referenced.blobs.contains_key(&hash));
            if !known {
                stale.push(hash.value().to_vec());
            }
        }
        for hash in stale {
            self.blobs.remove(hash.as_slice())?;
        }
        for (hash, value) in &referenced.blobs {
            self.blobs.insert(hash.as_slice(), *value)?;
            bytes += value.1;
        }
        // Content files: counted from the rows of the directories still owned; rows of
        // directories no entry owns are debris of a failed store.
        let mut rows: Vec<(String, Vec<u8>)> = Vec::new();
        for row in self.dir_contents.iter()? {
            let (name, uses) = row?;
            rows.push((name.value().to_owned(), uses.value().to_vec()));
        }
        let mut contents: HashMap<String, (u64, u64)> = HashMap::new();
        for (dir, uses) in rows {
            if !referenced.dirs.contains(&dir) {
                self.dir_contents.remove(dir.as_str())?;
                continue;
            }
            let uses = decode_uses(&uses).unwrap_or_default();
            bytes = bytes.saturating_sub(shared_bytes(&uses));
            let names: HashMap<String, u64> = uses
                .into_iter()
                .map(|content| (content.name, content.allocated))
                .collect();
            for (name, allocated) in names {
                contents.entry(name).or_insert((0, allocated)).0 += 1;
            }
        }
        let stale: Vec<String> = self
            .contents
            .iter()?
            .map(|row| row.map(|(name, _)| name.value().to_owned()))
            .collect::<StorageResult<Vec<_>>>()?
            .into_iter()
            .filter(|name| !contents.contains_key(name))
            .collect();
        for name in stale {
            self.contents.remove(name.as_str())?;
        }
        let stale_stats: Vec<String> = self
            .content_stat
            .iter()?
            .map(|row| row.map(|(name, _)| name.value().to_owned()))
            .collect::<StorageResult<Vec<_>>>()?
            .into_iter()
            .filter(|name| !contents.contains_key(name))
            .collect();
        for name in stale_stats {
            self.content_stat.remove(name.as_str())?;
        }
        for (name, value) in &contents {
            self.contents.insert(name.as_str(), *value)?;
            bytes += value.1;
        }
        referenced.contents = contents.into_keys().collect();
        // Access records of entries removed after their reads were taken, and not written
        // again since.
        self.access.retain(|hash, _| read_keys.contains(&hash))?;
        self.bytes = bytes;
        self.entry_count = entry_count;
        Ok(referenced)
    }
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
        let hash = self.hasher.hash(key);
        self.access.remove(hash)?;
        self.removed.remove(&hash);
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
        let hash = self.hasher.hash(key);
        self.access.remove(hash)?;
        self.removed.insert(hash);
        match old {
            Some((old_len, old_owned)) => {
                self.forget(key.len(), old_len, old_owned)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn forget(&mut self, key_len: usize, stored_len: usize, owned: Owned) -> StorageResult<()> {
        // Shared files first: they give back what `attach_contents` took off the directory's
        // size, so the subtraction below never goes under zero on the way.
        if let Some((name, _)) = &owned.dir {
            self.detach_contents(name)?;
        }
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

    fn retain_blob(&mut self, blob: &BlobRef) -> StorageResult<()> {
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

    fn release_blob(&mut self, blob: &BlobRef) -> StorageResult<()> {
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

/// Bytes of an owned directory's size that are its shared files (each name counted, as the
/// directory's measurement counts them).
fn shared_bytes(uses: &[ContentUse]) -> u64 {
    uses.iter()
        .fold(0u64, |sum, content| sum.saturating_add(content.allocated))
}

/// What the entries of a tag refer to: blobs (with their reference count and length) and owned
/// directories.
#[derive(Default)]
pub(super) struct Referenced {
    pub(super) blobs: HashMap<[u8; 32], (u64, u64)>,
    pub(super) dirs: HashSet<String>,
    /// Content files owned directories share.
    pub(super) contents: HashSet<String>,
}
