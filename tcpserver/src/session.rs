//! Sessions: opaque random tokens, stored server-side in Redis.
//!
//! A token is 64 lowercase hex digits: the account's hash tag
//! ([`AccountTag`], four digits, so that the session's keys are found in the
//! account's hash slot from the token alone, see [`crate::keys`]), then 30
//! bytes (240 bits) from the operating system's generator. Redis holds only
//! its SHA-256, so a copy of Redis (a dump, a replica, `MONITOR`) yields no
//! usable token. The entry holds the user id, the username and the
//! absolute expiry; its Redis TTL is the idle lifetime, refreshed on every use
//! but never past the absolute expiry. Logging out deletes the entry, so the
//! token stops working at once. A log-in opens its session through
//! [`crate::login_session`], which also caps the sessions of one account.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use proto::Secret;
use rand::TryRng;
use rand::rngs::SysRng;
use sha2::{Digest, Sha256};

use crate::db::redis::{Batch, LuaScript, RedisLink};
use crate::error::{Error, Internal};
use crate::keys::{AccountTag, Keys};
use crate::profile_cache::{self, Versioned};

/// Random bytes in a token: 240 bits, beyond any guessing.
pub const TOKEN_BYTES: usize = 30;

/// Length of a token on the wire: the account tag, then two hex digits per
/// random byte (64, as before the tag, so nothing outside notices).
pub const TOKEN_LEN: usize = AccountTag::LEN + TOKEN_BYTES * 2;

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Seconds without use after which a session ends.
    pub idle_secs: u64,
    /// Seconds after log-in after which a session ends however busy.
    pub max_secs: u64,
}

/// A logged-in user, as stored under the token's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `users.id`.
    pub user_id: u64,
    /// The canonical (lowercase) username.
    pub username: String,
    /// Unix time at which the session ends however busy.
    pub expires_at: u64,
}

impl Session {
    /// The Redis value: `user_id:expires_at:username` (usernames hold no `:`
    /// that could confuse the split, and the split stops at the second one anyway).
    pub(crate) fn encode(&self) -> String {
        format!("{}:{}:{}", self.user_id, self.expires_at, self.username)
    }

    fn decode(value: &str) -> Option<Session> {
        let mut parts = value.splitn(3, ':');
        let user_id = parts.next()?.parse().ok()?;
        let expires_at = parts.next()?.parse().ok()?;
        let username = parts.next()?.to_owned();
        Some(Session { user_id, username, expires_at })
    }

    /// TTL to give the Redis key now: the idle lifetime, cut to what is left of
    /// the absolute one.
    pub(crate) fn ttl(&self, lifetimes: Lifetimes, now: u64) -> u64 {
        lifetimes.idle_secs.min(self.expires_at.saturating_sub(now)).max(1)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    unix_now_us() / 1000
}

/// Microseconds since the Unix epoch (exact as a Redis score: below 2^53
/// until the year 2255).
pub fn unix_now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A fresh token for an account of tag `tag`, and the hash it is stored under.
///
/// # Errors
///
/// [`Error::Internal`] if the OS generator fails.
pub fn new_token(tag: &AccountTag) -> Result<(Secret, String), Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| Error::Internal(Internal::Hash(crate::password::PasswordError::Random)))?;
    let token = format!("{tag}{}", hex::encode(bytes));
    let hash = token_hash(&token).ok_or(Error::Internal(Internal::CorruptEntry("new token")))?;
    Ok((Secret::new(token), hash))
}

/// The storage hash of a well-formed token (64 lowercase hex digits), or `None`
/// for anything else, which then cannot name a session and costs no Redis call.
pub fn token_hash(token: &str) -> Option<String> {
    let well_formed =
        token.len() == TOKEN_LEN && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    well_formed.then(|| hex::encode(Sha256::digest(token.as_bytes())))
}

/// The account tag and storage hash of a well-formed token.
pub fn token_parts(token: &str) -> Option<(AccountTag, String)> {
    let hash = token_hash(token)?;
    Some((AccountTag::prefix_of(token)?, hash))
}

/// The Redis key of the session a token names, if it is well formed.
pub fn storage_key(keys: &Keys, token: &str) -> Option<String> {
    token_parts(token).map(|(tag, hash)| keys.session(&tag, &hash))
}

/// The session a token names, with its idle timer restarted.
///
/// # Errors
///
/// [`Error::Unauthenticated`] if the token is malformed, unknown, logged out or
/// expired; [`Error::Unavailable`] if Redis is down.
pub fn resume(
    redis: &mut RedisLink,
    keys: &Keys,
    token: &Secret,
    lifetimes: Lifetimes,
) -> Result<Session, Error> {
    let (tag, hash) = token_parts(token.expose()).ok_or(Error::Unauthenticated)?;
    let key = keys.session(&tag, &hash);
    // GETEX reads and restarts the idle timer in one round trip.
    let mut batch = Batch::new();
    batch.cmd("GETEX").arg(&key).arg("EX").arg(lifetimes.idle_secs);
    let (value,): (Option<String>,) = redis.run(&batch)?;
    check_lifetime(redis, keys, (&tag, &hash), value, lifetimes)
}

/// KEYS[1] = session; ARGV = idle lifetime, profile key prefix (of the
/// session's account tag). `GETEX`s the session and, when its value starts
/// with a user id, `HMGET`s that user's cached profile: `nil` for no session,
/// else `{session, v, u, n, a}`.
const RESUME_WITH_PROFILE: &str = r"
local value = redis.call('GETEX', KEYS[1], 'EX', ARGV[1])
if not value then
  return false
end
local id = string.match(value, '^(%d+):')
if not id then
  return {value}
end
local f = redis.call('HMGET', ARGV[2] .. id, 'v', 'u', 'n', 'a')
return {value, f[1], f[2], f[3], f[4]}
";

/// [`RESUME_WITH_PROFILE`], sent by its SHA-1 (`EVALSHA`): the hottest request
/// sends 40 bytes instead of the script.
static RESUME_WITH_PROFILE_SCRIPT: LazyLock<LuaScript> =
    LazyLock::new(|| LuaScript::new(RESUME_WITH_PROFILE));

/// A session with its user's cached profile (`None` if the cache holds no
/// entry for them), or why there is none.
pub type Resumed = Result<(Session, Option<Versioned>), Error>;

/// As [`resume`] for each of `tokens`, with the cached profile of each session's
/// user, all in one round trip: a worker answers a batch of profile reads with
/// one write to Redis and one read back (on a cluster, one to each node
/// holding one of the sessions, at once).
///
/// # Errors
///
/// [`Error::Unavailable`] if Redis is down (for the whole batch); otherwise
/// each token gets its own outcome, as [`resume`] would give, or
/// [`Error::Internal`] for a corrupt profile entry.
pub fn resume_with_profiles(
    redis: &mut RedisLink,
    keys: &Keys,
    tokens: &[&Secret],
    lifetimes: Lifetimes,
) -> Result<Vec<Resumed>, Error> {
    let parts: Vec<Option<(AccountTag, String)>> =
        tokens.iter().map(|token| token_parts(token.expose())).collect();
    let mut batch = Batch::new();
    for (tag, hash) in parts.iter().flatten() {
        batch
            .script(&RESUME_WITH_PROFILE_SCRIPT)
            .arg(1)
            .arg(keys.session(tag, hash))
            .arg(lifetimes.idle_secs)
            .arg(keys.profile_prefix(tag));
    }
    // Each token its own outcome: on a cluster a dead master fails only the
    // reads of the sessions it held (resuming twice is harmless).
    let mut replies = redis.run_each(&batch)?.into_iter();
    let mut resumed = Vec::with_capacity(tokens.len());
    for part in &parts {
        let Some((tag, hash)) = part else {
            resumed.push(Err(Error::Unauthenticated));
            continue;
        };
        /// `nil` for no session, else the session value and the profile fields.
        type Reply = Option<Vec<Option<String>>>;
        let reply = replies
            .next()
            .unwrap_or(Ok(redis::Value::Nil))
            .and_then(|value| redis::from_redis_value::<Reply>(value).map_err(redis::RedisError::from));
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                resumed.push(Err(Error::from(e)));
                continue;
            }
        };
        let mut fields = reply.unwrap_or_default().into_iter();
        let session = check_lifetime(redis, keys, (tag, hash), fields.next().flatten(), lifetimes);
        let mut next = || fields.next().flatten();
        let profile = profile_cache::decode((next(), next(), next(), next()));
        resumed.push(session.and_then(|session| Ok((session, profile?))));
    }
    Ok(resumed)
}

/// The session in a `GETEX`ed value, if it is still within its absolute
/// lifetime. In its last idle period the key is pinned to the absolute expiry,
/// so the TTL no longer tells when it was last used: the time of this use is
/// stored beside its metadata instead ([`crate::device::last_used`]), in the
/// same round trip.
fn check_lifetime(
    redis: &mut RedisLink,
    keys: &Keys,
    (tag, hash): (&AccountTag, &str),
    value: Option<String>,
    lifetimes: Lifetimes,
) -> Result<Session, Error> {
    let key = keys.session(tag, hash);
    let session = Session::decode(&value.ok_or(Error::Unauthenticated)?)
        .ok_or(Error::Internal(Internal::CorruptEntry("session")))?;
    let now = unix_now();
    if now >= session.expires_at {
        let mut batch = Batch::new();
        batch.cmd("DEL").arg(&key).ignore();
        redis.run::<()>(&batch)?;
        return Err(Error::Unauthenticated);
    }
    if session.expires_at - now < lifetimes.idle_secs {
        // In its last idle period the key must expire with the session itself.
        let mut batch = Batch::new();
        batch.cmd("EXPIREAT").arg(&key).arg(session.expires_at).ignore();
        let meta = keys.session_meta(tag, hash);
        batch.cmd("HSET").arg(&meta).arg("lu").arg(now).ignore();
        // Every key has a TTL: a session older than this version had no metadata.
        batch.cmd("EXPIREAT").arg(&meta).arg(session.expires_at).ignore();
        redis.run::<()>(&batch)?;
    }
    Ok(session)
}

/// Ends the session a token names, if any.
///
/// # Errors
///
/// [`Error::Unavailable`] if Redis is down.
pub fn end(redis: &mut RedisLink, keys: &Keys, token: &Secret) -> Result<(), Error> {
    if let Some((tag, hash)) = token_parts(token.expose()) {
        let mut batch = Batch::new();
        batch
            .cmd("DEL")
            .arg(keys.session(&tag, &hash))
            .cmd("DEL")
            .arg(keys.session_meta(&tag, &hash))
            .ignore();
        // Only the session's own deletion counts: its metadata may outlive it.
        let (removed,): (u64,) = redis.run(&batch)?;
        crate::metrics::SESSIONS_LOGGED_OUT.add(removed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_hex_and_hash_to_their_key() {
        let tag = AccountTag::of("ann");
        let (a, hash_a) = new_token(&tag).unwrap();
        let (b, _) = new_token(&tag).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), TOKEN_LEN);
        assert_eq!(token_hash(a.expose()), Some(hash_a.clone()));
        assert_ne!(hash_a, a.expose(), "the stored form is not the token");
        assert_eq!(token_parts(a.expose()), Some((tag, hash_a)), "the token carries its account's tag");
    }

    #[test]
    fn malformed_tokens_have_no_hash() {
        for bad in ["", "abc", &"g".repeat(64), &"A".repeat(64), &"a".repeat(65)] {
            assert_eq!(token_hash(bad), None, "{bad}");
        }
    }

    #[test]
    fn session_values_round_trip() {
        let s = Session { user_id: 42, username: "bruce_lee".into(), expires_at: 1_700_000_000 };
        assert_eq!(Session::decode(&s.encode()), Some(s));
        assert_eq!(Session::decode("x:1:bob"), None);
        assert_eq!(Session::decode("1:2"), None);
    }

    #[test]
    fn ttl_never_reaches_past_the_absolute_expiry() {
        let lifetimes = Lifetimes { idle_secs: 1800, max_secs: 86_400 };
        let s = Session { user_id: 1, username: "u".into(), expires_at: 10_000 };
        assert_eq!(s.ttl(lifetimes, 1_000), 1800);
        assert_eq!(s.ttl(lifetimes, 9_000), 1000);
        assert_eq!(s.ttl(lifetimes, 10_000), 1);
    }
}
