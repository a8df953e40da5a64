//! The MoErgo domain's time-to-live levels, declared here (the core names none) and read
//! through [`cache_core::CacheTtlConfig::get`]; `GLOVEBOX_CACHE_TTL_<NAME>` overrides each.

use std::time::Duration;

use cache_core::TtlLevel;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The original's authentication level. Default 1 day. Nothing reads it: tokens and credentials
/// are never cached (this crate has no key type for them). The level exists so that a
/// configuration written for the original means the same.
pub const MOERGO_AUTH: TtlLevel = TtlLevel::new("moergo_auth", Duration::from_secs(DAY));

/// The original's user-layouts level. Default 6 hours. Not read yet: layout config and meta are
/// immutable per UUID and use [`MOERGO_LAYOUT_CONFIG`], as the original's client did.
pub const MOERGO_LAYOUTS: TtlLevel = TtlLevel::new("moergo_layouts", Duration::from_secs(6 * HOUR));

/// The firmware versions the API offers. Default 12 hours.
pub const MOERGO_VERSIONS: TtlLevel =
    TtlLevel::new("moergo_versions", Duration::from_secs(12 * HOUR));

/// A layout's config and its meta, by layout UUID (immutable). Default 30 days.
pub const MOERGO_LAYOUT_CONFIG: TtlLevel =
    TtlLevel::new("moergo_layout_config", Duration::from_secs(30 * DAY));

/// A public layout list for a tag set. Default 10 minutes.
pub const MOERGO_PUBLIC_LAYOUTS: TtlLevel =
    TtlLevel::new("moergo_public_layouts", Duration::from_secs(10 * MINUTE));

/// A public layout list whose tag set includes `glove80-standard` (changes rarely). Default 2
/// hours.
pub const MOERGO_PUBLIC_LAYOUTS_STANDARD: TtlLevel = TtlLevel::new(
    "moergo_public_layouts_standard",
    Duration::from_secs(2 * HOUR),
);

/// A downloaded firmware image (immutable). Default 30 days.
pub const MOERGO_FIRMWARE_DOWNLOADS: TtlLevel =
    TtlLevel::new("moergo_firmware_downloads", Duration::from_secs(30 * DAY));

/// Every level of this crate, for [`cache_core::CacheTtlConfig::undeclared_levels`].
pub const TTL_LEVELS: [TtlLevel; 7] = [
    MOERGO_AUTH,
    MOERGO_LAYOUTS,
    MOERGO_VERSIONS,
    MOERGO_LAYOUT_CONFIG,
    MOERGO_PUBLIC_LAYOUTS,
    MOERGO_PUBLIC_LAYOUTS_STANDARD,
    MOERGO_FIRMWARE_DOWNLOADS,
];
