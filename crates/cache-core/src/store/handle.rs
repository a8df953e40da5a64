//! The database handle of one [`RedbCache`]: getting it (`open_database`), replacing it after
//! a latched I/O error (`reopen_if_latched`), catching redb's panics and quarantining the file
//! they leave (`catching_panics`, `quarantine_after_panic`), taking the only handle for
//! compaction and integrity checks (`with_exclusive_database`), and waiting for the last user
//! when closing (`close_when_released`).
//!
//! The file is opened (and registered, and quarantined when corrupt) by `crate::backend` and
//! `crate::files`, the open path doctor uses too; this module holds what happens to the handle
//! afterwards.

use super::*;

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
        run(&mut open.database)
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
