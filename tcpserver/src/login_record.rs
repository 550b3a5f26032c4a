//! The log-in record: what a repeated log-in needs, kept in Redis so that it
//! does not need MySQL.
//!
//! A log-in needs the user's id, something that identifies their stored
//! password hash (to ask the verified-credentials cache), their profile (for
//! the reply) and the throttle counters. The record `login:{t}<username>` holds
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
//! `pwfence:{t}<username>` ([`fence_cmd`]): the stamp of the new hash (or a
//! value no stamp has, after a deletion), for [`FENCE_TTL_SECS`]. [`lookup`]
//! ignores a record whose stamp is not the fence's. That closes the race in
//! which a log-in that read the old row from MySQL just before the change
//! writes the old stamp back after the change deleted the record: its record
//! is never used, so the old password cannot be answered from Redis.

use std::sync::LazyLock;

use crate::db::redis::{Batch, LuaScript, RedisLink};
use crate::error::{Error, Internal};
use crate::keys::{AccountTag, Keys};
use crate::login_counters::{self, LoginCounters};
use crate::profile_cache::{self, Versioned};

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

/// KEYS = the record, the fence, then the account's failures, successes and
/// log-ins in flight ([`crate::login_counters`]); ARGV = profile key prefix
/// (with the account's tag), the attempt's member, now (ms), failure limit,
/// failure window, success limit, success window. In one atomic step:
/// refuses (`{seconds to wait}`, holding no place) while a limit is reached;
/// else takes the attempt's place under the success limit, reads the record
/// (ignored when its stamp is not the fence's) and, when there is no record
/// (the log-in will need MySQL and a hash), takes its place in the failures.
/// Returns `{'0', admitted ('1' or '0'), failures seen, id, stamp, v, u, n,
/// a}` (missing fields are nil).
const LOOKUP: &str = r"#!lua
local now, member = tonumber(ARGV[3]), ARGV[2]
local failures_key, done_key, flying_key = KEYS[3], KEYS[4], KEYS[5]
local failure_limit, failure_window = tonumber(ARGV[4]), tonumber(ARGV[5])
local limit, window = tonumber(ARGV[6]), tonumber(ARGV[7])
TAKE_PLACE
local wait, failures = 0, 0
FAILURE_LIMIT_WAIT
SUCCESS_LIMIT_WAIT
if wait > 0 then
  if not flying then
    redis.call('ZREM', flying_key, member)
  end
  return {tostring(wait)}
end
redis.call('PEXPIRE', flying_key, IN_FLIGHT_MAX)
local record = redis.call('HMGET', KEYS[1], 'id', 's')
if record[2] then
  local fence = redis.call('GET', KEYS[2])
  if fence and fence ~= record[2] then
    record = {false, false}
  end
end
local admitted = '0'
if not record[1] or held then
  if not held then
    redis.call('ZADD', failures_key, 'NX', -now, member)
    if failures == 0 then
      redis.call('EXPIRE', failures_key, failure_window)
    end
  end
  admitted = '1'
end
local out = {'0', admitted, tostring(failures), record[1], record[2]}
if record[1] then
  local f = redis.call('HMGET', ARGV[1] .. record[1], 'v', 'u', 'n', 'a')
  for i = 1, 4 do out[#out + 1] = f[i] end
end
return out
";

/// [`LOOKUP`], sent by its SHA-1 (`EVALSHA`) once Redis has it.
pub(crate) static LOOKUP_SCRIPT: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(login_counters::login_script(LOOKUP)));

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
/// counters on both sides and its member in them.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// The username, lowercased; `None` for a name that breaks the rules
    /// (it has no record and no counters of its own).
    pub username: Option<&'a str>,
    /// The account's counters (`None` without a valid username).
    pub user: Option<&'a LoginCounters>,
    /// The client address's counters (`None` when the address is unknown).
    pub addr: Option<&'a LoginCounters>,
    /// The attempt's member in them.
    pub member: &'a str,
}

/// What [`lookup`] found for one log-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The record, if Redis has one.
    pub record: Option<Record>,
    /// Whether the attempt holds a place in the account's failures (there
    /// was no record, so it will need a hash) until it is known to have
    /// succeeded. (Its place in the address's failures is always taken.)
    pub admitted: bool,
    /// Whether the account's failures held any attempt when it looked: if
    /// not, none can have ended before this log-in began, and its success
    /// has none to clear ([`crate::login_counters::Success`]).
    pub failures_seen: bool,
}

/// For each log-in, in one round trip for all, one atomic step per side:
/// refuses ([`Error::TooManyAttempts`]) while a counter of the account or of
/// the address is at its limit; otherwise reads the username's record and its
/// cached profile, and takes the attempt's places: under both success limits,
/// in the address's failures, and, where there is no record, in the account's
/// failures, all before any hash (see [`crate::login_counters`]). A log-in
/// refused on one side may hold places on the other: the caller gives them
/// back with the batch's last pipeline.
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
    let now_ms = crate::session::unix_now_ms();
    let mut batch = Batch::new();
    // The account scripts' replies come first, one per lookup with an account.
    let mut accounts = 0;
    for lookup in lookups {
        if let (Some(name), Some(user)) = (lookup.username, lookup.user) {
            accounts += 1;
            batch
                .script(&LOOKUP_SCRIPT)
                .arg(5)
                .arg(keys.login_record(name))
                .arg(keys.password_fence(name))
                .arg(&user.failures)
                .arg(&user.successes)
                .arg(&user.in_flight)
                .arg(keys.profile_prefix(&AccountTag::of(name)))
                .arg(lookup.member)
                .arg(now_ms)
                .arg(user.failure_limit.max_attempts)
                .arg(user.failure_limit.window_secs)
                .arg(user.success_limit.max_attempts)
                .arg(user.success_limit.window_secs);
        }
    }
    // The address side: one script per address for all its log-ins.
    let by_address = login_counters::by_side(
        lookups.iter().enumerate().filter_map(|(i, lookup)| lookup.addr.map(|addr| (addr, i))),
    );
    for (addr, members) in &by_address {
        let members: Vec<&str> = members.iter().map(|&i| lookups[i].member).collect();
        login_counters::reserve_cmd(&mut batch, addr, &members, true);
    }
    let replies: Vec<Vec<Option<String>>> = redis.run(&batch)?;
    let (account_replies, address_replies) = replies.split_at(accounts.min(replies.len()));
    let mut waits = vec![0u64; lookups.len()];
    for ((_, members), reply) in by_address.iter().zip(address_replies) {
        for (&i, wait) in members.iter().zip(reply) {
            waits[i] = wait.as_deref().and_then(|w| w.parse().ok()).unwrap_or(0);
        }
    }
    let mut account_replies = account_replies.iter();
    let mut found = Vec::with_capacity(lookups.len());
    for (lookup, address) in lookups.iter().zip(waits) {
        let account = match (lookup.username, lookup.user) {
            (Some(_), Some(_)) => decode(account_replies.next().map_or(&[][..], Vec::as_slice)),
            _ => Ok(Found { record: None, admitted: false, failures_seen: false }),
        };
        found.push(match (account, address) {
            (Err(e), _) => Err(e),
            (Ok(_), wait) if wait > 0 => {
                crate::metrics::THROTTLED.add(1);
                Err(Error::TooManyAttempts { retry_after_secs: u32::try_from(wait).unwrap_or(u32::MAX) })
            }
            (Ok(found), _) => Ok(found),
        });
    }
    Ok(found)
}

fn decode(reply: &[Option<String>]) -> Result<Found, Error> {
    let field = |i: usize| reply.get(i).cloned().flatten();
    let wait: u64 = field(0).and_then(|v| v.parse().ok()).unwrap_or(0);
    if wait > 0 {
        crate::metrics::THROTTLED.add(1);
        return Err(Error::TooManyAttempts { retry_after_secs: u32::try_from(wait).unwrap_or(u32::MAX) });
    }
    let admitted = field(1).as_deref() == Some("1");
    let failures_seen = field(2).is_some_and(|count| count != "0");
    let (Some(id), Some(stamp)) = (field(3), field(4)) else {
        return Ok(Found { record: None, admitted, failures_seen });
    };
    let user_id = id.parse().map_err(|_| Error::Internal(Internal::CorruptEntry("login record")))?;
    let profile = profile_cache::decode((field(5), field(6), field(7), field(8)))?;
    Ok(Found { record: Some(Record { user_id, stamp, profile }), admitted, failures_seen })
}

/// Adds the commands that write `username`'s record to a batch.
pub fn store(pipe: &mut Batch, keys: &Keys, username: &str, user_id: u64, stamp: &str) {
    let key = keys.login_record(username);
    pipe.cmd("HSET").arg(&key).arg("id").arg(user_id).arg("s").arg(stamp).ignore();
    pipe.cmd("EXPIRE").arg(&key).arg(TTL_SECS).ignore();
}

/// Adds the commands that forget `username`'s record and fence it to
/// `stamp` (the new hash's, or [`DELETED`]) to a batch.
pub fn fence_cmd(pipe: &mut Batch, keys: &Keys, username: &str, stamp: &str) {
    pipe.cmd("SET").arg(keys.password_fence(username)).arg(stamp).arg("EX").arg(FENCE_TTL_SECS).ignore();
    pipe.cmd("DEL").arg(keys.login_record(username)).ignore();
}
