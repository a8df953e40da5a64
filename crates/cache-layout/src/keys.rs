//! The typed keys of the `layout` tag: processed layouts and comparisons by the content hash of
//! their inputs plus the processing version, bookmarks by UUID; and what a value must declare.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use cache_core::{CacheTtlConfig, KeyDisplay, keys};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{LayoutError, Result};

/// The tag every layout entry lives in.
pub const LAYOUT_TAG: &str = "layout";

/// A type that can be cached as a processed layout, a comparison or a bookmark.
///
/// Implemented for `String` (JSON, or any text) and `Vec<u8>` (bytes); implement it for your
/// own serde structs. `KIND` is part of every key, so values of two types never share an entry;
/// `SCHEMA_VERSION` is recorded with each entry, so bump it when the type changes shape and
/// older entries read as misses instead of decoding into a wrong value.
///
/// Values go through the cache's codec (bincode 2), which is not self-describing: a struct with
/// `#[serde(flatten)]`, `#[serde(untagged)]` or a `serde_json::Value` inside does not decode.
/// Store such data as JSON text (`String`) instead.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use cache_layout::LayoutValue;
///
/// #[derive(Serialize, Deserialize)]
/// struct KeymapDiff { added: Vec<String>, removed: Vec<String> }
///
/// impl LayoutValue for KeymapDiff {
///     const KIND: &'static str = "keymap-diff";
///     const SCHEMA_VERSION: u32 = 1;
/// }
/// ```
pub trait LayoutValue: Serialize + DeserializeOwned {
    /// A name for the type, unique among the types cached in the `layout` tag.
    const KIND: &'static str;
    /// The version of the type's shape.
    const SCHEMA_VERSION: u32;
}

impl LayoutValue for String {
    const KIND: &'static str = "text";
    const SCHEMA_VERSION: u32 = 1;
}

impl LayoutValue for Vec<u8> {
    const KIND: &'static str = "bytes";
    const SCHEMA_VERSION: u32 = 1;
}

/// The content hash of a step's inputs (a layout file, or two layouts to compare, plus any
/// options that change the result), in order.
///
/// Inputs are hashed as length-prefixed parts (`cache_core::keys::from_parts`), so `["ab", "c"]`
/// and `["a", "bc"]` differ, and so do `[a, b]` and `[b, a]`: a comparison of A with B is not a
/// comparison of B with A.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InputHash(String);

impl InputHash {
    /// The hash of `inputs`, in order.
    pub fn of<P: AsRef<[u8]>>(inputs: impl IntoIterator<Item = P>) -> Self {
        InputHash(keys::from_parts(inputs))
    }

    /// The hash as 64 lower-case hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of a bookmark: a UUID, held in its canonical lower-case hyphenated form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BookmarkId(String);

impl BookmarkId {
    /// Parses `text` (a UUID in the 8-4-4-4-12 hex form, any case).
    pub fn parse(text: &str) -> Result<Self> {
        keys::canonical_uuid(text)
            .map(BookmarkId)
            .ok_or_else(|| LayoutError::InvalidBookmarkId {
                value: KeyDisplay::new(text.as_bytes()),
            })
    }

    /// The canonical text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BookmarkId {
    type Err = LayoutError;

    fn from_str(text: &str) -> Result<Self> {
        BookmarkId::parse(text)
    }
}

impl fmt::Display for BookmarkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Declares one key type generic over its value: its identifying fields, the readable prefix of
/// its key bytes, and the parts hashed after the prefix. The constructors are written out below,
/// since each picks its own TTL level.
macro_rules! layout_key {
    (
        $(#[$doc:meta])*
        $name:ident { $($field:ident: $type:ty),* }, prefix $prefix:literal,
        parts |$key:ident| $parts:expr
    ) => {
        $(#[$doc])*
        pub struct $name<V> {
            $($field: $type,)*
            ttl: Duration,
            value: PhantomData<fn() -> V>,
        }

        impl<V> Clone for $name<V> {
            fn clone(&self) -> Self {
                $name { $($field: self.$field.clone(),)* ttl: self.ttl, value: PhantomData }
            }
        }

        impl<V> fmt::Debug for $name<V> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    $(.field(stringify!($field), &self.$field))*
                    .field("ttl", &self.ttl)
                    .finish()
            }
        }

        cache_core::impl_prefixed_key!(impl[V: LayoutValue] for $name<V> {
            value: V,
            tag: LAYOUT_TAG,
            schema_version: V::SCHEMA_VERSION,
            prefix: $prefix,
            parts: |$key| $parts,
        });
    };
}

layout_key!(
    /// The key of a processed layout: the content hash of its inputs and the version of the
    /// processing, with the TTL of [`layout_processing`](crate::ttl::LAYOUT_PROCESSING) (7 days).
    ///
    /// Key bytes: `processed:` + `from_parts(["layout", "processed", V::KIND, version, input hash])`.
    ProcessedLayoutKey { input: InputHash, processing_version: String },
    prefix b"processed:",
    parts |key| ["layout", "processed", V::KIND, &key.processing_version, key.input.as_str()]
);

layout_key!(
    /// The key of a layout comparison: the content hash of the compared inputs (in order) and
    /// the version of the comparison, with the TTL of [`layout_comparison`](crate::ttl::LAYOUT_COMPARISON)
    /// (3 days).
    ///
    /// Key bytes: `comparison:` + `from_parts(["layout", "comparison", V::KIND, version, input hash])`.
    LayoutComparisonKey { input: InputHash, processing_version: String },
    prefix b"comparison:",
    parts |key| ["layout", "comparison", V::KIND, &key.processing_version, key.input.as_str()]
);

layout_key!(
    /// The key of a bookmark, by its UUID, with the TTL of
    /// [`layout_bookmarks`](crate::ttl::LAYOUT_BOOKMARKS) (30 days).
    ///
    /// Key bytes: `bookmark:` + `from_parts(["layout", "bookmark", V::KIND, uuid])`.
    BookmarkKey { id: BookmarkId },
    prefix b"bookmark:",
    parts |key| ["layout", "bookmark", V::KIND, key.id.as_str()]
);

impl<V> ProcessedLayoutKey<V> {
    /// The key of the result of processing `input` with `processing_version`.
    pub fn new(input: &InputHash, processing_version: &str, ttls: &CacheTtlConfig) -> Self {
        ProcessedLayoutKey {
            input: input.clone(),
            processing_version: processing_version.to_owned(),
            ttl: ttls.get(&crate::ttl::LAYOUT_PROCESSING),
            value: PhantomData,
        }
    }
}

impl<V> LayoutComparisonKey<V> {
    /// The key of the comparison of `input` (the compared layouts, in order) made with
    /// `processing_version`.
    pub fn new(input: &InputHash, processing_version: &str, ttls: &CacheTtlConfig) -> Self {
        LayoutComparisonKey {
            input: input.clone(),
            processing_version: processing_version.to_owned(),
            ttl: ttls.get(&crate::ttl::LAYOUT_COMPARISON),
            value: PhantomData,
        }
    }
}

impl<V> BookmarkKey<V> {
    /// The key of bookmark `id`.
    pub fn new(id: &BookmarkId, ttls: &CacheTtlConfig) -> Self {
        BookmarkKey {
            id: id.clone(),
            ttl: ttls.get(&crate::ttl::LAYOUT_BOOKMARKS),
            value: PhantomData,
        }
    }
}

/// What of the `layout` tag may go through a remote tier (`cache_core::SharingRule`): processed
/// layouts and comparisons are functions of their inputs and are shared; bookmarks are a user's
/// own.
pub const REMOTE_SHARING: &[cache_core::SharingRule] = &[cache_core::SharingRule {
    tag: LAYOUT_TAG,
    key_prefix: "bookmark:",
    share: false,
    reason: "a bookmark is one user's",
}];
