//! The remote tier against a real `redis-server` (started by each test on a unix socket in a
//! temp directory, killed by pid): two cache roots stand for two machines. Skipped, with a
//! message, where `redis-server` is not installed, except under `CI=true`.

mod directories;
mod faults;
mod flight;
mod sharing;
mod trust;

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Cache, CacheOptions, Coordinator, Environment, RemoteStore};
use cache_remote::{RedisRemote, RemoteConfig};
use cache_test_support::redis::RedisServer;
use tempfile::TempDir;

/// One machine: its own cache root and coordinator, and its remote.
pub(crate) struct Machine {
    pub(crate) cache: Cache,
    pub(crate) remote: Arc<RedisRemote>,
    pub(crate) root: TempDir,
}

/// A config for `server` with short timeouts (they only bound how long a failing case takes).
pub(crate) fn config(server: &RedisServer) -> RemoteConfig {
    let mut config = RemoteConfig::new(server.url());
    config.operation_timeout = Duration::from_millis(500);
    config.chunk_size = 64 * 1024;
    config.inline_limit = 16 * 1024;
    config
}

pub(crate) fn machine(config: RemoteConfig) -> Machine {
    machine_with(config, "layout")
}

pub(crate) fn machine_with(config: RemoteConfig, tag: &str) -> Machine {
    let root = tempfile::tempdir().expect("temp dir");
    let remote = Arc::new(RedisRemote::new(config).expect("remote config"));
    let coordinator = Coordinator::with_environment(Environment::from_pairs::<&str, &str>([]))
        .with_remote(Arc::clone(&remote) as Arc<dyn RemoteStore>);
    let options = CacheOptions {
        blob_threshold_bytes: 8 * 1024,
        ..CacheOptions::default()
    };
    let cache = coordinator
        .get_shared_cache_instance(root.path(), tag, options)
        .expect("open the machine's cache");
    Machine {
        cache,
        remote,
        root,
    }
}

/// Bytes of a recognisable pattern.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed.wrapping_mul(31))
        .collect()
}
