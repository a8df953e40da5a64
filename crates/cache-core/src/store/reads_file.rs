//! `<root>/<tag>/reads`: what processes that only read leave for the next writer. A process
//! that closes with reads and counters not yet in the file, and no write to commit, appends
//! them here (one `write` of one batch, not synced) instead of committing: opening, reading
//! and exiting then costs the tag no commit and no `fsync`. The next commit of any process
//! folds the file in (`take`): it renames it aside, reads it, removes it, and merges its access
//! records and counters in its own transaction, the records before the commit's writes (they
//! are reads of values committed before it, so a value the commit writes starts without them).
//!
//! Statistics, not data: a crash of the machine (not of a process: the batch is in the page
//! cache once `write` returns) may lose the batches not yet written back, a batch torn by a
//! crash is skipped with those after it, and a batch appended by a process that opened the
//! file just before a writer renamed it and wrote just after that writer read it is lost. A
//! batch is counted once: the writer removes the file before its commit, and a failed commit
//! appends what it took back. The exception is a commit that reports a failure and landed all
//! the same (a failed `fsync` may leave it durable): its batch is counted twice, as the
//! process's own counts of that commit are.
//!
//! Format: batches of `b"GCRD" | payload length: u32 | crc32 of payload: u32 | payload`, the
//! payload `version (3): u8 | counters: u8 | that many u64 (in `Counters::fields` order) |
//! access hash seeds: 2 u64 | records: u32 | (access hash: u64 | last access ms: u64 | count:
//! u64)*`, little-endian. The records are by the key's access hash (`access::AccessHasher`),
//! with the seeds it was computed with: a batch of other seeds than the file's (written for a
//! file replaced since) has its records dropped, its counters kept. Versions 1 and 2 (still
//! read) had `(key length: u32 | key | last access ms | count)` records, without seeds: their
//! keys are hashed when read. Version 1 had no counter count: 12 counters, the local ones;
//! version 2 added the remote tier's, and says how many it holds, so that a later version may
//! add more (a reader ignores those it does not know). A process of an older version stops at
//! a batch of a newer version: while two versions share a root, it may lose the counts of the
//! batches it meets.

use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::access::{AccessHasher, AccessRecords};
use super::buffer::{AccessDelta, merge_access};
use super::lock;
use crate::error::{CacheError, Result};
use crate::fsys::{self, Dir, Kind};
use crate::stats::Counters;

/// The file's name in the tag directory.
pub(crate) const READS_FILE_NAME: &str = "reads";

/// Past this size a closing process commits instead of appending, so the file stays small.
pub(super) const MAX_READS_FILE_BYTES: u64 = 8 * 1024 * 1024;

const MAGIC: &[u8; 4] = b"GCRD";
const VERSION: u8 = 3;
/// The first version, read still: 12 counters, no count; records by key.
const VERSION_1: u8 = 1;
const VERSION_1_COUNTERS: usize = 12;
/// The second, read still: records by key.
const VERSION_2: u8 = 2;

/// Distinguishes this process's names for the file while it folds it.
static FOLDS: AtomicU64 = AtomicU64::new(0);

/// Reads and counters of processes that did not commit them.
#[derive(Clone, Debug, Default)]
pub(super) struct ReadsBatch {
    pub(super) counters: Counters,
    /// By access hash, computed with `seeds`.
    pub(super) access: AccessRecords,
    pub(super) seeds: [u64; 2],
}

impl ReadsBatch {
    pub(super) fn is_empty(&self) -> bool {
        self.counters.is_zero() && self.access.is_empty()
    }

    /// Adds `other`'s counters, and its records if they are by the same hash.
    fn merge(&mut self, other: ReadsBatch) {
        self.counters = self.counters.plus(&other.counters);
        if other.seeds != self.seeds {
            return;
        }
        for (hash, delta) in other.access {
            merge_access(self.access.entry(hash).or_default(), delta);
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut payload = vec![VERSION, Counters::FIELDS as u8];
        for (_, value) in self.counters.fields() {
            payload.extend_from_slice(&value.to_le_bytes());
        }
        for seed in self.seeds {
            payload.extend_from_slice(&seed.to_le_bytes());
        }
        payload.extend_from_slice(&(self.access.len() as u32).to_le_bytes());
        for (hash, delta) in &self.access {
            payload.extend_from_slice(&hash.to_le_bytes());
            payload.extend_from_slice(&delta.last_ms.to_le_bytes());
            payload.extend_from_slice(&delta.count.to_le_bytes());
        }
        let mut batch = Vec::with_capacity(payload.len() + 12);
        batch.extend_from_slice(MAGIC);
        batch.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        batch.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        batch.extend_from_slice(&payload);
        batch
    }

    /// Every intact batch of `bytes`, merged, with the access records by `hasher` (those of
    /// batches by other seeds dropped); stops at the first damaged one.
    fn decode(mut bytes: &[u8], hasher: AccessHasher) -> ReadsBatch {
        let mut all = ReadsBatch {
            seeds: hasher.seeds(),
            ..ReadsBatch::default()
        };
        while let Some(batch) = take_batch(&mut bytes, hasher) {
            all.merge(batch);
        }
        all
    }
}

fn take<'a>(bytes: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    let (head, rest) = bytes.split_at_checked(len)?;
    *bytes = rest;
    Some(head)
}

fn take_u32(bytes: &mut &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?))
}

fn take_u64(bytes: &mut &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(take(bytes, 8)?.try_into().ok()?))
}

/// The next batch of `bytes`; records by key (versions 1 and 2) are hashed by `hasher`.
fn take_batch(bytes: &mut &[u8], hasher: AccessHasher) -> Option<ReadsBatch> {
    if take(bytes, 4)? != MAGIC {
        return None;
    }
    let len = take_u32(bytes)? as usize;
    let crc = take_u32(bytes)?;
    let mut payload = take(bytes, len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let version = take(&mut payload, 1)?[0];
    let stored = match version {
        VERSION_1 => VERSION_1_COUNTERS,
        VERSION_2 | VERSION => usize::from(take(&mut payload, 1)?[0]),
        _ => return None,
    };
    let mut batch = ReadsBatch {
        seeds: hasher.seeds(),
        ..ReadsBatch::default()
    };
    let names = Counters::default().fields().map(|(name, _)| name);
    for index in 0..stored {
        let value = take_u64(&mut payload)?;
        // A counter of a later version, unknown here, is skipped.
        if let Some(name) = names.get(index) {
            batch.counters.set_field(name, value);
        }
    }
    if version == VERSION {
        batch.seeds = [take_u64(&mut payload)?, take_u64(&mut payload)?];
    }
    for _ in 0..take_u32(&mut payload)? {
        let hash = if version == VERSION {
            take_u64(&mut payload)?
        } else {
            let key_len = take_u32(&mut payload)? as usize;
            hasher.hash(take(&mut payload, key_len)?)
        };
        let delta = AccessDelta {
            last_ms: take_u64(&mut payload)?,
            count: take_u64(&mut payload)?,
        };
        merge_access(batch.access.entry(hash).or_default(), delta);
    }
    Some(batch)
}

/// The file as `peek` last parsed it: its (length, modification time), and what it held (by
/// the batch's seeds).
type Seen = ((u64, std::time::SystemTime), std::sync::Arc<ReadsBatch>);

/// The reads file of one tag, and what was last read of it for `peek`.
pub(super) struct ReadsFile {
    tag: std::sync::Arc<Dir>,
    /// Cleared by `take`.
    seen: Mutex<Option<Seen>>,
}

impl ReadsFile {
    pub(super) fn new(tag: std::sync::Arc<Dir>) -> Self {
        ReadsFile {
            tag,
            seen: Mutex::new(None),
        }
    }

    /// The file's size, 0 if there is none.
    pub(super) fn len(&self) -> Result<u64> {
        Ok(self.tag.stat(READS_FILE_NAME)?.map_or(0, |meta| meta.len))
    }

    /// Appends `batch` in one `write`, not synced.
    pub(super) fn append(&self, batch: &ReadsBatch) -> Result<()> {
        let mut file = self.tag.open_append(READS_FILE_NAME)?;
        file.write_all(&batch.encode())
            .map_err(|source| CacheError::io("appending to", self.path(), source))
    }

    fn path(&self) -> std::path::PathBuf {
        self.tag.join(READS_FILE_NAME)
    }

    /// Takes the file's content for a commit, its access records by `hasher`: renames the file
    /// aside (so appends from then on start a new one), reads it, removes it. Empty when there
    /// is none.
    pub(super) fn take(&self, hasher: AccessHasher) -> Result<ReadsBatch> {
        let aside = format!(
            "{READS_FILE_NAME}.{}",
            fsys::temp_name(FOLDS.fetch_add(1, Ordering::Relaxed))
        );
        match self.tag.rename(READS_FILE_NAME, &self.tag, &aside) {
            Ok(()) => {}
            Err(CacheError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ReadsBatch::default());
            }
            Err(err) => return Err(err),
        }
        *lock(&self.seen) = None;
        let bytes = self.read(&aside);
        self.tag.remove_file(&aside)?;
        Ok(ReadsBatch::decode(&bytes?, hasher))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        if let Some(mut file) = self.tag.open_file(name)? {
            file.read_to_end(&mut bytes)
                .map_err(|source| CacheError::io("reading", self.tag.join(name), source))?;
        }
        Ok(bytes)
    }

    /// What the file holds now, not folded in yet, its access records by `hasher`; parsed again
    /// only when it changed.
    pub(super) fn peek(&self, hasher: AccessHasher) -> Result<std::sync::Arc<ReadsBatch>> {
        let Some(meta) = self.tag.stat(READS_FILE_NAME)? else {
            return Ok(std::sync::Arc::default());
        };
        if meta.kind != Kind::File {
            return Ok(std::sync::Arc::default());
        }
        let identity = (meta.len, meta.modified);
        let mut seen = lock(&self.seen);
        if let Some((seen_identity, batch)) = seen.as_ref()
            && *seen_identity == identity
            && batch.seeds == hasher.seeds()
        {
            return Ok(std::sync::Arc::clone(batch));
        }
        let batch = std::sync::Arc::new(ReadsBatch::decode(&self.read(READS_FILE_NAME)?, hasher));
        *seen = Some((identity, std::sync::Arc::clone(&batch)));
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASHER: AccessHasher = AccessHasher::new([3, 4]);

    fn batch(hits: u64, records: &[(&[u8], u64, u64)]) -> ReadsBatch {
        ReadsBatch {
            counters: Counters {
                hits,
                ..Counters::default()
            },
            access: records
                .iter()
                .map(|(key, last_ms, count)| {
                    (
                        HASHER.hash(key),
                        AccessDelta {
                            last_ms: *last_ms,
                            count: *count,
                        },
                    )
                })
                .collect(),
            seeds: HASHER.seeds(),
        }
    }

    /// A batch of `version` (1 or 2, by key), as those versions wrote it.
    fn by_key(version: u8, hits: u64, records: &[(&[u8], u64, u64)]) -> Vec<u8> {
        let mut payload = vec![version];
        let counters = if version == VERSION_1 {
            VERSION_1_COUNTERS
        } else {
            payload.push(Counters::FIELDS as u8);
            Counters::FIELDS
        };
        payload.extend_from_slice(&hits.to_le_bytes());
        for _ in 1..counters {
            payload.extend_from_slice(&0u64.to_le_bytes());
        }
        payload.extend_from_slice(&(records.len() as u32).to_le_bytes());
        for (key, last_ms, count) in records {
            payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
            payload.extend_from_slice(key);
            payload.extend_from_slice(&last_ms.to_le_bytes());
            payload.extend_from_slice(&count.to_le_bytes());
        }
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        bytes
    }

    #[test]
    fn records_by_key_of_versions_1_and_2_are_hashed_and_those_of_other_seeds_dropped() {
        let mut bytes = by_key(VERSION_1, 1, &[(b"a", 5, 2)]);
        bytes.extend(by_key(VERSION_2, 1, &[(b"a", 7, 1), (b"b", 2, 1)]));
        // Written for a file replaced since: its counters count, its records are not the
        // file's.
        let mut replaced = batch(1, &[(b"a", 9, 4)]);
        replaced.seeds = [5, 6];
        bytes.extend(replaced.encode());
        bytes.extend(batch(1, &[(b"b", 8, 1)]).encode());
        let read = ReadsBatch::decode(&bytes, HASHER);
        assert_eq!(read.counters.hits, 4);
        assert_eq!(read.seeds, HASHER.seeds());
        let a = read.access[&HASHER.hash(b"a")];
        assert_eq!((a.last_ms, a.count), (7, 3));
        let b = read.access[&HASHER.hash(b"b")];
        assert_eq!((b.last_ms, b.count), (8, 2));
        assert_eq!(read.access.len(), 2);
    }

    #[test]
    fn batches_append_and_fold_into_one() {
        let root = tempfile::tempdir().unwrap();
        let file = ReadsFile::new(std::sync::Arc::new(Dir::open_root(root.path()).unwrap()));
        file.append(&batch(2, &[(b"a", 5, 2)])).unwrap();
        file.append(&batch(1, &[(b"a", 3, 1), (b"b", 9, 1)]))
            .unwrap();
        let peeked = file.peek(HASHER).unwrap();
        assert_eq!(peeked.counters.hits, 3);
        let taken = file.take(HASHER).unwrap();
        assert_eq!(taken.counters.hits, 3);
        let a = taken.access[&HASHER.hash(b"a")];
        assert_eq!((a.last_ms, a.count), (5, 3));
        assert_eq!(taken.access[&HASHER.hash(b"b")].count, 1);
        assert!(file.take(HASHER).unwrap().is_empty(), "taken once");
        assert!(file.peek(HASHER).unwrap().is_empty());
        let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert!(left.is_empty(), "no file left behind: {left:?}");
    }

    #[test]
    fn a_version_1_batch_is_read_and_remote_counters_travel_in_version_2() {
        let mut payload = vec![VERSION_1];
        for value in 1..=12u64 {
            payload.extend_from_slice(&value.to_le_bytes());
        }
        payload.extend_from_slice(&0u32.to_le_bytes());
        let mut old = Vec::new();
        old.extend_from_slice(MAGIC);
        old.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        old.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        old.extend_from_slice(&payload);
        let read = ReadsBatch::decode(&old, HASHER);
        assert_eq!((read.counters.hits, read.counters.takeovers), (1, 12));
        assert!(read.counters.remote.is_zero());

        let mut new = batch(1, &[]);
        new.counters.remote.published = 7;
        new.counters.remote.fleet_waits = 2;
        let mut bytes = old;
        bytes.extend_from_slice(&new.encode());
        let both = ReadsBatch::decode(&bytes, HASHER);
        assert_eq!(both.counters.hits, 2);
        assert_eq!(both.counters.remote.published, 7);
        assert_eq!(both.counters.remote.fleet_waits, 2);
    }

    #[test]
    fn a_torn_batch_is_skipped_with_those_after_it() {
        let whole = batch(1, &[(b"k", 1, 1)]).encode();
        let mut bytes = whole.clone();
        bytes.extend_from_slice(&whole[..whole.len() - 3]);
        bytes.extend_from_slice(&whole);
        assert_eq!(ReadsBatch::decode(&bytes, HASHER).counters.hits, 1);
        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(ReadsBatch::decode(&flipped, HASHER).is_empty());
    }
}
