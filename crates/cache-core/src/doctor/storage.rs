//! The storage checks (`blobs`, `directories`, `temp files`): a tag's entries against the files
//! beside its database, in one shared inspection with a second look, and its repair through the
//! tag's own `cleanup()`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Duration;

use redb::ReadableDatabase;

use super::integrity::{close_quietly, handle};
use super::{CheckStatus, CheckTarget, EntryFile, StorageFindings, TagCheck};
use crate::codec::BlobRef;
use crate::config::CacheOptions;
use crate::error::{CacheError, ErrorChain, KeyDisplay, Result};
use crate::fsys;
use crate::store::backend::{Access, Opened, open_database};
use crate::store::blobs::{BlobFiles, BlobRead};
use crate::store::dirs::DirFiles;
use crate::store::{EntryFiles, FileRegistration, RedbCache, entries_with_files};
use crate::values::CleanupReport;

/// How long the storage checks wait before their second look. Publishing a blob or directory
/// and committing its entry happen within one write transaction (milliseconds), so a file seen
/// without its entry twice, this far apart, is not one being published.
const SECOND_LOOK_DELAY: Duration = Duration::from_millis(250);

// Storage: the entries against the files beside the database

/// Which part of the storage inspection a check reports.
#[derive(Clone, Copy)]
pub(super) enum StorageKind {
    /// Entries whose blob file is missing or damaged; blob files without an entry.
    Blobs,
    /// Entries whose directory is missing; directories without an entry.
    Directories,
    /// Temp files and staging directories of processes that are gone.
    TempFiles,
}

impl StorageKind {
    /// What of this kind `findings` holds, as a clause naming the items; `None` when nothing.
    fn describe(self, findings: &StorageFindings) -> Option<String> {
        let entries = |items: &[EntryFile], what: &str| {
            (!items.is_empty()).then(|| {
                let named: Vec<String> = items
                    .iter()
                    .map(|item| {
                        format!(
                            "key {} at {}",
                            KeyDisplay::new(&item.key),
                            item.path.display()
                        )
                    })
                    .collect();
                format!(
                    "{} {what} ({})",
                    count(items.len(), "entry", "entries"),
                    name_some(&named)
                )
            })
        };
        let files = |items: &[PathBuf], singular: &str, plural: &str| {
            (!items.is_empty()).then(|| {
                let named: Vec<String> = items
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect();
                format!(
                    "{} ({})",
                    count(items.len(), singular, plural),
                    name_some(&named)
                )
            })
        };
        let parts: Vec<String> = match self {
            StorageKind::Blobs => [
                entries(&findings.missing_blobs, "whose blob file is missing"),
                entries(
                    &findings.corrupt_blobs,
                    "whose blob file does not match its hash",
                ),
                files(
                    &findings.orphan_blobs,
                    "blob file no entry refers to",
                    "blob files no entry refers to",
                ),
            ]
            .into_iter()
            .flatten()
            .collect(),
            StorageKind::Directories => [
                entries(&findings.missing_directories, "whose directory is missing"),
                files(
                    &findings.orphan_directories,
                    "directory no entry owns",
                    "directories no entry owns",
                ),
            ]
            .into_iter()
            .flatten()
            .collect(),
            StorageKind::TempFiles => files(
                &findings.stale_temp_files,
                "temp file of a process that is gone",
                "temp files of processes that are gone",
            )
            .into_iter()
            .collect(),
        };
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    fn healthy(self) -> &'static str {
        match self {
            StorageKind::Blobs => {
                "every entry's blob file is present and matches its hash, and every blob file \
                 belongs to an entry"
            }
            StorageKind::Directories => {
                "every entry's directory is present, and every directory under dirs/ belongs to \
                 an entry"
            }
            StorageKind::TempFiles => "no temp files left by processes that are gone",
        }
    }
}

/// `1 entry`, `2 entries`.
fn count(number: usize, singular: &str, plural: &str) -> String {
    if number == 1 {
        format!("1 {singular}")
    } else {
        format!("{number} {plural}")
    }
}

/// The first few of `names`, and how many more there are: a finding stays one readable line
/// (the full lists are in [`TagDiagnosis::storage`]).
fn name_some(names: &[String]) -> String {
    const SHOWN: usize = 3;
    let shown: Vec<&str> = names.iter().take(SHOWN).map(String::as_str).collect();
    match names.len().saturating_sub(SHOWN) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// One of the storage checks: a view of the shared inspection.
pub(super) struct StorageCheck(pub(super) StorageKind);

impl TagCheck for StorageCheck {
    fn name(&self) -> &'static str {
        match self.0 {
            StorageKind::Blobs => "blobs",
            StorageKind::Directories => "directories",
            StorageKind::TempFiles => "temp files",
        }
    }

    fn run(&self, target: &CheckTarget<'_>) -> Result<(CheckStatus, String)> {
        if !target.database_is_regular_file() {
            return Ok((
                CheckStatus::Skipped,
                "not checked: the files check found the tag's files unusable".to_owned(),
            ));
        }
        let kind = self.0;
        Ok(match target.storage() {
            StorageState::Unreadable(reason) => (
                CheckStatus::NotChecked,
                format!(
                    "not checked: redb cannot read {} ({reason}); see the integrity check",
                    target.database.display()
                ),
            ),
            StorageState::Failed(reason) => {
                (CheckStatus::NotChecked, format!("not checked: {reason}"))
            }
            StorageState::Inspected(outcome) => match kind.describe(&outcome.found) {
                None => (CheckStatus::Healthy, kind.healthy().to_owned()),
                Some(found) if !target.options.repair => {
                    (CheckStatus::Damaged, format!("{found}; repair fixes this"))
                }
                Some(found) => match (&outcome.repair_error, &outcome.left) {
                    (Some(err), _) => (
                        CheckStatus::Damaged,
                        format!("{found}; could not repair: {err}"),
                    ),
                    (None, Err(err)) => (
                        CheckStatus::NotChecked,
                        format!("{found}; cleanup ran, but a look after it could not: {err}"),
                    ),
                    (None, Ok(left)) => match left.as_ref().and_then(|left| kind.describe(left)) {
                        Some(left) => (
                            CheckStatus::Damaged,
                            format!("{found}; still there after repair: {left}"),
                        ),
                        None => (CheckStatus::Repaired, format!("removed {found}")),
                    },
                },
            },
        })
    }
}

/// What the storage checks share.
pub(super) enum StorageState {
    /// redb could not read the database (the integrity check reports on it); why.
    Unreadable(String),
    /// The inspection could not run; why.
    Failed(String),
    /// Boxed: the other variants are one string.
    Inspected(Box<StorageOutcome>),
}

pub(super) struct StorageOutcome {
    /// What the inspection found.
    pub(super) found: StorageFindings,
    /// With repair: what cleanup removed.
    pub(super) cleanup: Option<CleanupReport>,
    /// With repair: what an inspection after it still found (`Ok(None)`: no repair ran), or why
    /// that inspection could not look.
    left: std::result::Result<Option<StorageFindings>, String>,
    /// With repair: why it could not run.
    repair_error: Option<String>,
}

/// Why one look at the storage ended early.
enum LookError {
    /// redb cannot read the database.
    Unreadable(String),
    Cache(CacheError),
}

impl From<CacheError> for LookError {
    fn from(err: CacheError) -> Self {
        LookError::Cache(err)
    }
}

pub(super) fn inspect_and_repair(target: &CheckTarget<'_>) -> StorageState {
    let found = match inspect(target) {
        Ok(found) => found,
        Err(LookError::Unreadable(reason)) => return StorageState::Unreadable(reason),
        Err(LookError::Cache(err)) => return StorageState::Failed(ErrorChain(&err).to_string()),
    };
    let mut outcome = StorageOutcome {
        found,
        cleanup: None,
        left: Ok(None),
        repair_error: None,
    };
    if outcome.found.is_empty() || !target.options.repair {
        return StorageState::Inspected(Box::new(outcome));
    }
    match repair_storage(target, &outcome.found) {
        Ok(report) => {
            tracing::info!(tag = %target.tag, ?report, "doctor ran cleanup to repair the tag's files");
            outcome.cleanup = Some(report);
            outcome.left = match inspect(target) {
                Ok(left) => Ok(Some(left)),
                Err(LookError::Unreadable(reason)) => Err(reason),
                Err(LookError::Cache(err)) => Err(ErrorChain(&err).to_string()),
            };
        }
        Err(err) => outcome.repair_error = Some(ErrorChain(&err).to_string()),
    }
    StorageState::Inspected(Box::new(outcome))
}

/// Looks at the tag's storage, and again a moment later if something seemed wrong: what both
/// looks found.
fn inspect(target: &CheckTarget<'_>) -> std::result::Result<StorageFindings, LookError> {
    let first = look(target, None)?;
    if !first.has_reference_problems() {
        return Ok(first);
    }
    std::thread::sleep(SECOND_LOOK_DELAY);
    // Only blobs found damaged the first time are hashed again: a problem counts only if both
    // looks find it.
    let suspects: HashSet<PathBuf> = first
        .corrupt_blobs
        .iter()
        .map(|entry| entry.path.clone())
        .collect();
    let second = look(target, Some(&suspects))?;
    Ok(first.seen_in_both(&second))
}

/// What a blob file holds for an entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BlobState {
    Fine,
    Missing,
    Corrupt,
}

/// One look: the files under `blobs/` and `dirs/` are listed, then the entries read, and the two
/// compared. Blobs are hashed (all of them, or only `verify_only`'s). Reads only.
fn look(
    target: &CheckTarget<'_>,
    verify_only: Option<&HashSet<PathBuf>>,
) -> std::result::Result<StorageFindings, LookError> {
    // Through the open tag directory, never following a symlink (`fsys`): a planted one is a
    // failed check naming it, never a read outside the root.
    let tag_dir = fsys::Dir::open_tag(target.canonical_root, target.tag.as_str(), false)?
        .ok_or_else(|| {
            CacheError::io(
                "inspecting",
                &target.directory,
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
    let tag_dir = std::sync::Arc::new(tag_dir);
    let blob_files = BlobFiles::new(std::sync::Arc::clone(&tag_dir));
    let dir_files = DirFiles::new(tag_dir);
    // Listed before the entries are read: a file moved into place after this is not listed, so
    // it cannot look like an orphan; one listed whose entry commits later is caught by the
    // second look.
    let blobs_on_disk = blob_files.list()?;
    let dirs_on_disk = dir_files.list()?;
    let entries = read_entries(target)?;

    let mut findings = StorageFindings::default();
    let mut referenced_blobs = HashSet::new();
    let mut referenced_dirs = HashSet::new();
    let mut blob_states: HashMap<[u8; 32], BlobState> = HashMap::new();
    for EntryFiles { key, blob, dir } in entries {
        if let Some(blob) = blob {
            referenced_blobs.insert(blob.hash);
            let path = blob_files.path(&blob);
            let state = match blob_states.get(&blob.hash) {
                Some(state) => *state,
                None => {
                    let verify = verify_only.is_none_or(|suspects| suspects.contains(&path));
                    let state = match blob_files.check(&blob, verify)? {
                        BlobRead::Verified(()) => BlobState::Fine,
                        BlobRead::Missing => BlobState::Missing,
                        BlobRead::Corrupt => BlobState::Corrupt,
                    };
                    blob_states.insert(blob.hash, state);
                    state
                }
            };
            let entry = EntryFile {
                key: key.clone(),
                path,
            };
            match state {
                BlobState::Fine => {}
                BlobState::Missing => findings.missing_blobs.push(entry),
                BlobState::Corrupt => findings.corrupt_blobs.push(entry),
            }
        }
        if let Some(name) = dir {
            if !dir_files.is_present(&name) {
                findings.missing_directories.push(EntryFile {
                    key,
                    path: dir_files.path(&name),
                });
            }
            referenced_dirs.insert(name);
        }
    }
    // A file listed above whose last entry was removed since has gone with it: only files still
    // there are orphans.
    for (hash, _) in blobs_on_disk {
        if !referenced_blobs.contains(&hash) && blob_files.exists(&hash)? {
            findings
                .orphan_blobs
                .push(blob_files.path(&BlobRef { hash, len: 0 }));
        }
    }
    for name in dirs_on_disk {
        if !referenced_dirs.contains(&name) && dir_files.exists(&name)? {
            findings.orphan_directories.push(dir_files.path(&name));
        }
    }
    // Judged exactly as cleanup judges them (`fsys::Dir::stale_temps`).
    findings.stale_temp_files = blob_files.stale_temps()?;
    findings.stale_temp_files.extend(dir_files.stale_staging()?);

    let by_path = |a: &EntryFile, b: &EntryFile| (&a.path, &a.key).cmp(&(&b.path, &b.key));
    findings.missing_blobs.sort_by(by_path);
    findings.corrupt_blobs.sort_by(by_path);
    findings.missing_directories.sort_by(by_path);
    findings.orphan_blobs.sort();
    findings.orphan_directories.sort();
    findings.stale_temp_files.sort();
    Ok(findings)
}

/// The entries that refer to files, read from a copy-on-write view of the file
/// (`Access::CheckWithoutWriting`): redb recovers a file a killed process left in memory, and
/// nothing is written. An empty file is a new tag, or one just moved aside by repair: no entries.
fn read_entries(target: &CheckTarget<'_>) -> std::result::Result<Vec<EntryFiles>, LookError> {
    let length = fs::metadata(&target.database)
        .map_err(|source| CacheError::io("reading", &target.database, source))?
        .len();
    if length == 0 {
        return Ok(Vec::new());
    }
    // One handle per file per process: refuse clearly if a coordinator of ours has it open.
    let _registration = FileRegistration::register(&target.database)?;
    let database = match open_database(
        &target.database,
        target.tag.as_str(),
        &handle(target, Access::CheckWithoutWriting),
    )? {
        Opened::Database(database) => database,
        Opened::Corrupt(reason) => return Err(LookError::Unreadable(reason)),
    };
    let read = catch_unwind(AssertUnwindSafe(|| {
        let txn = database.begin_read()?;
        entries_with_files(&txn)
    }));
    close_quietly(database);
    match read {
        Ok(Ok(entries)) => Ok(entries),
        Ok(Err(err @ (redb::Error::Corrupted(_) | redb::Error::RepairAborted))) => {
            Err(LookError::Unreadable(err.to_string()))
        }
        Ok(Err(err)) => Err(target.database_error(err).into()),
        Err(_) => Err(LookError::Unreadable("redb panicked reading it".to_owned())),
    }
}

/// The repair: the tag's own cleanup, without a size limit (so nothing live is evicted), after
/// reading each entry whose blob does not match its hash (cleanup checks presence and length,
/// not content; the read reports the entry as a suspect, which cleanup's own commit judges and
/// removes with its file). Entries found so are counted in the report's `missing_files`.
fn repair_storage(target: &CheckTarget<'_>, found: &StorageFindings) -> Result<CleanupReport> {
    let options = CacheOptions {
        max_size_bytes: u64::MAX,
        timeout: target.options.timeout,
        page_cache_bytes: target.options.page_cache_bytes,
        ..CacheOptions::default()
    };
    let cache = RedbCache::open(target.canonical_root, target.tag.clone(), options)?;
    let repaired = (|| {
        let mut found_by_reads = 0;
        for entry in &found.corrupt_blobs {
            if cache
                .get_to_writer(&entry.key, &mut std::io::sink())?
                .is_none()
            {
                found_by_reads += 1;
            }
        }
        let mut report = cache.cleanup()?;
        report.missing_files += found_by_reads;
        Ok(report)
    })();
    let closed = cache.close();
    let report = repaired?;
    closed?;
    Ok(report)
}
