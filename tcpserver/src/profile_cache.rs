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
use redis::Script;

use crate::db::redis::RedisLink;
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
/// text each time had Redis hash it each time. Pipelines holding it go through
/// [`RedisLink::run_scripts`], which loads it again should Redis have lost it.
pub static STORE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(STORE_IF_NEWER));

/// A profile as of a version of its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// `users.version` when the profile was read.
    pub version: u64,
    /// The profile.
    pub profile: Profile,
}

/// The command that stores `entry` unless the cache holds a newer version; an
/// `EVALSHA` of [`STORE_SCRIPT`], to be sent with [`RedisLink::run_scripts`].
pub fn store_cmd(keys: &Keys, user_id: u64, entry: &Versioned) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(STORE_SCRIPT.get_hash())
        .arg(1)
        .arg(keys.profile(user_id))
        .arg(entry.version)
        .arg(&entry.profile.username)
        .arg(&entry.profile.nickname)
        .arg(entry.profile.avatar.as_deref().unwrap_or(""))
        .arg(TTL_SECS);
    cmd
}

/// Stores `entry` unless the cache holds a newer version.
///
/// # Errors
///
/// [`Error::Unavailable`] if Redis is down.
pub fn store(redis: &mut RedisLink, keys: &Keys, user_id: u64, entry: &Versioned) -> Result<(), Error> {
    let mut pipe = redis::pipe();
    pipe.add_command(store_cmd(keys, user_id, entry)).ignore();
    redis.run_scripts::<()>(&pipe, &[&STORE_SCRIPT])?;
    Ok(())
}

/// The cached profile of a user, if any.
///
/// # Errors
///
/// [`Error::Unavailable`] if Redis is down.
pub fn load(redis: &mut RedisLink, keys: &Keys, user_id: u64) -> Result<Option<Versioned>, Error> {
    let key = keys.profile(user_id);
    let fields: Fields =
        redis.run(|c| redis::cmd("HMGET").arg(&key).arg("v").arg("u").arg("n").arg("a").query(c))?;
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
