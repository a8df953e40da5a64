//! redb's integrity check of the database file, run on a copy-on-write view without repair, and
//! its repair: in place by redb when it can, otherwise the file is moved aside.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};

use redb::Database;

use super::{CheckStatus, CheckTarget, TagCheck};
use crate::config::{Clock, SystemClock};
use crate::error::{CacheError, Result};
use crate::store::backend::{Access, HandleSettings, Opened, is_corruption, open_database};
use crate::store::{FileRegistration, move_aside};

/// redb's own integrity check: every page checksum of the committed trees, and the allocator
/// state.
pub(super) struct Integrity;

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
pub(super) fn handle(target: &CheckTarget<'_>, access: Access) -> HandleSettings {
    HandleSettings {
        access,
        timeout: target.options.timeout,
        page_cache_bytes: target.options.page_cache_bytes,
    }
}

/// Closes a database that may be in a bad state; a panic while closing is contained.
pub(super) fn close_quietly(database: Database) {
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
