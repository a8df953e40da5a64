//! What the services of one `CompilationCache` share: `CompilationOptions` (the settings that
//! are not TTLs) and `Context` (cache, TTLs, clock, options, size limit). The services
//! (`workspace.rs`, `build.rs`, `docker.rs`) hold a `Context`; `service.rs` builds it. Nothing
//! here knows the services, so the crate's modules form a DAG.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cache_core::{Cache, CacheError, CacheTtlConfig, Clock, KeyDisplay};

use crate::error::{CompilationError, Result};
use crate::keys::COMPILATION_TAG;
use crate::metadata::time_from_ms;
use crate::tree::GitHandling;

/// The size limit the `compilation` tag should be opened with (16 GiB), where the program
/// chooses per tag (`glovebox-cache` does; `CacheOptions::max_size_bytes` is the core's
/// all-tag default of 2 GiB).
///
/// Why 16 GiB: a full ZMK west workspace with Zephyr, the HALs ZMK's manifest pulls and their
/// git histories is 3 to 6 GiB (issue 19 measured a trimmed one at 358 MB with five `.git`
/// directories; Zephyr's own history alone is over 1 GiB, and a HAL such as hal_stm32 or
/// hal_nxp adds one or two more), and until file-level deduplication lands a repository-level
/// and a branch-level copy of it cost twice. 16 GiB holds both copies of one such workspace
/// plus one more repository's, and years of firmware builds (megabytes each), without
/// evicting a workspace the next build needs. It stays bounded, and `min_free_space` keeps
/// the cache from filling a small disk whatever the limit.
pub const DEFAULT_MAX_SIZE_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// Settings of the compilation services that are not TTLs (those come from the config's
/// [`CacheTtlConfig`]). Build with `CompilationOptions::default()` and struct update syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompilationOptions {
    /// What happens to `.git` directories on every way a workspace goes into the cache.
    /// Default [`GitHandling::Keep`].
    pub git: GitHandling,
    /// Whether a workspace hit restarts the workspace's time to live. Default `false`: a
    /// workspace expires its TTL after it was stored, however often it is used, so that a
    /// workspace in daily use is still refreshed (the original reset the TTL on every hit, so a
    /// workspace in use never expired: its defect 6). When `true`, a hit re-stores the entry
    /// with hard links to the same files (no copy), which restarts its TTL.
    pub extend_ttl_on_hit: bool,
    /// How long a docker image check is kept. Default 1 hour, as the original. Not a level of
    /// [`CacheTtlConfig`], which holds the original's configurable levels only; the original
    /// hard-coded this one.
    pub docker_image_check_ttl: Duration,
    /// Whether a workspace may hold symlinks that point outside it (absolute, or `..` beyond
    /// its top). Default `false`: such a workspace is refused on every way in (cache, inject,
    /// import of a directory or an archive) with an error naming the link, since a restored
    /// workspace would depend on, or expose, whatever the link points at on this machine.
    pub allow_escaping_symlinks: bool,
}

impl Default for CompilationOptions {
    fn default() -> Self {
        CompilationOptions {
            git: GitHandling::default(),
            extend_ttl_on_hit: false,
            docker_image_check_ttl: Duration::from_secs(60 * 60),
            allow_escaping_symlinks: false,
        }
    }
}

/// What every service of one [`CompilationCache`] shares.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) cache: Cache,
    pub(crate) ttls: CacheTtlConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) options: CompilationOptions,
    pub(crate) max_size_bytes: u64,
}

impl Context {
    /// Now, by the cache's clock.
    pub(crate) fn now(&self) -> SystemTime {
        time_from_ms(self.clock.now_ms())
    }

    /// Refuses, before anything is copied, content that cannot fit in the tag's size limit even
    /// alone (the store would refuse it after the copy), saying how to raise the limit, and
    /// content the disk has no room for under `min_free_space`.
    pub(crate) fn check_fits(&self, what: &dyn Fn() -> String, bytes: u64) -> Result<()> {
        if bytes > self.max_size_bytes {
            return Err(CompilationError::OverSizeLimit {
                tag: COMPILATION_TAG.to_owned(),
                what: what(),
                bytes,
                limit: self.max_size_bytes,
            });
        }
        // The copy must not take the disk below `min_free_space` by more than evicting the
        // whole tag would give back (a smaller shortfall is made up by the store's eviction).
        let stats = self.cache.get_stats()?;
        if let (Some(space), Some(min_free_bytes)) = (stats.filesystem, stats.min_free_bytes) {
            let shortfall = bytes
                .saturating_add(min_free_bytes)
                .saturating_sub(space.free_bytes);
            if shortfall > stats.disk_bytes {
                return Err(CompilationError::NoDiskRoom {
                    tag: COMPILATION_TAG.to_owned(),
                    what: what(),
                    bytes,
                    free_bytes: space.free_bytes,
                    min_free_bytes,
                    tag_bytes: stats.disk_bytes,
                });
            }
        }
        Ok(())
    }

    /// The store's own refusal of a value over the limit (what the filesystem allocates can
    /// pass it when the content did not) as [`CompilationError::OverSizeLimit`], which says how
    /// to raise the limit; other errors as they are.
    pub(crate) fn explain_refusal(
        &self,
        what: &dyn Fn() -> String,
        err: CacheError,
    ) -> CompilationError {
        match err {
            CacheError::ValueTooLarge { len, .. } => CompilationError::OverSizeLimit {
                tag: COMPILATION_TAG.to_owned(),
                what: what(),
                bytes: len,
                limit: self.max_size_bytes,
            },
            other => other.into(),
        }
    }

    /// The live keys of the tag that start with `prefix`, sorted.
    pub(crate) fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut keys: Vec<Vec<u8>> = self
            .cache
            .keys()?
            .into_iter()
            .filter(|key| key.starts_with(prefix))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Removes an entry that cannot be used, saying why.
    pub(crate) fn discard(&self, key: &[u8], reason: &str) -> Result<()> {
        tracing::warn!(tag = COMPILATION_TAG, key = %KeyDisplay::new(key), reason, "removing an unusable cache entry");
        self.delete_now(&[key])?;
        Ok(())
    }

    /// Removes `keys` and commits at once, so that the directories they own are gone when this
    /// returns (a plain delete is group-committed, and a directory goes after the commit that
    /// drops its entry); how many live entries there were.
    pub(crate) fn delete_now(&self, keys: &[&[u8]]) -> Result<usize> {
        let removed = self.cache.delete_many(keys)?;
        if removed > 0 {
            self.cache.flush()?;
        }
        Ok(removed)
    }

    /// When `key` was last read and when it expires, from the store.
    pub(crate) fn entry_times(
        &self,
        key: &[u8],
    ) -> Result<(Option<SystemTime>, Option<SystemTime>)> {
        Ok(self.cache.get_metadata(key)?.map_or((None, None), |entry| {
            (entry.last_accessed, entry.expires_at)
        }))
    }
}
