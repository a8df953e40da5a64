//! Single-flight computation: on a miss, exactly one caller on the machine computes a key's value
//! while the others wait for it and then read what it stored.
//!
//! Two layers. Within a process, the threads of one instance meet in [`Flights`]: the first to
//! miss a key leads, the others block on its slot's condition variable (they never poll the
//! file). Across processes, the leader takes a **lease** in the tag's `leases` table: a record
//! naming its process (id, start time, pid namespace), a lease id, when it started, and a
//! deadline that a renewal thread pushes forward while the computation runs. A leader that finds
//! another process's live lease polls the row (fresh read transactions, backoff up to
//! [`MAX_POLL`]) until that lease is released, marked failed, or goes stale (its owner has
//! ended, or its deadline passed without renewal), and takes a stale lease over.
//!
//! Every lease write is a commit through the store's one write path
//! (`LeaseStore::update_lease`): durable and visible to other processes when it returns. The
//! release commits the computed value (which the caller's `set` buffered) in the same
//! transaction, so a waiter that sees the lease gone finds the value. The protocol, its takeover rules and its limits are written up in
//! `docs/caching-system.md`, "Single-flight computation".
//!
//! Files: this one (the flight loop: `run`, `lead`, renewal, the bounded wait, and
//! `LeaseStore`, what flight needs of a store), `slots.rs` (in-process slots), `lease.rs` (the
//! lease record and protocol), `tests.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{CacheOptions, Clock, SystemClock};
use crate::error::{CacheError, ErrorChain, KeyDisplay, Result};
use crate::process::ProcessIdentity;
use crate::remote::{RemoteLease, RemoteLeaseGuard};
use crate::stats::AtomicCounters;
use crate::tag::Tag;

/// The first pause of a waiter polling another process's lease; doubled up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(2);
/// The longest pause between two polls: a waiter sees a release within this.
const MAX_POLL: Duration = Duration::from_millis(50);
/// The first pause of a leader polling for another machine's result; doubled up to
/// [`MAX_FLEET_POLL`]. Each poll is a local read and a remote fetch.
const FIRST_FLEET_POLL: Duration = Duration::from_millis(10);
const MAX_FLEET_POLL: Duration = Duration::from_millis(500);
/// The longest failure message kept in a lease record; longer ones are cut.
const MAX_MESSAGE_BYTES: usize = 1024;

/// What a lease write does to a key's lease row.
pub(crate) enum LeaseWrite {
    /// Leave it as it is.
    Keep,
    /// Store this record.
    Put(Vec<u8>),
    /// Remove the row.
    Remove,
}

/// What single flight needs of the store of one tag: its settings, its in-process flights, its
/// counters, and its lease table. The store implements it (`store/leases.rs`), so this module
/// does not depend on the store.
pub(crate) trait LeaseStore: Sync {
    fn options(&self) -> &CacheOptions;
    fn tag(&self) -> &Tag;
    fn flights(&self) -> &Flights;
    fn counters(&self) -> &AtomicCounters;
    /// Drops the read snapshot, so that the next read sees what other processes committed.
    fn refresh_snapshot(&self);
    /// The lease row of `key` as last committed by any process (a fresh read transaction).
    fn read_lease(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Reads the lease row of `key` and changes it as `decide` says, in one commit through the
    /// store's one write path: durable and visible to other processes when this returns.
    fn update_lease<R>(
        &self,
        key: &[u8],
        decide: impl FnOnce(Option<&[u8]>) -> (LeaseWrite, R),
    ) -> Result<R>;
    /// The remote tier's fleet-wide lease of `key` ([`RemoteStore::lease`]); `NotCoordinated`
    /// without a remote.
    ///
    /// [`RemoteStore::lease`]: crate::remote::RemoteStore::lease
    fn fleet_lease(&self, key: &[u8]) -> RemoteLease;
    /// Waits, bounded, for this process's uploads to the remote tier.
    fn drain_remote(&self);
}

/// What [`FlightWork::look_up`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The caller has its answer: the value, or the error that looking for it raised.
    Answered,
    /// Nothing there yet: compute it, or wait for whoever is computing it.
    Missing,
}

/// One caller's part in a single flight, in the object-safe form the flight loop takes
/// (`RedbCache::run_single_flight`); [`crate::Cache::single_flight`] builds one from two
/// closures.
pub(crate) trait FlightWork {
    /// Looks for the result. Called first, again once this caller holds the key's lease (another
    /// caller may have finished in between), and after every wait.
    fn look_up(&mut self) -> Lookup;

    /// Computes the result and stores it. Called at most once per flight, and only while this
    /// caller holds the key's lease. `Err` carries the failure's message, which waiters receive.
    fn compute(&mut self) -> std::result::Result<(), String>;
}

/// The flight of a cache that coordinates nothing: look, and compute on a miss.
pub(crate) fn run_alone(work: &mut dyn FlightWork) {
    if work.look_up() == Lookup::Missing {
        // The work keeps the computation's result or error; there is nobody to tell.
        let _ = work.compute();
    }
}

/// The single flight of `key` in `store` (see the module documentation).
pub(crate) fn run<S: LeaseStore>(store: &S, key: &[u8], work: &mut dyn FlightWork) -> Result<()> {
    let wait = Wait::start(store.options().timeout);
    let mut retries_left = store.options().flight_retries;
    loop {
        if work.look_up() == Lookup::Answered {
            return Ok(());
        }
        let outcome = match store.flights().join(key) {
            Role::Follower(slot) => {
                AtomicCounters::add(&store.counters().waits, 1);
                tracing::debug!(tag = %store.tag(), key = %KeyDisplay::new(key), "waiting for another thread's computation");
                slot.wait(&wait)
                    .map_err(|owner_pid| wait.timed_out(store, key, owner_pid))?
            }
            Role::Leader(leadership) => match acquire(store, key, &leadership, &wait)? {
                Acquired::Lease(lease) => {
                    lead(store, Held { lease, leadership }, work);
                    return Ok(());
                }
                Acquired::Finished => {
                    leadership.settle(Outcome::Finished);
                    Outcome::Finished
                }
                Acquired::Failed { owner_pid, message } => {
                    let outcome = Outcome::Failed { owner_pid, message };
                    leadership.settle(outcome.clone());
                    outcome
                }
            },
        };
        if let Outcome::Failed { owner_pid, message } = outcome {
            if retries_left == 0 {
                return Err(CacheError::ComputationFailed {
                    tag: store.tag().to_string(),
                    key: KeyDisplay::new(key),
                    owner_pid,
                    message,
                });
            }
            retries_left -= 1;
            tracing::debug!(tag = %store.tag(), key = %KeyDisplay::new(key), owner_pid, message, "the awaited computation failed; trying again");
        }
    }
}

/// A lease and the leadership of its key in this process, held together.
struct Held<'s, 'f, S: LeaseStore> {
    /// Declared first, so that it drops first when a panic unwinds: the lease row says
    /// "failed" before this process's waiters wake, and a waiter that retries finds the lease
    /// free instead of waiting for the row to change.
    lease: Lease<'s, S>,
    leadership: Leadership<'f>,
}

/// Computes under the lease (unless the result appeared meanwhile), renewing it while the
/// computation runs, then releases it and tells this process's waiters, in that order.
fn lead<S: LeaseStore>(store: &S, held: Held<'_, '_, S>, work: &mut dyn FlightWork) {
    // Another process may have released this key's lease, with its value, just before we took
    // it; the snapshot may be older than that.
    store.refresh_snapshot();
    if work.look_up() == Lookup::Answered {
        let Held { lease, leadership } = held;
        lease.release(None);
        leadership.settle(Outcome::Finished);
        return;
    }
    // The machine's lease is ours; the fleet's may be another machine's. The local lease is
    // renewed while this leader waits for that machine, so this machine's other processes keep
    // waiting for this one.
    let turn = with_renewal(store, &held.lease, || {
        match fleet_turn(store, &held.lease.key, work) {
            FleetTurn::Answered => None,
            FleetTurn::Compute(fleet) => {
                AtomicCounters::add(&store.counters().computations, 1);
                tracing::debug!(tag = %store.tag(), key = %KeyDisplay::new(&held.lease.key), "computing under the key's lease");
                Some((work.compute(), fleet))
            }
        }
    });
    let Held { lease, leadership } = held;
    let Some((computed, fleet)) = turn else {
        lease.release(None);
        leadership.settle(Outcome::Finished);
        return;
    };
    match computed {
        Ok(()) => {
            lease.release(None);
            leadership.settle(Outcome::Finished);
            if let Some(fleet) = fleet {
                // The value is committed and queued for the remote; the other machines' leaders
                // poll for it, so it is uploaded before the fleet's lease is given up.
                store.drain_remote();
                fleet.release();
            }
        }
        Err(message) => {
            let message = truncated(message);
            tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(&lease.key), message, "single-flight computation failed; its waiters are told");
            lease.release(Some(&message));
            leadership.settle(Outcome::Failed {
                owner_pid: std::process::id(),
                message,
            });
            if let Some(fleet) = fleet {
                fleet.release();
            }
        }
    }
}

/// What the fleet said of a key this machine's leader missed.
enum FleetTurn {
    /// The value appeared (another machine computed it): nothing to compute.
    Answered,
    /// Compute, holding the fleet's lease if there is one to hold.
    Compute(Option<Box<dyn RemoteLeaseGuard>>),
}

/// Takes the fleet's lease of `key`, or, while another machine holds it, polls for its result
/// (each look reads through the remote) until it appears or the lease comes free. Waiting is
/// bounded by the instance's `timeout`; past it this machine computes too: a failure costs
/// duplicate work, never a wrong value and never a hang.
fn fleet_turn<S: LeaseStore>(store: &S, key: &[u8], work: &mut dyn FlightWork) -> FleetTurn {
    let wait = Wait::start(store.options().timeout);
    let mut pause = FIRST_FLEET_POLL;
    let mut waited = false;
    loop {
        match store.fleet_lease(key) {
            RemoteLease::NotCoordinated => return FleetTurn::Compute(None),
            RemoteLease::Granted(fleet) => {
                // Another machine may have finished between our look and the lease.
                if work.look_up() == Lookup::Answered {
                    fleet.release();
                    return FleetTurn::Answered;
                }
                return FleetTurn::Compute(Some(fleet));
            }
            RemoteLease::HeldElsewhere => {
                if !waited {
                    waited = true;
                    AtomicCounters::add(&store.counters().waits, 1);
                    AtomicCounters::add(&store.counters().remote_fleet_waits, 1);
                    tracing::debug!(tag = %store.tag(), key = %KeyDisplay::new(key), "waiting for another machine's computation");
                }
                let Some(left) = wait.remaining() else {
                    tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(key), "gave up waiting for another machine's computation; computing here");
                    return FleetTurn::Compute(None);
                };
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(MAX_FLEET_POLL);
                if work.look_up() == Lookup::Answered {
                    return FleetTurn::Answered;
                }
            }
        }
    }
}

/// Runs `compute` while a scoped thread renews `lease` every third of the lease duration. If
/// `compute` panics, the renewal stops (its channel closes as the stack unwinds) before the
/// panic goes on.
fn with_renewal<S: LeaseStore, R>(
    store: &S,
    lease: &Lease<'_, S>,
    compute: impl FnOnce() -> R,
) -> R {
    let every = (store.options().lease_duration / 3).max(Duration::from_millis(1));
    std::thread::scope(|scope| {
        let (stop, stopped) = mpsc::channel::<()>();
        let renewer = std::thread::Builder::new()
            .name(format!("cache-lease-{}", store.tag()))
            .spawn_scoped(scope, move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    match lease.renew() {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(&lease.key), "the lease was taken over while computing; the computation goes on and its result is stored");
                            break;
                        }
                        // Tried again at the next tick; the deadline leaves two more.
                        Err(err) => {
                            tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(&lease.key), error = %ErrorChain(&err), "could not renew the lease");
                        }
                    }
                }
            });
        if let Err(err) = renewer {
            tracing::warn!(tag = %store.tag(), error = %ErrorChain(&err), "could not start the lease renewal thread; a computation longer than the lease may be taken over");
        }
        let result = compute();
        drop(stop);
        result
    })
}

/// How long a caller may still wait: the instance's `timeout`, counted from its first look.
struct Wait {
    started: Instant,
    deadline: Instant,
}

impl Wait {
    fn start(timeout: Duration) -> Wait {
        let started = Instant::now();
        // A timeout too large for `Instant` waits a year, which is as good as forever.
        let deadline = started
            .checked_add(timeout)
            .or_else(|| started.checked_add(Duration::from_secs(365 * 24 * 3600)))
            .unwrap_or(started);
        Wait { started, deadline }
    }

    /// Time left, `None` once past the deadline.
    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }

    fn timed_out<S: LeaseStore>(&self, store: &S, key: &[u8], owner_pid: u32) -> CacheError {
        AtomicCounters::add(&store.counters().errors, 1);
        let err = CacheError::FlightTimeout {
            tag: store.tag().to_string(),
            key: KeyDisplay::new(key),
            owner_pid,
            waited: self.started.elapsed(),
        };
        tracing::warn!(tag = %store.tag(), error = %ErrorChain(&err), "gave up waiting for a computation");
        err
    }
}

mod lease;
mod slots;

use lease::*;
pub(crate) use slots::Flights;
use slots::*;

/// Wall-clock now: leases are compared across processes, which share no other clock.
fn now_ms() -> u64 {
    SystemClock.now_ms()
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `message`, cut to [`MAX_MESSAGE_BYTES`] at a character boundary.
fn truncated(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_BYTES {
        let mut end = MAX_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests;
