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
//!
//! **Streamed in pieces** from an engine that
//! [`streams_chunks`](crate::engine::Engine::streams_chunks) (S3: a chunk is one response
//! body): the thread hands each chunk over in pieces of [`PIECE`] bytes as they arrive, instead
//! of once the whole chunk (16 MiB) is in memory, so that the caller hashes and writes the
//! first bytes while the rest arrives and has only the last piece left when the download ends
//! (a 64 MiB S3 hit stored durably, three alternating runs each: 85-87 ms whole chunks, 71-75
//! ms pieces; `docs/remote.md`, "Figures"). The thread only asks for a chunk once the reader has read to the end of the
//! chunk `AHEAD` + 1 before it, then reads the whole body without waiting for the reader (its
//! pieces queue), so that a slow caller never holds a request open past its timeout. Memory:
//! at most `AHEAD` + 1 chunks of pieces. A chunk's length is checked when its body ends; the
//! value's last piece is only handed over once its chunk has ended as long as the manifest
//! says (and, when this reader checks the whole, once the whole matches).

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use crate::engine::{Outcome, run};
use crate::envelope::chunk_name;
use crate::remote::Shared;
use crate::stats::Stats;

/// Chunks fetched and waiting for the reader, at most.
const AHEAD: usize = 1;

/// The pieces a streamed chunk is handed over in, at most.
const PIECE: usize = 1 << 20;

/// Where the next chunk comes from.
enum Source {
    /// Fetched when the reader needs it (a value of one chunk, or no thread could be started).
    OnDemand(std::vec::IntoIter<[u8; 32]>),
    /// Fetched ahead by a thread of its own, which gets the buffers read back to fetch into.
    Ahead(Receiver<io::Result<Vec<u8>>>, SyncSender<Vec<u8>>),
    /// Streamed by a thread of its own in pieces as they arrive (an engine that
    /// [`streams_chunks`](crate::engine::Engine::streams_chunks)).
    Streamed(Streamed),
}

/// The reader's side of a streaming fetch thread.
struct Streamed {
    /// Pieces in order, each chunk's followed by [`Piece::ChunkEnd`]; an error ends them.
    pieces: Receiver<io::Result<Piece>>,
    /// One message per chunk read to its end: the thread may start another.
    done: Sender<()>,
    /// Pieces read, for the thread to read into again.
    returns: Sender<Vec<u8>>,
}

/// What the streaming thread hands over.
enum Piece {
    /// The next bytes of the value.
    Bytes(Vec<u8>),
    /// The chunk being streamed ended, as long as its manifest says.
    ChunkEnd,
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
        let source = if shared.fetch_engine.streams_chunks() {
            stream(shared, chunks, chunk_size, len)
        } else if chunks.len() < 2 {
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
        let mut expected = self.left.min(u64::from(self.chunk_size));
        // The chunk read is done with: its buffer holds the next one.
        let spare = std::mem::take(&mut self.current);
        let chunk = match &mut self.source {
            Source::Streamed(streamed) => {
                let _ = streamed.returns.send(spare);
                let piece = loop {
                    match streamed.pieces.recv() {
                        Ok(Ok(Piece::Bytes(piece))) => break piece,
                        Ok(Ok(Piece::ChunkEnd)) => {
                            let _ = streamed.done.send(());
                        }
                        Ok(Err(err)) => return Err(err),
                        Err(_) => return Err(short_manifest()),
                    }
                };
                if piece.len() as u64 > self.left {
                    Stats::add(&self.shared.stats.rejected, 1);
                    return Err(not_as_long());
                }
                expected = piece.len() as u64;
                // The last piece only once its chunk has ended as long as its manifest says.
                if expected == self.left {
                    match streamed.pieces.recv() {
                        Ok(Ok(Piece::ChunkEnd)) => {}
                        Ok(Err(err)) => return Err(err),
                        Ok(Ok(Piece::Bytes(_))) => {
                            Stats::add(&self.shared.stats.rejected, 1);
                            return Err(not_as_long());
                        }
                        Err(_) => return Err(short_manifest()),
                    }
                }
                piece
            }
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

/// A chunk not as long as its manifest says.
fn not_as_long() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "a chunk of the value is not as long as its manifest says",
    )
}

/// Starts the thread that streams `chunks` to the reader in pieces, at most [`AHEAD`] chunks
/// ahead of the one it reads: a chunk is only asked for once the reader has read to the end of
/// the chunk `AHEAD` + 1 before it, and then read whole without waiting for the reader (its
/// pieces queue), so that a slow reader never holds a request open. On demand if it cannot
/// start.
fn stream(shared: &Arc<Shared>, chunks: Vec<[u8; 32]>, chunk_size: u32, len: u64) -> Source {
    let (sender, pieces) = channel::<io::Result<Piece>>();
    let (done, finished) = channel::<()>();
    let (returns, returned) = channel::<Vec<u8>>();
    let fetching = Arc::clone(shared);
    let order = chunks.clone();
    let started = spawn_fetch(move || {
        for (index, (digest, expected)) in order.iter().zip(lengths(len, chunk_size)).enumerate() {
            // A failed receive: the reader is gone; nothing more is wanted.
            if index > AHEAD && finished.recv().is_err() {
                return;
            }
            let streamed = stream_chunk(&fetching, digest, expected, &sender, &returned)
                .map(|()| Piece::ChunkEnd);
            let failed = streamed.is_err();
            if sender.send(streamed).is_err() || failed {
                return;
            }
        }
    });
    if started {
        Source::Streamed(Streamed {
            pieces,
            done,
            returns,
        })
    } else {
        Source::OnDemand(chunks.into_iter())
    }
}

/// The lengths of the chunks of a value of `len` bytes in chunks of `chunk_size`, in order
/// (the last one shorter; zero past the end).
fn lengths(len: u64, chunk_size: u32) -> impl Iterator<Item = u64> {
    let mut left = len;
    std::iter::repeat_with(move || {
        let next = left.min(u64::from(chunk_size));
        left -= next;
        next
    })
}

/// Runs `fetch` on a thread of its own; `false` (logged) when none could be started, for the
/// caller to fetch on demand instead.
fn spawn_fetch(fetch: impl FnOnce() + Send + 'static) -> bool {
    match std::thread::Builder::new()
        .name("cache-remote-fetch".to_owned())
        .spawn(fetch)
    {
        Ok(_) => true,
        Err(err) => {
            tracing::debug!(error = %err, "could not start a thread to fetch chunks; fetching them on demand");
            false
        }
    }
}

/// Streams the chunk `digest`, which must be `expected` bytes long, to `sender` in pieces of at
/// most [`PIECE`] bytes, read into the buffers `returned` gives back when there are some. Stops
/// early, without an error, when the reader is gone.
fn stream_chunk(
    shared: &Shared,
    digest: &[u8; 32],
    expected: u64,
    sender: &Sender<io::Result<Piece>>,
    returned: &Receiver<Vec<u8>>,
) -> io::Result<()> {
    let name = chunk_name(&shared.config.prefix, digest);
    let max = usize::try_from(expected).unwrap_or(usize::MAX);
    let mut read = 0u64;
    let mut reader_gone = false;
    let outcome = run(&shared.breaker, &shared.stats, || {
        shared.fetch_engine.read_chunk(&name, max, &mut |body| {
            loop {
                let mut piece = returned.try_recv().unwrap_or_default();
                piece.resize(PIECE, 0);
                let mut filled = 0;
                while filled < PIECE {
                    match body.read(&mut piece[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        Err(err) => return Err(err),
                    }
                }
                if filled == 0 {
                    return Ok(());
                }
                piece.truncate(filled);
                read += filled as u64;
                if sender.send(Ok(Piece::Bytes(piece))).is_err() {
                    // The reader is gone; nothing more is wanted.
                    reader_gone = true;
                    return Ok(());
                }
            }
        })
    });
    match outcome {
        Outcome::Done(Some(())) => {}
        Outcome::Done(None) => return Err(gone(shared)),
        Outcome::Skipped => return Err(skipped()),
        Outcome::Failed(err) => return Err(io::Error::other(err.to_string())),
    }
    Stats::add(&shared.stats.bytes_in, read);
    if read != expected && !reader_gone {
        Stats::add(&shared.stats.rejected, 1);
        return Err(not_as_long());
    }
    Ok(())
}

/// A chunk that has gone, counted as a miss.
fn gone(shared: &Shared) -> io::Error {
    Stats::add(&shared.stats.misses, 1);
    io::Error::new(
        io::ErrorKind::NotFound,
        "a chunk of the value has gone from the remote",
    )
}

fn skipped() -> io::Error {
    io::Error::other("the remote is being skipped (breaker open)")
}

/// Starts the thread that fetches `chunks` ahead of the reader; on demand if it cannot start.
fn fetch_ahead(shared: &Arc<Shared>, chunks: Vec<[u8; 32]>, chunk_size: u32, len: u64) -> Source {
    let (sender, receiver) = sync_channel(AHEAD);
    let (returns, returned) = sync_channel::<Vec<u8>>(1);
    let fetching = Arc::clone(shared);
    let order = chunks.clone();
    let started = spawn_fetch(move || {
        for (digest, expected) in order.iter().zip(lengths(len, chunk_size)) {
            let spare = returned.try_recv().unwrap_or_default();
            let fetched = fetch_chunk(&fetching, digest, expected, spare);
            let failed = fetched.is_err();
            // A failed send: the reader is gone; nothing more is wanted.
            if sender.send(fetched).is_err() || failed {
                return;
            }
        }
    });
    if started {
        Source::Ahead(receiver, returns)
    } else {
        Source::OnDemand(chunks.into_iter())
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
        Outcome::Done(None) => return Err(gone(shared)),
        Outcome::Skipped => return Err(skipped()),
        Outcome::Failed(err) => return Err(io::Error::other(err.to_string())),
    };
    Stats::add(&shared.stats.bytes_in, chunk.len() as u64);
    if chunk.len() as u64 != expected {
        Stats::add(&shared.stats.rejected, 1);
        return Err(not_as_long());
    }
    Ok(chunk)
}
