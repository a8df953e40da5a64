//! One connection to the server, made on first use and again after an I/O error, with connect,
//! read and write timeouts, behind the breaker.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, RedisResult};

use crate::breaker::Breaker;
use crate::stats::Stats;

/// What an operation through a link came to.
pub(crate) enum Outcome<T> {
    /// The server answered.
    Done(T),
    /// The breaker is open: nothing was attempted.
    Skipped,
    /// The server could not be reached, or answered with an error.
    Failed(redis::RedisError),
}

pub(crate) struct Link {
    client: Client,
    connection: Mutex<Option<Connection>>,
    connect_timeout: Duration,
    operation_timeout: Duration,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Link {
    pub(crate) fn new(
        client: Client,
        connect_timeout: Duration,
        operation_timeout: Duration,
    ) -> Self {
        Link {
            client,
            connection: Mutex::new(None),
            connect_timeout,
            operation_timeout,
        }
    }

    /// Runs `operation` on the connection, through `breaker`: skipped while it is open; a failure
    /// to reach the server counts against it, and drops the connection.
    pub(crate) fn run<T>(
        &self,
        breaker: &Breaker,
        stats: &Stats,
        operation: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Outcome<T> {
        if !breaker.admit() {
            Stats::add(&stats.skipped, 1);
            return Outcome::Skipped;
        }
        let mut guard = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            match self.connect() {
                Ok(connection) => *guard = Some(connection),
                Err(err) => {
                    self.unreachable(breaker, stats, &err);
                    return Outcome::Failed(err);
                }
            }
        }
        let Some(connection) = guard.as_mut() else {
            return Outcome::Skipped;
        };
        match operation(connection) {
            Ok(value) => {
                breaker.succeeded();
                Outcome::Done(value)
            }
            Err(err) => {
                if err.is_io_error() || err.is_timeout() || err.is_connection_dropped() {
                    *guard = None;
                    self.unreachable(breaker, stats, &err);
                } else {
                    // The server answered (with an error): it is up.
                    breaker.succeeded();
                    Stats::add(&stats.errors, 1);
                }
                Outcome::Failed(err)
            }
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let connection = self
            .client
            .get_connection_with_timeout(self.connect_timeout)?;
        connection.set_read_timeout(Some(self.operation_timeout))?;
        connection.set_write_timeout(Some(self.operation_timeout))?;
        Ok(connection)
    }

    fn unreachable(&self, breaker: &Breaker, stats: &Stats, err: &redis::RedisError) {
        Stats::add(&stats.errors, 1);
        if err.is_timeout() {
            Stats::add(&stats.timeouts, 1);
        }
        if breaker.failed() {
            tracing::warn!(error = %err, "the remote cache is unreachable; skipping it for a while");
        }
    }
}
