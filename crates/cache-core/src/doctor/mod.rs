//! Health checks of a tag's files (file types, permissions, database integrity, and the blobs,
//! owned directories and temp files beside the database), run read-only or with repair: what
//! `glovebox-cache doctor` runs.
//!
//! The checks are a list ([`CHECKS`]): each is a [`TagCheck`] with a name and a `run`, and a new
//! check is one more entry.
//!
//! Without repair nothing is written: even opening a file read-write lets redb change it (it runs
//! crash recovery, or falls back to its other commit slot), so redb opens a copy-on-write view of
//! the file instead (`store::backend::OverlayBackend`: reads from the file, writes in memory).
//! redb runs its recovery and integrity check on the view, and the entries are read from it, so
//! a file a killed process left needing recovery is checked like any other. While a view is open, other
//! processes' commits wait (the view holds redb's writer byte), so the file does not change under
//! it. With repair, a file the check finds damaged is repaired by redb in place when it can; a
//! file beyond repair is moved aside to `cache.redb.corrupt-<ms>` (as an open of a corrupt file
//! does) and the tag starts empty.
//!
//! A check that cannot look (another process holds the file's lock past `timeout`, an I/O error)
//! ends [`CheckStatus::NotChecked`], never healthy; a repair that cannot run (a full disk, a
//! read-only mount) leaves the check [`CheckStatus::Damaged`], saying why.
//!
//! The storage checks (`blobs`, `directories`, `temp files`) share one inspection: the entries
//! are read through such a view and compared with the files under `blobs/` and `dirs/`
//! (every referenced blob is hashed). Another process may be publishing or removing a file at
//! that moment (a blob or directory moves into place just before the commit that records it, and
//! goes with the commit that drops it), so a problem is reported only if a second look, a moment
//! later, finds it too. With repair, the tag's own `cleanup()` fixes what was found (it removes
//! entries without their files, files without entries, and stale temp files, inside its write
//! transaction); entries whose blob does not match its hash, which cleanup does not hash, are
//! first read once: the read reports each as a suspect, and cleanup's commit, which judges
//! suspects under the write lock, removes the entry and then its file.
//!
//!
//! The folder's files, by concern: `report.rs` the options and the report types,
//! `files.rs` the file-type and permission checks, `integrity.rs` redb's integrity check and
//! its repair, `storage.rs` the entries against the files beside the database (with its second
//! look and its repair through `cleanup()`). Its tests are in `doctor/tests.rs`.

use std::cell::OnceCell;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{CacheError, ErrorChain, Result};
use crate::files::DATABASE_FILE_NAME;
use crate::tag::Tag;

mod files;
mod integrity;
mod report;
mod storage;

use files::{FileTypes, Permissions};
use integrity::Integrity;
pub use report::{
    CheckFinding, CheckStatus, DoctorOptions, EntryFile, StorageFindings, TagDiagnosis,
};
use storage::{StorageCheck, StorageKind, StorageOutcome, StorageState, inspect_and_repair};

/// Runs every check on `<canonical_root>/<tag>/`. `canonical_root` comes from
/// [`crate::prepare_root`].
///
/// The tag's file must not be open in this process (through a [`crate::Coordinator`]); if it is,
/// the integrity check ends [`CacheError::AlreadyOpenInProcess`] ([`CheckStatus::NotChecked`]).
/// Other processes may keep using the tag while it is checked: while the file is read their
/// commits wait (within their own `timeout`), and a commit in progress makes the check wait (at
/// most `options.timeout`, then the check is not checked). With repair, a file beyond repair is
/// moved aside under them, so stop them first. With repair, when the storage checks find something, the tag is
/// opened and its `cleanup()` runs (without a size limit: expired entries go, nothing is
/// evicted); [`TagDiagnosis::cleanup`] says what it removed.
pub fn diagnose_tag(canonical_root: &Path, tag: &Tag, options: &DoctorOptions) -> TagDiagnosis {
    let directory = canonical_root.join(tag.as_str());
    let target = CheckTarget {
        tag,
        canonical_root,
        database: directory.join(DATABASE_FILE_NAME),
        directory,
        options,
        storage: OnceCell::new(),
    };
    let findings = CHECKS
        .iter()
        .map(|check| {
            let (status, detail) = check.run(&target).unwrap_or_else(|err| {
                (
                    CheckStatus::NotChecked,
                    format!("not checked: {}", ErrorChain(&err)),
                )
            });
            tracing::debug!(tag = %tag, check = check.name(), %status, detail, "doctor check");
            CheckFinding {
                check: check.name(),
                status,
                detail,
            }
        })
        .collect();
    let (storage, cleanup) = match target.storage.into_inner() {
        Some(StorageState::Inspected(outcome)) => {
            let StorageOutcome { found, cleanup, .. } = *outcome;
            (Some(found), cleanup)
        }
        _ => (None, None),
    };
    TagDiagnosis {
        tag: tag.clone(),
        database_path: target.database,
        findings,
        storage,
        cleanup,
    }
}

/// The checks, in the order they run. Later checks skip a file an earlier one found unusable;
/// the storage checks run after the integrity check, so with repair they read a repaired file.
const CHECKS: &[&dyn TagCheck] = &[
    &FileTypes,
    &Permissions,
    &Integrity,
    &StorageCheck(StorageKind::Blobs),
    &StorageCheck(StorageKind::Directories),
    &StorageCheck(StorageKind::TempFiles),
];

/// What a check looks at.
struct CheckTarget<'a> {
    tag: &'a Tag,
    canonical_root: &'a Path,
    directory: PathBuf,
    database: PathBuf,
    options: &'a DoctorOptions,
    /// The storage checks' shared inspection (and repair), run by the first of them.
    storage: OnceCell<StorageState>,
}

impl CheckTarget<'_> {
    /// Whether the database path is a regular file (not a symlink), so that it may be opened.
    fn database_is_regular_file(&self) -> bool {
        fs::symlink_metadata(&self.database).is_ok_and(|meta| meta.is_file())
            && fs::symlink_metadata(&self.directory).is_ok_and(|meta| meta.is_dir())
    }

    fn database_error(&self, err: impl Into<redb::Error>) -> CacheError {
        CacheError::database(self.tag.as_str(), &self.database, err)
    }

    /// The storage inspection (and, with repair, its repair), run once for all storage checks.
    fn storage(&self) -> &StorageState {
        self.storage.get_or_init(|| inspect_and_repair(self))
    }
}

/// One check of a tag's files.
trait TagCheck: Sync {
    /// The name reports show.
    fn name(&self) -> &'static str;

    /// Runs the check (and, with `options.repair`, its repair).
    fn run(&self, target: &CheckTarget<'_>) -> Result<(CheckStatus, String)>;
}

#[cfg(test)]
mod tests;
