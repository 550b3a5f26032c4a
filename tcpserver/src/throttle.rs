//! Throttling of log-ins, sign-ups and uploads, with counters in Redis.
//!
//! A counter is a Redis sorted set with one member per attempt and a TTL equal
//! to its window, started by the first attempt (a fixed window). A member per
//! attempt rather than `INCR` makes counting idempotent: when a command has to
//! be sent again over a new connection, the same member is added twice and
//! counted once.
//!
//! **Counted before the work, so the limits hold under concurrency.** An
//! attempt is admitted by [`ADMIT`], one Lua script per counter that checks
//! the count and adds the attempt in one atomic step, *before* its password
//! is hashed: with five guesses allowed, five concurrent guesses are admitted
//! and the sixth is refused without costing a hash, however many arrive at
//! the same moment and however the workers batch them. (Reading the counts,
//! hashing, then counting would judge every guess in flight against the count
//! from before any of them failed.)
//!
//! A failed-log-in counter therefore counts attempts not known to have
//! succeeded: an admitted attempt holds its place with score 0 (in flight);
//! when it fails, its score becomes the time it failed, in microseconds ([`mark_failed`]);
//! when it succeeds, it leaves the counter, and a user's success also removes
//! the failures that *ended before that log-in began* (a person who mistypes
//! and then gets it right starts afresh), never those still in flight or
//! recorded beside it, so a success in a batch of guesses does not reset them.
//! An attempt that could not be checked (MySQL down) leaves too ([`release`]).
//!
//! While a counter is at its limit, a request is refused before anything else
//! is done, with the time left on the window as `retry_after_secs`. Counters
//! are per username and per client address, so an attack on one account never
//! slows another user's log-in.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use redis::{Pipeline, Script};

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

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.max_attempts, self.window_secs)
    }
}

/// Why a `<attempts>/<seconds>` setting does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLimit;

impl FromStr for Limit {
    type Err = BadLimit;

    /// `<attempts>/<seconds>`, both positive: `5/300` is five per five minutes.
    fn from_str(s: &str) -> Result<Limit, BadLimit> {
        let (max, window) = s.split_once('/').ok_or(BadLimit)?;
        let max_attempts: u64 = max.trim().parse().map_err(|_| BadLimit)?;
        let window_secs: u64 = window.trim().parse().map_err(|_| BadLimit)?;
        if max_attempts == 0 || window_secs == 0 {
            return Err(BadLimit);
        }
        Ok(Limit { max_attempts, window_secs })
    }
}

/// Failed log-ins per username: five guesses per five minutes makes online
/// guessing hopeless while a person who mistypes is held up for minutes at worst.
pub const LOGIN_FAILURES_PER_USER: Limit = Limit { max_attempts: 5, window_secs: 5 * 60 };

/// Failed log-ins per client address: higher than per user, because many people
/// can share an address (an office, a carrier NAT), but it stops one machine
/// from trying one password against many accounts.
pub const LOGIN_FAILURES_PER_ADDR: Limit = Limit { max_attempts: 50, window_secs: 5 * 60 };

/// Successful log-ins per account: every log-in opens a session that Redis
/// keeps for up to a day, so an account logging in in a loop (its password
/// known, as the demo accounts' are) would fill Redis. Thirty in ten minutes
/// is more than any person signing in on their devices needs.
pub const LOGINS_PER_USER: Limit = Limit { max_attempts: 30, window_secs: 10 * 60 };

/// Successful log-ins per client address: a busy office or a carrier NAT logs
/// many people in, so this is twenty times the per-account figure (one a
/// second on average); it bounds the sessions one machine can create across
/// many accounts whose passwords it has.
pub const LOGINS_PER_ADDR: Limit = Limit { max_attempts: 600, window_secs: 10 * 60 };

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

/// Scan-to-log-in codes made per client address: sixty in ten minutes. A
/// desktop's log-in page makes one when it opens and one each time a code
/// expires (every two minutes), so a few people on one network behind one
/// address stay far below it, while one address cannot fill Redis with codes.
pub const QR_CODES_PER_ADDR: Limit = Limit { max_attempts: 60, window_secs: 10 * 60 };

/// The limits a server applies; each one is a setting (`--login-failures-per-user`
/// and so on), defaulting to the constants above. A benchmark that sends
/// thousands of log-ins a second from one address raises them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failed log-ins per username.
    pub failures_per_user: Limit,
    /// Failed log-ins per client address.
    pub failures_per_addr: Limit,
    /// Successful log-ins per account.
    pub logins_per_user: Limit,
    /// Successful log-ins per client address.
    pub logins_per_addr: Limit,
    /// Sign-up attempts per client address.
    pub signups_per_addr: Limit,
    /// Scan-to-log-in codes made per client address.
    pub qr_codes_per_addr: Limit,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            failures_per_user: LOGIN_FAILURES_PER_USER,
            failures_per_addr: LOGIN_FAILURES_PER_ADDR,
            logins_per_user: LOGINS_PER_USER,
            logins_per_addr: LOGINS_PER_ADDR,
            signups_per_addr: SIGNUPS_PER_ADDR,
            qr_codes_per_addr: QR_CODES_PER_ADDR,
        }
    }
}

/// KEYS[1] = a counter; ARGV = member, max attempts, window seconds. Adds the
/// member (score 0: in flight) unless the counter is at its limit. Returns 0
/// when admitted (also when the member is already in: a resent command), else
/// the seconds until the window ends.
const ADMIT: &str = r"#!lua
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 0
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 1 then
    ttl = tonumber(ARGV[3])
  end
  return ttl
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3], 'NX')
return 0
";

/// [`ADMIT`], sent by its SHA-1 once Redis has it.
pub static ADMIT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(ADMIT));

/// One attempt's identity in its counters: random, so that two attempts never
/// share a member, and the same for every counter the attempt is counted in.
pub fn new_member() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Adds the admission of `member` on each counter to a pipeline: one reply per
/// counter, in order, for [`admitted`].
pub fn admit_cmds(pipe: &mut Pipeline, counters: &[(String, Limit)], member: &str) {
    for (key, limit) in counters {
        pipe.cmd("EVALSHA")
            .arg(ADMIT_SCRIPT.get_hash())
            .arg(1)
            .arg(key)
            .arg(member)
            .arg(limit.max_attempts)
            .arg(limit.window_secs);
    }
}

/// The verdict on one attempt, from its counters' [`ADMIT`] replies in order.
///
/// # Errors
///
/// [`Error::TooManyAttempts`] if any counter refused it. The counters that
/// admitted it still hold it: the caller [`release`]s them.
pub fn admitted(replies: &[i64]) -> Result<(), Error> {
    match replies.iter().copied().max() {
        Some(wait) if wait > 0 => {
            crate::metrics::THROTTLED.add(1);
            Err(Error::TooManyAttempts { retry_after_secs: u32::try_from(wait).unwrap_or(u32::MAX) })
        }
        _ => Ok(()),
    }
}

/// Counts one attempt on every counter, atomically per counter, unless one of
/// them is at its limit (then the attempt is counted nowhere).
///
/// # Errors
///
/// [`Error::TooManyAttempts`] past a limit, or [`Error::Unavailable`] if Redis
/// is down.
pub fn admit(redis: &mut RedisLink, counters: &[(String, Limit)]) -> Result<(), Error> {
    if counters.is_empty() {
        return Ok(());
    }
    let member = new_member();
    let mut pipe = redis::pipe();
    admit_cmds(&mut pipe, counters, &member);
    let replies: Vec<i64> = redis.run_scripts(&pipe, &[&ADMIT_SCRIPT])?;
    let verdict = admitted(&replies);
    if verdict.is_err() {
        let mut undo = redis::pipe();
        release(&mut undo, counters, &member);
        redis.run(|c| undo.query::<()>(c))?;
    }
    verdict
}

/// Refuses with [`Error::TooManyAttempts`] if any counter is at its limit, given
/// each counter's count and `TTL` replies in order (`counts[2 * i]` and
/// `counts[2 * i + 1]` for `counters[i]`). A read-only check, for requests that
/// may be answered without a hash (a log-in the verified cache vouches for).
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
            crate::metrics::THROTTLED.add(1);
            Err(Error::TooManyAttempts { retry_after_secs: u32::try_from(secs).unwrap_or(u32::MAX) })
        }
        None => Ok(()),
    }
}

/// Adds the commands that record an admitted attempt as failed at `now_us`
/// (microseconds since the epoch) to a pipeline (`XX`: a counter whose
/// window ended meanwhile is not revived).
pub fn mark_failed(pipe: &mut Pipeline, counters: &[(String, Limit)], member: &str, now_us: u64) {
    for (key, _) in counters {
        pipe.cmd("ZADD").arg(key).arg("XX").arg(now_us).arg(member).ignore();
    }
}

/// Adds the commands that take an admitted attempt out of its counters again
/// (it succeeded, or could not be checked) to a pipeline.
pub fn release(pipe: &mut Pipeline, counters: &[(String, Limit)], member: &str) {
    for (key, _) in counters {
        pipe.cmd("ZREM").arg(key).arg(member).ignore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_attempts_per_seconds() {
        assert_eq!("5/300".parse(), Ok(Limit { max_attempts: 5, window_secs: 300 }));
        assert_eq!(LOGINS_PER_ADDR.to_string().parse(), Ok(LOGINS_PER_ADDR));
        for bad in ["", "5", "5/", "/300", "0/300", "5/0", "-1/300", "five/300"] {
            assert_eq!(bad.parse::<Limit>(), Err(BadLimit), "{bad}");
        }
    }

    #[test]
    fn an_attempt_refused_by_any_counter_waits_for_the_longest() {
        assert!(admitted(&[0, 0]).is_ok());
        assert!(admitted(&[]).is_ok());
        assert!(matches!(admitted(&[0, 17, 9]), Err(Error::TooManyAttempts { retry_after_secs: 17 })));
    }
}
