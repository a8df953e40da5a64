//! The one error type of `cache-layout`.

use cache_core::{CacheError, KeyDisplay};

/// Everything that can go wrong in `cache-layout`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The cache underneath failed; its message names the tag, key or path.
    #[error(transparent)]
    Cache(#[from] CacheError),

    /// A bookmark id that is not a UUID in the 8-4-4-4-12 hex form.
    #[error("invalid bookmark id {value}: expected a UUID in the 8-4-4-4-12 hex form")]
    InvalidBookmarkId {
        /// The text given, rendered readably and shortened.
        value: KeyDisplay,
    },
}

/// Result alias used throughout `cache-layout`.
pub type Result<T, E = LayoutError> = std::result::Result<T, E>;
