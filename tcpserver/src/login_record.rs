//! The log-in record: what a repeated log-in needs, kept in Redis so that it
//! does not need MySQL.
//!
//! A log-in needs the user's id, something that identifies their stored
//! password hash (to ask the verified-credentials cache), their profile (for
//! the reply) and the throttle counters. The record `login:<username>` holds
//! the id and the hash's [`stamp`](crate::password::stamp), a digest of the
//! stored hash string that helps no one guess a password (the stored hash is
//! already salted, peppered PBKDF2; its digest is one step further away). The
//! profile comes from the versioned profile cache. [`lookup`] checks the
//! throttle counters, reads the record and the profile in one round trip, and
//! counts an attempt that finds no record (it will need a hash) before the
//! hash; when all three are
//! there and the verified cache holds the password for that stamp, the log-in
//! is answered without MySQL. Anything missing takes the full path, which
//! reads MySQL and writes the record back.
//!
//! Why the record cannot let an old password in: the stamp changes with the
//! stored hash, so a verified-cache entry for an old hash does not match a
//! new record; the only code that changes a stored hash (the cost upgrade at
//! log-in) writes the new stamp in the same pipeline that opens the session.
//! The record expires after [`TTL_SECS`], which also bounds how long a hash
//! changed behind the server's back (by hand in MySQL) could still be
//! answered from the record.
//!
//! A password change or an account deletion also leaves a *fence*
//! `pwfence:<username>` ([`fence_cmd`]): the stamp of the new hash (or a
//! value no stamp has, after a deletion), for [`FENCE_TTL_SECS`]. [`lookup`]
//! ignores a record whose stamp is not the fence's. That closes the race in
//! which a log-in that read the old row from MySQL just before the change
//! writes the old stamp back after the change deleted the record: its record
//! is never used, so the old password cannot be answered from Redis.

use std::sync::LazyLock;

use redis::{Pipeline, Script};

use crate::db::redis::RedisLink;
use crate::error::{Error, Internal};
use crate::keys::Keys;
use crate::profile_cache::{self, Versioned};
use crate::throttle::Limit;

/// Lifetime of a record. Fifteen minutes covers a user who logs in again and
/// again (the case the record is for), while ten million users logging in at
/// random leave at most one quarter-hour's log-ins in Redis (about 100 bytes each).
pub const TTL_SECS: u64 = 15 * 60;

/// How long a fence stands: twice a record's lifetime, so that a record
/// written back by a log-in in flight during the change (just after it)
/// expires before the fence does.
pub const FENCE_TTL_SECS: u64 = 2 * TTL_SECS;

/// The fence value after an account deletion: no stamp (hex) equals it.
pub const DELETED: &str = "deleted";

/// KEYS[1] = the record (`''` for none), then the failed-log-in counters
/// (sorted sets), then the successful-log-in counters (plain counts); ARGV =
/// profile key prefix, the number of failure counters, the attempt's member,
/// the fence's key (`''` for none), then a limit and a window for each
/// counter. In one atomic step: refuses (`{seconds to wait}`) while a counter
/// is at its limit; else reads the record (ignored when its stamp is not the
/// fence's) and, when there is none (the log-in will need MySQL and a hash),
/// counts the attempt on the failure counters. Returns `{'0', admitted ('1'
/// or '0'), id, stamp, v, u, n, a}` (missing fields are nil).
const LOOKUP: &str = r"#!lua
local failures = tonumber(ARGV[2])
local wait = 0
for i = 2, #KEYS do
  local j = 5 + 2 * (i - 2)
  local count
  if i - 1 <= failures then
    count = redis.call('ZCARD', KEYS[i])
  else
    count = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  if count >= tonumber(ARGV[j]) then
    local ttl = redis.call('TTL', KEYS[i])
    if ttl < 1 then
      ttl = tonumber(ARGV[j + 1])
    end
    wait = math.max(wait, ttl)
  end
end
if wait > 0 then
  return {tostring(wait)}
end
local record = {false, false}
if KEYS[1] ~= '' then
  record = redis.call('HMGET', KEYS[1], 'id', 's')
end
if record[2] and ARGV[4] ~= '' then
  local fence = redis.call('GET', ARGV[4])
  if fence and fence ~= record[2] then
    record = {false, false}
  end
end
local admitted = '0'
if not record[1] and failures > 0 then
  for i = 2, failures + 1 do
    redis.call('ZADD', KEYS[i], 0, ARGV[3])
    redis.call('EXPIRE', KEYS[i], ARGV[5 + 2 * (i - 2) + 1], 'NX')
  end
  admitted = '1'
end
local out = {'0', admitted, record[1], record[2]}
if record[1] then
  local f = redis.call('HMGET', ARGV[1] .. record[1], 'v', 'u', 'n', 'a')
  for i = 1, 4 do out[#out + 1] = f[i] end
end
return out
";

/// [`LOOKUP`], sent by its SHA-1 (`EVALSHA`) once Redis has it.
static LOOKUP_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LOOKUP));

/// A record found in Redis, with the profile cached for its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `users.id`.
    pub user_id: u64,
    /// The stamp of the stored password hash.
    pub stamp: String,
    /// The cached profile, if the cache holds one.
    pub profile: Option<Versioned>,
}

/// What one log-in looks up: its username (if it is a valid one), its
/// throttle counters and its member in them.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// The username, lowercased; `None` for a name that breaks the rules.
    pub username: Option<&'a str>,
    /// Failed-log-in counters (see [`crate::throttle`]): below their limits,
    /// and counted on when the log-in will need a hash.
    pub failures: &'a [(String, Limit)],
    /// Successful-log-in counters: below their limits.
    pub successes: &'a [(String, Limit)],
    /// The attempt's member in the failure counters.
    pub member: &'a str,
}

/// What [`lookup`] found for one log-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The record, if Redis has one.
    pub record: Option<Record>,
    /// Whether the attempt was counted on its failure counters (there was no
    /// record, so it will need a hash): it holds its place there until it is
    /// known to have succeeded.
    pub admitted: bool,
}

/// For each log-in, in one round trip for all and one atomic step for each:
/// refuses ([`Error::TooManyAttempts`]) while a counter is at its limit;
/// otherwise reads the username's record and its cached profile, and, where
/// there is no record, counts the attempt on its failure counters before any
/// hash (see [`crate::throttle`]).
///
/// # Errors
///
/// [`Error::Unavailable`] for all if Redis is down; otherwise one outcome per
/// log-in: what was found, [`Error::TooManyAttempts`], or
/// [`Error::Internal`] for a corrupt entry.
pub fn lookup(
    redis: &mut RedisLink,
    keys: &Keys,
    lookups: &[Lookup<'_>],
) -> Result<Vec<Result<Found, Error>>, Error> {
    if lookups.is_empty() {
        return Ok(Vec::new());
    }
    let script = &*LOOKUP_SCRIPT;
    let prefix = keys.profile_prefix();
    let mut pipe = redis::pipe();
    for lookup in lookups {
        // Without a username there is no record; an empty key name is never written.
        let record_key = lookup.username.map(|name| keys.login_record(name)).unwrap_or_default();
        let counters = || lookup.failures.iter().chain(lookup.successes);
        let command = pipe.cmd("EVALSHA").arg(script.get_hash()).arg(1 + counters().count()).arg(record_key);
        for (key, _) in counters() {
            command.arg(key);
        }
        let fence = lookup.username.map(|name| keys.password_fence(name)).unwrap_or_default();
        command.arg(&prefix).arg(lookup.failures.len()).arg(lookup.member).arg(fence);
        for (_, limit) in counters() {
            command.arg(limit.max_attempts).arg(limit.window_secs);
        }
    }
    let replies: Vec<Vec<Option<String>>> = redis.run_scripts(&pipe, &[script])?;
    Ok(replies.into_iter().map(|reply| decode(&reply)).collect())
}

fn decode(reply: &[Option<String>]) -> Result<Found, Error> {
    let field = |i: usize| reply.get(i).cloned().flatten();
    let wait: u64 = field(0).and_then(|v| v.parse().ok()).unwrap_or(0);
    if wait > 0 {
        crate::metrics::THROTTLED.add(1);
        return Err(Error::TooManyAttempts { retry_after_secs: u32::try_from(wait).unwrap_or(u32::MAX) });
    }
    let admitted = field(1).as_deref() == Some("1");
    let (Some(id), Some(stamp)) = (field(2), field(3)) else {
        return Ok(Found { record: None, admitted });
    };
    let user_id = id.parse().map_err(|_| Error::Internal(Internal::CorruptEntry("login record")))?;
    let profile = profile_cache::decode((field(4), field(5), field(6), field(7)))?;
    Ok(Found { record: Some(Record { user_id, stamp, profile }), admitted })
}

/// Adds the commands that write `username`'s record to a pipeline.
pub fn store(pipe: &mut Pipeline, keys: &Keys, username: &str, user_id: u64, stamp: &str) {
    let key = keys.login_record(username);
    pipe.cmd("HSET").arg(&key).arg("id").arg(user_id).arg("s").arg(stamp).ignore();
    pipe.cmd("EXPIRE").arg(&key).arg(TTL_SECS).ignore();
}

/// Adds the commands that forget `username`'s record and fence it to
/// `stamp` (the new hash's, or [`DELETED`]) to a pipeline.
pub fn fence_cmd(pipe: &mut Pipeline, keys: &Keys, username: &str, stamp: &str) {
    pipe.cmd("SET").arg(keys.password_fence(username)).arg(stamp).arg("EX").arg(FENCE_TTL_SECS).ignore();
    pipe.cmd("DEL").arg(keys.login_record(username)).ignore();
}
