//! The metrics domain's time-to-live levels, declared here (the core names none) and read
//! through [`cache_core::CacheTtlConfig::get`]; `GLOVEBOX_CACHE_TTL_<NAME>` overrides each.

use std::time::Duration;

use cache_core::TtlLevel;

const HOUR: u64 = 60 * 60;
const DAY: u64 = 24 * HOUR;

/// One session's metrics. Default 7 days.
pub const METRICS_SESSIONS: TtlLevel =
    TtlLevel::new("metrics_sessions", Duration::from_secs(7 * DAY));

/// Every level of this crate, for [`cache_core::CacheTtlConfig::undeclared_levels`].
pub const TTL_LEVELS: [TtlLevel; 1] = [METRICS_SESSIONS];
