//! Progress of the long operations (copying a workspace into or out of the cache, exporting and
//! importing archives), reported through a caller's callback.

/// What a long operation is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressStage {
    /// Copying files from a directory (into the cache, or out of it).
    Copying,
    /// Writing an archive.
    Exporting,
    /// Unpacking an archive into the cache.
    Extracting,
}

/// How far a long operation has got. Totals are known before the first file is handled (the
/// source is listed first), so `files_done / files_total` is a real fraction.
///
/// The callback is called once before the first file (with zero done), after every file or
/// symlink, and while a large file is copied, written or read, every
/// [`PROGRESS_CHUNK_BYTES`] of it (so a bar keeps moving through a multi-gigabyte pack file).
/// Callers that do not want progress pass `&mut |_| {}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What the operation is doing.
    pub stage: ProgressStage,
    /// Files and symlinks handled so far.
    pub files_done: u64,
    /// Files and symlinks to handle in all.
    pub files_total: u64,
    /// Bytes of file content handled so far.
    pub bytes_done: u64,
    /// Bytes of file content to handle in all.
    pub bytes_total: u64,
}

impl Progress {
    /// Whether everything has been handled.
    pub fn is_complete(&self) -> bool {
        self.files_done >= self.files_total && self.bytes_done >= self.bytes_total
    }
}

/// How often progress is reported within one large file, in bytes (16 MiB).
pub const PROGRESS_CHUNK_BYTES: u64 = 16 * 1024 * 1024;

/// Counts done work and reports it.
pub(crate) struct Tracker<'a> {
    progress: Progress,
    /// Bytes of the file in progress already reported by [`Tracker::partial`].
    in_file: u64,
    callback: &'a mut dyn FnMut(Progress),
}

impl<'a> Tracker<'a> {
    /// Starts an operation with known totals and reports it once with nothing done.
    pub(crate) fn start(
        stage: ProgressStage,
        files_total: u64,
        bytes_total: u64,
        callback: &'a mut dyn FnMut(Progress),
    ) -> Self {
        let progress = Progress {
            stage,
            files_done: 0,
            files_total,
            bytes_done: 0,
            bytes_total,
        };
        callback(progress);
        Tracker {
            progress,
            in_file: 0,
            callback,
        }
    }

    /// One more file (or symlink) of `bytes` bytes is done (including what [`Tracker::partial`]
    /// already reported of it).
    pub(crate) fn file_done(&mut self, bytes: u64) {
        self.progress.files_done = self.progress.files_done.saturating_add(1);
        let rest = bytes.saturating_sub(self.in_file);
        self.progress.bytes_done = self.progress.bytes_done.saturating_add(rest);
        self.in_file = 0;
        (self.callback)(self.progress);
    }

    /// `bytes` more of the file in progress are done (reported as they come, for large files).
    pub(crate) fn partial(&mut self, bytes: u64) {
        self.in_file = self.in_file.saturating_add(bytes);
        self.progress.bytes_done = self.progress.bytes_done.saturating_add(bytes);
        (self.callback)(self.progress);
    }

    /// A reader over `inner` that reports to this tracker every [`PROGRESS_CHUNK_BYTES`] read.
    pub(crate) fn reading<'t, R: std::io::Read>(&'t mut self, inner: R) -> Reporting<'t, 'a, R> {
        Reporting {
            inner,
            tracker: self,
            unreported: 0,
        }
    }

    /// The last progress reported.
    pub(crate) fn current(&self) -> Progress {
        self.progress
    }
}

/// A reader or writer that reports its bytes to a [`Tracker`] every [`PROGRESS_CHUNK_BYTES`].
pub(crate) struct Reporting<'t, 'a, T> {
    inner: T,
    tracker: &'t mut Tracker<'a>,
    unreported: u64,
}

impl<T> Reporting<'_, '_, T> {
    fn count(&mut self, bytes: usize) {
        self.unreported = self.unreported.saturating_add(bytes as u64);
        if self.unreported >= PROGRESS_CHUNK_BYTES {
            self.tracker.partial(self.unreported);
            self.unreported = 0;
        }
    }
}

impl<R: std::io::Read> std::io::Read for Reporting<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.count(read);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn a_large_file_reports_as_it_goes_and_counts_once() {
        let mut seen = Vec::new();
        let mut callback = |progress: Progress| seen.push(progress.bytes_done);
        let mut tracker = Tracker::start(ProgressStage::Copying, 1, 40 << 20, &mut callback);
        let mut sink = Vec::new();
        tracker
            .reading(std::io::repeat(1).take(40 << 20))
            .read_to_end(&mut sink)
            .unwrap();
        tracker.file_done(40 << 20);
        assert_eq!(seen, vec![0, 16 << 20, 32 << 20, 40 << 20]);
    }
}
