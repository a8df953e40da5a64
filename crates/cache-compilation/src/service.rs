//! `CompilationCache`: the factory's result (the tag's shared instance and the three services
//! over it), the options they share, and the context every service holds.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cache_core::{
    CacheError, CacheTtlConfig, CleanupReport, Clock, Coordinator, KeyDisplay, SharedCache,
    UserCacheConfig, default_coordinator,
};

use crate::build::BuildService;
use crate::docker::DockerImageCache;
use crate::error::{CompilationError, Result};
use crate::keys::COMPILATION_TAG;
use crate::metadata::time_from_ms;
use crate::tree::GitHandling;
use crate::workspace::WorkspaceService;

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
}

impl Default for CompilationOptions {
    fn default() -> Self {
        CompilationOptions {
            git: GitHandling::default(),
            extend_ttl_on_hit: false,
            docker_image_check_ttl: Duration::from_secs(60 * 60),
        }
    }
}

/// The compilation domain's cache: the `compilation` tag's shared instance and the services over
/// it. Cheap to clone; every clone uses the same instance.
#[derive(Clone, Debug)]
pub struct CompilationCache {
    /// The shared instance of the `compilation` tag, for statistics, `flush`, `clear`.
    pub cache: SharedCache,
    /// ZMK west workspaces by repository and branch.
    pub workspaces: WorkspaceService,
    /// Firmware build artifacts by build inputs.
    pub builds: BuildService,
    /// Docker image availability checks.
    pub docker_images: DockerImageCache,
}

/// The compilation cache on the process-wide default coordinator: root, strategy, options and
/// TTLs all from `config`, default [`CompilationOptions`].
pub fn create_compilation_cache_service(config: &UserCacheConfig) -> Result<CompilationCache> {
    CompilationCache::open(default_coordinator(), config)
}

impl CompilationCache {
    /// The compilation cache over `coordinator`'s instance of the `compilation` tag under
    /// `config`'s root (a disabled cache when `config` or a kill switch disables it), with
    /// default [`CompilationOptions`].
    pub fn open(coordinator: &Coordinator, config: &UserCacheConfig) -> Result<Self> {
        CompilationCache::open_with_options(coordinator, config, CompilationOptions::default())
    }

    /// [`CompilationCache::open`] with `options`.
    pub fn open_with_options(
        coordinator: &Coordinator,
        config: &UserCacheConfig,
        options: CompilationOptions,
    ) -> Result<Self> {
        if options.docker_image_check_ttl.is_zero() {
            return Err(CompilationError::InvalidInput {
                what: "docker_image_check_ttl",
                reason: "a time to live must be more than zero".to_owned(),
            });
        }
        let cache = coordinator.create_cache_from_user_config(config, COMPILATION_TAG)?;
        let context = Arc::new(Context {
            cache: cache.clone(),
            ttls: config.ttls.clone(),
            clock: config.options.clock.clone(),
            options,
            max_size_bytes: config.options.max_size_bytes,
        });
        Ok(CompilationCache {
            cache,
            workspaces: WorkspaceService::new(context.clone()),
            builds: BuildService::new(context.clone()),
            docker_images: DockerImageCache::new(context),
        })
    }

    /// Runs the tag's cleanup: expired entries go with their directories, entries whose
    /// directory is missing go, orphan directories go, the tag is brought under its size limit.
    pub fn cleanup(&self) -> Result<CleanupReport> {
        Ok(self.cache.cleanup()?)
    }
}

/// What every service of one [`CompilationCache`] shares.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) cache: SharedCache,
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
    /// alone (the store would refuse it after the copy).
    pub(crate) fn check_fits(&self, key: &[u8], bytes: u64) -> Result<()> {
        if bytes > self.max_size_bytes {
            return Err(CacheError::ValueTooLarge {
                tag: COMPILATION_TAG.to_owned(),
                key: KeyDisplay::new(key),
                len: bytes,
                max: self.max_size_bytes,
            }
            .into());
        }
        Ok(())
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
