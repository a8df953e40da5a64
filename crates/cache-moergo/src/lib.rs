//! `cache-moergo`: MoErgo API responses and firmware downloads, kept in the shared cache's
//! `moergo` tag. Never tokens or credentials.
//!
//! # Overview
//!
//! - [`MoergoCache`] is the service: layout config and meta by [`LayoutUuid`] (30 days), public
//!   layout lists by [`PublicLayoutTags`] (10 minutes; 2 hours when the set includes
//!   `glove80-standard`), firmware versions per board (12 hours) and firmware downloads as bytes
//!   (30 days). [`MoergoCache::open`] takes a [`cache_core::Coordinator`] and a
//!   [`cache_core::UserCacheConfig`]; [`create_moergo_cache_service`] does the same on the
//!   process-wide default coordinator. Both use the config's root, strategy, and TTLs (the
//!   `moergo_*` levels of [`ttl`]).
//! - API responses are kept as JSON text in an [`ApiDocument`], which refuses any document
//!   holding credentials.
//! - The typed keys are [`LayoutConfigKey`], [`LayoutMetaKey`], [`PublicLayoutsKey`],
//!   [`FirmwareVersionsKey`] and [`FirmwareDownloadKey`].
//!
//! # Example
//!
//! ```
//! use cache_core::{Coordinator, UserCacheConfig};
//! use cache_moergo::{ApiDocument, LayoutUuid, MoergoCache, PublicLayoutTags};
//!
//! # fn main() -> Result<(), cache_moergo::MoergoError> {
//! let root = tempfile::tempdir().expect("temp dir");
//! let config = UserCacheConfig { cache_path: Some(root.path().to_owned()), ..UserCacheConfig::default() };
//! let moergo = MoergoCache::open(&Coordinator::new(), &config)?;
//!
//! let uuid = LayoutUuid::parse("8f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b")?;
//! moergo.put_layout_meta(&uuid, &ApiDocument::new(r#"{"title": "Daily driver", "tags": ["glove80-standard"]}"#)?)?;
//! assert!(moergo.get_layout_meta(&uuid)?.is_some());
//!
//! // Tag sets are sorted and deduplicated: these are one list.
//! let tags = PublicLayoutTags::new(["glove80-standard", "colemak", "colemak"])?;
//! moergo.put_public_layouts(&tags, &[uuid.clone()])?;
//! let same = PublicLayoutTags::new(["colemak", "glove80-standard"])?;
//! assert_eq!(moergo.get_public_layouts(&same)?, Some(vec![uuid]));
//!
//! moergo.put_firmware_download("/firmware/abc.uf2.gz", b"UF2\n...")?;
//! assert_eq!(moergo.get_firmware_download("/firmware/abc.uf2.gz")?, Some(b"UF2\n...".to_vec()));
//! # Ok(())
//! # }
//! ```
//!
//! # Credentials are never cached
//!
//! The original promised this by convention; here the types make it so:
//!
//! - No key type exists for tokens, credentials or user information: the tag holds only the five
//!   kinds of entry above, each bound by [`cache_core::CacheKey`] to one value type.
//! - Every value type is plain data: [`ApiDocument`] (JSON text that [`ApiDocument::new`] and
//!   its decoding check for credential-named fields and token-shaped strings),
//!   `Vec<`[`LayoutUuid`]`>`, `Vec<`[`FirmwareVersion`]`>` (short plain names), and firmware
//!   bytes. [`MoergoCache`] exposes no generic `put` and not the raw byte cache.
//! - A firmware location, which may be a signed URL, is hashed into its key at construction and
//!   never kept.
//!
//! What remains possible is outside this crate: any code holding a coordinator can open the
//! `moergo` tag's raw byte API, as it can any tag's.
//!
//! Storing a layout config compiles:
//!
//! ```
//! # use cache_moergo::{ApiDocument, LayoutUuid, MoergoCache, MoergoError};
//! #[derive(serde::Serialize)]
//! struct AuthResponse { access_token: String, refresh_token: String, id_token: String }
//!
//! fn cache_layout(moergo: &MoergoCache, uuid: &LayoutUuid, _auth: &AuthResponse) -> Result<(), MoergoError> {
//!     moergo.put_layout_config(uuid, &ApiDocument::new(r#"{"layers": []}"#)?)
//! }
//! ```
//!
//! while storing an authentication response, the same code with the response in place of the
//! document, does not (there is no method or key that takes one):
//!
//! ```compile_fail,E0308
//! # use cache_moergo::{ApiDocument, LayoutUuid, MoergoCache, MoergoError};
//! #[derive(serde::Serialize)]
//! struct AuthResponse { access_token: String, refresh_token: String, id_token: String }
//!
//! fn cache_layout(moergo: &MoergoCache, uuid: &LayoutUuid, auth: &AuthResponse) -> Result<(), MoergoError> {
//!     moergo.put_layout_config(uuid, auth)
//! }
//! ```
//!
//! and serialising it to JSON first is refused at run time:
//!
//! ```
//! # use cache_moergo::{ApiDocument, MoergoError};
//! let auth = r#"{"AccessToken": "...", "RefreshToken": "...", "IdToken": "...", "ExpiresIn": 3600}"#;
//! assert!(matches!(ApiDocument::new(auth), Err(MoergoError::CredentialsRefused { .. })));
//! ```

mod error;
mod keys;
mod service;
pub mod ttl;
mod values;

pub use error::{MoergoError, Result};
pub use keys::{
    FirmwareDownloadKey, FirmwareVersionsKey, LayoutConfigKey, LayoutMetaKey, MOERGO_TAG,
    PublicLayoutsKey, REMOTE_SHARING,
};
pub use service::{MoergoCache, create_moergo_cache_service};
pub use values::{
    ApiDocument, FirmwareImage, FirmwareVersion, GLOVE80_STANDARD_TAG, LayoutUuid, PublicLayoutTags,
};
