//! The processes on this machine, told apart across pid reuse and pid namespaces: which one a
//! lock file, a lease or a temporary file belongs to, and whether it has certainly ended.

use std::fs;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// Whether a process with this id exists. Where that cannot be known (no `/proc`), every
/// process counts as alive and only age removes its debris.
pub(crate) fn process_is_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc_root = Path::new("/proc");
    !proc_root.is_dir() || proc_root.join(pid.to_string()).exists()
}

/// A process as this machine can tell it apart from others: its id, when it started, and the
/// pid namespace its id belongs to. The start time is what defeats pid reuse: a process with
/// the same id and another start time is another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    pub(crate) pid: u32,
    /// Clock ticks after boot when the process started (field 22 of `/proc/<pid>/stat`); 0 where
    /// unknown.
    pub(crate) start_ticks: u64,
    /// The inode of `/proc/self/ns/pid`; 0 where unknown. Ids are comparable only within one
    /// namespace: a process in another container can have any id, including one alive here.
    pub(crate) pid_namespace: u64,
}

impl ProcessIdentity {
    /// This process.
    pub(crate) fn current() -> ProcessIdentity {
        static CURRENT: Mutex<Option<ProcessIdentity>> = Mutex::new(None);
        let pid = std::process::id();
        // A plain `Option` write: a panic cannot leave it torn.
        let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        match *current {
            // Compared by id, so that a forked child does not pass for its parent.
            Some(identity) if identity.pid == pid => identity,
            _ => {
                let identity = ProcessIdentity {
                    pid,
                    start_ticks: process_stat(pid).map_or(0, |stat| stat.start_ticks),
                    pid_namespace: current_pid_namespace().unwrap_or(0),
                };
                *current = Some(identity);
                identity
            }
        }
    }

    /// Whether the process this names has certainly ended: it no longer exists, has exited (a
    /// zombie its parent has not reaped yet), or its id now belongs to a process that started at
    /// another time. `false` whenever that cannot be known: no `/proc`, or a process of another
    /// pid namespace (another container sharing the cache root).
    pub(crate) fn has_ended(&self) -> bool {
        let me = ProcessIdentity::current();
        if self.pid_namespace == 0 || self.pid_namespace != me.pid_namespace {
            return false;
        }
        if self.pid == me.pid {
            return self.start_ticks != 0
                && me.start_ticks != 0
                && self.start_ticks != me.start_ticks;
        }
        if !process_is_alive(self.pid) {
            return true;
        }
        process_stat(self.pid).is_some_and(|stat| {
            stat.exited || (self.start_ticks != 0 && stat.start_ticks != self.start_ticks)
        })
    }
}

/// What `/proc/<pid>/stat` says about a process.
struct ProcessStat {
    /// State `Z` (zombie) or `X` (dead): the process has exited.
    exited: bool,
    start_ticks: u64,
}

fn process_stat(pid: u32) -> Option<ProcessStat> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may contain spaces and parentheses, so the fields are
    // counted from the last ')'. After it come fields 3 (state) onwards; field 22 is the start.
    let (_, after_comm) = stat.rsplit_once(')')?;
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?;
    let start_ticks = fields.nth(22 - 4)?.parse().ok()?;
    Some(ProcessStat {
        exited: state == "Z" || state == "X",
        start_ticks,
    })
}

fn current_pid_namespace() -> Option<u64> {
    // The link reads `pid:[4026531836]`.
    let link = fs::read_link("/proc/self/ns/pid").ok()?;
    let text = link.to_str()?;
    text.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_known_and_has_not_ended() {
        let me = ProcessIdentity::current();
        assert_eq!(me.pid, std::process::id());
        assert!(!me.has_ended());
        if Path::new("/proc/self/stat").exists() {
            assert_ne!(me.start_ticks, 0, "read from /proc/self/stat");
            assert_ne!(me.pid_namespace, 0, "read from /proc/self/ns/pid");
        }
    }

    #[test]
    fn a_reused_pid_or_a_vanished_process_has_ended() {
        let me = ProcessIdentity::current();
        if me.pid_namespace == 0 {
            return; // No /proc: nothing can be told, and `has_ended` says so (tested above).
        }
        let reused = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(reused.has_ended(), "same pid, another start time");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let child_identity = ProcessIdentity {
            pid: child.id(),
            start_ticks: 0,
            pid_namespace: me.pid_namespace,
        };
        child.wait().unwrap();
        assert!(child_identity.has_ended(), "an exited, reaped child");
        let elsewhere = ProcessIdentity {
            pid: child_identity.pid,
            start_ticks: 0,
            pid_namespace: me.pid_namespace + 1,
        };
        assert!(
            !elsewhere.has_ended(),
            "a process of another pid namespace cannot be judged"
        );
    }
}
