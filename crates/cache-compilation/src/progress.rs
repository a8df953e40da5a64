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
/// The callback is called once before the first file (with zero done) and after every file or
/// symlink. Callers that do not want progress pass `&mut |_| {}`.
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

/// Counts done work and reports it.
pub(crate) struct Tracker<'a> {
    progress: Progress,
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
        Tracker { progress, callback }
    }

    /// One more file (or symlink) of `bytes` bytes is done.
    pub(crate) fn file_done(&mut self, bytes: u64) {
        self.progress.files_done = self.progress.files_done.saturating_add(1);
        self.progress.bytes_done = self.progress.bytes_done.saturating_add(bytes);
        (self.callback)(self.progress);
    }

    /// The last progress reported.
    pub(crate) fn current(&self) -> Progress {
        self.progress
    }
}
