//! Reads of one [`RedbCache`]: `lookup` (buffer first, then the shared read snapshot),
//! `classify` and `deliver` (decode an entry, open its blob), `read_entry`, `scan`.
//!
//! Invariant: **reads never write.** Nothing in this module opens a write transaction, calls
//! the commit path (`commit.rs`) or touches `WriteTables`. What a read finds damaged it only
//! notes, in memory, as a suspect (`buffer.rs`), hidden from this process's reads; the next
//! commit judges it (`commit.rs`), removing it only if the stored version is still the damaged
//! one. `store/tests.rs` checks this file's code for the write path's names. Counting a
//! read and recording its access (`count_read`, whose back-pressure may commit access
//! records), and committing buffered writes before a listing (`commit_if_buffered`), are the
//! callers' (`api.rs`), not this module's.

use super::*;

/// A read transaction's tables, shared by reads for up to `commit_interval`.
pub(super) struct Snapshot {
    pub(super) taken: Moment,
    /// The handle it reads through.
    pub(super) open: Arc<OpenDatabase>,
    pub(super) entries: ReadOnlyTable<&'static [u8], &'static [u8]>,
    pub(super) access: AccessTable,
}

/// The committed access records a snapshot reads: by access hash, or, in a file from before
/// the access hash that no writer has migrated yet (a read-only handle serves it as it is), by
/// key bytes.
pub(super) enum AccessTable {
    ByHash(ReadOnlyTable<u64, (u64, u64)>),
    ByKey(ReadOnlyTable<&'static [u8], (u64, u64)>),
}

impl AccessTable {
    pub(super) fn open(txn: &redb::ReadTransaction) -> std::result::Result<Self, TableError> {
        match txn.open_table(ACCESS) {
            Ok(table) => Ok(AccessTable::ByHash(table)),
            Err(TableError::TableDoesNotExist(_)) => {
                txn.open_table(LEGACY_ACCESS).map(AccessTable::ByKey)
            }
            Err(err) => Err(err),
        }
    }

    /// When `key` (access hash `hash`) was last read and how often, as committed.
    pub(super) fn reads_of(
        &self,
        key: &[u8],
        hash: u64,
    ) -> std::result::Result<(u64, u64), redb::StorageError> {
        let row = match self {
            AccessTable::ByHash(table) => table.get(hash)?.map(|row| row.value()),
            AccessTable::ByKey(table) => table.get(key)?.map(|row| row.value()),
        };
        Ok(row.unwrap_or((0, 0)))
    }
}

/// What a read found under a key. `Blob` and `Unusable` keep the stored entry bytes, which
/// identify the very version read if it has to be reported as damaged.
pub(super) enum Found {
    Value(Vec<u8>),
    Blob { blob: BlobRef, stored: Vec<u8> },
    Nothing,
    Unusable { reason: String, stored: Vec<u8> },
}

/// What delivering a found entry came to.
pub(super) enum Delivered<T> {
    /// The value (or a miss), counted.
    Done(Option<T>),
    /// The entry's blob is missing, which a snapshot older than the commit that replaced or
    /// removed the entry explains: read again from a fresh one before calling it damage.
    BlobMissing,
}

impl RedbCache {
    /// Finds `key` as this process sees it: its own uncommitted writes first, then the snapshot.
    /// `read` gets the stored bytes, and the snapshot when they came from it.
    pub(super) fn lookup<T>(
        &self,
        key: &[u8],
        now: Moment,
        read: impl FnOnce(Option<&[u8]>, Option<&Snapshot>) -> Result<T>,
    ) -> Result<T> {
        let (snapshot, any_suspect) = {
            let mut buffer = lock(&self.buffer);
            if let Some(write) = buffer.buffered(key) {
                let stored = write.filter(|stored| !buffer.is_suspect(stored));
                return read(stored, None);
            }
            let snapshot = self.current_snapshot(&mut buffer, now)?;
            (snapshot, buffer.has_suspects())
        };
        let guard = match snapshot.entries.get(key).or_db(self) {
            Ok(guard) => guard,
            // The snapshot belongs to a handle that failed since (another thread's commit met
            // a full disk, say) and has been replaced: read from a snapshot of the current one.
            Err(err) if is_latched(&err) => {
                // redb does not latch a read-only handle after an I/O error, so the fresh
                // snapshot below would read through it again: a read-only handle that failed
                // (a file truncated past what its open checked) is replaced by the read-write
                // open, which recovers or quarantines the file.
                if matches!(snapshot.open.database, Handle::Reading(_)) {
                    self.reopen_if_latched(&snapshot.open, &err);
                }
                let mut buffer = lock(&self.buffer);
                buffer.drop_snapshot_if(&snapshot);
                let fresh = self.current_snapshot(&mut buffer, Moment::now())?;
                drop(buffer);
                if Arc::ptr_eq(&fresh, &snapshot) {
                    return Err(err);
                }
                return self.read_snapshot(&fresh, key, any_suspect, read);
            }
            Err(err) => return Err(err),
        };
        let stored = guard.as_ref().map(|guard| guard.value());
        // A version a read found damaged reads as absent until a commit has judged it.
        let stored = stored.filter(|stored| !any_suspect || !lock(&self.buffer).is_suspect(stored));
        read(stored, Some(&snapshot))
    }

    /// Reads `key` from `snapshot` for [`RedbCache::lookup`], without a second chance.
    pub(super) fn read_snapshot<T>(
        &self,
        snapshot: &Snapshot,
        key: &[u8],
        any_suspect: bool,
        read: impl FnOnce(Option<&[u8]>, Option<&Snapshot>) -> Result<T>,
    ) -> Result<T> {
        let guard = snapshot.entries.get(key).or_db(self)?;
        let stored = guard.as_ref().map(|guard| guard.value());
        let stored = stored.filter(|stored| !any_suspect || !lock(&self.buffer).is_suspect(stored));
        read(stored, Some(snapshot))
    }

    pub(super) fn current_snapshot(
        &self,
        buffer: &mut WriteBuffer,
        now: Moment,
    ) -> Result<Arc<Snapshot>> {
        if let Some(snapshot) = buffer.snapshot()
            && now.since(snapshot.taken) < self.options.commit_interval
        {
            return Ok(Arc::clone(snapshot));
        }
        let open = self.open_database()?;
        let (open, txn) = match open.database.begin_read().or_db(self) {
            Ok(txn) => (open, txn),
            Err(err) if is_latched(&err) => {
                // This handle failed, here or in another thread's commit, which may have
                // replaced it already: read from the current handle if there is a new one.
                self.reopen_if_latched(&open, &err);
                buffer.drop_snapshot();
                let current = self.open_database()?;
                if Arc::ptr_eq(&current, &open) {
                    return Err(err);
                }
                let txn = current.database.begin_read().or_db(self)?;
                (current, txn)
            }
            Err(err) => return Err(err),
        };
        self.calibrate_wall();
        let snapshot = Arc::new(Snapshot {
            taken: Moment::now(),
            open,
            entries: txn.open_table(ENTRIES).or_db(self)?,
            access: AccessTable::open(&txn).or_db(self)?,
        });
        buffer.keep_snapshot(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    /// What stored bytes hold for a read; `check` is the format a typed read expects.
    pub(super) fn classify(
        &self,
        key: &[u8],
        stored: Option<&[u8]>,
        now: u64,
        check: Option<(ValueFormat, AnyFormat)>,
    ) -> Found {
        let Some(stored) = stored else {
            return Found::Nothing;
        };
        let (header, payload) = match EntryHeader::decode(key, stored) {
            Ok(decoded) => decoded,
            Err(EntryDecodeError::NewerFormat(version)) => {
                tracing::debug!(tag = %self.tag, key = %KeyDisplay::new(key), version, "entry written by a newer version; treated as a miss");
                return Found::Nothing;
            }
            Err(EntryDecodeError::Corrupt(reason)) => {
                return Found::Unusable {
                    reason: reason.to_owned(),
                    stored: stored.to_vec(),
                };
            }
        };
        if header.is_expired(now) {
            return Found::Nothing;
        }
        if let Some((format, AnyFormat::No)) = check
            && header.format != format
        {
            return Found::Unusable {
                reason: format!(
                    "stored as {:?}, read as {:?} (schema changed)",
                    header.format, format
                ),
                stored: stored.to_vec(),
            };
        }
        match header.kind {
            EntryKind::Inline => Found::Value(payload.to_vec()),
            EntryKind::Blob => match BlobRef::decode(payload) {
                Ok(blob) => Found::Blob {
                    blob,
                    stored: stored.to_vec(),
                },
                Err(_) => Found::Unusable {
                    reason: "damaged blob reference".to_owned(),
                    stored: stored.to_vec(),
                },
            },
            EntryKind::Directory => match DirRef::decode(payload) {
                Ok((_, value)) => Found::Value(value.to_vec()),
                Err(_) => Found::Unusable {
                    reason: "damaged directory reference".to_owned(),
                    stored: stored.to_vec(),
                },
            },
        }
    }

    /// Reads `key` and turns what was found into the result: an inline value through `value`,
    /// a blob through `blob`. Returns it with the time it was read at, for the caller to count
    /// the read (`count_read`). A missing blob is first read again from a fresh snapshot (the
    /// entry may have been replaced or removed since the shared one was taken); damage found
    /// then is reported as a suspect and is a miss: a read never writes.
    pub(super) fn read_entry<T, S: ?Sized>(
        &self,
        key: &[u8],
        started: Moment,
        check: Option<(ValueFormat, AnyFormat)>,
        sink: &mut S,
        mut value: impl FnMut(&mut S, Vec<u8>) -> Result<T>,
        mut blob: impl FnMut(&mut S, &BlobRef) -> Result<BlobRead<T>>,
    ) -> Result<(Option<T>, u64)> {
        let now = self.now_ms_at(started);
        let mut first = true;
        loop {
            let found = self.lookup(key, started, |stored, _| {
                Ok(self.classify(key, stored, now, check))
            })?;
            match self.deliver(key, found, first, sink, &mut value, &mut blob)? {
                Delivered::Done(delivered) => return Ok((delivered, now)),
                Delivered::BlobMissing => {
                    first = false;
                    self.refresh_snapshot();
                }
            }
        }
    }

    /// Turns what a read found into its result (see [`RedbCache::read_entry`]).
    pub(super) fn deliver<T, S: ?Sized>(
        &self,
        key: &[u8],
        found: Found,
        first: bool,
        sink: &mut S,
        value: &mut impl FnMut(&mut S, Vec<u8>) -> Result<T>,
        blob: &mut impl FnMut(&mut S, &BlobRef) -> Result<BlobRead<T>>,
    ) -> Result<Delivered<T>> {
        let delivered = match found {
            Found::Value(bytes) => Some(value(sink, bytes)?),
            Found::Blob {
                blob: reference,
                stored,
            } => match blob(sink, &reference)? {
                BlobRead::Verified(delivered) => Some(delivered),
                BlobRead::Missing if first => return Ok(Delivered::BlobMissing),
                damaged => {
                    let corrupt = matches!(damaged, BlobRead::Corrupt);
                    tracing::error!(tag = %self.tag, key = %KeyDisplay::new(key), blob = %reference.file_name(), corrupt, "blob of a cached entry is missing or does not match its hash; treated as a miss");
                    AtomicCounters::add(&self.counters.errors, 1);
                    let reason = if corrupt {
                        "its blob does not match its hash"
                    } else {
                        "its blob is missing"
                    };
                    self.suspect(key, &stored, reason.to_owned());
                    None
                }
            },
            Found::Nothing => None,
            Found::Unusable { reason, stored } => {
                self.suspect(key, &stored, reason);
                None
            }
        };
        Ok(Delivered::Done(delivered))
    }

    /// Calls `visit` with every stored (key, entry bytes) in a fresh read transaction. What
    /// this process buffered is not in it: callers that list commit it first
    /// (`commit_if_buffered`).
    pub(super) fn scan(&self, mut visit: impl FnMut(&[u8], &[u8])) -> Result<()> {
        let txn = self.begin_read_on_current()?;
        let entries = txn.open_table(ENTRIES).or_db(self)?;
        for row in entries.iter().or_db(self)? {
            let (key, value) = row.or_db(self)?;
            visit(key.value(), value.value());
        }
        Ok(())
    }

    /// The usage table: `bytes`, `entries`, `last_cleanup_ms` and the access hash's seeds.
    pub(super) fn read_usage(&self) -> Result<HashMap<String, u64>> {
        let txn = self.begin_read_on_current()?;
        let table = match txn.open_table(USAGE) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(HashMap::new()),
            Err(err) => return Err(err).or_db(self),
        };
        let mut usage = HashMap::new();
        for row in table.iter().or_db(self)? {
            let (name, value) = row.or_db(self)?;
            usage.insert(name.value().to_owned(), value.value());
        }
        Ok(usage)
    }
}
