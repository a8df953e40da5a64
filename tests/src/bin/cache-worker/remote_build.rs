//! `remote-build ROOT MARKERS TARGET`: one machine of a fleet asking for the same firmware
//! build (`BuildService::get_or_build`) with the remote tier its environment configures
//! (`GLOVEBOX_CACHE_REMOTE` and the other variables of `docs/remote.md`: a redis-server, or
//! the split setup's Redis and S3), as `glovebox-cache` would. Its build,
//! if it runs, creates `MARKERS/built-<pid>`, waits (bounded, against a hang only) until
//! `MARKERS/go` exists, then leaves `zephyr/zmk.uf2` in its scratch directory. Prints `uf2
//! <hex blake3 of TARGET/zephyr/zmk.uf2>` and `computations N`, exits 0; exits 1 with the error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cache_compilation::CompilationCache;
use cache_core::{CacheOptions, Coordinator, Environment, RemoteStore, UserCacheConfig};

/// Waits until `path` exists, bounded only against a hang.
fn until_exists(path: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("{} never appeared", path.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

pub(crate) fn remote_build(args: &[String]) -> anyhow::Result<()> {
    let [root, markers, target] = args else {
        bail!("usage: cache-worker remote-build ROOT MARKERS TARGET");
    };
    let markers = PathBuf::from(markers);
    let remote = cache_remote::Remote::from_environment(&Environment::process())
        .context("while configuring the remote")?
        .context("GLOVEBOX_CACHE_REMOTE is not set: a fleet's machine needs a remote")?;
    let coordinator = Coordinator::new()
        .with_remote(Arc::new(remote) as Arc<dyn RemoteStore>)
        .with_sharing(cache_compilation::REMOTE_SHARING);
    let config = UserCacheConfig {
        cache_path: Some(PathBuf::from(root)),
        options: CacheOptions {
            // Waiting for the other machine's build is bounded by this: far above what the
            // test's build takes on a busy machine.
            timeout: Duration::from_secs(120),
            ..CacheOptions::default()
        },
        ..UserCacheConfig::default()
    };
    let compilation =
        CompilationCache::open(&coordinator, &config).context("while opening the cache")?;
    let pid = std::process::id();
    let built = compilation.builds.get_or_build(
        &cache_tests::fleet_build_inputs(),
        Path::new(target),
        |scratch: &Path| -> anyhow::Result<()> {
            std::fs::write(markers.join(format!("built-{pid}")), b"")
                .context("while marking the build")?;
            until_exists(&markers.join("go"))?;
            std::fs::create_dir_all(scratch.join("zephyr"))?;
            std::fs::write(
                scratch.join("zephyr/zmk.uf2"),
                format!("firmware built by {pid}"),
            )?;
            Ok(())
        },
        &mut |_| {},
    )?;
    if built.is_none() {
        bail!("the cache is disabled");
    }
    let uf2 = std::fs::read(Path::new(target).join("zephyr/zmk.uf2"))
        .context("while reading the restored firmware")?;
    let computations = compilation
        .cache
        .get_stats()
        .context("while reading statistics")?
        .counters
        .computations;
    coordinator.reset().context("while closing")?;
    crate::report(format_args!("uf2 {}", blake3::hash(&uf2).to_hex()))?;
    crate::report(format_args!("computations {computations}"))
}
