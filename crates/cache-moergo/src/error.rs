//! The one error type of `cache-moergo`.

use cache_core::{CacheError, KeyDisplay};

/// Everything that can go wrong in `cache-moergo`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MoergoError {
    /// The cache underneath failed; its message names the tag, key or path.
    #[error(transparent)]
    Cache(#[from] CacheError),

    /// A layout UUID that is not in the 8-4-4-4-12 hex form.
    #[error("invalid layout uuid {value}: expected a UUID in the 8-4-4-4-12 hex form")]
    InvalidLayoutUuid {
        /// The text given, rendered readably and shortened.
        value: KeyDisplay,
    },

    /// A firmware version, board name, firmware location or public-layout tag that cannot be
    /// used.
    #[error("invalid {what} {value}: {reason}")]
    InvalidIdentifier {
        /// What it was meant to be ("firmware version", "board", ...).
        what: &'static str,
        /// The text given, rendered readably and shortened.
        value: KeyDisplay,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A document that holds, or looks like it holds, a token or credential. Those are never
    /// cached. The message names the field or the kind of value found, never the value itself.
    #[error(
        "refusing to cache a moergo api document holding credentials ({found}): tokens and credentials are never cached"
    )]
    CredentialsRefused {
        /// The offending field name, or a description of the value that looked like a token.
        found: String,
    },
}

/// Result alias used throughout `cache-moergo`.
pub type Result<T, E = MoergoError> = std::result::Result<T, E>;
