//! Typed access: values of a domain's key types ([`crate::CacheKey`]), encoded by the codec
//! (serde + bincode) with their schema version recorded, so a value of another version reads as a
//! miss instead of decoding into a wrong value.

use std::fmt::Display;
use std::time::Duration;

use super::Cache;
use crate::codec::{self, ValueFormat};
use crate::error::{CacheError, ErrorChain, KeyDisplay, Result};
use crate::typed::CacheKey;
use crate::values::AnyFormat;

impl Cache {
    /// The value stored under `key`. A value of another schema version, or one that does not
    /// decode, is a miss: it is removed and a warning is logged.
    pub fn get_typed<K: CacheKey>(&self, key: &K) -> Result<Option<K::Value>> {
        check_tag::<K>(self)?;
        let bytes = key.key_bytes();
        let Some(stored) =
            self.get_with_format(&bytes, ValueFormat::typed(K::SCHEMA_VERSION), AnyFormat::No)?
        else {
            return Ok(None);
        };
        match codec::decode::<K::Value>(&stored) {
            Ok(value) => Ok(Some(value)),
            Err(reason) => {
                self.discard_undecodable(&bytes, &format!("value does not decode: {reason}"))?;
                Ok(None)
            }
        }
    }

    /// Stores `value` under `key` with the key's default time to live.
    pub fn set_typed<K: CacheKey>(&self, key: &K, value: &K::Value) -> Result<()> {
        self.set_typed_with_ttl(key, value, key.default_ttl())
    }

    /// Stores `value` under `key` with an explicit time to live.
    pub fn set_typed_with_ttl<K: CacheKey>(
        &self,
        key: &K,
        value: &K::Value,
        ttl: Option<Duration>,
    ) -> Result<()> {
        check_tag::<K>(self)?;
        let bytes = key.key_bytes();
        let encoded = codec::encode(value).map_err(|message| CacheError::Encode {
            tag: self.tag().to_string(),
            key: KeyDisplay::new(&bytes),
            message,
        })?;
        self.set_with_format(&bytes, &encoded, ttl, ValueFormat::typed(K::SCHEMA_VERSION))
    }

    /// The cached value, or `compute`'s result, which is then stored with the key's default time
    /// to live.
    ///
    /// A failure to store the computed value does not lose it: the value is returned and the
    /// failure is logged (and counted in the instance's errors), since the cache is an
    /// optimisation of `compute`, not its owner. Concurrent callers on a miss may each compute;
    /// [`Cache::get_or_compute_typed`] computes once across threads and processes, at the
    /// price of a lease commit per miss.
    pub fn get_or_insert_with<K, E, F>(
        &self,
        key: &K,
        compute: F,
    ) -> std::result::Result<K::Value, E>
    where
        K: CacheKey,
        E: From<CacheError>,
        F: FnOnce() -> std::result::Result<K::Value, E>,
    {
        if let Some(value) = self.get_typed(key)? {
            return Ok(value);
        }
        let value = compute()?;
        if let Err(err) = self.set_typed(key, &value) {
            tracing::warn!(tag = %self.tag(), key = %KeyDisplay::new(&key.key_bytes()), error = %ErrorChain(&err), "computed value could not be cached");
        }
        Ok(value)
    }

    /// The cached value, or `compute`'s result stored with the key's default time to live; on a
    /// miss, exactly one caller on the machine computes and the others wait and receive what it
    /// stored ([`Cache::single_flight`]: bounded by the instance's `timeout`, retries after a failed
    /// computation, lease takeover when its owner dies).
    ///
    /// A failure to store the computed value does not lose it: the computing caller gets it and
    /// the failure is logged.
    pub fn get_or_compute_typed<K, E, F>(
        &self,
        key: &K,
        compute: F,
    ) -> std::result::Result<K::Value, E>
    where
        K: CacheKey,
        E: From<CacheError> + Display,
        F: FnOnce() -> std::result::Result<K::Value, E>,
    {
        self.get_or_compute_typed_with_ttl(key, key.default_ttl(), compute)
    }

    /// [`Cache::get_or_compute_typed`] storing the computed value with `ttl`.
    pub fn get_or_compute_typed_with_ttl<K, E, F>(
        &self,
        key: &K,
        ttl: Option<Duration>,
        compute: F,
    ) -> std::result::Result<K::Value, E>
    where
        K: CacheKey,
        E: From<CacheError> + Display,
        F: FnOnce() -> std::result::Result<K::Value, E>,
    {
        check_tag::<K>(self)?;
        let bytes = key.key_bytes();
        self.single_flight(
            &bytes,
            || self.get_typed(key).map_err(E::from),
            || {
                let value = compute()?;
                if let Err(err) = self.set_typed_with_ttl(key, &value, ttl) {
                    tracing::warn!(tag = %self.tag(), key = %KeyDisplay::new(&bytes), error = %ErrorChain(&err), "computed value could not be cached");
                }
                Ok(value)
            },
        )
    }
}

fn check_tag<K: CacheKey>(cache: &Cache) -> Result<()> {
    if cache.tag().as_str() == K::TAG {
        Ok(())
    } else {
        Err(CacheError::WrongTag {
            tag: cache.tag().to_string(),
            key_tag: K::TAG.to_owned(),
        })
    }
}
