//! The session a successful log-in opens: counted, capped per account and
//! stored in one atomic step in Redis.
//!
//! [`OPEN`] is one Lua script per log-in, sent in the pipeline that ends a
//! worker's batch (no round trip of its own). In one step it
//!
//! 1. takes the attempt out of the failed-log-in counters it was admitted to
//!    (see [`crate::throttle`]), with the user's failures that ended before
//!    this log-in began (in microseconds: a failure in the same batch was
//!    hashed after the batch began, so it stays);
//! 2. refuses the log-in, storing nothing, while the account or the client
//!    address is at its limit of successful log-ins; otherwise counts it;
//! 3. stores the session and what it was opened with (`smeta:<hash>`, see
//!    [`crate::device`]), adds it to the account's index `usess:<id>`, and
//!    ends the oldest sessions past the cap (`--max-sessions-per-user`,
//!    [`DEFAULT_MAX_SESSIONS_PER_USER`]);
//! 4. queues the attempt's history record ([`crate::history`]) with the
//!    outcome it decided: a success, or throttled by step 2.
//!
//! Done as one script, the count and the cap hold whatever the concurrency:
//! two log-ins of one account in two workers cannot both see room for one
//! more. The index scores each token hash by its creation time; entries older
//! than the absolute session lifetime are dropped, so the index never outgrows
//! the cap. An entry whose session already ended (logged out, idle) stays
//! until it is the oldest: the cap then counts it, which can only end fewer
//! live sessions, never keep more than the cap alive.

use std::sync::LazyLock;

use redis::{Pipeline, Script};

use crate::error::Error;
use crate::keys::Keys;
use crate::session::{Lifetimes, Session};
use crate::throttle::Limit;

/// Sessions one account may hold at once. A person signs in on a phone, a
/// laptop, a tablet and a few browsers; 32 leaves room for all of them and
/// for apps, while one account logging in in a loop holds at most 32 sessions
/// (about 10 KiB of Redis) instead of one per log-in. Past it, the oldest end.
pub const DEFAULT_MAX_SESSIONS_PER_USER: u64 = 32;

/// KEYS: session, index, successes per user, successes per address (plain
/// counts), failures per user, failures per address (sorted sets) (`''` where a request has no such
/// counter). ARGV: session value, session TTL, now (ms), cap, absolute
/// lifetime (s), session key prefix, token hash, attempt member, user limit,
/// user window, address limit, address window, start of the log-in (µs),
/// metadata key prefix, metadata value, history queue, its cap, history
/// record without its outcome. Returns `{0, sessions ended, records dropped}`
/// when opened, `{seconds to wait, 0, records dropped}` when refused.
const OPEN: &str = r"#!lua
local now = tonumber(ARGV[3])
local function record(outcome)
  if redis.call('LLEN', ARGV[16]) < tonumber(ARGV[17]) then
    redis.call('RPUSH', ARGV[16], outcome .. ARGV[18])
    return 0
  end
  return 1
end
if KEYS[5] ~= '' then
  redis.call('ZREM', KEYS[5], ARGV[8])
  redis.call('ZREMRANGEBYSCORE', KEYS[5], 1, '(' .. ARGV[13])
end
if KEYS[6] ~= '' then
  redis.call('ZREM', KEYS[6], ARGV[8])
end
local counters = {{KEYS[3], ARGV[9], ARGV[10]}, {KEYS[4], ARGV[11], ARGV[12]}}
local wait = 0
for _, c in ipairs(counters) do
  if c[1] ~= '' and tonumber(redis.call('GET', c[1]) or '0') >= tonumber(c[2]) then
    local ttl = redis.call('TTL', c[1])
    if ttl < 1 then
      ttl = tonumber(c[3])
    end
    wait = math.max(wait, ttl)
  end
end
if wait > 0 then
  return {wait, 0, record('throttled')}
end
for _, c in ipairs(counters) do
  if c[1] ~= '' then
    redis.call('INCR', c[1])
    redis.call('EXPIRE', c[1], c[3], 'NX')
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', ARGV[14] .. ARGV[7], 'm', ARGV[15])
redis.call('EXPIRE', ARGV[14] .. ARGV[7], ARGV[5])
redis.call('ZADD', KEYS[2], now, ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[5]) * 1000))
local ended = 0
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do
    ended = ended + redis.call('DEL', ARGV[6] .. oldest[i])
    redis.call('DEL', ARGV[14] .. oldest[i])
  end
end
redis.call('EXPIRE', KEYS[2], ARGV[5])
return {0, ended, record('success')}
";

/// [`OPEN`], sent by its SHA-1 once Redis has it.
pub static OPEN_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(OPEN));

/// What one successful log-in's session needs besides the session itself.
#[derive(Debug, Clone, Copy)]
pub struct Opening<'a> {
    /// The attempt's member in its throttle counters.
    pub member: &'a str,
    /// When the log-in began (µs since the epoch): failures that ended before are cleared.
    pub started_us: u64,
    /// Failed-log-in counters of the user and the address (`None` where absent).
    pub failures: [Option<&'a str>; 2],
    /// Successful-log-in counters of the user and the address, with their limits.
    pub successes: [Option<(&'a str, Limit)>; 2],
    /// What the session is opened with ([`crate::device::SessionMeta::encode`]).
    pub meta: &'a str,
    /// The attempt's history record without its outcome ([`crate::history::record::Attempt::tail`]).
    pub record_tail: &'a str,
}

/// Adds the [`OPEN`] script for `session` to a pipeline, keeping at most
/// `cap` sessions of its account: one reply, for [`opened`].
pub fn open_cmd(
    pipe: &mut Pipeline,
    keys: &Keys,
    (token_hash, session): (&str, &Session),
    lifetimes: Lifetimes,
    cap: u64,
    opening: &Opening<'_>,
) {
    let now_ms = crate::session::unix_now_ms();
    let key_or_empty = |key: Option<&str>| key.unwrap_or("").to_owned();
    let limit = |i: usize| opening.successes[i].map_or((0, 1), |(_, l)| (l.max_attempts, l.window_secs));
    let (user_max, user_window) = limit(0);
    let (addr_max, addr_window) = limit(1);
    pipe.cmd("EVALSHA")
        .arg(OPEN_SCRIPT.get_hash())
        .arg(6)
        .arg(keys.session(token_hash))
        .arg(keys.user_sessions(session.user_id))
        .arg(key_or_empty(opening.successes[0].map(|(key, _)| key)))
        .arg(key_or_empty(opening.successes[1].map(|(key, _)| key)))
        .arg(key_or_empty(opening.failures[0]))
        .arg(key_or_empty(opening.failures[1]))
        .arg(session.encode())
        .arg(session.ttl(lifetimes, now_ms / 1000))
        .arg(now_ms)
        .arg(cap)
        .arg(lifetimes.max_secs)
        .arg(keys.session(""))
        .arg(token_hash)
        .arg(opening.member)
        .arg(user_max)
        .arg(user_window)
        .arg(addr_max)
        .arg(addr_window)
        .arg(opening.started_us)
        .arg(keys.session_meta(""))
        .arg(opening.meta)
        .arg(keys.history_queue())
        .arg(crate::history::record::MAX_QUEUED)
        .arg(opening.record_tail);
}

/// The outcome of one [`OPEN`] from its reply, counting the sessions it ended.
///
/// # Errors
///
/// [`Error::TooManyAttempts`] when a successful-log-in limit refused it.
pub fn opened(reply: &[u64]) -> Result<(), Error> {
    crate::history::record::report_dropped(reply.get(2).copied().unwrap_or(0));
    match *reply {
        [0, ended, ..] => {
            crate::metrics::SESSIONS_CREATED.add(1);
            crate::metrics::SESSIONS_EVICTED.add(ended);
            Ok(())
        }
        [wait, ..] => {
            crate::metrics::THROTTLED.add(1);
            Err(Error::TooManyAttempts { retry_after_secs: u32::try_from(wait).unwrap_or(u32::MAX) })
        }
        [] => Err(Error::Internal(crate::error::Internal::CorruptEntry("session opening reply"))),
    }
}
