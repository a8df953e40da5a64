//! Counters of the remote tier: this process's ([`RemoteStats`], `RedisRemote::stats`), and
//! what has not been handed to the core yet (`take`, for `RemoteStore::take_counters`): the
//! core persists those with a tag's counters, so `glovebox-cache show` has lifetime totals.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use cache_core::RemoteCounters;

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

impl RemoteStats {
    /// The counters the core knows of (`cache_core::RemoteCounters`; backfills and fleet waits
    /// are the core's own, zero here).
    pub fn counters(&self) -> RemoteCounters {
        RemoteCounters {
            hits: self.hits,
            misses: self.misses,
            errors: self.errors,
            timeouts: self.timeouts,
            rejected: self.rejected,
            skipped: self.skipped,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            published: self.published,
            dropped: self.dropped,
            ..RemoteCounters::default()
        }
    }
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
    /// What `take` has handed over so far.
    taken: Mutex<RemoteStats>,
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

    /// What was counted since the last call, for the core to persist. Counts added while this
    /// runs are in this call's answer or the next one's, never in both or neither: `taken`
    /// moves to the snapshot it answered from.
    pub(crate) fn take(&self) -> RemoteCounters {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.snapshot();
        let since = |now: u64, before: u64| now.saturating_sub(before);
        let counters = RemoteCounters {
            hits: since(now.hits, taken.hits),
            misses: since(now.misses, taken.misses),
            errors: since(now.errors, taken.errors),
            timeouts: since(now.timeouts, taken.timeouts),
            rejected: since(now.rejected, taken.rejected),
            skipped: since(now.skipped, taken.skipped),
            bytes_in: since(now.bytes_in, taken.bytes_in),
            bytes_out: since(now.bytes_out, taken.bytes_out),
            published: since(now.published, taken.published),
            dropped: since(now.dropped, taken.dropped),
            ..RemoteCounters::default()
        };
        *taken = now;
        counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_hands_over_each_count_once() {
        let stats = Stats::default();
        Stats::add(&stats.hits, 2);
        Stats::add(&stats.bytes_out, 10);
        let first = stats.take();
        assert_eq!((first.hits, first.bytes_out), (2, 10));
        assert!(stats.take().is_zero(), "taken once");
        Stats::add(&stats.published, 1);
        assert_eq!(stats.take().published, 1);
        assert_eq!(stats.snapshot().hits, 2, "the process's counters stay");
    }
}
