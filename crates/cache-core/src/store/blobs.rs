//! Blob files: large values stored beside a tag's database as content-addressed files under
//! `<root>/<tag>/blobs/<first two hex digits>/<blake3 hex>`.
//!
//! A blob is written to `blobs/tmp/` while its hash is computed, fsynced, and only then renamed
//! into place, inside the write transaction that records its entry (`store_blob`), so that no
//! entry ever commits before its blob is durable. Reads verify the content against the name: a
//! blob that does not match is never returned. Which entries use a blob is counted in the
//! database (`blobs` table), not here: this module only moves bytes.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// The blob directory of one tag. Every path below it is reached through the open tag
/// directory, never following a symlink (`fsys`).
#[derive(Debug)]
pub(crate) struct BlobFiles {
    tag: Arc<Dir>,
}

/// A blob written to a temp file and fsynced, not yet in place. Dropped unpublished, the temp
/// file is removed.
#[derive(Debug)]
pub(crate) struct StagedBlob {
    /// `blobs/tmp`, as it was opened when the blob was staged.
    temp_dir: Dir,
    temp_name: String,
    pub(crate) blob: BlobRef,
    published: bool,
}

impl StagedBlob {
    fn temp_path(&self) -> PathBuf {
        self.temp_dir.join(&self.temp_name)
    }
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if !self.published {
            let _ = self.temp_dir.remove_file(&self.temp_name);
        }
    }
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

/// The fan-out directory and file name of a blob: `<first two hex digits>`, `<blake3 hex>`.
fn blob_names(blob: &BlobRef) -> (String, String) {
    let name = blob.file_name();
    (name[..2].to_owned(), name)
}

impl BlobFiles {
    pub(crate) fn new(tag: Arc<Dir>) -> Self {
        BlobFiles { tag }
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

    /// Copies `source` into a new temp file, hashing it on the way, and fsyncs it. Past `limit`
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
        };
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0u8; CHUNK_BYTES];
        let mut len: u64 = 0;
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
        }
        file.sync_all().map_err(|source| {
            StageError::Cache(CacheError::io("syncing blob", staged.temp_path(), source))
        })?;
        staged.blob = BlobRef {
            hash: *hasher.finalize().as_bytes(),
            len,
        };
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

    /// The blob's content, verified.
    pub(crate) fn read(&self, blob: &BlobRef) -> Result<BlobRead<Vec<u8>>> {
        let Some(mut file) = self.open(blob)? else {
            return Ok(BlobRead::Missing);
        };
        let mut bytes = Vec::with_capacity(usize::try_from(blob.len).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .map_err(|source| CacheError::io("reading blob", self.path(blob), source))?;
        if bytes.len() as u64 == blob.len && blake3::hash(&bytes).as_bytes() == &blob.hash {
            Ok(BlobRead::Verified(bytes))
        } else {
            Ok(BlobRead::Corrupt)
        }
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
    /// reading pass of its own, so that `sink` never receives bytes that turn out to be wrong.
    pub(crate) fn copy_to(&self, blob: &BlobRef, sink: &mut dyn Write) -> Result<BlobRead<u64>> {
        let Some(mut file) = self.open(blob)? else {
            return Ok(BlobRead::Missing);
        };
        let path = self.path(blob);
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0u8; CHUNK_BYTES];
        let mut len = 0u64;
        let read_error = |source| CacheError::io("reading blob", &path, source);
        loop {
            let read = read_some(&mut file, &mut buffer).map_err(read_error)?;
            if read == 0 {
                break;
            }
            len += read as u64;
            hasher.update(&buffer[..read]);
        }
        if len != blob.len || hasher.finalize().as_bytes() != &blob.hash {
            return Ok(BlobRead::Corrupt);
        }
        // The file cannot change under us in a way that matters: blobs are never rewritten in
        // place, only renamed over (a new inode) or removed (the open handle still reads).
        io::Seek::seek(&mut file, io::SeekFrom::Start(0)).map_err(read_error)?;
        let copied = io::copy(&mut file, sink).map_err(|source| CacheError::Io {
            operation: "writing blob to the caller's writer from",
            path: path.clone(),
            source,
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tag_dir(path: &std::path::Path) -> Arc<Dir> {
        Arc::new(Dir::open_root(path).unwrap())
    }

    #[test]
    fn parse_hash_takes_only_our_names() {
        let hash = [0xab; 32];
        assert_eq!(parse_hash(&hex(&hash)), Some(hash));
        assert_eq!(parse_hash(&hex(&hash).to_uppercase()), None);
        assert_eq!(parse_hash("abc"), None);
        assert_eq!(parse_hash(&"zz".repeat(32)), None);
    }

    #[test]
    fn a_staged_blob_that_is_dropped_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobFiles::new(tag_dir(dir.path()));
        let staged = blobs.stage(&mut &b"hello"[..], 100).unwrap();
        let temp = staged.temp_path();
        assert!(temp.exists());
        drop(staged);
        assert!(!temp.exists());
    }

    #[test]
    fn staging_past_the_limit_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobFiles::new(tag_dir(dir.path()));
        let err = blobs.stage(&mut &[0u8; 10][..], 9).unwrap_err();
        assert!(matches!(err, StageError::TooLarge));
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn published_blobs_read_back_verified_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobFiles::new(tag_dir(dir.path()));
        let staged = blobs.stage(&mut &b"content"[..], 100).unwrap();
        let blob = staged.blob;
        assert_eq!(blob.hash, *blake3::hash(b"content").as_bytes());
        blobs.publish(staged).unwrap();
        assert!(
            matches!(blobs.read(&blob).unwrap(), BlobRead::Verified(bytes) if bytes == b"content")
        );
        let mut sink = Vec::new();
        assert!(matches!(
            blobs.copy_to(&blob, &mut sink).unwrap(),
            BlobRead::Verified(7)
        ));
        assert_eq!(sink, b"content");
        assert_eq!(blobs.list().unwrap(), vec![(blob.hash, 7)]);

        fs::write(blobs.path(&blob), b"CONTENT").unwrap();
        assert!(matches!(blobs.read(&blob).unwrap(), BlobRead::Corrupt));
        let mut sink = Vec::new();
        assert!(matches!(
            blobs.copy_to(&blob, &mut sink).unwrap(),
            BlobRead::Corrupt
        ));
        assert!(sink.is_empty(), "nothing unverified reaches the writer");

        blobs.remove(&blob).unwrap();
        assert!(matches!(blobs.read(&blob).unwrap(), BlobRead::Missing));
        blobs.remove(&blob).unwrap();
    }
}
