//! Scan-to-log-in codes in Redis: the source of truth for where each code stands.
//!
//! A code is one hash (`<p>qr:{<sha256(key)>}`, see [`crate::keys`]) that
//! expires with the code. Every change of state is one Lua script, so two
//! phones, or a phone and a desktop, can never both win: `pending -> scanned`
//! (`SCAN`), `pending | scanned -> confirmed | denied` (`DECIDE`), and
//! `confirmed -> consumed` (`CHECK`, a wait's look at its code, which
//! redeems a confirmed code held by the binding secret in the same step).
//! Each script that changes a code publishes the code's key hash on
//! `<p>qr:changed` in the same step, so whichever tcpserver holds the
//! desktop's wait hears of it ([`crate::qr_events`]).
//!
//! Redis holds neither the key nor the binding secret, only their SHA-256:
//! a copy of Redis yields no code anyone can redeem.

use std::net::IpAddr;
use std::sync::LazyLock;

use proto::QrState;
use rand::TryRng;
use rand::rngs::SysRng;
use sha2::{Digest, Sha256};

use crate::db::redis::{Batch, LuaScript, RedisLink};
use crate::error::{Error, Internal};
use crate::keys::Keys;

/// How long a code lives by default: two minutes, long enough to take out a
/// phone, unlock it and scan; short enough that a photo of the screen is
/// soon worthless. The desktop page shows a fresh code when one expires.
pub const DEFAULT_TTL_SECS: u32 = 120;

/// The longest lifetime `--qr-ttl-secs` accepts: ten minutes.
pub const MAX_TTL_SECS: u32 = 600;

/// Random bytes in a key and in a binding secret: 256 bits each, beyond guessing.
pub const SECRET_BYTES: usize = 32;

/// Length of a key or binding secret on the wire: two hex digits per byte.
pub const SECRET_LEN: usize = SECRET_BYTES * 2;

/// Bytes of the desktop's `User-Agent` kept with a code. Real ones are
/// 100–300 bytes; 512 keeps every real one whole and bounds what a client
/// can make Redis store per code.
pub const MAX_USER_AGENT_LEN: usize = 512;

/// KEYS[1] = code. ARGV: user id, username, nickname, avatar, channel, key hash.
/// Returns `{state, ua, ip, created}`, `{'taken'}` if another account scanned
/// it, `{'expired'}` if there is no such code.
const SCAN: &str = r"#!lua
local v = redis.call('HMGET', KEYS[1], 's', 'u', 'ua', 'ip', 't')
if not v[1] then
  return {'expired'}
end
local s = v[1]
if s == 'pending' then
  redis.call('HSET', KEYS[1], 's', 'scanned', 'u', ARGV[1], 'n', ARGV[2], 'nick', ARGV[3], 'a', ARGV[4])
  redis.call('PUBLISH', ARGV[5], ARGV[6])
  s = 'scanned'
elseif v[2] ~= ARGV[1] then
  return {'taken'}
end
return {s, v[3], v[4], v[5]}
";

/// KEYS[1] = code. ARGV: `confirmed` or `denied`, user id, username,
/// nickname, avatar, channel, key hash. Returns `ok`, `used` or `expired`.
const DECIDE: &str = r"#!lua
local v = redis.call('HMGET', KEYS[1], 's', 'u')
if not v[1] then
  return 'expired'
end
if v[1] == 'pending' or (v[1] == 'scanned' and v[2] == ARGV[2]) then
  redis.call('HSET', KEYS[1], 's', ARGV[1], 'u', ARGV[2], 'n', ARGV[3], 'nick', ARGV[4], 'a', ARGV[5])
  redis.call('PUBLISH', ARGV[6], ARGV[7])
  return 'ok'
end
return 'used'
";

/// KEYS[1] = code. ARGV: binding hash, channel, key hash. A wait's look
/// at its code: returns `{'expired'}` for no such code, else `{state,
/// bound ('1' or '0'), nickname, avatar, ttl (ms)}`; a `confirmed` code whose
/// binding secret this is moves to `consumed` in the same step, and the
/// reply is then `{'redeemed', '1', nickname, avatar, ttl, user id,
/// username, user agent}`. One round trip where reading, then redeeming,
/// took two, each a worker's wait on Redis beside the log-ins.
const CHECK: &str = r"#!lua
local v = redis.call('HMGET', KEYS[1], 's', 'b', 'nick', 'a', 'u', 'n', 'ua')
if not v[1] then
  return {'expired'}
end
local bound = '0'
if v[2] == ARGV[1] then
  bound = '1'
end
local ttl = tostring(redis.call('PTTL', KEYS[1]))
if v[1] == 'confirmed' and bound == '1' then
  redis.call('HSET', KEYS[1], 's', 'consumed')
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return {'redeemed', bound, v[3] or '', v[4] or '', ttl, v[5] or '', v[6] or '', v[7] or ''}
end
return {v[1], bound, v[3] or '', v[4] or '', ttl}
";

/// KEYS[1] = code. Gives a redeemed code back (`consumed -> confirmed`) when
/// the session could not be opened (a log-in throttle refused it), so the
/// desktop may try again once the throttle opens.
const UNREDEEM: &str = r"#!lua
if redis.call('HGET', KEYS[1], 's') == 'consumed' then
  redis.call('HSET', KEYS[1], 's', 'confirmed')
end
return 0
";

/// KEYS[1] = code; ARGV: binding hash, user agent, address, created (Unix s),
/// TTL (s). Makes the `pending` code and its expiry in one step (a cluster
/// pipeline has no `MULTI`).
const CREATE: &str = r"#!lua
redis.call('HSET', KEYS[1], 's', 'pending', 'b', ARGV[1], 'ua', ARGV[2], 'ip', ARGV[3], 't', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 0
";

static CREATE_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(CREATE));
static SCAN_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(SCAN));
static DECIDE_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(DECIDE));
static CHECK_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(CHECK));
static UNREDEEM_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(UNREDEEM));

/// A new code's two secrets.
#[derive(Debug)]
pub struct NewCode {
    /// What the QR image encodes.
    pub key: String,
    /// What only the desktop's cookie holds.
    pub binding: String,
}

/// A code as a wait reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Where it stands.
    pub state: QrState,
    /// Whether the binding secret given matches the code's.
    pub bound: bool,
    /// Who scanned or decided it, once someone has.
    pub nickname: Option<String>,
    /// That account's picture file.
    pub avatar: Option<String>,
    /// Milliseconds the code has left.
    pub ttl_ms: u64,
    /// Set when this look redeemed the code (it was `confirmed`, and the
    /// binding secret is its own): it is now `consumed`, and the session is
    /// this account's to open. `state` still says `Confirmed`.
    pub redeemed: Option<Redemption>,
}

/// The account a redeemed code opens a session for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    /// `users.id`.
    pub user_id: u64,
    /// The username.
    pub username: String,
    /// The desktop's `User-Agent` when it made the code: the new session's device.
    pub user_agent: String,
}

/// What the phone sees of a code it scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// The state after the scan.
    pub state: QrState,
    /// The desktop's `User-Agent`.
    pub user_agent: String,
    /// The desktop's address (empty if unknown).
    pub ip: String,
    /// When the code was made (Unix seconds).
    pub created_unix: u64,
}

/// The account acting on a code from a phone.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    /// `users.id`.
    pub user_id: u64,
    /// The username.
    pub username: &'a str,
    /// The nickname, shown on the desktop.
    pub nickname: &'a str,
    /// The picture file, shown on the desktop.
    pub avatar: Option<&'a str>,
}

/// The hex SHA-256 a key or binding secret is stored and announced under, or
/// `None` for anything that is not a well-formed secret (which then names no
/// code and costs no Redis call).
pub fn secret_hash(secret: &str) -> Option<String> {
    let well_formed = secret.len() == SECRET_LEN
        && secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    well_formed.then(|| hex::encode(Sha256::digest(secret.as_bytes())))
}

fn random_secret() -> Result<String, Error> {
    let mut bytes = [0u8; SECRET_BYTES];
    SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| Error::Internal(Internal::Hash(crate::password::PasswordError::Random)))?;
    Ok(hex::encode(bytes))
}

/// Cuts `text` to at most `max` bytes on a character boundary.
fn bounded(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Makes a `pending` code that lives `ttl_secs`, in one script (`CREATE`).
///
/// # Errors
///
/// [`Error::Unavailable`] if Redis is down; [`Error::Internal`] if the OS
/// generator fails.
pub fn create(
    redis: &mut RedisLink,
    keys: &Keys,
    ttl_secs: u32,
    user_agent: &str,
    client: Option<IpAddr>,
) -> Result<NewCode, Error> {
    let code = NewCode { key: random_secret()?, binding: random_secret()? };
    let (Some(key_hash), Some(binding_hash)) = (secret_hash(&code.key), secret_hash(&code.binding)) else {
        return Err(Error::Internal(Internal::CorruptEntry("new scan-to-log-in code")));
    };
    let name = keys.qr_code(&key_hash);
    let ip = client.map(|ip| ip.to_canonical().to_string()).unwrap_or_default();
    let mut batch = Batch::new();
    batch
        .script(&CREATE_SCRIPT)
        .arg(1)
        .arg(&name)
        .arg(&binding_hash)
        .arg(bounded(user_agent, MAX_USER_AGENT_LEN))
        .arg(&ip)
        .arg(crate::session::unix_now())
        .arg(ttl_secs)
        .ignore();
    redis.run::<()>(&batch)?;
    Ok(code)
}

/// A wait's look at its code, checking `binding_hash` against its own, and
/// redeeming it if it is confirmed and the binding is its own (`CHECK`).
///
/// # Errors
///
/// [`Error::Unavailable`] if Redis is down; [`Error::Internal`] for a
/// redeemed code whose account id is not a number.
pub fn check(
    redis: &mut RedisLink,
    keys: &Keys,
    key_hash: &str,
    binding_hash: &str,
) -> Result<Snapshot, Error> {
    let mut pipe = Batch::new();
    pipe.script(&CHECK_SCRIPT)
        .arg(1)
        .arg(keys.qr_code(key_hash))
        .arg(binding_hash)
        .arg(keys.qr_channel())
        .arg(key_hash);
    let (reply,): (Vec<String>,) = redis.run(&pipe)?;
    let text = |i: usize| reply.get(i).filter(|v| !v.is_empty()).cloned();
    let Some(state) = reply.first().filter(|_| reply.len() >= 5) else {
        return Ok(Snapshot {
            state: QrState::Expired,
            bound: false,
            nickname: None,
            avatar: None,
            ttl_ms: 0,
            redeemed: None,
        });
    };
    let redeemed = match (state.as_str(), reply.get(5..8)) {
        ("redeemed", Some([user_id, username, user_agent])) => Some(Redemption {
            user_id: user_id
                .parse()
                .map_err(|_| Error::Internal(Internal::CorruptEntry("scan-to-log-in code's account")))?,
            username: username.clone(),
            user_agent: user_agent.clone(),
        }),
        _ => None,
    };
    Ok(Snapshot {
        state: if redeemed.is_some() { QrState::Confirmed } else { QrState::from_name(state) },
        bound: reply.get(1).is_some_and(|bound| bound == "1"),
        nickname: text(2),
        avatar: text(3),
        ttl_ms: reply.get(4).and_then(|ttl| ttl.parse().ok()).unwrap_or(0),
        redeemed,
    })
}

/// Marks a code scanned by `actor` (a second scan by the same account is
/// harmless) and returns what the phone shows.
///
/// # Errors
///
/// [`Error::QrExpired`], [`Error::QrUsed`] if another account scanned it,
/// [`Error::Unavailable`].
pub fn scan(redis: &mut RedisLink, keys: &Keys, key_hash: &str, actor: Actor<'_>) -> Result<Scanned, Error> {
    let mut pipe = Batch::new();
    pipe.script(&SCAN_SCRIPT)
        .arg(1)
        .arg(keys.qr_code(key_hash))
        .arg(actor.user_id)
        .arg(actor.username)
        .arg(actor.nickname)
        .arg(actor.avatar.unwrap_or(""))
        .arg(keys.qr_channel())
        .arg(key_hash);
    let (reply,): (Vec<String>,) = redis.run(&pipe)?;
    match reply.as_slice() {
        [state, ua, ip, created] => Ok(Scanned {
            state: QrState::from_name(state),
            user_agent: ua.clone(),
            ip: ip.clone(),
            created_unix: created.parse().unwrap_or(0),
        }),
        [taken] if taken == "taken" => Err(Error::QrUsed),
        _ => Err(Error::QrExpired),
    }
}

/// Approves or denies a code, as `actor`.
///
/// # Errors
///
/// [`Error::QrExpired`], [`Error::QrUsed`] (decided already, or scanned by
/// another account), [`Error::Unavailable`].
pub fn decide(
    redis: &mut RedisLink,
    keys: &Keys,
    key_hash: &str,
    approve: bool,
    actor: Actor<'_>,
) -> Result<QrState, Error> {
    let state = if approve { QrState::Confirmed } else { QrState::Denied };
    let mut pipe = Batch::new();
    pipe.script(&DECIDE_SCRIPT)
        .arg(1)
        .arg(keys.qr_code(key_hash))
        .arg(state.name())
        .arg(actor.user_id)
        .arg(actor.username)
        .arg(actor.nickname)
        .arg(actor.avatar.unwrap_or(""))
        .arg(keys.qr_channel())
        .arg(key_hash);
    let (reply,): (String,) = redis.run(&pipe)?;
    match reply.as_str() {
        "ok" => Ok(state),
        "used" => Err(Error::QrUsed),
        _ => Err(Error::QrExpired),
    }
}

/// Adds the giving back of a redeemed code to `confirmed` (see
/// `UNREDEEM`) to a batch, with no reply.
pub fn unredeem_cmd(batch: &mut Batch, keys: &Keys, key_hash: &str) {
    batch.script(&UNREDEEM_SCRIPT).arg(1).arg(keys.qr_code(key_hash)).ignore();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_secrets_have_a_hash() {
        assert!(secret_hash(&"a".repeat(SECRET_LEN)).is_some());
        for bad in ["", "abc", &"A".repeat(SECRET_LEN), &"g".repeat(SECRET_LEN), &"a".repeat(SECRET_LEN + 1)]
        {
            assert_eq!(secret_hash(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_long_user_agent_is_cut_on_a_character_boundary() {
        let ua = "é".repeat(MAX_USER_AGENT_LEN);
        let cut = bounded(&ua, MAX_USER_AGENT_LEN);
        assert!(cut.len() <= MAX_USER_AGENT_LEN && cut.len() >= MAX_USER_AGENT_LEN - 1);
        assert_eq!(bounded("short", MAX_USER_AGENT_LEN), "short");
    }
}
