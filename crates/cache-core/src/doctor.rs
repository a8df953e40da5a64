//! Health checks of a tag's files (file types, permissions, database integrity), run read-only
//! or with repair: what `glovebox-cache doctor` runs.
//!
//! The checks are a list ([`CHECKS`]): each is a [`TagCheck`] with a name and a `run`, and a new
//! check (orphan blobs, orphan workspace directories, once blobs exist) is one more entry.
//!
//! Without repair nothing is written: even opening a damaged file read-write lets redb change it
//! (it falls back to its other commit slot), so the integrity check runs on a copy, taken under a
//! read-only handle's snapshot. With repair, redb repairs the file in place when it can; a file
//! beyond repair is moved aside to `cache.redb.corrupt-<ms>` (as an open of a corrupt file does)
//! and the tag starts empty.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redb::{ConcurrencyMode, Database, ReadableDatabase, TransactionError, WriteTransaction};

use crate::config::{CacheOptions, Clock, SystemClock};
use crate::error::{CacheError, Result};
use crate::files::{DATABASE_FILE_NAME, FileRegistration, is_corruption};
use crate::tag::Tag;

/// How [`diagnose_tag`] runs.
#[derive(Clone, Debug)]
pub struct DoctorOptions {
    /// Fix what can be fixed (permissions, a file redb can repair) and move a file beyond repair
    /// aside. `false` changes nothing.
    pub repair: bool,
    /// How long to wait for another process's write lock before giving up on the integrity check.
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
    /// The check does not apply (on this platform, or because an earlier check found the file
    /// unusable).
    Skipped,
    /// The check could not run (an I/O error, another process holding the write lock too long).
    Failed,
}

impl CheckStatus {
    /// The status as a lower-case word, as reports print it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Healthy => "healthy",
            CheckStatus::Repaired => "repaired",
            CheckStatus::Damaged => "damaged",
            CheckStatus::Skipped => "skipped",
            CheckStatus::Failed => "failed",
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
}

impl TagDiagnosis {
    /// Whether every check ended healthy, repaired or skipped: nothing damaged is left and every
    /// check could run.
    pub fn is_healthy(&self) -> bool {
        self.findings
            .iter()
            .all(|finding| !matches!(finding.status, CheckStatus::Damaged | CheckStatus::Failed))
    }
}

/// Runs every check on `<canonical_root>/<tag>/`. `canonical_root` comes from
/// [`crate::prepare_root`].
///
/// The tag's file must not be open in this process (through a [`crate::Coordinator`]); if it is,
/// the integrity check fails with [`CacheError::AlreadyOpenInProcess`]. Other processes may keep
/// using the tag while it is checked; with repair, a file beyond repair is moved aside under
/// them, so stop them first.
pub fn diagnose_tag(canonical_root: &Path, tag: &Tag, options: &DoctorOptions) -> TagDiagnosis {
    let directory = canonical_root.join(tag.as_str());
    let target = CheckTarget {
        tag,
        database: directory.join(DATABASE_FILE_NAME),
        directory,
        options,
    };
    let findings = CHECKS
        .iter()
        .map(|check| {
            let (status, detail) = check.run(&target).unwrap_or_else(|err| {
                (
                    CheckStatus::Failed,
                    format!("the check could not run: {err}"),
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
    TagDiagnosis {
        tag: tag.clone(),
        database_path: target.database,
        findings,
    }
}

/// The checks, in the order they run. Later checks skip a file an earlier one found unusable.
const CHECKS: &[&dyn TagCheck] = &[&FileTypes, &Permissions, &Integrity];

/// What a check looks at.
struct CheckTarget<'a> {
    tag: &'a Tag,
    directory: PathBuf,
    database: PathBuf,
    options: &'a DoctorOptions,
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
            fs::set_permissions(path, fs::Permissions::from_mode(wanted))
                .map_err(|source| CacheError::io("setting permissions of", path, source))?;
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
        if target.options.repair {
            check_and_repair_in_place(target)
        } else {
            check_a_copy(target)
        }
    }
}

enum Opened {
    Database(Database),
    Corrupt(String),
}

fn open_database(path: &Path, target: &CheckTarget<'_>) -> Result<Opened> {
    let page_cache_bytes = target.options.page_cache_bytes;
    let attempt = catch_unwind(|| {
        let mut builder = Database::builder();
        builder
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(page_cache_bytes);
        builder.open(path)
    });
    match attempt {
        Ok(Ok(database)) => Ok(Opened::Database(database)),
        Ok(Err(err)) if is_corruption(&err) => Ok(Opened::Corrupt(err.to_string())),
        Ok(Err(err)) => Err(CacheError::database(target.tag.as_str(), path, err)),
        Err(_) => Ok(Opened::Corrupt("redb panicked while opening it".to_owned())),
    }
}

/// Closes a database that may be in a bad state; a panic while closing is contained.
fn close_quietly(database: Database) {
    if catch_unwind(AssertUnwindSafe(move || drop(database))).is_err() {
        tracing::warn!("redb panicked closing a damaged database file");
    }
}

/// Begins a write transaction, waiting at most `timeout` for another process's writer.
fn begin_write_bounded(database: &Database, target: &CheckTarget<'_>) -> Result<WriteTransaction> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(1);
    loop {
        match database.try_begin_write() {
            Ok(txn) => return Ok(txn),
            Err(TransactionError::WouldBlock) => {
                let waited = started.elapsed();
                if waited >= target.options.timeout {
                    return Err(CacheError::LockTimeout {
                        tag: target.tag.to_string(),
                        path: target.database.clone(),
                        waited,
                    });
                }
                std::thread::sleep(backoff.min(target.options.timeout - waited));
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Err(err) => return Err(target.database_error(err)),
        }
    }
}

/// What redb concluded about a copy of the file.
enum Verdict {
    Clean,
    Repairable,
    BeyondRepair(String),
}

/// The read-only check: redb checks (and, on the copy, repairs) a copy of the file, so the file
/// itself is never written. The copy sits next to the file and needs as much free space.
///
/// A commit of another process landing while the copy is read could tear it, so damage is
/// reported only if a second copy shows it too.
fn check_a_copy(target: &CheckTarget<'_>) -> Result<(CheckStatus, String)> {
    let verdict = match verify_a_copy(target)? {
        Verdict::Clean => Verdict::Clean,
        _ => verify_a_copy(target)?,
    };
    let path = target.database.display();
    Ok(match verdict {
        Verdict::Clean => (
            CheckStatus::Healthy,
            format!("redb verified every page of {path}"),
        ),
        Verdict::Repairable => (
            CheckStatus::Damaged,
            format!("redb found damage in {path} that it can repair; repair fixes it in place"),
        ),
        Verdict::BeyondRepair(reason) => (
            CheckStatus::Damaged,
            format!(
                "{path} is damaged beyond redb's repair ({reason}); repair moves it aside and the \
                 tag starts empty"
            ),
        ),
    })
}

fn verify_a_copy(target: &CheckTarget<'_>) -> Result<Verdict> {
    let copy = ScratchCopy::new(&target.directory);
    copy_pinned(target, &copy.path)?;
    Ok(match open_database(&copy.path, target)? {
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

/// Copies the database to `to`. When redb can open it read-only (which never writes the file), a
/// read transaction is held during the copy: it keeps other processes from reusing the pages of
/// the snapshot being copied. A file redb will not open read-only (one that needs crash recovery,
/// or a damaged one) is copied as it is.
fn copy_pinned(target: &CheckTarget<'_>, to: &Path) -> Result<()> {
    let page_cache_bytes = target.options.page_cache_bytes;
    let path = target.database.as_path();
    let reader = catch_unwind(|| {
        let mut builder = Database::builder();
        builder
            .set_concurrency_mode(ConcurrencyMode::MultiWriter)
            .set_cache_size(page_cache_bytes);
        let database = builder.open_read_only(path).ok()?;
        let snapshot = database.begin_read().ok()?;
        // The transaction first: fields drop in order, and it must end before its database.
        Some((snapshot, database))
    })
    .ok()
    .flatten();
    tracing::debug!(path = %path.display(), pinned = reader.is_some(), "copying the database to check it");
    let copied = fs::copy(path, to);
    if catch_unwind(AssertUnwindSafe(move || drop(reader))).is_err() {
        tracing::warn!(path = %path.display(), "redb panicked closing a read-only handle");
    }
    copied
        .map(drop)
        .map_err(|source| CacheError::io("copying the database to check it", to, source))
}

/// The repairing check: redb checks and repairs the file itself; a file it cannot repair is moved
/// aside and replaced by an empty one.
fn check_and_repair_in_place(target: &CheckTarget<'_>) -> Result<(CheckStatus, String)> {
    let reason = match open_database(&target.database, target)? {
        Opened::Corrupt(reason) => format!("redb cannot open it: {reason}"),
        Opened::Database(mut database) => {
            // `check_integrity` waits for another process's writer without a limit; waiting for
            // the lock first bounds that wait in all but a race with a new writer.
            begin_write_bounded(&database, target)?
                .abort()
                .map_err(|err| target.database_error(err))?;
            let checked = catch_unwind(AssertUnwindSafe(|| database.check_integrity()));
            let reason = match checked {
                Ok(Ok(true)) => {
                    return Ok((
                        CheckStatus::Healthy,
                        format!("redb verified every page of {}", target.database.display()),
                    ));
                }
                Ok(Ok(false)) => {
                    return Ok((
                        CheckStatus::Repaired,
                        format!(
                            "redb found damage in {} and repaired it in place",
                            target.database.display()
                        ),
                    ));
                }
                Ok(Err(err)) if is_corruption(&err) => err.to_string(),
                Ok(Err(err)) => return Err(target.database_error(err)),
                Err(_) => "redb panicked checking it".to_owned(),
            };
            close_quietly(database);
            reason
        }
    };
    let quarantined = quarantine(&target.database)?;
    tracing::error!(tag = %target.tag, path = %target.database.display(), quarantined = %quarantined.display(), reason, "doctor moved a damaged cache file aside; the tag starts empty");
    Ok((
        CheckStatus::Repaired,
        format!(
            "{} was damaged beyond redb's repair ({reason}); moved it to {} and the tag starts empty",
            target.database.display(),
            quarantined.display()
        ),
    ))
}

/// Renames `path` to `cache.redb.corrupt-<ms>` (the name an open of a corrupt file uses) and puts
/// an empty file (0600) in its place, which redb initialises on the tag's next use.
fn quarantine(path: &Path) -> Result<PathBuf> {
    let quarantined = path.with_extension(format!("redb.corrupt-{}", SystemClock.now_ms()));
    fs::rename(path, &quarantined)
        .map_err(|source| CacheError::io("moving aside the damaged database", path, source))?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map_err(|source| CacheError::io("creating database file", path, source))?;
    Ok(quarantined)
}

/// A temporary copy of a database next to it, removed on drop.
struct ScratchCopy {
    path: PathBuf,
}

impl ScratchCopy {
    fn new(directory: &Path) -> Self {
        let name = format!(
            ".doctor-{}-{}.redb.tmp",
            std::process::id(),
            SystemClock.now_ms()
        );
        ScratchCopy {
            path: directory.join(name),
        }
    }
}

impl Drop for ScratchCopy {
    fn drop(&mut self) {
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "could not remove the doctor's scratch copy")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::prepare_root;
    use crate::manager::CacheManager;
    use crate::store::RedbCache;

    fn healthy_tag(root: &Path) -> (PathBuf, Tag) {
        let canonical = prepare_root(root).unwrap();
        let tag = Tag::new("t").unwrap();
        let cache = RedbCache::open(&canonical, tag.clone(), CacheOptions::default()).unwrap();
        for index in 0..2000u32 {
            cache.set(&index.to_be_bytes(), &[7u8; 300], None).unwrap();
        }
        cache.close().unwrap();
        (canonical, tag)
    }

    fn statuses(diagnosis: &TagDiagnosis) -> Vec<(&'static str, CheckStatus)> {
        diagnosis
            .findings
            .iter()
            .map(|finding| (finding.check, finding.status))
            .collect()
    }

    fn repair() -> DoctorOptions {
        DoctorOptions {
            repair: true,
            ..DoctorOptions::default()
        }
    }

    #[test]
    fn a_healthy_tag_passes_every_check_and_leaves_no_scratch_file() {
        let root = tempfile::tempdir().unwrap();
        let (canonical, tag) = healthy_tag(root.path());
        let diagnosis = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
        assert_eq!(
            statuses(&diagnosis),
            [
                ("files", CheckStatus::Healthy),
                ("permissions", CheckStatus::Healthy),
                ("integrity", CheckStatus::Healthy)
            ],
            "{diagnosis:?}"
        );
        assert!(diagnosis.is_healthy());
        let mut names: Vec<String> = fs::read_dir(canonical.join("t"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // The usage file is the tag's own (root budget), written by its commits.
        assert_eq!(names, [DATABASE_FILE_NAME, "usage"]);
    }

    #[test]
    fn a_garbage_file_is_reported_unchanged_then_moved_aside_by_repair() {
        let root = tempfile::tempdir().unwrap();
        let (canonical, tag) = healthy_tag(root.path());
        let database = canonical.join("t").join(DATABASE_FILE_NAME);
        let garbage = vec![0xA5u8; 64 * 1024];
        fs::write(&database, &garbage).unwrap();

        let checked = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
        assert_eq!(
            checked.findings[2].status,
            CheckStatus::Damaged,
            "{checked:?}"
        );
        assert!(!checked.is_healthy());
        assert!(
            fs::read(&database).unwrap() == garbage,
            "a check changes nothing"
        );

        let repaired = diagnose_tag(&canonical, &tag, &repair());
        assert_eq!(
            repaired.findings[2].status,
            CheckStatus::Repaired,
            "{repaired:?}"
        );
        assert!(repaired.findings[2].detail.contains(".corrupt-"));
        assert!(repaired.is_healthy());
        assert_eq!(
            fs::metadata(&database).unwrap().len(),
            0,
            "an empty file in its place"
        );

        let again = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
        assert!(again.is_healthy(), "{again:?}");
        let cache = RedbCache::open(&canonical, tag, CacheOptions::default()).unwrap();
        assert_eq!(
            cache.keys().unwrap(),
            Vec::<Vec<u8>>::new(),
            "the tag starts empty"
        );
    }

    #[test]
    fn a_file_open_in_this_process_is_refused_not_opened_twice() {
        let root = tempfile::tempdir().unwrap();
        let (canonical, tag) = healthy_tag(root.path());
        let _open = RedbCache::open(&canonical, tag.clone(), CacheOptions::default()).unwrap();
        let diagnosis = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
        assert_eq!(diagnosis.findings[2].status, CheckStatus::Failed);
        assert!(
            diagnosis.findings[2]
                .detail
                .contains("already open in this process"),
            "{diagnosis:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn loose_permissions_are_reported_then_tightened_by_repair() {
        use std::os::unix::fs::PermissionsExt;

        let root = tempfile::tempdir().unwrap();
        let (canonical, tag) = healthy_tag(root.path());
        let database = canonical.join("t").join(DATABASE_FILE_NAME);
        fs::set_permissions(&database, fs::Permissions::from_mode(0o644)).unwrap();

        let checked = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
        assert_eq!(checked.findings[1].status, CheckStatus::Damaged);
        assert!(checked.findings[1].detail.contains("0644"), "{checked:?}");

        let repaired = diagnose_tag(&canonical, &tag, &repair());
        assert_eq!(repaired.findings[1].status, CheckStatus::Repaired);
        let mode = fs::metadata(&database).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_database_is_damage_that_repair_leaves_alone() {
        let root = tempfile::tempdir().unwrap();
        let (canonical, tag) = healthy_tag(root.path());
        let database = canonical.join("t").join(DATABASE_FILE_NAME);
        let elsewhere = root.path().join("elsewhere.redb");
        fs::rename(&database, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &database).unwrap();

        let diagnosis = diagnose_tag(&canonical, &tag, &repair());
        assert_eq!(
            statuses(&diagnosis),
            [
                ("files", CheckStatus::Damaged),
                ("permissions", CheckStatus::Skipped),
                ("integrity", CheckStatus::Skipped)
            ]
        );
        assert!(diagnosis.findings[0].detail.contains("symlink"));
        assert!(
            fs::symlink_metadata(&database)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn flipped_bytes_in_the_data_are_found_and_repair_leaves_a_usable_tag() {
        let mut found = 0;
        for fraction in [0.1f64, 0.5, 0.7] {
            let root = tempfile::tempdir().unwrap();
            let (canonical, tag) = healthy_tag(root.path());
            let database = canonical.join("t").join(DATABASE_FILE_NAME);
            let mut bytes = fs::read(&database).unwrap();
            let at = (bytes.len() as f64 * fraction) as usize;
            for byte in &mut bytes[at..at + 64] {
                *byte ^= 0xFF;
            }
            fs::write(&database, &bytes).unwrap();

            let checked = diagnose_tag(&canonical, &tag, &DoctorOptions::default());
            assert!(
                fs::read(&database).unwrap() == bytes,
                "a check changes nothing"
            );
            if checked.findings[2].status == CheckStatus::Damaged {
                found += 1;
            }
            let repaired = diagnose_tag(&canonical, &tag, &repair());
            assert!(repaired.is_healthy(), "{repaired:?}");
            assert!(
                diagnose_tag(&canonical, &tag, &DoctorOptions::default()).is_healthy(),
                "healthy after repair"
            );
        }
        // Flipped bytes may land in a free page, which no checksum covers; most land in live ones.
        assert!(found >= 1, "no damage found at any of the offsets");
    }
}
