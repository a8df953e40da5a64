//! [`Chunks`], the reader of a chunked value (or a directory's contents) fetched from the
//! remote: each chunk is fetched, checked against its length, and handed over in order. The
//! whole is checked against the value's digest, by this reader at the end (a directory's
//! contents: [`Whole::Checked`]) or by the core as it stores the value (a value: its digest
//! travels in `RemoteValue::Stream`, and the core hashes the bytes anyway to name the blob it
//! writes; [`Whole::ByCaller`]). A chunk that has gone, is not as long as the manifest says, or
//! makes the whole not match is an error: the cache's backfill then stores nothing and the
//! read is a miss.
//!
//! **No check per chunk.** A chunk is named by its digest, but its bytes are not hashed on
//! their own: a bad chunk makes the whole not match, and the whole is checked before anything
//! is committed or returned (the last chunk is only handed over once the reader has checked
//! it; the core checks what it staged before it commits). Checking each chunk as well would
//! only fail a bad value earlier, at the price of hashing every value twice, on a thread that
//! competes with the server and the storing for the CPU (`docs/remote.md`, "Figures").
//!
//! **Fetched ahead.** A value of two chunks or more is fetched by a thread of its own, at most
//! [`AHEAD`] chunks ahead of the reader, so that the network brings the next chunk while the
//! caller stores the current one (hashing it, writing it, syncing it). Measured with the remote
//! bench (`remote_hit_64m`: a 64 MiB remote hit stored durably ÷ one raw `GET` of it), six
//! alternating runs each on the loaded 2-core machine: median 1.03x fetching in turn, 0.97x
//! fetching ahead. The thread ends at the first error, or when the reader is dropped (its
//! next send fails). Memory: at most `AHEAD` + 3 chunks (one being fetched, `AHEAD` waiting, one
//! being read, one read and handed back: the next chunk is fetched into its buffer, as a fresh
//! one costs a page fault and a zeroed page per 4 KiB).

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::engine::{Outcome, run};
use crate::envelope::chunk_name;
use crate::remote::Shared;
use crate::stats::Stats;

/// Chunks fetched and waiting for the reader, at most.
const AHEAD: usize = 1;

/// Where the next chunk comes from.
enum Source {
    /// Fetched when the reader needs it (a value of one chunk, or no thread could be started).
    OnDemand(std::vec::IntoIter<[u8; 32]>),
    /// Fetched ahead by a thread of its own, which gets the buffers read back to fetch into.
    Ahead(Receiver<io::Result<Vec<u8>>>, SyncSender<Vec<u8>>),
}

/// Who checks the whole against its digest.
pub(crate) enum Whole {
    /// The reader, before it hands over the last chunk.
    Checked([u8; 32]),
    /// The caller (the core, for a `RemoteValue::Stream`, which carries the digest).
    ByCaller,
}

/// A chunked value, read one chunk at a time.
pub(crate) struct Chunks {
    shared: Arc<Shared>,
    source: Source,
    chunk_size: u32,
    /// Bytes of the value not yet loaded.
    left: u64,
    /// The digest the whole must have and its hash so far, when this reader checks it.
    whole: Option<([u8; 32], blake3::Hasher)>,
    current: Vec<u8>,
    at: usize,
}

impl Chunks {
    /// The reader of the `len` bytes held in `chunks` of `chunk_size` bytes (the last one
    /// shorter), their whole checked as `whole` says.
    pub(crate) fn new(
        shared: &Arc<Shared>,
        chunks: Vec<[u8; 32]>,
        chunk_size: u32,
        len: u64,
        whole: Whole,
    ) -> Chunks {
        let source = if chunks.len() < 2 {
            Source::OnDemand(chunks.into_iter())
        } else {
            fetch_ahead(shared, chunks, chunk_size, len)
        };
        Chunks {
            shared: Arc::clone(shared),
            source,
            chunk_size,
            left: len,
            whole: match whole {
                Whole::Checked(digest) => Some((digest, blake3::Hasher::new())),
                Whole::ByCaller => None,
            },
            current: Vec::new(),
            at: 0,
        }
    }

    fn load_next(&mut self) -> io::Result<bool> {
        if self.left == 0 {
            return Ok(false);
        }
        let expected = self.left.min(u64::from(self.chunk_size));
        // The chunk read is done with: its buffer holds the next one.
        let spare = std::mem::take(&mut self.current);
        let chunk = match &mut self.source {
            Source::OnDemand(chunks) => match chunks.next() {
                Some(digest) => fetch_chunk(&self.shared, &digest, expected, spare)?,
                None => return Err(short_manifest()),
            },
            Source::Ahead(incoming, returns) => {
                let _ = returns.try_send(spare);
                incoming.recv().unwrap_or_else(|_| Err(short_manifest()))?
            }
        };
        self.left -= expected;
        if let Some((digest, hasher)) = &mut self.whole {
            hasher.update(&chunk);
            if self.left == 0 && hasher.finalize().as_bytes() != digest {
                Stats::add(&self.shared.stats.rejected, 1);
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the value does not match its digest",
                ));
            }
        }
        self.current = chunk;
        self.at = 0;
        Ok(true)
    }
}

impl Read for Chunks {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.current.len() && !self.load_next()? {
            return Ok(0);
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The manifest ended before the value's length did (the envelope's decoding checks the count,
/// so this is only a thread that ended early).
fn short_manifest() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the value's chunks ended before its length",
    )
}

/// Starts the thread that fetches `chunks` ahead of the reader; on demand if it cannot start.
fn fetch_ahead(shared: &Arc<Shared>, chunks: Vec<[u8; 32]>, chunk_size: u32, len: u64) -> Source {
    let (sender, receiver) = sync_channel(AHEAD);
    let (returns, returned) = sync_channel::<Vec<u8>>(1);
    let fetching = Arc::clone(shared);
    let order = chunks.clone();
    let spawned = std::thread::Builder::new()
        .name("cache-remote-fetch".to_owned())
        .spawn(move || {
            let mut left = len;
            for digest in order {
                let expected = left.min(u64::from(chunk_size));
                left -= expected;
                let spare = returned.try_recv().unwrap_or_default();
                let fetched = fetch_chunk(&fetching, &digest, expected, spare);
                let failed = fetched.is_err();
                // A failed send: the reader is gone; nothing more is wanted.
                if sender.send(fetched).is_err() || failed {
                    return;
                }
            }
        });
    match spawned {
        Ok(_) => Source::Ahead(receiver, returns),
        Err(err) => {
            tracing::debug!(error = %err, "could not start a thread to fetch chunks ahead; fetching them on demand");
            Source::OnDemand(chunks.into_iter())
        }
    }
}

/// Fetches the chunk `digest`, which must be `expected` bytes long (its bytes are checked with
/// the whole: see the module docs).
fn fetch_chunk(
    shared: &Shared,
    digest: &[u8; 32],
    expected: u64,
    spare: Vec<u8>,
) -> io::Result<Vec<u8>> {
    let name = chunk_name(&shared.config.prefix, digest);
    let max = usize::try_from(expected).unwrap_or(usize::MAX);
    let outcome = run(&shared.breaker, &shared.stats, || {
        shared.fetch_engine.get_chunk(&name, max, spare)
    });
    let chunk = match outcome {
        Outcome::Done(Some(chunk)) => chunk,
        Outcome::Done(None) => {
            Stats::add(&shared.stats.misses, 1);
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "a chunk of the value has gone from the remote",
            ));
        }
        Outcome::Skipped => {
            return Err(io::Error::other(
                "the remote is being skipped (breaker open)",
            ));
        }
        Outcome::Failed(err) => return Err(io::Error::other(err.to_string())),
    };
    Stats::add(&shared.stats.bytes_in, chunk.len() as u64);
    if chunk.len() as u64 != expected {
        Stats::add(&shared.stats.rejected, 1);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a chunk of the value is not as long as its manifest says",
        ));
    }
    Ok(chunk)
}
