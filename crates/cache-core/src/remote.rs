//! The extension point of a remote tier: [`RemoteStore`], which a crate outside the core
//! implements on a shared engine (Redis, S3-compatible storage) so that a fleet of machines shares
//! one cache. The core holds no network code; it calls the remote at two places:
//!
//! - **On a local miss** (`cache/remote.rs`): [`RemoteStore::fetch`]. A found entry is checked
//!   (format, expiry), stored locally with the time it has left (a *backfill*), and served. A
//!   fetch error is logged and is a miss: a sick remote never fails a local read.
//! - **After a commit has landed** (`store/commit.rs`): [`RemoteStore::publish`] with each value
//!   the commit stored, except backfills (they came from the remote) and directories (not
//!   published yet). It is called on the committing thread while the tag's write lock is held, so
//!   an implementation must only queue the upload (write-behind), never wait on the network.
//!
//! A leaf: it names the codec's `ValueFormat`, the `Tag`, `RemoteCounters` and `RootFiles`,
//! and nothing of the store or the handle. More calls: [`RemoteStore::drain`] (wait for queued
//! uploads; `flush`, `close`), [`RemoteStore::lease`] (the fleet's lease for single flight,
//! asked by the machine's leader in `flight/mod.rs`), [`RemoteStore::take_counters`] (the
//! remote's counts, persisted with a tag's counters by the store that takes them) and
//! [`RemoteStore::attach_root`] (the cache root, for the files a remote keeps there). Not built
//! yet: publishing directories.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::time::{Duration, SystemTime};

use crate::codec::ValueFormat;
use crate::root_files::RootFiles;
use crate::stats::RemoteCounters;
use crate::tag::Tag;

/// A remote tier shared by several machines. See the module docs for when the cache calls it.
pub trait RemoteStore: Send + Sync + fmt::Debug {
    /// Looks up `key` of `tag`, after a local miss. `Ok(None)` is a miss. An `Err` is logged and
    /// treated as a miss by the caller.
    ///
    /// The implementation answers for the entry's integrity (checksums, signatures): what it
    /// returns is stored locally and served as it is.
    fn fetch(&self, tag: &Tag, key: &[u8]) -> Result<Option<RemoteEntry>, RemoteError>;

    /// Offers a value that a local commit has just made durable. Must not block: queue the
    /// upload. Failures are the implementation's to log and count; they never reach the caller
    /// whose write this was.
    fn publish(&self, entry: PublishedEntry);

    /// Waits at most `within` for what [`RemoteStore::publish`] queued to be uploaded, and
    /// says what became of it. Called by [`crate::Cache::flush`] and [`crate::Cache::close`]
    /// after the local commit, so that a process that flushes or closes before it exits (the
    /// command line does) has published what it wrote, or counted it as dropped. The default
    /// queues nothing and so waits for nothing.
    fn drain(&self, within: Duration) -> DrainReport {
        let _ = within;
        DrainReport::default()
    }

    /// Takes the fleet-wide lease of `key` for `duration`, for a single flight: called by the
    /// machine's leader (the process holding the key's local lease) after a miss, before it
    /// computes. `Granted`: compute, renewing the lease, and release it after the value is
    /// published. `HeldElsewhere`: another machine computes; the leader polls (its reads go
    /// through the remote) until the value appears or the lease can be taken. `NotCoordinated`
    /// (the default, and what an implementation answers when it cannot reach its server):
    /// compute. A failure anywhere costs duplicate work, never a wrong value.
    fn lease(&self, tag: &Tag, key: &[u8], duration: Duration) -> RemoteLease {
        let _ = (tag, key, duration);
        RemoteLease::NotCoordinated
    }

    /// Hands over what the remote has counted since the last call (every field of
    /// [`RemoteCounters`] but `backfills` and `fleet_waits`, which the core counts). The store
    /// that takes them (at a commit, a close or `get_stats`) adds them to its tag's counters,
    /// which are persisted like the local ones: each count is taken once. Must be cheap: it is
    /// called at every commit. The default counts nothing.
    fn take_counters(&self) -> RemoteCounters {
        RemoteCounters::default()
    }

    /// Tells the remote the cache root it serves, for the small files it may keep there (a
    /// breaker hint that short-lived processes share): called by the coordinator each time it
    /// opens a tag with this remote attached, and by a program that uses the remote without
    /// opening a tag. The default keeps nothing.
    fn attach_root(&self, root: &RootFiles) {
        let _ = root;
    }
}

/// What [`RemoteStore::lease`] came to.
pub enum RemoteLease {
    /// This machine computes; the guard renews and releases the lease.
    Granted(Box<dyn RemoteLeaseGuard>),
    /// Another machine holds the lease.
    HeldElsewhere,
    /// The remote does not coordinate this computation: compute.
    NotCoordinated,
}

impl fmt::Debug for RemoteLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RemoteLease::Granted(_) => "Granted",
            RemoteLease::HeldElsewhere => "HeldElsewhere",
            RemoteLease::NotCoordinated => "NotCoordinated",
        })
    }
}

/// A fleet-wide lease held by this machine. The implementation keeps it alive while the guard
/// lives (a renewal thread, say), and gives it up when it is released or dropped (a panicking
/// computation drops it).
pub trait RemoteLeaseGuard: Send + Sync {
    /// Gives the lease up, only if it is still this machine's.
    fn release(&self);
}

/// What [`RemoteStore::drain`] came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Uploads that completed while draining (or before, since the last drain).
    pub published: u64,
    /// Uploads given up: the queue was full, the upload failed, or `within` ran out.
    pub dropped: u64,
    /// Uploads still queued when `within` ran out.
    pub pending: u64,
}

/// What [`RemoteStore::fetch`] found.
#[derive(Debug)]
pub struct RemoteEntry {
    /// How the value was encoded; a typed read of another schema version is a miss.
    pub format: ValueFormat,
    /// When it expires; `None` never. An entry already expired is a miss.
    pub expires_at: Option<SystemTime>,
    /// The value.
    pub value: RemoteValue,
}

/// A fetched value: in memory, or a stream for a large one (stored locally as a blob, chunk by
/// chunk, without being held in memory whole).
pub enum RemoteValue {
    /// The whole value.
    Bytes(Vec<u8>),
    /// The value's bytes, `len` of them.
    Stream {
        /// Yields the value.
        reader: Box<dyn Read + Send>,
        /// How many bytes `reader` yields.
        len: u64,
    },
}

impl fmt::Debug for RemoteValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteValue::Bytes(bytes) => f.debug_tuple("Bytes").field(&bytes.len()).finish(),
            RemoteValue::Stream { len, .. } => f
                .debug_struct("Stream")
                .field("len", len)
                .finish_non_exhaustive(),
        }
    }
}

/// A value a local commit stored, offered to [`RemoteStore::publish`].
#[derive(Debug)]
pub struct PublishedEntry {
    /// Its tag.
    pub tag: Tag,
    /// Its key.
    pub key: Vec<u8>,
    /// How it was encoded.
    pub format: ValueFormat,
    /// When it expires; `None` never.
    pub expires_at: Option<SystemTime>,
    /// The value.
    pub value: PublishedValue,
}

/// The bytes of a [`PublishedEntry`].
#[derive(Debug)]
pub enum PublishedValue {
    /// A value stored inline in the tag's file.
    Bytes(Vec<u8>),
    /// A value stored as a blob file: the file, opened read-only (it stays readable when the
    /// entry is later removed), its length and its blake3 hash (the file's name; the reader
    /// should check the bytes against it).
    Blob {
        /// The blob file.
        file: File,
        /// Its length in bytes.
        len: u64,
        /// The blake3 hash of its content.
        hash: [u8; 32],
    },
}

/// Why a remote operation failed. The cache logs it and goes on as on a miss.
#[derive(Debug, thiserror::Error)]
#[error("remote {operation} failed: {message}")]
pub struct RemoteError {
    /// What was attempted (`fetch`, `publish`, ...).
    pub operation: &'static str,
    /// Why it failed.
    pub message: String,
}

impl RemoteError {
    /// An error of `operation` with `message`.
    pub fn new(operation: &'static str, message: impl Into<String>) -> Self {
        RemoteError {
            operation,
            message: message.into(),
        }
    }
}

/// Whether entries of a tag (and key prefix) may leave the machine: a rule of the sharing
/// policy. Domain crates declare theirs as constants (a machine-local fact, such as whether a
/// docker image is present, must never be served to another machine); a program passes them to
/// [`crate::Coordinator::with_sharing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharingRule {
    /// The tag the rule is about.
    pub tag: &'static str,
    /// The keys it is about: those starting with this (empty: the whole tag).
    pub key_prefix: &'static str,
    /// Whether they are shared through the remote tier.
    pub share: bool,
    /// Why, for the docs and `remote status`.
    pub reason: &'static str,
}

/// The sharing policy: rules by tag and key prefix; the longest matching prefix decides, and a
/// key no rule matches is shared.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharingPolicy {
    rules: Vec<SharingRule>,
}

impl SharingPolicy {
    pub(crate) fn add(&mut self, rules: &[SharingRule]) {
        self.rules.extend_from_slice(rules);
    }

    /// Whether `key` of `tag` may be fetched, published and leased through the remote tier.
    pub(crate) fn shares(&self, tag: &Tag, key: &[u8]) -> bool {
        self.rules
            .iter()
            .filter(|rule| rule.tag == tag.as_str() && key.starts_with(rule.key_prefix.as_bytes()))
            .max_by_key(|rule| rule.key_prefix.len())
            .is_none_or(|rule| rule.share)
    }
}
