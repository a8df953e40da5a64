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
//! Longer than 600 lines: the six checks share one inspection (`StorageFindings`, with its
//! second look) and one report type, and have not been cut into a `doctor/` folder yet (issue 14
//! proposes one). Its tests are in `doctor/tests.rs`.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{Database, ReadableDatabase};

use crate::codec::BlobRef;
use crate::config::{CacheOptions, Clock, SystemClock};
use crate::error::{CacheError, ErrorChain, KeyDisplay, Result};
use crate::files::DATABASE_FILE_NAME;
use crate::fsys;
use crate::store::backend::{Access, HandleSettings, Opened, is_corruption, open_database};
use crate::store::blobs::{BlobFiles, BlobRead};
use crate::store::dirs::DirFiles;
use crate::store::{EntryFiles, FileRegistration, RedbCache, entries_with_files, move_aside};
use crate::tag::Tag;
use crate::values::CleanupReport;

/// How long the storage checks wait before their second look. Publishing a blob or directory
/// and committing its entry happen within one write transaction (milliseconds), so a file seen
/// without its entry twice, this far apart, is not one being published.
const SECOND_LOOK_DELAY: Duration = Duration::from_millis(250);

/// How [`diagnose_tag`] runs.
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
    fn has_reference_problems(&self) -> bool {
        !(self.missing_blobs.is_empty()
            && self.corrupt_blobs.is_empty()
            && self.missing_directories.is_empty()
            && self.orphan_blobs.is_empty()
            && self.orphan_directories.is_empty())
    }

    /// What `self` and `other` both found: a problem seen by one look only was a write in
    /// progress.
    fn seen_in_both(self, other: &StorageFindings) -> StorageFindings {
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

/// The tag directory is a directory and the database a regular file, neither a symlink (the cache
/// refuses to follow symlinks out of the root, so a tag with one cannot be opened).
struct FileTypes;

impl TagCheck for FileTypes {
    fn name(&self) -> &'static str {
        "files"
    }

    fn run(&self, target: &CheckTarget<'_>) -> Result<(CheckStatus, String)> {
        for (path, what, is_right_type) in [
            (
                &target.directory,
                "tag directory",
                (|meta: &fs::Metadata| meta.is_dir()) as fn(&fs::Metadata) -> bool,
            ),
            (&target.database, "database file", |meta| meta.is_file()),
        ] {
            let meta = match fs::symlink_metadata(path) {
                Ok(meta) => meta,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    return Ok((
                        CheckStatus::Damaged,
                        format!("{what} {} does not exist", path.display()),
                    ));
                }
                Err(source) => return Err(CacheError::io("reading", path, source)),
            };
            if meta.file_type().is_symlink() {
                return Ok((
                    CheckStatus::Damaged,
                    format!(
                        "{what} {} is a symlink, which the cache refuses to follow; remove it by hand",
                        path.display()
                    ),
                ));
            }
            if !is_right_type(&meta) {
                return Ok((
                    CheckStatus::Damaged,
                    format!(
                        "{what} {} is not a {}; remove it by hand",
                        path.display(),
                        if meta.is_dir() { "file" } else { "directory" }
                    ),
                ));
            }
        }
        Ok((
            CheckStatus::Healthy,
            format!(
                "{} is a directory and {} a regular file",
                target.directory.display(),
                target.database.display()
            ),
        ))
    }
}

/// Tag directories are 0700 and database files 0600, as the cache creates them: a cache may hold
/// data other users of the machine should not read.
struct Permissions;

impl TagCheck for Permissions {
    fn name(&self) -> &'static str {
        "permissions"
    }

    #[cfg(unix)]
    fn run(&self, target: &CheckTarget<'_>) -> Result<(CheckStatus, String)> {
        use std::os::unix::fs::PermissionsExt;

        if !target.database_is_regular_file() {
            return Ok((
                CheckStatus::Skipped,
                "not checked: the files check found the tag's files unusable".to_owned(),
            ));
        }
        let mut loose = Vec::new();
        for (path, wanted) in [(&target.directory, 0o700), (&target.database, 0o600)] {
            let meta = fs::symlink_metadata(path)
                .map_err(|source| CacheError::io("reading", path, source))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                loose.push((path, mode, wanted));
            }
        }
        if loose.is_empty() {
            return Ok((
                CheckStatus::Healthy,
                "tag directory and database file are private to their owner".to_owned(),
            ));
        }
        if !target.options.repair {
            let described: Vec<String> = loose
                .iter()
                .map(|(path, mode, wanted)| {
                    format!(
                        "{} is {mode:04o} (repair sets {wanted:04o})",
                        path.display()
                    )
                })
                .collect();
            return Ok((
                CheckStatus::Damaged,
                format!("readable by other users: {}", described.join(", ")),
            ));
        }
        let mut fixed = Vec::new();
        for (path, mode, wanted) in loose {
            if let Err(source) = fs::set_permissions(path, fs::Permissions::from_mode(wanted)) {
                let err = CacheError::io("setting permissions of", path, source);
                return Ok((
                    CheckStatus::Damaged,
                    format!(
                        "{} is {mode:04o}, readable by other users; could not repair: {err}",
                        path.display()
                    ),
                ));
            }
            fixed.push(format!(
                "{} from {mode:04o} to {wanted:04o}",
                path.display()
            ));
        }
        Ok((CheckStatus::Repaired, format!("set {}", fixed.join(", "))))
    }

    #[cfg(not(unix))]
    fn run(&self, _: &CheckTarget<'_>) -> Result<(CheckStatus, String)> {
        Ok((
            CheckStatus::Skipped,
            "file modes are not checked on this platform".to_owned(),
        ))
    }
}

/// redb's own integrity check: every page checksum of the committed trees, and the allocator
/// state.
struct Integrity;

impl TagCheck for Integrity {
    fn name(&self) -> &'static str {
        "integrity"
    }

    fn run(&self, target: &CheckTarget<'_>) -> Result<(CheckStatus, String)> {
        if !target.database_is_regular_file() {
            return Ok((
                CheckStatus::Skipped,
                "not checked: the files check found the tag's files unusable".to_owned(),
            ));
        }
        let length = fs::metadata(&target.database)
            .map_err(|source| CacheError::io("reading", &target.database, source))?
            .len();
        if length == 0 {
            return Ok((
                CheckStatus::Healthy,
                format!(
                    "{} is empty: a new tag, initialised on its first use",
                    target.database.display()
                ),
            ));
        }
        // One handle per file per process: refuse clearly if a coordinator of ours has it open.
        let _registration = FileRegistration::register(&target.database)?;
        let verdict = check_without_writing(target)?;
        let path = target.database.display();
        Ok(match verdict {
            Verdict::Clean => (
                CheckStatus::Healthy,
                format!("redb verified every page of {path}"),
            ),
            _ if target.options.repair => repair_in_place(target, &verdict),
            Verdict::Repairable => (
                CheckStatus::Damaged,
                format!("redb found damage in {path} that it can repair; repair fixes it in place"),
            ),
            Verdict::BeyondRepair(reason) => (
                CheckStatus::Damaged,
                format!(
                    "{path} is damaged beyond redb's repair ({reason}); repair moves it aside and \
                     the tag starts empty"
                ),
            ),
        })
    }
}

/// The settings of the doctor's handles on the file.
fn handle(target: &CheckTarget<'_>, access: Access) -> HandleSettings {
    HandleSettings {
        access,
        timeout: target.options.timeout,
        page_cache_bytes: target.options.page_cache_bytes,
    }
}

/// Closes a database that may be in a bad state; a panic while closing is contained.
fn close_quietly(database: Database) {
    if catch_unwind(AssertUnwindSafe(move || drop(database))).is_err() {
        tracing::warn!("redb panicked closing a damaged database file");
    }
}

/// What redb concluded about the file.
enum Verdict {
    Clean,
    Repairable,
    BeyondRepair(String),
}

/// redb's integrity check on a copy-on-write view of the file (`Access::CheckWithoutWriting`):
/// crash recovery, if the file needs it, and the check's own repair happen in memory, and the
/// file is never written. Other processes' commits wait while the view is open, so what it reads
/// is one consistent state of the file.
fn check_without_writing(target: &CheckTarget<'_>) -> Result<Verdict> {
    let opened = open_database(
        &target.database,
        target.tag.as_str(),
        &handle(target, Access::CheckWithoutWriting),
    )?;
    Ok(match opened {
        Opened::Corrupt(reason) => Verdict::BeyondRepair(format!("redb cannot open it: {reason}")),
        Opened::Database(mut database) => {
            let checked = catch_unwind(AssertUnwindSafe(|| database.check_integrity()));
            close_quietly(database);
            match checked {
                Ok(Ok(true)) => Verdict::Clean,
                Ok(Ok(false)) => Verdict::Repairable,
                Ok(Err(err)) if is_corruption(&err) => Verdict::BeyondRepair(err.to_string()),
                Ok(Err(err)) => return Err(target.database_error(err)),
                Err(_) => Verdict::BeyondRepair("redb panicked checking it".to_owned()),
            }
        }
    })
}

/// The repair of what [`check_without_writing`] found: redb checks and repairs the file itself;
/// a file it cannot repair is moved aside and replaced by an empty one. A repair that cannot run
/// (a full disk, a read-only mount, another process holding the file) leaves the damage, and
/// says why.
fn repair_in_place(target: &CheckTarget<'_>, found: &Verdict) -> (CheckStatus, String) {
    let path = target.database.display();
    let found = match found {
        Verdict::BeyondRepair(reason) => {
            format!("{path} is damaged beyond redb's repair ({reason})")
        }
        _ => format!("redb found damage in {path}"),
    };
    match try_repair_in_place(target) {
        Ok(done) => (CheckStatus::Repaired, format!("{found}; {done}")),
        Err(err) => (
            CheckStatus::Damaged,
            format!("{found}; could not repair: {err}"),
        ),
    }
}

fn try_repair_in_place(target: &CheckTarget<'_>) -> Result<String> {
    let reason = match open_database(
        &target.database,
        target.tag.as_str(),
        &handle(target, Access::Shared),
    )? {
        Opened::Corrupt(reason) => format!("redb cannot open it: {reason}"),
        Opened::Database(mut database) => {
            // Waits for another process's write transaction at most `timeout` (the backend's
            // lock waits are bounded).
            let checked = catch_unwind(AssertUnwindSafe(|| database.check_integrity()));
            let reason = match checked {
                Ok(Ok(_)) => return Ok("redb repaired it in place".to_owned()),
                Ok(Err(err)) if is_corruption(&err) => err.to_string(),
                Ok(Err(err)) => return Err(target.database_error(err)),
                Err(_) => "redb panicked checking it".to_owned(),
            };
            close_quietly(database);
            reason
        }
    };
    let quarantined = move_aside(&target.database, SystemClock.now_ms())?;
    tracing::error!(tag = %target.tag, path = %target.database.display(), quarantined = %quarantined.display(), reason, "doctor moved a damaged cache file aside; the tag starts empty");
    Ok(format!(
        "redb could not repair it ({reason}); moved it to {} and the tag starts empty",
        quarantined.display()
    ))
}

// ---------------------------------------------------------------------------------------------
// Storage: the entries against the files beside the database

/// Which part of the storage inspection a check reports.
#[derive(Clone, Copy)]
enum StorageKind {
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
struct StorageCheck(StorageKind);

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
enum StorageState {
    /// redb could not read the database (the integrity check reports on it); why.
    Unreadable(String),
    /// The inspection could not run; why.
    Failed(String),
    /// Boxed: the other variants are one string.
    Inspected(Box<StorageOutcome>),
}

struct StorageOutcome {
    /// What the inspection found.
    found: StorageFindings,
    /// With repair: what cleanup removed.
    cleanup: Option<CleanupReport>,
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

fn inspect_and_repair(target: &CheckTarget<'_>) -> StorageState {
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

#[cfg(test)]
mod tests;
