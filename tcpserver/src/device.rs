//! What a session was opened with, and the public id that names it.
//!
//! Beside each session `sess:{t}<hash>` the log-in that opened it stores
//! `smeta:{t}<hash>` (same lifetime bound, written by the same script in
//! [`crate::login_session`]): when it was created, the address, and the
//! browser and OS read from the User-Agent ([`crate::user_agent`]). The hot
//! profile read never touches it. "Last used" costs nothing to keep: every
//! use restarts the session's idle TTL, so the time since the last use is the
//! idle lifetime minus the TTL left; only in a session's last idle period,
//! when the TTL is pinned to the absolute expiry, is that unknown, and then
//! the read that pins it stores the time of use in `smeta` instead
//! ([`crate::session`]).
//!
//! The id a person sees is [`public_id`]: a SHA-256 of the token's storage
//! hash under a domain tag, cut to 128 bits. The storage hash is itself a
//! SHA-256 of a 256-bit random token, so the id cannot be turned back into
//! the hash, let alone the token: it names a session and grants nothing.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

use crate::user_agent::Device;

/// Hex digits of a public session id: 128 bits, unique among any account's
/// sessions with room to spare.
pub const PUBLIC_ID_LEN: usize = 32;

/// The public id of the session stored under `token_hash`.
pub fn public_id(token_hash: &str) -> String {
    let digest = Sha256::new().chain_update(b"usermgmt session id\0").chain_update(token_hash).finalize();
    let mut id = hex::encode(digest);
    id.truncate(PUBLIC_ID_LEN);
    id
}

/// What a session was opened with, as stored in `smeta:{t}<hash>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    /// Unix seconds at log-in.
    pub created: u64,
    /// The client address ("" if unknown).
    pub ip: String,
    /// Browser name.
    pub browser: String,
    /// OS name.
    pub os: String,
}

impl SessionMeta {
    /// The metadata of a session opened now.
    pub fn new(created: u64, client: Option<IpAddr>, device: &Device) -> SessionMeta {
        SessionMeta {
            created,
            ip: client.map(|a| a.to_canonical().to_string()).unwrap_or_default(),
            browser: device.browser.to_owned(),
            os: device.os.to_owned(),
        }
    }

    /// The stored form: fields separated by tabs (none of them can hold one:
    /// the names come from a fixed list, the address is formatted here).
    pub fn encode(&self) -> String {
        format!("{}\t{}\t{}\t{}", self.created, self.ip, self.browser, self.os)
    }

    /// The metadata in a stored value, or `None` if it does not parse.
    pub fn decode(value: &str) -> Option<SessionMeta> {
        let mut parts = value.split('\t');
        let created = parts.next()?.parse().ok()?;
        let ip = parts.next()?.to_owned();
        let browser = parts.next()?.to_owned();
        let os = parts.next()?.to_owned();
        Some(SessionMeta { created, ip, browser, os })
    }
}

/// When a session was last used, from its Redis TTL: the idle lifetime minus
/// what is left of it. In the last idle period (`expires_at - now` below the
/// idle lifetime) the TTL says nothing, and `stored` (the time the pinning
/// read wrote) is used. Never before `created` or after `now`.
pub fn last_used(
    now: u64,
    ttl: u64,
    idle_secs: u64,
    expires_at: u64,
    created: u64,
    stored: Option<u64>,
) -> u64 {
    let derived = if expires_at.saturating_sub(now) < idle_secs {
        stored.unwrap_or(created)
    } else {
        now.saturating_sub(idle_secs.saturating_sub(ttl))
    };
    derived.clamp(created.min(now), now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_ids_are_short_stable_and_not_the_hash() {
        let hash = "ab".repeat(32);
        assert_eq!(public_id(&hash), public_id(&hash));
        assert_eq!(public_id(&hash).len(), PUBLIC_ID_LEN);
        assert!(!hash.contains(&public_id(&hash)));
        assert_ne!(public_id(&hash), public_id(&"cd".repeat(32)));
    }

    #[test]
    fn metadata_round_trips() {
        let device = Device { browser: "Firefox", os: "Linux" };
        let meta = SessionMeta::new(1_700_000_000, Some("::ffff:192.0.2.9".parse().unwrap()), &device);
        assert_eq!(meta.ip, "192.0.2.9");
        assert_eq!(SessionMeta::decode(&meta.encode()), Some(meta));
        assert_eq!(SessionMeta::decode("x\ty"), None);
    }

    #[test]
    fn last_use_is_read_from_the_idle_ttl() {
        // Used 100 s ago: 1700 s of a 1800 s idle lifetime left.
        assert_eq!(last_used(10_000, 1_700, 1_800, 90_000, 1_000, None), 9_900);
        // In the last idle period the stored time counts.
        assert_eq!(last_used(10_000, 500, 1_800, 10_500, 1_000, Some(9_990)), 9_990);
        assert_eq!(last_used(10_000, 500, 1_800, 10_500, 1_000, None), 1_000);
    }
}
