//! The layout domain's time-to-live levels, declared here (the core names none) and read
//! through [`cache_core::CacheTtlConfig::get`]; `GLOVEBOX_CACHE_TTL_<NAME>` overrides each.

use std::time::Duration;

use cache_core::TtlLevel;

const HOUR: u64 = 60 * 60;
const DAY: u64 = 24 * HOUR;

/// A processed layout. Default 7 days.
pub const LAYOUT_PROCESSING: TtlLevel =
    TtlLevel::new("layout_processing", Duration::from_secs(7 * DAY));

/// A comparison of layouts. Default 3 days.
pub const LAYOUT_COMPARISON: TtlLevel =
    TtlLevel::new("layout_comparison", Duration::from_secs(3 * DAY));

/// A bookmark. Default 30 days.
pub const LAYOUT_BOOKMARKS: TtlLevel =
    TtlLevel::new("layout_bookmarks", Duration::from_secs(30 * DAY));

/// Every level of this crate, for [`cache_core::CacheTtlConfig::undeclared_levels`].
pub const TTL_LEVELS: [TtlLevel; 3] = [LAYOUT_PROCESSING, LAYOUT_COMPARISON, LAYOUT_BOOKMARKS];
