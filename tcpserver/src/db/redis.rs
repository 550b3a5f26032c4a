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
use crate::metrics::Dependency;

/// Whether an error means the connection is unusable or Redis unreachable, as
/// opposed to a command Redis refused.
pub fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_unrecoverable_error()
        || e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
}

/// What is wrong with Redis's memory settings for this server, if anything.
///
/// Everything the server keeps in Redis has a TTL, so every `volatile-*`
/// and `allkeys-*` policy may evict a throttle counter, which would hand a
/// guesser fresh attempts, or a session index, which would lift the cap.
/// Only `noeviction` loses nothing: at the limit Redis refuses writes and
/// the server answers 503 until memory is free. The limit itself bounds
/// what a flood could take from the machine (the throttles and the session
/// cap bound what one account or address can store).
///
/// The scripts that add to Redis start with `#!lua`, which makes Redis refuse
/// such a script as a whole while it is at its limit, never half of it; the
/// read-only log-in lookup says `flags=no-writes` and runs anyway. The session
/// resume script is left without the line on purpose: its only write is
/// `GETEX`'s new TTL, which takes no memory, so profile reads go on while
/// Redis is full.
pub fn memory_warning(maxmemory: u64, policy: &str) -> Option<String> {
    if policy != "noeviction" {
        return Some(format!(
            "maxmemory-policy is {policy:?}: it may evict throttle counters and session indexes; \
             set it to noeviction"
        ));
    }
    (maxmemory == 0).then(|| {
        "maxmemory is 0 (unbounded): a flood of writes could take all the machine's memory; \
         set a limit (scripts/services.sh does)"
            .to_owned()
    })
}

/// Whether Redis refused a write for want of memory (`OOM`: at `maxmemory`
/// with `noeviction`), alone or as one command of a pipeline.
pub fn is_out_of_memory(e: &redis::RedisError) -> bool {
    e.code() == Some("OOM")
        || e.clone().into_server_errors().is_some_and(|errors| errors.iter().any(|(_, e)| e.code() == "OOM"))
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
    /// The first worker also checks how Redis is set to handle running out
    /// of memory ([`memory_warning`]) and logs what is wrong with it.
    pub fn warm_up(&mut self) {
        if self.link.worker != 0 {
            let _ = self.conn();
            return;
        }
        let settings =
            self.run(|c| redis::cmd("CONFIG").arg("GET").arg("maxmemory*").query::<Vec<String>>(c));
        let setting = |settings: &[String], name: &str| {
            settings.chunks_exact(2).find(|pair| pair[0] == name).map(|pair| pair[1].clone())
        };
        match settings {
            Ok(settings) => {
                let maxmemory = setting(&settings, "maxmemory").and_then(|v| v.parse().ok()).unwrap_or(0);
                let policy = setting(&settings, "maxmemory-policy").unwrap_or_default();
                if let Some(warning) = memory_warning(maxmemory, &policy) {
                    crate::log!("Redis: {warning}");
                }
            }
            // Managed Redis services often rename CONFIG: nothing to check then.
            Err(e) if !is_connection_error(&e) => {
                crate::log!("Redis: cannot read its memory settings ({e}); make sure of them by hand")
            }
            Err(_) => {}
        }
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
        crate::metrics::DEPENDENCY_ERRORS[Dependency::Redis as usize].add(1);
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
        crate::metrics::ROUND_TRIPS[Dependency::Redis as usize].add(1);
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

#[cfg(test)]
mod tests {
    use super::memory_warning;

    #[test]
    fn only_a_bounded_noeviction_redis_is_left_alone() {
        assert_eq!(memory_warning(4 << 30, "noeviction"), None);
        assert!(memory_warning(0, "noeviction").unwrap().contains("unbounded"));
        for evicting in ["allkeys-lru", "volatile-lru", "volatile-ttl", "allkeys-random"] {
            assert!(memory_warning(4 << 30, evicting).unwrap().contains("noeviction"), "{evicting}");
        }
    }
}
