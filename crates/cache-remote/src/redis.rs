//! The Redis/Valkey engine: one connection, made on first use and again after an I/O error,
//! with connect, read and write timeouts. Envelopes and chunks are strings with `PX` expiry; a
//! bounded envelope read is `STRLEN` + `GETRANGE` in one round trip; a chunk already there has
//! its expiry extended (`PEXPIRE ... GT`, or `PERSIST`). Leases are `SET NX PX` with
//! compare-and-expire and compare-and-delete scripts.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, RedisError, RedisResult};

use crate::engine::{Engine, EngineError, FaultKind, Leases};

const RENEW: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

pub(crate) struct RedisEngine {
    client: Client,
    connection: Mutex<Option<Connection>>,
    connect_timeout: Duration,
    operation_timeout: Duration,
}

impl std::fmt::Debug for RedisEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngine").finish_non_exhaustive()
    }
}

fn fault(err: &RedisError) -> EngineError {
    let kind = if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() {
        FaultKind::Unreachable {
            timeout: err.is_timeout(),
        }
    } else if err.code() == Some("NOPERM") {
        FaultKind::Refused
    } else {
        FaultKind::Answered
    };
    EngineError::new(kind, err.to_string())
}

impl RedisEngine {
    pub(crate) fn new(
        client: Client,
        connect_timeout: Duration,
        operation_timeout: Duration,
    ) -> Self {
        RedisEngine {
            client,
            connection: Mutex::new(None),
            connect_timeout,
            operation_timeout,
        }
    }

    /// Runs `operation` on the connection, connecting first if needed; a failure to reach the
    /// server drops the connection.
    fn call<T>(
        &self,
        operation: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, EngineError> {
        let mut guard = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let connection = match guard.as_mut() {
            Some(connection) => connection,
            None => guard.insert(self.connect().map_err(|err| fault(&err))?),
        };
        let result = operation(connection).map_err(|err| fault(&err));
        if let Err(EngineError {
            kind: FaultKind::Unreachable { .. },
            ..
        }) = &result
        {
            *guard = None;
        }
        result
    }

    fn connect(&self) -> RedisResult<Connection> {
        let connection = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        connection.set_read_timeout(Some(self.operation_timeout))?;
        connection.set_write_timeout(Some(self.operation_timeout))?;
        Ok(connection)
    }
}

fn set(connection: &mut Connection, name: &str, bytes: &[u8], px: Option<u64>) -> RedisResult<()> {
    let mut command = redis::cmd("SET");
    command.arg(name).arg(bytes);
    if let Some(px) = px {
        command.arg("PX").arg(px);
    }
    command.query(connection)
}

impl Engine for RedisEngine {
    fn get_envelope(&self, name: &str, max: usize) -> Result<Option<(u64, Vec<u8>)>, EngineError> {
        // The length and at most `max` bytes, in one round trip: nothing larger is allocated.
        let (len, bytes) = self.call(|connection| {
            redis::pipe()
                .cmd("STRLEN")
                .arg(name)
                .cmd("GETRANGE")
                .arg(name)
                .arg(0)
                .arg(max.saturating_sub(1))
                .query::<(u64, Vec<u8>)>(connection)
        })?;
        Ok((len > 0).then_some((len, bytes)))
    }

    fn get_chunk(
        &self,
        name: &str,
        _max: usize,
        _spare: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        // A chunk is at most the chunk size this cache writes (Redis strings are what we put).
        self.call(|connection| {
            redis::cmd("GET")
                .arg(name)
                .query::<Option<Vec<u8>>>(connection)
        })
    }

    fn put_envelope(&self, name: &str, bytes: &[u8], px: Option<u64>) -> Result<(), EngineError> {
        self.call(|connection| set(connection, name, bytes, px))
    }

    fn keep_chunk(&self, name: &str, px: Option<u64>) -> Result<bool, EngineError> {
        self.call(|connection| {
            // A chunk the server has (shared with other entries) is kept at least as long as
            // this entry: a longer expiry or none at all stays.
            match px {
                Some(px) => {
                    let _: i64 = redis::cmd("PEXPIRE")
                        .arg(name)
                        .arg(px)
                        .arg("GT")
                        .query(connection)?;
                }
                None => {
                    let _: i64 = redis::cmd("PERSIST").arg(name).query(connection)?;
                }
            }
            let exists: i64 = redis::cmd("EXISTS").arg(name).query(connection)?;
            Ok(exists == 1)
        })
    }

    fn put_chunk(&self, name: &str, bytes: &[u8], px: Option<u64>) -> Result<(), EngineError> {
        self.call(|connection| set(connection, name, bytes, px))
    }

    fn leases(&self) -> Option<&dyn Leases> {
        Some(self)
    }
}

impl Leases for RedisEngine {
    fn take(&self, name: &str, token: &str, ms: u64) -> Result<bool, EngineError> {
        self.call(|connection| {
            redis::cmd("SET")
                .arg(name)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query::<Option<String>>(connection)
        })
        .map(|taken| taken.is_some())
    }

    fn renew(&self, name: &str, token: &str, ms: u64) -> Result<bool, EngineError> {
        self.call(|connection| {
            redis::cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(name)
                .arg(token)
                .arg(ms)
                .query::<i64>(connection)
        })
        .map(|renewed| renewed != 0)
    }

    fn release(&self, name: &str, token: &str) -> Result<(), EngineError> {
        self.call(|connection| {
            redis::cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(name)
                .arg(token)
                .query::<i64>(connection)
        })
        .map(|_| ())
    }
}
