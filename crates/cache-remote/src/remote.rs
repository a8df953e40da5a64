//! [`Remote`], the [`RemoteStore`] on a server's engine (`engine.rs`: Redis/Valkey, S3, or
//! both): `fetch` reads an envelope (bounded, checked, verified) and, for a chunked value, a
//! stream that fetches one chunk at a time (a value's, checked whole by the core as it stores
//! it; a directory's contents, checked whole by the stream); `publish` queues an upload
//! (`uploader.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cache_core::{
    DrainReport, PublishedEntry, RemoteEntry, RemoteError, RemoteLease, RemoteStore, RemoteValue,
    Tag,
};

use crate::breaker::{Breaker, BreakerState};
use crate::chunks::{Chunks, Whole};
use crate::config::{RemoteConfig, RemoteMode};
use crate::engine::{Engine, EngineError, Outcome, run};
use crate::envelope::{Body, Envelope, entry_name, signed_message};
use crate::error::RemoteSetupError;
use crate::signing::{SecretKey, TrustedKeys};
use crate::stats::{RemoteStats, Stats};
use crate::uploader::Uploader;

/// What the fetching side and the upload thread share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: RemoteConfig,
    /// The engine fetches and leases use, and the one the upload thread uses: two, so that an
    /// upload never holds a connection a fetch waits for.
    pub(crate) fetch_engine: Box<dyn Engine>,
    pub(crate) upload_engine: Box<dyn Engine>,
    pub(crate) breaker: Breaker,
    pub(crate) stats: Stats,
    pub(crate) signing: Option<SecretKey>,
    pub(crate) trusted: Option<TrustedKeys>,
    pub(crate) uploader: Uploader,
    /// Set when the server refused a write (`NOPERM`, 403): this process publishes no more.
    writes_off: AtomicBool,
}

impl Shared {
    pub(crate) fn writes_refused(&self, err: &EngineError) {
        if !self.writes_off.swap(true, Ordering::SeqCst) {
            tracing::warn!(error = %err, "the remote cache refused a write; publishing is off for this process");
        }
    }
}

/// A remote tier on one Redis/Valkey endpoint, one S3 bucket, or Redis for envelopes and
/// leases with S3 for chunks (the endpoint's scheme picks; `docs/remote.md`). Attach it with
/// `cache_core::Coordinator::with_remote`.
#[derive(Debug)]
pub struct Remote {
    shared: Arc<Shared>,
}

/// The name this type had when Redis was its only engine.
pub type RedisRemote = Remote;

impl Remote {
    /// A remote for `config`, reading its key files. Connects lazily, on the first operation.
    pub fn new(config: RemoteConfig) -> Result<Self, RemoteSetupError> {
        config.check()?;
        let fetch_engine = crate::engines::open(&config)?;
        let upload_engine = crate::engines::open(&config)?;
        let signing = config
            .signing_key
            .as_deref()
            .map(SecretKey::read)
            .transpose()?;
        let trusted = config
            .trusted_keys
            .as_deref()
            .map(TrustedKeys::read)
            .transpose()?;
        Ok(Remote {
            shared: Arc::new(Shared {
                fetch_engine,
                upload_engine,
                breaker: Breaker::new(config.breaker_failures, config.breaker_open_for),
                stats: Stats::default(),
                signing,
                trusted,
                uploader: Uploader::default(),
                writes_off: AtomicBool::new(false),
                config,
            }),
        })
    }

    /// The remote the environment configures (`GLOVEBOX_CACHE_REMOTE*`), if any.
    pub fn from_environment(
        environment: &cache_core::Environment,
    ) -> Result<Option<Self>, RemoteSetupError> {
        RemoteConfig::from_environment(environment)?
            .map(Self::new)
            .transpose()
    }

    /// The remote a user configuration's `[remote]` section and the environment configure (the
    /// environment wins key by key), if any.
    pub fn from_user_config(
        config: &cache_core::UserCacheConfig,
        environment: &cache_core::Environment,
    ) -> Result<Option<Self>, RemoteSetupError> {
        RemoteConfig::from_sources(config.remote.as_ref(), environment)?
            .map(Self::new)
            .transpose()
    }

    /// This process's counters.
    pub fn stats(&self) -> RemoteStats {
        self.shared.stats.snapshot()
    }

    /// The breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.shared.breaker.state()
    }

    /// The settings in use.
    pub fn config(&self) -> &RemoteConfig {
        &self.shared.config
    }

    /// Whether this remote coordinates computations across the fleet (a lease per entry):
    /// Redis does, S3 alone does not (every machine computes what it misses).
    pub fn coordinates_fleet(&self) -> bool {
        self.shared.fetch_engine.leases().is_some()
    }

    fn reject(&self, tag: &Tag, why: &str) -> Result<Option<RemoteEntry>, RemoteError> {
        Stats::add(&self.shared.stats.rejected, 1);
        tracing::warn!(%tag, reason = why, "a remote entry was rejected; treated as a miss");
        Ok(None)
    }

    /// The largest envelope worth reading: an inline value at the limit, or the manifest of
    /// the largest value, plus the fixed parts.
    fn max_envelope(&self) -> usize {
        let config = &self.shared.config;
        let chunks = config.max_value_bytes.div_ceil(config.chunk_size as u64);
        let manifest = 8 + 32 * usize::try_from(chunks).unwrap_or(usize::MAX / 64);
        // A directory's: its value, its list, its contents' digest and its manifest.
        let directory = config
            .inline_limit
            .saturating_add(crate::directory::MAX_LISTING_BYTES)
            .saturating_add(32 + manifest);
        config.inline_limit.max(manifest).max(directory) + 1024
    }
}

impl RemoteStore for RedisRemote {
    fn fetch(&self, tag: &Tag, key: &[u8]) -> Result<Option<RemoteEntry>, RemoteError> {
        let shared = &self.shared;
        if shared.breaker.is_open() {
            // Skipped before the name is hashed: a miss with the breaker open stays cheap.
            Stats::add(&shared.stats.skipped, 1);
            return Ok(None);
        }
        let name = entry_name(&shared.config.prefix, tag.as_str(), key);
        let max = self.max_envelope();
        // The length and at most `max` bytes, in one round trip: nothing larger is allocated.
        let outcome = run(&shared.breaker, &shared.stats, || {
            shared.fetch_engine.get_envelope(&name, max)
        });
        let (len, bytes) = match outcome {
            Outcome::Done(Some(found)) => found,
            Outcome::Done(None) => {
                Stats::add(&shared.stats.misses, 1);
                return Ok(None);
            }
            Outcome::Skipped => return Ok(None),
            Outcome::Failed(err) => return Err(RemoteError::new("fetch", err.to_string())),
        };
        Stats::add(&shared.stats.bytes_in, bytes.len() as u64);
        if len > max as u64 {
            return self.reject(tag, "envelope larger than any this cache writes");
        }
        let envelope = match Envelope::decode(&bytes, shared.config.max_value_bytes) {
            Ok(envelope) => envelope,
            Err(rejected) => return self.reject(tag, rejected.0),
        };
        if let Some(trusted) = &shared.trusted {
            let message = signed_message(
                &shared.config.prefix,
                tag.as_str(),
                key,
                envelope.format,
                envelope.expires_ms,
                envelope.len,
                &envelope.digest,
            );
            match &envelope.signed {
                Some(signed) if trusted.verify(&message, signed) => {}
                Some(_) => return self.reject(tag, "signed by a key that is not trusted"),
                None => return self.reject(tag, "unsigned"),
            }
        }
        Stats::add(&shared.stats.hits, 1);
        let expires_at = envelope.expires_at();
        let value = match envelope.body {
            Body::Inline(bytes) => RemoteValue::Bytes(bytes),
            Body::Chunked { chunk_size, chunks } => RemoteValue::Stream {
                len: envelope.len,
                digest: envelope.digest,
                reader: Box::new(Chunks::new(
                    shared,
                    chunks,
                    chunk_size,
                    envelope.len,
                    Whole::ByCaller,
                )),
            },
            Body::Directory {
                value,
                items,
                contents_digest,
                chunk_size,
                chunks,
            } => RemoteValue::Directory {
                value,
                items,
                contents: Box::new(Chunks::new(
                    shared,
                    chunks,
                    chunk_size,
                    envelope.len,
                    Whole::Checked(contents_digest),
                )),
            },
        };
        Ok(Some(RemoteEntry {
            format: envelope.format,
            expires_at,
            value,
        }))
    }

    fn publish(&self, entry: PublishedEntry) {
        let shared = &self.shared;
        if shared.config.mode == RemoteMode::ReadOnly || shared.writes_off.load(Ordering::Relaxed) {
            return;
        }
        shared.uploader.push(shared, entry);
    }

    fn drain(&self, within: Duration) -> DrainReport {
        self.shared.uploader.drain(within)
    }

    fn lease(&self, tag: &Tag, key: &[u8], duration: Duration) -> RemoteLease {
        let shared = &self.shared;
        if shared.config.mode == RemoteMode::ReadOnly || shared.writes_off.load(Ordering::Relaxed) {
            // A machine that does not publish would hold the fleet waiting for nothing.
            return RemoteLease::NotCoordinated;
        }
        crate::lease::take(shared, tag.as_str(), key, duration)
    }

    fn take_counters(&self) -> cache_core::RemoteCounters {
        self.shared.stats.take()
    }

    fn attach_root(&self, root: &cache_core::RootFiles) {
        let hint = crate::hint::Hint::new(root.clone(), &self.shared.config.endpoint);
        self.shared.breaker.attach_hint(hint);
    }
}
