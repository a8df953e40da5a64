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
//! Every lease write is a commit through the store's one write path (`LeaseStore::update_lease`): durable and
//! visible to other processes when it returns. The release commits the computed value (which
//! the caller's `set` buffered) in the same transaction, so a waiter that sees the lease gone
//! finds the value. The protocol, its takeover rules and its limits are written up in
//! `docs/caching-system.md`, "Single-flight computation".

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::config::{CacheOptions, Clock, SystemClock};
use crate::error::{CacheError, ErrorChain, KeyDisplay, Result};
use crate::process::ProcessIdentity;
use crate::stats::AtomicCounters;
use crate::tag::Tag;

/// The first pause of a waiter polling another process's lease; doubled up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(2);
/// The longest pause between two polls: a waiter sees a release within this.
const MAX_POLL: Duration = Duration::from_millis(50);
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
}

/// What [`FlightWork::look_up`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The caller has its answer: the value, or the error that looking for it raised.
    Answered,
    /// Nothing there yet: compute it, or wait for whoever is computing it.
    Missing,
}

/// One caller's part in a single flight, in the object-safe form that
/// [`CacheManager::run_single_flight`] takes. [`SingleFlight::single_flight`] builds one from two
/// closures; implement it directly only to forward a flight from one cache to another.
pub trait FlightWork {
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
    AtomicCounters::add(&store.counters().computations, 1);
    tracing::debug!(tag = %store.tag(), key = %KeyDisplay::new(&held.lease.key), "computing under the key's lease");
    let computed = with_renewal(store, &held.lease, || work.compute());
    let Held { lease, leadership } = held;
    match computed {
        Ok(()) => {
            lease.release(None);
            leadership.settle(Outcome::Finished);
        }
        Err(message) => {
            let message = truncated(message);
            tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(&lease.key), message, "single-flight computation failed; its waiters are told");
            lease.release(Some(&message));
            leadership.settle(Outcome::Failed {
                owner_pid: std::process::id(),
                message,
            });
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

// ---------------------------------------------------------------------------------------------
// In-process coordination.

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is an insert, a remove or a field assignment, and none runs
    // the caller's code: a poisoned lock still holds consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The flights of one instance's threads: one slot per key being led by a thread of this
/// process. **Invariant:** a key has a slot exactly while its leader has not settled it.
#[derive(Default)]
pub(crate) struct Flights {
    slots: Mutex<HashMap<Vec<u8>, Arc<Slot>>>,
}

/// Where the threads that follow a key's leader wait.
struct Slot {
    state: Mutex<SlotState>,
    settled: Condvar,
}

struct SlotState {
    /// The process computing, as far as the leader knows: this one, or the owner of the
    /// lease it waits on. Named in a follower's timeout error.
    owner_pid: u32,
    /// Set once, by the leader, when its flight ends.
    outcome: Option<Outcome>,
}

/// How a leader's flight ended, as its followers learn it.
#[derive(Clone, Debug)]
enum Outcome {
    /// Computed here or elsewhere: look again.
    Finished,
    /// The computation failed (here or in the lease owner's process).
    Failed { owner_pid: u32, message: String },
    /// The leader stopped without an outcome (it timed out, or storage failed): look again,
    /// and one of the followers leads.
    Abandoned,
}

enum Role<'f> {
    Leader(Leadership<'f>),
    Follower(Arc<Slot>),
}

impl Flights {
    /// Joins the flight of `key`: as its leader when no thread of this process leads it.
    fn join(&self, key: &[u8]) -> Role<'_> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.get(key) {
            return Role::Follower(Arc::clone(slot));
        }
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                owner_pid: std::process::id(),
                outcome: None,
            }),
            settled: Condvar::new(),
        });
        slots.insert(key.to_vec(), Arc::clone(&slot));
        Role::Leader(Leadership {
            flights: self,
            key: key.to_vec(),
            slot,
            settled: false,
        })
    }
}

impl Slot {
    /// Blocks until the leader settles, or the wait's deadline; on timeout, the owner's pid.
    fn wait(&self, wait: &Wait) -> std::result::Result<Outcome, u32> {
        let mut state = lock(&self.state);
        loop {
            if let Some(outcome) = &state.outcome {
                return Ok(outcome.clone());
            }
            let Some(left) = wait.remaining() else {
                return Err(state.owner_pid);
            };
            state = self
                .settled
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// A thread's leadership of a key's flight in this process. Dropped unsettled (the leader
/// returned an error, or its computation panicked), it settles the flight as abandoned or
/// failed, so followers never wait for a leader that is gone.
struct Leadership<'f> {
    flights: &'f Flights,
    key: Vec<u8>,
    slot: Arc<Slot>,
    settled: bool,
}

impl Leadership<'_> {
    fn set_owner(&self, owner_pid: u32) {
        lock(&self.slot.state).owner_pid = owner_pid;
    }

    fn settle(mut self, outcome: Outcome) {
        self.publish(outcome);
    }

    fn publish(&mut self, outcome: Outcome) {
        self.settled = true;
        // Out of the map first, so that a follower that looks again and misses leads anew.
        {
            let mut slots = lock(&self.flights.slots);
            if slots
                .get(&self.key)
                .is_some_and(|slot| Arc::ptr_eq(slot, &self.slot))
            {
                slots.remove(&self.key);
            }
        }
        lock(&self.slot.state).outcome = Some(outcome);
        self.slot.settled.notify_all();
    }
}

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        if !self.settled {
            let outcome = if std::thread::panicking() {
                Outcome::Failed {
                    owner_pid: std::process::id(),
                    message: "the computation panicked".to_owned(),
                }
            } else {
                Outcome::Abandoned
            };
            self.publish(outcome);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Leases across processes.

/// Identifies one lease: this process's random nonce and a serial number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LeaseId {
    nonce: u64,
    serial: u64,
}

impl LeaseId {
    fn next() -> LeaseId {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        LeaseId {
            nonce: process_nonce(),
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// A random number drawn once per process (std's per-process random hash keys), so that lease
/// ids of two processes never collide, even with the same pid.
fn process_nonce() -> u64 {
    use std::hash::BuildHasher;
    static NONCE: OnceLock<u64> = OnceLock::new();
    *NONCE.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .hash_one((std::process::id(), std::time::SystemTime::now()))
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeaseState {
    /// The owner is computing.
    Running,
    /// The owner's computation failed; the record's waiters learn it, anyone may take it.
    Failed,
}

/// A row of the `leases` table.
///
/// Encoded as: format version (1 byte, [`LeaseRecord::VERSION`]), state (1), owner pid (4),
/// owner start ticks (8), owner pid namespace (8), lease nonce (8), lease serial (8), started ms
/// (8), deadline ms (8), all little-endian, then the failure message (UTF-8, at most
/// [`MAX_MESSAGE_BYTES`]).
#[derive(Clone, Debug, PartialEq, Eq)]
struct LeaseRecord {
    id: LeaseId,
    owner: ProcessIdentity,
    state: LeaseState,
    /// Wall-clock ms since the Unix epoch when the lease was taken.
    started_ms: u64,
    /// Wall-clock ms after which the lease is stale unless renewed.
    deadline_ms: u64,
    /// Why the computation failed; empty while running.
    message: String,
}

impl LeaseRecord {
    const VERSION: u8 = 1;
    const HEADER_LEN: usize = 2 + 4 + 8 * 6;

    fn running(now_ms: u64, duration: Duration) -> LeaseRecord {
        LeaseRecord {
            id: LeaseId::next(),
            owner: ProcessIdentity::current(),
            state: LeaseState::Running,
            started_ms: now_ms,
            deadline_ms: now_ms.saturating_add(millis(duration)),
            message: String::new(),
        }
    }

    /// Stale: its deadline passed without renewal, or its owner process has ended.
    fn is_stale(&self, now_ms: u64) -> bool {
        now_ms > self.deadline_ms || self.owner.has_ended()
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::HEADER_LEN + self.message.len());
        bytes.push(Self::VERSION);
        bytes.push(match self.state {
            LeaseState::Running => 1,
            LeaseState::Failed => 2,
        });
        bytes.extend_from_slice(&self.owner.pid.to_le_bytes());
        for field in [
            self.owner.start_ticks,
            self.owner.pid_namespace,
            self.id.nonce,
            self.id.serial,
            self.started_ms,
            self.deadline_ms,
        ] {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        bytes.extend_from_slice(self.message.as_bytes());
        bytes
    }

    /// `None` for bytes this version does not understand (damaged, or a newer format).
    fn decode(bytes: &[u8]) -> Option<LeaseRecord> {
        let (header, message) = bytes.split_at_checked(Self::HEADER_LEN)?;
        if header[0] != Self::VERSION {
            return None;
        }
        let state = match header[1] {
            1 => LeaseState::Running,
            2 => LeaseState::Failed,
            _ => return None,
        };
        let pid = u32::from_le_bytes(header[2..6].try_into().ok()?);
        let mut words = header[6..]
            .chunks_exact(8)
            .map(|chunk| chunk.try_into().map(u64::from_le_bytes));
        let mut word = || words.next()?.ok();
        Some(LeaseRecord {
            owner: ProcessIdentity {
                pid,
                start_ticks: word()?,
                pid_namespace: word()?,
            },
            id: LeaseId {
                nonce: word()?,
                serial: word()?,
            },
            state,
            started_ms: word()?,
            deadline_ms: word()?,
            message: String::from_utf8_lossy(message).into_owned(),
        })
    }
}

/// What a look at a key's lease row means to a leader that watches `watched` (the running
/// lease it has been waiting on, if any).
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// No lease, a failed one nobody here waited on, or a row this version cannot read: take it.
    Free,
    /// A running lease whose owner has ended or missed its deadline: take it over.
    Stale(LeaseRecord),
    /// A running lease of a live owner: wait.
    Busy(LeaseRecord),
    /// The watched lease is gone (released, or replaced by a later flight): look again.
    Finished,
    /// The watched lease's computation failed.
    Failed(LeaseRecord),
}

fn classify(row: Option<&[u8]>, watched: Option<LeaseId>, now_ms: u64) -> Seen {
    let Some(row) = row else {
        return match watched {
            Some(_) => Seen::Finished,
            None => Seen::Free,
        };
    };
    let Some(record) = LeaseRecord::decode(row) else {
        return Seen::Free;
    };
    match (record.state, watched) {
        (_, Some(id)) if record.id != id => Seen::Finished,
        (LeaseState::Failed, Some(_)) => Seen::Failed(record),
        (LeaseState::Failed, None) => Seen::Free,
        (LeaseState::Running, _) if record.is_stale(now_ms) => Seen::Stale(record),
        (LeaseState::Running, _) => Seen::Busy(record),
    }
}

/// How a leader's attempt on the lease ended.
enum Acquired<'s, S: LeaseStore> {
    /// It holds the lease: compute.
    Lease(Lease<'s, S>),
    /// The lease it waited on was released: look again.
    Finished,
    /// The computation it waited on failed.
    Failed { owner_pid: u32, message: String },
}

/// Takes the lease of `key`, or waits for its owner and says how that owner's flight ended.
fn acquire<'s, S: LeaseStore>(
    store: &'s S,
    key: &[u8],
    leadership: &Leadership<'_>,
    wait: &Wait,
) -> Result<Acquired<'s, S>> {
    let lease_duration = store.options().lease_duration;
    let mut watched: Option<LeaseId> = None;
    let mut poll = FIRST_POLL;
    loop {
        // A read first: only a lease that looks free is worth a commit.
        let row = store.read_lease(key)?;
        let seen = match classify(row.as_deref(), watched, now_ms()) {
            Seen::Free | Seen::Stale(_) => store.update_lease(key, |row| {
                let now = now_ms();
                match classify(row, watched, now) {
                    Seen::Free => {
                        let mine = LeaseRecord::running(now, lease_duration);
                        (LeaseWrite::Put(mine.encode()), Ok((mine, None)))
                    }
                    Seen::Stale(old) => {
                        let mine = LeaseRecord::running(now, lease_duration);
                        (LeaseWrite::Put(mine.encode()), Ok((mine, Some(old))))
                    }
                    other => (LeaseWrite::Keep, Err(other)),
                }
            })?,
            other => Err(other),
        };
        match seen {
            Ok((mine, took_over)) => {
                if let Some(old) = took_over {
                    AtomicCounters::add(&store.counters().takeovers, 1);
                    let reason = if old.owner.has_ended() {
                        "its process has ended"
                    } else {
                        "its deadline passed without renewal"
                    };
                    tracing::warn!(tag = %store.tag(), key = %KeyDisplay::new(key), owner_pid = old.owner.pid, reason, "took over the lease of a computation");
                }
                leadership.set_owner(std::process::id());
                return Ok(Acquired::Lease(Lease {
                    store,
                    key: key.to_vec(),
                    id: mine.id,
                    released: false,
                }));
            }
            Err(Seen::Finished) => {
                store.refresh_snapshot();
                return Ok(Acquired::Finished);
            }
            Err(Seen::Failed(record)) => {
                store.refresh_snapshot();
                return Ok(Acquired::Failed {
                    owner_pid: record.owner.pid,
                    message: record.message,
                });
            }
            Err(Seen::Busy(record)) => {
                if watched.is_none() {
                    watched = Some(record.id);
                    leadership.set_owner(record.owner.pid);
                    AtomicCounters::add(&store.counters().waits, 1);
                    tracing::debug!(tag = %store.tag(), key = %KeyDisplay::new(key), owner_pid = record.owner.pid, "waiting for another process's computation");
                }
                let Some(left) = wait.remaining() else {
                    return Err(wait.timed_out(store, key, record.owner.pid));
                };
                std::thread::sleep(poll.min(left));
                poll = (poll * 2).min(MAX_POLL);
            }
            // Free or stale a moment ago and not any more: look again at once.
            Err(Seen::Free | Seen::Stale(_)) => {}
        }
    }
}

/// A lease this caller holds. Dropped without [`Lease::release`] (the computation panicked),
/// it is released as failed, so waiters in other processes learn it at once instead of at the
/// deadline.
struct Lease<'s, S: LeaseStore> {
    store: &'s S,
    key: Vec<u8>,
    id: LeaseId,
    released: bool,
}

impl<S: LeaseStore> Lease<'_, S> {
    /// Pushes the deadline one lease duration past now; `false` when the lease is no longer
    /// this one's (taken over after a missed deadline).
    fn renew(&self) -> Result<bool> {
        let duration = self.store.options().lease_duration;
        self.store
            .update_lease(&self.key, |row| match row.and_then(LeaseRecord::decode) {
                Some(current) if current.id == self.id && current.state == LeaseState::Running => {
                    let renewed = LeaseRecord {
                        deadline_ms: now_ms().saturating_add(millis(duration)),
                        ..current
                    };
                    (LeaseWrite::Put(renewed.encode()), true)
                }
                _ => (LeaseWrite::Keep, false),
            })
    }

    /// Ends the lease: removes it (`None`), or marks it failed with the message, which the
    /// waiters read. The same commit carries the value the computation buffered.
    fn release(mut self, failure: Option<&str>) {
        self.released = true;
        self.end(failure);
    }

    fn end(&self, failure: Option<&str>) {
        let ended =
            self.store
                .update_lease(&self.key, |row| match row.and_then(LeaseRecord::decode) {
                    Some(current) if current.id == self.id => match failure {
                        None => (LeaseWrite::Remove, true),
                        Some(message) => {
                            let failed = LeaseRecord {
                                state: LeaseState::Failed,
                                message: truncated(message.to_owned()),
                                ..current
                            };
                            (LeaseWrite::Put(failed.encode()), true)
                        }
                    },
                    _ => (LeaseWrite::Keep, false),
                });
        match ended {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(tag = %self.store.tag(), key = %KeyDisplay::new(&self.key), "the lease had been taken over; the other owner's stays");
            }
            Err(err) => {
                // Waiters take the lease over at its deadline.
                AtomicCounters::add(&self.store.counters().errors, 1);
                tracing::error!(tag = %self.store.tag(), key = %KeyDisplay::new(&self.key), error = %ErrorChain(&err), "could not release the lease of a computation");
            }
        }
    }
}

impl<S: LeaseStore> Drop for Lease<'_, S> {
    fn drop(&mut self) {
        if !self.released {
            let message = if std::thread::panicking() {
                "the computation panicked"
            } else {
                "the computation was abandoned"
            };
            self.end(Some(message));
        }
    }
}

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
