//! `DockerImageCache`: whether a docker image was available, remembered for an hour; and its
//! key, `DockerImageKey` (its bytes follow the scheme of `keys.rs`).

use std::sync::Arc;
use std::time::Duration;

use cache_core::keys::from_parts;
use cache_core::{CacheKey, ErrorChain};

use crate::context::Context;
use crate::error::{CompilationError, Result};
use crate::keys::{COMPILATION_TAG, DOCKER_IMAGE_KEY_PREFIX, DOMAIN, check_name};
use crate::metadata::DockerImageCheck;

/// Docker image availability checks, kept for
/// [`CompilationOptions::docker_image_check_ttl`](crate::CompilationOptions::docker_image_check_ttl)
/// (1 hour) so that a build does not ask docker every time.
#[derive(Clone, Debug)]
pub struct DockerImageCache {
    context: Arc<Context>,
}

impl DockerImageCache {
    pub(crate) fn new(context: Arc<Context>) -> Self {
        DockerImageCache { context }
    }

    fn key(&self, image: &str) -> Result<DockerImageKey> {
        DockerImageKey::new(image, self.context.options.docker_image_check_ttl)
    }

    /// The last check of `image`, if it has not expired.
    pub fn get(&self, image: &str) -> Result<Option<DockerImageCheck>> {
        Ok(self.context.cache.get_typed(&self.key(image)?)?)
    }

    /// Records that `image` was (or was not) available, now.
    pub fn record(&self, image: &str, available: bool) -> Result<DockerImageCheck> {
        let check = DockerImageCheck {
            image: image.to_owned(),
            available,
            checked_at: self.context.now(),
        };
        self.context.cache.set_typed(&self.key(image)?, &check)?;
        Ok(check)
    }

    /// Whether `image` is available: the cached answer, or `check`'s, which is then recorded.
    /// A failure to record is logged, not returned: the answer is still good.
    pub fn get_or_check<E, F>(&self, image: &str, check: F) -> std::result::Result<bool, E>
    where
        E: From<CompilationError>,
        F: FnOnce() -> std::result::Result<bool, E>,
    {
        if let Some(cached) = self.get(image)? {
            return Ok(cached.available);
        }
        let available = check()?;
        if let Err(err) = self.record(image, available) {
            tracing::warn!(image, error = %ErrorChain(&err), "docker image check could not be cached");
        }
        Ok(available)
    }

    /// Forgets the check of `image`; whether there was one.
    pub fn delete(&self, image: &str) -> Result<bool> {
        Ok(self.context.cache.delete(&self.key(image)?.key_bytes())?)
    }
}

/// The key of one docker image's availability check, with the TTL it is stored for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerImageKey {
    image: String,
    ttl: Duration,
}

impl DockerImageKey {
    /// The check of `image` (`zmkfirmware/zmk-build-arm:stable`), kept for `ttl`.
    pub fn new(image: &str, ttl: Duration) -> Result<Self> {
        check_name("docker image", image)?;
        Ok(DockerImageKey {
            image: image.to_owned(),
            ttl,
        })
    }

    /// The image.
    pub fn image(&self) -> &str {
        &self.image
    }
}

impl CacheKey for DockerImageKey {
    type Value = DockerImageCheck;
    const TAG: &'static str = COMPILATION_TAG;
    const SCHEMA_VERSION: u32 = 1;

    fn default_ttl(&self) -> Option<Duration> {
        Some(self.ttl)
    }

    fn key_bytes(&self) -> Vec<u8> {
        let hash = from_parts([DOMAIN, "docker-image", &self.image]);
        format!("{DOCKER_IMAGE_KEY_PREFIX}{hash}").into_bytes()
    }
}
