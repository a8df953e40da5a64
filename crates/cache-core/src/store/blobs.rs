//! Blob files: large values stored beside a tag's database as content-addressed files under
//! `<root>/<tag>/blobs/<first two hex digits>/<blake3 hex>`.
//!
//! A blob is written to `blobs/tmp/` while its hash is computed, fsynced, and only then renamed
//! into place, inside the write transaction that records its entry (`store_blob`), so that no
//! entry ever commits before its blob is durable. Reads verify the content against the name: a
//! blob that does not match is never returned. Which entries use a blob is counted in the
//! database (`blobs` table), not here: this module only moves bytes.
//!
//! A blob verified once is not hashed again while its file is unchanged: the instance remembers
//! (in memory, at most [`MAX_KNOWN`] blobs) the identity of each file it verified (device,
//! inode, size, modification and change times, from `fstat` of the open file before it was
//! read). A later read whose open file has the same identity is served without hashing; any
//! other is verified again. Writing a file in place changes its change time (`ctime`), which no
//! one can set back; only a file whose times are older than [`SETTLE`] when it is verified is
//! remembered, so that a write in the same tick of the file system's clock as the verification
//! (which would leave the times equal) cannot go unseen. A first read in an instance (of a blob
//! another process wrote, or this one) is always verified.
//!
//! One exception: the call that writes a blob may write it on to a caller's sink from the file
//! it wrote and hashed (`copy_written_to`: a value backfilled from the remote tier and returned
//! at once), if the file is still the one it wrote (same device, inode, size and modification
//! time): what it hashed on the way in is what it serves. That is the trust a first read
//! places in a file it hashes in one pass and copies in a second.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::codec::{BlobRef, hex};
use crate::error::{CacheError, Result};
use crate::fsys::{self, Dir, Kind};

/// Read and write in pieces of this size: big enough for blake3's SIMD and for few syscalls,
/// small enough that a 1 GiB blob never sits in memory whole.
const CHUNK_BYTES: usize = 1 << 20;

/// The directory of blob files, in the tag directory.
const BLOBS: &str = "blobs";
/// Blobs being written, in `blobs/`.
const TEMP: &str = "tmp";

/// Distinguishes temp files of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Blob files remembered as verified, per instance; past this many one is forgotten for each
/// new one.
pub(crate) const MAX_KNOWN: usize = 4096;

/// Only a file whose modification and change times are at least this old when it is verified is
/// remembered as verified.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);

/// A file as `fstat` of the open file saw it: device, inode, size, modification time and change
/// time (seconds, nanoseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity([i64; 7]);

impl Identity {
    fn of(meta: &std::fs::Metadata) -> Identity {
        Identity([
            meta.dev() as i64,
            meta.ino() as i64,
            meta.size() as i64,
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
        ])
    }

    /// Whether both times are older than [`SETTLE`] at `now`.
    fn is_settled(&self, now: SystemTime) -> bool {
        let time = |seconds: i64, nanos: i64| {
            UNIX_EPOCH
                + Duration::new(
                    u64::try_from(seconds).unwrap_or(0),
                    u32::try_from(nanos).unwrap_or(0).min(999_999_999),
                )
        };
        let newest = time(self.0[3], self.0[4]).max(time(self.0[5], self.0[6]));
        now.duration_since(newest).is_ok_and(|age| age >= SETTLE)
    }
}

/// The blob directory of one tag. Every path below it is reached through the open tag
/// directory, never following a symlink (`fsys`).
#[derive(Debug)]
pub(crate) struct BlobFiles {
    tag: Arc<Dir>,
    /// Blob files this instance verified, by hash: their identity then.
    known: Mutex<HashMap<[u8; 32], Identity>>,
    /// Blob contents hashed to verify them (for tests of what is skipped).
    verifications: AtomicU64,
}

/// Whether a read may skip verifying a blob this instance verified before, its file unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trust {
    /// Yes: reads.
    Known,
    /// No: a commit judging damage a read reported hashes the file whatever it remembers.
    Nothing,
}

/// What reading a blob found.
#[derive(Debug)]
pub(crate) enum BlobRead<T> {
    /// The blob, verified against its hash.
    Verified(T),
    /// No file.
    Missing,
    /// A file whose content does not match its hash (or length).
    Corrupt,
}

/// The fan-out directory and file name of a blob: `<first two hex digits>`, `<blake3 hex>`.
fn blob_names(blob: &BlobRef) -> (String, String) {
    let name = blob.file_name();
    (name[..2].to_owned(), name)
}

impl BlobFiles {
    pub(crate) fn new(tag: Arc<Dir>) -> Self {
        BlobFiles {
            tag,
            known: Mutex::new(HashMap::new()),
            verifications: AtomicU64::new(0),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Identity>> {
        // Inserts and removes only: nothing is left half-done by a panic.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `blob`'s open file, of `identity`, is one this instance verified.
    fn is_known(&self, blob: &BlobRef, identity: Identity, trust: Trust) -> bool {
        trust == Trust::Known && self.known().get(&blob.hash) == Some(&identity)
    }

    /// Notes how verifying `blob`'s file, of `identity` before it was read, came out.
    fn verified(&self, blob: &BlobRef, identity: Identity, intact: bool) {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let mut known = self.known();
        if !intact || !identity.is_settled(SystemTime::now()) {
            known.remove(&blob.hash);
            return;
        }
        if known.len() >= MAX_KNOWN
            && !known.contains_key(&blob.hash)
            && let Some(evicted) = known.keys().next().copied()
        {
            known.remove(&evicted);
        }
        known.insert(blob.hash, identity);
    }

    /// How many blob contents this instance hashed to verify them.
    #[cfg(test)]
    pub(crate) fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The identity of `blob`'s open file.
    fn identity_of(&self, file: &File, blob: &BlobRef) -> Result<Identity> {
        file.metadata()
            .map(|meta| Identity::of(&meta))
            .map_err(|source| CacheError::io("reading blob", self.path(blob), source))
    }

    /// Where the blob lives.
    pub(crate) fn path(&self, blob: &BlobRef) -> PathBuf {
        let (fanout, name) = blob_names(blob);
        self.tag.join(BLOBS).join(fanout).join(name)
    }

    /// `blobs/` if it exists (a symlink there is an error).
    fn blobs_dir(&self) -> Result<Option<Dir>> {
        self.tag.dir(BLOBS)
    }

    /// The fan-out directory of `blob`, if it exists.
    fn fanout_dir(&self, blob: &BlobRef) -> Result<Option<Dir>> {
        let Some(blobs) = self.blobs_dir()? else {
            return Ok(None);
        };
        blobs.dir(blob_names(blob).0)
    }

    /// Moves a staged blob into place (replacing a damaged copy, if any) and makes the rename
    /// durable. Called inside the write transaction that records the blob.
    pub(crate) fn publish(&self, mut staged: StagedBlob) -> Result<()> {
        let (fanout, name) = blob_names(&staged.blob);
        let fanout = self.tag.dir_or_create(BLOBS)?.dir_or_create(fanout)?;
        staged.temp_dir.rename(&staged.temp_name, &fanout, &name)?;
        staged.published = true;
        fanout.sync()
    }

    /// Whether the blob's file exists with the right length (content is verified on read).
    pub(crate) fn is_present(&self, blob: &BlobRef) -> bool {
        let Ok(Some(fanout)) = self.fanout_dir(blob) else {
            return false;
        };
        fanout.stat(blob_names(blob).1).is_ok_and(|meta| {
            meta.is_some_and(|meta| meta.kind == Kind::File && meta.len == blob.len)
        })
    }

    /// Whether a blob file (of any length) exists under this hash.
    pub(crate) fn exists(&self, hash: &[u8; 32]) -> Result<bool> {
        let blob = BlobRef {
            hash: *hash,
            len: 0,
        };
        let Some(fanout) = self.fanout_dir(&blob)? else {
            return Ok(false);
        };
        Ok(fanout.stat(blob_names(&blob).1)?.is_some())
    }

    /// Removes the blob's file; a missing one is fine.
    pub(crate) fn remove(&self, blob: &BlobRef) -> Result<()> {
        let Some(fanout) = self.fanout_dir(blob)? else {
            return Ok(());
        };
        fanout.remove_file(blob_names(blob).1).map(drop)
    }

    /// The blob's file, opened for reading without following a symlink; `None` if there is no
    /// regular file.
    pub(crate) fn open(&self, blob: &BlobRef) -> Result<Option<File>> {
        let Some(fanout) = self.fanout_dir(blob)? else {
            return Ok(None);
        };
        fanout.open_file(blob_names(blob).1)
    }

    /// The blob's content, verified (or known verified, its file unchanged).
    pub(crate) fn read(&self, blob: &BlobRef) -> Result<BlobRead<Vec<u8>>> {
        let Some(mut file) = self.open(blob)? else {
            return Ok(BlobRead::Missing);
        };
        let identity = self.identity_of(&file, blob)?;
        let known = self.is_known(blob, identity, Trust::Known);
        let mut bytes = Vec::with_capacity(usize::try_from(blob.len).unwrap_or(0));
        // Hashed a piece at a time as it is read, while the piece is in the CPU's cache: one
        // pass over the bytes in memory, not a read and then a hash of the whole.
        let mut hasher = (!known).then(blake3::Hasher::new);
        loop {
            let start = bytes.len();
            let read = (&mut file)
                .take(CHUNK_BYTES as u64)
                .read_to_end(&mut bytes)
                .map_err(|source| CacheError::io("reading blob", self.path(blob), source))?;
            if read == 0 {
                break;
            }
            if let Some(hasher) = &mut hasher {
                hasher.update(&bytes[start..]);
            }
        }
        if bytes.len() as u64 != blob.len {
            self.verified(blob, identity, false);
            return Ok(BlobRead::Corrupt);
        }
        let Some(hasher) = hasher else {
            return Ok(BlobRead::Verified(bytes));
        };
        let intact = hasher.finalize().as_bytes() == &blob.hash;
        self.verified(blob, identity, intact);
        Ok(if intact {
            BlobRead::Verified(bytes)
        } else {
            BlobRead::Corrupt
        })
    }

    /// Whether the blob's file holds `blob`: its length, and (when `verify`) its hash. What
    /// `doctor` checks; reads only.
    pub(crate) fn check(&self, blob: &BlobRef, verify: bool) -> Result<BlobRead<()>> {
        let Some(mut file) = self.open(blob)? else {
            return Ok(BlobRead::Missing);
        };
        let path = self.path(blob);
        let len = file
            .metadata()
            .map_err(|source| CacheError::io("reading blob", &path, source))?
            .len();
        if len != blob.len {
            return Ok(BlobRead::Corrupt);
        }
        if !verify {
            return Ok(BlobRead::Verified(()));
        }
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0u8; CHUNK_BYTES];
        loop {
            let read = read_some(&mut file, &mut buffer)
                .map_err(|source| CacheError::io("reading blob", &path, source))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
        }
        Ok(if hasher.finalize().as_bytes() == &blob.hash {
            BlobRead::Verified(())
        } else {
            BlobRead::Corrupt
        })
    }

    /// Writes the blob's content to `sink`, in pieces. The content is verified first, in a
    /// reading pass of its own, so that `sink` never receives bytes that turn out to be wrong;
    /// with `Trust::Known`, a file this instance verified before and unchanged since is not
    /// read twice.
    pub(crate) fn copy_to(
        &self,
        blob: &BlobRef,
        sink: &mut dyn Write,
        trust: Trust,
    ) -> Result<BlobRead<u64>> {
        let Some(mut file) = self.open(blob)? else {
            return Ok(BlobRead::Missing);
        };
        let path = self.path(blob);
        let identity = self.identity_of(&file, blob)?;
        let read_error = |source| CacheError::io("reading blob", &path, source);
        if !self.is_known(blob, identity, trust) {
            let mut hasher = blake3::Hasher::new();
            let mut buffer = vec![0u8; CHUNK_BYTES];
            let mut len = 0u64;
            loop {
                let read = read_some(&mut file, &mut buffer).map_err(read_error)?;
                if read == 0 {
                    break;
                }
                len += read as u64;
                hasher.update(&buffer[..read]);
            }
            let intact = len == blob.len && hasher.finalize().as_bytes() == &blob.hash;
            self.verified(blob, identity, intact);
            if !intact {
                return Ok(BlobRead::Corrupt);
            }
            // The file cannot change under us in a way that matters: blobs are never rewritten
            // in place, only renamed over (a new inode) or removed (the open handle still reads).
            io::Seek::seek(&mut file, io::SeekFrom::Start(0)).map_err(read_error)?;
        }
        let copied =
            copy_in_pieces(&mut file, sink, u64::MAX).map_err(|source| CacheError::Io {
                operation: "writing blob to the caller's writer from",
                path: path.clone(),
                source,
            })?;
        if copied != blob.len {
            // Known, but shorter or longer now: changed since, whatever its identity says.
            self.verified(blob, identity, false);
            return Ok(BlobRead::Corrupt);
        }
        Ok(BlobRead::Verified(copied))
    }

    /// Every blob file present: its hash (from its name) and its size. Anything else (a stray
    /// file such as a `README`, a symlink, a name that is not a blob's) is reported once and
    /// skipped, never touched: it must not stop maintenance.
    pub(crate) fn list(&self) -> Result<Vec<([u8; 32], u64)>> {
        let Some(blobs) = self.blobs_dir()? else {
            return Ok(Vec::new());
        };
        let mut found = Vec::new();
        for fanout in blobs.entries()? {
            if fanout.name == TEMP {
                continue;
            }
            let path = blobs.join(&fanout.name);
            if fanout.meta.kind != Kind::Dir || !is_fanout_name(&fanout.name) {
                fsys::warn_once(&path, "not a blob directory the cache writes; skipped");
                continue;
            }
            let Some(dir) = blobs.dir(&fanout.name)? else {
                continue;
            };
            for file in dir.entries()? {
                let hash = file.name.to_str().and_then(parse_hash).filter(|_| {
                    file.name
                        .as_encoded_bytes()
                        .starts_with(fanout.name.as_encoded_bytes())
                });
                match hash {
                    Some(hash) if file.meta.kind == Kind::File => found.push((hash, file.meta.len)),
                    _ => fsys::warn_once(
                        &dir.join(&file.name),
                        "not a blob file the cache writes; skipped",
                    ),
                }
            }
        }
        Ok(found)
    }

    /// The temp files cleanup would remove (see `fsys::Dir::stale_temps`), as paths.
    pub(crate) fn stale_temps(&self) -> Result<Vec<PathBuf>> {
        self.temp_dir()?
            .map_or(Ok(Vec::new()), |temp_dir| temp_dir.stale_temp_paths())
    }

    /// Removes temp files left by processes that died while writing a blob; how many.
    pub(crate) fn remove_stale_temps(&self) -> Result<u64> {
        self.temp_dir()?
            .map_or(Ok(0), |temp_dir| temp_dir.remove_stale_temps())
    }

    /// `blobs/tmp` if it exists.
    fn temp_dir(&self) -> Result<Option<Dir>> {
        match self.blobs_dir()? {
            Some(blobs) => blobs.dir(TEMP),
            None => Ok(None),
        }
    }
}

/// Whether `name` is a fan-out directory's: two lower-case hex digits.
fn is_fanout_name(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.len() == 2
        && bytes
            .iter()
            .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
}

/// Copies at most `limit` bytes of `file` (from where it is) to `sink` in pieces of up to
/// [`CHUNK_BYTES`] (`io::copy` would use 8 KiB: 8 192 reads for a 64 MiB blob); how many.
fn copy_in_pieces(file: &mut File, sink: &mut dyn Write, limit: u64) -> io::Result<u64> {
    let size = file
        .metadata()
        .map_or(CHUNK_BYTES as u64, |meta| meta.len().min(limit))
        .clamp(1, CHUNK_BYTES as u64);
    let mut buffer = vec![0u8; usize::try_from(size).unwrap_or(CHUNK_BYTES)];
    let mut copied = 0u64;
    while copied < limit {
        let want =
            usize::try_from(limit - copied).map_or(buffer.len(), |left| left.min(buffer.len()));
        let read = read_some(file, &mut buffer[..want])?;
        if read == 0 {
            break;
        }
        sink.write_all(&buffer[..read])?;
        copied += read as u64;
    }
    Ok(copied)
}

fn read_some(file: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buffer) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Parses a 64-digit lower-case hex name.
fn parse_hash(name: &str) -> Option<[u8; 32]> {
    if name.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (index, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(name.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    (hex(&hash) == name).then_some(hash)
}

mod staging;
pub(crate) use staging::{StageError, StagedBlob, WrittenBlob};

#[cfg(test)]
mod tests;
