//! What doctor reports: its options ([`DoctorOptions`]), each check's finding, a tag's
//! diagnosis, and the storage checks' item-by-item findings.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::CacheOptions;
use crate::tag::Tag;
use crate::values::CleanupReport;

/// How [`diagnose_tag`](super::diagnose_tag) runs.
#[derive(Clone, Debug)]
pub struct DoctorOptions {
    /// Fix what can be fixed (permissions, a file redb can repair) and move a file beyond repair
    /// aside. `false` changes nothing.
    pub repair: bool,
    /// How long to wait for another process's lock on the file (a commit in progress) before a
    /// check gives up ([`CheckStatus::NotChecked`]).
    pub timeout: Duration,
    /// redb's page cache while checking, in bytes.
    pub page_cache_bytes: usize,
}

impl Default for DoctorOptions {
    fn default() -> Self {
        let cache = CacheOptions::default();
        DoctorOptions {
            repair: false,
            timeout: cache.timeout,
            page_cache_bytes: cache.page_cache_bytes,
        }
    }
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    /// Nothing wrong.
    Healthy,
    /// Something was wrong and was fixed (only with repair).
    Repaired,
    /// Something is wrong and was not fixed.
    Damaged,
    /// The check does not apply (on this platform, or because the files check found the tag's
    /// files unusable, which it reports as damage).
    Skipped,
    /// The check could not look (redb could not read the file, another process held its lock
    /// past the timeout, an I/O error): nothing is known, so the tag is not healthy.
    NotChecked,
}

impl CheckStatus {
    /// The status as a lower-case word, as reports print it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Healthy => "healthy",
            CheckStatus::Repaired => "repaired",
            CheckStatus::Damaged => "damaged",
            CheckStatus::Skipped => "skipped",
            CheckStatus::NotChecked => "not checked",
        }
    }
}

impl std::fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckFinding {
    /// The check's name (`files`, `permissions`, `integrity`).
    pub check: &'static str,
    /// What it concluded.
    pub status: CheckStatus,
    /// One sentence saying what was found or done, naming the path involved.
    pub detail: String,
}

/// Every check of one tag, in the order they ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagDiagnosis {
    /// The tag.
    pub tag: Tag,
    /// Its database file.
    pub database_path: PathBuf,
    /// One finding per check.
    pub findings: Vec<CheckFinding>,
    /// What the storage checks found, item by item, before any repair; `None` when they did not
    /// run (the database could not be read, or the tag's files are unusable).
    pub storage: Option<StorageFindings>,
    /// With repair, what the tag's cleanup removed to fix what the storage checks found; `None`
    /// when it did not run (no repair asked, or nothing to fix).
    pub cleanup: Option<CleanupReport>,
}

/// An entry, and the file beside the database it refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryFile {
    /// The entry's key.
    pub key: Vec<u8>,
    /// Its blob file (`<tag>/blobs/ab/<hash>`) or owned directory (`<tag>/dirs/<name>`).
    pub path: PathBuf,
}

/// What the storage checks (`blobs`, `directories`, `temp files`) found: a tag's entries
/// compared with the files beside its database. Every list is sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageFindings {
    /// Entries whose blob file is missing (or is not a regular file).
    pub missing_blobs: Vec<EntryFile>,
    /// Entries whose blob file does not hold what was stored: another length, or content that
    /// does not match its hash.
    pub corrupt_blobs: Vec<EntryFile>,
    /// Entries whose owned directory is missing.
    pub missing_directories: Vec<EntryFile>,
    /// Blob files no entry refers to.
    pub orphan_blobs: Vec<PathBuf>,
    /// Directories under `dirs/` no entry owns.
    pub orphan_directories: Vec<PathBuf>,
    /// Temp files (`blobs/tmp/`) and staging directories (`dirs/.staging/`) of processes that
    /// are gone, or older than a day.
    pub stale_temp_files: Vec<PathBuf>,
}

impl StorageFindings {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        !self.has_reference_problems() && self.stale_temp_files.is_empty()
    }

    /// Whether an entry and the files disagree (stale temp files aside).
    pub(super) fn has_reference_problems(&self) -> bool {
        !(self.missing_blobs.is_empty()
            && self.corrupt_blobs.is_empty()
            && self.missing_directories.is_empty()
            && self.orphan_blobs.is_empty()
            && self.orphan_directories.is_empty())
    }

    /// What `self` and `other` both found: a problem seen by one look only was a write in
    /// progress.
    pub(super) fn seen_in_both(self, other: &StorageFindings) -> StorageFindings {
        fn both<T: PartialEq>(mut first: Vec<T>, second: &[T]) -> Vec<T> {
            first.retain(|item| second.contains(item));
            first
        }
        StorageFindings {
            missing_blobs: both(self.missing_blobs, &other.missing_blobs),
            corrupt_blobs: both(self.corrupt_blobs, &other.corrupt_blobs),
            missing_directories: both(self.missing_directories, &other.missing_directories),
            orphan_blobs: both(self.orphan_blobs, &other.orphan_blobs),
            orphan_directories: both(self.orphan_directories, &other.orphan_directories),
            stale_temp_files: both(self.stale_temp_files, &other.stale_temp_files),
        }
    }
}

impl TagDiagnosis {
    /// Whether every check ended healthy, repaired or skipped: nothing damaged is left and every
    /// check could look.
    pub fn is_healthy(&self) -> bool {
        !self.is_damaged() && self.all_checked()
    }

    /// Whether a check found damage that is still there.
    pub fn is_damaged(&self) -> bool {
        self.findings
            .iter()
            .any(|finding| finding.status == CheckStatus::Damaged)
    }

    /// Whether every check could look (none ended [`CheckStatus::NotChecked`]).
    pub fn all_checked(&self) -> bool {
        self.findings
            .iter()
            .all(|finding| finding.status != CheckStatus::NotChecked)
    }
}
