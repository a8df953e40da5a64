//! The typed key of the `metrics` tag: one entry per session.

use std::time::Duration;

use cache_core::{CacheKey, CacheTtlConfig, keys};

use crate::session::{SessionId, SessionMetrics};

/// The tag every metrics entry lives in.
pub const METRICS_TAG: &str = "metrics";

/// Every session key starts with this readable prefix, so that `list` can find sessions among
/// the tag's keys (and a person reading `glovebox-cache keys` can tell what an entry is).
pub(crate) const SESSION_KEY_PREFIX: &[u8] = b"session:";

/// The key of one session's metrics. Its time to live is the config's
/// [`metrics_sessions`](crate::ttl::METRICS_SESSIONS) (7 days by default).
///
/// Key bytes: `session:` followed by `from_parts(["metrics", "session", <canonical uuid>])`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKey {
    session_id: SessionId,
    ttl: Duration,
}

impl SessionKey {
    /// The key of `session_id`, expiring after the metrics level of `ttls`.
    pub fn new(session_id: &SessionId, ttls: &CacheTtlConfig) -> Self {
        SessionKey {
            session_id: session_id.clone(),
            ttl: ttls.get(&crate::ttl::METRICS_SESSIONS),
        }
    }

    /// The session this key names.
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }
}

impl CacheKey for SessionKey {
    type Value = SessionMetrics;
    const TAG: &'static str = METRICS_TAG;
    const SCHEMA_VERSION: u32 = 1;

    fn default_ttl(&self) -> Option<Duration> {
        Some(self.ttl)
    }

    fn key_bytes(&self) -> Vec<u8> {
        let hash = keys::from_parts(["metrics", "session", self.session_id.as_str()]);
        [SESSION_KEY_PREFIX, hash.as_bytes()].concat()
    }
}

/// A session key found by scanning the tag's keys: its bytes are known, its session id is not
/// (the hash cannot be reversed) until its value is read. Private: callers name sessions by id.
pub(crate) struct FoundSessionKey {
    pub(crate) bytes: Vec<u8>,
    pub(crate) ttl: Duration,
}

impl CacheKey for FoundSessionKey {
    type Value = SessionMetrics;
    const TAG: &'static str = METRICS_TAG;
    const SCHEMA_VERSION: u32 = SessionKey::SCHEMA_VERSION;

    fn default_ttl(&self) -> Option<Duration> {
        Some(self.ttl)
    }

    fn key_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }
}

/// What of the `metrics` tag may go through a remote tier (`cache_core::SharingRule`): nothing;
/// session metrics describe this machine's sessions.
pub const REMOTE_SHARING: &[cache_core::SharingRule] = &[cache_core::SharingRule {
    tag: METRICS_TAG,
    key_prefix: "",
    share: false,
    reason: "session metrics describe this machine's sessions",
}];
