//! In-process coordination: `Flights`, one slot per key being computed, where the threads of
//! one instance meet: the first to miss a key leads, the others block on its condition variable.

use super::*;

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
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
pub(super) struct Slot {
    pub(super) state: Mutex<SlotState>,
    pub(super) settled: Condvar,
}

pub(super) struct SlotState {
    /// The process computing, as far as the leader knows: this one, or the owner of the
    /// lease it waits on. Named in a follower's timeout error.
    pub(super) owner_pid: u32,
    /// Set once, by the leader, when its flight ends.
    pub(super) outcome: Option<Outcome>,
}

/// How a leader's flight ended, as its followers learn it.
#[derive(Clone, Debug)]
pub(super) enum Outcome {
    /// Computed here or elsewhere: look again.
    Finished,
    /// The computation failed (here or in the lease owner's process).
    Failed { owner_pid: u32, message: String },
    /// The leader stopped without an outcome (it timed out, or storage failed): look again,
    /// and one of the followers leads.
    Abandoned,
}

pub(super) enum Role<'f> {
    Leader(Leadership<'f>),
    Follower(Arc<Slot>),
}

impl Flights {
    /// Joins the flight of `key`: as its leader when no thread of this process leads it.
    pub(super) fn join(&self, key: &[u8]) -> Role<'_> {
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
    pub(super) fn wait(&self, wait: &Wait) -> std::result::Result<Outcome, u32> {
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
pub(super) struct Leadership<'f> {
    pub(super) flights: &'f Flights,
    pub(super) key: Vec<u8>,
    pub(super) slot: Arc<Slot>,
    pub(super) settled: bool,
}

impl Leadership<'_> {
    pub(super) fn set_owner(&self, owner_pid: u32) {
        lock(&self.slot.state).owner_pid = owner_pid;
    }

    pub(super) fn settle(mut self, outcome: Outcome) {
        self.publish(outcome);
    }

    pub(super) fn publish(&mut self, outcome: Outcome) {
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
