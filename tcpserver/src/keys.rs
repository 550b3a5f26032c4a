//! The Redis key layout, in one place.
//!
//! Every key starts with the configured prefix (`um:` by default), so one Redis
//! can serve several deployments or test runs, each able to find and delete its
//! own keys:
//!
//! | key | type | holds | expiry |
//! |---|---|---|---|
//! | `<p>sess:<sha256(token) hex>` | string | `user_id:expires_at:username` | idle lifetime, never past `expires_at` |
//! | `<p>prof:<user id>` | hash | `v` version, `u` username, `n` nickname, `a` avatar (`""` for none) | [`crate::profile_cache::TTL_SECS`] |
//! | `<p>usess:<user id>` | sorted set | the token hashes of the user's sessions, scored by creation time (ms) | the absolute session lifetime |
//! | `<p>thr:fail:user:<username>` | sorted set | one member per log-in attempt not known to have succeeded (score 0 in flight, else when it failed) | the throttle window |
//! | `<p>thr:fail:addr:<address>` | sorted set | the same, per client address | the throttle window |
//! | `<p>thr:ok:user:<username>` | string | the count of successful log-ins | the throttle window |
//! | `<p>thr:ok:addr:<address>` | string | the count of successful log-ins from the address | the throttle window |
//! | `<p>thr:signups:addr:<address>` | sorted set | one member per sign-up attempt from the address | the throttle window |
//! | `<p>thr:avatar:user:<user id>` | sorted set | one member per picture upload of the account | the throttle window |
//! | `<p>qr:{<sha256(key) hex>}` | hash | a scan-to-log-in code: `s` state, `b` sha256 of the binding secret, `ua`, `ip`, `t` created (Unix s), once scanned `u` user id, `n` username, `nick`, `a` avatar | the code's lifetime (`--qr-ttl-secs`) |
//! | `<p>thr:qr:new:addr:<address>` | sorted set | one member per code made from the address | the throttle window |
//! | `<p>thr:qr:ok:user:<user id>`, `<p>thr:qr:ok:addr:<address>` | sorted set | one member per approval or denial by the account / from the address | the throttle window |
//!
//! Pub/sub channel `<p>qr:changed` carries the key hash of every code whose
//! state changed (see [`crate::qr_events`]). A code is one key, and each
//! script touches only that key (the channel is not a key), so the layout
//! moves to Redis Cluster as it is; the braces are a hash tag, so that any
//! key added per code later lands in the code's slot.
//!
//! An IPv6 client is counted by its /64 network, since one subscriber usually
//! holds a whole /64; an IPv4-mapped IPv6 address counts as the IPv4 address.

use std::net::IpAddr;

/// Builds keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys that all start with `prefix`.
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys { prefix: prefix.into() }
    }

    /// A session, by the hex SHA-256 of its token (the token itself is never stored).
    pub fn session(&self, token_hash: &str) -> String {
        format!("{}sess:{token_hash}", self.prefix)
    }

    /// A user's cached profile.
    pub fn profile(&self, user_id: u64) -> String {
        format!("{}{user_id}", self.profile_prefix())
    }

    /// What a cached profile's key is before the user id (for a script that
    /// finds the id in a session entry).
    pub fn profile_prefix(&self) -> String {
        format!("{}prof:", self.prefix)
    }

    /// The log-in record of a username (see [`crate::login_record`]).
    pub fn login_record(&self, username: &str) -> String {
        format!("{}login:{username}", self.prefix)
    }

    /// The fence against stale log-in records after a password change ([`crate::login_record`]).
    pub fn password_fence(&self, username: &str) -> String {
        format!("{}pwfence:{username}", self.prefix)
    }

    /// The metadata of the session stored under `token_hash` ([`crate::device`]).
    pub fn session_meta(&self, token_hash: &str) -> String {
        format!("{}smeta:{token_hash}", self.prefix)
    }

    /// The queue of log-in records waiting for the history drainer ([`crate::history`]).
    pub fn history_queue(&self) -> String {
        format!("{}hist:queue", self.prefix)
    }

    /// The index of a user's sessions (see [`crate::session::open_cmd`]).
    pub fn user_sessions(&self, user_id: u64) -> String {
        format!("{}usess:{user_id}", self.prefix)
    }

    /// Log-ins of a username not known to have succeeded (see [`crate::throttle`]).
    pub fn login_failures_by_user(&self, username: &str) -> String {
        format!("{}thr:fail:user:{username}", self.prefix)
    }

    /// Log-ins from a client address not known to have succeeded.
    pub fn login_failures_by_addr(&self, addr: IpAddr) -> String {
        format!("{}thr:fail:addr:{}", self.prefix, network(addr))
    }

    /// Successful log-ins of a username.
    pub fn logins_by_user(&self, username: &str) -> String {
        format!("{}thr:ok:user:{username}", self.prefix)
    }

    /// Successful log-ins from a client address.
    pub fn logins_by_addr(&self, addr: IpAddr) -> String {
        format!("{}thr:ok:addr:{}", self.prefix, network(addr))
    }

    /// Sign-up attempts from a client address.
    pub fn signups_by_addr(&self, addr: IpAddr) -> String {
        format!("{}thr:signups:addr:{}", self.prefix, network(addr))
    }

    /// A scan-to-log-in code, by the hex SHA-256 of its key (the key itself is
    /// never stored, as a session token is not).
    pub fn qr_code(&self, key_hash: &str) -> String {
        format!("{}qr:{{{key_hash}}}", self.prefix)
    }

    /// The pub/sub channel that announces changes of codes.
    pub fn qr_channel(&self) -> String {
        format!("{}qr:changed", self.prefix)
    }

    /// Codes made from a client address.
    pub fn qr_codes_by_addr(&self, addr: IpAddr) -> String {
        format!("{}thr:qr:new:addr:{}", self.prefix, network(addr))
    }

    /// Approvals and denials by an account.
    pub fn qr_decisions_by_user(&self, user_id: u64) -> String {
        format!("{}thr:qr:ok:user:{user_id}", self.prefix)
    }

    /// Approvals and denials from a client address.
    pub fn qr_decisions_by_addr(&self, addr: IpAddr) -> String {
        format!("{}thr:qr:ok:addr:{}", self.prefix, network(addr))
    }

    /// Picture uploads of an account, by user id (immutable, like the username,
    /// and shorter).
    pub fn avatar_uploads_by_user(&self, user_id: u64) -> String {
        format!("{}thr:avatar:user:{user_id}", self.prefix)
    }
}

/// The unit a client address is counted by: the IPv4 address, or the IPv6 /64.
fn network(addr: IpAddr) -> String {
    match addr.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_starts_with_the_prefix() {
        let keys = Keys::new("t:");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for key in [
            keys.session("ab"),
            keys.profile(7),
            keys.login_failures_by_user("bob"),
            keys.login_failures_by_addr(ip),
            keys.logins_by_user("bob"),
            keys.logins_by_addr(ip),
            keys.user_sessions(7),
            keys.signups_by_addr(ip),
            keys.avatar_uploads_by_user(7),
            keys.qr_code("ab"),
            keys.qr_channel(),
            keys.qr_codes_by_addr(ip),
            keys.qr_decisions_by_user(7),
            keys.qr_decisions_by_addr(ip),
        ] {
            assert!(key.starts_with("t:"), "{key}");
        }
        assert_eq!(keys.session("ab"), "t:sess:ab");
        assert_eq!(keys.profile(7), "t:prof:7");
        assert_eq!(keys.qr_code("ab"), "t:qr:{ab}");
    }

    #[test]
    fn addresses_are_counted_by_network() {
        let keys = Keys::new("");
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(keys.signups_by_addr(a), keys.signups_by_addr(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(keys.signups_by_addr(mapped), "thr:signups:addr:192.0.2.1");
    }
}
