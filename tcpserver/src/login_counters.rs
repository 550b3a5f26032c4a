//! The counters a log-in is judged by, in the two hash slots they live in:
//! the account's and the client address's ([`crate::keys`]).
//!
//! Each side has three keys: the failures (a sorted set of attempts not
//! known to have succeeded, [`crate::throttle`]), the count of successful
//! log-ins (one number: a busy address stays one key), and the log-ins *in
//! flight* (a sorted set of the attempts holding a place under the success
//! limit). A log-in takes its places on both sides in the batch's first
//! round trip, before any hash, one script per side in the same pipeline:
//! for the account [`crate::login_record::lookup`] (which also reads the
//! log-in record), for the address `RESERVE`. A side at a limit refuses,
//! and whatever the other side took is given back in the batch's last
//! pipeline. So each limit holds exactly: successes plus log-ins in flight
//! never pass the success limit, failures plus attempts in flight never pass
//! the failure limit, however many log-ins arrive at once on however many
//! servers.
//!
//! The one cost of two slots: while a log-in refused on one side still holds
//! its place on the other (until the batch ends, a few milliseconds), a
//! second log-in may be refused for want of that place. That needs both
//! limits to be reached at the same moment, and refuses too much, never too
//! little.
//!
//! A success leaves its in-flight places and is counted (`SUCCEED`, which
//! adds to the count only when the place it leaves was there: a resent
//! script counts nothing twice); a failure or refusal only leaves them
//! ([`release_in_flight`]). Places older than
//! [`crate::throttle::IN_FLIGHT_MAX_MS`] were left by a batch that failed
//! and are purged by the next look that finds their counter full, the only
//! time they could refuse anyone.

use std::net::IpAddr;
use std::sync::LazyLock;

use crate::db::redis::{Batch, LuaScript};
use crate::keys::Keys;
use crate::throttle::{Limit, Limits, in_flight_script};

/// One side's counters, with their limits.
#[derive(Debug, Clone)]
pub struct LoginCounters {
    /// Attempts not known to have succeeded.
    pub failures: String,
    /// The failure limit.
    pub failure_limit: Limit,
    /// The count of successful log-ins.
    pub successes: String,
    /// Log-ins in flight holding a place under the success limit.
    pub in_flight: String,
    /// The success limit.
    pub success_limit: Limit,
}

impl LoginCounters {
    /// A username's counters (the account's slot).
    pub fn of_user(keys: &Keys, limits: &Limits, username: &str) -> LoginCounters {
        LoginCounters {
            failures: keys.login_failures_by_user(username),
            failure_limit: limits.failures_per_user,
            successes: keys.logins_by_user(username),
            in_flight: keys.logins_in_flight_by_user(username),
            success_limit: limits.logins_per_user,
        }
    }

    /// A client address's counters (the address's slot).
    pub fn of_addr(keys: &Keys, limits: &Limits, addr: IpAddr) -> LoginCounters {
        LoginCounters {
            failures: keys.login_failures_by_addr(addr),
            failure_limit: limits.failures_per_addr,
            successes: keys.logins_by_addr(addr),
            in_flight: keys.logins_in_flight_by_addr(addr),
            success_limit: limits.logins_per_addr,
        }
    }

    /// The failure counter with its limit, as [`crate::throttle`] takes it.
    pub fn failure_counter(&self) -> (String, Limit) {
        (self.failures.clone(), self.failure_limit)
    }
}

/// The opening shared by [`RESERVE`] and the log-in lookup
/// ([`crate::login_record`]): takes the attempt's place under the success
/// limit at once (`ZADD NX`), whose reply also tells a script resent (its
/// place is there already: `flying`), which is then judged as the first time;
/// only a resent script looks for its own place in the failures (`held`).
/// [`login_script`] writes it where a script says `TAKE_PLACE`, after setting
/// `now`, `member`, `failures_key` and `flying_key`. A script that then
/// refuses gives the place back (`not flying`: it was this run's).
const TAKE_PLACE: &str = r"local flying = redis.call('ZADD', flying_key, 'NX', now, member) == 0
local held = false
if flying then
  held = redis.call('ZSCORE', failures_key, member)
end
";

/// The failure limit's judgement, shared by [`RESERVE`] and the log-in
/// lookup: the attempts not known to have succeeded (`failures`, set here)
/// may not reach the limit, unless this one holds a place among them (a
/// resent script). Places left behind ([`crate::throttle::IN_FLIGHT_MAX_MS`])
/// are purged only when the counter looks full, the one time they could
/// refuse someone: the same verdict as purging on every look, for two
/// commands fewer per log-in. [`login_script`] writes it where a script says
/// `FAILURE_LIMIT_WAIT`, after setting `held`, `now`, `failures_key`,
/// `failure_limit`, `failure_window` and `wait` (raised to the seconds to wait).
const FAILURE_LIMIT_WAIT: &str = r"failures = redis.call('ZCARD', failures_key)
if not held and failures >= failure_limit then
  failures = failures - redis.call('ZREMRANGEBYSCORE', failures_key, '(' .. (IN_FLIGHT_MAX - now), '(0')
  if failures >= failure_limit then
    local ttl = redis.call('TTL', failures_key)
    if ttl < 1 then
      ttl = failure_window
    end
    wait = math.max(wait, ttl)
  end
end
";

/// The success limit's judgement, shared by [`RESERVE`] and the log-in
/// lookup ([`crate::login_record`]): the log-ins done in the window plus the
/// others in flight may not reach the limit, so that simultaneous log-ins
/// cannot pass it together; a script resent (`flying`) is not refused by it.
/// As for the failures, places left behind are purged only when the limit
/// looks reached. [`login_script`] writes it where a script says
/// `SUCCESS_LIMIT_WAIT`, after [`TAKE_PLACE`] and setting `wait`, `done_key`,
/// `limit` and `window`.
const SUCCESS_LIMIT_WAIT: &str = r"local done = tonumber(redis.call('GET', done_key) or '0')
if not flying then
  -- This attempt's own place is in the set already.
  local others = redis.call('ZCARD', flying_key) - 1
  if done + others >= limit then
    others = others - redis.call('ZREMRANGEBYSCORE', flying_key, '-inf', '(' .. (now - IN_FLIGHT_MAX))
  end
  if done + others >= limit then
    -- Full of log-ins in flight alone: they end within a batch.
    local ttl = 1
    if done >= limit then
      ttl = redis.call('TTL', done_key)
      if ttl < 1 then
        ttl = window
      end
    end
    wait = math.max(wait, ttl)
  end
end
";

/// A log-in script's source with [`TAKE_PLACE`], [`FAILURE_LIMIT_WAIT`],
/// [`SUCCESS_LIMIT_WAIT`], [`COUNT_SUCCESS`] and
/// [`crate::throttle::IN_FLIGHT_MAX_MS`] written in.
pub(crate) fn login_script(source: &str) -> &'static str {
    in_flight_script(
        &source
            .replace("TAKE_PLACE\n", TAKE_PLACE)
            .replace("FAILURE_LIMIT_WAIT\n", FAILURE_LIMIT_WAIT)
            .replace("SUCCESS_LIMIT_WAIT\n", SUCCESS_LIMIT_WAIT)
            .replace("COUNT_SUCCESS\n", COUNT_SUCCESS),
    )
}

/// KEYS = failures, successes, in flight (one side); ARGV = member, now (ms),
/// whether to take a failure place (`1`/`0`), failure limit, failure window,
/// success limit, success window. Refuses (`{seconds to wait}`, holding no
/// place) while a limit is reached; else takes the places (`NX`) and returns
/// `{0}`. A resent script (the whole batch sent again,
/// [`crate::db::redis`]) finds its own places and is judged as the first
/// time: it neither refuses itself nor counts twice.
const RESERVE: &str = r"#!lua
local now, member = tonumber(ARGV[2]), ARGV[1]
local failures_key, done_key, flying_key = KEYS[1], KEYS[2], KEYS[3]
local failure_limit, failure_window = tonumber(ARGV[4]), tonumber(ARGV[5])
local limit, window = tonumber(ARGV[6]), tonumber(ARGV[7])
TAKE_PLACE
local wait, failures = 0, 0
if ARGV[3] == '1' then
  FAILURE_LIMIT_WAIT
end
SUCCESS_LIMIT_WAIT
if wait > 0 then
  if not flying then
    redis.call('ZREM', flying_key, member)
  end
  return {wait}
end
redis.call('PEXPIRE', flying_key, IN_FLIGHT_MAX)
if ARGV[3] == '1' and not held then
  redis.call('ZADD', failures_key, 'NX', -now, member)
  if failures == 0 then
    redis.call('EXPIRE', failures_key, failure_window)
  end
end
return {0}
";

/// `RESERVE`, sent by its SHA-1.
pub static RESERVE_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(login_script(RESERVE)));

/// The counting of a success on one side, shared by [`SUCCEED`] and the
/// session's script ([`crate::login_session`], which counts the account's
/// side in the same step as it opens the session): the log-in leaves the
/// failures if it holds a place there (`holds`), and, given a start, takes
/// with it the failures that *ended before it began* (a person who mistypes
/// and then gets it right starts afresh, while failures in flight or
/// recorded beside it stay); it leaves its in-flight place and is counted,
/// once: only if the place was there (or was purged with its whole set). A
/// script writes it where it says `COUNT_SUCCESS`, after setting
/// `failures_key`, `done_key`, `flying_key`, `member`, `window`, `holds`
/// (`'1'`/`'0'`) and `started` (µs, `''` for none).
pub(crate) const COUNT_SUCCESS: &str = r"if holds == '1' then
  redis.call('ZREM', failures_key, member)
end
if started ~= '' then
  redis.call('ZREMRANGEBYSCORE', failures_key, 1, '(' .. started)
end
if redis.call('ZREM', flying_key, member) == 1 or redis.call('EXISTS', flying_key) == 0 then
  if redis.call('INCR', done_key) == 1 then
    redis.call('EXPIRE', done_key, window)
  end
end
";

/// KEYS = failures, successes, in flight (one side); ARGV = member, success
/// window, whether the attempt holds a failure place there (`1`/`0`), and
/// the start of the log-in (µs; `''` for none). The log-in succeeded:
/// [`COUNT_SUCCESS`] on that side.
const SUCCEED: &str = r"#!lua
local failures_key, done_key, flying_key = KEYS[1], KEYS[2], KEYS[3]
local member, window, holds, started = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
COUNT_SUCCESS
return 0
";

/// `SUCCEED`, sent by its SHA-1.
pub static SUCCEED_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(login_script(SUCCEED)));

/// Adds the reservation of `member`'s places on one side to a batch (one
/// reply, for [`reserved`]); `with_failure` also takes a failure place (a
/// password log-in that may need a hash; a scan-to-log-in needs none).
pub fn reserve_cmd(batch: &mut Batch, counters: &LoginCounters, member: &str, with_failure: bool) {
    batch
        .script(&RESERVE_SCRIPT)
        .arg(3)
        .arg(&counters.failures)
        .arg(&counters.successes)
        .arg(&counters.in_flight)
        .arg(member)
        .arg(crate::session::unix_now_ms())
        .arg(if with_failure { "1" } else { "0" })
        .arg(counters.failure_limit.max_attempts)
        .arg(counters.failure_limit.window_secs)
        .arg(counters.success_limit.max_attempts)
        .arg(counters.success_limit.window_secs);
}

/// The seconds to wait from a `RESERVE` reply (0: reserved).
pub fn reserved(reply: &[u64]) -> u64 {
    reply.first().copied().unwrap_or(0)
}

/// A success to count on one side (`COUNT_SUCCESS`: its leaving the failures
/// and the in-flight places, and the count).
#[derive(Debug, Clone, Copy)]
pub struct Success<'a> {
    /// The side's counters.
    pub counters: &'a LoginCounters,
    /// The attempt's member in them.
    pub member: &'a str,
    /// Whether the attempt holds a place in this side's failures, to leave.
    pub holds_failure: bool,
    /// Clears the failures that ended before this time (µs, the log-in's
    /// start). Only worth sending when the lookup saw failures on this side:
    /// a failure that ended before the log-in began was there when it looked.
    pub clears_failures_before_us: Option<u64>,
}

/// Adds the counting of a success on one side to a batch (no reply).
pub fn succeed_cmd(batch: &mut Batch, success: Success<'_>) {
    let (keys, args) = success_counting(success);
    let cmd = batch.script(&SUCCEED_SCRIPT).arg(3);
    for key in keys {
        cmd.arg(key);
    }
    for arg in args {
        cmd.arg(arg);
    }
    cmd.ignore();
}

/// What [`COUNT_SUCCESS`] reads, in its order: the three keys of the side
/// (failures, successes, in flight), then the member, the success window,
/// whether it holds a failure place (`1`/`0`) and the start (µs, `""` for
/// none).
pub(crate) fn success_counting(success: Success<'_>) -> ([&str; 3], [String; 4]) {
    let counters = success.counters;
    (
        [&counters.failures, &counters.successes, &counters.in_flight],
        [
            success.member.to_owned(),
            counters.success_limit.window_secs.to_string(),
            if success.holds_failure { "1" } else { "0" }.to_owned(),
            success.clears_failures_before_us.map(|us| us.to_string()).unwrap_or_default(),
        ],
    )
}

/// Adds the commands that give back `member`'s place under the success limit
/// (it did not succeed) to a batch; harmless where it holds none.
pub fn release_in_flight(batch: &mut Batch, counters: &LoginCounters, member: &str) {
    batch.cmd("ZREM").arg(&counters.in_flight).arg(member).ignore();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::slot::slot;

    #[test]
    fn each_sides_keys_share_a_slot() {
        let keys = Keys::new("t:");
        let limits = Limits::default();
        for side in [
            LoginCounters::of_user(&keys, &limits, "ann"),
            LoginCounters::of_addr(&keys, &limits, "192.0.2.1".parse().unwrap()),
        ] {
            let s = slot(side.failures.as_bytes());
            assert_eq!(slot(side.successes.as_bytes()), s);
            assert_eq!(slot(side.in_flight.as_bytes()), s);
        }
    }

    #[test]
    fn log_in_scripts_have_the_shared_parts_written_in() {
        for code in [RESERVE_SCRIPT.code(), crate::login_record::LOOKUP_SCRIPT.code()] {
            assert!(code.contains(&crate::throttle::IN_FLIGHT_MAX_MS.to_string()));
            assert!(code.contains("if done >= limit then"), "{code}");
            assert!(
                code.contains("local flying = redis.call('ZADD', flying_key, 'NX', now, member) == 0"),
                "{code}"
            );
            assert!(code.contains("failures = redis.call('ZCARD', failures_key)"), "{code}");
            for marker in ["TAKE_PLACE", "FAILURE_LIMIT_WAIT", "SUCCESS_LIMIT_WAIT", "IN_FLIGHT_MAX"] {
                assert!(!code.contains(marker), "{marker} left in {code}");
            }
        }
    }
}
