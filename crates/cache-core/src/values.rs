//! The plain values the cache API returns (`EntryMetadata`, `CleanupReport`, `Compaction`) and
//! `AnyFormat`, the crate-private switch of a format-checked read. A leaf below both the store
//! (which builds them) and the handle in `cache/` (which returns them), so neither needs the other
//! to name them.

use std::time::{Duration, SystemTime};

use crate::codec::ValueFormat;

/// Whether a format-checked read accepts any stored format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnyFormat {
    /// Return the value whatever format wrote it (untyped reads).
    Yes,
    /// Only the requested format; another is a miss and the entry is removed.
    No,
}

/// What is stored about one entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMetadata {
    /// The key.
    pub key: Vec<u8>,
    /// The tag it lives in.
    pub tag: String,
    /// Size of the value in bytes.
    pub size_bytes: u64,
    /// When the value was stored.
    pub created: SystemTime,
    /// When it was last read by `get`, in any process; `None` if never.
    pub last_accessed: Option<SystemTime>,
    /// How many times it was read by `get`, in any process.
    pub access_count: u64,
    /// The time to live it was stored with; `None` never expires.
    pub ttl: Option<Duration>,
    /// When it expires; `None` never.
    pub expires_at: Option<SystemTime>,
    /// How the value was encoded.
    pub format: ValueFormat,
}

/// What `cleanup()` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Expired entries removed.
    pub expired: u64,
    /// Entries evicted to get under the size limit or the entry limit.
    pub evicted: u64,
    /// Entries removed because they could not be read.
    pub unreadable: u64,
    /// Entries removed because their blob or directory was missing or damaged.
    pub missing_files: u64,
    /// Blob files and directories removed because no entry owned them.
    pub orphan_files: u64,
    /// Temp files and staging directories of dead processes removed.
    pub temp_files: u64,
    /// Whether the database file was compacted.
    pub compaction: Compaction,
}

impl CleanupReport {
    /// Entries removed.
    pub fn total(&self) -> u64 {
        self.expired + self.evicted + self.unreadable + self.missing_files
    }
}

/// Whether `cleanup()` compacted the tag's database file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Compaction {
    /// Dead space was under the threshold.
    #[default]
    NotNeeded,
    /// Compacted: the file's size before and after.
    Compacted {
        /// Bytes before.
        before: u64,
        /// Bytes after.
        after: u64,
    },
    /// Compaction was due but could not run; the reason (for example another process reading
    /// the file at that moment).
    Skipped(String),
}
