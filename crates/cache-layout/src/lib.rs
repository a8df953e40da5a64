//! `cache-layout`: processed layouts, layout comparisons and bookmarks, kept in the shared
//! cache's `layout` tag.
//!
//! # Overview
//!
//! - [`LayoutCache`] is the service: `get`/`put`/`get_or_*` for processed layouts
//!   ([`get_or_process`](LayoutCache::get_or_process)), comparisons
//!   ([`get_or_compare`](LayoutCache::get_or_compare)) and bookmarks. [`LayoutCache::open`]
//!   takes a [`cache_core::Coordinator`] and a [`cache_core::UserCacheConfig`];
//!   [`create_layout_cache_service`] does the same on the process-wide default coordinator. Both
//!   use the config's root, strategy, and TTLs.
//! - Processed layouts and comparisons are keyed by an [`InputHash`] (the content hash of the
//!   inputs, in order) plus the processing version, so a new version of the processing never
//!   reads an old result. Bookmarks are keyed by [`BookmarkId`] (a UUID).
//! - Values are generic: anything implementing [`LayoutValue`] (`String` for JSON text,
//!   `Vec<u8>` for bytes, or your own serde struct with a kind name and schema version).
//! - The typed keys are [`ProcessedLayoutKey`] (7 days), [`LayoutComparisonKey`] (3 days) and
//!   [`BookmarkKey`] (30 days); the TTLs are the config's
//!   [`layout_*` levels](crate::ttl).
//!
//! # Example
//!
//! ```
//! use cache_core::{Coordinator, UserCacheConfig};
//! use cache_layout::{InputHash, LayoutCache, LayoutError};
//!
//! # fn main() -> Result<(), LayoutError> {
//! let root = tempfile::tempdir().expect("temp dir");
//! let config = UserCacheConfig { cache_path: Some(root.path().to_owned()), ..UserCacheConfig::default() };
//! let layouts = LayoutCache::open(&Coordinator::new(), &config)?;
//!
//! let layout_json = br#"{"keyboard": "glove80", "layers": []}"#;
//! let input = InputHash::of([layout_json.as_slice()]);
//! let mut runs = 0;
//! for _ in 0..2 {
//!     let keymap: String = layouts.get_or_process(&input, "processing-v1", || {
//!         runs += 1;
//!         Ok::<_, LayoutError>("/ { keymap { ... }; };".to_owned())
//!     })?;
//!     assert!(keymap.starts_with("/ {"));
//! }
//! assert_eq!(runs, 1, "the second call is a cache hit");
//! assert_eq!(layouts.get_processed::<String>(&input, "processing-v2")?, None);
//! # Ok(())
//! # }
//! ```

mod error;
mod keys;
mod service;
pub mod ttl;

pub use error::{LayoutError, Result};
pub use keys::{
    BookmarkId, BookmarkKey, InputHash, LAYOUT_TAG, LayoutComparisonKey, LayoutValue,
    ProcessedLayoutKey, REMOTE_SHARING,
};
pub use service::{LayoutCache, create_layout_cache_service};
