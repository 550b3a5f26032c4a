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
//! log-in record), for the address `RESERVE`, one for all of a batch's
//! log-ins from that address ([`by_side`]), each judged in turn as if it
//! had a script of its own. A side at a limit refuses,
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

    /// The side's keys in the order its scripts take them: failures,
    /// successes, in flight.
    pub fn keys(&self) -> [&str; 3] {
        [&self.failures, &self.successes, &self.in_flight]
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

/// KEYS = failures, successes, in flight (one side); ARGV = now (ms),
/// whether to take failure places (`1`/`0`), failure limit, failure window,
/// success limit, success window, then the members of the log-ins to
/// reserve for. Each member in turn, as if each were a script of its own:
/// refused (its wait in seconds, holding no place) while a limit is
/// reached, else given its places (`NX`) and 0; returns the waits in the
/// members' order. One script for every log-in of a batch from one address
/// (a NAT, a proxy), so that Redis runs one script where it ran as many as
/// the log-ins. A resent script (the whole batch sent again,
/// [`crate::db::redis`]) finds its members' places and judges each as the
/// first time: it neither refuses them nor counts them twice.
const RESERVE: &str = r"#!lua
local now = tonumber(ARGV[1])
local failures_key, done_key, flying_key = KEYS[1], KEYS[2], KEYS[3]
local failure_limit, failure_window = tonumber(ARGV[3]), tonumber(ARGV[4])
local limit, window = tonumber(ARGV[5]), tonumber(ARGV[6])
local waits = {}
for i = 7, #ARGV do
  local member = ARGV[i]
  TAKE_PLACE
  local wait, failures = 0, 0
  if ARGV[2] == '1' then
    FAILURE_LIMIT_WAIT
  end
  SUCCESS_LIMIT_WAIT
  if wait > 0 then
    if not flying then
      redis.call('ZREM', flying_key, member)
    end
  else
    redis.call('PEXPIRE', flying_key, IN_FLIGHT_MAX)
    if ARGV[2] == '1' and not held then
      redis.call('ZADD', failures_key, 'NX', -now, member)
      if failures == 0 then
        redis.call('EXPIRE', failures_key, failure_window)
      end
    end
  end
  waits[#waits + 1] = wait
end
return waits
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

/// KEYS = failures, successes, in flight (one side); ARGV = success window,
/// whether the attempts hold a failure place there (`1`/`0`), the start of
/// the log-ins (µs; `''` for none), then the members of the log-ins that
/// succeeded: [`COUNT_SUCCESS`] on that side for each, in one script for a
/// batch's log-ins from one address.
const SUCCEED: &str = r"#!lua
local failures_key, done_key, flying_key = KEYS[1], KEYS[2], KEYS[3]
local window, holds, started = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV do
  local member = ARGV[i]
  COUNT_SUCCESS
end
return 0
";

/// `SUCCEED`, sent by its SHA-1.
pub static SUCCEED_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(login_script(SUCCEED)));

/// Adds the reservation of the `members`' places on one side to a batch
/// (one reply: the members' waits in seconds, in order, 0 for reserved); `with_failure`
/// also takes failure places (password log-ins that may need a hash; a
/// scan-to-log-in needs none). Nothing for no member.
pub fn reserve_cmd(batch: &mut Batch, counters: &LoginCounters, members: &[&str], with_failure: bool) {
    if members.is_empty() {
        return;
    }
    let cmd = batch
        .script(&RESERVE_SCRIPT)
        .arg(3)
        .arg(&counters.keys()[..])
        .arg(crate::session::unix_now_ms())
        .arg(if with_failure { "1" } else { "0" })
        .arg(counters.failure_limit.max_attempts)
        .arg(counters.failure_limit.window_secs)
        .arg(counters.success_limit.max_attempts)
        .arg(counters.success_limit.window_secs);
    for member in members {
        cmd.arg(*member);
    }
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

/// Successes to count on one side in one script: the log-ins of a batch
/// from one address, or one log-in.
#[derive(Debug, Clone, Copy)]
pub struct Successes<'a> {
    /// The side's counters.
    pub counters: &'a LoginCounters,
    /// The attempts' members in them.
    pub members: &'a [&'a str],
    /// Whether the attempts hold places in this side's failures, to leave.
    pub holds_failure: bool,
    /// As [`Success::clears_failures_before_us`].
    pub clears_failures_before_us: Option<u64>,
}

/// Adds the counting of successes on one side to a batch (no reply;
/// nothing for no member).
pub fn succeed_cmd(batch: &mut Batch, successes: Successes<'_>) {
    if successes.members.is_empty() {
        return;
    }
    let counters = successes.counters;
    let cmd = batch
        .script(&SUCCEED_SCRIPT)
        .arg(3)
        .arg(&counters.keys()[..])
        .arg(counters.success_limit.window_secs)
        .arg(if successes.holds_failure { "1" } else { "0" })
        .arg(successes.clears_failures_before_us.map(|us| us.to_string()).unwrap_or_default());
    for member in successes.members {
        cmd.arg(*member);
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
        counters.keys(),
        [
            success.member.to_owned(),
            counters.success_limit.window_secs.to_string(),
            if success.holds_failure { "1" } else { "0" }.to_owned(),
            success.clears_failures_before_us.map(|us| us.to_string()).unwrap_or_default(),
        ],
    )
}

/// Items grouped by the counters of their side (one address's log-ins
/// together, for one script each: [`reserve_cmd`], [`succeed_cmd`]), each
/// group in the order its first item came, its items in theirs. Linear in
/// the groups: a batch holds at most [`crate::queue::MAX_BATCH`] log-ins.
pub fn by_side<'a, T>(
    items: impl IntoIterator<Item = (&'a LoginCounters, T)>,
) -> Vec<(&'a LoginCounters, Vec<T>)> {
    let mut groups: Vec<(&LoginCounters, Vec<T>)> = Vec::new();
    for (counters, item) in items {
        match groups.iter_mut().find(|(side, _)| side.in_flight == counters.in_flight) {
            Some((_, members)) => members.push(item),
            None => groups.push((counters, vec![item])),
        }
    }
    groups
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
    fn log_ins_group_by_their_address_in_the_order_they_came() {
        let keys = Keys::new("t:");
        let limits = Limits::default();
        let side = |ip: &str| LoginCounters::of_addr(&keys, &limits, ip.parse().unwrap());
        let (a, b) = (side("192.0.2.1"), side("192.0.2.2"));
        let groups = by_side([(&b, 0), (&a, 1), (&b, 2), (&b, 3), (&a, 4)]);
        let groups: Vec<(&str, Vec<i32>)> =
            groups.into_iter().map(|(side, items)| (side.in_flight.as_str(), items)).collect();
        assert_eq!(groups, [(b.in_flight.as_str(), vec![0, 2, 3]), (a.in_flight.as_str(), vec![1, 4])]);
        assert!(by_side(std::iter::empty::<(&LoginCounters, i32)>()).is_empty());
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
