//! The cache root this run works on: its resolution, its tags, and opening them.
//!
//! A tag exists when `<root>/<tag>/` is a directory (not a symlink) whose name is a valid tag and
//! which holds a `cache.redb`. Reading commands use [`CacheRoot::open_existing`], which refuses a
//! tag that does not exist instead of creating it; only `set` creates.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use cache_compilation::{
    COMPILATION_TAG, CompilationCache, CompilationOptions, DEFAULT_MAX_SIZE_BYTES,
};
use cache_core::{
    CacheOptions, CacheStrategy, CacheTtlConfig, Coordinator, DATABASE_FILE_NAME, Environment,
    SharedCache, Tag, UserCacheConfig, prepare_root, resolve_cache_root,
};

use crate::exit::NotFound;

/// A resolved cache root and the coordinator that opens its tags.
pub(crate) struct CacheRoot {
    path: PathBuf,
    coordinator: Coordinator,
    /// `--timeout`: the longest wait for another process's lock on a tag's file.
    timeout: Duration,
}

impl CacheRoot {
    /// `explicit` (`--root`), else `GLOVEBOX_CACHE_PATH`, `$XDG_CACHE_HOME/glovebox`, or the
    /// platform cache directory: `cache_core::resolve_cache_root`, as every program uses. Every
    /// tag is opened with `timeout` as its lock timeout.
    pub(crate) fn resolve(explicit: Option<&Path>, timeout: Duration) -> anyhow::Result<Self> {
        let path = resolve_cache_root(explicit, &Environment::process())
            .context("while finding the cache root")?;
        tracing::debug!(root = %path.display(), "cache root");
        // The kill switches (`GLOVEBOX_CACHE_GLOBAL`, `GLOVEBOX_CACHE_<TAG>`) tell programs not to
        // use the cache; this tool manages the files whatever they say, so its coordinator reads
        // an empty environment instead of the process's.
        let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]));
        Ok(CacheRoot {
            path,
            coordinator,
            timeout,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The longest wait for another process's lock on a tag's file (`--timeout`).
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The options tags are opened with: cache-core's defaults, with this run's timeout. A
    /// command that needs another setting changes it on top of these.
    pub(crate) fn options(&self) -> CacheOptions {
        CacheOptions {
            timeout: self.timeout,
            ..CacheOptions::default()
        }
    }

    /// The options `tag` is opened with: [`CacheRoot::options`], and for the `compilation` tag
    /// its own size limit (`cache_compilation::DEFAULT_MAX_SIZE_BYTES`: real workspaces are
    /// several GiB). Every open of one tag in a run must agree, or the coordinator refuses.
    pub(crate) fn options_for(&self, tag: &Tag) -> CacheOptions {
        let options = self.options();
        if tag.as_str() == COMPILATION_TAG {
            CacheOptions {
                max_size_bytes: DEFAULT_MAX_SIZE_BYTES,
                ..options
            }
        } else {
            options
        }
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
    pub(crate) fn open_existing(&self, tag: &Tag) -> anyhow::Result<SharedCache> {
        self.require_tag(tag)?;
        self.open(tag, self.options_for(tag))
    }

    /// Opens `tag`, creating the root and the tag if needed.
    pub(crate) fn open(&self, tag: &Tag, options: CacheOptions) -> anyhow::Result<SharedCache> {
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
    /// with the TTLs every program uses (`GLOVEBOX_CACHE_TTL_<LEVEL>` overrides honoured).
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
        let mut cache_options = self.options_for(&tag);
        if let Some(max_size_bytes) = max_size_bytes {
            cache_options.max_size_bytes = max_size_bytes;
        }
        let ttls = CacheTtlConfig::from_env(&Environment::process())
            .context("while reading the TTL overrides (GLOVEBOX_CACHE_TTL_*)")?;
        let config = UserCacheConfig {
            cache_path: Some(self.path.clone()),
            strategy: CacheStrategy::Shared,
            options: cache_options,
            ttls,
        };
        CompilationCache::open_with_options(&self.coordinator, &config, options).with_context(
            || {
                format!(
                    "while opening tag '{COMPILATION_TAG}' under {}",
                    self.path.display()
                )
            },
        )
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
