//! The storage backends redb runs a tag's file on, and [`open_database`], the one function every
//! open of a tag's file goes through (the cache's own handle, doctor's checks and its repair).
//!
//! - [`BoundedFileBackend`]: redb's `FileBackend` with every wait for a lock bounded. redb's own
//!   blocking lock methods wait in `fcntl(F_OFD_SETLKW)` without a limit, so an open, a read
//!   transaction or a commit behind another process stopped (SIGSTOP, a debugger) or hung in the
//!   middle of a commit waited forever. Here those methods poll the non-blocking variants with a
//!   backoff until a deadline (the instance's `timeout`), then fail with [`LockWaitTimedOut`](crate::error::LockWaitTimedOut),
//!   which [`CacheError::database`] turns into [`CacheError::LockTimeout`].
//! - [`OverlayBackend`]: a copy-on-write view of the file, for checking it without writing to it.
//!   Reads come from the file, writes stay in memory, so redb can run its crash recovery and its
//!   integrity check on the view while the file keeps every byte. While the view is open it holds
//!   redb's "writer byte" shared, so no process can begin a commit (or a repair at open) under it:
//!   the file it reads does not change.
//!
//! **The fault seam.** Built for the crate's own tests (`#[cfg(test)]`), the read-write open
//! wraps [`BoundedFileBackend`] in `faults::FaultBackend` (`store/faults.rs`), which fails
//! `write`/`set_len` and `sync_data` calls on a countdown once a test has armed a fault for the
//! file's path, and otherwise passes every call through. It is no part of the public API and
//! does not exist in other builds; the deterministic fault suite (`store/faults/tests.rs`) is
//! its user.

use std::collections::HashMap;
use std::fs;
use std::ops::Bound;
use std::os::unix::fs::OpenOptionsExt as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{
    BackendError, ConcurrencyMode, Database, DatabaseError, ReadOnlyDatabase, StorageBackend,
    StorageError,
};

use crate::error::{CacheError, LockWaitTimedOut, Result, lock_wait_timed_out};

/// The first pause between two attempts at a lock another process holds; it doubles up to
/// [`LONGEST_PAUSE`]. Short, because the common holder (a commit writing the header) is done in
/// microseconds.
const FIRST_PAUSE: Duration = Duration::from_micros(20);
/// The longest pause between two attempts: the most a wait overshoots the holder's release.
const LONGEST_PAUSE: Duration = Duration::from_millis(2);

/// redb's "writer byte": held exclusively by a write transaction in multi-writer mode (and by an
/// open while it recovers the file), so that one process writes at a time. Documented with the
/// other lock bytes in redb's `docs/design.md` ("Lock bytes": `BASE` = 2^62, the writer byte).
/// [`OverlayBackend`] holds it shared, which no writer can then take.
/// `tests::the_writer_byte_is_the_one_a_write_transaction_holds` checks the value against redb.
const REDB_WRITER_BYTE: u64 = 1 << 62;

/// How a tag's file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read-write, shared with other processes (redb's `MultiWriter`): the cache's handle, and
    /// doctor's repair.
    Shared,
    /// A copy-on-write view ([`OverlayBackend`]): redb may recover and check it, nothing reaches
    /// the file. Other processes' commits wait while it is open.
    CheckWithoutWriting,
}

/// Everything [`open_database`] needs besides the path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HandleSettings {
    pub(crate) access: Access,
    /// The longest the open waits for another process's lock, and then, for the handle's life,
    /// the longest any one wait for a lock lasts.
    pub(crate) timeout: Duration,
    /// redb's page cache, in bytes.
    pub(crate) page_cache_bytes: usize,
}

/// What an open found.
pub(crate) enum Opened {
    Database(Database),
    /// redb reports the file damaged, or panicked opening it: why.
    Corrupt(String),
}

/// Opens the database file of `tag` at `path` as `settings` say: the one place a tag's file is
/// opened. The file must exist (`handle::prepare_tag_files` creates it); an empty one is
/// initialised (in memory only, for [`Access::CheckWithoutWriting`]). Another process holding a
/// lock the open needs for longer than `settings.timeout` is [`CacheError::LockTimeout`]; a file
/// redb reports damaged (or panics on) is [`Opened::Corrupt`]; anything else is an error naming
/// the tag and path.
pub(crate) fn open_database(path: &Path, tag: &str, settings: &HandleSettings) -> Result<Opened> {
    let started = Instant::now();
    let wait = LockWait::for_open(settings.timeout, started);
    let mut builder = Database::builder();
    builder.set_cache_size(settings.page_cache_bytes);
    let attempt = match settings.access {
        Access::Shared => {
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(no_follow())
                .open(path)
                .map_err(|source| CacheError::io("opening database file", path, source))?;
            let backend = BoundedFileBackend::new(file, wait.clone())
                .map_err(|err| CacheError::database(tag, path, err))?;
            // The fault suite's seam: built for the crate's tests, the file backend is wrapped
            // in one that fails writes and syncs when a test has armed a fault for this path.
            #[cfg(test)]
            let backend = super::faults::FaultBackend::for_path(path, backend);
            builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
            catch_unwind(AssertUnwindSafe(|| builder.create_with_backend(backend)))
        }
        Access::CheckWithoutWriting => {
            let backend = OverlayBackend::over(path, &wait).map_err(|err| match err {
                OverlayError::Io(source) => CacheError::io("opening database file", path, source),
                OverlayError::Backend(err) => lock_timeout_or_database(tag, path, started, err),
            })?;
            // The view is this handle's alone: redb need not (and, the overlay taking no locks of
            // its own, cannot) share it with other processes.
            builder.set_concurrency_mode(ConcurrencyMode::ExclusiveWriter);
            catch_unwind(AssertUnwindSafe(|| builder.create_with_backend(backend)))
        }
    };
    // Later waits (read transactions, commits, close) are bounded by `timeout` each.
    wait.open_finished();
    match attempt {
        Ok(Ok(database)) => Ok(Opened::Database(database)),
        Ok(Err(err)) if is_corruption(&err) => Ok(Opened::Corrupt(err.to_string())),
        Ok(Err(err)) => Err(lock_timeout_or_database(tag, path, started, err)),
        Err(_) => Ok(Opened::Corrupt("redb panicked while opening it".to_owned())),
    }
}

/// What [`open_reading`] found.
pub(crate) enum Reading {
    /// A read-only handle beside other processes' writers (redb's `ReadOnlyDatabase` in
    /// `MultiWriter` mode): it takes shared locks only and writes nothing, so opening, reading
    /// and closing it costs the file no `fsync`.
    Handle(ReadOnlyDatabase),
    /// A read-only handle cannot serve this file (empty and to be initialised, waiting for a
    /// recovery, damaged, or anything else redb refuses): open it read-write instead, which
    /// recovers, initialises or reports it.
    NeedsWriting,
}

/// Opens the database file of `tag` at `path` for reading only, as `settings` say (their
/// `access` is not used). A lock another process holds longer than `settings.timeout` is
/// [`CacheError::LockTimeout`]; every other refusal is [`Reading::NeedsWriting`].
pub(crate) fn open_reading(path: &Path, tag: &str, settings: &HandleSettings) -> Result<Reading> {
    let started = Instant::now();
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(no_follow())
        .open(path)
        .map_err(|source| CacheError::io("opening database file", path, source))?;
    let empty = file
        .metadata()
        .map_err(|source| CacheError::io("opening database file", path, source))?
        .len()
        == 0;
    if empty {
        return Ok(Reading::NeedsWriting);
    }
    let wait = LockWait::for_open(settings.timeout, started);
    let backend = BoundedFileBackend::new(file, wait.clone())
        .map_err(|err| CacheError::database(tag, path, err))?;
    let mut builder = Database::builder();
    builder.set_cache_size(settings.page_cache_bytes);
    builder.set_concurrency_mode(ConcurrencyMode::MultiWriter);
    let attempt = catch_unwind(AssertUnwindSafe(|| {
        builder.open_read_only_with_backend(backend)
    }));
    wait.open_finished();
    match attempt {
        Ok(Ok(database)) => Ok(Reading::Handle(database)),
        Ok(Err(err)) => {
            let err = redb::Error::from(err);
            if lock_wait_timed_out(&err).is_some() {
                return Err(lock_timeout_or_database(tag, path, started, err));
            }
            tracing::debug!(tag, path = %path.display(), error = %err, "a read-only open was refused; opening read-write");
            Ok(Reading::NeedsWriting)
        }
        Err(_) => Ok(Reading::NeedsWriting),
    }
}

/// `O_NOFOLLOW`: the database file is opened by path (redb takes a `File`), and a symlink planted
/// at its name after `handle::prepare_tag_files` checked it must fail the open (`ELOOP`), never be
/// followed. The directories above it were opened without following links and checked private.
fn no_follow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// An open's failure: [`CacheError::LockTimeout`] (waited: the whole open) when a lock wait ran
/// out, else [`CacheError::Database`].
fn lock_timeout_or_database(
    tag: &str,
    path: &Path,
    started: Instant,
    err: impl Into<redb::Error>,
) -> CacheError {
    let err = err.into();
    if lock_wait_timed_out(&err).is_some() {
        return CacheError::LockTimeout {
            tag: tag.to_owned(),
            path: path.to_owned(),
            waited: started.elapsed(),
        };
    }
    CacheError::database(tag, path, err)
}

/// Whether redb reports the file damaged (rather than unreadable for another reason).
pub(crate) fn is_corruption(err: &DatabaseError) -> bool {
    match err {
        DatabaseError::RepairAborted | DatabaseError::UpgradeRequired(_) => true,
        DatabaseError::Storage(StorageError::Corrupted(_)) => true,
        // InvalidData: bytes that do not parse; UnexpectedEof: a page pointer past the end of
        // the file. Both are damage, not a failing disk.
        DatabaseError::Storage(StorageError::Io(io)) => matches!(
            io.kind(),
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// How long a handle's lock waits may last: each at most `timeout`, and during the open, all of
/// them together at most `timeout` (the open's deadline).
#[derive(Clone, Debug)]
struct LockWait {
    timeout: Duration,
    /// The open's deadline, until the open has finished.
    open_deadline: Arc<Mutex<Option<Instant>>>,
}

impl LockWait {
    fn for_open(timeout: Duration, started: Instant) -> LockWait {
        LockWait {
            timeout,
            open_deadline: Arc::new(Mutex::new(started.checked_add(timeout))),
        }
    }

    fn open_finished(&self) {
        *lock(&self.open_deadline) = None;
    }

    /// When a wait starting at `now` must give up; `None` for never (a timeout too large for
    /// `Instant`, which is as good as forever).
    fn deadline(&self, now: Instant) -> Option<Instant> {
        let own = now.checked_add(self.timeout);
        match (*lock(&self.open_deadline), own) {
            (Some(open), Some(own)) => Some(open.min(own)),
            (open, own) => open.or(own),
        }
    }

    /// Calls `attempt` (a non-blocking lock attempt: `Ok(true)` taken, `Ok(false)` held
    /// elsewhere) until it succeeds, fails, or the deadline passes. A failed attempt takes
    /// nothing, so neither does a wait that runs out: redb's contract for a failed acquisition.
    fn until_taken(
        &self,
        mut attempt: impl FnMut() -> std::result::Result<bool, BackendError>,
    ) -> std::result::Result<(), BackendError> {
        let started = Instant::now();
        let deadline = self.deadline(started);
        let mut pause = FIRST_PAUSE;
        loop {
            if attempt()? {
                return Ok(());
            }
            let now = Instant::now();
            let left = match deadline {
                Some(deadline) if now >= deadline => {
                    return Err(BackendError::Other(Box::new(LockWaitTimedOut {
                        waited: now - started,
                    })));
                }
                Some(deadline) => deadline - now,
                None => LONGEST_PAUSE,
            };
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(LONGEST_PAUSE);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a single assignment or a map update that cannot be left
    // half done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// redb's `FileBackend` with bounded lock waits: everything is delegated, except that the
/// blocking lock methods poll the non-blocking ones until [`LockWait`]'s deadline.
#[derive(Debug)]
pub(crate) struct BoundedFileBackend {
    file: FileBackend,
    wait: LockWait,
}

impl BoundedFileBackend {
    fn new(file: fs::File, wait: LockWait) -> std::result::Result<Self, DatabaseError> {
        Ok(BoundedFileBackend {
            file: FileBackend::new(file)?,
            wait,
        })
    }
}

impl StorageBackend for BoundedFileBackend {
    fn len(&self) -> std::result::Result<u64, std::io::Error> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::result::Result<(), std::io::Error> {
        self.file.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::result::Result<(), std::io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> std::result::Result<(), std::io::Error> {
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), std::io::Error> {
        self.file.write(offset, data)
    }

    fn close(&self) -> std::result::Result<(), std::io::Error> {
        self.file.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.file.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.wait
            .until_taken(|| self.file.try_lock_range(start, end))
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.wait
            .until_taken(|| self.file.try_lock_shared_range(start, end))
    }

    fn unlock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

/// Why an [`OverlayBackend`] could not be made.
#[derive(Debug)]
enum OverlayError {
    Io(std::io::Error),
    Backend(BackendError),
}

/// The unit the overlay keeps written bytes in.
const CHUNK: u64 = 4096;

/// A copy-on-write view of a database file: reads see the file, except where the view was
/// written; writes and length changes stay in memory. The file is opened read-only, so nothing
/// can reach it. While the view exists it holds redb's writer byte shared (released by `close`,
/// or when the file is dropped), so the file does not change under it.
///
/// It implements no locks for redb: the handle on it must be opened in `ExclusiveWriter` mode,
/// as the only user of the view.
#[derive(Debug)]
pub(crate) struct OverlayBackend {
    /// The file, read-only; it also holds the writer byte.
    file: FileBackend,
    view: Mutex<View>,
}

#[derive(Debug)]
struct View {
    len: u64,
    /// Below this offset, a byte no chunk covers is the file's; at or above it, zero. Starts at
    /// the file's length and only goes down (when the view is shortened). Invariant:
    /// `file_shows_below <= len`, so every chunk's bytes at or above `len` are zero.
    file_shows_below: u64,
    /// Chunks written, by index (offset / [`CHUNK`]), each [`CHUNK`] bytes.
    chunks: HashMap<u64, Box<[u8]>>,
}

impl OverlayBackend {
    /// A view of the file at `path`, once no write transaction holds it (waiting as `wait`
    /// says).
    fn over(path: &Path, wait: &LockWait) -> std::result::Result<Self, OverlayError> {
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(no_follow())
            .open(path)
            .map_err(OverlayError::Io)?;
        let file = FileBackend::new(file)
            .map_err(|err| OverlayError::Io(std::io::Error::other(err.to_string())))?;
        let writer_byte = (
            Bound::Included(REDB_WRITER_BYTE),
            Bound::Included(REDB_WRITER_BYTE),
        );
        wait.until_taken(|| file.try_lock_shared_range(writer_byte.0, writer_byte.1))
            .map_err(OverlayError::Backend)?;
        // Measured under the lock: no commit can change it from here on.
        let len = file.len().map_err(OverlayError::Io)?;
        Ok(OverlayBackend {
            file,
            view: Mutex::new(View {
                len,
                file_shows_below: len,
                chunks: HashMap::new(),
            }),
        })
    }

    fn view(&self) -> MutexGuard<'_, View> {
        // Chunk updates copy bytes in place; a panic mid-copy would leave bytes of a write redb
        // never saw completed, which it does not rely on.
        lock(&self.view)
    }

    /// Bytes `[offset, offset + out.len())` of the file as the view shows it, into `out`; the
    /// range lies within one chunk.
    fn read_unwritten(
        &self,
        view: &View,
        offset: u64,
        out: &mut [u8],
    ) -> std::result::Result<(), std::io::Error> {
        let from_file = view
            .file_shows_below
            .saturating_sub(offset)
            .min(out.len() as u64) as usize;
        let (shown, zeros) = out.split_at_mut(from_file);
        if !shown.is_empty() {
            self.file.read(offset, shown)?;
        }
        zeros.fill(0);
        Ok(())
    }
}

fn out_of_range(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what.to_owned())
}

/// The chunks `[offset, offset + len)` spans: (chunk index, offset within it, bytes in it).
fn chunk_spans(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
    let end = offset + len as u64;
    let mut at = offset;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let index = at / CHUNK;
        let within = (at % CHUNK) as usize;
        let count = ((CHUNK - at % CHUNK).min(end - at)) as usize;
        at += count as u64;
        Some((index, within, count))
    })
}

impl StorageBackend for OverlayBackend {
    fn len(&self) -> std::result::Result<u64, std::io::Error> {
        Ok(self.view().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::result::Result<(), std::io::Error> {
        let view = self.view();
        if offset
            .checked_add(out.len() as u64)
            .is_none_or(|end| end > view.len)
        {
            return Err(out_of_range("read past the end of the database view"));
        }
        let mut done = 0;
        for (index, within, count) in chunk_spans(offset, out.len()) {
            let target = out
                .get_mut(done..done + count)
                .ok_or_else(|| out_of_range("chunk outside the read"))?;
            match view.chunks.get(&index) {
                Some(chunk) => target.copy_from_slice(
                    chunk
                        .get(within..within + count)
                        .ok_or_else(|| out_of_range("read outside a chunk"))?,
                ),
                None => self.read_unwritten(&view, index * CHUNK + within as u64, target)?,
            }
            done += count;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> std::result::Result<(), std::io::Error> {
        let mut view = self.view();
        if len < view.len {
            view.file_shows_below = view.file_shows_below.min(len);
            view.chunks.retain(|index, _| index * CHUNK < len);
            let cut = (len % CHUNK) as usize;
            if let Some(chunk) = view.chunks.get_mut(&(len / CHUNK))
                && let Some(tail) = chunk.get_mut(cut..)
            {
                tail.fill(0);
            }
        }
        view.len = len;
        Ok(())
    }

    fn sync_data(&self) -> std::result::Result<(), std::io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), std::io::Error> {
        let mut view = self.view();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(|| out_of_range("write past the largest offset"))?;
        let mut done = 0;
        for (index, within, count) in chunk_spans(offset, data.len()) {
            if !view.chunks.contains_key(&index) {
                let mut chunk = vec![0u8; CHUNK as usize].into_boxed_slice();
                // Bytes at or past the view's length read as zero; the rest as the view shows.
                let shown = view.len.saturating_sub(index * CHUNK).min(CHUNK) as usize;
                if let Some(shown) = chunk.get_mut(..shown) {
                    self.read_unwritten(&view, index * CHUNK, shown)?;
                }
                view.chunks.insert(index, chunk);
            }
            let source = data
                .get(done..done + count)
                .ok_or_else(|| out_of_range("chunk outside the write"))?;
            view.chunks
                .get_mut(&index)
                .and_then(|chunk| chunk.get_mut(within..within + count))
                .ok_or_else(|| out_of_range("write outside a chunk"))?
                .copy_from_slice(source);
            done += count;
        }
        view.len = view.len.max(end);
        Ok(())
    }

    fn close(&self) -> std::result::Result<(), std::io::Error> {
        self.view().chunks.clear();
        // Releases the writer byte.
        self.file.close()
    }
}

#[cfg(test)]
mod tests;
