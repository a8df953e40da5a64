//! `cache-metrics`: per-invocation session metrics, kept in the shared cache's `metrics` tag.
//!
//! # Overview
//!
//! - [`MetricsCache`] is the service: [`record`](MetricsCache::record),
//!   [`get`](MetricsCache::get), [`list`](MetricsCache::list),
//!   [`dump_json`](MetricsCache::dump_json), [`clean_older_than`](MetricsCache::clean_older_than).
//!   [`MetricsCache::open`] takes a [`cache_core::Coordinator`] and a
//!   [`cache_core::UserCacheConfig`]; [`create_metrics_cache_service`] does the same on the
//!   process-wide default coordinator. Both use the config's root (so a custom cache path is
//!   honoured, unlike the original's factories), strategy, and TTLs.
//! - [`SessionMetrics`] is what one session records: command, start and end time, exit status,
//!   named counters, named [`Timing`]s, and the cache's own activity per tag
//!   ([`CacheActivity`], from [`cache_core::AggregatedStats`]).
//! - [`SessionId`] is a validated UUID; [`SessionKey`] is the typed key of one session, with the
//!   config's [`metrics_sessions`](crate::ttl::METRICS_SESSIONS) TTL (7 days).
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use cache_core::{Coordinator, UserCacheConfig};
//! use cache_metrics::{MetricsCache, SessionId, SessionMetrics};
//!
//! # fn main() -> Result<(), cache_metrics::MetricsError> {
//! let root = tempfile::tempdir().expect("temp dir");
//! let config = UserCacheConfig { cache_path: Some(root.path().to_owned()), ..UserCacheConfig::default() };
//! let coordinator = Coordinator::new();
//! let metrics = MetricsCache::open(&coordinator, &config)?;
//!
//! let mut session = SessionMetrics::new(SessionId::generate(), "layout compile", SystemTime::now());
//! session.increment("layers", 8);
//! session.observe("compile", Duration::from_millis(420));
//! session.record_cache_activity(&coordinator.aggregated_stats()?);
//! session.finish(SystemTime::now(), 0);
//! metrics.record(&session)?;
//!
//! assert_eq!(metrics.get(&session.session_id)?, Some(session.clone()));
//! assert_eq!(metrics.list()?.len(), 1);
//! assert!(metrics.dump_json()?.contains("layout compile"));
//! # Ok(())
//! # }
//! ```

mod error;
mod keys;
mod service;
mod session;
pub mod ttl;

pub use error::{MetricsError, Result};
pub use keys::{METRICS_TAG, REMOTE_SHARING, SessionKey};
pub use service::{MetricsCache, create_metrics_cache_service};
pub use session::{CacheActivity, SessionId, SessionMetrics, TIMING_BUCKET_BOUNDS, Timing};
