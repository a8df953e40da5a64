//! Where the remote is and how to use it: [`RemoteConfig`], read from the environment
//! (`GLOVEBOX_CACHE_REMOTE*`) or built by a program. Credentials live in their own variables and
//! never in the endpoint, which is what logs and `remote status` show.

use std::path::PathBuf;
use std::time::Duration;

use cache_core::Environment;

use crate::error::RemoteSetupError;

/// The endpoint: `redis://host:port/db`, `redis+unix:///path/to/socket` (or `unix://`),
/// `rediss://` (TLS: with cache-remote's `tls` feature; without it, refused with a clear error), or
/// `s3://bucket/key-prefix` (S3 or an S3-compatible server).
pub const REMOTE_VARIABLE: &str = "GLOVEBOX_CACHE_REMOTE";
/// The S3 server for `s3://` names when it is not AWS (`http://host:port`): path-style
/// addressing. Unset: AWS itself, in `AWS_REGION`.
pub const ENDPOINT_VARIABLE: &str = "GLOVEBOX_CACHE_REMOTE_ENDPOINT";
/// The split setup: with `GLOVEBOX_CACHE_REMOTE` on Redis, large values' chunks go to this
/// `s3://bucket/key-prefix` instead (envelopes and leases stay on Redis).
pub const CHUNKS_VARIABLE: &str = "GLOVEBOX_CACHE_REMOTE_CHUNKS";
/// The S3 access key id (the standard variable). With neither key set, S3 requests are
/// anonymous (a public bucket, read-only clients).
pub const ACCESS_KEY_ID_VARIABLE: &str = "AWS_ACCESS_KEY_ID";
/// The S3 secret access key; never logged, and never read from the configuration file.
pub const SECRET_ACCESS_KEY_VARIABLE: &str = "AWS_SECRET_ACCESS_KEY";
/// A session token of temporary S3 credentials; never logged.
pub const SESSION_TOKEN_VARIABLE: &str = "AWS_SESSION_TOKEN";
/// The S3 region (default `us-east-1`).
pub const REGION_VARIABLE: &str = "AWS_REGION";
/// `rw` (default), `ro` (fetch only, never publish) or `off`.
pub const MODE_VARIABLE: &str = "GLOVEBOX_CACHE_REMOTE_MODE";
/// The namespace of every key this cache writes on the server (default `glovebox`).
pub const PREFIX_VARIABLE: &str = "GLOVEBOX_CACHE_REMOTE_PREFIX";
/// The user of an ACL login (Redis 6+).
pub const USERNAME_VARIABLE: &str = "GLOVEBOX_CACHE_REMOTE_USERNAME";
/// The password; never logged.
pub const PASSWORD_VARIABLE: &str = "GLOVEBOX_CACHE_REMOTE_PASSWORD";
/// A file holding the secret key that signs published entries (writers only).
pub const SIGNING_KEY_VARIABLE: &str = "GLOVEBOX_CACHE_REMOTE_SIGNING_KEY";
/// A file of named public keys (`name base64-key` a line); with it, only entries signed by one
/// of them are used.
pub const TRUSTED_KEYS_VARIABLE: &str = "GLOVEBOX_CACHE_REMOTE_TRUSTED_KEYS";
/// The time one remote operation may take, in milliseconds (default 2000).
pub const TIMEOUT_VARIABLE: &str = "GLOVEBOX_CACHE_REMOTE_TIMEOUT_MS";

/// Whether this process reads from the remote, and whether it writes to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteMode {
    /// Fetch on a local miss and publish what is written.
    ReadWrite,
    /// Fetch only (a pull-request job, a laptop): never publish.
    ReadOnly,
}

/// The default chunk size on Redis: 4 MiB, well under Redis's 512 MB string limit, so that one
/// chunk's `GET` holds the connection briefly.
pub const REDIS_CHUNK_SIZE: usize = 4 << 20;

/// The default chunk size on S3 (S3 alone, and the split setup's chunks): 16 MiB, chosen by
/// measurement. With SeaweedFS on loopback (`cargo bench -p cache-remote --bench remote`,
/// `s3_publish_64m`, medians of 3), publishing 64 MiB took 530 ms in 4 MiB chunks, 339 ms in
/// 16 MiB and 344 ms in 64 MiB, against 252-272 ms for one raw `PUT`: each chunk costs a `HEAD`
/// and a request of its own. A remote hit stored durably was no faster with larger chunks
/// (134, 150 and 165 ms): its time goes to hashing and storing, not requests.
pub const S3_CHUNK_SIZE: usize = 16 << 20;

/// A remote tier's settings.
#[derive(Clone)]
pub struct RemoteConfig {
    /// The endpoint, without credentials.
    pub endpoint: String,
    /// Read and write, or read only.
    pub mode: RemoteMode,
    /// The namespace of every key on the server.
    pub prefix: String,
    /// ACL user, if any.
    pub username: Option<String>,
    /// Password, if any. Never logged.
    pub password: Option<String>,
    /// The secret key that signs what this process publishes.
    pub signing_key: Option<PathBuf>,
    /// The public keys an entry must be signed by to be used.
    pub trusted_keys: Option<PathBuf>,
    /// Connecting may take this long.
    pub connect_timeout: Duration,
    /// One operation (a command and its reply; one chunk) may take this long.
    pub operation_timeout: Duration,
    /// Uploads waiting at most, counted by entries; a publish beyond it is dropped and counted.
    pub queue_entries: usize,
    /// Bytes of inline values waiting at most.
    pub queue_bytes: usize,
    /// Values up to this size travel in the entry's envelope; larger ones as chunks.
    pub inline_limit: usize,
    /// The size of the chunks a large value is cut into.
    pub chunk_size: usize,
    /// Failures in a row that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe is let through.
    pub breaker_open_for: Duration,
    /// The largest value fetched (a larger announced size is refused before any allocation).
    pub max_value_bytes: u64,
    /// S3: the server when it is not AWS (`http://host:port`, path-style addressing).
    pub s3_endpoint: Option<String>,
    /// The split setup: chunks in this `s3://bucket/key-prefix`, the rest on the Redis
    /// `endpoint`.
    pub chunks: Option<String>,
    /// S3: the region requests are signed for.
    pub region: String,
    /// S3: the access key id; with no key, requests are anonymous.
    pub access_key_id: Option<String>,
    /// S3: the secret access key. Never logged.
    pub secret_access_key: Option<String>,
    /// S3: the session token of temporary credentials. Never logged.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("endpoint", &self.endpoint)
            .field("mode", &self.mode)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("signing_key", &self.signing_key)
            .field("trusted_keys", &self.trusted_keys)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("chunks", &self.chunks)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

impl RemoteConfig {
    /// A configuration for `endpoint` with the defaults: read-write, prefix `glovebox`, connect
    /// within 250 ms, each operation within 2 s, a queue of 1 024 uploads or 64 MiB, values up
    /// to 512 KiB inline, chunks of [`REDIS_CHUNK_SIZE`] (4 MiB; [`S3_CHUNK_SIZE`], 16 MiB, for an
    /// `s3://` endpoint), a breaker that opens after 3 failures in a row for 30 s.
    pub fn new(endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        let endpoint_is_s3 = endpoint.starts_with("s3://");
        RemoteConfig {
            endpoint,
            mode: RemoteMode::ReadWrite,
            prefix: "glovebox".to_owned(),
            username: None,
            password: None,
            signing_key: None,
            trusted_keys: None,
            connect_timeout: Duration::from_millis(250),
            operation_timeout: Duration::from_secs(2),
            queue_entries: 1024,
            queue_bytes: 64 << 20,
            inline_limit: 512 << 10,
            chunk_size: if endpoint_is_s3 {
                S3_CHUNK_SIZE
            } else {
                REDIS_CHUNK_SIZE
            },
            breaker_failures: 3,
            breaker_open_for: Duration::from_secs(30),
            max_value_bytes: 256 << 20,
            s3_endpoint: None,
            chunks: None,
            region: "us-east-1".to_owned(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
        }
    }

    /// The remote the environment configures; `None` when `GLOVEBOX_CACHE_REMOTE` is unset or
    /// empty, or the mode is `off`.
    pub fn from_environment(environment: &Environment) -> Result<Option<Self>, RemoteSetupError> {
        Self::from_sources(None, environment)
    }

    /// The remote the configuration file's `[remote]` section and the environment configure,
    /// the environment winning key by key. The section's keys: `url`, `mode`, `prefix`,
    /// `username`, `signing_key`, `trusted_keys`, `timeout_ms`, and for S3 `endpoint`,
    /// `chunks`, `region`, `access_key_id` (secrets only ever come from the environment,
    /// `GLOVEBOX_CACHE_REMOTE_PASSWORD`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`: a
    /// config file is often shared or committed).
    pub fn from_sources(
        file: Option<&cache_core::RemoteConfig>,
        environment: &Environment,
    ) -> Result<Option<Self>, RemoteSetupError> {
        let file_value = |key: &str| -> Option<String> {
            let text = file?.settings.get(key)?.trim();
            Some(
                text.strip_prefix('"')
                    .and_then(|t| t.strip_suffix('"'))
                    .unwrap_or(text)
                    .to_owned(),
            )
        };
        if let Some(file) = file {
            const KNOWN: [&str; 11] = [
                "url",
                "mode",
                "prefix",
                "username",
                "signing_key",
                "trusted_keys",
                "timeout_ms",
                "endpoint",
                "chunks",
                "region",
                "access_key_id",
            ];
            if let Some(unknown) = file
                .settings
                .keys()
                .find(|key| !KNOWN.contains(&key.as_str()))
            {
                return Err(RemoteSetupError::Invalid {
                    variable: "[remote]",
                    message: format!(
                        "unknown key `{unknown}` (known: {}; secrets only from {PASSWORD_VARIABLE}, {SECRET_ACCESS_KEY_VARIABLE}, {SESSION_TOKEN_VARIABLE})",
                        KNOWN.join(", ")
                    ),
                });
            }
        }
        let setting =
            |variable: &str, key: &str| environment.var(variable).or_else(|| file_value(key));
        let Some(endpoint) = setting(REMOTE_VARIABLE, "url").filter(|v| !v.trim().is_empty())
        else {
            return Ok(None);
        };
        let mode = match setting(MODE_VARIABLE, "mode").as_deref().map(str::trim) {
            None | Some("" | "rw") => RemoteMode::ReadWrite,
            Some("ro") => RemoteMode::ReadOnly,
            Some("off") => return Ok(None),
            Some(other) => {
                return Err(RemoteSetupError::Invalid {
                    variable: MODE_VARIABLE,
                    message: format!("`{other}` is not one of rw, ro, off"),
                });
            }
        };
        let mut config = RemoteConfig::new(endpoint.trim());
        config.mode = mode;
        if let Some(prefix) = setting(PREFIX_VARIABLE, "prefix") {
            config.prefix = prefix;
        }
        config.username = setting(USERNAME_VARIABLE, "username").filter(|v| !v.is_empty());
        config.password = environment.var(PASSWORD_VARIABLE).filter(|v| !v.is_empty());
        config.signing_key = setting(SIGNING_KEY_VARIABLE, "signing_key")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        config.trusted_keys = setting(TRUSTED_KEYS_VARIABLE, "trusted_keys")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let present = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
        config.s3_endpoint = present(setting(ENDPOINT_VARIABLE, "endpoint"));
        config.chunks = present(setting(CHUNKS_VARIABLE, "chunks"));
        if config.chunks.is_some() {
            // The split setup: chunks go to S3.
            config.chunk_size = S3_CHUNK_SIZE;
        }
        if let Some(region) = present(setting(REGION_VARIABLE, "region")) {
            config.region = region.trim().to_owned();
        }
        config.access_key_id = present(setting(ACCESS_KEY_ID_VARIABLE, "access_key_id"));
        config.secret_access_key = present(environment.var(SECRET_ACCESS_KEY_VARIABLE));
        config.session_token = present(environment.var(SESSION_TOKEN_VARIABLE));
        if let Some(ms) = setting(TIMEOUT_VARIABLE, "timeout_ms") {
            let ms: u64 = ms.trim().parse().map_err(|_| RemoteSetupError::Invalid {
                variable: TIMEOUT_VARIABLE,
                message: format!("`{ms}` is not a number of milliseconds"),
            })?;
            config.operation_timeout = Duration::from_millis(ms.max(1));
        }
        config.check()?;
        Ok(Some(config))
    }

    /// Refuses what cannot work: credentials inside the endpoint (they would be logged), an
    /// empty or oddly shaped prefix, zero sizes.
    pub fn check(&self) -> Result<(), RemoteSetupError> {
        if let Some((_, rest)) = self.endpoint.split_once("://") {
            let authority = rest.split('/').next().unwrap_or("");
            if authority.contains('@') {
                return Err(RemoteSetupError::Invalid {
                    variable: REMOTE_VARIABLE,
                    message: format!(
                        "credentials in the endpoint would be logged; put them in {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}"
                    ),
                });
            }
        }
        if self.prefix.is_empty()
            || !self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        {
            return Err(RemoteSetupError::Invalid {
                variable: PREFIX_VARIABLE,
                message: format!(
                    "`{}` must be non-empty and made of letters, digits, `-`, `_`, `.` and `/`",
                    self.prefix
                ),
            });
        }
        if self.chunk_size == 0 || self.queue_entries == 0 {
            return Err(RemoteSetupError::Invalid {
                variable: REMOTE_VARIABLE,
                message: "chunk size and queue length must be positive".to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks default to the size measured for the engine that stores them: S3's for an
    /// `s3://` endpoint and for the split setup (chunks on S3), Redis's otherwise.
    #[test]
    fn the_default_chunk_size_is_the_chunk_stores_engines() {
        assert_eq!(RemoteConfig::new("s3://bucket/p").chunk_size, S3_CHUNK_SIZE);
        assert_eq!(
            RemoteConfig::new("redis://127.0.0.1:1/0").chunk_size,
            REDIS_CHUNK_SIZE
        );
        let split = Environment::from_pairs([
            (REMOTE_VARIABLE, "redis://127.0.0.1:1/0"),
            (CHUNKS_VARIABLE, "s3://bucket/chunks"),
        ]);
        let split = RemoteConfig::from_environment(&split)
            .unwrap()
            .expect("configured");
        assert_eq!(split.chunk_size, S3_CHUNK_SIZE);
        assert_ne!(S3_CHUNK_SIZE, REDIS_CHUNK_SIZE);
    }

    fn section(pairs: &[(&str, &str)]) -> cache_core::RemoteConfig {
        cache_core::RemoteConfig {
            settings: pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_file_configures_the_remote_and_each_variable_beats_its_key() {
        let file = section(&[
            ("url", "\"redis://file:6379/0\""),
            ("mode", "\"ro\""),
            ("timeout_ms", "750"),
        ]);
        let quiet = Environment::from_pairs::<&str, &str>([]);
        let config = RemoteConfig::from_sources(Some(&file), &quiet)
            .unwrap()
            .unwrap();
        assert_eq!(config.endpoint, "redis://file:6379/0");
        assert_eq!(config.mode, RemoteMode::ReadOnly);
        assert_eq!(config.operation_timeout, Duration::from_millis(750));

        let env = Environment::from_pairs([
            (REMOTE_VARIABLE, "redis://env:6379/1"),
            (MODE_VARIABLE, "rw"),
        ]);
        let config = RemoteConfig::from_sources(Some(&file), &env)
            .unwrap()
            .unwrap();
        assert_eq!(config.endpoint, "redis://env:6379/1");
        assert_eq!(config.mode, RemoteMode::ReadWrite);

        let off = Environment::from_pairs([(MODE_VARIABLE, "off")]);
        assert!(
            RemoteConfig::from_sources(Some(&file), &off)
                .unwrap()
                .is_none()
        );
        assert!(RemoteConfig::from_sources(None, &quiet).unwrap().is_none());
    }

    #[test]
    fn s3_settings_come_from_the_standard_variables_and_secrets_never_show() {
        let file = section(&[
            ("url", "\"s3://fleet-cache/ci\""),
            ("endpoint", "\"http://127.0.0.1:9000\""),
            ("region", "\"eu-west-1\""),
            ("access_key_id", "\"AKIDFILE\""),
            ("chunks", "\"\""),
        ]);
        let env = Environment::from_pairs([
            (ACCESS_KEY_ID_VARIABLE, "AKIDENV"),
            (SECRET_ACCESS_KEY_VARIABLE, "very-secret-value"),
            (SESSION_TOKEN_VARIABLE, "session-token-value"),
        ]);
        let config = RemoteConfig::from_sources(Some(&file), &env)
            .unwrap()
            .unwrap();
        assert_eq!(config.endpoint, "s3://fleet-cache/ci");
        assert_eq!(config.s3_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.region, "eu-west-1");
        assert_eq!(config.access_key_id.as_deref(), Some("AKIDENV"));
        assert_eq!(config.chunks, None);
        let shown = format!("{config:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
        assert!(!shown.contains("session-token-value"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn a_password_or_an_unknown_key_in_the_file_is_refused() {
        let quiet = Environment::from_pairs::<&str, &str>([]);
        for key in ["password", "urll", "secret_access_key", "session_token"] {
            let file = section(&[("url", "\"redis://h:1/0\""), (key, "\"x\"")]);
            let err = RemoteConfig::from_sources(Some(&file), &quiet).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
