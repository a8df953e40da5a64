//! Statistics: per-instance counters (lock-free), the snapshots `get_stats` returns, and the
//! aggregation across instances that the coordinator reports. [`Counters`] holds the local
//! tier's counters and, in [`RemoteCounters`], the remote tier's: both are persisted the same
//! way (the `counters` table, and the reads file of processes that only read).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// A snapshot of operation counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Reads that found a live value (an empty or "falsy" value is a hit).
    pub hits: u64,
    /// Reads that found nothing, an expired entry, or an unreadable one.
    pub misses: u64,
    /// Values stored.
    pub sets: u64,
    /// Entries removed by `delete`/`delete_many` that existed.
    pub deletes: u64,
    /// Entries removed to bring the tag back under its size limit.
    pub evictions: u64,
    /// Expired entries removed: by `cleanup()`, by the batch every commit sweeps, or to make
    /// room.
    pub expirations: u64,
    /// Operations that failed.
    pub errors: u64,
    /// Operations of any kind.
    pub operations: u64,
    /// Time spent in operations, in nanoseconds.
    pub operation_time_ns: u64,
    /// Single-flight computations this instance ran (each a miss that no other caller of the
    /// machine was computing), whether they succeeded or failed.
    pub computations: u64,
    /// Times a single-flight caller waited for a computation running in another thread or
    /// process instead of computing itself.
    pub waits: u64,
    /// Single-flight leases taken over from an owner that died or stopped renewing.
    pub takeovers: u64,
    /// The remote tier's counters (all zero without a remote tier).
    pub remote: RemoteCounters,
}

/// The remote tier's counters, beside the local ones in [`Counters`]. The remote
/// implementation counts all but `backfills` and `fleet_waits` (the core's) and hands its counts
/// over through [`crate::RemoteStore::take_counters`]; the store whose commit (or close, or
/// `get_stats`) takes them persists them with its tag's counters. **Attribution:** one remote
/// serves every tag of a coordinator, so its counts go to the tag whose store takes them
/// first: exact for a process that uses one tag (a command-line run), approximate per tag
/// otherwise; the sum over a root's tags is exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteCounters {
    /// Fetches that found a usable entry.
    pub hits: u64,
    /// Fetches the remote answered with nothing (or whose parts had gone).
    pub misses: u64,
    /// Remote operations that failed (unreachable, or an error reply).
    pub errors: u64,
    /// Of `errors`, those that ran out of time.
    pub timeouts: u64,
    /// Entries refused: damaged, unsigned or signed by an untrusted key, over a size limit
    /// (counted by the remote, and by the core for a streamed value that does not match its
    /// digest).
    pub rejected: u64,
    /// Operations not attempted because the remote's circuit breaker was open.
    pub skipped: u64,
    /// Bytes received from the remote.
    pub bytes_in: u64,
    /// Bytes sent to the remote.
    pub bytes_out: u64,
    /// Entries uploaded.
    pub published: u64,
    /// Entries not uploaded: queue full, failure, writes refused.
    pub dropped: u64,
    /// Values fetched from the remote and stored locally (counted by the core).
    pub backfills: u64,
    /// Times a single flight waited for another machine's computation (counted by the core).
    pub fleet_waits: u64,
}

impl RemoteCounters {
    /// The names and values of every counter, in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 12] {
        [
            ("hits", self.hits),
            ("misses", self.misses),
            ("errors", self.errors),
            ("timeouts", self.timeouts),
            ("rejected", self.rejected),
            ("skipped", self.skipped),
            ("bytes_in", self.bytes_in),
            ("bytes_out", self.bytes_out),
            ("published", self.published),
            ("dropped", self.dropped),
            ("backfills", self.backfills),
            ("fleet_waits", self.fleet_waits),
        ]
    }

    fn slot(&mut self, name: &str) -> Option<&mut u64> {
        Some(match name {
            "hits" => &mut self.hits,
            "misses" => &mut self.misses,
            "errors" => &mut self.errors,
            "timeouts" => &mut self.timeouts,
            "rejected" => &mut self.rejected,
            "skipped" => &mut self.skipped,
            "bytes_in" => &mut self.bytes_in,
            "bytes_out" => &mut self.bytes_out,
            "published" => &mut self.published,
            "dropped" => &mut self.dropped,
            "backfills" => &mut self.backfills,
            "fleet_waits" => &mut self.fleet_waits,
            _ => return None,
        })
    }

    /// Field-wise sum.
    pub fn plus(&self, other: &RemoteCounters) -> RemoteCounters {
        let mut out = *self;
        for (name, value) in other.fields() {
            if let Some(slot) = out.slot(name) {
                *slot = slot.saturating_add(value);
            }
        }
        out
    }

    /// Whether every counter is zero.
    pub fn is_zero(&self) -> bool {
        self.fields().iter().all(|(_, value)| *value == 0)
    }
}

/// The prefix of the remote tier's counters in [`Counters::fields`] (and so in the tag's
/// `counters` table and reads file).
const REMOTE_PREFIX: &str = "remote_";

impl Counters {
    /// How many counters [`Counters::fields`] lists.
    pub(crate) const FIELDS: usize = 24;

    /// The names and values of every counter, in a fixed order (used to persist them): the
    /// local ones, then the remote tier's, prefixed `remote_`.
    pub(crate) fn fields(&self) -> [(&'static str, u64); Self::FIELDS] {
        const REMOTE_NAMES: [&str; 12] = [
            "remote_hits",
            "remote_misses",
            "remote_errors",
            "remote_timeouts",
            "remote_rejected",
            "remote_skipped",
            "remote_bytes_in",
            "remote_bytes_out",
            "remote_published",
            "remote_dropped",
            "remote_backfills",
            "remote_fleet_waits",
        ];
        let local = self.local_fields();
        let remote = self.remote.fields();
        std::array::from_fn(|i| {
            if i < local.len() {
                local[i]
            } else {
                let j = i - local.len();
                debug_assert_eq!(&REMOTE_NAMES[j][REMOTE_PREFIX.len()..], remote[j].0);
                (REMOTE_NAMES[j], remote[j].1)
            }
        })
    }

    fn local_fields(&self) -> [(&'static str, u64); 12] {
        [
            ("hits", self.hits),
            ("misses", self.misses),
            ("sets", self.sets),
            ("deletes", self.deletes),
            ("evictions", self.evictions),
            ("expirations", self.expirations),
            ("errors", self.errors),
            ("operations", self.operations),
            ("operation_time_ns", self.operation_time_ns),
            ("computations", self.computations),
            ("waits", self.waits),
            ("takeovers", self.takeovers),
        ]
    }

    /// Sets the counter called `name`; unknown names (from a newer version) are ignored.
    pub(crate) fn set_field(&mut self, name: &str, value: u64) {
        if let Some(remote) = name.strip_prefix(REMOTE_PREFIX) {
            if let Some(slot) = self.remote.slot(remote) {
                *slot = value;
            }
            return;
        }
        let slot = match name {
            "hits" => &mut self.hits,
            "misses" => &mut self.misses,
            "sets" => &mut self.sets,
            "deletes" => &mut self.deletes,
            "evictions" => &mut self.evictions,
            "expirations" => &mut self.expirations,
            "errors" => &mut self.errors,
            "operations" => &mut self.operations,
            "operation_time_ns" => &mut self.operation_time_ns,
            "computations" => &mut self.computations,
            "waits" => &mut self.waits,
            "takeovers" => &mut self.takeovers,
            _ => return,
        };
        *slot = value;
    }

    /// Field-wise sum.
    pub fn plus(&self, other: &Counters) -> Counters {
        self.zip(other, u64::saturating_add)
    }

    /// Field-wise difference, clamped at zero.
    pub fn minus(&self, other: &Counters) -> Counters {
        self.zip(other, u64::saturating_sub)
    }

    fn zip(&self, other: &Counters, op: impl Fn(u64, u64) -> u64) -> Counters {
        let mut out = Counters::default();
        for ((name, left), (_, right)) in self.fields().into_iter().zip(other.fields()) {
            out.set_field(name, op(left, right));
        }
        out
    }

    /// Whether every counter is zero.
    pub fn is_zero(&self) -> bool {
        self.fields().iter().all(|(_, value)| *value == 0)
    }

    /// Hits as a percentage of reads; 0 when there were no reads.
    pub fn hit_rate(&self) -> f64 {
        percent(self.hits, self.hits + self.misses)
    }

    /// Misses as a percentage of reads; 0 when there were no reads.
    pub fn miss_rate(&self) -> f64 {
        percent(self.misses, self.hits + self.misses)
    }

    /// Mean time per operation; zero when there were none.
    pub fn average_operation_time(&self) -> Duration {
        match self.operation_time_ns.checked_div(self.operations) {
            Some(ns) => Duration::from_nanos(ns),
            None => Duration::ZERO,
        }
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Live counters of one instance, updated without locks.
#[derive(Debug, Default)]
pub(crate) struct AtomicCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) sets: AtomicU64,
    pub(crate) deletes: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) operations: AtomicU64,
    pub(crate) operation_time_ns: AtomicU64,
    pub(crate) computations: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) takeovers: AtomicU64,
    /// The remote tier's counters: those the remote handed over, and the core's own.
    pub(crate) remote: Mutex<RemoteCounters>,
    /// Bumped by the core's remote counters, kept apart so that counting is lock-free.
    pub(crate) remote_backfills: AtomicU64,
    /// Streamed values the core found not to match their digest (`RemoteValue::Stream`).
    pub(crate) remote_rejected: AtomicU64,
    pub(crate) remote_fleet_waits: AtomicU64,
}

impl AtomicCounters {
    pub(crate) fn add(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Counters {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Counters {
            hits: load(&self.hits),
            misses: load(&self.misses),
            sets: load(&self.sets),
            deletes: load(&self.deletes),
            evictions: load(&self.evictions),
            expirations: load(&self.expirations),
            errors: load(&self.errors),
            operations: load(&self.operations),
            operation_time_ns: load(&self.operation_time_ns),
            computations: load(&self.computations),
            waits: load(&self.waits),
            takeovers: load(&self.takeovers),
            remote: RemoteCounters {
                backfills: load(&self.remote_backfills),
                rejected: load(&self.remote_rejected),
                fleet_waits: load(&self.remote_fleet_waits),
                ..RemoteCounters::default()
            }
            .plus(&self.remote.lock().unwrap_or_else(PoisonError::into_inner)),
        }
    }

    /// Adds what a remote tier handed over.
    pub(crate) fn add_remote(&self, counters: &RemoteCounters) {
        let mut remote = self.remote.lock().unwrap_or_else(PoisonError::into_inner);
        *remote = remote.plus(counters);
    }
}

/// What `get_stats` reports for one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheStats {
    /// The instance's tag. Kept across `clear()` (the original lost it: its defect 9).
    pub tag: String,
    /// `false` for a disabled cache.
    pub enabled: bool,
    /// Live (unexpired) entries.
    pub entries: u64,
    /// Bytes of live entries: keys, stored values, and the blobs and directories they own
    /// (a blob shared by several entries counts for each).
    pub bytes: u64,
    /// What the size limit counts: keys, entries (expired ones not yet removed included), each
    /// blob file once, and owned directories.
    pub disk_bytes: u64,
    /// The tag's size limit in bytes (0 for a disabled cache).
    pub max_size_bytes: u64,
    /// The tag's limit on entries, if any.
    pub max_entries: Option<u64>,
    /// Free and total bytes of the filesystem the tag lives on, when they can be read.
    pub filesystem: Option<crate::config::FilesystemSpace>,
    /// What `min_free_space` asks to keep free on that filesystem, in bytes.
    pub min_free_bytes: Option<u64>,
    /// When `cleanup()` last ran on this tag, in any process.
    pub last_cleanup: Option<std::time::SystemTime>,
    /// Counters of this instance since it was opened.
    pub counters: Counters,
    /// Counters of every process that used this tag, over its whole life, including this
    /// instance's. Kept across `clear()`.
    pub lifetime: Counters,
}

/// Statistics over several instances, as the coordinator reports them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AggregatedStats {
    /// How many instances are included.
    pub instances: usize,
    /// Sum of live entries.
    pub entries: u64,
    /// Sum of live bytes.
    pub bytes: u64,
    /// Sum of the instances' counters since they were opened.
    pub totals: Counters,
    /// Per-tag breakdown, keyed by the registry key `"{root}:{tag}"`.
    pub per_instance: BTreeMap<String, CacheStats>,
}

impl AggregatedStats {
    /// Adds one instance's statistics.
    pub fn add(&mut self, key: String, stats: CacheStats) {
        self.instances += 1;
        self.entries += stats.entries;
        self.bytes += stats.bytes;
        self.totals = self.totals.plus(&stats.counters);
        self.per_instance.insert(key, stats);
    }

    /// Hit rate across all instances, in percent.
    pub fn overall_hit_rate(&self) -> f64 {
        self.totals.hit_rate()
    }

    /// Sum of counters per tag (several roots may share a tag).
    pub fn by_tag(&self) -> BTreeMap<String, Counters> {
        let mut by_tag: BTreeMap<String, Counters> = BTreeMap::new();
        for stats in self.per_instance.values() {
            let slot = by_tag.entry(stats.tag.clone()).or_default();
            *slot = slot.plus(&stats.counters);
        }
        by_tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_handle_no_reads() {
        let counters = Counters::default();
        assert_eq!(counters.hit_rate(), 0.0);
        assert_eq!(counters.average_operation_time(), Duration::ZERO);
    }

    #[test]
    fn rates_are_percentages() {
        let counters = Counters {
            hits: 3,
            misses: 1,
            operations: 4,
            operation_time_ns: 4_000,
            ..Counters::default()
        };
        assert_eq!(counters.hit_rate(), 75.0);
        assert_eq!(counters.miss_rate(), 25.0);
        assert_eq!(
            counters.average_operation_time(),
            Duration::from_nanos(1_000)
        );
    }

    #[test]
    fn the_remote_counters_travel_with_the_local_ones_by_their_prefixed_names() {
        let a = Counters {
            hits: 1,
            remote: RemoteCounters {
                published: 2,
                fleet_waits: 3,
                ..RemoteCounters::default()
            },
            ..Counters::default()
        };
        let fields = a.fields();
        assert!(fields.contains(&("remote_published", 2)));
        assert!(fields.contains(&("remote_fleet_waits", 3)));
        let mut read_back = Counters::default();
        for (name, value) in fields {
            read_back.set_field(name, value);
        }
        assert_eq!(read_back, a, "persisted and read back by name");
        read_back.set_field("remote_from_a_later_version", 9);
        assert_eq!(read_back, a, "an unknown name is ignored");
        let sum = a.plus(&a);
        assert_eq!((sum.hits, sum.remote.published), (2, 4));
        assert!(sum.minus(&a).minus(&a).is_zero());
    }

    #[test]
    fn plus_and_minus_are_field_wise() {
        let a = Counters {
            hits: 5,
            errors: 1,
            ..Counters::default()
        };
        let b = Counters {
            hits: 2,
            errors: 3,
            ..Counters::default()
        };
        assert_eq!(
            a.plus(&b),
            Counters {
                hits: 7,
                errors: 4,
                ..Counters::default()
            }
        );
        assert_eq!(
            a.minus(&b),
            Counters {
                hits: 3,
                errors: 0,
                ..Counters::default()
            }
        );
    }
}
