//! `Tag`: a validated domain namespace name, safe to use as a directory name.

use std::fmt;

use crate::error::{CacheError, Result};

/// A domain namespace: `[a-z0-9_-]{1,64}`, except the few names whose kill-switch variable would
/// be a configuration variable (`path`, `global`, `strategy`, `ttl_*`). Each tag owns `<root>/<tag>/` and its own database
/// file, so clearing or corrupting one tag touches no other.
///
/// Invariant: the inner string always satisfies [`Tag::new`]'s rules, so it can never name a path
/// outside the root (no `/`, no `..`, no empty string).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);

impl Tag {
    /// The longest tag accepted.
    pub const MAX_LEN: usize = 64;

    /// The tag of an untagged cache.
    pub const DEFAULT: &'static str = "default";

    /// Validates `name` as a tag.
    ///
    /// ```
    /// use cache_core::Tag;
    /// assert!(Tag::new("thumbnails").is_ok());
    /// assert!(Tag::new("../etc").is_err());
    /// ```
    pub fn new(name: &str) -> Result<Self> {
        let invalid = |reason| CacheError::InvalidTag {
            tag: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("a tag cannot be empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(invalid("a tag is at most 64 characters"));
        }
        if !name
            .bytes()
            .all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        {
            return Err(invalid("a tag may contain only a-z, 0-9, '_' and '-'"));
        }
        if let Some(reason) = kill_switch_collision(&kill_switch_variable_of(name)) {
            return Err(invalid(reason));
        }
        Ok(Tag(name.to_owned()))
    }

    /// The tag for `Some(name)`, or [`Tag::DEFAULT`] for `None`.
    pub fn from_option(name: Option<&str>) -> Result<Self> {
        Self::new(name.unwrap_or(Self::DEFAULT))
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of the kill-switch variable of this tag: `GLOVEBOX_CACHE_<TAG>`, upper case, with
    /// `-` written as `_` (environment variable names cannot hold `-` portably).
    ///
    /// So `a-b` and `a_b` are two tags with one switch (documented in `docs/caching-system.md`);
    /// a tag whose variable would be a configuration variable (`path`, `global`, `strategy`,
    /// `ttl_*`) is refused by [`Tag::new`].
    pub fn kill_switch_variable(&self) -> String {
        kill_switch_variable_of(&self.0)
    }
}

/// The kill-switch variable of the tag `name`.
pub(crate) fn kill_switch_variable_of(name: &str) -> String {
    format!(
        "GLOVEBOX_CACHE_{}",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// The prefix of every TTL variable: `GLOVEBOX_CACHE_TTL_<NAME>` sets level `<name>`. Defined
/// here, beside the other variable names a tag's kill switch must not take, so that `tag.rs`
/// stays a leaf below `ttl.rs` and `env.rs` (which read variables and name tags).
pub const TTL_VARIABLE_PREFIX: &str = "GLOVEBOX_CACHE_TTL_";

/// Why a tag whose kill-switch variable is `variable` cannot be: that variable already configures
/// the cache, so switching the tag off would change the configuration of every tag (or setting
/// the configuration would switch the tag off). `None` when `variable` is free.
///
/// Every variable `config.rs` and `ttl.rs` read is here; a new one must be added.
pub(crate) fn kill_switch_collision(variable: &str) -> Option<&'static str> {
    match variable {
        "GLOVEBOX_CACHE_GLOBAL" => {
            Some("its kill switch would be GLOVEBOX_CACHE_GLOBAL, which switches off every tag")
        }
        "GLOVEBOX_CACHE_PATH" => {
            Some("its kill switch would be GLOVEBOX_CACHE_PATH, which sets the cache root")
        }
        "GLOVEBOX_CACHE_STRATEGY" => {
            Some("its kill switch would be GLOVEBOX_CACHE_STRATEGY, which sets the cache strategy")
        }
        _ if variable.starts_with(TTL_VARIABLE_PREFIX) => Some(
            "its kill switch would be a GLOVEBOX_CACHE_TTL_* variable, which sets a time to live",
        ),
        _ => None,
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({:?})", self.0)
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::Tag;
    use crate::CacheError;

    #[rstest]
    #[case::empty("")]
    #[case::parent("..")]
    #[case::traversal("../etc")]
    #[case::slash("a/b")]
    #[case::upper("Thumbnails")]
    #[case::space("my tag")]
    #[case::dot("v1.0")]
    #[case::nul("a\0b")]
    #[case::unicode("café")]
    #[case::too_long(&"x".repeat(65))]
    fn bad_tags_are_refused_with_a_clear_error(#[case] name: &str) {
        match Tag::new(name) {
            Err(CacheError::InvalidTag { tag, .. }) => assert_eq!(tag, name),
            other => panic!("expected InvalidTag for {name:?}, got {other:?}"),
        }
    }

    #[rstest]
    #[case("thumbnails")]
    #[case("reports")]
    #[case("version_check")]
    #[case("cli-completion")]
    #[case("0")]
    #[case(&"x".repeat(64))]
    fn good_tags_are_accepted(#[case] name: &str) {
        assert_eq!(
            Tag::new(name).map(|tag| tag.as_str().to_owned()).ok(),
            Some(name.to_owned())
        );
    }

    #[test]
    fn untagged_means_default() {
        assert_eq!(
            Tag::from_option(None).ok().map(|t| t.to_string()),
            Some("default".to_owned())
        );
    }

    /// Item 16 of issue 13: the kill switch of a tag named `path` was `GLOVEBOX_CACHE_PATH`, so
    /// switching that tag off (`GLOVEBOX_CACHE_PATH=0`) moved every tag's root to `./0`; `global`
    /// shared the switch of every tag. A tag whose kill-switch variable is a configuration
    /// variable is refused, naming the variable.
    #[rstest]
    #[case::root("path", "GLOVEBOX_CACHE_PATH")]
    #[case::global_switch("global", "GLOVEBOX_CACHE_GLOBAL")]
    #[case::strategy("strategy", "GLOVEBOX_CACHE_STRATEGY")]
    #[case::ttl_level("ttl_some_level", "GLOVEBOX_CACHE_TTL_")]
    #[case::ttl_level_with_dashes("ttl-some-level", "GLOVEBOX_CACHE_TTL_")]
    #[case::ttl_unknown_level("ttl_anything", "GLOVEBOX_CACHE_TTL_")]
    fn trust_16_a_tag_whose_kill_switch_is_a_configuration_variable_is_refused(
        #[case] name: &str,
        #[case] variable: &str,
    ) {
        match Tag::new(name) {
            Err(err @ CacheError::InvalidTag { .. }) => {
                let message = err.to_string();
                assert!(message.contains(&format!("{name:?}")), "{message}");
                assert!(message.contains(variable), "{message}");
            }
            other => panic!("expected InvalidTag for {name:?}, got {other:?}"),
        }
    }

    #[rstest]
    #[case("ttl")]
    #[case("paths")]
    #[case("my-path")]
    #[case("global-cache")]
    fn names_near_a_configuration_variable_are_tags(#[case] name: &str) {
        assert!(Tag::new(name).is_ok(), "{name}");
    }

    /// The documented rule (docs/caching-system.md, "Tags and kill switches"): `-` is written `_`
    /// in a variable name, so `a-b` and `a_b` are two tags with one switch.
    #[test]
    fn a_dash_and_an_underscore_share_one_kill_switch() {
        let (dash, underscore) = (Tag::new("a-b").ok(), Tag::new("a_b").ok());
        assert_ne!(dash, underscore, "two tags, two directories");
        assert_eq!(
            dash.map(|tag| tag.kill_switch_variable()),
            underscore.map(|tag| tag.kill_switch_variable())
        );
    }

    #[test]
    fn kill_switch_variable_is_upper_case_with_underscores() {
        let tag = Tag::new("cli-completion").ok();
        assert_eq!(
            tag.map(|t| t.kill_switch_variable()),
            Some("GLOVEBOX_CACHE_CLI_COMPLETION".to_owned())
        );
    }
}
