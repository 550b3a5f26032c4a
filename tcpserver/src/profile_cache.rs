//! The Redis profile cache, kept consistent with MySQL by version numbers.
//!
//! `users.version` grows with every profile change. A cache entry carries the
//! version it was read at, and is written only through one Lua script that
//! replaces an entry only with a strictly newer version. Writers commit to
//! MySQL, read the new row (and version) back in the same transaction, and
//! write the cache before they acknowledge; readers that miss fill the cache
//! from MySQL through the same script. So a reader holding an old row can never
//! overwrite a newer entry, and once a change is acknowledged the cache cannot
//! serve what it replaced.

use std::sync::LazyLock;

use proto::Profile;

use crate::db::redis::{Batch, LuaScript, RedisLink};
use crate::error::{Error, Internal};
use crate::keys::Keys;

/// Lifetime of a cache entry: an hour keeps active users' profiles in memory
/// and lets Redis forget everyone else's.
pub const TTL_SECS: u64 = 60 * 60;

/// KEYS[1] = entry; ARGV = version, username, nickname, avatar ("" for none), TTL.
/// Returns 1 if stored, 0 if the cached version was as new or newer.
const STORE_IF_NEWER: &str = r"#!lua
local cached = redis.call('HGET', KEYS[1], 'v')
if cached and tonumber(cached) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'u', ARGV[2], 'n', ARGV[3], 'a', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
";

/// The `STORE_IF_NEWER` script, sent by its SHA-1 (`EVALSHA`): every log-in read from
/// MySQL and every profile change stores an entry, and sending the script's
/// text each time had Redis hash it each time. A node that lost it gets it
/// again from [`RedisLink::run`].
pub static STORE_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(STORE_IF_NEWER));

/// A profile as of a version of its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// `users.version` when the profile was read.
    pub version: u64,
    /// The profile.
    pub profile: Profile,
}

/// Adds the storing of `entry` (unless the cache holds a newer version) to a
/// batch, with no reply: an `EVALSHA` of [`STORE_SCRIPT`]. The key's account
/// tag comes from the profile's username.
pub fn store_cmd(batch: &mut Batch, keys: &Keys, user_id: u64, entry: &Versioned) {
    batch
        .script(&STORE_SCRIPT)
        .arg(1)
        .arg(keys.profile(&entry.profile.username, user_id))
        .arg(entry.version)
        .arg(&entry.profile.username)
        .arg(&entry.profile.nickname)
        .arg(entry.profile.avatar.as_deref().unwrap_or(""))
        .arg(TTL_SECS)
        .ignore();
}

/// Stores `entry` unless the cache holds a newer version.
///
/// # Errors
///
/// [`Error::Unavailable`] if Redis is down.
pub fn store(redis: &mut RedisLink, keys: &Keys, user_id: u64, entry: &Versioned) -> Result<(), Error> {
    let mut batch = Batch::new();
    store_cmd(&mut batch, keys, user_id, entry);
    redis.run::<()>(&batch)?;
    Ok(())
}

/// The cached profile of user `user_id` (named `username`), if any.
///
/// # Errors
///
/// [`Error::Unavailable`] if Redis is down.
pub fn load(
    redis: &mut RedisLink,
    keys: &Keys,
    username: &str,
    user_id: u64,
) -> Result<Option<Versioned>, Error> {
    let mut batch = Batch::new();
    batch.cmd("HMGET").arg(keys.profile(username, user_id)).arg("v").arg("u").arg("n").arg("a");
    let (fields,): (Fields,) = redis.run(&batch)?;
    decode(fields)
}

/// An entry's fields `v`, `u`, `n`, `a` as `HMGET` returns them (`None`: missing).
pub type Fields = (Option<String>, Option<String>, Option<String>, Option<String>);

/// The profile an entry's fields hold, or `None` if any is missing (no entry).
///
/// # Errors
///
/// [`Error::Internal`] if the version is not a number.
pub fn decode(fields: Fields) -> Result<Option<Versioned>, Error> {
    let (Some(version), Some(username), Some(nickname), Some(avatar)) = fields else {
        crate::metrics::PROFILE_MISSES.add(1);
        return Ok(None);
    };
    let version = version.parse().map_err(|_| Error::Internal(Internal::CorruptEntry("profile version")))?;
    let avatar = (!avatar.is_empty()).then_some(avatar);
    crate::metrics::PROFILE_HITS.add(1);
    Ok(Some(Versioned { version, profile: Profile { username, nickname, avatar } }))
}
