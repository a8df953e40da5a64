//! The configuration file (`cache.toml`): where it is found, its format (serde over TOML), and
//! [`UserCacheConfig::load`], which combines it with the environment and can say where each
//! value came from. The format and the precedence are written in `docs/configuration.md`.
//!
//! Precedence, lowest first: the defaults, the file, the environment (`GLOVEBOX_CACHE_PATH`,
//! `GLOVEBOX_CACHE_STRATEGY`, `GLOVEBOX_CACHE_TTL_<LEVEL>`), then what the program passes
//! explicitly (a CLI's `--root`), which the program applies on top of the loaded config.
//!
//! Over 600 lines, on purpose: the file's schema (its serde structs), the checks that give every
//! error its line and key, and the origin of each setting are one unit; cut apart, each part
//! would need the others' private types. Its tests are in `config_file/tests.rs`.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::{
    APPLICATION_DIR, CacheOptions, CacheStrategy, EvictionPolicy, RemoteConfig, TagSettings,
    UserCacheConfig, resolve_cache_root,
};
use crate::env::Environment;
use crate::error::{CacheError, Result};
use crate::tag::Tag;
use crate::ttl::{CacheTtlConfig, check_level_name};

/// The variable that names the configuration file, when `--config` (or the program's
/// equivalent) does not.
pub const CONFIG_FILE_VARIABLE: &str = "GLOVEBOX_CACHE_CONFIG";

/// The file's name in the configuration directory: `$XDG_CONFIG_HOME/glovebox/cache.toml`.
pub const CONFIG_FILE_NAME: &str = "cache.toml";

/// Where a configuration value came from, as `git config --show-origin` says it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ConfigOrigin {
    /// Nobody set it: the built-in default (or, for the root, the XDG/platform default).
    Default,
    /// The configuration file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// An environment variable.
    Environment {
        /// The variable.
        variable: String,
    },
    /// The program's command line (for example `--root`).
    CommandLine {
        /// The option.
        option: String,
    },
}

impl std::fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigOrigin::Default => f.write_str("default"),
            ConfigOrigin::File { path } => write!(f, "file:{}", path.display()),
            ConfigOrigin::Environment { variable } => write!(f, "env:{variable}"),
            ConfigOrigin::CommandLine { option } => write!(f, "command line:{option}"),
        }
    }
}

/// One effective setting: its dotted key as the file writes it, its value as text, and where
/// it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigSetting {
    /// `root`, `strategy`, `defaults.max_size`, `tags.<tag>.eviction`, `ttl.<level>`, ...
    pub key: String,
    /// The value, as the file would write it.
    pub value: String,
    /// Where it came from.
    pub origin: ConfigOrigin,
}

/// A loaded configuration with the file it was read from and where each setting came from.
#[derive(Clone, Debug)]
pub struct ExplainedConfig {
    /// The configuration.
    pub config: UserCacheConfig,
    /// The file looked for (`None` when no location could be worked out: no
    /// `GLOVEBOX_CACHE_CONFIG`, `XDG_CONFIG_HOME` or `HOME`).
    pub file: Option<PathBuf>,
    /// Whether that file existed (a missing file at the default location is no error).
    pub file_found: bool,
    /// Every effective setting, in a stable order: root, strategy, defaults, tags, TTLs, remote.
    pub settings: Vec<ConfigSetting>,
}

/// The configuration file to read: `explicit` (a `--config PATH`), else `GLOVEBOX_CACHE_CONFIG`,
/// else `$XDG_CONFIG_HOME/glovebox/cache.toml` (an absolute `XDG_CONFIG_HOME` only, as the XDG
/// spec says), else `$HOME/.config/glovebox/cache.toml`. The flag is whether the file was named
/// (by `explicit` or the variable), in which case it must exist.
pub fn locate_config_file(explicit: Option<&Path>, env: &Environment) -> Option<(PathBuf, bool)> {
    if let Some(path) = explicit {
        return Some((path.to_owned(), true));
    }
    if let Some(path) = env.var(CONFIG_FILE_VARIABLE) {
        return Some((PathBuf::from(path), true));
    }
    let config_home = env
        .var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| {
            env.var("HOME")
                .map(|home| PathBuf::from(home).join(".config"))
        })?;
    Some((
        config_home.join(APPLICATION_DIR).join(CONFIG_FILE_NAME),
        false,
    ))
}

impl UserCacheConfig {
    /// The configuration of this process: the file [`locate_config_file`] finds (none is fine),
    /// under the process environment's overrides. A bad file is a
    /// [`CacheError::ConfigFile`] naming the file, the line and the key.
    pub fn load() -> Result<Self> {
        UserCacheConfig::load_from(None, &Environment::process())
    }

    /// [`UserCacheConfig::load`] with an explicit file (which must exist) and environment.
    pub fn load_from(file: Option<&Path>, env: &Environment) -> Result<Self> {
        Ok(UserCacheConfig::load_explained(file, env)?.config)
    }

    /// [`UserCacheConfig::load_from`], and where each setting came from.
    pub fn load_explained(file: Option<&Path>, env: &Environment) -> Result<ExplainedConfig> {
        let location = locate_config_file(file, env);
        let (contents, file_found) = match &location {
            Some((path, named)) => match read_file(path)? {
                Some(text) => (parse_file(path, &text)?, true),
                None if *named => {
                    return Err(CacheError::ConfigFile {
                        path: path.clone(),
                        line: None,
                        key: None,
                        message: "the file does not exist".to_owned(),
                    });
                }
                None => (FileContents::default(), false),
            },
            None => (FileContents::default(), false),
        };
        let file_origin = || match &location {
            Some((path, _)) => ConfigOrigin::File { path: path.clone() },
            None => ConfigOrigin::Default,
        };
        let env_origin = |variable: &str| ConfigOrigin::Environment {
            variable: variable.to_owned(),
        };
        let mut settings = Vec::new();

        let file_root = contents
            .root
            .as_ref()
            .map(|root| root.expand(env))
            .transpose()
            .map_err(|message| CacheError::ConfigFile {
                path: location.as_ref().map(|l| l.0.clone()).unwrap_or_default(),
                line: None,
                key: Some("root".to_owned()),
                message,
            })?;
        let (cache_path, root_origin) = match (env.var("GLOVEBOX_CACHE_PATH"), file_root) {
            (Some(path), _) => (Some(PathBuf::from(path)), env_origin("GLOVEBOX_CACHE_PATH")),
            (None, Some(path)) => (Some(path), file_origin()),
            (None, None) => (None, ConfigOrigin::Default),
        };
        let shown_root = match &cache_path {
            Some(path) => path.display().to_string(),
            None => resolve_cache_root(None, env)
                .map(|path| path.display().to_string())
                .unwrap_or_else(|_| {
                    "(none: set GLOVEBOX_CACHE_PATH, XDG_CACHE_HOME or HOME)".to_owned()
                }),
        };
        settings.push(setting("root", shown_root, root_origin));

        let (strategy, strategy_origin) = match env.var("GLOVEBOX_CACHE_STRATEGY") {
            Some(value) => (value.parse()?, env_origin("GLOVEBOX_CACHE_STRATEGY")),
            None => (CacheStrategy::Shared, ConfigOrigin::Default),
        };
        let strategy_text = match strategy {
            CacheStrategy::Shared => "shared",
            CacheStrategy::Disabled => "disabled",
        };
        settings.push(setting(
            "strategy",
            strategy_text.to_owned(),
            strategy_origin,
        ));

        let mut options = CacheOptions::default();
        let defaults = contents.defaults.settings();
        let builtin = CacheOptions::default();
        for (name, value) in section_values(&defaults, Some(&builtin)) {
            let origin = if defaults_sets(&defaults, name) {
                file_origin()
            } else {
                ConfigOrigin::Default
            };
            settings.push(setting(&format!("defaults.{name}"), value, origin));
        }
        defaults.apply_to(&mut options);

        let mut tags = BTreeMap::new();
        for (tag, section) in &contents.tags {
            let tag_settings = section.settings();
            for (name, value) in section_values(&tag_settings, None) {
                settings.push(setting(
                    &format!("tags.{}.{name}", tag.0),
                    value,
                    file_origin(),
                ));
            }
            tags.insert(tag.0.clone(), tag_settings);
        }

        let environment_ttls = CacheTtlConfig::from_env(env)?;
        let mut ttl_seconds: BTreeMap<String, u64> = BTreeMap::new();
        let mut ttl_origins: BTreeMap<String, ConfigOrigin> = BTreeMap::new();
        for (level, ttl) in &contents.ttl {
            ttl_seconds.insert(level.0.clone(), ttl.0.as_secs());
            ttl_origins.insert(level.0.clone(), file_origin());
        }
        for (level, ttl) in environment_ttls.iter() {
            ttl_seconds.insert(level.to_owned(), ttl.as_secs());
            ttl_origins.insert(
                level.to_owned(),
                env_origin(&format!(
                    "{}{}",
                    crate::tag::TTL_VARIABLE_PREFIX,
                    level.to_ascii_uppercase()
                )),
            );
        }
        for (level, seconds) in &ttl_seconds {
            let origin = ttl_origins.remove(level).unwrap_or(ConfigOrigin::Default);
            settings.push(setting(
                &format!("ttl.{level}"),
                format_duration(Duration::from_secs(*seconds)),
                origin,
            ));
        }
        // Every name and value was checked when it was read; this only builds the map.
        let ttls =
            CacheTtlConfig::try_from(ttl_seconds).map_err(|reason| CacheError::InvalidTtl {
                name: "ttl".to_owned(),
                reason,
            })?;

        let remote = contents.remote.map(|section| RemoteConfig {
            settings: section
                .into_iter()
                .map(|(key, value)| (key, value.to_string()))
                .collect(),
        });
        if let Some(remote) = &remote {
            for (key, value) in &remote.settings {
                settings.push(setting(
                    &format!("remote.{key}"),
                    value.clone(),
                    file_origin(),
                ));
            }
        }

        let config = UserCacheConfig {
            cache_path,
            strategy,
            options,
            tags,
            ttls,
            remote,
        };
        Ok(ExplainedConfig {
            config,
            file: location.map(|(path, _)| path),
            file_found,
            settings,
        })
    }
}

/// Deserializes the file's format (a program may embed it in its own configuration file):
/// `root`, `[defaults]`, `[tags.<tag>]`, `[ttl]`, `[remote]`. Environment variables are not read
/// here (that is [`UserCacheConfig::load`]); a `root` starting with `~/` is expanded with the
/// process's `HOME`.
impl<'de> Deserialize<'de> for UserCacheConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let contents = FileContents::deserialize(deserializer)?;
        let cache_path = contents
            .root
            .as_ref()
            .map(|root| root.expand(&Environment::process()))
            .transpose()
            .map_err(serde::de::Error::custom)?;
        let mut options = CacheOptions::default();
        contents.defaults.settings().apply_to(&mut options);
        let ttl_seconds: BTreeMap<String, u64> = contents
            .ttl
            .iter()
            .map(|(level, ttl)| (level.0.clone(), ttl.0.as_secs()))
            .collect();
        Ok(UserCacheConfig {
            cache_path,
            strategy: CacheStrategy::Shared,
            options,
            tags: contents
                .tags
                .iter()
                .map(|(tag, section)| (tag.0.clone(), section.settings()))
                .collect(),
            ttls: CacheTtlConfig::try_from(ttl_seconds).map_err(serde::de::Error::custom)?,
            remote: contents.remote.map(|section| RemoteConfig {
                settings: section
                    .into_iter()
                    .map(|(key, value)| (key, value.to_string()))
                    .collect(),
            }),
        })
    }
}

fn setting(key: &str, value: String, origin: ConfigOrigin) -> ConfigSetting {
    ConfigSetting {
        key: key.to_owned(),
        value,
        origin,
    }
}

/// The file's text; `None` when it does not exist.
fn read_file(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(CacheError::ConfigFile {
            path: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read it: {err}"),
        }),
    }
}

fn parse_file(path: &Path, text: &str) -> Result<FileContents> {
    toml::from_str(text).map_err(|err| {
        let (line, key) = match err.span() {
            Some(span) => locate_in_text(text, span.start),
            None => (None, None),
        };
        CacheError::ConfigFile {
            path: path.to_owned(),
            line,
            key,
            message: err.message().trim().to_owned(),
        }
    })
}

/// The line (from 1) of byte `offset` in `text`, and the dotted key written there: the key
/// before `=` under the nearest `[table]` header above, or the header itself.
fn locate_in_text(text: &str, offset: usize) -> (Option<usize>, Option<String>) {
    let before = text.get(..offset).unwrap_or(text);
    let line_index = before.matches('\n').count();
    let line_text = text.lines().nth(line_index).unwrap_or("");
    let lines: Vec<&str> = text.lines().take(line_index).collect();
    let table = lines.iter().rev().find_map(|line| table_header(line));
    let key = if let Some(header) = table_header(line_text) {
        Some(header)
    } else if let Some((key, _)) = line_text.split_once('=') {
        let key = clean_key(key);
        Some(match table {
            Some(table) => format!("{table}.{key}"),
            None => key,
        })
    } else {
        table
    };
    (Some(line_index + 1), key)
}

/// `tags.thumbnails` for a line `[tags.thumbnails]` (or `[[...]]`), else `None`.
fn table_header(line: &str) -> Option<String> {
    let trimmed = line.trim();
    if !trimmed.starts_with('[') {
        return None;
    }
    let inner = trimmed.trim_start_matches('[').split(']').next()?;
    Some(clean_key(inner))
}

fn clean_key(key: &str) -> String {
    key.trim()
        .split('.')
        .map(|part| part.trim().trim_matches('"').trim_matches('\''))
        .collect::<Vec<_>>()
        .join(".")
}

/// The file as written. Every value is checked while it is read, so that an error has the
/// place in the file where it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContents {
    root: Option<RootPath>,
    #[serde(default)]
    defaults: TagSection,
    #[serde(default)]
    tags: BTreeMap<TagName, TagSection>,
    #[serde(default)]
    ttl: BTreeMap<LevelName, TtlValue>,
    remote: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagSection {
    max_size: Option<ByteSize>,
    max_entries: Option<EntryCount>,
    eviction: Option<EvictionPolicy>,
    timeout: Option<PositiveDuration>,
    commit_interval: Option<TextDuration>,
}

impl TagSection {
    fn settings(&self) -> TagSettings {
        TagSettings {
            max_size_bytes: self.max_size.map(|size| size.0),
            max_entries: self.max_entries.map(|count| count.0),
            eviction_policy: self.eviction,
            timeout: self.timeout.map(|timeout| timeout.0),
            commit_interval: self.commit_interval.map(|interval| interval.0),
        }
    }
}

/// The five settings of a section as `(key, text)`: those set, and with `fallback` the others
/// from it.
fn section_values(
    settings: &TagSettings,
    fallback: Option<&CacheOptions>,
) -> Vec<(&'static str, String)> {
    let mut values = Vec::new();
    let mut push = |name: &'static str, set: Option<String>, default: Option<String>| {
        if let Some(value) = set.or(default) {
            values.push((name, value));
        }
    };
    push(
        "max_size",
        settings.max_size_bytes.map(|size| size.to_string()),
        fallback.map(|options| options.max_size_bytes.to_string()),
    );
    push(
        "max_entries",
        settings.max_entries.map(|count| count.to_string()),
        fallback.map(|options| {
            options
                .max_entries
                .map_or_else(|| "none".to_owned(), |count| count.to_string())
        }),
    );
    push(
        "eviction",
        settings.eviction_policy.map(eviction_name),
        fallback.map(|options| eviction_name(options.eviction_policy)),
    );
    push(
        "timeout",
        settings.timeout.map(format_duration),
        fallback.map(|options| format_duration(options.timeout)),
    );
    push(
        "commit_interval",
        settings.commit_interval.map(format_duration),
        fallback.map(|options| format_duration(options.commit_interval)),
    );
    values
}

fn defaults_sets(settings: &TagSettings, name: &str) -> bool {
    match name {
        "max_size" => settings.max_size_bytes.is_some(),
        "max_entries" => settings.max_entries.is_some(),
        "eviction" => settings.eviction_policy.is_some(),
        "timeout" => settings.timeout.is_some(),
        "commit_interval" => settings.commit_interval.is_some(),
        _ => false,
    }
}

fn eviction_name(policy: EvictionPolicy) -> String {
    match policy {
        EvictionPolicy::LeastRecentlyStored => "least-recently-stored",
        EvictionPolicy::LeastRecentlyUsed => "least-recently-used",
    }
    .to_owned()
}

/// `20ms`, `90s`, `7d`: the largest unit that divides the duration.
fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let seconds = duration.as_secs();
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds >= size && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// An integer or a string, as TOML gives a size or a duration.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(i64),
    Text(String),
}

/// `root`: an absolute path, or one starting with `~/`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
struct RootPath(String);

impl TryFrom<String> for RootPath {
    type Error = String;

    fn try_from(text: String) -> std::result::Result<Self, String> {
        if text.trim().is_empty() {
            return Err("the cache root cannot be empty".to_owned());
        }
        if !(Path::new(&text).is_absolute() || text.starts_with("~/")) {
            return Err(format!(
                "the cache root {text:?} is relative; write an absolute path or one starting with ~/"
            ));
        }
        Ok(RootPath(text))
    }
}

impl RootPath {
    fn expand(&self, env: &Environment) -> std::result::Result<PathBuf, String> {
        match self.0.strip_prefix("~/") {
            Some(rest) => env
                .var("HOME")
                .map(|home| PathBuf::from(home).join(rest))
                .ok_or_else(|| {
                    format!(
                        "the cache root {:?} starts with ~/ but HOME is not set",
                        self.0
                    )
                }),
            None => Ok(PathBuf::from(&self.0)),
        }
    }
}

/// A tag name under `[tags]`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
struct TagName(String);

impl TryFrom<String> for TagName {
    type Error = String;

    fn try_from(name: String) -> std::result::Result<Self, String> {
        Tag::new(&name).map_err(|err| err.to_string())?;
        Ok(TagName(name))
    }
}

/// A level name under `[ttl]`.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
struct LevelName(String);

impl TryFrom<String> for LevelName {
    type Error = String;

    fn try_from(name: String) -> std::result::Result<Self, String> {
        check_level_name(&name)?;
        Ok(LevelName(name))
    }
}

/// A size in bytes: a positive integer, or a string with a unit (`"20GiB"`, `"500 MB"`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "NumberOrText")]
struct ByteSize(u64);

impl TryFrom<NumberOrText> for ByteSize {
    type Error = String;

    fn try_from(value: NumberOrText) -> std::result::Result<Self, String> {
        let bytes = match value {
            NumberOrText::Number(number) => u64::try_from(number)
                .map_err(|_| format!("a size cannot be negative ({number})"))?,
            NumberOrText::Text(text) => parse_size(&text)?,
        };
        if bytes == 0 {
            return Err("a size limit must be greater than zero".to_owned());
        }
        Ok(ByteSize(bytes))
    }
}

/// `"20GiB"`, `"500 MB"`, `"4096"`: a whole number and an optional unit, B, KB/MB/GB/TB (powers
/// of 1000) or KiB/MiB/GiB/TiB (powers of 1024), in any case.
pub(crate) fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let accepted = "a whole number of bytes with an optional unit B, KB, MB, GB, TB, KiB, MiB, \
                    GiB or TiB (for example \"20GiB\")";
    if number.is_empty() {
        return Err(format!("size {text:?} is not {accepted}"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "size {text:?} has unknown unit {other:?}; use {accepted}"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|count| count.checked_mul(multiplier))
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// `max_entries`: a positive integer.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "i64")]
struct EntryCount(u64);

impl TryFrom<i64> for EntryCount {
    type Error = String;

    fn try_from(count: i64) -> std::result::Result<Self, String> {
        match u64::try_from(count) {
            Ok(count) if count > 0 => Ok(EntryCount(count)),
            _ => Err(format!(
                "an entry limit must be greater than zero ({count})"
            )),
        }
    }
}

/// A duration: whole seconds as an integer, or a string with a unit (`"20ms"`, `"90s"`, `"7d"`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "NumberOrText")]
struct TextDuration(Duration);

impl TryFrom<NumberOrText> for TextDuration {
    type Error = String;

    fn try_from(value: NumberOrText) -> std::result::Result<Self, String> {
        match value {
            NumberOrText::Number(seconds) => u64::try_from(seconds)
                .map(|seconds| TextDuration(Duration::from_secs(seconds)))
                .map_err(|_| format!("a duration cannot be negative ({seconds})")),
            NumberOrText::Text(text) => parse_duration(&text).map(TextDuration),
        }
    }
}

/// A duration greater than zero (`timeout`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "NumberOrText")]
struct PositiveDuration(Duration);

impl TryFrom<NumberOrText> for PositiveDuration {
    type Error = String;

    fn try_from(value: NumberOrText) -> std::result::Result<Self, String> {
        let duration = TextDuration::try_from(value)?.0;
        if duration.is_zero() {
            return Err("must be greater than zero".to_owned());
        }
        Ok(PositiveDuration(duration))
    }
}

/// A time to live: at least one second, whole seconds.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "NumberOrText")]
struct TtlValue(Duration);

impl TryFrom<NumberOrText> for TtlValue {
    type Error = String;

    fn try_from(value: NumberOrText) -> std::result::Result<Self, String> {
        let duration = TextDuration::try_from(value)?.0;
        if duration.as_secs() == 0 {
            return Err(
                "a time to live must be at least 1 second; to stop caching a tag, use its kill \
                 switch GLOVEBOX_CACHE_<TAG>=false"
                    .to_owned(),
            );
        }
        if duration.subsec_nanos() != 0 {
            return Err("a time to live is a whole number of seconds".to_owned());
        }
        Ok(TtlValue(duration))
    }
}

/// `"20ms"`, `"90s"`, `"10m"`, `"12h"`, `"7d"`, `"2w"`, `"3600"` (seconds).
pub(crate) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits_end);
    let accepted = "a whole number with an optional unit ms, s, m, h, d or w (20ms, 90s, 10m, \
                    12h, 7d)";
    let count: u64 = number
        .parse()
        .map_err(|_| format!("duration {text:?} is not {accepted}"))?;
    let too_large = || format!("duration {text:?} is too large");
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(count)),
        "" | "s" => Ok(Duration::from_secs(count)),
        unit => {
            let seconds_per_unit = match unit {
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                "w" => 604_800,
                _ => {
                    return Err(format!(
                        "duration {text:?} has unknown unit {unit:?}; use {accepted}"
                    ));
                }
            };
            count
                .checked_mul(seconds_per_unit)
                .map(Duration::from_secs)
                .ok_or_else(too_large)
        }
    }
}

#[cfg(test)]
mod tests;
