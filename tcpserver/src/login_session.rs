//! The session a successful log-in opens: stored and capped per account in
//! one atomic step in Redis.
//!
//! `OPEN` is one Lua script per log-in, sent in the pipeline that ends a
//! worker's batch (no round trip of its own). In one step, in the account's
//! hash slot, it stores the session and what it was opened with
//! (`smeta:{t}<hash>`, see [`crate::device`]), adds it to the account's index
//! `usess:{t}<id>`, and ends the oldest sessions past the cap
//! (`--max-sessions-per-user`, [`DEFAULT_MAX_SESSIONS_PER_USER`]).
//!
//! The log-in limits were settled before: the log-in took its places under
//! the success limits in its first round trip ([`crate::login_counters`]),
//! so the session is opened whatever else runs beside it. The same script
//! counts the success on the account's side (its counters share the
//! account's slot), and the same pipeline counts it on the address's side
//! and queues the attempt's history record ([`crate::history`]) with its
//! outcome, known by then.
//!
//! Done as one script, the cap holds whatever the concurrency: two log-ins
//! of one account in two workers cannot both see room for one more. The
//! index scores each token hash by its creation time; entries older than the
//! absolute session lifetime are dropped, so the index never outgrows the
//! cap. An entry whose session already ended (logged out, idle) stays until
//! it is the oldest: the cap then counts it, which can only end fewer live
//! sessions, never keep more than the cap alive.

use std::sync::LazyLock;

use crate::db::redis::{Batch, LuaScript};
use crate::keys::{AccountTag, Keys};
use crate::login_counters::{self, Success};
use crate::session::{Lifetimes, Session};

/// Sessions one account may hold at once. A person signs in on a phone, a
/// laptop, a tablet and a few browsers; 32 leaves room for all of them and
/// for apps, while one account logging in in a loop holds at most 32 sessions
/// (about 10 KiB of Redis) instead of one per log-in. Past it, the oldest end.
pub const DEFAULT_MAX_SESSIONS_PER_USER: u64 = 32;

/// KEYS: session, index (one account's slot), and, to count the log-in's
/// success on the account's side in the same step, that side's failures,
/// successes and in-flight places ([`login_counters::COUNT_SUCCESS`]). ARGV:
/// session value, session TTL, now (ms), cap, absolute lifetime (s), session
/// key prefix, token hash, metadata key prefix, metadata value, and with the
/// counters the member, the success window, whether it holds a failure place
/// and the start to clear failures before (µs, `''` for none). Index entries
/// past the absolute lifetime are dropped only when the index is over the
/// cap (below it they end nothing). Returns the number of sessions the cap
/// ended.
const OPEN: &str = r"#!lua
local now = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', ARGV[8] .. ARGV[7], 'm', ARGV[9])
redis.call('EXPIRE', ARGV[8] .. ARGV[7], ARGV[5])
redis.call('ZADD', KEYS[2], now, ARGV[7])
local ended = 0
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if excess > 0 then
  excess = excess - redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - tonumber(ARGV[5]) * 1000))
end
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do
    ended = ended + redis.call('DEL', ARGV[6] .. oldest[i])
    redis.call('DEL', ARGV[8] .. oldest[i])
  end
end
redis.call('EXPIRE', KEYS[2], ARGV[5])
if #KEYS == 5 then
  local failures_key, done_key, flying_key = KEYS[3], KEYS[4], KEYS[5]
  local member, window, holds, started = ARGV[10], ARGV[11], ARGV[12], ARGV[13]
  COUNT_SUCCESS
end
return ended
";

/// `OPEN`, sent by its SHA-1 once Redis has it.
pub static OPEN_SCRIPT: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(login_counters::login_script(OPEN)));

/// Adds the `OPEN` script for `session` (under `token_hash`, its token's
/// account tag `tag`) to a batch, keeping at most `cap` sessions of its
/// account, and counting the success on the account's side when given
/// (one script instead of two: the same slot): one reply, for [`opened`].
pub fn open_cmd(
    batch: &mut Batch,
    keys: &Keys,
    (tag, token_hash, session): (&AccountTag, &str, &Session),
    (lifetimes, cap, meta): (Lifetimes, u64, &str),
    account_success: Option<Success<'_>>,
) {
    let now_ms = crate::session::unix_now_ms();
    let counting = account_success.map(login_counters::success_counting);
    let cmd = batch.script(&OPEN_SCRIPT).arg(if counting.is_some() { 5 } else { 2 });
    cmd.arg(keys.session(tag, token_hash)).arg(keys.user_sessions(&session.username, session.user_id));
    if let Some((counter_keys, _)) = &counting {
        for key in counter_keys {
            cmd.arg(key);
        }
    }
    cmd.arg(session.encode())
        .arg(session.ttl(lifetimes, now_ms / 1000))
        .arg(now_ms)
        .arg(cap)
        .arg(lifetimes.max_secs)
        .arg(keys.session_prefix(tag))
        .arg(token_hash)
        .arg(keys.session_meta_prefix(tag))
        .arg(meta);
    if let Some((_, args)) = &counting {
        for arg in args {
            cmd.arg(arg);
        }
    }
}

/// Counts one opened session from its `OPEN` reply (the sessions the cap ended).
pub fn opened(ended: u64) {
    crate::metrics::SESSIONS_CREATED.add(1);
    crate::metrics::SESSIONS_EVICTED.add(ended);
}
