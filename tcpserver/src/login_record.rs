//! The log-in record: what a repeated log-in needs, kept in Redis so that it
//! does not need MySQL.
//!
//! A log-in needs the user's id, something that identifies their stored
//! password hash (to ask the verified-credentials cache), their profile (for
//! the reply) and the throttle counters. The record `login:<username>` holds
//! the id and the hash's [`stamp`](crate::password::stamp), a digest of the
//! stored hash string that helps no one guess a password (the stored hash is
//! already salted, peppered PBKDF2; its digest is one step further away). The
//! profile comes from the versioned profile cache. [`lookup`] reads the
//! counters, the record and the profile in one round trip; when all three are
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
use crate::throttle::{self, Limit};

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

/// KEYS[1] = the record, KEYS[2..] = throttle counters; ARGV[1] = profile key
/// prefix, ARGV[2] = the fence (`''` for none). Returns `ZCARD`, `TTL` for
/// each counter, then the record's id and stamp (nil if there is no record,
/// or its stamp is not the fence's), then the profile entry's `v`, `u`, `n`,
/// `a` (missing fields are nil).
const LOOKUP: &str = r"#!lua flags=no-writes
local out = {}
for i = 2, #KEYS do
  out[#out + 1] = tostring(redis.call('ZCARD', KEYS[i]))
  out[#out + 1] = tostring(redis.call('TTL', KEYS[i]))
end
local record = redis.call('HMGET', KEYS[1], 'id', 's')
if record[2] and ARGV[2] ~= '' then
  local fence = redis.call('GET', ARGV[2])
  if fence and fence ~= record[2] then
    record = {false, false}
  end
end
out[#out + 1] = record[1]
out[#out + 1] = record[2]
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

/// What one log-in looks up: its username (if it is a valid one) and its
/// throttle counters.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// The username, lowercased; `None` for a name that breaks the rules.
    pub username: Option<&'a str>,
    /// The counters that must be below their limits.
    pub counters: &'a [(String, Limit)],
}

/// For each log-in, in one round trip for all: reads the counters, the
/// username's record and the record's cached profile, and refuses
/// ([`Error::TooManyAttempts`]) while a counter is at its limit.
///
/// # Errors
///
/// [`Error::Unavailable`] for all if Redis is down; otherwise one outcome per
/// log-in: the record if there is one, [`Error::TooManyAttempts`], or
/// [`Error::Internal`] for a corrupt entry.
pub fn lookup(
    redis: &mut RedisLink,
    keys: &Keys,
    lookups: &[Lookup<'_>],
) -> Result<Vec<Result<Option<Record>, Error>>, Error> {
    let script = &*LOOKUP_SCRIPT;
    let prefix = keys.profile_prefix();
    let mut pipe = redis::pipe();
    for lookup in lookups {
        // Without a username there is no record; an empty key name is never written.
        let record_key = lookup.username.map(|name| keys.login_record(name)).unwrap_or_default();
        let command =
            pipe.cmd("EVALSHA").arg(script.get_hash()).arg(1 + lookup.counters.len()).arg(record_key);
        for (key, _) in lookup.counters {
            command.arg(key);
        }
        command.arg(&prefix).arg(lookup.username.map(|name| keys.password_fence(name)).unwrap_or_default());
    }
    if lookups.is_empty() {
        return Ok(Vec::new());
    }
    let replies: Vec<Vec<Option<String>>> = redis.run_scripts(&pipe, &[script])?;
    Ok(lookups
        .iter()
        .zip(replies)
        .map(|(lookup, reply)| {
            let (counts, rest) = reply.split_at(reply.len().min(2 * lookup.counters.len()));
            let counts: Vec<i64> =
                counts.iter().map(|v| v.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0)).collect();
            throttle::verdict(lookup.counters, &counts)?;
            decode(rest)
        })
        .collect())
}

fn decode(fields: &[Option<String>]) -> Result<Option<Record>, Error> {
    let field = |i: usize| fields.get(i).cloned().flatten();
    let (Some(id), Some(stamp)) = (field(0), field(1)) else {
        return Ok(None);
    };
    let user_id = id.parse().map_err(|_| Error::Internal(Internal::CorruptEntry("login record")))?;
    let profile = profile_cache::decode((field(2), field(3), field(4), field(5)))?;
    Ok(Some(Record { user_id, stamp, profile }))
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
