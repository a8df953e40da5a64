//! Staging a blob: [`BlobFiles::stage`] copies a value into a temp file under `blobs/tmp/`,
//! hashing each piece as it writes it (one pass, while the piece is in the CPU's cache), and
//! fsyncs it; `publish` (in `blobs.rs`) moves it into place. The call that staged a blob may
//! then serve it from the file it wrote ([`BlobFiles::copy_written_to`]).
//!
//! **Syncing ahead.** A large value's data is synced while it is written: past every
//! [`SYNC_AHEAD_BYTES`] written, a helper thread (started on the first such request, one per
//! staged blob) is asked to `fdatasync` what has been written so far, so that the disk writes
//! the start of the value while the rest is read, hashed and written, and the final `fsync`
//! has only the tail left. Durability is unchanged: the final `fsync` still covers the whole
//! file before the blob is published, and an error from a helper's sync fails the staging
//! (an error a sync reports is not reported again to the next). Measured (`docs/remote.md`,
//! "Figures"): a 64 MiB remote hit, whose chunks arrive while the earlier ones are synced, and
//! a 64 MiB local set.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use super::{BLOBS, BlobFiles, CHUNK_BYTES, Identity, TEMP, TEMP_COUNTER, copy_in_pieces};
use crate::codec::BlobRef;
use crate::error::{CacheError, Result};
use crate::fsys::{self, Dir};

/// Past this many bytes written since the last request, a sync of the data written so far is
/// asked for.
pub(crate) const SYNC_AHEAD_BYTES: u64 = 8 << 20;

/// A blob written to a temp file and fsynced, not yet in place. Dropped unpublished, the temp
/// file is removed.
#[derive(Debug)]
pub(crate) struct StagedBlob {
    /// `blobs/tmp`, as it was opened when the blob was staged.
    pub(super) temp_dir: Dir,
    pub(super) temp_name: String,
    pub(crate) blob: BlobRef,
    pub(super) published: bool,
    /// The file as written, until taken (`take_written`).
    written: Option<(File, Identity)>,
}

impl StagedBlob {
    pub(super) fn temp_path(&self) -> PathBuf {
        self.temp_dir.join(&self.temp_name)
    }

    /// The file this blob was written through, hashed on the way, for `copy_written_to` once
    /// the blob is in place (the open file follows the rename).
    pub(crate) fn take_written(&mut self) -> Option<WrittenBlob> {
        self.written.take().map(|(file, identity)| WrittenBlob {
            file,
            identity,
            blob: self.blob,
        })
    }
}

/// A blob's file as the call that wrote it left it: open, its hash computed from the bytes
/// written, its identity after the fsync.
#[derive(Debug)]
pub(crate) struct WrittenBlob {
    file: File,
    identity: Identity,
    blob: BlobRef,
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if !self.published {
            let _ = self.temp_dir.remove_file(&self.temp_name);
        }
    }
}

/// Why `stage` failed: the source's own error, or ours.
#[derive(Debug)]
pub(crate) enum StageError {
    /// The value passed the size limit; nothing was kept.
    TooLarge,
    /// Reading the caller's source failed.
    Source(io::Error),
    /// Writing the temp file failed.
    Cache(CacheError),
}

impl BlobFiles {
    /// Copies `source` into a new temp file, hashing it on the way, and fsyncs it (syncing
    /// ahead on a thread of its own while a large one is written: [`SyncAhead`]). Past `limit`
    /// bytes it stops and keeps nothing.
    pub(crate) fn stage(
        &self,
        source: &mut dyn Read,
        limit: u64,
    ) -> std::result::Result<StagedBlob, StageError> {
        let temp_dir = self
            .tag
            .dir_or_create(BLOBS)
            .and_then(|blobs| blobs.dir_or_create(TEMP))
            .map_err(StageError::Cache)?;
        let temp_name = fsys::temp_name(TEMP_COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut file = temp_dir
            .create_new_file(&temp_name)
            .map_err(StageError::Cache)?;
        // From here on the guard removes the temp file on every early return.
        let mut staged = StagedBlob {
            temp_dir,
            temp_name,
            blob: BlobRef {
                hash: [0; 32],
                len: 0,
            },
            published: false,
            written: None,
        };
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0u8; CHUNK_BYTES];
        let mut len: u64 = 0;
        let mut sync_ahead = SyncAhead::default();
        let mut unsynced: u64 = 0;
        loop {
            let read = match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(StageError::Source(err)),
            };
            len += read as u64;
            if len > limit {
                return Err(StageError::TooLarge);
            }
            hasher.update(&buffer[..read]);
            file.write_all(&buffer[..read]).map_err(|source| {
                StageError::Cache(CacheError::io("writing blob", staged.temp_path(), source))
            })?;
            unsynced += read as u64;
            if unsynced >= SYNC_AHEAD_BYTES {
                sync_ahead.request(&file);
                unsynced = 0;
            }
        }
        sync_ahead.finish().map_err(|source| {
            StageError::Cache(CacheError::io("syncing blob", staged.temp_path(), source))
        })?;
        file.sync_all().map_err(|source| {
            StageError::Cache(CacheError::io("syncing blob", staged.temp_path(), source))
        })?;
        staged.blob = BlobRef {
            hash: *hasher.finalize().as_bytes(),
            len,
        };
        let identity = file
            .metadata()
            .map(|meta| Identity::of(&meta))
            .map_err(|source| {
                StageError::Cache(CacheError::io("writing blob", staged.temp_path(), source))
            })?;
        staged.written = Some((file, identity));
        Ok(staged)
    }

    /// The content of a staged blob (a small one: read whole).
    pub(crate) fn read_staged(&self, staged: &StagedBlob) -> Result<Vec<u8>> {
        let mut file = staged
            .temp_dir
            .open_file(&staged.temp_name)?
            .ok_or_else(|| {
                CacheError::io(
                    "reading back",
                    staged.temp_path(),
                    io::Error::new(io::ErrorKind::NotFound, "the staged blob is gone"),
                )
            })?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|source| CacheError::io("reading back", staged.temp_path(), source))?;
        Ok(bytes)
    }

    /// Writes a blob this instance has just written (and hashed on the way: `stage`) to `sink`
    /// from the file it wrote, without hashing it again. `None` when the file is no longer as
    /// it was written (another inode, size or modification time): nothing was written to
    /// `sink`; read the blob the usual way.
    pub(crate) fn copy_written_to(
        &self,
        written: WrittenBlob,
        sink: &mut dyn Write,
    ) -> Result<Option<u64>> {
        let WrittenBlob {
            mut file,
            identity,
            blob,
        } = written;
        let path = self.path(&blob);
        let now = self.identity_of(&file, &blob)?;
        // The change time is left out: the rename into place changes it.
        if now.0[..5] != identity.0[..5] || blob.len != now.0[2] as u64 {
            return Ok(None);
        }
        io::Seek::seek(&mut file, io::SeekFrom::Start(0))
            .map_err(|source| CacheError::io("reading blob", &path, source))?;
        let copied =
            copy_in_pieces(&mut file, sink, blob.len).map_err(|source| CacheError::Io {
                operation: "writing blob to the caller's writer from",
                path: path.clone(),
                source,
            })?;
        if copied != blob.len {
            return Err(CacheError::io(
                "reading blob",
                &path,
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the blob shrank while it was read",
                ),
            ));
        }
        Ok(Some(copied))
    }
}

/// The helper thread that syncs a file's data while it is being written; none until the first
/// request.
#[derive(Default)]
struct SyncAhead {
    requests: Option<SyncSender<()>>,
    helper: Option<JoinHandle<io::Result<()>>>,
    /// Set when the helper could not be started: the final sync does it all.
    unavailable: bool,
}

impl SyncAhead {
    /// Asks for the data written to `file` so far to be synced, unless a request is pending
    /// already (the sync it starts will cover this data too).
    fn request(&mut self, file: &File) {
        if self.requests.is_none() && !self.unavailable {
            self.start(file);
        }
        if let Some(requests) = &self.requests {
            let _ = requests.try_send(());
        }
    }

    fn start(&mut self, file: &File) {
        let syncing = match file.try_clone() {
            Ok(syncing) => syncing,
            Err(err) => {
                tracing::debug!(error = %err, "could not duplicate a blob's descriptor to sync it ahead");
                self.unavailable = true;
                return;
            }
        };
        let (requests, incoming) = sync_channel::<()>(1);
        let spawned = std::thread::Builder::new()
            .name("cache-blob-sync".to_owned())
            .spawn(move || {
                // Ends when the stager finishes (or gives up: its sender drops).
                while incoming.recv().is_ok() {
                    syncing.sync_data()?;
                }
                Ok(())
            });
        match spawned {
            Ok(helper) => {
                self.requests = Some(requests);
                self.helper = Some(helper);
            }
            Err(err) => {
                tracing::debug!(error = %err, "could not start a thread to sync a blob ahead");
                self.unavailable = true;
            }
        }
    }

    /// Waits for the helper to finish its last sync: its error, if any.
    fn finish(self) -> io::Result<()> {
        drop(self.requests);
        match self.helper.map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(synced)) => synced,
            Some(Err(_)) => Err(io::Error::other("the thread syncing the blob panicked")),
        }
    }
}
