//! Leases across processes: the lease record in the tag's `leases` table, taking a lease (or
//! waiting for its owner, and taking over a stale one), renewing and releasing it.

use super::*;

/// Identifies one lease: this process's random nonce and a serial number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LeaseId {
    pub(super) nonce: u64,
    pub(super) serial: u64,
}

impl LeaseId {
    pub(super) fn next() -> LeaseId {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        LeaseId {
            nonce: process_nonce(),
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// A random number drawn once per process (std's per-process random hash keys), so that lease
/// ids of two processes never collide, even with the same pid.
pub(super) fn process_nonce() -> u64 {
    use std::hash::BuildHasher;
    static NONCE: OnceLock<u64> = OnceLock::new();
    *NONCE.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .hash_one((std::process::id(), std::time::SystemTime::now()))
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LeaseState {
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
pub(super) struct LeaseRecord {
    pub(super) id: LeaseId,
    pub(super) owner: ProcessIdentity,
    pub(super) state: LeaseState,
    /// Wall-clock ms since the Unix epoch when the lease was taken.
    pub(super) started_ms: u64,
    /// Wall-clock ms after which the lease is stale unless renewed.
    pub(super) deadline_ms: u64,
    /// Why the computation failed; empty while running.
    pub(super) message: String,
}

impl LeaseRecord {
    pub(super) const VERSION: u8 = 1;
    const HEADER_LEN: usize = 2 + 4 + 8 * 6;

    pub(super) fn running(now_ms: u64, duration: Duration) -> LeaseRecord {
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
    pub(super) fn is_stale(&self, now_ms: u64) -> bool {
        now_ms > self.deadline_ms || self.owner.has_ended()
    }

    pub(super) fn encode(&self) -> Vec<u8> {
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
    pub(super) fn decode(bytes: &[u8]) -> Option<LeaseRecord> {
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
pub(super) enum Seen {
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

pub(super) fn classify(row: Option<&[u8]>, watched: Option<LeaseId>, now_ms: u64) -> Seen {
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
pub(super) enum Acquired<'s, S: LeaseStore> {
    /// It holds the lease: compute.
    Lease(Lease<'s, S>),
    /// The lease it waited on was released: look again.
    Finished,
    /// The computation it waited on failed.
    Failed { owner_pid: u32, message: String },
}

/// Takes the lease of `key`, or waits for its owner and says how that owner's flight ended.
pub(super) fn acquire<'s, S: LeaseStore>(
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
pub(super) struct Lease<'s, S: LeaseStore> {
    pub(super) store: &'s S,
    pub(super) key: Vec<u8>,
    pub(super) id: LeaseId,
    pub(super) released: bool,
}

impl<S: LeaseStore> Lease<'_, S> {
    /// Pushes the deadline one lease duration past now; `false` when the lease is no longer
    /// this one's (taken over after a missed deadline).
    pub(super) fn renew(&self) -> Result<bool> {
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
    pub(super) fn release(mut self, failure: Option<&str>) {
        self.released = true;
        self.end(failure);
    }

    pub(super) fn end(&self, failure: Option<&str>) {
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
