//! The database handle of one [`RedbCache`]: getting it (`open_database`), replacing it after
//! a latched I/O error (`reopen_if_latched`; `begin_read_on_current` for a fresh read
//! transaction, as a commit does in `commit.rs`), catching redb's panics and quarantining the file
//! they leave (`catching_panics`, `quarantine_after_panic`), taking the only handle for
//! compaction and integrity checks (`with_exclusive_database`), and waiting for the last user
//! when closing (`close_when_released`).
//!
//! It is also **the one open path** of a tag's file, with `backend.rs` beneath it:
//! `prepare_tag_files` (the tag directory and an empty 0600 file, through `fsys`),
//! `FileRegistration` (one handle per file per process: a second open in one process is
//! `CacheError::AlreadyOpenInProcess`), `open_for_reading_first` (the cache's first handle,
//! read-only: [`Handle`]; `upgrade_to_writing` at the first write, and `begin_write`, which
//! upgrades first and then waits at most `timeout` for another process's writer), `open_or_quarantine` and
//! `quarantine_and_start_fresh` (a corrupt file is moved aside and the tag starts empty). Every
//! read-write open goes through `backend::open_database`, doctor's included; a read-only one
//! through `backend::open_reading`.

use std::collections::HashSet;

use std::sync::LazyLock;

use redb::ReadOnlyDatabase;

use super::backend::{Access, HandleSettings, Opened, Reading, open_database, open_reading};
use super::*;
use crate::fsys;

/// Whether `err` is an I/O failure of a redb handle, after which redb refuses every later
/// operation on that handle ("previous I/O error") until it is closed.
pub(super) fn is_latched(err: &CacheError) -> bool {
    matches!(err, CacheError::Database { source, .. }
        if matches!(**source, redb::Error::Io(_) | redb::Error::PreviousIo))
}

thread_local! {
    /// Set when a caller's reader or writer panicked inside an operation, so that
    /// [`RedbCache::catching_panics`] lets that panic go on instead of taking it for damage.
    pub(super) static CALLER_PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A caller's reader or writer: a panic in it is marked as the caller's before it unwinds.
pub(super) struct CallerIo<'a, T: ?Sized>(pub(super) &'a mut T);

impl<T: ?Sized> CallerIo<'_, T> {
    pub(super) fn call<R>(&mut self, run: impl FnOnce(&mut T) -> R) -> R {
        let inner = &mut *self.0;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(inner))) {
            Ok(result) => result,
            Err(payload) => {
                CALLER_PANICKED.set(true);
                std::panic::resume_unwind(payload)
            }
        }
    }
}

impl<T: Read + ?Sized> Read for CallerIo<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.call(|inner| inner.read(buf))
    }
}

impl<T: Write + ?Sized> Write for CallerIo<'_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.call(|inner| inner.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.call(|inner| inner.flush())
    }
}

impl RedbCache {
    pub(super) fn open_database(&self) -> Result<Arc<OpenDatabase>> {
        let guard = self.database.read().unwrap_or_else(PoisonError::into_inner);
        guard.clone().ok_or_else(|| CacheError::Closed {
            tag: self.tag.to_string(),
        })
    }

    /// A fresh read transaction on the current handle. On a handle an earlier I/O error
    /// latched, the handle is replaced first (if the file opens again) and the transaction
    /// begins on the new one, as a commit does (`commit.rs`): once the file works again, no
    /// read fails for the old error. Callers hold no lock of this instance (the snapshot is
    /// dropped, which takes `buffer`).
    pub(super) fn begin_read_on_current(&self) -> Result<redb::ReadTransaction> {
        let open = self.open_database()?;
        match open.database.begin_read().or_db(self) {
            Err(err) if is_latched(&err) => {
                if self.reopen_if_latched(&open, &err) {
                    lock(&self.buffer).drop_snapshot();
                }
                let current = self.open_database()?;
                if Arc::ptr_eq(&current, &open) {
                    return Err(err);
                }
                current.database.begin_read().or_db(self)
            }
            result => result,
        }
    }

    /// After an I/O error, redb refuses every later operation on the handle ("previous I/O
    /// error") until it is closed. This replaces the handle `failed` with a new one on the same
    /// file, so that the instance recovers by itself; the write buffer is untouched, so nothing
    /// buffered is lost and the next commit retries it. A no-op for other errors, or when
    /// `failed` is no longer the current handle. If the file cannot be opened again (the disk is
    /// still failing), the old handle stays and the next failure tries again.
    ///
    /// Returns whether it replaced the handle; the caller then drops the read snapshot (which
    /// belongs to the old handle), since the buffer lock must not be taken here: a reader calls
    /// this holding it.
    pub(super) fn reopen_if_latched(&self, failed: &Arc<OpenDatabase>, err: &CacheError) -> bool {
        if !is_latched(err) {
            return false;
        }
        let mut current = self
            .database
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, failed))
        {
            return false;
        }
        // The old handle stays open until its last user is done with it; redb's byte-range
        // locks are per handle, so both may be open at once.
        match open_or_quarantine(&self.path, &self.tag, &self.options) {
            Ok(database) => {
                *current = Some(failed.replaced_by(database));
                tracing::warn!(tag = %self.tag, path = %self.path.display(), error = %crate::error::ErrorChain(err), "reopened the cache file after an I/O error");
                true
            }
            Err(reopen) => {
                tracing::warn!(tag = %self.tag, error = %crate::error::ErrorChain(&reopen), "could not reopen the cache file after an I/O error; will try again");
                false
            }
        }
    }

    /// Runs `run`, turning a panic into [`CacheError::Damaged`]. Our own code is written not to
    /// panic on any input (no unwrap, indexing only within checked bounds), so a panic is taken
    /// to come from redb meeting a damaged file: redb asserts on page contents it does not
    /// expect rather than returning an error. Such a file is moved aside, as a damaged file found
    /// at open is: a cache can be rebuilt, a panic in the caller cannot be taken back.
    pub(super) fn catching_panics<T>(
        &self,
        operation: &'static str,
        run: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
            Ok(result) => result,
            // The caller's own reader or writer panicked: theirs to see, not damage.
            Err(payload) if CALLER_PANICKED.take() => std::panic::resume_unwind(payload),
            Err(_) => Err(self.quarantine_after_panic(operation)),
        }
    }

    /// Moves the tag's damaged file aside and goes on with a fresh one: the handle is replaced
    /// (other processes find the damage themselves), the snapshot is dropped, writes a panicking
    /// commit had taken go back to the buffer, and the new file gets its tables.
    pub(super) fn quarantine_after_panic(&self, operation: &'static str) -> CacheError {
        let damaged = CacheError::Damaged {
            tag: self.tag.to_string(),
            path: self.path.clone(),
            operation,
        };
        {
            let mut current = self
                .database
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(failed) = current.as_ref() else {
                return damaged;
            };
            let reason = format!("redb panicked during {operation}");
            match quarantine_and_start_fresh(&self.path, &self.tag, &self.options, &reason) {
                Ok(database) => *current = Some(failed.replaced_by(database)),
                Err(err) => {
                    tracing::error!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not move a damaged cache file aside and start a fresh one");
                    return damaged;
                }
            }
        }
        {
            // No guard is held here: the panic unwound them all.
            let mut buffer = lock(&self.buffer);
            buffer.drop_snapshot();
            buffer.restore_failed();
        }
        lock(&self.sweep_cursor).clear();
        *lock(&self.published_usage) = (u64::MAX, u64::MAX);
        if let Err(err) = self.ensure_tables() {
            tracing::error!(tag = %self.tag, error = %crate::error::ErrorChain(&err), "could not create the tables of the fresh cache file");
        }
        damaged
    }

    /// Runs `run` with the only handle to the database, which redb's compaction and integrity
    /// check need: commits what is buffered, drops the read snapshot, and holds off this
    /// instance's other operations meanwhile. Fails, doing nothing, while another thread is
    /// inside an operation.
    pub(super) fn with_exclusive_database<T>(
        &self,
        run: impl FnOnce(&mut Database) -> Result<T>,
    ) -> Result<T> {
        self.commit_if_buffered()?;
        let current = self.open_database()?;
        drop(self.upgrade_to_writing(&current)?);
        drop(current);
        // Dropped before the database lock is taken, never under it: readers take the buffer
        // lock and then the database lock, so taking them the other way round could deadlock.
        // A snapshot taken again in between makes redb refuse, as a transaction in progress.
        lock(&self.buffer).drop_snapshot();
        let mut guard = self
            .database
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(handle) = guard.as_mut() else {
            return Err(CacheError::Closed {
                tag: self.tag.to_string(),
            });
        };
        let Some(open) = Arc::get_mut(handle) else {
            return Err(CacheError::Busy {
                tag: self.tag.to_string(),
                reason: "another thread of this process is using the database",
            });
        };
        match &mut open.database {
            Handle::Writing(database) => run(database),
            // Upgraded above; only this method and the upgrade replace the handle, and both
            // leave a writing one: say so rather than run on the wrong kind.
            Handle::Reading(_) => Err(CacheError::Busy {
                tag: self.tag.to_string(),
                reason: "the database handle is read-only",
            }),
        }
    }

    /// Begins a write transaction on `open`, waiting at most `timeout` for another process's
    /// writer. A read-only handle is replaced by a read-write one first (the process's first
    /// write), and `open` then names the new handle.
    pub(super) fn begin_write(&self, open: &mut Arc<OpenDatabase>) -> Result<WriteTransaction> {
        loop {
            match &open.database {
                Handle::Writing(database) => return self.begin_write_on(database),
                Handle::Reading(_) => *open = self.upgrade_to_writing(open)?,
            }
        }
    }

    fn begin_write_on(&self, database: &Database) -> Result<WriteTransaction> {
        let started = Instant::now();
        let mut backoff = FIRST_WRITER_BACKOFF;
        loop {
            match database.try_begin_write() {
                Ok(txn) => return Ok(txn),
                Err(TransactionError::WouldBlock) => {
                    let waited = started.elapsed();
                    if waited >= self.options.timeout {
                        return Err(CacheError::LockTimeout {
                            tag: self.tag.to_string(),
                            path: self.path.clone(),
                            waited,
                        });
                    }
                    std::thread::sleep(backoff.min(self.options.timeout - waited));
                    backoff = next_writer_backoff(backoff);
                }
                Err(err) => return Err(err).or_db(self),
            }
        }
    }

    /// Before the first write of an instance that has only read: replaces the read-only handle
    /// by a read-write one now, so that a write the file cannot take (a read-only root, a file
    /// of another user's) is refused at once, naming the file, rather than accepted into the
    /// buffer and lost at the commit.
    pub(super) fn ready_to_write(&self) -> Result<()> {
        if self.writable.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let open = self.open_database()?;
        drop(self.upgrade_to_writing(&open)?);
        Ok(())
    }

    /// The current handle, replaced first by a read-write one if `open` is the current handle
    /// and read-only (the first write of a process that has only read so far). The read-only
    /// handle stays open until its last user (a read snapshot) is done with it.
    pub(super) fn upgrade_to_writing(&self, open: &Arc<OpenDatabase>) -> Result<Arc<OpenDatabase>> {
        let mut current = self
            .database
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(handle) = current.as_ref() else {
            return Err(CacheError::Closed {
                tag: self.tag.to_string(),
            });
        };
        if Arc::ptr_eq(handle, open) && matches!(open.database, Handle::Reading(_)) {
            let database = open_or_quarantine(&self.path, &self.tag, &self.options)?;
            let upgraded = open.replaced_by(database);
            *current = Some(Arc::clone(&upgraded));
            tracing::debug!(tag = %self.tag, "first write: the read-only handle is replaced by a read-write one");
        }
        let current = current
            .as_ref()
            .map(Arc::clone)
            .ok_or_else(|| CacheError::Closed {
                tag: self.tag.to_string(),
            })?;
        if matches!(current.database, Handle::Writing(_)) {
            self.writable
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(current)
    }

    /// Closes the database once no other thread of this process holds the handle (an operation
    /// that began before `close`), so that the file is released, and can be opened again, when
    /// `close` returns. The commit thread has ended by then; other threads' operations are
    /// waited for up to `timeout`, after which the file closes when the last of them is done
    /// and `close` says so.
    pub(super) fn close_when_released(&self, mut open: Arc<OpenDatabase>) -> Result<()> {
        let started = Instant::now();
        let mut backoff = Duration::from_micros(50);
        loop {
            match Arc::try_unwrap(open) {
                Ok(OpenDatabase {
                    database,
                    registration: _,
                }) => {
                    return database
                        .close()
                        .map_err(|err| CacheError::database(self.tag.as_str(), &self.path, err));
                }
                Err(shared) => {
                    let waited = started.elapsed();
                    if waited >= self.options.timeout {
                        return Err(CacheError::Busy {
                            tag: self.tag.to_string(),
                            reason: "another thread of this process was still using the database \
                                     when close gave up waiting; the file closes when it is done",
                        });
                    }
                    open = shared;
                    std::thread::sleep(backoff.min(self.options.timeout - waited));
                    backoff = (backoff * 2).min(Duration::from_millis(10));
                }
            }
        }
    }
}

/// The first sleep of a commit waiting for another process's writer.
pub(super) const FIRST_WRITER_BACKOFF: Duration = Duration::from_micros(50);

/// The longest sleep between two tries for another process's writer. Writers of one tag take
/// turns at the file's lock every few milliseconds (each commits every `commit_interval`), so a
/// sleep much longer than a commit leaves the lock idle while writers sleep: with 10 ms, four
/// writer processes reached 0.75x raw redb's throughput, with 1 ms 0.82x. A try costs one
/// non-blocking lock call.
pub(super) const MAX_WRITER_BACKOFF: Duration = Duration::from_millis(1);

/// The sleep after `backoff` while waiting for another process's writer: doubled, at most
/// [`MAX_WRITER_BACKOFF`].
pub(super) fn next_writer_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_WRITER_BACKOFF)
}

/// Database files this process has open. redb allows one handle per file per process, so a
/// second coordinator opening the same tag gets a clear error instead of a confusing one.
static OPEN_FILES: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Opens (creating if needed) `<root>/<tag>/` and creates an empty database file (mode 0600)
/// if there is none, refusing symlinks and a root or tag directory another user could change,
/// so that nothing the cache writes can land outside the root. Returns the database's path and
/// the open tag directory.
pub(crate) fn prepare_tag_files(canonical_root: &Path, tag: &Tag) -> Result<(PathBuf, fsys::Dir)> {
    let tag_path = canonical_root.join(tag.as_str());
    let tag_dir = match fsys::Dir::open_tag(canonical_root, tag.as_str(), true) {
        Ok(Some(tag_dir)) => tag_dir,
        Ok(None) => {
            return Err(CacheError::InvalidRoot {
                path: tag_path,
                reason: "tag directory vanished while it was being created".to_owned(),
            });
        }
        // A symlink or a file where the tag directory goes: the error callers have always had.
        Err(CacheError::UnsafePath { path, reason }) if path == tag_path => {
            let reason = if reason.contains("symlink") {
                "tag directory is a symlink; refusing to follow it out of the cache root".to_owned()
            } else if reason.contains("not a directory") {
                "tag directory is not a directory".to_owned()
            } else {
                reason
            };
            return Err(CacheError::InvalidRoot { path, reason });
        }
        Err(err) => return Err(err),
    };
    let path = tag_dir.join(DATABASE_FILE_NAME);
    match tag_dir.stat(DATABASE_FILE_NAME)? {
        Some(meta) if meta.kind != fsys::Kind::File => {
            return Err(CacheError::InvalidRoot {
                path,
                reason: "database path is not a regular file (a symlink or directory)".to_owned(),
            });
        }
        Some(_) => {}
        None => match tag_dir.create_new_file(DATABASE_FILE_NAME) {
            Ok(_) => {}
            // Created by another process at the same moment: theirs is as good.
            Err(CacheError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::AlreadyExists
                    && tag_dir
                        .stat(DATABASE_FILE_NAME)?
                        .is_some_and(|meta| meta.kind == fsys::Kind::File) => {}
            Err(err) => return Err(err),
        },
    }
    Ok((path, tag_dir))
}

/// The handle on a tag's file: read-only from the open until the first write, which replaces
/// it with a read-write one ([`RedbCache::upgrade_to_writing`]). A process that only reads
/// never opens the file for writing, so it costs the file no `fsync` and no write at open or
/// close (redb's read-write handle in `MultiWriter` mode records itself in the header, durably,
/// at both).
pub(crate) enum Handle {
    /// redb's `ReadOnlyDatabase`, beside other processes' writers.
    Reading(ReadOnlyDatabase),
    /// redb's `Database`, shared with other processes.
    Writing(Database),
}

impl Handle {
    /// A read transaction, on either kind of handle.
    pub(crate) fn begin_read(
        &self,
    ) -> std::result::Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Handle::Reading(database) => database.begin_read(),
            Handle::Writing(database) => database.begin_read(),
        }
    }

    /// Closes the handle, releasing the file and its locks.
    fn close(self) -> std::result::Result<(), redb::DatabaseError> {
        match self {
            Handle::Reading(database) => database.close(),
            Handle::Writing(database) => database.close(),
        }
    }
}

/// An open database and its entry in [`OPEN_FILES`]; fields drop in order, so the file is
/// closed before it is unregistered.
pub(crate) struct OpenDatabase {
    pub(crate) database: Handle,
    /// Shared with a handle that replaced this one after an I/O error: the path stays
    /// registered until every handle to it is gone.
    pub(crate) registration: Arc<FileRegistration>,
}

impl OpenDatabase {
    /// A handle on a new `database` for the same file, replacing this one: the path stays
    /// registered until both are gone.
    pub(crate) fn replaced_by(&self, database: Database) -> Arc<OpenDatabase> {
        Arc::new(OpenDatabase {
            database: Handle::Writing(database),
            registration: Arc::clone(&self.registration),
        })
    }
}

pub(crate) struct FileRegistration(PathBuf);

impl FileRegistration {
    pub(crate) fn register(path: &Path) -> Result<Self> {
        if lock(&OPEN_FILES).insert(path.to_owned()) {
            Ok(FileRegistration(path.to_owned()))
        } else {
            Err(CacheError::AlreadyOpenInProcess {
                path: path.to_owned(),
            })
        }
    }
}

impl Drop for FileRegistration {
    fn drop(&mut self) {
        lock(&OPEN_FILES).remove(&self.0);
    }
}

/// Opens the file (through [`open_database`], so every wait for another process's lock is bounded
/// by `options.timeout`); a file redb reports as corrupt (or that panics redb while opening) is
/// moved aside by [`quarantine_and_start_fresh`]: a cache can always be rebuilt, a crash loop
/// cannot.
pub(crate) fn open_or_quarantine(
    path: &Path,
    tag: &Tag,
    options: &CacheOptions,
) -> Result<Database> {
    match open_database(path, tag.as_str(), &shared_handle(options))? {
        Opened::Database(database) => Ok(database),
        Opened::Corrupt(reason) => quarantine_and_start_fresh(path, tag, options, &reason),
    }
}

/// Opens the file for reading only when it can be ([`open_reading`]), else as
/// [`open_or_quarantine`] does: the cache's first handle on a tag's file, upgraded at the first
/// write.
pub(crate) fn open_for_reading_first(
    path: &Path,
    tag: &Tag,
    options: &CacheOptions,
) -> Result<Handle> {
    if let Reading::Handle(database) = open_reading(path, tag.as_str(), &shared_handle(options))? {
        if readable_as_is(&database) {
            return Ok(Handle::Reading(database));
        }
        // Closed before the read-write open, whose recovery may need what it holds shared.
        drop(database);
    }
    open_or_quarantine(path, tag, options).map(Handle::Writing)
}

/// Renames the damaged file at `path` to `cache.redb.corrupt-<ms>` and opens a fresh one in its
/// place, created first with mode 0600 so that redb never creates it with the umask's mode.
pub(crate) fn quarantine_and_start_fresh(
    path: &Path,
    tag: &Tag,
    options: &CacheOptions,
    reason: &str,
) -> Result<Database> {
    let quarantined = move_aside(path, options.clock.now_ms())?;
    tracing::error!(tag = %tag, path = %path.display(), quarantined = %quarantined.display(), reason, "cache file is corrupt; moved aside, starting empty");
    match open_database(path, tag.as_str(), &shared_handle(options))? {
        Opened::Database(database) => {
            create_tables(&database)
                .map_err(|err| CacheError::database(tag.as_str(), path, err))?;
            Ok(database)
        }
        Opened::Corrupt(reason) => Err(CacheError::InvalidRoot {
            path: path.to_owned(),
            reason: format!("a fresh database file cannot be opened: {reason}"),
        }),
    }
}

/// Renames the database file at `path` to `cache.redb.corrupt-<now_ms>` and puts an empty file
/// (0600) in its place, which redb initialises on the next open; both through the open tag
/// directory (`fsys`), never following a symlink. Returns where the file went. The one
/// quarantine of a tag's file: the cache's open and doctor's repair both use it.
pub(crate) fn move_aside(path: &Path, now_ms: u64) -> Result<PathBuf> {
    let quarantined = path.with_extension(format!("redb.corrupt-{now_ms}"));
    let tag_path = path.parent().unwrap_or(path);
    let tag_dir = fsys::Dir::open_tag_path(tag_path, false)?.ok_or_else(|| {
        CacheError::io(
            "quarantining corrupt database",
            path,
            std::io::Error::from(std::io::ErrorKind::NotFound),
        )
    })?;
    let quarantined_name = quarantined
        .file_name()
        .unwrap_or(std::ffi::OsStr::new("cache.redb.corrupt"));
    tag_dir.rename(DATABASE_FILE_NAME, &tag_dir, quarantined_name)?;
    tag_dir.create_new_file(DATABASE_FILE_NAME)?;
    Ok(quarantined)
}

/// The cache's own handle on a tag's file: read-write, shared with other processes.
fn shared_handle(options: &CacheOptions) -> HandleSettings {
    HandleSettings {
        access: Access::Shared,
        timeout: options.timeout,
        page_cache_bytes: options.page_cache_bytes,
    }
}
