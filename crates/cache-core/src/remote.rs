//! The extension point of a remote tier: [`RemoteStore`], which a crate outside the core
//! implements on a shared engine (Redis, S3-compatible storage) so that a fleet of machines shares
//! one cache. The core holds no network code; it calls the remote at two places:
//!
//! - **On a local miss** (`cache/remote.rs`): [`RemoteStore::fetch`]. A found entry is checked
//!   (format, expiry), stored locally with the time it has left (a *backfill*), and served. A
//!   fetch error is logged and is a miss: a sick remote never fails a local read. A directory
//!   ([`RemoteValue::Directory`]) is staged and validated like an archive import first
//!   (`store/remote_dirs.rs`).
//! - **After a commit has landed** (`store/commit.rs`, `store/api.rs` for directories):
//!   [`RemoteStore::publish`] with each value the commit stored, except backfills (they came
//!   from the remote). It is called on the committing thread, so an implementation must only
//!   queue the upload (write-behind), never wait on the network.
//!
//! A leaf: it names the codec's `ValueFormat`, the `Tag`, `RemoteCounters` and `RootFiles`,
//! and nothing of the store or the handle. More calls: [`RemoteStore::drain`] (wait for queued
//! uploads; `flush`, `close`), [`RemoteStore::lease`] (the fleet's lease for single flight,
//! asked by the machine's leader in `flight/mod.rs`), [`RemoteStore::take_counters`] (the
//! remote's counts, persisted with a tag's counters by the store that takes them) and
//! [`RemoteStore::attach_root`] (the cache root, for the files a remote keeps there). Directories
//! are published and fetched as a listing plus their files' contents in one stream
//! ([`PublishedValue::Directory`], [`RemoteValue::Directory`]).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
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
    /// returns is stored locally and served as it is, except a [`RemoteValue::Stream`], which
    /// the core checks against the digest it carries.
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
    /// [`RemoteCounters`] but `backfills` and `fleet_waits`, which the core counts; the core
    /// adds to `rejected` the streams it finds not to match their digest). The store
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
    /// The value's bytes, `len` of them, whose blake3 hash is `digest`.
    ///
    /// The core checks the bytes against `digest` before it stores or returns any of them (a
    /// value stored as a blob is hashed as it is written, to name its file: the same pass
    /// checks it), so `reader` need not check the whole itself. A stream whose bytes do not
    /// match, or are not `len` long, is a miss, counted as rejected in the tag's remote
    /// counters, and nothing of it is stored. An error from `reader` is a miss too.
    Stream {
        /// Yields the value.
        reader: Box<dyn Read + Send>,
        /// How many bytes `reader` yields.
        len: u64,
        /// The blake3 hash of those bytes.
        digest: [u8; 32],
    },
    /// A directory owned by the entry, with the entry's value. The core checks `items` as it
    /// checks an archive before it writes anything (see [`DirectoryItem`]), then writes each
    /// file's `len` bytes from `contents`, in list order, into a staged directory.
    Directory {
        /// The entry's value (stored with the directory, as `Cache::set_directory`'s `value`).
        value: Vec<u8>,
        /// The directory's files and subdirectories.
        items: Vec<DirectoryItem>,
        /// The files' contents, concatenated in the order of `items`. An error from it (a
        /// chunk gone, a digest that does not match) makes the read a miss and stores nothing.
        contents: Box<dyn Read + Send>,
    },
}

/// One file or subdirectory of a directory that travels through the remote tier.
///
/// What the core writes from a fetched list, it writes only if the whole list is sound: every
/// `path` relative and `/`-separated, with no empty, `.` or `..` component and no NUL; no path
/// twice; no path below a file; a count and a total length within the tag's limits. Modes are
/// masked to the permission bits (`0o777`). A subdirectory not listed is created (0700) as
/// the parent of what is listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryItem {
    /// The path relative to the directory, `/`-separated (`assets/logo.png`).
    pub path: String,
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// What it is.
    pub kind: DirectoryItemKind,
}

/// What a [`DirectoryItem`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectoryItemKind {
    /// A subdirectory.
    Dir,
    /// A regular file of `len` bytes.
    File {
        /// Its length.
        len: u64,
    },
}

impl DirectoryItem {
    /// The file's length; 0 for a directory.
    pub fn file_len(&self) -> u64 {
        match self.kind {
            DirectoryItemKind::File { len } => len,
            DirectoryItemKind::Dir => 0,
        }
    }
}

impl fmt::Debug for RemoteValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteValue::Bytes(bytes) => f.debug_tuple("Bytes").field(&bytes.len()).finish(),
            RemoteValue::Stream { len, .. } => f
                .debug_struct("Stream")
                .field("len", len)
                .finish_non_exhaustive(),
            RemoteValue::Directory { value, items, .. } => f
                .debug_struct("Directory")
                .field("value", &value.len())
                .field("items", &items.len())
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
    /// A directory owned by the entry, with the entry's value.
    Directory(PublishedDirectory),
}

/// A directory a local commit stored, offered to [`RemoteStore::publish`]: the entry's value,
/// the directory's items in a deterministic order (paths sorted bytewise, a directory before
/// what it holds), and a way to read the files' contents.
///
/// The contents are read through the stored directory, held open (one descriptor, however
/// many files: a queue of published directories must not exhaust the process's descriptors),
/// each file opened when its turn comes without following a symlink and checked against its
/// listed length. A directory removed or changed before its upload fails to read: the upload
/// is then dropped.
pub struct PublishedDirectory {
    /// The entry's value.
    pub value: Vec<u8>,
    /// Its files and subdirectories. A directory holding a symlink (or anything else that is
    /// neither a file nor a directory) is not published.
    pub items: Vec<DirectoryItem>,
    contents: Box<dyn Fn() -> io::Result<Box<dyn Read + Send>> + Send + Sync>,
}

impl PublishedDirectory {
    /// A directory to publish; `contents` opens a new reader of the files' contents,
    /// concatenated in the order of `items`, each time it is called.
    pub fn new(
        value: Vec<u8>,
        items: Vec<DirectoryItem>,
        contents: Box<dyn Fn() -> io::Result<Box<dyn Read + Send>> + Send + Sync>,
    ) -> Self {
        PublishedDirectory {
            value,
            items,
            contents,
        }
    }

    /// The files' contents, concatenated in the order of `items`: a new reader each call (an
    /// uploader may read them twice, once to hash them and once to send them).
    pub fn contents(&self) -> io::Result<Box<dyn Read + Send>> {
        (self.contents)()
    }

    /// The sum of the files' lengths: what [`PublishedDirectory::contents`] yields.
    pub fn contents_len(&self) -> u64 {
        self.items
            .iter()
            .map(DirectoryItem::file_len)
            .fold(0, u64::saturating_add)
    }
}

impl fmt::Debug for PublishedDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishedDirectory")
            .field("value", &self.value.len())
            .field("items", &self.items)
            .finish_non_exhaustive()
    }
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

/// The sharing policy: rules by tag and key prefix; the longest matching prefix decides (of
/// rules with the same prefix, the one added last: a program overrides a domain's rule by
/// adding its own after it), and a key no rule matches is shared.
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
