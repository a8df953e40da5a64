//! Write-behind: `publish` queues an upload and returns at once; one thread (started on the
//! first publish) uploads. The queue is bounded in entries and bytes; a publish of a key already
//! queued replaces it (coalescing); a publish that does not fit is dropped and counted. `drain`
//! waits, with a bound, for the queue to empty.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_core::{DrainReport, PublishedEntry, PublishedValue};

use crate::engine::{FaultKind, Outcome, run};
use crate::envelope::{Body, Envelope, chunk_name, entry_name, signed_message};
use crate::remote::Shared;
use crate::stats::Stats;

type JobKey = (String, Vec<u8>);

#[derive(Default)]
struct Queue {
    order: VecDeque<JobKey>,
    jobs: HashMap<JobKey, PublishedEntry>,
    /// Bytes of the inline values queued.
    bytes: usize,
    /// An upload taken from the queue and not finished.
    busy: bool,
    /// Published and dropped since the last drain.
    published: u64,
    dropped: u64,
    worker_started: bool,
}

#[derive(Default)]
pub(crate) struct Uploader {
    queue: Mutex<Queue>,
    /// Signalled when work arrives and when an upload ends.
    changed: Condvar,
}

impl std::fmt::Debug for Uploader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploader").finish_non_exhaustive()
    }
}

fn inline_len(entry: &PublishedEntry) -> usize {
    match &entry.value {
        PublishedValue::Bytes(bytes) => bytes.len(),
        PublishedValue::Blob { .. } => 0,
        PublishedValue::Directory(directory) => directory.value.len(),
    }
}

impl Uploader {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `entry` for upload (see the module docs).
    pub(crate) fn push(&self, shared: &Arc<Shared>, entry: PublishedEntry) {
        let key = (entry.tag.to_string(), entry.key.clone());
        let size = inline_len(&entry);
        let mut queue = self.lock();
        if let Some(old) = queue.jobs.get(&key) {
            let old_size = inline_len(old);
            if queue.bytes - old_size + size > shared.config.queue_bytes {
                queue.dropped += 1;
                Stats::add(&shared.stats.dropped, 1);
                return;
            }
            queue.bytes = queue.bytes - old_size + size;
            queue.jobs.insert(key, entry);
        } else if queue.order.len() >= shared.config.queue_entries
            || queue.bytes + size > shared.config.queue_bytes
        {
            queue.dropped += 1;
            Stats::add(&shared.stats.dropped, 1);
            tracing::debug!(tag = %entry.tag, "remote upload queue full; dropped");
            return;
        } else {
            queue.bytes += size;
            queue.order.push_back(key.clone());
            queue.jobs.insert(key, entry);
        }
        if !queue.worker_started {
            let worker = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name("glovebox-cache-upload".to_owned())
                .spawn(move || worker.uploader.work(&worker));
            match spawned {
                Ok(_) => queue.worker_started = true,
                Err(err) => {
                    tracing::warn!(error = %err, "could not start the remote upload thread; uploads are dropped");
                    let dropped = queue.order.len() as u64;
                    queue.order.clear();
                    queue.jobs.clear();
                    queue.bytes = 0;
                    queue.dropped += dropped;
                    Stats::add(&shared.stats.dropped, dropped);
                    return;
                }
            }
        }
        drop(queue);
        self.changed.notify_all();
    }

    /// Waits at most `within` for the queue to empty.
    pub(crate) fn drain(&self, within: Duration) -> DrainReport {
        let deadline = Instant::now() + within;
        let mut queue = self.lock();
        while !queue.order.is_empty() || queue.busy {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            queue = self
                .changed
                .wait_timeout(queue, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let report = DrainReport {
            published: queue.published,
            dropped: queue.dropped,
            pending: queue.order.len() as u64 + u64::from(queue.busy),
        };
        queue.published = 0;
        queue.dropped = 0;
        report
    }

    /// The upload thread: takes jobs in order until the process ends.
    fn work(&self, shared: &Arc<Shared>) {
        loop {
            let entry = {
                let mut queue = self.lock();
                loop {
                    if let Some(key) = queue.order.pop_front() {
                        if let Some(entry) = queue.jobs.remove(&key) {
                            queue.bytes -= inline_len(&entry);
                            queue.busy = true;
                            break entry;
                        }
                    } else {
                        queue = self
                            .changed
                            .wait(queue)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                }
            };
            let uploaded = upload(shared, entry);
            {
                let mut queue = self.lock();
                queue.busy = false;
                if uploaded {
                    queue.published += 1;
                    Stats::add(&shared.stats.published, 1);
                } else {
                    queue.dropped += 1;
                    Stats::add(&shared.stats.dropped, 1);
                }
            }
            self.changed.notify_all();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Uploads one entry: its chunks first, the envelope last. Whether it was published.
fn upload(shared: &Arc<Shared>, entry: PublishedEntry) -> bool {
    let expires_ms = entry.expires_at.map(|at| {
        at.duration_since(UNIX_EPOCH).map_or(1, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
    });
    // The time it has left, for the server's expiry; an entry already expired is not sent.
    let px = match expires_ms {
        None => None,
        Some(at) => match at.checked_sub(now_ms()).filter(|&ms| ms > 0) {
            Some(left) => Some(left),
            None => return false,
        },
    };
    let tag = entry.tag.to_string();
    let (len, digest, body) = match entry.value {
        PublishedValue::Bytes(bytes) => (
            bytes.len() as u64,
            *blake3::hash(&bytes).as_bytes(),
            Body::Inline(bytes),
        ),
        PublishedValue::Blob { file, len, hash } => {
            match upload_chunks(shared, file, len, &hash, px) {
                Some(body) => (len, hash, body),
                None => return false,
            }
        }
        PublishedValue::Directory(directory) => {
            match crate::directory::upload_directory(shared, &directory, px) {
                Some(uploaded) => uploaded,
                None => return false,
            }
        }
    };
    let signed = shared.signing.as_ref().map(|key| {
        key.sign(&signed_message(
            &shared.config.prefix,
            &tag,
            &entry.key,
            entry.format,
            expires_ms,
            len,
            &digest,
        ))
    });
    let envelope = Envelope {
        format: entry.format,
        expires_ms,
        len,
        digest,
        body,
        signed,
    }
    .encode();
    let name = entry_name(&shared.config.prefix, &tag, &entry.key);
    let sent = envelope.len() as u64;
    let outcome = run(&shared.breaker, &shared.stats, || {
        shared.upload_engine.put_envelope(&name, &envelope, px)
    });
    settle(shared, outcome, sent)
}

/// What an upload's outcome means: counted, and a refusal of writes turns them off.
fn settle<T>(shared: &Shared, outcome: Outcome<T>, sent: u64) -> bool {
    match outcome {
        Outcome::Done(_) => {
            Stats::add(&shared.stats.bytes_out, sent);
            true
        }
        Outcome::Skipped => false,
        Outcome::Failed(err) => {
            if err.kind == FaultKind::Refused {
                shared.writes_refused(&err);
            } else {
                tracing::debug!(error = %err, "a remote upload failed; dropped");
            }
            false
        }
    }
}

/// Uploads a blob's chunks (those the server does not hold yet; the others have their expiry
/// extended), checking the bytes against the blob's hash. The manifest body, or `None`. Also
/// a directory's contents (`directory.rs`), read from a reader of them all.
pub(crate) fn upload_chunks(
    shared: &Arc<Shared>,
    mut file: impl Read,
    len: u64,
    hash: &[u8; 32],
    px: Option<u64>,
) -> Option<Body> {
    let chunk_size = shared.config.chunk_size;
    let mut whole = blake3::Hasher::new();
    let mut chunks = Vec::new();
    let mut buffer = vec![0u8; chunk_size];
    let mut read_total = 0u64;
    loop {
        let mut filled = 0;
        while filled < chunk_size {
            match file.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => {
                    tracing::warn!(error = %err, "could not read a blob to upload it; dropped");
                    return None;
                }
            }
        }
        if filled == 0 {
            break;
        }
        let chunk = &buffer[..filled];
        read_total += filled as u64;
        whole.update(chunk);
        let digest = *blake3::hash(chunk).as_bytes();
        let name = chunk_name(&shared.config.prefix, &digest);
        let outcome = run(&shared.breaker, &shared.stats, || {
            // A chunk the server has (shared with other entries) is kept at least as long as
            // this entry; otherwise it is sent.
            if shared.upload_engine.keep_chunk(&name, px)? {
                return Ok(0u64);
            }
            shared.upload_engine.put_chunk(&name, chunk, px)?;
            Ok(chunk.len() as u64)
        });
        match outcome {
            Outcome::Done(sent) => Stats::add(&shared.stats.bytes_out, sent),
            other => {
                settle(shared, other, 0);
                return None;
            }
        }
        chunks.push(digest);
        if filled < chunk_size {
            break;
        }
    }
    if read_total != len || whole.finalize().as_bytes() != hash {
        tracing::warn!("a blob changed before it was uploaded; dropped");
        return None;
    }
    Some(Body::Chunked {
        chunk_size: u32::try_from(chunk_size).unwrap_or(u32::MAX),
        chunks,
    })
}
