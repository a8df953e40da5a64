//! `LayoutCache`, the layout domain's service over the `layout` tag, and its factories.

use cache_core::{
    Cache, CacheError, CacheKey, CacheTtlConfig, Coordinator, UserCacheConfig, default_coordinator,
};

use crate::error::Result;
use crate::keys::{
    BookmarkId, BookmarkKey, InputHash, LAYOUT_TAG, LayoutComparisonKey, LayoutValue,
    ProcessedLayoutKey,
};

/// Processed layouts, layout comparisons and bookmarks in the shared `layout` tag.
///
/// Every method is generic over the value type ([`LayoutValue`]): JSON text as `String`, bytes
/// as `Vec<u8>`, or a serde struct of your own. The type is part of the key, so asking for a
/// `String` never returns what was stored as a struct. TTLs come from the config the service was
/// opened with ([`layout_processing`](crate::ttl::LAYOUT_PROCESSING), [`layout_comparison`](crate::ttl::LAYOUT_COMPARISON),
/// [`layout_bookmarks`](crate::ttl::LAYOUT_BOOKMARKS)). Cheap to clone; clones share the instance.
#[derive(Clone, Debug)]
pub struct LayoutCache {
    cache: Cache,
    ttls: CacheTtlConfig,
}

/// The layout service on the process-wide default coordinator: the root, strategy, options and
/// TTLs all come from `config`.
pub fn create_layout_cache_service(config: &UserCacheConfig) -> Result<LayoutCache> {
    LayoutCache::open(default_coordinator(), config)
}

impl LayoutCache {
    /// The layout service over `coordinator`'s shared instance of the `layout` tag under
    /// `config`'s root (a disabled cache when `config` or a kill switch disables it).
    pub fn open(coordinator: &Coordinator, config: &UserCacheConfig) -> Result<Self> {
        Ok(LayoutCache {
            cache: coordinator.create_cache_from_user_config(config, LAYOUT_TAG)?,
            ttls: config.ttls.clone(),
        })
    }

    /// The shared instance underneath, for statistics, `flush`, `clear` and the like.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The key of the processed layout of `input` at `processing_version`, under this service's
    /// TTLs.
    pub fn processed_key<V: LayoutValue>(
        &self,
        input: &InputHash,
        processing_version: &str,
    ) -> ProcessedLayoutKey<V> {
        ProcessedLayoutKey::new(input, processing_version, &self.ttls)
    }

    /// The key of the comparison of `input` at `processing_version`, under this service's TTLs.
    pub fn comparison_key<V: LayoutValue>(
        &self,
        input: &InputHash,
        processing_version: &str,
    ) -> LayoutComparisonKey<V> {
        LayoutComparisonKey::new(input, processing_version, &self.ttls)
    }

    /// The key of bookmark `id`, under this service's TTLs.
    pub fn bookmark_key<V: LayoutValue>(&self, id: &BookmarkId) -> BookmarkKey<V> {
        BookmarkKey::new(id, &self.ttls)
    }

    /// The processed layout of `input` at `processing_version`, if cached.
    pub fn get_processed<V: LayoutValue>(
        &self,
        input: &InputHash,
        processing_version: &str,
    ) -> Result<Option<V>> {
        Ok(self
            .cache
            .get_typed(&self.processed_key::<V>(input, processing_version))?)
    }

    /// Caches the processed layout of `input` at `processing_version`.
    pub fn put_processed<V: LayoutValue>(
        &self,
        input: &InputHash,
        processing_version: &str,
        value: &V,
    ) -> Result<()> {
        Ok(self
            .cache
            .set_typed(&self.processed_key::<V>(input, processing_version), value)?)
    }

    /// The cached processed layout, or `process`'s result, which is then cached. A failure to
    /// cache is logged, not returned: the value is what the caller asked for.
    pub fn get_or_process<V, E, F>(
        &self,
        input: &InputHash,
        processing_version: &str,
        process: F,
    ) -> std::result::Result<V, E>
    where
        V: LayoutValue,
        E: From<CacheError>,
        F: FnOnce() -> std::result::Result<V, E>,
    {
        self.cache
            .get_or_insert_with(&self.processed_key::<V>(input, processing_version), process)
    }

    /// The comparison of `input` at `processing_version`, if cached.
    pub fn get_comparison<V: LayoutValue>(
        &self,
        input: &InputHash,
        processing_version: &str,
    ) -> Result<Option<V>> {
        Ok(self
            .cache
            .get_typed(&self.comparison_key::<V>(input, processing_version))?)
    }

    /// Caches the comparison of `input` at `processing_version`.
    pub fn put_comparison<V: LayoutValue>(
        &self,
        input: &InputHash,
        processing_version: &str,
        value: &V,
    ) -> Result<()> {
        Ok(self
            .cache
            .set_typed(&self.comparison_key::<V>(input, processing_version), value)?)
    }

    /// The cached comparison, or `compare`'s result, which is then cached.
    pub fn get_or_compare<V, E, F>(
        &self,
        input: &InputHash,
        processing_version: &str,
        compare: F,
    ) -> std::result::Result<V, E>
    where
        V: LayoutValue,
        E: From<CacheError>,
        F: FnOnce() -> std::result::Result<V, E>,
    {
        self.cache.get_or_insert_with(
            &self.comparison_key::<V>(input, processing_version),
            compare,
        )
    }

    /// Bookmark `id`, if cached.
    pub fn get_bookmark<V: LayoutValue>(&self, id: &BookmarkId) -> Result<Option<V>> {
        Ok(self.cache.get_typed(&self.bookmark_key::<V>(id))?)
    }

    /// Caches bookmark `id`.
    pub fn put_bookmark<V: LayoutValue>(&self, id: &BookmarkId, value: &V) -> Result<()> {
        Ok(self.cache.set_typed(&self.bookmark_key::<V>(id), value)?)
    }

    /// Removes bookmark `id` (stored as a `V`); whether it existed.
    pub fn delete_bookmark<V: LayoutValue>(&self, id: &BookmarkId) -> Result<bool> {
        Ok(self.cache.delete(&self.bookmark_key::<V>(id).key_bytes())?)
    }
}
