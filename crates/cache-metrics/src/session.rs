//! What one session (one invocation of the program) records: `SessionId`, `SessionMetrics`, and
//! its parts `Timing` and `CacheActivity`.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::{AggregatedStats, Counters, KeyDisplay, keys};
use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};

/// The id of one session: a UUID, held in its canonical lower-case hyphenated form.
///
/// Parsing accepts the 8-4-4-4-12 hex form in any case; `ABC...` and `abc...` are one session.
///
/// ```
/// use cache_metrics::SessionId;
/// let id: SessionId = "67E55044-10B1-426F-9247-BB680E5FE0C8".parse()?;
/// assert_eq!(id.as_str(), "67e55044-10b1-426f-9247-bb680e5fe0c8");
/// assert!(SessionId::parse("not-a-uuid").is_err());
/// # Ok::<(), cache_metrics::MetricsError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(String);

impl SessionId {
    /// Parses `text` (a UUID in the 8-4-4-4-12 hex form, any case).
    pub fn parse(text: &str) -> Result<Self> {
        keys::canonical_uuid(text)
            .map(SessionId)
            .ok_or_else(|| MetricsError::InvalidSessionId {
                value: KeyDisplay::new(text.as_bytes()),
            })
    }

    /// A new random (version 4) session id.
    ///
    /// Unique, not unpredictable: the bits come from the standard library's per-process random
    /// hash keys, the time, the process id and a counter, which is plenty for telling sessions
    /// apart and never meant for anything secret.
    pub fn generate() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_nanos())
            .unwrap_or(0);
        let half = |salt: u64| {
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(salt);
            hasher.write_u128(nanos);
            hasher.write_u32(std::process::id());
            hasher.write_u64(count);
            hasher.finish()
        };
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&half(1).to_le_bytes());
        bytes[8..].copy_from_slice(&half(2).to_le_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        SessionId(format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        ))
    }

    /// The canonical text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SessionId {
    type Err = MetricsError;

    fn from_str(text: &str) -> Result<Self> {
        SessionId::parse(text)
    }
}

impl TryFrom<String> for SessionId {
    type Error = MetricsError;

    fn try_from(text: String) -> Result<Self> {
        SessionId::parse(&text)
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Upper bounds of the [`Timing`] buckets: the original's operation-duration histogram range,
/// 0.1 ms to 5 s. An observation above the last bound goes to one more, open-ended bucket.
pub const TIMING_BUCKET_BOUNDS: [Duration; 10] = [
    Duration::from_micros(100),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(5),
];

/// A histogram of durations: count, total, minimum, maximum, and counts per bucket of
/// [`TIMING_BUCKET_BOUNDS`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timing {
    count: u64,
    total: Duration,
    min: Option<Duration>,
    max: Option<Duration>,
    /// Invariant: empty (nothing observed yet) or one count per bound plus the open-ended one.
    /// `observe` restores it if a stored value broke it, rather than trusting stored data.
    buckets: Vec<u64>,
}

impl Timing {
    /// Records one observation.
    pub fn observe(&mut self, duration: Duration) {
        self.count = self.count.saturating_add(1);
        self.total = self.total.saturating_add(duration);
        self.min = Some(self.min.map_or(duration, |min| min.min(duration)));
        self.max = Some(self.max.map_or(duration, |max| max.max(duration)));
        self.buckets.resize(TIMING_BUCKET_BOUNDS.len() + 1, 0);
        let index = TIMING_BUCKET_BOUNDS
            .iter()
            .position(|bound| duration <= *bound)
            .unwrap_or(TIMING_BUCKET_BOUNDS.len());
        if let Some(slot) = self.buckets.get_mut(index) {
            *slot = slot.saturating_add(1);
        }
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their sum.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// The shortest; `None` before the first observation.
    pub fn min(&self) -> Option<Duration> {
        self.min
    }

    /// The longest; `None` before the first observation.
    pub fn max(&self) -> Option<Duration> {
        self.max
    }

    /// The mean; `None` before the first observation.
    pub fn mean(&self) -> Option<Duration> {
        let count = u32::try_from(self.count).unwrap_or(u32::MAX);
        self.total.checked_div(count)
    }

    /// Each bucket's upper bound (`None` for the open-ended last one) and how many observations
    /// fell in it (those above the previous bound, up to and including this one).
    pub fn buckets(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        TIMING_BUCKET_BOUNDS
            .iter()
            .copied()
            .map(Some)
            .chain([None])
            .enumerate()
            .map(|(index, bound)| (bound, self.buckets.get(index).copied().unwrap_or(0)))
    }
}

/// The shared cache's own operation metrics for one tag during a session: what the original
/// exported as operation counts, durations, hits/misses and errors per tag.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheActivity {
    /// Operations of any kind.
    pub operations: u64,
    /// Time spent in them.
    pub operation_time: Duration,
    /// Reads that found a live value.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Values stored.
    pub sets: u64,
    /// Entries deleted.
    pub deletes: u64,
    /// Entries evicted for space.
    pub evictions: u64,
    /// Expired entries removed.
    pub expirations: u64,
    /// Operations that failed.
    pub errors: u64,
}

impl From<&Counters> for CacheActivity {
    fn from(counters: &Counters) -> Self {
        CacheActivity {
            operations: counters.operations,
            operation_time: Duration::from_nanos(counters.operation_time_ns),
            hits: counters.hits,
            misses: counters.misses,
            sets: counters.sets,
            deletes: counters.deletes,
            evictions: counters.evictions,
            expirations: counters.expirations,
            errors: counters.errors,
        }
    }
}

impl CacheActivity {
    /// Hits as a percentage of reads; 0 when there were no reads.
    pub fn hit_rate(&self) -> f64 {
        let reads = self.hits.saturating_add(self.misses);
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 * 100.0 / reads as f64
        }
    }
}

/// The metrics of one session: which command ran, when, how it ended, and what it counted and
/// timed, plus the cache's own activity per tag.
///
/// Plain data; build it with [`SessionMetrics::new`] and the recording methods, store it with
/// [`crate::MetricsCache::record`]. New fields may be added (it is `#[non_exhaustive]`), with a
/// new schema version of [`crate::SessionKey`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionMetrics {
    /// The session.
    pub session_id: SessionId,
    /// The command that ran, as the user would type it (`"layout compile"`).
    pub command: String,
    /// When the session started.
    pub started_at: SystemTime,
    /// When it ended; `None` while it runs.
    pub ended_at: Option<SystemTime>,
    /// The process exit status; `None` while it runs.
    pub exit_status: Option<i32>,
    /// Named counters.
    pub counters: BTreeMap<String, u64>,
    /// Named timings.
    pub timings: BTreeMap<String, Timing>,
    /// The cache's own activity during the session, per tag.
    pub cache_activity: BTreeMap<String, CacheActivity>,
}

impl SessionMetrics {
    /// A session of `command` that started at `started_at`, with nothing recorded yet.
    pub fn new(session_id: SessionId, command: impl Into<String>, started_at: SystemTime) -> Self {
        SessionMetrics {
            session_id,
            command: command.into(),
            started_at,
            ended_at: None,
            exit_status: None,
            counters: BTreeMap::new(),
            timings: BTreeMap::new(),
            cache_activity: BTreeMap::new(),
        }
    }

    /// Adds `by` to the counter `name` (saturating).
    pub fn increment(&mut self, name: &str, by: u64) {
        let counter = self.counters.entry(name.to_owned()).or_default();
        *counter = counter.saturating_add(by);
    }

    /// Records one `duration` in the timing `name`.
    pub fn observe(&mut self, name: &str, duration: Duration) {
        self.timings
            .entry(name.to_owned())
            .or_default()
            .observe(duration);
    }

    /// Marks the session finished at `ended_at` with `exit_status`.
    pub fn finish(&mut self, ended_at: SystemTime, exit_status: i32) {
        self.ended_at = Some(ended_at);
        self.exit_status = Some(exit_status);
    }

    /// How long the session ran; `None` while it runs (or if it ended before it started).
    pub fn duration(&self) -> Option<Duration> {
        self.ended_at?.duration_since(self.started_at).ok()
    }

    /// Sets the cache activity per tag from `stats` (a coordinator's
    /// [`cache_core::Coordinator::aggregated_stats`]). Instance counters run from when each
    /// instance was opened, which for a program that opens its caches at start is the session.
    pub fn record_cache_activity(&mut self, stats: &AggregatedStats) {
        self.cache_activity = stats
            .by_tag()
            .iter()
            .map(|(tag, counters)| (tag.clone(), CacheActivity::from(counters)))
            .collect();
    }

    /// Sets the cache activity per tag to what happened between `baseline` and `now` (two
    /// snapshots of the same coordinator's statistics), for a session that is not the whole life
    /// of the process. Every tag of `now` is included; note that the core counts reading the
    /// statistics as an operation, so each tag shows at least the baseline's own read.
    pub fn record_cache_activity_since(
        &mut self,
        baseline: &AggregatedStats,
        now: &AggregatedStats,
    ) {
        let before = baseline.by_tag();
        self.cache_activity = now
            .by_tag()
            .iter()
            .map(|(tag, counters)| {
                let delta = match before.get(tag) {
                    Some(earlier) => counters.minus(earlier),
                    None => *counters,
                };
                (tag.clone(), CacheActivity::from(&delta))
            })
            .collect();
    }

    /// This session as pretty-printed JSON.
    pub fn to_json_pretty(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|source| MetricsError::Json { source })
    }
}
