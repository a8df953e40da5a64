//! Fault injection for the deterministic in-process fault suite (`faults/tests.rs`); compiled
//! only for the crate's own tests.
//!
//! [`FaultBackend`] wraps the storage backend a tag's file is opened on (`backend::open_database`
//! wraps every `Access::Shared` open in it when built for tests) and fails `write` / `set_len`
//! and `sync_data` calls on a countdown, as redb's own fuzzer (`fuzz/fuzz_targets/fuzz_redb.rs`)
//! fails its backend: the countdown says how many calls of a kind succeed before one fails. A
//! test arms a [`Fault`] for one database path with [`inject`]; an open of any other path, and
//! every open while no test has armed one, passes everything through untouched.
//!
//! The failure is either a single one ([`Persistence::Once`]: the countdown disarms itself,
//! a transient error), or latched ([`Persistence::Latched`]: from then on every read, write
//! and sync fails, as a device that went away, until the test calls [`Fault::clear`]). Lock
//! calls are always passed through: the fault is in the medium, not in the lock table.
//!
//! The fault's state is shared by every backend opened on its path, so a handle the cache
//! opens again after a latched error (`handle.rs`, `reopen_if_latched`) meets the same fault.

use std::collections::HashMap;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use redb::{BackendError, StorageBackend};

/// What happens once a countdown reaches zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Persistence {
    /// That one call fails; the countdown is disarmed and later calls succeed.
    #[default]
    Once,
    /// That call and every later read, write and sync fail, until [`Fault::clear`].
    Latched,
}

/// When an armed [`Fault`] fails a call: after how many successful calls of each kind (`None`:
/// never), and whether the failure latches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct FaultPlan {
    /// `write` and `set_len` calls that succeed before one fails.
    pub(super) writes_before_failure: Option<u64>,
    /// `sync_data` calls that succeed before one fails.
    pub(super) syncs_before_failure: Option<u64>,
    pub(super) persistence: Persistence,
}

/// The fault state of one database path, shared by every backend opened on it.
#[derive(Debug, Default)]
pub(super) struct Fault {
    state: Mutex<FaultState>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// The armed plan; its countdowns go down as calls succeed.
    plan: FaultPlan,
    /// A latched failure has happened: every read, write and sync fails.
    latched: bool,
    /// Calls seen since the fault was made, armed or not: what a sweep counts positions by.
    writes_seen: u64,
    syncs_seen: u64,
    /// Failures injected since the fault was made.
    injected: u64,
}

/// The kind of call a countdown counts.
#[derive(Clone, Copy)]
enum Call {
    Write,
    Sync,
}

impl Fault {
    fn state(&self) -> MutexGuard<'_, FaultState> {
        // Every critical section is a few assignments that cannot be left half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arms `plan`, replacing any armed before; a latched failure stays latched.
    pub(super) fn arm(&self, plan: FaultPlan) {
        self.state().plan = plan;
    }

    /// Disarms the fault and lifts a latched failure: the medium works again.
    pub(super) fn clear(&self) {
        let mut state = self.state();
        state.plan = FaultPlan::default();
        state.latched = false;
    }

    /// `write` and `set_len` calls seen so far (failed ones included).
    pub(super) fn writes_seen(&self) -> u64 {
        self.state().writes_seen
    }

    /// `sync_data` calls seen so far (failed ones included).
    pub(super) fn syncs_seen(&self) -> u64 {
        self.state().syncs_seen
    }

    /// How many calls have been failed so far.
    pub(super) fn injected(&self) -> u64 {
        self.state().injected
    }

    /// Counts one call of `call`'s kind and says whether it fails.
    fn check(&self, call: Call) -> io::Result<()> {
        let mut state = self.state();
        let countdown = match call {
            Call::Write => {
                state.writes_seen += 1;
                &mut state.plan.writes_before_failure
            }
            Call::Sync => {
                state.syncs_seen += 1;
                &mut state.plan.syncs_before_failure
            }
        };
        let fails = match countdown {
            Some(0) => {
                *countdown = None;
                true
            }
            Some(left) => {
                *left -= 1;
                false
            }
            None => false,
        };
        if fails && state.plan.persistence == Persistence::Latched {
            state.latched = true;
        }
        if fails || state.latched {
            state.injected += 1;
            return Err(injected_error());
        }
        Ok(())
    }

    /// A read fails only while a failure is latched.
    fn check_read(&self) -> io::Result<()> {
        let mut state = self.state();
        if state.latched {
            state.injected += 1;
            return Err(injected_error());
        }
        Ok(())
    }
}

/// The error a failed call returns: a plain I/O error, which redb neither takes for damage
/// (`backend::is_corruption`) nor for a full disk.
fn injected_error() -> io::Error {
    io::Error::other("injected fault (store/faults.rs)")
}

/// Armed faults, by database path.
static FAULTS: LazyLock<Mutex<HashMap<PathBuf, Arc<Fault>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn faults() -> MutexGuard<'static, HashMap<PathBuf, Arc<Fault>>> {
    FAULTS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A fault registered for one database path; dropping it unregisters it (backends already
/// opened on the path keep it).
pub(super) struct Injection {
    path: PathBuf,
    pub(super) fault: Arc<Fault>,
}

impl Drop for Injection {
    fn drop(&mut self) {
        faults().remove(&self.path);
    }
}

/// Registers an unarmed fault for the database file at `database_path` (exactly as the cache
/// opens it: `<canonical root>/<tag>/cache.redb`). Backends opened on that path from now on
/// count their calls and fail them as the fault is armed.
pub(super) fn inject(database_path: &Path) -> Injection {
    let fault = Arc::new(Fault::default());
    faults().insert(database_path.to_owned(), Arc::clone(&fault));
    Injection {
        path: database_path.to_owned(),
        fault,
    }
}

/// A storage backend that fails calls as its path's [`Fault`] says, and passes everything
/// through when no fault is registered for its path.
#[derive(Debug)]
pub(super) struct FaultBackend<B> {
    inner: B,
    fault: Option<Arc<Fault>>,
}

impl<B: StorageBackend> FaultBackend<B> {
    /// `inner`, failing as the fault registered for `path` (if any) says.
    pub(super) fn for_path(path: &Path, inner: B) -> Self {
        FaultBackend {
            inner,
            fault: faults().get(path).cloned(),
        }
    }

    fn check(&self, call: Call) -> io::Result<()> {
        self.fault
            .as_ref()
            .map_or(Ok(()), |fault| fault.check(call))
    }
}

impl<B: StorageBackend> StorageBackend for FaultBackend<B> {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        if let Some(fault) = &self.fault {
            fault.check_read()?;
        }
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check(Call::Write)?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check(Call::Sync)?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check(Call::Write)?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> std::result::Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

mod run;
mod script;
mod tests;
