//! Temp file and staging directory names ([`temp_name`]: process id, pid namespace and boot
//! id) and the judgement of stale ones ([`judge_temp_name`], [`Dir::stale_temps`]), shared by
//! blobs and directories.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use std::sync::LazyLock;

use super::{Dir, warn_once};
use crate::error::Result;
use crate::process::ProcessIdentity;

/// A temp file or staging directory older than this is debris whatever its writer: long enough
/// for any single write or import, and the only way a temp whose writer cannot be judged
/// (another pid namespace or host) is ever removed. Judged by the entry's mtime.
pub(crate) const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// This boot of this machine: `/proc/sys/kernel/random/boot_id` without its dashes, `0` where
/// unknown. Shared by every container of the machine, unlike the pid namespace.
pub(super) fn boot_id() -> &'static str {
    static BOOT_ID: LazyLock<String> = LazyLock::new(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|text| text.trim().replace('-', ""))
            .filter(|id| id.len() == 32 && id.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .map_or_else(|| "0".to_owned(), |id| id.to_ascii_lowercase())
    });
    &BOOT_ID
}

/// The name of a temp file or staging directory this process writes:
/// `<pid>-<pid namespace>-<boot id>-<suffix>`. The namespace and boot id say in which process
/// table the pid means something.
pub(crate) fn temp_name(suffix: impl std::fmt::Display) -> String {
    let me = ProcessIdentity::current();
    format!("{}-{}-{}-{suffix}", me.pid, me.pid_namespace, boot_id())
}

/// What a temp entry's name says about its writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TempOwner {
    /// A process of this pid namespace and boot that is still running (or whose id was reused).
    Running,
    /// A process of this pid namespace and boot that has ended.
    Ended,
    /// A writer this process cannot judge: another pid namespace or host, or a name of the
    /// older `<pid>-<n>` form, which does not say.
    Unknown,
    /// Not a temp name the cache writes.
    NotATemp,
}

/// Judges a temp entry's writer by its name ([`temp_name`]).
pub(crate) fn judge_temp_name(name: &OsStr) -> TempOwner {
    let Some(name) = name.to_str() else {
        return TempOwner::NotATemp;
    };
    let parts: Vec<&str> = name.splitn(4, '-').collect();
    let Some(pid) = parts
        .first()
        .filter(|pid| !pid.is_empty() && pid.bytes().all(|byte| byte.is_ascii_digit()))
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return TempOwner::NotATemp;
    };
    match parts[..] {
        [_, namespace, boot, suffix] if !suffix.is_empty() => {
            let Ok(namespace) = namespace.parse::<u64>() else {
                return TempOwner::NotATemp;
            };
            let me = ProcessIdentity::current();
            if me.pid_namespace == 0
                || namespace != me.pid_namespace
                || boot_id() == "0"
                || boot != boot_id()
            {
                return TempOwner::Unknown;
            }
            let writer = ProcessIdentity {
                pid,
                start_ticks: 0,
                pid_namespace: namespace,
            };
            if writer.has_ended() {
                TempOwner::Ended
            } else {
                TempOwner::Running
            }
        }
        [_, suffix] if !suffix.is_empty() => TempOwner::Unknown,
        _ => TempOwner::NotATemp,
    }
}

impl Dir {
    /// The entries of this temp directory (`blobs/tmp`, `dirs/.staging`) that are debris: their
    /// writer has ended, or they are older than [`STALE_TEMP_AGE`] (the only way out for one
    /// whose writer cannot be judged). Names the cache does not write are reported and kept.
    pub(crate) fn stale_temps(&self) -> Result<Vec<OsString>> {
        let now = SystemTime::now();
        let mut stale = Vec::new();
        for entry in self.entries()? {
            let owner = judge_temp_name(&entry.name);
            let old = now
                .duration_since(entry.meta.modified)
                .is_ok_and(|age| age > STALE_TEMP_AGE);
            match owner {
                TempOwner::NotATemp => warn_once(
                    &self.join(&entry.name),
                    "not a temp file the cache writes; left alone",
                ),
                TempOwner::Ended => stale.push(entry.name),
                TempOwner::Running | TempOwner::Unknown if old => stale.push(entry.name),
                TempOwner::Running | TempOwner::Unknown => {}
            }
        }
        Ok(stale)
    }

    /// [`Dir::stale_temps`] as paths: what cleanup would remove, for doctor to report.
    pub(crate) fn stale_temp_paths(&self) -> Result<Vec<PathBuf>> {
        Ok(self
            .stale_temps()?
            .iter()
            .map(|name| self.join(name))
            .collect())
    }

    /// Removes [`Dir::stale_temps`] (a file, or a staging tree without following links); how
    /// many went.
    pub(crate) fn remove_stale_temps(&self) -> Result<u64> {
        let mut removed = 0;
        for name in self.stale_temps()? {
            if self.remove_tree(&name)? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
