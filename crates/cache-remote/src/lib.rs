//! `cache-remote`: the remote tier of the Glovebox cache on Redis/Valkey, S3-compatible object
//! storage, or both (Redis for envelopes and leases, S3 for chunks), so that a fleet of machines
//! (a CI fleet, a team's laptops) shares one cache through an engine it already runs.
//!
//! [`Remote`] implements `cache_core::RemoteStore` (the endpoint's scheme picks the engine:
//! `redis://`, `redis+unix://`, `s3://bucket/prefix`); a program attaches it to its
//! coordinator (`Coordinator::with_remote`), and every cache the coordinator opens then:
//!
//! - on a local miss, fetches the entry (an envelope, bounded in size before it is read,
//!   checked by its checksum, and verified against trusted Ed25519 keys when some are
//!   configured), and the core stores it locally with the time it has left;
//! - after a local commit, queues the upload of what it wrote (write-behind: the local write is
//!   the call's result); `flush` and `close` wait for the queue with a bound.
//!
//! Failures never fail a local operation: a fetch error is a miss, an upload error a dropped
//! upload, both counted ([`RemoteStats`]; the counts are handed to the core, which persists them
//! with each tag's counters); every operation has a timeout, and a circuit breaker skips an
//! unreachable server for a while after a few failures in a row, telling the machine's other
//! processes through a hint file under the cache root. A server that refuses writes (`NOPERM`:
//! a read-only ACL user; S3 `403`: a read-only key) turns publishing off for the process.
//!
//! Modules: `config.rs` (settings, from the environment), `envelope.rs` (the data model on the
//! server), `directory.rs` (a directory's
//! envelope body and upload), `signing.rs` (keys and signatures), `remote.rs` (fetch, publish),
//! `chunks.rs` (a chunked value's reader, fetching ahead), `uploader.rs`
//! (the write-behind queue), `engine.rs` (what the tier needs of a server, the split setup, the
//! breaker path), `engines.rs` (which engine a configuration names), `redis.rs` and `s3.rs`
//! (the engines), `breaker.rs`, `hint.rs` (the breaker hint file under the cache root),
//! `stats.rs` (counters, handed to the core to persist), `error.rs`, `lease.rs` (the fleet's
//! single-flight lease, on engines that have leases). The contract, data model and security
//! model: `docs/remote.md`.

mod breaker;
mod chunks;
mod config;
mod directory;
mod engine;
mod engines;
mod envelope;
mod error;
mod hint;
mod lease;
mod redis;
mod remote;
mod s3;
mod signing;
mod stats;
mod uploader;

pub use breaker::BreakerState;
pub use config::{
    ACCESS_KEY_ID_VARIABLE, CHUNKS_VARIABLE, ENDPOINT_VARIABLE, MODE_VARIABLE, PASSWORD_VARIABLE,
    PREFIX_VARIABLE, REDIS_CHUNK_SIZE, REGION_VARIABLE, REMOTE_VARIABLE, RemoteConfig, RemoteMode,
    S3_CHUNK_SIZE, SECRET_ACCESS_KEY_VARIABLE, SESSION_TOKEN_VARIABLE, SIGNING_KEY_VARIABLE,
    TIMEOUT_VARIABLE, TRUSTED_KEYS_VARIABLE, USERNAME_VARIABLE,
};
pub use envelope::entry_name;
pub use error::RemoteSetupError;
pub use remote::{RedisRemote, Remote};
pub use signing::{SecretKey, Signed, TrustedKeys};
pub use stats::RemoteStats;
