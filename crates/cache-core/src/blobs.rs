//! Blob files: large values stored beside a tag's database as content-addressed files under
//! `<root>/<tag>/blobs/<first two hex digits>/<blake3 hex>`.
//!
//! A blob is written to `blobs/tmp/` while its hash is computed, fsynced, and only then renamed
//! into place, inside the write transaction that records its entry (see `store.rs`), so that no
//! entry ever commits before its blob is durable. Reads verify the content against the name: a
//! blob that does not match is never returned. Which entries use a blob is counted in the
//! database (`blobs` table), not here: this module only moves bytes.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::codec::{BlobRef, hex};
use crate::error::{CacheError, Result};
use crate::files::{
    create_private_dir, open_private_file, read_dir_if_present, remove_stale_entries, sync_dir,
};

/// Read and write in pieces of this size: big enough for blake3's SIMD and for few syscalls,
/// small enough that a 1 GiB blob never sits in memory whole.
const CHUNK_BYTES: usize = 1 << 20;

/// Distinguishes temp files of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The blob directory of one tag.
#[derive(Debug)]
pub(crate) struct BlobFiles {
    dir: PathBuf,
    temp_dir: PathBuf,
}

/// A blob written to a temp file and fsynced, not yet in place. Dropped unpublished, the temp
/// file is removed.
#[derive(Debug)]
pub(crate) struct StagedBlob {
    temp: PathBuf,
    pub(crate) blob: BlobRef,
    published: bool,
}

impl Drop for StagedBlob {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.temp);
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

impl BlobFiles {
    pub(crate) fn new(tag_dir: &Path) -> Self {
        let dir = tag_dir.join("blobs");
        let temp_dir = dir.join("tmp");
        BlobFiles { dir, temp_dir }
    }

    /// Where the blob lives.
    pub(crate) fn path(&self, blob: &BlobRef) -> PathBuf {
        let name = blob.file_name();
        self.dir.join(&name[..2]).join(name)
    }

    /// Copies `source` into a new temp file, hashing it on the way, and fsyncs it. Past `limit`
    /// bytes it stops and keeps nothing.
    pub(crate) fn stage(
        &self,
        source: &mut dyn Read,
        limit: u64,
    ) -> std::result::Result<StagedBlob, StageError> {
        create_private_dir(&self.dir, false).map_err(StageError::Cache)?;
        create_private_dir(&self.temp_dir, false).map_err(StageError::Cache)?;
        let temp = self.temp_dir.join(format!(
            "{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = open_private_file(&temp, true).map_err(StageError::Cache)?;
        // From here on the guard removes the temp file on every early return.
        let mut staged = StagedBlob {
            temp,
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
                StageError::Cache(CacheError::io("writing blob", &staged.temp, source))
            })?;
        }
        file.sync_all().map_err(|source| {
            StageError::Cache(CacheError::io("syncing blob", &staged.temp, source))
        })?;
        staged.blob = BlobRef {
            hash: *hasher.finalize().as_bytes(),
            len,
        };
        Ok(staged)
    }

    /// The content of a staged blob (a small one: read whole).
    pub(crate) fn read_staged(&self, staged: &StagedBlob) -> Result<Vec<u8>> {
        fs::read(&staged.temp)
            .map_err(|source| CacheError::io("reading back", &staged.temp, source))
    }

    /// Moves a staged blob into place (replacing a damaged copy, if any) and makes the rename
    /// durable. Called inside the write transaction that records the blob.
    pub(crate) fn publish(&self, mut staged: StagedBlob) -> Result<()> {
        let path = self.path(&staged.blob);
        let parent = path.parent().unwrap_or(&self.dir).to_owned();
        create_private_dir(&parent, false)?;
        fs::rename(&staged.temp, &path)
            .map_err(|source| CacheError::io("moving blob into place", &path, source))?;
        staged.published = true;
        sync_dir(&parent)
    }

    /// Whether the blob's file exists with the right length (content is verified on read).
    pub(crate) fn is_present(&self, blob: &BlobRef) -> bool {
        fs::symlink_metadata(self.path(blob))
            .is_ok_and(|meta| meta.is_file() && meta.len() == blob.len)
    }

    /// Removes the blob's file; a missing one is fine.
    pub(crate) fn remove(&self, blob: &BlobRef) -> Result<()> {
        let path = self.path(blob);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CacheError::io("removing blob", path, source)),
        }
    }

    /// The blob's content, verified.
    pub(crate) fn read(&self, blob: &BlobRef) -> Result<BlobRead<Vec<u8>>> {
        let path = self.path(blob);
        let Some(mut file) = self.open(&path)? else {
            return Ok(BlobRead::Missing);
        };
        let mut bytes = Vec::with_capacity(usize::try_from(blob.len).unwrap_or(0));
        file.read_to_end(&mut bytes)
            .map_err(|source| CacheError::io("reading blob", &path, source))?;
        if bytes.len() as u64 == blob.len && blake3::hash(&bytes).as_bytes() == &blob.hash {
            Ok(BlobRead::Verified(bytes))
        } else {
            Ok(BlobRead::Corrupt)
        }
    }

    /// Writes the blob's content to `sink`, in pieces. The content is verified first, in a
    /// reading pass of its own, so that `sink` never receives bytes that turn out to be wrong.
    pub(crate) fn copy_to(&self, blob: &BlobRef, sink: &mut dyn Write) -> Result<BlobRead<u64>> {
        let path = self.path(blob);
        let Some(mut file) = self.open(&path)? else {
            return Ok(BlobRead::Missing);
        };
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

    fn open(&self, path: &Path) -> Result<Option<File>> {
        match fs::symlink_metadata(path) {
            Ok(meta) if !meta.is_file() => return Ok(None),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CacheError::io("reading blob", path, source)),
        }
        match File::open(path) {
            Ok(file) => Ok(Some(file)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CacheError::io("opening blob", path, source)),
        }
    }

    /// Every blob file present: its hash (from its name) and its size. Files that are not ours
    /// (other names) are ignored, never touched.
    pub(crate) fn list(&self) -> Result<Vec<([u8; 32], u64)>> {
        let mut found = Vec::new();
        for fanout in read_dir_if_present(&self.dir)? {
            let fanout = fanout.map_err(|source| CacheError::io("listing", &self.dir, source))?;
            if fanout.file_name() == "tmp" {
                continue;
            }
            for file in read_dir_if_present(&fanout.path())? {
                let file =
                    file.map_err(|source| CacheError::io("listing", fanout.path(), source))?;
                let Some(hash) = file.file_name().to_str().and_then(parse_hash) else {
                    continue;
                };
                let meta = file
                    .metadata()
                    .map_err(|source| CacheError::io("reading", file.path(), source))?;
                if meta.is_file() {
                    found.push((hash, meta.len()));
                }
            }
        }
        Ok(found)
    }

    /// Removes temp files left by processes that died while writing a blob; how many.
    pub(crate) fn remove_stale_temps(&self) -> Result<u64> {
        remove_stale_entries(&self.temp_dir, |path| fs::remove_file(path))
    }
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
        let blobs = BlobFiles::new(dir.path());
        let staged = blobs.stage(&mut &b"hello"[..], 100).unwrap();
        let temp = staged.temp.clone();
        assert!(temp.exists());
        drop(staged);
        assert!(!temp.exists());
    }

    #[test]
    fn staging_past_the_limit_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobFiles::new(dir.path());
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
        let blobs = BlobFiles::new(dir.path());
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
