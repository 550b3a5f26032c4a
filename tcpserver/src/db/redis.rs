//! One worker's Redis connection.
//!
//! Like [`super::mysql`], the connection is made on first use and replaced
//! when it breaks. Every command the server sends is safe to repeat (sets with
//! a fixed value, deletes, version-guarded cache writes, and set-based counters
//! whose members are unique per attempt), so an operation whose reused
//! connection turns out to be dead simply runs once more on a new one.

use std::io;

use redis::{Client, Connection, RedisResult};

use super::{CONNECT_TIMEOUT, IO_TIMEOUT, Reconnecting};

/// Whether an error means the connection is unusable or Redis unreachable, as
/// opposed to a command Redis refused.
pub fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_unrecoverable_error()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
}

/// Whether running the operation again on a new connection may help.
fn is_retryable(e: &redis::RedisError) -> bool {
    is_connection_error(e) && !e.is_timeout()
}

fn not_connected() -> redis::RedisError {
    redis::RedisError::from(io::Error::new(io::ErrorKind::NotConnected, "Redis is unreachable"))
}

/// A lazily made, self-repairing Redis connection.
pub struct RedisLink {
    client: Client,
    link: Reconnecting<Connection>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("connected", &self.link.is_open())
            .field("down", &self.link.down)
            .field("worker", &self.link.worker)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A link that connects on first use.
    pub fn new(client: Client, worker: usize) -> RedisLink {
        RedisLink { client, link: Reconnecting::new("Redis", worker) }
    }

    /// Connects now; a failure is logged and left for the next use to retry.
    pub fn warm_up(&mut self) {
        let _ = self.conn();
    }

    fn conn(&mut self) -> RedisResult<&mut Connection> {
        let client = &self.client;
        self.link
            .get(|| {
                let conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                conn.set_read_timeout(Some(IO_TIMEOUT))?;
                conn.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok::<_, redis::RedisError>(conn)
            })
            .ok_or_else(not_connected)
    }

    fn discard_if_broken(&mut self, e: &redis::RedisError, reused: bool) -> bool {
        if !is_connection_error(e) {
            return false;
        }
        self.link.forget();
        let retry = reused && is_retryable(e);
        if retry {
            crate::log!("worker {}: idle Redis connection was lost ({e}); reconnecting", self.link.worker);
        }
        retry
    }

    /// Runs an operation (one command or one pipeline), once more on a new
    /// connection if the reused one turns out to be dead.
    ///
    /// # Errors
    ///
    /// The operation's error, or a connectivity error if Redis cannot be reached.
    pub fn run<T>(&mut self, mut op: impl FnMut(&mut Connection) -> RedisResult<T>) -> RedisResult<T> {
        let reused = self.link.is_open();
        let result = op(self.conn()?);
        match result {
            Err(e) if self.discard_if_broken(&e, reused) => {
                let result = op(self.conn()?);
                if let Err(e) = &result {
                    self.discard_if_broken(e, false);
                }
                result
            }
            other => other,
        }
    }

    /// Runs a pipeline of `EVALSHA`s (and other commands) as [`RedisLink::run`]
    /// does; if Redis has lost a script (a restart empties its script cache),
    /// loads `scripts` and sends the pipeline once more. Every script here only
    /// reads or writes idempotently, so a second sending is harmless.
    ///
    /// # Errors
    ///
    /// As [`RedisLink::run`].
    pub fn run_scripts<T: redis::FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
        scripts: &[&redis::Script],
    ) -> RedisResult<T> {
        self.run(|c| match pipe.query::<T>(c) {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                for script in scripts {
                    script.load(c)?;
                }
                pipe.query(c)
            }
            other => other,
        })
    }
}
