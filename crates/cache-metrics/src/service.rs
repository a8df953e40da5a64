//! `MetricsCache`, the metrics domain's service over the `metrics` tag, and its factories.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::{
    Cache, CacheKey, CacheTtlConfig, Clock, Coordinator, UserCacheConfig, default_coordinator,
};

use crate::error::{MetricsError, Result};
use crate::keys::{FoundSessionKey, METRICS_TAG, SESSION_KEY_PREFIX, SessionKey};
use crate::session::{SessionId, SessionMetrics};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Session metrics in the shared `metrics` tag: record, get, list, dump as JSON, clean.
///
/// Cheap to clone; every clone uses the same shared instance. Each session expires after
/// [`metrics_sessions`](crate::ttl::METRICS_SESSIONS) of the config it was opened with.
///
/// **Listing** scans the tag's live keys for the `session:` prefix and reads each value, instead
/// of keeping an index entry: an index would be a read-modify-write that two processes recording
/// at once could lose updates of, and it would have to be kept in step with expiry. A scan is
/// always consistent with what is stored, and a metrics tag holds at most a week of sessions.
#[derive(Clone, Debug)]
pub struct MetricsCache {
    cache: Cache,
    ttls: CacheTtlConfig,
    clock: Arc<dyn Clock>,
}

/// The metrics service on the process-wide default coordinator: the root, strategy, options and
/// TTLs all come from `config`.
pub fn create_metrics_cache_service(config: &UserCacheConfig) -> Result<MetricsCache> {
    MetricsCache::open(default_coordinator(), config)
}

impl MetricsCache {
    /// The metrics service over `coordinator`'s shared instance of the `metrics` tag under
    /// `config`'s root (a disabled cache when `config` or a kill switch disables it).
    pub fn open(coordinator: &Coordinator, config: &UserCacheConfig) -> Result<Self> {
        let cache = coordinator.create_cache_from_user_config(config, METRICS_TAG)?;
        Ok(MetricsCache {
            cache,
            ttls: config.ttls.clone(),
            clock: config.options.clock.clone(),
        })
    }

    /// The shared instance underneath, for statistics, `flush`, `clear` and the like.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The key of `session_id` under this service's TTLs.
    pub fn key(&self, session_id: &SessionId) -> SessionKey {
        SessionKey::new(session_id, &self.ttls)
    }

    /// Stores `metrics` under its session id, replacing an earlier record of the same session
    /// and restarting its time to live.
    pub fn record(&self, metrics: &SessionMetrics) -> Result<()> {
        Ok(self
            .cache
            .set_typed(&self.key(&metrics.session_id), metrics)?)
    }

    /// The metrics of `session_id`, if recorded and not expired (the original's `show`).
    pub fn get(&self, session_id: &SessionId) -> Result<Option<SessionMetrics>> {
        Ok(self.cache.get_typed(&self.key(session_id))?)
    }

    /// Removes the metrics of `session_id`; whether they existed.
    pub fn delete(&self, session_id: &SessionId) -> Result<bool> {
        Ok(self.cache.delete(&self.key(session_id).key_bytes())?)
    }

    /// Every recorded session, newest first (by start time, then id).
    pub fn list(&self) -> Result<Vec<SessionMetrics>> {
        let mut sessions: Vec<SessionMetrics> = self
            .stored_sessions()?
            .into_iter()
            .map(|(_, metrics)| metrics)
            .collect();
        sessions.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
        Ok(sessions)
    }

    /// Every recorded session, newest first, as a pretty-printed JSON array.
    pub fn dump_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.list()?).map_err(|source| MetricsError::Json { source })
    }

    /// Removes every session that started more than `days` days ago (by the config's clock);
    /// how many were removed. `0` removes every session that started before now.
    pub fn clean_older_than(&self, days: u32) -> Result<usize> {
        let now_ms = self.clock.now_ms();
        let max_age_ms = u64::try_from(DAY.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(days));
        let cutoff_ms = now_ms.saturating_sub(max_age_ms);
        let old: Vec<Vec<u8>> = self
            .stored_sessions()?
            .into_iter()
            .filter(|(_, metrics)| millis_since_epoch(metrics.started_at) < cutoff_ms)
            .map(|(key, _)| key)
            .collect();
        let keys: Vec<&[u8]> = old.iter().map(Vec::as_slice).collect();
        Ok(self.cache.delete_many(&keys)?)
    }

    /// Every live session entry: its key bytes and value. An entry that does not decode is
    /// removed by the typed read and left out.
    fn stored_sessions(&self) -> Result<Vec<(Vec<u8>, SessionMetrics)>> {
        let mut sessions = Vec::new();
        for bytes in self.cache.keys()? {
            if !bytes.starts_with(SESSION_KEY_PREFIX) {
                continue;
            }
            let key = FoundSessionKey {
                bytes,
                ttl: self.ttls.get(&crate::ttl::METRICS_SESSIONS),
            };
            // Expired or removed between `keys()` and this read: simply not listed.
            if let Some(metrics) = self.cache.get_typed(&key)? {
                sessions.push((key.bytes, metrics));
            }
        }
        Ok(sessions)
    }
}

/// Milliseconds since the Unix epoch; a time before 1970 counts as the epoch (oldest of all).
fn millis_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
