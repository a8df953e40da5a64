//! The fleet's single-flight lease, on an engine that has leases (Redis; S3 alone has none, and
//! every machine computes): `SET name token NX PX duration` takes it; a thread renews it
//! every third of its duration with a compare-and-expire script while the guard lives; release
//! (or drop: a panicking computation) deletes it with a compare-and-delete script. A token is
//! random per lease, so a lease that expired and was taken by another machine is never renewed
//! or deleted by this one. Any failure (this machine killed, a partition, a restarted server)
//! costs duplicate work: the lease expires, another machine computes.

use std::io::Read as _;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cache_core::keys::hex;
use cache_core::{RemoteLease, RemoteLeaseGuard};

use crate::engine::{Outcome, run};
use crate::envelope::lease_name;
use crate::remote::Shared;
use crate::stats::Stats;

/// Tries to take the lease of `key` for `duration`.
pub(crate) fn take(shared: &Arc<Shared>, tag: &str, key: &[u8], duration: Duration) -> RemoteLease {
    let Some(leases) = shared.fetch_engine.leases() else {
        // An engine without leases (S3 alone): every machine computes.
        return RemoteLease::NotCoordinated;
    };
    let Some(token) = token() else {
        return RemoteLease::NotCoordinated;
    };
    let name = lease_name(&shared.config.prefix, tag, key);
    let ms = u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let outcome = run(&shared.breaker, &shared.stats, || {
        leases.take(&name, &token, ms)
    });
    match outcome {
        Outcome::Done(true) => {
            Stats::add(&shared.stats.leases_taken, 1);
            RemoteLease::Granted(Box::new(Held::start(Arc::clone(shared), name, token, ms)))
        }
        Outcome::Done(false) => {
            Stats::add(&shared.stats.leases_busy, 1);
            RemoteLease::HeldElsewhere
        }
        Outcome::Skipped | Outcome::Failed(_) => RemoteLease::NotCoordinated,
    }
}

/// 16 random bytes in hex.
fn token() -> Option<String> {
    let mut bytes = [0u8; 16];
    let read =
        std::fs::File::open("/dev/urandom").and_then(|mut random| random.read_exact(&mut bytes));
    match read {
        Ok(()) => Some(hex(&bytes)),
        Err(err) => {
            tracing::warn!(error = %err, "no randomness for a fleet lease token; not coordinating");
            None
        }
    }
}

/// A lease this machine holds, renewed by a thread until released or dropped.
struct Held {
    shared: Arc<Shared>,
    name: String,
    token: String,
    /// Closing it stops the renewal thread.
    stop: Mutex<Option<mpsc::Sender<()>>>,
}

impl Held {
    fn start(shared: Arc<Shared>, name: String, token: String, ms: u64) -> Held {
        let (stop, stopped) = mpsc::channel::<()>();
        let every = Duration::from_millis((ms / 3).max(1));
        let renewer = (Arc::clone(&shared), name.clone(), token.clone());
        let spawned = std::thread::Builder::new()
            .name("glovebox-cache-fleet-lease".to_owned())
            .spawn(move || {
                let (shared, name, token) = renewer;
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    let Some(leases) = shared.fetch_engine.leases() else {
                        break;
                    };
                    let outcome = run(&shared.breaker, &shared.stats, || {
                        leases.renew(&name, &token, ms)
                    });
                    if let Outcome::Done(false) = outcome {
                        tracing::warn!("the fleet lease was lost while computing; another machine may compute too");
                        break;
                    }
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "could not start the fleet lease renewal; a long computation may be duplicated");
        }
        Held {
            shared,
            name,
            token,
            stop: Mutex::new(Some(stop)),
        }
    }
}

impl RemoteLeaseGuard for Held {
    fn release(&self) {
        let Some(stop) = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        drop(stop);
        let shared = &self.shared;
        if let Some(leases) = shared.fetch_engine.leases() {
            let _ = run(&shared.breaker, &shared.stats, || {
                leases.release(&self.name, &self.token)
            });
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}
