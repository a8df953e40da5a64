//! Which engine a configuration names: the endpoint's scheme picks it (`s3://bucket/prefix`:
//! S3; anything else, `redis://`, `redis+unix://`, `unix://`: Redis/Valkey), and
//! `GLOVEBOX_CACHE_REMOTE_CHUNKS` puts chunks on S3 behind a Redis endpoint (`engine::Split`).

use redis::{Client, IntoConnectionInfo};
use rusty_s3::Credentials;

use crate::config::{
    ACCESS_KEY_ID_VARIABLE, CHUNKS_VARIABLE, ENDPOINT_VARIABLE, RemoteConfig,
    SECRET_ACCESS_KEY_VARIABLE,
};
use crate::engine::{Engine, Split};
use crate::error::RemoteSetupError;
use crate::redis::RedisEngine;
use crate::s3::{S3Engine, S3Settings};

/// Whether `endpoint` names an S3 bucket.
pub(crate) fn is_s3(endpoint: &str) -> bool {
    endpoint.starts_with("s3://")
}

/// A new engine (with its own connection) for `config`.
pub(crate) fn open(config: &RemoteConfig) -> Result<Box<dyn Engine>, RemoteSetupError> {
    if let Some(chunks) = &config.chunks {
        if is_s3(&config.endpoint) {
            return Err(RemoteSetupError::Invalid {
                variable: CHUNKS_VARIABLE,
                message: "chunks go to S3 behind a Redis endpoint; the endpoint is S3 already"
                    .to_owned(),
            });
        }
        if !is_s3(chunks) {
            return Err(RemoteSetupError::Invalid {
                variable: CHUNKS_VARIABLE,
                message: format!("`{chunks}` is not an s3://bucket/prefix"),
            });
        }
    }
    let primary = if is_s3(&config.endpoint) {
        open_s3(config, &config.endpoint)?
    } else {
        open_redis(config, &config.endpoint)?
    };
    match &config.chunks {
        Some(chunks) => Ok(Box::new(Split {
            envelopes: primary,
            chunks: open_s3(config, chunks)?,
        })),
        None => Ok(primary),
    }
}

/// `s3://bucket/key/prefix` as the bucket and the key prefix (`""` or ending in `/`).
fn parse_s3(endpoint: &str) -> Result<(String, String), String> {
    let rest = endpoint.strip_prefix("s3://").unwrap_or(endpoint);
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(format!(
            "`{bucket}` is not a bucket name (3 to 63 of a-z, 0-9, `-`, `.`)"
        ));
    }
    let path = path.trim_matches('/');
    let odd_part = |part: &str| part.is_empty() || part == "." || part == "..";
    if !path.is_empty() && (path.contains('@') || path.split('/').any(odd_part)) {
        return Err(format!("`{path}` is not a key prefix"));
    }
    let key_prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    Ok((bucket.to_owned(), key_prefix))
}

fn open_s3(config: &RemoteConfig, endpoint: &str) -> Result<Box<dyn Engine>, RemoteSetupError> {
    let invalid = |message: String| RemoteSetupError::Endpoint {
        endpoint: endpoint.to_owned(),
        message,
    };
    let (bucket, key_prefix) = parse_s3(endpoint).map_err(invalid)?;
    let credentials = match (&config.access_key_id, &config.secret_access_key) {
        (Some(key), Some(secret)) => Some(match &config.session_token {
            Some(token) => Credentials::new_with_token(key, secret, token),
            None => Credentials::new(key, secret),
        }),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(RemoteSetupError::Invalid {
                variable: ACCESS_KEY_ID_VARIABLE,
                message: format!(
                    "{ACCESS_KEY_ID_VARIABLE} and {SECRET_ACCESS_KEY_VARIABLE} go together (neither: anonymous requests)"
                ),
            });
        }
    };
    let engine = S3Engine::new(S3Settings {
        bucket,
        key_prefix,
        endpoint: config.s3_endpoint.clone(),
        region: config.region.clone(),
        credentials,
        connect_timeout: config.connect_timeout,
        operation_timeout: config.operation_timeout,
    })
    .map_err(|bad| match &config.s3_endpoint {
        Some(_) => RemoteSetupError::Invalid {
            variable: ENDPOINT_VARIABLE,
            message: bad.0,
        },
        None => invalid(bad.0),
    })?;
    Ok(Box::new(engine))
}

fn open_redis(config: &RemoteConfig, endpoint: &str) -> Result<Box<dyn Engine>, RemoteSetupError> {
    let endpoint_error = |err: redis::RedisError| RemoteSetupError::Endpoint {
        endpoint: endpoint.to_owned(),
        message: err.to_string(),
    };
    if endpoint.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err(RemoteSetupError::Endpoint {
            endpoint: endpoint.to_owned(),
            message:
                "rediss:// needs TLS, which this build does not include (cache-remote's `tls` \
                      feature)"
                    .to_owned(),
        });
    }
    let mut info = endpoint.into_connection_info().map_err(endpoint_error)?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &config.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password);
    }
    info = info.set_redis_settings(settings);
    let client = Client::open(info).map_err(endpoint_error)?;
    Ok(Box::new(RedisEngine::new(
        client,
        config.connect_timeout,
        config.operation_timeout,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_names_split_into_bucket_and_key_prefix() {
        assert_eq!(
            parse_s3("s3://fleet-cache").unwrap(),
            ("fleet-cache".to_owned(), String::new())
        );
        assert_eq!(
            parse_s3("s3://fleet-cache/team/ci/").unwrap(),
            ("fleet-cache".to_owned(), "team/ci/".to_owned())
        );
        for bad in [
            "s3://",
            "s3://UPPER",
            "s3://ab",
            "s3://b_c/x",
            "s3://bucket/a//b",
            "s3://bucket/../x",
        ] {
            assert!(parse_s3(bad).is_err(), "{bad} was accepted");
        }
    }

    /// `rediss://` opens (it connects lazily) in a build with the `tls` feature, and is refused
    /// naming the feature in one without.
    #[test]
    fn rediss_needs_the_tls_feature() {
        let opened = open(&RemoteConfig::new("rediss://127.0.0.1:1/0"));
        if cfg!(feature = "tls") {
            assert!(
                opened.is_ok(),
                "{:?}",
                opened.err().map(|err| err.to_string())
            );
        } else {
            let err = opened.err().map(|err| err.to_string()).unwrap_or_default();
            assert!(err.contains("`tls` feature"), "{err}");
        }
    }

    #[rstest::rstest]
    #[case::chunks_behind_s3(
        "s3://bucket/p",
        Some("s3://other/p"),
        None,
        None,
        "GLOVEBOX_CACHE_REMOTE_CHUNKS"
    )]
    #[case::chunks_not_s3("redis://127.0.0.1:1/0", Some("redis://x"), None, None, "not an s3://")]
    #[case::half_a_key("s3://bucket/p", None, Some("AKID"), None, "go together")]
    #[case::bad_bucket("s3://No_Such", None, None, None, "s3://No_Such")]
    #[case::https_without_tls("s3://bucket/p", None, None, Some("https://s3.example.com"), "TLS")]
    #[case::endpoint_credentials(
        "s3://bucket/p",
        None,
        None,
        Some("http://u:p@127.0.0.1:1"),
        "would be logged"
    )]
    fn settings_that_cannot_work_are_refused_naming_what(
        #[case] endpoint: &str,
        #[case] chunks: Option<&str>,
        #[case] key: Option<&str>,
        #[case] s3_endpoint: Option<&str>,
        #[case] expected: &str,
    ) {
        if cfg!(feature = "tls") && expected == "TLS" {
            return;
        }
        let mut config = RemoteConfig::new(endpoint);
        config.chunks = chunks.map(str::to_owned);
        config.access_key_id = key.map(str::to_owned);
        config.s3_endpoint = s3_endpoint.map(str::to_owned);
        let err = open(&config).unwrap_err().to_string();
        assert!(err.contains(expected), "{err}");
    }
}
