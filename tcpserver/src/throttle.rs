//! Throttling of failed log-ins, of sign-ups and of picture uploads, with
//! counters in Redis.
//!
//! A counter is a Redis set with one random member per attempt and a TTL equal
//! to its window, started by the first attempt (a fixed window). A set rather
//! than `INCR` makes recording an attempt idempotent: when a command has to be
//! sent again over a new connection, the same member is added twice and
//! counted once.
//!
//! While a counter is at its limit, the request is refused before any password
//! is checked, with the time left on the window as `retry_after_secs`. Counters
//! are per username and per client address, so an attack on one account never
//! slows another user's log-in.

use redis::Pipeline;

use crate::db::redis::RedisLink;
use crate::error::Error;

/// A limit: at most `max_attempts` within `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Attempts allowed per window.
    pub max_attempts: u64,
    /// Window length in seconds.
    pub window_secs: u64,
}

/// Failed log-ins per username: five guesses per five minutes makes online
/// guessing hopeless while a person who mistypes is held up for minutes at worst.
pub const LOGIN_FAILURES_PER_USER: Limit = Limit { max_attempts: 5, window_secs: 5 * 60 };

/// Failed log-ins per client address: higher than per user, because many people
/// can share an address (an office, a carrier NAT), but it stops one machine
/// from trying one password against many accounts.
pub const LOGIN_FAILURES_PER_ADDR: Limit = Limit { max_attempts: 50, window_secs: 5 * 60 };

/// Sign-up attempts per client address: a household signs up a few accounts; a
/// script signing up thousands is slowed to 20 per 10 minutes.
pub const SIGNUPS_PER_ADDR: Limit = Limit { max_attempts: 20, window_secs: 10 * 60 };

/// Pictures accepted per account: ten an hour. A person choosing a picture
/// tries a few (a crop, another photo) and then keeps one for months, so ten
/// never stand in their way; a script re-uploading a 2 MiB picture with one
/// byte changed is held to 20 MiB of writes, fsyncs and hashing an hour per
/// account instead of as fast as the disk goes. (Replaced pictures are
/// deleted, so what an account keeps on disk is one picture; the free-space
/// floor, `--avatar-min-free-mb`, bounds what many accounts together can use.)
pub const AVATAR_UPLOADS_PER_USER: Limit = Limit { max_attempts: 10, window_secs: 60 * 60 };

/// Refuses with [`Error::TooManyAttempts`] if any counter is at its limit.
///
/// # Errors
///
/// [`Error::TooManyAttempts`], or [`Error::Unavailable`] if Redis is down.
pub fn check(redis: &mut RedisLink, counters: &[(String, Limit)]) -> Result<(), Error> {
    if counters.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for (key, _) in counters {
        pipe.cmd("SCARD").arg(key).cmd("TTL").arg(key);
    }
    let replies: Vec<i64> = redis.run(|c| pipe.query(c))?;
    verdict(counters, &replies)
}

/// Refuses with [`Error::TooManyAttempts`] if any counter is at its limit, given
/// each counter's `SCARD` and `TTL` replies in order (`counts[2 * i]` and
/// `counts[2 * i + 1]` for `counters[i]`).
///
/// # Errors
///
/// [`Error::TooManyAttempts`].
pub fn verdict(counters: &[(String, Limit)], counts: &[i64]) -> Result<(), Error> {
    let mut retry_after = None;
    for ((_, limit), pair) in counters.iter().zip(counts.chunks_exact(2)) {
        let &[count, ttl] = pair else { continue };
        if count >= 0 && count as u64 >= limit.max_attempts {
            // A negative TTL (no expiry set) cannot normally happen; wait a window.
            let wait = if ttl > 0 { ttl as u64 } else { limit.window_secs };
            retry_after = Some(retry_after.unwrap_or(0).max(wait));
        }
    }
    match retry_after {
        Some(secs) => {
            Err(Error::TooManyAttempts { retry_after_secs: u32::try_from(secs).unwrap_or(u32::MAX) })
        }
        None => Ok(()),
    }
}

/// Counts one attempt on every counter.
///
/// # Errors
///
/// [`Error::Unavailable`] if Redis is down.
pub fn record(redis: &mut RedisLink, counters: &[(String, Limit)]) -> Result<(), Error> {
    if counters.is_empty() {
        return Ok(());
    }
    let member = format!("{:016x}", rand::random::<u64>());
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (key, limit) in counters {
        pipe.cmd("SADD").arg(key).arg(&member).ignore();
        // NX: only the first attempt starts the window.
        pipe.cmd("EXPIRE").arg(key).arg(limit.window_secs).arg("NX").ignore();
    }
    redis.run(|c| pipe.query::<()>(c))?;
    Ok(())
}

/// Refuses with [`Error::TooManyAttempts`] if any counter is at its limit, and
/// otherwise counts this attempt on every counter.
///
/// PROVISIONAL: [`check`] followed by [`record`], two round trips, so callers
/// racing each other can each pass the check before any records, and a limit
/// can be passed by the number of requests in flight for the same counter. The
/// atomic version (one script that checks and counts) replaces this one at the
/// merge; callers need not change.
///
/// # Errors
///
/// [`Error::TooManyAttempts`], or [`Error::Unavailable`] if Redis is down.
pub fn admit(redis: &mut RedisLink, counters: &[(String, Limit)]) -> Result<(), Error> {
    check(redis, counters)?;
    record(redis, counters)
}

/// Adds the command that resets a counter to a pipeline.
pub fn clear(pipe: &mut Pipeline, key: &str) {
    pipe.cmd("DEL").arg(key).ignore();
}
