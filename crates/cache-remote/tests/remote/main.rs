//! The remote tier against a real `redis-server` (started by each test on a unix socket in a
//! temp directory, killed by pid) and a real S3 server (SeaweedFS's `weed mini` on free
//! loopback ports, `s3.rs` and `split.rs`): two cache roots stand for two machines. Skipped,
//! with a message, where a server is not installed, except under `CI=true`.

mod directories;
mod faults;
mod flight;
mod gate;
mod hint;
mod s3;
mod sharing;
mod split;
mod trust;

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Cache, CacheOptions, Coordinator, Environment, RemoteStore};
use cache_remote::{Remote, RemoteConfig};
use cache_test_support::redis::RedisServer;
use cache_test_support::s3::{BUCKET, S3Server};
use tempfile::TempDir;

/// One machine: its own cache root and coordinator, and its remote.
pub(crate) struct Machine {
    pub(crate) cache: Cache,
    pub(crate) remote: Arc<Remote>,
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

/// A config for the bucket of `server` under the key prefix `prefix`, with `key` (access key
/// id, secret; `None`: anonymous) and the same short timeouts and small sizes.
pub(crate) fn s3_config(
    server: &S3Server,
    prefix: &str,
    key: Option<(&str, &str)>,
) -> RemoteConfig {
    let mut config = RemoteConfig::new(format!("s3://{BUCKET}/{prefix}"));
    config.s3_endpoint = Some(server.endpoint());
    config.access_key_id = key.map(|(id, _)| id.to_owned());
    config.secret_access_key = key.map(|(_, secret)| secret.to_owned());
    // Generous: SeaweedFS on a busy 2-core machine can be slow, and no S3 test relies on a
    // timeout firing (a killed server refuses connections at once).
    config.operation_timeout = Duration::from_secs(15);
    config.connect_timeout = Duration::from_secs(5);
    config.chunk_size = 64 * 1024;
    config.inline_limit = 16 * 1024;
    config
}

pub(crate) fn machine(config: RemoteConfig) -> Machine {
    machine_with(config, "layout")
}

pub(crate) fn machine_with(config: RemoteConfig, tag: &str) -> Machine {
    let root = tempfile::tempdir().expect("temp dir");
    let remote = Arc::new(Remote::new(config).expect("remote config"));
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
