//! The coordinator: one shared instance per (canonical root, tag), and the process-wide default
//! coordinator behind the free functions that mirror the original's API.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};

use crate::cache::Cache;
use crate::config::{CacheOptions, CacheStrategy, UserCacheConfig};
use crate::env::Environment;
use crate::error::{CacheError, ErrorChain, Result};
use crate::files::prepare_root;
use crate::remote::{RemoteStore, SharingPolicy, SharingRule};
use crate::root_files::RootFiles;
use crate::stats::AggregatedStats;
use crate::store::RedbCache;
use crate::tag::Tag;
use crate::values::CleanupReport;

/// Hands out one shared cache instance per `(canonical root, tag)`.
///
/// Same pair: handles on the same store ([`Cache::same_instance`]). Different tag: a different, isolated instance.
/// Thread-safe: the registry is behind a mutex held across the open, so two threads asking for a
/// new pair at once get one instance (the original had no lock: its defect 8). A second request
/// for a registered pair with different options is an error naming the setting, never silently
/// ignored.
///
/// redb allows one handle per database file per process, so a process should use one
/// coordinator; [`default_coordinator`] is that one for applications. Tests make their own, with
/// a temp root, so no test touches the user's cache and none needs a global reset.
pub struct Coordinator {
    environment: Environment,
    registry: Mutex<HashMap<String, Arc<RedbCache>>>,
    /// The remote tier every instance this coordinator opens reads through and publishes to.
    remote: Option<Arc<dyn RemoteStore>>,
    /// Which tags and keys may go through the remote.
    sharing: SharingPolicy,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("instances", &self.instance_keys())
            .finish_non_exhaustive()
    }
}

impl Default for Coordinator {
    fn default() -> Self {
        Self::new()
    }
}

impl Coordinator {
    /// A coordinator that reads the process environment (kill switches, `GLOVEBOX_CACHE_PATH`...).
    pub fn new() -> Self {
        Self::with_environment(Environment::process())
    }

    /// A coordinator that reads `environment` instead of the process's.
    pub fn with_environment(environment: Environment) -> Self {
        Coordinator {
            environment,
            registry: Mutex::new(HashMap::new()),
            remote: None,
            sharing: SharingPolicy::default(),
        }
    }

    /// This coordinator, with a remote tier that every instance it opens from now on consults
    /// on a local miss and publishes its commits to (see [`RemoteStore`]). Set it before the
    /// first instance is opened: instances already open keep what they had.
    #[must_use]
    pub fn with_remote(mut self, remote: Arc<dyn RemoteStore>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// This coordinator, with `rules` added to its sharing policy: entries they keep local are
    /// never fetched from, published to, or leased on the remote tier. Domain crates declare
    /// their rules (as a constant named `REMOTE_SHARING`, by convention); the longest matching key
    /// prefix decides, and what no rule matches is shared. Set before the first open.
    #[must_use]
    pub fn with_sharing(mut self, rules: &[SharingRule]) -> Self {
        self.sharing.add(rules);
        self
    }

    /// The environment this coordinator reads.
    pub fn environment(&self) -> &Environment {
        &self.environment
    }

    fn registry(&self) -> MutexGuard<'_, HashMap<String, Arc<RedbCache>>> {
        // Registry updates are single inserts/removes: a panic elsewhere cannot leave it torn.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shared instance of `(root, tag)`, opening it on first use; a disabled [`Cache`] (never
    /// registered) when `options.enabled` is false or a kill switch disables the tag.
    pub fn get_shared_cache_instance<'t>(
        &self,
        root: &Path,
        tag: impl Into<Option<&'t str>>,
        options: CacheOptions,
    ) -> Result<Cache> {
        let tag = Tag::from_option(tag.into())?;
        options.validate()?;
        if !options.enabled || self.environment.kill_switch_disables(&tag) {
            tracing::debug!(%tag, "cache disabled by configuration or kill switch");
            return Ok(Cache::disabled(tag));
        }
        let canonical_root = prepare_root(root)?;
        let key = format!("{}:{}", canonical_root.display(), tag);
        let mut registry = self.registry();
        if let Some(existing) = registry.get(&key) {
            if !existing.is_closed() {
                if let Some((setting, registered, requested)) =
                    existing.options().first_difference(&options)
                {
                    return Err(CacheError::SettingsConflict {
                        key,
                        setting,
                        registered,
                        requested,
                    });
                }
                return Ok(Cache::stored(existing.clone()));
            }
            registry.remove(&key);
        }
        let cache = RedbCache::open(&canonical_root, tag, options)?;
        if let Some(remote) = &self.remote {
            cache.attach_remote(Arc::clone(remote), self.sharing.clone());
            // The root, for the files the remote keeps there (its breaker hint).
            match RootFiles::open_existing(&canonical_root) {
                Ok(Some(root)) => remote.attach_root(&root),
                Ok(None) => {}
                Err(err) => {
                    tracing::debug!(error = %ErrorChain(&err), "the remote tier gets no root files");
                }
            }
        }
        registry.insert(key, cache.clone());
        Ok(Cache::stored(cache))
    }

    /// The instance of `tag` under the cache root, strategy and options that the user's
    /// configuration file and the environment configure ([`UserCacheConfig::load_from`] with
    /// this coordinator's environment: `GLOVEBOX_CACHE_CONFIG`, `GLOVEBOX_CACHE_PATH`,
    /// `XDG_CACHE_HOME`, `HOME`, `GLOVEBOX_CACHE_STRATEGY`, ...).
    pub fn create_default_cache<'t>(&self, tag: impl Into<Option<&'t str>>) -> Result<Cache> {
        let config = UserCacheConfig::load_from(None, &self.environment)?;
        self.create_cache_from_user_config(&config, tag)
    }

    /// The instance of `tag` for a user configuration. Every domain factory goes through here, so
    /// all of them agree on the root.
    pub fn create_cache_from_user_config<'t>(
        &self,
        config: &UserCacheConfig,
        tag: impl Into<Option<&'t str>>,
    ) -> Result<Cache> {
        let tag = tag.into();
        let root = config.cache_root(&self.environment)?;
        let mut options = config.options_for(tag);
        options.enabled &= config.strategy == CacheStrategy::Shared;
        self.get_shared_cache_instance(&root, tag, options)
    }

    /// Flushes and closes every instance and empties the registry. Never deletes data (the
    /// original's reset deleted the cache directory: its defect 10). Every instance is closed
    /// even if one fails; the first failure is returned. With a remote tier, each close also
    /// waits (bounded by the instance's `timeout`) for its uploads ([`Cache::close`]).
    pub fn reset(&self) -> Result<()> {
        let drained: Vec<(String, Arc<RedbCache>)> = self.registry().drain().collect();
        let mut first_error = None;
        for (key, cache) in drained {
            if let Err(err) = Cache::stored(cache).close() {
                // The first failure is returned (the caller reports it); later ones are logged,
                // or nobody would hear of them.
                if first_error.is_some() {
                    tracing::warn!(key, error = %ErrorChain(&err), "closing cache instance during reset failed");
                } else {
                    first_error = Some(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// How many instances are registered.
    pub fn instance_count(&self) -> usize {
        self.registry().len()
    }

    /// The registry keys, `"{canonical root}:{tag}"`, sorted.
    pub fn instance_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.registry().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn instances(&self) -> Vec<(String, Arc<RedbCache>)> {
        let mut instances: Vec<_> = self
            .registry()
            .iter()
            .map(|(key, cache)| (key.clone(), cache.clone()))
            .collect();
        instances.sort_by(|a, b| a.0.cmp(&b.0));
        instances
    }

    /// Runs `cleanup()` on every registered instance; the outcome per registry key.
    pub fn cleanup_all(&self) -> BTreeMap<String, Result<CleanupReport>> {
        self.instances()
            .into_iter()
            .map(|(key, cache)| (key, cache.cleanup()))
            .collect()
    }

    /// Statistics of every registered instance: totals, overall hit rate, per-instance breakdown.
    pub fn aggregated_stats(&self) -> Result<AggregatedStats> {
        let mut aggregated = AggregatedStats::default();
        for (key, cache) in self.instances() {
            aggregated.add(key, cache.get_stats()?);
        }
        Ok(aggregated)
    }
}

static DEFAULT_COORDINATOR: LazyLock<Coordinator> = LazyLock::new(Coordinator::new);

/// The process-wide coordinator used by the free functions.
pub fn default_coordinator() -> &'static Coordinator {
    &DEFAULT_COORDINATOR
}

/// [`Coordinator::get_shared_cache_instance`] on the default coordinator.
pub fn get_shared_cache_instance<'t>(
    root: &Path,
    tag: impl Into<Option<&'t str>>,
    options: CacheOptions,
) -> Result<Cache> {
    default_coordinator().get_shared_cache_instance(root, tag, options)
}

/// [`Coordinator::create_default_cache`] on the default coordinator.
pub fn create_default_cache<'t>(tag: impl Into<Option<&'t str>>) -> Result<Cache> {
    default_coordinator().create_default_cache(tag)
}

/// [`Coordinator::create_cache_from_user_config`] on the default coordinator.
pub fn create_cache_from_user_config<'t>(
    config: &UserCacheConfig,
    tag: impl Into<Option<&'t str>>,
) -> Result<Cache> {
    default_coordinator().create_cache_from_user_config(config, tag)
}

/// [`Coordinator::reset`] on the default coordinator.
pub fn reset_shared_cache_instances() -> Result<()> {
    default_coordinator().reset()
}

/// [`Coordinator::instance_count`] on the default coordinator.
pub fn get_cache_instance_count() -> usize {
    default_coordinator().instance_count()
}

/// [`Coordinator::instance_keys`] on the default coordinator.
pub fn get_cache_instance_keys() -> Vec<String> {
    default_coordinator().instance_keys()
}

/// [`Coordinator::cleanup_all`] on the default coordinator.
pub fn cleanup_shared_cache_instances() -> BTreeMap<String, Result<CleanupReport>> {
    default_coordinator().cleanup_all()
}

/// [`Coordinator::aggregated_stats`] on the default coordinator.
pub fn get_aggregated_cache_stats() -> Result<AggregatedStats> {
    default_coordinator().aggregated_stats()
}
