//! "Your devices": the sessions of the asking session's account, and ending
//! them one at a time or all but the current one.
//!
//! The account's index `usess:{t}<id>` (at most `--max-sessions-per-user`
//! entries, see [`crate::login_session`]) names every session it holds; one
//! script reads each live session with its metadata and TTL in one round
//! trip and drops the entries whose session has ended. A session is named to
//! the person by [`device::public_id`], never by its token or storage hash;
//! revoking by id compares the id of each indexed session, so an id grants
//! nothing but the ending of a session of one's own account.

use std::sync::LazyLock;

use proto::{DeviceSession, Message, Secret};

use super::Service;
use crate::db::redis::{Batch, LuaScript, RedisLink};
use crate::device::{self, SessionMeta};
use crate::error::Error;
use crate::keys::{AccountTag, Keys};
use crate::session::{self, Lifetimes, Session};
use crate::user_agent::UNKNOWN;

/// KEYS[1] = the account's index; ARGV = session key prefix, metadata key
/// prefix. Returns, per live session: hash, value, TTL, metadata, last use
/// stored in the last idle period ('' where absent). Drops dead entries
/// with their metadata (a session that idled out leaves it behind).
const LIST: &str = r"
local out = {}
for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local v = redis.call('GET', ARGV[1] .. h)
  if v then
    local m = redis.call('HMGET', ARGV[2] .. h, 'm', 'lu')
    out[#out + 1] = h
    out[#out + 1] = v
    out[#out + 1] = tostring(redis.call('TTL', ARGV[1] .. h))
    out[#out + 1] = m[1] or ''
    out[#out + 1] = m[2] or ''
  else
    redis.call('ZREM', KEYS[1], h)
    redis.call('DEL', ARGV[2] .. h)
  end
end
return out
";

static LIST_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(LIST));

/// One live session of an account, as Redis holds it.
#[derive(Debug, Clone)]
pub(super) struct Live {
    /// Its storage hash (never shown).
    pub hash: String,
    /// What the device list shows.
    pub shown: DeviceSession,
}

/// The live sessions of `session`'s account, newest first; the one under
/// `current_hash` is marked current.
pub(super) fn live_sessions(
    redis: &mut RedisLink,
    keys: &Keys,
    session: &Session,
    current_hash: &str,
    lifetimes: Lifetimes,
) -> Result<Vec<Live>, Error> {
    let tag = AccountTag::of(&session.username);
    let mut batch = Batch::new();
    batch
        .script(&LIST_SCRIPT)
        .arg(1)
        .arg(keys.user_sessions(&session.username, session.user_id))
        .arg(keys.session_prefix(&tag))
        .arg(keys.session_meta_prefix(&tag));
    let mut replies: Vec<Vec<String>> = redis.run(&batch)?;
    let flat = replies.pop().unwrap_or_default();
    let now = session::unix_now();
    let mut live: Vec<Live> = flat
        .chunks_exact(5)
        .filter_map(|f| {
            let [hash, value, ttl, meta, stored] = f else { return None };
            let expires_at = value.split(':').nth(1).and_then(|e| e.parse().ok()).unwrap_or(now);
            let meta = SessionMeta::decode(meta).unwrap_or(SessionMeta {
                created: now,
                ip: String::new(),
                browser: UNKNOWN.to_owned(),
                os: UNKNOWN.to_owned(),
            });
            let ttl = ttl.parse().unwrap_or(0);
            let last_used = device::last_used(
                now,
                ttl,
                lifetimes.idle_secs,
                expires_at,
                meta.created,
                stored.parse().ok(),
            );
            Some(Live {
                hash: hash.clone(),
                shown: DeviceSession {
                    id: device::public_id(hash),
                    browser: meta.browser,
                    os: meta.os,
                    ip: meta.ip,
                    created: meta.created,
                    last_used,
                    current: hash == current_hash,
                },
            })
        })
        .collect();
    live.sort_by(|a, b| b.shown.created.cmp(&a.shown.created).then_with(|| b.shown.id.cmp(&a.shown.id)));
    Ok(live)
}

/// Ends the sessions under `hashes` of `session`'s account: session,
/// metadata and index entry, in one round trip (all in the account's slot).
pub(super) fn end_sessions(
    redis: &mut RedisLink,
    keys: &Keys,
    session: &Session,
    hashes: &[&str],
) -> Result<(), Error> {
    let tag = AccountTag::of(&session.username);
    let index = keys.user_sessions(&session.username, session.user_id);
    let mut batch = Batch::new();
    for hash in hashes {
        batch.cmd("DEL").arg(keys.session(&tag, hash)).arg(keys.session_meta(&tag, hash)).ignore();
        batch.cmd("ZREM").arg(&index).arg(*hash).ignore();
    }
    redis.run::<()>(&batch)?;
    Ok(())
}

impl Service {
    /// The session's account's devices.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthenticated`] without a live session; [`Error::Unavailable`] if Redis is down.
    pub fn list_sessions(&mut self, token: &Secret) -> Result<Message, Error> {
        let (session, hash) = self.session_and_hash(token)?;
        let live = live_sessions(&mut self.redis, &self.shared.keys, &session, &hash, self.shared.lifetimes)?;
        Ok(Message::Sessions(live.into_iter().map(|l| l.shown).collect()))
    }

    /// Ends the account's session with public id `id` (the asking one too, if named).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownSession`] if no live session of the account has that id.
    pub fn revoke_session(&mut self, token: &Secret, id: &str) -> Result<Message, Error> {
        let (session, hash) = self.session_and_hash(token)?;
        let live = live_sessions(&mut self.redis, &self.shared.keys, &session, &hash, self.shared.lifetimes)?;
        let target = live.iter().find(|l| l.shown.id == id).ok_or(Error::UnknownSession)?;
        end_sessions(&mut self.redis, &self.shared.keys, &session, &[&target.hash])?;
        Ok(Message::SessionRevoked)
    }

    /// Ends every session of the account but the asking one.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthenticated`] without a live session; [`Error::Unavailable`] if Redis is down.
    pub fn revoke_other_sessions(&mut self, token: &Secret) -> Result<Message, Error> {
        let (session, hash) = self.session_and_hash(token)?;
        let ended = self.end_other_sessions(&session, &hash)?;
        Ok(Message::OthersRevoked { ended })
    }

    /// Ends every session of `session`'s account but the one under `keep`; how many.
    pub(super) fn end_other_sessions(&mut self, session: &Session, keep: &str) -> Result<u32, Error> {
        let keys = &self.shared.keys;
        let live = live_sessions(&mut self.redis, keys, session, keep, self.shared.lifetimes)?;
        let others: Vec<&str> = live.iter().filter(|l| l.hash != keep).map(|l| l.hash.as_str()).collect();
        end_sessions(&mut self.redis, keys, session, &others)?;
        Ok(u32::try_from(others.len()).unwrap_or(u32::MAX))
    }

    /// The live session a token names, with its storage hash.
    pub(super) fn session_and_hash(&mut self, token: &Secret) -> Result<(Session, String), Error> {
        let hash = session::token_hash(token.expose()).ok_or(Error::Unauthenticated)?;
        let session = session::resume(&mut self.redis, &self.shared.keys, token, self.shared.lifetimes)?;
        Ok((session, hash))
    }
}
