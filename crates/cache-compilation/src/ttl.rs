//! The compilation domain's time-to-live levels, declared here (the core names none) and read
//! through [`cache_core::CacheTtlConfig::get`]; `GLOVEBOX_CACHE_TTL_<NAME>` overrides each.

use std::time::Duration;

use cache_core::TtlLevel;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// A ZMK workspace cached per repository (the base level). Default 30 days (the original mapped
/// this level to 1 day: its defect 3).
pub const WORKSPACE_BASE: TtlLevel = TtlLevel::new("workspace_base", Duration::from_secs(30 * DAY));

/// A ZMK workspace cached per repository and branch. Default 1 day.
pub const WORKSPACE_BRANCH: TtlLevel = TtlLevel::new("workspace_branch", Duration::from_secs(DAY));

/// The original's full workspace level (repository, branch and configuration). Default 12 hours.
/// Not read yet: workspaces are cached at the repository and branch levels.
pub const WORKSPACE_FULL: TtlLevel =
    TtlLevel::new("workspace_full", Duration::from_secs(12 * HOUR));

/// The original's workspace build level. Default 1 hour. Not read yet, as [`WORKSPACE_FULL`].
pub const WORKSPACE_BUILD: TtlLevel = TtlLevel::new("workspace_build", Duration::from_secs(HOUR));

/// Firmware build artifacts. Default 7 days.
pub const FIRMWARE_BUILD: TtlLevel = TtlLevel::new("firmware_build", Duration::from_secs(7 * DAY));

/// The original's firmware build metadata level. Default 1 day. Not read yet: a build's metadata
/// is its entry's value and lives as long as its artifacts.
pub const FIRMWARE_METADATA: TtlLevel =
    TtlLevel::new("firmware_metadata", Duration::from_secs(DAY));

/// Every level of this crate, for [`cache_core::CacheTtlConfig::undeclared_levels`].
pub const TTL_LEVELS: [TtlLevel; 6] = [
    WORKSPACE_BASE,
    WORKSPACE_BRANCH,
    WORKSPACE_FULL,
    WORKSPACE_BUILD,
    FIRMWARE_BUILD,
    FIRMWARE_METADATA,
];
