//! Counters of the remote tier, per process (not persisted: see the crate docs).

use std::sync::atomic::{AtomicU64, Ordering};

/// The remote tier's counters since this process attached it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteStats {
    /// Fetches that found a usable entry.
    pub hits: u64,
    /// Fetches the server answered with nothing (or whose chunks had gone).
    pub misses: u64,
    /// Operations that failed (unreachable, or an error reply).
    pub errors: u64,
    /// Of `errors`, those that ran out of time.
    pub timeouts: u64,
    /// Entries refused: damaged, unsigned or signed by an untrusted key, over the size limit.
    pub rejected: u64,
    /// Operations not attempted because the breaker was open.
    pub skipped: u64,
    /// Bytes received from the server.
    pub bytes_in: u64,
    /// Bytes sent to the server.
    pub bytes_out: u64,
    /// Entries uploaded.
    pub published: u64,
    /// Entries not uploaded: queue full, read-only, writes refused by the server, failure.
    pub dropped: u64,
    /// Fleet leases this machine took (it computed for the fleet).
    pub leases_taken: u64,
    /// Times a fleet lease was held by another machine (this one waited for its result).
    pub leases_busy: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) leases_taken: AtomicU64,
    pub(crate) leases_busy: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RemoteStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RemoteStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            errors: get(&self.errors),
            timeouts: get(&self.timeouts),
            rejected: get(&self.rejected),
            skipped: get(&self.skipped),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            published: get(&self.published),
            dropped: get(&self.dropped),
            leases_taken: get(&self.leases_taken),
            leases_busy: get(&self.leases_busy),
        }
    }
}
