//! `cache-remote`: the remote tier of the Glovebox cache on Redis/Valkey, so that a fleet of
//! machines (a CI fleet, a team's laptops) shares one cache through an engine it already runs.
//!
//! [`RedisRemote`] implements `cache_core::RemoteStore`; a program attaches it to its
//! coordinator (`Coordinator::with_remote`), and every cache the coordinator opens then:
//!
//! - on a local miss, fetches the entry (an envelope, bounded in size before it is read,
//!   checked by its checksum, and verified against trusted Ed25519 keys when some are
//!   configured), and the core stores it locally with the time it has left;
//! - after a local commit, queues the upload of what it wrote (write-behind: the local write is
//!   the call's result); `flush` and `close` wait for the queue with a bound.
//!
//! Failures never fail a local operation: a fetch error is a miss, an upload error a dropped
//! upload, both counted ([`RemoteStats`]); every operation has a timeout, and a circuit
//! breaker skips an unreachable server for a while after a few failures in a row. A server
//! that refuses writes (`NOPERM`: a read-only ACL user) turns publishing off for the process.
//!
//! Modules: `config.rs` (settings, from the environment), `envelope.rs` (the data model on the
//! server), `directory.rs` (a directory's envelope body and upload), `signing.rs` (keys and signatures), `remote.rs` (fetch, publish), `uploader.rs`
//! (the write-behind queue), `link.rs` (a connection with timeouts), `breaker.rs`, `stats.rs`,
//! `error.rs`, `lease.rs` (the fleet's single-flight lease). The contract, data model and security model: `docs/remote.md`.

mod breaker;
mod config;
mod directory;
mod envelope;
mod error;
mod lease;
mod link;
mod remote;
mod signing;
mod stats;
mod uploader;

pub use breaker::BreakerState;
pub use config::{
    MODE_VARIABLE, PASSWORD_VARIABLE, PREFIX_VARIABLE, REMOTE_VARIABLE, RemoteConfig, RemoteMode,
    SIGNING_KEY_VARIABLE, TIMEOUT_VARIABLE, TRUSTED_KEYS_VARIABLE, USERNAME_VARIABLE,
};
pub use envelope::entry_name;
pub use error::RemoteSetupError;
pub use remote::RedisRemote;
pub use signing::{SecretKey, Signed, TrustedKeys};
pub use stats::RemoteStats;
