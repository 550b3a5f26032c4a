//! The workers' links to MySQL and Redis.
//!
//! Each worker owns one [`mysql::MysqlLink`] and one [`redis::RedisLink`]: a
//! connection that is made on first use, replaced when it breaks, and retried
//! with backoff while the server is down, so that a missing dependency costs a
//! request a quick `Unavailable` instead of a hung worker, and service resumes by
//! itself when the dependency comes back.

pub mod avatars;
pub mod logins;
pub mod mysql;
pub mod redis;
pub mod redis_batch;
pub mod slot;
pub mod users;

use std::time::{Duration, Instant};

/// How long a worker waits for a TCP connection to MySQL or Redis. Both run on
/// this machine or next to it, where a healthy server accepts in microseconds:
/// one second means "down", and the request gets `Unavailable` promptly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a worker waits for one reply from MySQL or Redis. Every statement
/// here is a point lookup or a one-row write; three seconds of silence means the
/// server is stuck, and the worker gives up rather than hang with it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// First wait after a failed connection attempt.
const BACKOFF_MIN: Duration = Duration::from_millis(50);

/// Longest wait between attempts: a dependency that comes back is in use again
/// within a second, while sixteen workers cost a down server at most sixteen
/// connection attempts a second.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// When the next connection attempt is allowed.
#[derive(Debug, Default)]
struct Backoff {
    delay: Option<Duration>,
    next_attempt: Option<Instant>,
}

impl Backoff {
    /// Whether an attempt may be made now.
    fn ready(&self, now: Instant) -> bool {
        self.next_attempt.is_none_or(|at| now >= at)
    }

    /// Records a failed attempt: the wait doubles, up to [`BACKOFF_MAX`].
    fn failed(&mut self, now: Instant) {
        let delay = self.delay.map_or(BACKOFF_MIN, |d| (d * 2).min(BACKOFF_MAX));
        self.delay = Some(delay);
        self.next_attempt = Some(now + delay);
    }

    /// Records a successful attempt.
    fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

/// A lazily made connection of one worker to one dependency, remade after it
/// breaks, with [`Backoff`] between failed attempts. An outage is logged once
/// when it starts and once when it ends, whatever the dependency.
#[derive(Debug)]
struct Reconnecting<C> {
    conn: Option<C>,
    backoff: Backoff,
    /// Whether the last connection attempt failed.
    down: bool,
    /// `MySQL` or `Redis`, for the log.
    name: &'static str,
    /// The owning worker's number, for the log.
    worker: usize,
}

impl<C> Reconnecting<C> {
    fn new(name: &'static str, worker: usize) -> Reconnecting<C> {
        Reconnecting { conn: None, backoff: Backoff::default(), down: false, name, worker }
    }

    /// Whether a connection is open (and so would be reused).
    fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    /// The open connection, making one with `connect` if there is none and the
    /// backoff allows an attempt; `None` when there is no connection to use.
    fn get<E: std::fmt::Display>(&mut self, connect: impl FnOnce() -> Result<C, E>) -> Option<&mut C> {
        if self.conn.is_none() {
            let now = Instant::now();
            if !self.backoff.ready(now) {
                return None;
            }
            match connect() {
                Ok(conn) => {
                    crate::metrics::CONNECTS[crate::metrics::Dependency::of(self.name) as usize].add(1);
                    if self.down {
                        crate::log!("worker {}: {} connection restored", self.worker, self.name);
                        self.down = false;
                    }
                    self.backoff.succeeded();
                    self.conn = Some(conn);
                }
                Err(e) => {
                    if !self.down {
                        crate::log!("worker {}: cannot connect to {}: {e}", self.worker, self.name);
                        self.down = true;
                    }
                    self.backoff.failed(now);
                    return None;
                }
            }
        }
        self.conn.as_mut()
    }

    /// Forgets a connection that failed; the next [`Reconnecting::get`] makes a new one.
    fn forget(&mut self) {
        self.conn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_resets_on_success() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert!(b.ready(t0));
        b.failed(t0);
        assert!(!b.ready(t0));
        assert!(b.ready(t0 + BACKOFF_MIN));
        for _ in 0..20 {
            b.failed(t0);
        }
        assert!(!b.ready(t0 + BACKOFF_MAX - Duration::from_millis(1)));
        assert!(b.ready(t0 + BACKOFF_MAX));
        b.succeeded();
        assert!(b.ready(t0));
    }
}
