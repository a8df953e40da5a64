//! `CacheTtlConfig`: the time to live of every cache level of every domain, in one place, with
//! the original's defaults, overridable from a config file (serde) or the environment.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Environment;
use crate::error::{CacheError, Result};

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// The time to live of each cache level, read by every domain crate.
///
/// Defaults are the Python original's (`shared/reference/original-behaviour.md`, "TTL defaults
/// per level"), plus the levels its MoErgo client and metrics hard-coded at the call site. A
/// domain never hard-codes a TTL: it reads its level here, so one config changes it everywhere.
///
/// In a config file (any serde format) every level is a whole number of seconds; missing levels
/// take their default and unknown names are an error (a typo must not silently keep a default).
/// In the environment, `GLOVEBOX_CACHE_TTL_<LEVEL>` (the field name in upper case, for example
/// `GLOVEBOX_CACHE_TTL_WORKSPACE_BASE=3600`) overrides one level; see
/// [`CacheTtlConfig::from_env`]. A level is at least one second: to stop caching a domain, use
/// its kill switch (`GLOVEBOX_CACHE_<TAG>=false`), not a zero TTL.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{CacheTtlConfig, Environment};
///
/// # fn main() -> Result<(), cache_core::CacheError> {
/// let ttls = CacheTtlConfig::default();
/// assert_eq!(ttls.workspace_base, Duration::from_secs(30 * 24 * 3600));
///
/// let env = Environment::from_pairs([("GLOVEBOX_CACHE_TTL_LAYOUT_PROCESSING", "3600")]);
/// let ttls = CacheTtlConfig::from_env(&env)?;
/// assert_eq!(ttls.layout_processing, Duration::from_secs(3600));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheTtlConfig {
    /// Compilation: a ZMK workspace cached per repository (the base level). Default 30 days.
    #[serde(with = "seconds")]
    pub workspace_base: Duration,
    /// Compilation: a ZMK workspace cached per repository and branch. Default 1 day.
    #[serde(with = "seconds")]
    pub workspace_branch: Duration,
    /// Compilation: a full workspace (repository, branch and configuration). Default 12 hours.
    #[serde(with = "seconds")]
    pub workspace_full: Duration,
    /// Compilation: a workspace at the build level. Default 1 hour.
    #[serde(with = "seconds")]
    pub workspace_build: Duration,
    /// Layout: a processed layout. Default 7 days.
    #[serde(with = "seconds")]
    pub layout_processing: Duration,
    /// Layout: a comparison of layouts. Default 3 days.
    #[serde(with = "seconds")]
    pub layout_comparison: Duration,
    /// Layout: a bookmark. Default 30 days.
    #[serde(with = "seconds")]
    pub layout_bookmarks: Duration,
    /// Compilation: firmware build artifacts. Default 7 days.
    #[serde(with = "seconds")]
    pub firmware_build: Duration,
    /// Compilation: firmware build metadata. Default 1 day.
    #[serde(with = "seconds")]
    pub firmware_metadata: Duration,
    /// MoErgo: the original's authentication level. Default 1 day.
    ///
    /// Nothing in this workspace reads it: tokens and credentials are never cached (the
    /// `cache-moergo` crate has no key type for them). The level exists so that a configuration
    /// written for the original still parses and means the same.
    #[serde(with = "seconds")]
    pub moergo_auth: Duration,
    /// MoErgo: the original's user-layouts level. Default 6 hours.
    ///
    /// Not read by `cache-moergo` yet: layout config and meta are immutable per UUID and use
    /// [`CacheTtlConfig::moergo_layout_config`], as the original's client did.
    #[serde(with = "seconds")]
    pub moergo_layouts: Duration,
    /// MoErgo: the firmware versions the API offers. Default 12 hours.
    #[serde(with = "seconds")]
    pub moergo_versions: Duration,
    /// MoErgo: a layout's config and its meta, by layout UUID (immutable). Default 30 days.
    #[serde(with = "seconds")]
    pub moergo_layout_config: Duration,
    /// MoErgo: a public layout list for a tag set. Default 10 minutes.
    #[serde(with = "seconds")]
    pub moergo_public_layouts: Duration,
    /// MoErgo: a public layout list whose tag set includes `glove80-standard` (changes rarely).
    /// Default 2 hours.
    #[serde(with = "seconds")]
    pub moergo_public_layouts_standard: Duration,
    /// MoErgo: a downloaded firmware image (immutable). Default 30 days.
    #[serde(with = "seconds")]
    pub moergo_firmware_downloads: Duration,
    /// Metrics: one session's metrics. Default 7 days.
    #[serde(with = "seconds")]
    pub metrics_sessions: Duration,
    /// Core: templates. Default 7 days. No crate of this workspace caches templates yet.
    #[serde(with = "seconds")]
    pub core_templates: Duration,
    /// Core: validation results. Default 3 days. No crate of this workspace caches them yet.
    #[serde(with = "seconds")]
    pub core_validation: Duration,
}

impl Default for CacheTtlConfig {
    fn default() -> Self {
        let secs = Duration::from_secs;
        CacheTtlConfig {
            workspace_base: secs(30 * DAY),
            workspace_branch: secs(DAY),
            workspace_full: secs(12 * HOUR),
            workspace_build: secs(HOUR),
            layout_processing: secs(7 * DAY),
            layout_comparison: secs(3 * DAY),
            layout_bookmarks: secs(30 * DAY),
            firmware_build: secs(7 * DAY),
            firmware_metadata: secs(DAY),
            moergo_auth: secs(DAY),
            moergo_layouts: secs(6 * HOUR),
            moergo_versions: secs(12 * HOUR),
            moergo_layout_config: secs(30 * DAY),
            moergo_public_layouts: secs(10 * MINUTE),
            moergo_public_layouts_standard: secs(2 * HOUR),
            moergo_firmware_downloads: secs(30 * DAY),
            metrics_sessions: secs(7 * DAY),
            core_templates: secs(7 * DAY),
            core_validation: secs(3 * DAY),
        }
    }
}

/// One level: its environment variable and where it lives in the struct.
struct Level {
    variable: &'static str,
    field: fn(&mut CacheTtlConfig) -> &mut Duration,
}

/// Every level, in field order. The variable names are written out (not built at run time) so
/// that an error can name its variable as a `&'static str`.
const LEVELS: [Level; 19] = [
    Level {
        variable: "GLOVEBOX_CACHE_TTL_WORKSPACE_BASE",
        field: |t| &mut t.workspace_base,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_WORKSPACE_BRANCH",
        field: |t| &mut t.workspace_branch,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_WORKSPACE_FULL",
        field: |t| &mut t.workspace_full,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_WORKSPACE_BUILD",
        field: |t| &mut t.workspace_build,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_LAYOUT_PROCESSING",
        field: |t| &mut t.layout_processing,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_LAYOUT_COMPARISON",
        field: |t| &mut t.layout_comparison,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_LAYOUT_BOOKMARKS",
        field: |t| &mut t.layout_bookmarks,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_FIRMWARE_BUILD",
        field: |t| &mut t.firmware_build,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_FIRMWARE_METADATA",
        field: |t| &mut t.firmware_metadata,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_MOERGO_AUTH",
        field: |t| &mut t.moergo_auth,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_MOERGO_LAYOUTS",
        field: |t| &mut t.moergo_layouts,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_MOERGO_VERSIONS",
        field: |t| &mut t.moergo_versions,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_MOERGO_LAYOUT_CONFIG",
        field: |t| &mut t.moergo_layout_config,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_MOERGO_PUBLIC_LAYOUTS",
        field: |t| &mut t.moergo_public_layouts,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_MOERGO_PUBLIC_LAYOUTS_STANDARD",
        field: |t| &mut t.moergo_public_layouts_standard,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_MOERGO_FIRMWARE_DOWNLOADS",
        field: |t| &mut t.moergo_firmware_downloads,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_METRICS_SESSIONS",
        field: |t| &mut t.metrics_sessions,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_CORE_TEMPLATES",
        field: |t| &mut t.core_templates,
    },
    Level {
        variable: "GLOVEBOX_CACHE_TTL_CORE_VALIDATION",
        field: |t| &mut t.core_validation,
    },
];

impl CacheTtlConfig {
    /// The defaults, with every level that `env` sets through `GLOVEBOX_CACHE_TTL_<LEVEL>`
    /// (whole seconds, at least 1) overridden.
    ///
    /// A value that is not a whole number of seconds, or is zero, is an
    /// [`CacheError::InvalidOption`] naming the variable: a bad override never silently falls
    /// back to the default.
    pub fn from_env(env: &Environment) -> Result<Self> {
        let mut ttls = CacheTtlConfig::default();
        for level in &LEVELS {
            if let Some(value) = env.var(level.variable) {
                *(level.field)(&mut ttls) =
                    parse_seconds(&value).map_err(|reason| CacheError::InvalidOption {
                        option: level.variable,
                        reason,
                    })?;
            }
        }
        Ok(ttls)
    }

    /// The names of the environment variables [`CacheTtlConfig::from_env`] reads, in field
    /// order.
    pub fn environment_variables() -> impl Iterator<Item = &'static str> {
        LEVELS.iter().map(|level| level.variable)
    }
}

/// A TTL given as text: whole seconds, at least one.
fn parse_seconds(value: &str) -> std::result::Result<Duration, String> {
    let seconds: u64 = value.trim().parse().map_err(|_| {
        format!("{value:?} is not a whole number of seconds (for example 3600 for one hour)")
    })?;
    check_seconds(seconds)
}

fn check_seconds(seconds: u64) -> std::result::Result<Duration, String> {
    if seconds == 0 {
        return Err(
            "a time to live must be at least 1 second; to stop caching a domain, use its kill \
             switch GLOVEBOX_CACHE_<TAG>=false"
                .to_owned(),
        );
    }
    Ok(Duration::from_secs(seconds))
}

/// Serde for a level: whole seconds as an unsigned integer. Sub-second parts are dropped when
/// writing (no level has one by default, and the environment cannot set one).
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(duration.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let seconds = u64::deserialize(deserializer)?;
        super::check_seconds(seconds).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const D: u64 = DAY;
    const H: u64 = HOUR;

    #[rstest]
    #[case::workspace_base(|t: &CacheTtlConfig| t.workspace_base, 30 * D)]
    #[case::workspace_branch(|t: &CacheTtlConfig| t.workspace_branch, D)]
    #[case::workspace_full(|t: &CacheTtlConfig| t.workspace_full, 12 * H)]
    #[case::workspace_build(|t: &CacheTtlConfig| t.workspace_build, H)]
    #[case::layout_processing(|t: &CacheTtlConfig| t.layout_processing, 7 * D)]
    #[case::layout_comparison(|t: &CacheTtlConfig| t.layout_comparison, 3 * D)]
    #[case::layout_bookmarks(|t: &CacheTtlConfig| t.layout_bookmarks, 30 * D)]
    #[case::firmware_build(|t: &CacheTtlConfig| t.firmware_build, 7 * D)]
    #[case::firmware_metadata(|t: &CacheTtlConfig| t.firmware_metadata, D)]
    #[case::moergo_auth(|t: &CacheTtlConfig| t.moergo_auth, D)]
    #[case::moergo_layouts(|t: &CacheTtlConfig| t.moergo_layouts, 6 * H)]
    #[case::moergo_versions(|t: &CacheTtlConfig| t.moergo_versions, 12 * H)]
    #[case::moergo_layout_config(|t: &CacheTtlConfig| t.moergo_layout_config, 30 * D)]
    #[case::moergo_public_layouts(|t: &CacheTtlConfig| t.moergo_public_layouts, 600)]
    #[case::moergo_public_layouts_standard(|t: &CacheTtlConfig| t.moergo_public_layouts_standard, 2 * H)]
    #[case::moergo_firmware_downloads(|t: &CacheTtlConfig| t.moergo_firmware_downloads, 30 * D)]
    #[case::metrics_sessions(|t: &CacheTtlConfig| t.metrics_sessions, 7 * D)]
    #[case::core_templates(|t: &CacheTtlConfig| t.core_templates, 7 * D)]
    #[case::core_validation(|t: &CacheTtlConfig| t.core_validation, 3 * D)]
    fn defaults_are_the_originals(
        #[case] level: fn(&CacheTtlConfig) -> Duration,
        #[case] seconds: u64,
    ) {
        assert_eq!(
            level(&CacheTtlConfig::default()),
            Duration::from_secs(seconds)
        );
    }

    #[test]
    fn defect_03_repository_level_is_30_days_and_branch_level_1_day() {
        // The original mapped the repository level to 1 day.
        let ttls = CacheTtlConfig::default();
        assert_eq!(ttls.workspace_base, Duration::from_secs(30 * D));
        assert_eq!(ttls.workspace_branch, Duration::from_secs(D));
    }

    #[test]
    fn each_variable_overrides_exactly_the_level_it_names() {
        let defaults = serde_json::to_value(CacheTtlConfig::default()).unwrap();
        let fields = defaults.as_object().unwrap();
        let variables: Vec<&str> = CacheTtlConfig::environment_variables().collect();
        assert_eq!(variables.len(), fields.len(), "one variable per level");
        for variable in variables {
            let field = variable
                .strip_prefix("GLOVEBOX_CACHE_TTL_")
                .unwrap()
                .to_ascii_lowercase();
            let env = Environment::from_pairs([(variable, "42")]);
            let overridden = serde_json::to_value(CacheTtlConfig::from_env(&env).unwrap()).unwrap();
            let mut expected = fields.clone();
            assert!(expected.contains_key(&field), "{variable} names no level");
            expected.insert(field, 42.into());
            assert_eq!(overridden.as_object().unwrap(), &expected, "{variable}");
        }
    }

    #[rstest]
    #[case::not_a_number("one hour")]
    #[case::negative("-5")]
    #[case::fraction("1.5")]
    #[case::with_unit("3600s")]
    #[case::zero("0")]
    fn a_bad_override_is_an_error_naming_the_variable(#[case] value: &str) {
        let env = Environment::from_pairs([("GLOVEBOX_CACHE_TTL_METRICS_SESSIONS", value)]);
        let err = CacheTtlConfig::from_env(&env).unwrap_err();
        assert!(
            matches!(
                err,
                CacheError::InvalidOption {
                    option: "GLOVEBOX_CACHE_TTL_METRICS_SESSIONS",
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("GLOVEBOX_CACHE_TTL_METRICS_SESSIONS"),
            "{err}"
        );
    }

    #[test]
    fn surrounding_whitespace_is_accepted() {
        let env = Environment::from_pairs([("GLOVEBOX_CACHE_TTL_WORKSPACE_BUILD", " 120 ")]);
        assert_eq!(
            CacheTtlConfig::from_env(&env).unwrap().workspace_build,
            Duration::from_secs(120)
        );
    }

    #[test]
    fn serde_writes_whole_seconds_and_round_trips() {
        let defaults = CacheTtlConfig::default();
        let json = serde_json::to_value(&defaults).unwrap();
        assert_eq!(json["moergo_public_layouts"], 600);
        assert_eq!(json["workspace_base"], 30 * D);
        let back: CacheTtlConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, defaults);
    }

    #[test]
    fn a_partial_config_file_fills_missing_levels_with_defaults() {
        let ttls: CacheTtlConfig = serde_json::from_str(r#"{"layout_processing": 60}"#).unwrap();
        assert_eq!(ttls.layout_processing, Duration::from_secs(60));
        assert_eq!(
            ttls,
            CacheTtlConfig {
                layout_processing: Duration::from_secs(60),
                ..CacheTtlConfig::default()
            }
        );
    }

    #[rstest]
    #[case::unknown_level(r#"{"layout_procesing": 60}"#, "layout_procesing")]
    #[case::zero(r#"{"metrics_sessions": 0}"#, "at least 1 second")]
    #[case::negative(r#"{"metrics_sessions": -1}"#, "-1")]
    fn a_bad_config_file_is_an_error(#[case] text: &str, #[case] mentions: &str) {
        let err = serde_json::from_str::<CacheTtlConfig>(text).unwrap_err();
        assert!(err.to_string().contains(mentions), "{err}");
    }
}
