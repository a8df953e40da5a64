//! The one error type of `cache-metrics`.

use cache_core::{CacheError, KeyDisplay};

/// Everything that can go wrong in `cache-metrics`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// The cache underneath failed; its message names the tag, key or path.
    #[error(transparent)]
    Cache(#[from] CacheError),

    /// A session id that is not a UUID in the 8-4-4-4-12 hex form.
    #[error("invalid session id {value}: expected a UUID in the 8-4-4-4-12 hex form")]
    InvalidSessionId {
        /// The text given, rendered readably and shortened.
        value: KeyDisplay,
    },

    /// Session metrics could not be rendered as JSON.
    #[error("cannot render session metrics as json")]
    Json {
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
}

/// Result alias used throughout `cache-metrics`.
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;
