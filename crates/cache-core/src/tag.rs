//! `Tag`: a validated domain namespace name, safe to use as a directory name.

use std::fmt;

use crate::error::{CacheError, Result};

/// A domain namespace: `[a-z0-9_-]{1,64}`. Each tag owns `<root>/<tag>/` and its own database
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
    /// assert!(Tag::new("compilation").is_ok());
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
    pub fn kill_switch_variable(&self) -> String {
        format!(
            "GLOVEBOX_CACHE_{}",
            self.0.to_ascii_uppercase().replace('-', "_")
        )
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
    #[case::upper("Compilation")]
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
    #[case("compilation")]
    #[case("metrics")]
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

    #[test]
    fn kill_switch_variable_is_upper_case_with_underscores() {
        let tag = Tag::new("cli-completion").ok();
        assert_eq!(
            tag.map(|t| t.kill_switch_variable()),
            Some("GLOVEBOX_CACHE_CLI_COMPLETION".to_owned())
        );
    }
}
