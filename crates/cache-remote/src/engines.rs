//! Which engine a configuration names: the endpoint's scheme picks it (`redis://`,
//! `redis+unix://`, `unix://`: Redis/Valkey).

use redis::{Client, IntoConnectionInfo};

use crate::config::RemoteConfig;
use crate::engine::Engine;
use crate::error::RemoteSetupError;
use crate::redis::RedisEngine;

/// A new engine (with its own connection) for `config`.
pub(crate) fn open(config: &RemoteConfig) -> Result<Box<dyn Engine>, RemoteSetupError> {
    open_redis(config, &config.endpoint)
}

fn open_redis(config: &RemoteConfig, endpoint: &str) -> Result<Box<dyn Engine>, RemoteSetupError> {
    let endpoint_error = |err: redis::RedisError| RemoteSetupError::Endpoint {
        endpoint: endpoint.to_owned(),
        message: err.to_string(),
    };
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
