//! `MoergoCache`, the MoErgo domain's service over the `moergo` tag, and its factories.

use std::path::Path;

use cache_core::{
    Cache, CacheStats, CacheTtlConfig, Coordinator, UserCacheConfig, default_coordinator,
};

use crate::error::Result;
use crate::keys::{
    FirmwareDownloadKey, FirmwareVersionsKey, LayoutConfigKey, LayoutMetaKey, MOERGO_TAG,
    PublicLayoutsKey,
};
use crate::values::{ApiDocument, FirmwareImage, FirmwareVersion, LayoutUuid, PublicLayoutTags};

/// MoErgo API responses and firmware downloads in the shared `moergo` tag.
///
/// Every method takes a concrete, plain-data type: [`ApiDocument`] (screened for credentials),
/// [`LayoutUuid`]s, [`FirmwareVersion`]s, firmware bytes. There is no generic `put` and no
/// access to the raw byte API, so nothing shaped like an authentication response can be stored
/// through this service. TTLs come from the config the service was opened with. Cheap to clone;
/// clones share the instance.
#[derive(Clone, Debug)]
pub struct MoergoCache {
    cache: Cache,
    ttls: CacheTtlConfig,
}

/// The MoErgo service on the process-wide default coordinator: the root, strategy, options and
/// TTLs all come from `config`.
pub fn create_moergo_cache_service(config: &UserCacheConfig) -> Result<MoergoCache> {
    MoergoCache::open(default_coordinator(), config)
}

impl MoergoCache {
    /// The MoErgo service over `coordinator`'s shared instance of the `moergo` tag under
    /// `config`'s root (a disabled cache when `config` or a kill switch disables it).
    pub fn open(coordinator: &Coordinator, config: &UserCacheConfig) -> Result<Self> {
        Ok(MoergoCache {
            cache: coordinator.create_cache_from_user_config(config, MOERGO_TAG)?,
            ttls: config.ttls.clone(),
        })
    }

    /// The config of layout `uuid`, if cached.
    pub fn get_layout_config(&self, uuid: &LayoutUuid) -> Result<Option<ApiDocument>> {
        Ok(self
            .cache
            .get_typed(&LayoutConfigKey::new(uuid, &self.ttls))?)
    }

    /// Caches the config of layout `uuid`.
    pub fn put_layout_config(&self, uuid: &LayoutUuid, config: &ApiDocument) -> Result<()> {
        Ok(self
            .cache
            .set_typed(&LayoutConfigKey::new(uuid, &self.ttls), config)?)
    }

    /// The meta of layout `uuid`, if cached.
    pub fn get_layout_meta(&self, uuid: &LayoutUuid) -> Result<Option<ApiDocument>> {
        Ok(self
            .cache
            .get_typed(&LayoutMetaKey::new(uuid, &self.ttls))?)
    }

    /// Caches the meta of layout `uuid`.
    pub fn put_layout_meta(&self, uuid: &LayoutUuid, meta: &ApiDocument) -> Result<()> {
        Ok(self
            .cache
            .set_typed(&LayoutMetaKey::new(uuid, &self.ttls), meta)?)
    }

    /// The public layout list for `tags`, if cached.
    pub fn get_public_layouts(&self, tags: &PublicLayoutTags) -> Result<Option<Vec<LayoutUuid>>> {
        Ok(self
            .cache
            .get_typed(&PublicLayoutsKey::new(tags, &self.ttls))?)
    }

    /// Caches the public layout list for `tags` (10 minutes; 2 hours with `glove80-standard`).
    pub fn put_public_layouts(
        &self,
        tags: &PublicLayoutTags,
        layouts: &[LayoutUuid],
    ) -> Result<()> {
        Ok(self
            .cache
            .set_typed(&PublicLayoutsKey::new(tags, &self.ttls), &layouts.to_vec())?)
    }

    /// The firmware versions offered for `board`, if cached.
    pub fn get_firmware_versions(&self, board: &str) -> Result<Option<Vec<FirmwareVersion>>> {
        Ok(self
            .cache
            .get_typed(&FirmwareVersionsKey::new(board, &self.ttls)?)?)
    }

    /// Caches the firmware versions offered for `board`.
    pub fn put_firmware_versions(&self, board: &str, versions: &[FirmwareVersion]) -> Result<()> {
        Ok(self.cache.set_typed(
            &FirmwareVersionsKey::new(board, &self.ttls)?,
            &versions.to_vec(),
        )?)
    }

    /// The firmware downloaded from `location`, if cached.
    pub fn get_firmware_download(&self, location: &str) -> Result<Option<Vec<u8>>> {
        let image = self
            .cache
            .get_typed(&FirmwareDownloadKey::new(location, &self.ttls)?)?;
        Ok(image.map(FirmwareImage::into_bytes))
    }

    /// Caches the firmware downloaded from `location` (already decompressed).
    pub fn put_firmware_download(&self, location: &str, firmware: &[u8]) -> Result<()> {
        Ok(self.cache.set_typed(
            &FirmwareDownloadKey::new(location, &self.ttls)?,
            &FirmwareImage::new(firmware.to_vec()),
        )?)
    }

    /// Whether the tag stores anything (`false` when disabled by config or a kill switch).
    pub fn is_enabled(&self) -> bool {
        self.cache.is_enabled()
    }

    /// The tag's statistics.
    pub fn stats(&self) -> Result<CacheStats> {
        Ok(self.cache.get_stats()?)
    }

    /// Removes every entry of the `moergo` tag (and no other tag's).
    pub fn clear(&self) -> Result<()> {
        Ok(self.cache.clear()?)
    }

    /// Makes everything written so far durable and visible to other processes.
    pub fn flush(&self) -> Result<()> {
        Ok(self.cache.flush()?)
    }

    /// The tag's database file, if enabled.
    pub fn database_path(&self) -> Option<&Path> {
        self.cache.database_path()
    }
}
