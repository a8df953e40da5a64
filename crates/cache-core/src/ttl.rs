//! `TtlLevel` and `CacheTtlConfig`: a time-to-live level as a domain declares it (name and
//! default), and the user's map from level names to durations, read from a config file (serde)
//! or the environment. The core names no level of any domain: each domain crate declares its own.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::env::Environment;
use crate::error::{CacheError, Result};

pub use crate::tag::TTL_VARIABLE_PREFIX;

/// The longest level name, so that a variable name stays readable.
const MAX_NAME_LEN: usize = 64;

/// One cache level's time to live as a domain crate declares it: a name (lower-case
/// `[a-z0-9_]`, unique across the domains a program links) and a default.
///
/// A domain declares its levels as constants and reads them through
/// [`CacheTtlConfig::get`], so one config changes a level everywhere and no domain hard-codes a
/// TTL:
///
/// ```
/// use std::time::Duration;
/// use cache_core::{CacheTtlConfig, Environment, TtlLevel};
///
/// pub const REPORTS: TtlLevel = TtlLevel::new("reports_daily", Duration::from_secs(24 * 3600));
///
/// # fn main() -> Result<(), cache_core::CacheError> {
/// assert_eq!(CacheTtlConfig::default().get(&REPORTS), Duration::from_secs(24 * 3600));
///
/// let env = Environment::from_pairs([("GLOVEBOX_CACHE_TTL_REPORTS_DAILY", "3600")]);
/// assert_eq!(REPORTS.variable(), "GLOVEBOX_CACHE_TTL_REPORTS_DAILY");
/// assert_eq!(CacheTtlConfig::from_env(&env)?.get(&REPORTS), Duration::from_secs(3600));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlLevel {
    name: &'static str,
    default: Duration,
}

impl TtlLevel {
    /// A level named `name` (lower-case `[a-z0-9_]`, at most 64 bytes) whose time to live is
    /// `default` unless the user's config sets it (at least one second).
    ///
    /// `const`, so that a domain can declare its levels as constants. It checks nothing (a
    /// `const fn` that checked could only panic); [`TtlLevel::check`] does, and each domain's
    /// tests call it on its levels.
    pub const fn new(name: &'static str, default: Duration) -> Self {
        TtlLevel { name, default }
    }

    /// The level's name, as a config file writes it.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The time to live when the config does not set this level.
    pub const fn default_ttl(&self) -> Duration {
        self.default
    }

    /// The environment variable that overrides this level: `GLOVEBOX_CACHE_TTL_<NAME>`, the
    /// name in upper case.
    pub fn variable(&self) -> String {
        format!("{TTL_VARIABLE_PREFIX}{}", self.name.to_ascii_uppercase())
    }

    /// Whether the level is well formed: its name lower-case `[a-z0-9_]` of 1 to 64 bytes, its
    /// default at least one second. An error names the level.
    pub fn check(&self) -> Result<()> {
        check_level_name(self.name).map_err(|reason| CacheError::InvalidTtl {
            name: self.name.to_owned(),
            reason,
        })?;
        if self.default.as_secs() == 0 {
            return Err(CacheError::InvalidTtl {
                name: self.name.to_owned(),
                reason: "its default is shorter than 1 second".to_owned(),
            });
        }
        Ok(())
    }
}

/// The levels of the original program's own core (templates and validation results), which no
/// crate here caches and so no domain crate declares. They are declared here only
/// so that their names and defaults stay the original's (7 days, 3 days); nothing reads them.
pub const UNCLAIMED_TTL_LEVELS: [TtlLevel; 2] = [
    TtlLevel::new("core_templates", Duration::from_secs(7 * 24 * 3600)),
    TtlLevel::new("core_validation", Duration::from_secs(3 * 24 * 3600)),
];

/// The user's time to live per level: a map from level names to durations. A level the map
/// does not name takes the default its domain declared ([`TtlLevel`]).
///
/// In a config file (any serde format) it is a map from level names to whole seconds, for
/// example `{"some_level": 3600}`. In the environment, `GLOVEBOX_CACHE_TTL_<NAME>` (the
/// name in upper case, for example `GLOVEBOX_CACHE_TTL_SOME_LEVEL=3600`) sets one level;
/// see [`CacheTtlConfig::from_env`]. A time to live is at least one second: to stop caching a
/// domain, use its kill switch (`GLOVEBOX_CACHE_<TAG>=false`), not a zero TTL.
///
/// **Unknown names.** The levels are declared by the domain crates, so the core cannot know
/// every name when it parses a file or the environment. A name is checked for its form there
/// (lower-case `[a-z0-9_]`; a variable's suffix upper-case), and its value must be valid, but a
/// well-formed name no domain declares is kept, not refused: a level of a domain this program
/// does not link is not a typo. [`CacheTtlConfig::undeclared_levels`] reports the names none of
/// the given levels declares, so that a program that knows its domains can warn about typos.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{CacheTtlConfig, TtlLevel};
///
/// const SESSIONS: TtlLevel = TtlLevel::new("sessions", Duration::from_secs(7 * 24 * 3600));
///
/// let ttls: CacheTtlConfig = serde_json::from_str(r#"{"sessions": 60, "sesions": 5}"#).unwrap();
/// assert_eq!(ttls.get(&SESSIONS), Duration::from_secs(60));
/// assert_eq!(ttls.undeclared_levels([SESSIONS]), ["sesions"]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, u64>", into = "BTreeMap<String, u64>")]
pub struct CacheTtlConfig {
    /// Level name to time to live; every name well formed, every duration at least 1 second
    /// when it came from a file or the environment.
    levels: BTreeMap<String, Duration>,
}

impl CacheTtlConfig {
    /// The time to live of `level`: the config's, or the level's default.
    pub fn get(&self, level: &TtlLevel) -> Duration {
        self.levels
            .get(level.name)
            .copied()
            .unwrap_or(level.default)
    }

    /// Sets `level`'s time to live. The duration is used as given; a config file and the
    /// environment accept whole seconds, at least one.
    pub fn set(&mut self, level: &TtlLevel, ttl: Duration) {
        self.levels.insert(level.name.to_owned(), ttl);
    }

    /// This config with `level` set to `ttl` (see [`CacheTtlConfig::set`]), for building one in
    /// an expression.
    #[must_use]
    pub fn with(mut self, level: &TtlLevel, ttl: Duration) -> Self {
        self.set(level, ttl);
        self
    }

    /// The levels this config sets, by name, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Duration)> {
        self.levels.iter().map(|(name, ttl)| (name.as_str(), *ttl))
    }

    /// The names this config sets that none of `declared` names, in name order: typos, or
    /// levels of domains the caller does not know.
    pub fn undeclared_levels(&self, declared: impl IntoIterator<Item = TtlLevel>) -> Vec<&str> {
        let declared: Vec<TtlLevel> = declared.into_iter().collect();
        self.levels
            .keys()
            .filter(|name| !declared.iter().any(|level| level.name == name.as_str()))
            .map(String::as_str)
            .collect()
    }

    /// A config with every level that `env` sets through `GLOVEBOX_CACHE_TTL_<NAME>` (whole
    /// seconds, at least 1); the others take their defaults.
    ///
    /// A value that is not a whole number of seconds, or is zero, or a variable whose suffix is
    /// not an upper-case `[A-Z0-9_]` name, is a [`CacheError::InvalidTtl`] naming the variable:
    /// a bad override never silently falls back to the default.
    pub fn from_env(env: &Environment) -> Result<Self> {
        let mut levels = BTreeMap::new();
        for (variable, value) in env.vars_with_prefix(TTL_VARIABLE_PREFIX) {
            let suffix = &variable[TTL_VARIABLE_PREFIX.len()..];
            let invalid = |reason: String| CacheError::InvalidTtl {
                name: variable.clone(),
                reason,
            };
            if suffix.bytes().any(|byte| byte.is_ascii_lowercase()) {
                return Err(invalid(format!(
                    "the level's name must be in upper case ({TTL_VARIABLE_PREFIX}{})",
                    suffix.to_ascii_uppercase()
                )));
            }
            let name = suffix.to_ascii_lowercase();
            check_level_name(&name).map_err(invalid)?;
            let ttl = parse_seconds(&value).map_err(invalid)?;
            levels.insert(name, ttl);
        }
        Ok(CacheTtlConfig { levels })
    }
}

impl TryFrom<BTreeMap<String, u64>> for CacheTtlConfig {
    type Error = String;

    fn try_from(seconds: BTreeMap<String, u64>) -> std::result::Result<Self, String> {
        let mut levels = BTreeMap::new();
        for (name, seconds) in seconds {
            check_level_name(&name).map_err(|reason| format!("level {name:?}: {reason}"))?;
            let ttl =
                check_seconds(seconds).map_err(|reason| format!("level {name:?}: {reason}"))?;
            levels.insert(name, ttl);
        }
        Ok(CacheTtlConfig { levels })
    }
}

/// Whole seconds; a sub-second part (only [`CacheTtlConfig::set`] can give one) is dropped.
impl From<CacheTtlConfig> for BTreeMap<String, u64> {
    fn from(config: CacheTtlConfig) -> Self {
        config
            .levels
            .into_iter()
            .map(|(name, ttl)| (name, ttl.as_secs()))
            .collect()
    }
}

/// A level name: lower-case `[a-z0-9_]`, 1 to 64 bytes.
pub(crate) fn check_level_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("a level's name has 1 to {MAX_NAME_LEN} characters"));
    }
    if !name
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
    {
        return Err(format!(
            "{name:?} is not a level name (lower-case letters, digits and '_')"
        ));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const LEVEL: TtlLevel = TtlLevel::new("some_level", Duration::from_secs(3600));
    const OTHER: TtlLevel = TtlLevel::new("other_level", Duration::from_secs(60));

    #[test]
    fn a_level_not_set_takes_its_default_and_a_set_one_its_value() {
        let ttls = CacheTtlConfig::default().with(&LEVEL, Duration::from_secs(5));
        assert_eq!(ttls.get(&LEVEL), Duration::from_secs(5));
        assert_eq!(ttls.get(&OTHER), Duration::from_secs(60));
    }

    #[test]
    fn the_unclaimed_levels_keep_the_originals_defaults() {
        let pairs: Vec<(&str, u64)> = UNCLAIMED_TTL_LEVELS
            .iter()
            .map(|level| (level.name(), level.default_ttl().as_secs()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("core_templates", 7 * 86_400),
                ("core_validation", 3 * 86_400)
            ]
        );
        for level in UNCLAIMED_TTL_LEVELS {
            level.check().unwrap();
        }
    }

    #[rstest]
    #[case::empty("")]
    #[case::upper_case("Some_level")]
    #[case::dash("some-level")]
    #[case::too_long("a_very_long_level_name_that_goes_on_and_on_past_sixty_four_bytes_x")]
    fn a_badly_named_level_fails_its_check(#[case] name: &'static str) {
        let err = TtlLevel::new(name, Duration::from_secs(1))
            .check()
            .unwrap_err();
        assert!(matches!(err, CacheError::InvalidTtl { .. }), "{err}");
    }

    #[test]
    fn a_level_with_a_zero_default_fails_its_check() {
        let err = TtlLevel::new("zero", Duration::ZERO).check().unwrap_err();
        assert!(err.to_string().contains("zero"), "{err}");
    }

    #[test]
    fn each_variable_sets_exactly_the_level_it_names() {
        let env = Environment::from_pairs([
            ("GLOVEBOX_CACHE_TTL_SOME_LEVEL", "42"),
            ("GLOVEBOX_CACHE_PATH", "/elsewhere"),
        ]);
        let ttls = CacheTtlConfig::from_env(&env).unwrap();
        assert_eq!(ttls.get(&LEVEL), Duration::from_secs(42));
        assert_eq!(ttls.get(&OTHER), OTHER.default_ttl());
        assert_eq!(
            ttls.iter().collect::<Vec<_>>(),
            [("some_level", Duration::from_secs(42))]
        );
        assert_eq!(LEVEL.variable(), "GLOVEBOX_CACHE_TTL_SOME_LEVEL");
    }

    #[rstest]
    #[case::not_a_number("one hour")]
    #[case::negative("-5")]
    #[case::fraction("1.5")]
    #[case::with_unit("3600s")]
    #[case::zero("0")]
    fn a_bad_override_is_an_error_naming_the_variable(#[case] value: &str) {
        let env = Environment::from_pairs([("GLOVEBOX_CACHE_TTL_SOME_LEVEL", value)]);
        let err = CacheTtlConfig::from_env(&env).unwrap_err();
        assert!(
            matches!(&err, CacheError::InvalidTtl { name, .. } if name == "GLOVEBOX_CACHE_TTL_SOME_LEVEL"),
            "{err}"
        );
        assert!(
            err.to_string().contains("GLOVEBOX_CACHE_TTL_SOME_LEVEL"),
            "{err}"
        );
    }

    #[rstest]
    #[case::lower_case("GLOVEBOX_CACHE_TTL_some_level")]
    #[case::no_name("GLOVEBOX_CACHE_TTL_")]
    #[case::dash("GLOVEBOX_CACHE_TTL_SOME-LEVEL")]
    fn a_badly_named_variable_is_an_error_naming_it(#[case] variable: &str) {
        let env = Environment::from_pairs([(variable, "60")]);
        let err = CacheTtlConfig::from_env(&env).unwrap_err();
        assert!(err.to_string().contains(variable), "{err}");
    }

    #[test]
    fn surrounding_whitespace_is_accepted() {
        let env = Environment::from_pairs([("GLOVEBOX_CACHE_TTL_SOME_LEVEL", " 120 ")]);
        assert_eq!(
            CacheTtlConfig::from_env(&env).unwrap().get(&LEVEL),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn serde_writes_whole_seconds_and_round_trips() {
        let ttls = CacheTtlConfig::default()
            .with(&LEVEL, Duration::from_secs(600))
            .with(&OTHER, Duration::from_millis(30_900));
        let json = serde_json::to_value(&ttls).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"some_level": 600, "other_level": 30})
        );
        let back: CacheTtlConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.get(&LEVEL), Duration::from_secs(600));
        assert_eq!(back.get(&OTHER), Duration::from_secs(30));
    }

    #[test]
    fn a_partial_config_file_leaves_other_levels_at_their_defaults() {
        let ttls: CacheTtlConfig = serde_json::from_str(r#"{"some_level": 60}"#).unwrap();
        assert_eq!(ttls.get(&LEVEL), Duration::from_secs(60));
        assert_eq!(ttls.get(&OTHER), OTHER.default_ttl());
    }

    #[test]
    fn an_undeclared_name_is_kept_and_reported() {
        let ttls: CacheTtlConfig =
            serde_json::from_str(r#"{"some_level": 60, "some_levle": 5, "elsewhere": 9}"#).unwrap();
        assert_eq!(
            ttls.undeclared_levels([LEVEL, OTHER]),
            ["elsewhere", "some_levle"]
        );
        assert_eq!(
            ttls.undeclared_levels([]),
            ["elsewhere", "some_level", "some_levle"]
        );
        let json = serde_json::to_value(&ttls).unwrap();
        assert_eq!(json["some_levle"], 5);
    }

    #[rstest]
    #[case::zero(r#"{"some_level": 0}"#, "at least 1 second")]
    #[case::negative(r#"{"some_level": -1}"#, "-1")]
    #[case::bad_name(r#"{"Some-Level": 60}"#, "Some-Level")]
    #[case::not_a_map(r#"[60]"#, "map")]
    fn a_bad_config_file_is_an_error(#[case] text: &str, #[case] mentions: &str) {
        let err = serde_json::from_str::<CacheTtlConfig>(text).unwrap_err();
        assert!(err.to_string().contains(mentions), "{err}");
    }

    #[test]
    fn user_config_reads_ttl_overrides_and_refuses_bad_ones() {
        let config = crate::config::UserCacheConfig::from_env(&Environment::from_pairs([(
            "GLOVEBOX_CACHE_TTL_SOME_LEVEL",
            "60",
        )]))
        .unwrap();
        assert_eq!(config.ttls.get(&LEVEL), Duration::from_secs(60));
        assert_eq!(config.ttls.get(&OTHER), OTHER.default_ttl());

        let err = crate::config::UserCacheConfig::from_env(&Environment::from_pairs([(
            "GLOVEBOX_CACHE_TTL_SOME_LEVEL",
            "soon",
        )]))
        .unwrap_err();
        assert!(
            err.to_string().contains("GLOVEBOX_CACHE_TTL_SOME_LEVEL"),
            "{err}"
        );
    }
}
