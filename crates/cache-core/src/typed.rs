//! Typed keys: the `CacheKey` trait a domain implements per key type. The typed operations
//! (`get_typed`, `set_typed`, `get_or_insert_with`, `get_or_compute_typed`) are the handle's, in
//! `cache/typed.rs`.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One kind of key of a domain: which tag it lives in, the type of its values, their schema
/// version, its default time to live, and its bytes.
///
/// Bump `SCHEMA_VERSION` whenever `Value` changes shape: entries written under another version
/// then read as misses (and are removed) instead of decoding into a wrong value.
///
/// ```
/// use std::time::Duration;
/// use cache_core::CacheKey;
///
/// struct ThumbnailKey { content_hash: String }
///
/// impl CacheKey for ThumbnailKey {
///     type Value = String;
///     const TAG: &'static str = "thumbnails";
///     const SCHEMA_VERSION: u32 = 1;
///     fn default_ttl(&self) -> Option<Duration> { Some(Duration::from_secs(7 * 24 * 3600)) }
///     fn key_bytes(&self) -> Vec<u8> { format!("thumb:{}", self.content_hash).into_bytes() }
/// }
/// ```
pub trait CacheKey {
    /// The type stored under keys of this kind.
    type Value: Serialize + DeserializeOwned;
    /// The tag these keys belong to; using them with another tag's instance is an error.
    const TAG: &'static str;
    /// The version of `Value`'s shape.
    const SCHEMA_VERSION: u32;
    /// The time to live of a value stored with [`crate::Cache::set_typed`]; `None` never expires.
    fn default_ttl(&self) -> Option<Duration>;
    /// The key's bytes within the tag.
    fn key_bytes(&self) -> Vec<u8>;
}
