//! The typed keys of the `moergo` tag. There is one per kind of API response the tag may hold,
//! and deliberately none for tokens, credentials or user data: see the crate docs.

use std::time::Duration;

use cache_core::{CacheTtlConfig, KeyDisplay, keys};

use crate::error::{MoergoError, Result};
use crate::values::{
    ApiDocument, FirmwareImage, FirmwareVersion, LayoutUuid, PublicLayoutTags, check_identifier,
};

/// The tag every MoErgo entry lives in.
pub const MOERGO_TAG: &str = "moergo";

/// Declares a key type: its fields, value type, readable prefix and the parts hashed after it.
macro_rules! moergo_key {
    (
        $(#[$doc:meta])*
        $name:ident { $($field:ident: $type:ty),* } => $value:ty,
        prefix $prefix:literal, parts |$key:ident| $parts:expr
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name {
            $($field: $type,)*
            ttl: Duration,
        }

        cache_core::impl_prefixed_key!(impl for $name {
            value: $value,
            tag: MOERGO_TAG,
            schema_version: 1,
            prefix: $prefix,
            parts: |$key| $parts,
        });
    };
}

moergo_key!(
    /// A layout's config by layout UUID, with the TTL of
    /// [`moergo_layout_config`](crate::ttl::MOERGO_LAYOUT_CONFIG) (30 days: a layout is immutable per UUID).
    ///
    /// Key bytes: `layout-config:` + `from_parts(["moergo", "layout-config", uuid])`.
    LayoutConfigKey { uuid: LayoutUuid } => ApiDocument,
    prefix b"layout-config:", parts |key| ["moergo", "layout-config", key.uuid.as_str()]
);

moergo_key!(
    /// A layout's meta by layout UUID, with the TTL of
    /// [`moergo_layout_config`](crate::ttl::MOERGO_LAYOUT_CONFIG) (30 days).
    ///
    /// Key bytes: `layout-meta:` + `from_parts(["moergo", "layout-meta", uuid])`.
    LayoutMetaKey { uuid: LayoutUuid } => ApiDocument,
    prefix b"layout-meta:", parts |key| ["moergo", "layout-meta", key.uuid.as_str()]
);

moergo_key!(
    /// The public layout list for a tag set, with the TTL of
    /// [`moergo_public_layouts`](crate::ttl::MOERGO_PUBLIC_LAYOUTS) (10 minutes), or of
    /// [`moergo_public_layouts_standard`](crate::ttl::MOERGO_PUBLIC_LAYOUTS_STANDARD) (2 hours) when the set includes
    /// `glove80-standard`.
    ///
    /// Key bytes: `public-layouts:` + `from_parts(["moergo", "public-layouts", tags...])`, the
    /// tags sorted and deduplicated, each its own length-prefixed part (the original joined them
    /// with `,`, so a tag containing a comma collided with two tags).
    PublicLayoutsKey { tags: PublicLayoutTags } => Vec<LayoutUuid>,
    prefix b"public-layouts:",
    parts |key| ["moergo", "public-layouts"].into_iter().chain(key.tags.iter())
);

moergo_key!(
    /// The firmware versions the API offers for a board, with the TTL of
    /// [`moergo_versions`](crate::ttl::MOERGO_VERSIONS) (12 hours).
    ///
    /// Key bytes: `firmware-versions:` + `from_parts(["moergo", "firmware-versions", board])`.
    FirmwareVersionsKey { board: String } => Vec<FirmwareVersion>,
    prefix b"firmware-versions:", parts |key| ["moergo", "firmware-versions", key.board.as_str()]
);

moergo_key!(
    /// A downloaded firmware image by the location the compile response gave, with the TTL of
    /// [`moergo_firmware_downloads`](crate::ttl::MOERGO_FIRMWARE_DOWNLOADS) (30 days: a build is immutable). The
    /// location may be a signed URL, so the key holds only its hash, from construction on: it
    /// is never stored, logged or printed by `Debug`.
    ///
    /// Key bytes: `firmware-download:` +
    /// `from_parts(["moergo", "firmware-download", from_parts([location])])`.
    FirmwareDownloadKey { location_hash: String } => FirmwareImage,
    prefix b"firmware-download:",
    parts |key| ["moergo", "firmware-download", key.location_hash.as_str()]
);

impl LayoutConfigKey {
    /// The key of `uuid`'s config.
    pub fn new(uuid: &LayoutUuid, ttls: &CacheTtlConfig) -> Self {
        LayoutConfigKey {
            uuid: uuid.clone(),
            ttl: ttls.get(&crate::ttl::MOERGO_LAYOUT_CONFIG),
        }
    }
}

impl LayoutMetaKey {
    /// The key of `uuid`'s meta.
    pub fn new(uuid: &LayoutUuid, ttls: &CacheTtlConfig) -> Self {
        LayoutMetaKey {
            uuid: uuid.clone(),
            ttl: ttls.get(&crate::ttl::MOERGO_LAYOUT_CONFIG),
        }
    }
}

impl PublicLayoutsKey {
    /// The key of the public layout list for `tags`; its TTL depends on whether they include
    /// `glove80-standard`.
    pub fn new(tags: &PublicLayoutTags, ttls: &CacheTtlConfig) -> Self {
        let ttl = if tags.includes_glove80_standard() {
            ttls.get(&crate::ttl::MOERGO_PUBLIC_LAYOUTS_STANDARD)
        } else {
            ttls.get(&crate::ttl::MOERGO_PUBLIC_LAYOUTS)
        };
        PublicLayoutsKey {
            tags: tags.clone(),
            ttl,
        }
    }
}

impl FirmwareVersionsKey {
    /// The key of the firmware versions for `board` (1 to 64 of `A-Z a-z 0-9 . _ -`).
    pub fn new(board: &str, ttls: &CacheTtlConfig) -> Result<Self> {
        check_identifier("board", board)?;
        Ok(FirmwareVersionsKey {
            board: board.to_owned(),
            ttl: ttls.get(&crate::ttl::MOERGO_VERSIONS),
        })
    }
}

impl FirmwareDownloadKey {
    /// The key of the firmware downloaded from `location` (not empty).
    pub fn new(location: &str, ttls: &CacheTtlConfig) -> Result<Self> {
        if location.is_empty() {
            return Err(MoergoError::InvalidIdentifier {
                what: "firmware location",
                value: KeyDisplay::new(b""),
                reason: "a firmware location is never empty",
            });
        }
        Ok(FirmwareDownloadKey {
            location_hash: keys::from_parts([location]),
            ttl: ttls.get(&crate::ttl::MOERGO_FIRMWARE_DOWNLOADS),
        })
    }
}

/// What of the `moergo` tag may go through a remote tier (`cache_core::SharingRule`): public
/// layouts and firmware versions are the same for everyone and are shared; a user's layouts and
/// firmware, fetched with their credentials, are theirs.
pub const REMOTE_SHARING: &[cache_core::SharingRule] = &[
    cache_core::SharingRule {
        tag: MOERGO_TAG,
        key_prefix: "layout-config:",
        share: false,
        reason: "a user's layout, fetched with their credentials",
    },
    cache_core::SharingRule {
        tag: MOERGO_TAG,
        key_prefix: "layout-meta:",
        share: false,
        reason: "a user's layout, fetched with their credentials",
    },
    cache_core::SharingRule {
        tag: MOERGO_TAG,
        key_prefix: "firmware-download:",
        share: false,
        reason: "a user's firmware, built from their layout and fetched with their credentials",
    },
];
