//! The engine seam: what the remote tier needs of a server, whatever it is. `remote.rs`,
//! `uploader.rs` and `lease.rs` speak only to an [`Engine`]; `redis.rs` implements it on
//! Redis/Valkey, `s3.rs` on S3-compatible object storage, and [`Split`] puts envelopes and
//! leases on one engine and chunks on another (Redis in front of S3). [`run`] puts one
//! operation through the circuit breaker and counts its outcome, the same way for every engine.

use std::fmt;

use crate::breaker::Breaker;
use crate::stats::Stats;

/// What kind of failure an engine reports: it decides what the breaker and the writer do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultKind {
    /// The server could not be reached, dropped the connection or answered with a server
    /// error (5xx): counts against the breaker.
    Unreachable {
        /// It ran out of time.
        timeout: bool,
    },
    /// The server refused the operation for lack of permission (Redis `NOPERM`, S3 403): a
    /// write refused turns publishing off for the process.
    Refused,
    /// The server answered with another error: it is up.
    Answered,
}

/// An engine operation that failed. The message never carries credentials.
#[derive(Clone, Debug)]
pub(crate) struct EngineError {
    pub(crate) kind: FaultKind,
    pub(crate) message: String,
}

impl EngineError {
    pub(crate) fn new(kind: FaultKind, message: impl Into<String>) -> Self {
        EngineError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What an operation through the breaker came to.
pub(crate) enum Outcome<T> {
    /// The server answered.
    Done(T),
    /// The breaker is open: nothing was attempted.
    Skipped,
    /// The server could not be reached, or answered with an error.
    Failed(EngineError),
}

/// The operations of one server. Names are the data model's (`envelope.rs`); `px` is the time
/// an object should live, in milliseconds (`None`: no expiry). Every method is one bounded
/// operation: the engine applies its timeouts.
pub(crate) trait Engine: Send + Sync + fmt::Debug {
    /// The stored length of the envelope `name` and at most its first `max` bytes; `None` when
    /// there is none. Nothing longer than `max` is read.
    fn get_envelope(&self, name: &str, max: usize) -> Result<Option<(u64, Vec<u8>)>, EngineError>;

    /// The chunk `name`, or `None` when it has gone. At most `max` bytes are read: a longer
    /// object is an error. `spare` is a buffer done with (empty, or a chunk already read) that
    /// the engine may read into instead of allocating one.
    fn get_chunk(
        &self,
        name: &str,
        max: usize,
        spare: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, EngineError>;

    /// Whether [`Engine::read_chunk`] streams a chunk's body as it arrives (S3: one response
    /// body read as the caller takes it) rather than handing over a chunk read whole.
    fn streams_chunks(&self) -> bool {
        false
    }

    /// The chunk `name` handed to `each` as a reader of its bytes (at most `max`: a longer
    /// object is an error), or `None` when it has gone. An error `each` returns is the
    /// operation's (an I/O error reading the body). By default the chunk read whole
    /// ([`Engine::get_chunk`]).
    fn read_chunk(
        &self,
        name: &str,
        max: usize,
        each: &mut dyn FnMut(&mut dyn std::io::Read) -> std::io::Result<()>,
    ) -> Result<Option<()>, EngineError> {
        let Some(bytes) = self.get_chunk(name, max, Vec::new())? else {
            return Ok(None);
        };
        each(&mut bytes.as_slice())
            .map_err(|err| EngineError::new(FaultKind::Answered, err.to_string()))?;
        Ok(Some(()))
    }

    /// Stores the envelope `name` (replacing one there).
    fn put_envelope(&self, name: &str, bytes: &[u8], px: Option<u64>) -> Result<(), EngineError>;

    /// Whether the chunk `name` is there; if so it is kept at least `px` longer (engines with
    /// no expiry on chunks only check).
    fn keep_chunk(&self, name: &str, px: Option<u64>) -> Result<bool, EngineError>;

    /// Stores the chunk `name`. A chunk is named by its content: one already there is as good.
    fn put_chunk(&self, name: &str, bytes: &[u8], px: Option<u64>) -> Result<(), EngineError>;

    /// The engine's fleet leases, when it has them (Redis does, S3 does not).
    fn leases(&self) -> Option<&dyn Leases> {
        None
    }
}

/// Fleet leases: a name holding a random token for a while (`lease.rs`).
pub(crate) trait Leases {
    /// Takes `name` for `ms` if nobody holds it; whether it was taken.
    fn take(&self, name: &str, token: &str, ms: u64) -> Result<bool, EngineError>;
    /// Extends `name` to `ms` from now if `token` still holds it; whether it did.
    fn renew(&self, name: &str, token: &str, ms: u64) -> Result<bool, EngineError>;
    /// Frees `name` if `token` still holds it.
    fn release(&self, name: &str, token: &str) -> Result<(), EngineError>;
}

/// Envelopes and leases on one engine, chunks on another: Redis's leases and small, fast
/// envelopes in front of S3's cheap bulk storage.
#[derive(Debug)]
pub(crate) struct Split {
    pub(crate) envelopes: Box<dyn Engine>,
    pub(crate) chunks: Box<dyn Engine>,
}

impl Engine for Split {
    fn get_envelope(&self, name: &str, max: usize) -> Result<Option<(u64, Vec<u8>)>, EngineError> {
        self.envelopes.get_envelope(name, max)
    }

    fn get_chunk(
        &self,
        name: &str,
        max: usize,
        spare: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        self.chunks.get_chunk(name, max, spare)
    }

    fn streams_chunks(&self) -> bool {
        self.chunks.streams_chunks()
    }

    fn read_chunk(
        &self,
        name: &str,
        max: usize,
        each: &mut dyn FnMut(&mut dyn std::io::Read) -> std::io::Result<()>,
    ) -> Result<Option<()>, EngineError> {
        self.chunks.read_chunk(name, max, each)
    }

    fn put_envelope(&self, name: &str, bytes: &[u8], px: Option<u64>) -> Result<(), EngineError> {
        self.envelopes.put_envelope(name, bytes, px)
    }

    fn keep_chunk(&self, name: &str, px: Option<u64>) -> Result<bool, EngineError> {
        self.chunks.keep_chunk(name, px)
    }

    fn put_chunk(&self, name: &str, bytes: &[u8], px: Option<u64>) -> Result<(), EngineError> {
        self.chunks.put_chunk(name, bytes, px)
    }

    fn leases(&self) -> Option<&dyn Leases> {
        self.envelopes.leases()
    }
}

/// Runs `operation` through `breaker`: skipped while it is open; a server that cannot be
/// reached counts against it, one that answers (even with an error) closes it.
pub(crate) fn run<T>(
    breaker: &Breaker,
    stats: &Stats,
    operation: impl FnOnce() -> Result<T, EngineError>,
) -> Outcome<T> {
    if !breaker.admit() {
        Stats::add(&stats.skipped, 1);
        return Outcome::Skipped;
    }
    match operation() {
        Ok(value) => {
            breaker.succeeded();
            Outcome::Done(value)
        }
        Err(err) => {
            Stats::add(&stats.errors, 1);
            match err.kind {
                FaultKind::Unreachable { timeout } => {
                    if timeout {
                        Stats::add(&stats.timeouts, 1);
                    }
                    if breaker.failed() {
                        tracing::warn!(error = %err, "the remote cache is unreachable; skipping it for a while");
                    }
                }
                FaultKind::Refused | FaultKind::Answered => breaker.succeeded(),
            }
            Outcome::Failed(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// Chunks in memory, and nothing else: what the default methods are built on.
    #[derive(Debug, Default)]
    struct Memory {
        chunks: Mutex<HashMap<String, Vec<u8>>>,
    }

    impl Engine for Memory {
        fn get_envelope(&self, _: &str, _: usize) -> Result<Option<(u64, Vec<u8>)>, EngineError> {
            Ok(None)
        }

        fn get_chunk(
            &self,
            name: &str,
            max: usize,
            _: Vec<u8>,
        ) -> Result<Option<Vec<u8>>, EngineError> {
            let chunks = self.chunks.lock().unwrap();
            match chunks.get(name) {
                Some(bytes) if bytes.len() > max => {
                    Err(EngineError::new(FaultKind::Answered, "longer than a chunk"))
                }
                found => Ok(found.cloned()),
            }
        }

        fn put_envelope(&self, _: &str, _: &[u8], _: Option<u64>) -> Result<(), EngineError> {
            Ok(())
        }

        fn keep_chunk(&self, name: &str, _: Option<u64>) -> Result<bool, EngineError> {
            Ok(self.chunks.lock().unwrap().contains_key(name))
        }

        fn put_chunk(&self, name: &str, bytes: &[u8], _: Option<u64>) -> Result<(), EngineError> {
            self.chunks
                .lock()
                .unwrap()
                .insert(name.to_owned(), bytes.to_vec());
            Ok(())
        }
    }

    fn read_all(
        engine: &dyn Engine,
        name: &str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let mut read = Vec::new();
        Ok(engine
            .read_chunk(name, max, &mut |body| body.read_to_end(&mut read).map(drop))?
            .map(|()| read))
    }

    #[test]
    fn by_default_a_chunk_is_read_whole_and_handed_over_and_a_split_reads_its_chunk_engine() {
        let memory = Memory::default();
        memory.put_chunk("c", b"chunk bytes", None).unwrap();
        assert!(!memory.streams_chunks(), "read whole, not streamed");
        assert_eq!(
            read_all(&memory, "c", 64).unwrap(),
            Some(b"chunk bytes".to_vec())
        );
        assert_eq!(read_all(&memory, "gone", 64).unwrap(), None);
        assert!(read_all(&memory, "c", 4).is_err(), "longer than max");
        // A failing reader is the operation's error.
        let failed = memory.read_chunk("c", 64, &mut |_| Err(std::io::Error::other("sink full")));
        assert!(failed.unwrap_err().to_string().contains("sink full"));

        let split = Split {
            envelopes: Box::new(Memory::default()),
            chunks: Box::new(memory),
        };
        assert!(!split.streams_chunks());
        assert_eq!(
            read_all(&split, "c", 64).unwrap(),
            Some(b"chunk bytes".to_vec())
        );
    }
}
