//! `CompilationCache`: the factory's result (the tag's shared instance and the three services
//! over it). The options and the context the services share are in `context.rs`, below the
//! services, so that no module of this crate depends on one that depends on it.

use std::sync::Arc;

use cache_core::{Cache, CleanupReport, Coordinator, UserCacheConfig, default_coordinator};

use crate::build::BuildService;
use crate::context::{CompilationOptions, Context};
use crate::docker::DockerImageCache;
use crate::error::{CompilationError, Result};
use crate::keys::COMPILATION_TAG;
use crate::workspace::WorkspaceService;

/// The compilation domain's cache: the `compilation` tag's shared instance and the services over
/// it. Cheap to clone; every clone uses the same instance.
#[derive(Clone, Debug)]
pub struct CompilationCache {
    /// The shared instance of the `compilation` tag, for statistics, `flush`, `clear`.
    pub cache: Cache,
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
            // The tag's own limit when the config file sets one (`[tags.compilation]`).
            max_size_bytes: config.options_for(Some(COMPILATION_TAG)).max_size_bytes,
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
