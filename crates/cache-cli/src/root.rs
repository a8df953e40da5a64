//! The cache root this run works on: its resolution, its tags, and opening them.
//!
//! A tag exists when `<root>/<tag>/` is a directory (not a symlink) whose name is a valid tag and
//! which holds a `cache.redb`. Reading commands use [`CacheRoot::open_existing`], which refuses a
//! tag that does not exist instead of creating it; only `set` creates.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use cache_compilation::{
    COMPILATION_TAG, CompilationCache, CompilationOptions, DEFAULT_MAX_SIZE_BYTES,
};
use cache_core::{
    Cache, CacheOptions, CacheStrategy, ConfigOrigin, ConfigSetting, Coordinator,
    DATABASE_FILE_NAME, Environment, ExplainedConfig, RemoteStore as _, RootFiles, Tag,
    UserCacheConfig, prepare_root, resolve_cache_root,
};
use cache_metrics::{METRICS_TAG, MetricsCache};

use cache_remote::{Remote, RemoteConfig};

use crate::exit::{NotFound, UsageError};

/// A resolved cache root, the configuration it was found with, and the coordinator that opens
/// its tags.
pub(crate) struct CacheRoot {
    path: PathBuf,
    coordinator: Coordinator,
    /// The user's configuration (file and environment), with `--timeout` applied.
    config: UserCacheConfig,
    /// The file looked for, whether it was there, and every effective setting with its origin
    /// (`--root` and `--timeout` included), for `glovebox-cache config`.
    explained: Explained,
    /// The remote tier `GLOVEBOX_CACHE_REMOTE` configures, attached to `coordinator`.
    remote: Option<Arc<Remote>>,
}

/// The configuration as `glovebox-cache config` shows it.
pub(crate) struct Explained {
    pub(crate) file: Option<PathBuf>,
    pub(crate) file_found: bool,
    pub(crate) settings: Vec<ConfigSetting>,
}

/// What the command line adds on top of the configuration file and the environment.
pub(crate) struct RootRequest<'a> {
    /// `--root`.
    pub(crate) root: Option<&'a Path>,
    /// `--config`.
    pub(crate) config_file: Option<&'a Path>,
    /// `--timeout`.
    pub(crate) timeout: Option<Duration>,
}

impl CacheRoot {
    /// Loads the configuration (`--config`, else `$GLOVEBOX_CACHE_CONFIG`, else the XDG config
    /// file; then the environment's overrides) and resolves the root: `--root`, else
    /// `GLOVEBOX_CACHE_PATH`, else the file's `root`, else `$XDG_CACHE_HOME/glovebox` or the
    /// platform cache directory. `--timeout`, when given, beats the file's timeouts.
    pub(crate) fn resolve(request: &RootRequest<'_>) -> anyhow::Result<Self> {
        let environment = Environment::process();
        let ExplainedConfig {
            mut config,
            file,
            file_found,
            mut settings,
        } = UserCacheConfig::load_explained(request.config_file, &environment)
            .context("while reading the configuration")?;
        let command_line = |option: &str| ConfigOrigin::CommandLine {
            option: option.to_owned(),
        };
        if let Some(timeout) = request.timeout {
            config.options.timeout = timeout;
            for settings in config.tags.values_mut() {
                settings.timeout = None;
            }
            settings.retain(|setting| {
                !(setting.key.starts_with("tags.") && setting.key.ends_with(".timeout"))
            });
            for setting in &mut settings {
                if setting.key == "defaults.timeout" {
                    setting.value = format!("{}s", timeout.as_secs());
                    setting.origin = command_line("--timeout");
                }
            }
        }
        let path = match request.root {
            Some(root) => resolve_cache_root(Some(root), &environment),
            None => config.cache_root(&environment),
        }
        .context("while finding the cache root")?;
        tracing::debug!(root = %path.display(), "cache root");
        // The kill switches (`GLOVEBOX_CACHE_GLOBAL`, `GLOVEBOX_CACHE_<TAG>`) and the strategy
        // tell programs not to use the cache; this tool manages the files whatever they say, so
        // its coordinator reads an empty environment instead of the process's.
        let mut coordinator =
            Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
        // The remote tier, as every program using the cache reads it (`GLOVEBOX_CACHE_REMOTE`).
        // A remote setting that cannot work is bad input (exit 2), like a bad config file.
        let remote = RemoteConfig::from_sources(config.remote.as_ref(), &Environment::process())
            .and_then(|remote| {
                remote
                    .map(|mut remote| {
                        // A run makes a remote call or two: with a breaker that waits for three
                        // failures in a row, no run would ever open it, and every run would pay
                        // its connect timeout. One failure opens it, and its hint file tells the
                        // runs that follow to skip the endpoint for the open period.
                        remote.breaker_failures = 1;
                        Remote::new(remote)
                    })
                    .transpose()
            })
            .map_err(|err| UsageError(format!("the remote cache's settings: {err}")))?
            .map(Arc::new);
        if let Some(remote) = &remote {
            // The breaker hint under the root, read before the first remote call (`remote
            // status` makes one without opening a tag). A root that does not exist has none.
            match RootFiles::open_existing(&path) {
                Ok(Some(root)) => remote.attach_root(&root),
                Ok(None) => {}
                Err(err) => tracing::debug!(error = %format!("{err:#}"), "no breaker hint"),
            }
            // What may leave the machine, as each domain declares it (docs/remote.md).
            coordinator = coordinator
                .with_remote(Arc::clone(remote) as Arc<dyn cache_core::RemoteStore>)
                .with_sharing(cache_compilation::REMOTE_SHARING)
                .with_sharing(cache_metrics::REMOTE_SHARING)
                .with_sharing(cache_layout::REMOTE_SHARING)
                .with_sharing(cache_moergo::REMOTE_SHARING);
        }
        if request.root.is_some() {
            for setting in &mut settings {
                if setting.key == "root" {
                    setting.value = path.display().to_string();
                    setting.origin = command_line("--root");
                }
            }
        }
        config.cache_path = Some(path.clone());
        config.strategy = CacheStrategy::Shared;
        Ok(CacheRoot {
            path,
            coordinator,
            config,
            explained: Explained {
                file,
                file_found,
                settings,
            },
            remote,
        })
    }

    /// The remote tier this run uses, if one is configured.
    pub(crate) fn remote(&self) -> Option<&Remote> {
        self.remote.as_deref()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The effective configuration and where each setting came from.
    pub(crate) fn explained(&self) -> &Explained {
        &self.explained
    }

    /// The longest wait for another process's lock on a tag's file: `--timeout`, else the
    /// file's `[defaults] timeout`, else 30 s.
    pub(crate) fn timeout(&self) -> Duration {
        self.config.options.timeout
    }

    /// The options `tag` is opened with: the configuration's (its `[defaults]` and
    /// `[tags.<tag>]`), with this run's timeout. A command that needs another setting changes it
    /// on top of these. Every command opens a tag with these, so that two openings in one run
    /// agree (the coordinator refuses differing options for one tag).
    ///
    /// The `compilation` tag's size limit is the domain's own default
    /// (`cache_compilation::DEFAULT_MAX_SIZE_BYTES`: real workspaces are several GiB) unless the
    /// configuration sets one, for the tag or in `[defaults]` (a `[defaults]` limit equal to the
    /// built-in default reads as not set).
    pub(crate) fn options(&self, tag: &Tag) -> CacheOptions {
        let mut options = CacheOptions {
            enabled: true,
            ..self.config.options_for(Some(tag.as_str()))
        };
        let configured = self
            .config
            .tags
            .get(tag.as_str())
            .is_some_and(|settings| settings.max_size_bytes.is_some())
            || self.config.options.max_size_bytes != CacheOptions::default().max_size_bytes;
        if tag.as_str() == COMPILATION_TAG && !configured {
            options.max_size_bytes = DEFAULT_MAX_SIZE_BYTES;
        }
        options
    }

    /// Whether the root exists; an error if something that is not a directory is in its place.
    pub(crate) fn exists(&self) -> anyhow::Result<bool> {
        match fs::metadata(&self.path) {
            Ok(meta) if meta.is_dir() => Ok(true),
            Ok(_) => bail!("cache root {} is not a directory", self.path.display()),
            Err(err) if err.kind() == ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err)
                .with_context(|| format!("while reading the cache root {}", self.path.display())),
        }
    }

    /// The root's tags, sorted; none when the root does not exist.
    pub(crate) fn tags(&self) -> anyhow::Result<Vec<Tag>> {
        if !self.exists()? {
            return Ok(Vec::new());
        }
        let listing_context = || format!("while listing the tags in {}", self.path.display());
        let mut tags = Vec::new();
        for entry in fs::read_dir(&self.path).with_context(listing_context)? {
            let entry = entry.with_context(listing_context)?;
            let Some(tag) = entry
                .file_name()
                .to_str()
                .and_then(|name| Tag::new(name).ok())
            else {
                continue;
            };
            let directory = entry.path();
            let is_real_directory = fs::symlink_metadata(&directory)
                .is_ok_and(|meta| meta.is_dir() && !meta.file_type().is_symlink());
            if is_real_directory && fs::symlink_metadata(directory.join(DATABASE_FILE_NAME)).is_ok()
            {
                tags.push(tag);
            }
        }
        tags.sort();
        Ok(tags)
    }

    /// `Ok` if `tag` exists, else [`NotFound`] naming the tag and the root.
    pub(crate) fn require_tag(&self, tag: &Tag) -> anyhow::Result<()> {
        if !self.exists()? {
            return Err(NotFound(format!(
                "no such tag '{tag}': the cache root {} does not exist",
                self.path.display()
            ))
            .into());
        }
        if !self.tags()?.contains(tag) {
            return Err(
                NotFound(format!("no such tag '{tag}' under {}", self.path.display())).into(),
            );
        }
        Ok(())
    }

    /// Opens a tag that exists, with [`CacheRoot::options`]; never creates one.
    pub(crate) fn open_existing(&self, tag: &Tag) -> anyhow::Result<Cache> {
        self.require_tag(tag)?;
        self.open(tag, self.options(tag))
    }

    /// Opens `tag`, creating the root and the tag if needed.
    pub(crate) fn open(&self, tag: &Tag, options: CacheOptions) -> anyhow::Result<Cache> {
        self.exists()?;
        self.coordinator
            .get_shared_cache_instance(&self.path, tag.as_str(), options)
            .with_context(|| format!("while opening tag '{tag}' under {}", self.path.display()))
    }

    /// Whether the `compilation` tag (where workspaces live) exists; reading workspace commands
    /// ask before [`CacheRoot::compilation`], which would create it.
    pub(crate) fn has_compilation_tag(&self) -> anyhow::Result<bool> {
        Ok(self
            .tags()?
            .iter()
            .any(|tag| tag.as_str() == COMPILATION_TAG))
    }

    /// The compilation domain's services over this root's `compilation` tag, creating the root
    /// and the tag if needed. Opened through this run's coordinator with [`CacheRoot::options`],
    /// so the instance is the one [`CacheRoot::open_existing`] gives (`show` uses both), and
    /// with the TTLs every program uses (the file's `[ttl]`, `GLOVEBOX_CACHE_TTL_<LEVEL>`).
    pub(crate) fn compilation(&self) -> anyhow::Result<CompilationCache> {
        self.compilation_with(CompilationOptions::default(), None)
    }

    /// [`CacheRoot::compilation`] with the services' `options` (`--allow-escaping-symlinks`)
    /// and, if given, another size limit for the tag (`--max-size`).
    pub(crate) fn compilation_with(
        &self,
        options: CompilationOptions,
        max_size_bytes: Option<u64>,
    ) -> anyhow::Result<CompilationCache> {
        self.exists()?;
        let tag = Tag::new(COMPILATION_TAG).context("while naming the compilation tag")?;
        let mut config = self.config.clone();
        config.options = self.options(&tag);
        if let Some(max_size_bytes) = max_size_bytes {
            config.options.max_size_bytes = max_size_bytes;
        }
        // The tag's own settings are in `config.options` already; `--max-size` must beat them.
        config.tags.remove(COMPILATION_TAG);
        CompilationCache::open_with_options(&self.coordinator, &config, options).with_context(
            || {
                format!(
                    "while opening tag '{COMPILATION_TAG}' under {}",
                    self.path.display()
                )
            },
        )
    }

    /// Whether the `metrics` tag exists; reading metrics commands ask before
    /// [`CacheRoot::metrics`], which would create it.
    pub(crate) fn has_metrics_tag(&self) -> anyhow::Result<bool> {
        Ok(self.tags()?.iter().any(|tag| tag.as_str() == METRICS_TAG))
    }

    /// The metrics domain's service over this root's `metrics` tag (created if needed), through
    /// this run's coordinator with [`CacheRoot::options`] and the TTLs every program uses.
    pub(crate) fn metrics(&self) -> anyhow::Result<MetricsCache> {
        self.exists()?;
        MetricsCache::open(&self.coordinator, &self.config).with_context(|| {
            format!(
                "while opening tag '{METRICS_TAG}' under {}",
                self.path.display()
            )
        })
    }

    /// The canonical path of an existing root (what `cache_core::diagnose_tag` takes).
    pub(crate) fn canonical(&self) -> anyhow::Result<PathBuf> {
        prepare_root(&self.path)
            .with_context(|| format!("while resolving the cache root {}", self.path.display()))
    }

    /// Flushes and closes every tag this run opened: its writes are durable when this returns.
    pub(crate) fn close(&self) -> anyhow::Result<()> {
        self.coordinator.reset().with_context(|| {
            format!(
                "while writing changes to the cache files under {}",
                self.path.display()
            )
        })
    }
}
