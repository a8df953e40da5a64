//! A circuit breaker per endpoint: after `failures` failures in a row it opens, and while open
//! no operation touches the network (a fetch is a miss, an upload is dropped) until `open_for`
//! has passed; then one probe goes through (half-open), and its outcome closes the breaker or
//! opens it again. So a sick remote costs its timeout a few times, not on every operation.
//!
//! Across processes, through the hint file under the cache root (`hint.rs`, attached with
//! `attach_hint` once the root is known): opening writes it, a breaker that starts (closed,
//! with no failure yet) while a hint of its endpoint is current starts open for the time the
//! hint has left, and the endpoint answering again removes it.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::hint::Hint;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe is in flight; others stay out until it ends.
    HalfOpen,
}

/// The breaker's state, as `remote status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Operations go through.
    Closed,
    /// Operations are skipped.
    Open,
    /// One probe is in flight.
    HalfOpen,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    failures_to_open: u32,
    open_for: Duration,
    /// The hint file shared with the machine's other processes, once the root is known.
    hint: OnceLock<Hint>,
}

impl Breaker {
    pub(crate) fn new(failures_to_open: u32, open_for: Duration) -> Self {
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            failures_to_open: failures_to_open.max(1),
            open_for,
            hint: OnceLock::new(),
        }
    }

    /// Attaches the hint file (the first attached stays) and, if it says the endpoint is down
    /// and this breaker has seen no failure yet, opens for the time the hint has left.
    pub(crate) fn attach_hint(&self, hint: Hint) {
        if self.hint.set(hint).is_err() {
            return;
        }
        let Some(left) = self
            .hint
            .get()
            .and_then(|hint| hint.read_open_for(self.open_for))
        else {
            return;
        };
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if *state == (State::Closed { failures: 0 }) {
            *state = State::Open {
                until: Instant::now() + left,
            };
            tracing::debug!(
                ?left,
                "the remote breaker hint says the endpoint is down; skipping it for now"
            );
        }
    }

    /// Whether an operation may go to the network now.
    pub(crate) fn admit(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    /// Whether the breaker is open and its time is not up: an operation would be skipped. Lets
    /// a caller skip before preparing the operation (a local miss stays cheap); unlike
    /// [`Breaker::admit`] it never starts a probe.
    pub(crate) fn is_open(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(PoisonError::into_inner),
            State::Open { until } if Instant::now() < until
        )
    }

    /// The operation reached the server (a miss counts: the server answered).
    pub(crate) fn succeeded(&self) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = State::Closed { failures: 0 };
        if let Some(hint) = self.hint.get() {
            hint.endpoint_answered();
        }
    }

    /// The operation could not reach the server (refused, timed out, dropped). Returns whether
    /// this failure opened the breaker.
    pub(crate) fn failed(&self) -> bool {
        let opened = self.count_failure();
        if opened && let Some(hint) = self.hint.get() {
            hint.write(self.open_for);
        }
        opened
    }

    fn count_failure(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let open = State::Open {
            until: Instant::now() + self.open_for,
        };
        match *state {
            State::Closed { failures } if failures + 1 >= self.failures_to_open => {
                *state = open;
                true
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::HalfOpen | State::Open { .. } => {
                *state = open;
                true
            }
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        match *self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_after_the_failures_in_a_row_and_a_success_closes_it() {
        let breaker = Breaker::new(3, Duration::from_secs(3600));
        assert!(breaker.admit());
        assert!(!breaker.failed());
        breaker.succeeded();
        assert!(!breaker.failed());
        assert!(!breaker.failed());
        assert!(breaker.failed(), "the third failure in a row opens it");
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.is_open());
        assert!(!breaker.admit(), "open for an hour");
    }

    #[test]
    fn an_open_breaker_lets_one_probe_through_once_its_time_is_up() {
        let breaker = Breaker::new(1, Duration::ZERO);
        assert!(breaker.failed());
        assert!(!breaker.is_open(), "its time is up");
        assert!(breaker.admit(), "the probe");
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert!(!breaker.admit(), "only one probe at a time");
        breaker.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(breaker.admit());
    }
}
