//! The Redis key layout, in one place: the same on a single Redis and on a
//! Redis Cluster.
//!
//! Every key starts with the configured prefix (`um:` by default; it may not
//! hold a brace), so one Redis can serve several deployments or test runs,
//! each able to find and delete its own keys. On a cluster every Lua script
//! and every multi-key command must touch keys of one hash slot, so each key
//! carries a *hash tag* (the part in braces, which alone decides the slot,
//! [`crate::db::slot`]) naming the group it belongs to:
//!
//! | key | type | holds | expiry |
//! |---|---|---|---|
//! | **account** `{t}`: [`AccountTag`] of the username | | | |
//! | `<p>sess:{t}<sha256(token) hex>` | string | `user_id:expires_at:username` | idle lifetime, never past `expires_at` |
//! | `<p>smeta:{t}<sha256(token) hex>` | hash | `m` what the session was opened with, `lu` last use in its last idle period | the absolute session lifetime |
//! | `<p>usess:{t}<user id>` | sorted set | the token hashes of the user's sessions, scored by creation time (ms) | the absolute session lifetime |
//! | `<p>prof:{t}<user id>` | hash | `v` version, `u` username, `n` nickname, `a` avatar (`""` for none) | [`crate::profile_cache::TTL_SECS`] |
//! | `<p>login:{t}<username>` | hash | the log-in record ([`crate::login_record`]) | [`crate::login_record::TTL_SECS`] |
//! | `<p>pwfence:{t}<username>` | string | the password fence | [`crate::login_record::FENCE_TTL_SECS`] |
//! | `<p>thr:fail:user:{t}<username>` | sorted set | one member per log-in attempt not known to have succeeded (negative score: in flight since then, ms; positive: when it failed, µs) | the throttle window |
//! | `<p>thr:ok:user:{t}<username>` | string | the count of successful log-ins | the throttle window |
//! | `<p>thr:okp:user:{t}<username>` | sorted set | the log-ins in flight that may succeed (a place held under the success limit), scored by when (ms) | [`crate::throttle::IN_FLIGHT_MAX_MS`] |
//! | **address** `{a}`: the client's IPv4 address or IPv6 /64 | | | |
//! | `<p>thr:fail:addr:{a}`, `<p>thr:ok:addr:{a}`, `<p>thr:okp:addr:{a}` | | the same three, per client address | |
//! | `<p>thr:signups:addr:{a}` | sorted set | one member per sign-up attempt from the address | the throttle window |
//! | `<p>thr:qr:new:addr:{a}`, `<p>thr:qr:ok:addr:{a}` | sorted set | codes made, approvals and denials from the address | the throttle window |
//! | **a key of its own** | | | |
//! | `<p>qr:{<sha256(key) hex>}` | hash | a scan-to-log-in code: `s` state, `b` sha256 of the binding secret, `ua`, `ip`, `t` created (Unix s), once scanned `u` user id, `n` username, `nick`, `a` avatar | the code's lifetime (`--qr-ttl-secs`) |
//! | `<p>thr:avatar:user:<user id>`, `<p>thr:qr:ok:user:<user id>` | sorted set | picture uploads, approvals and denials of the account | the throttle window |
//! | `<p>hist:{q<n>}` | list | log-in records waiting for the history drainer, one of [`HISTORY_QUEUES`] queues | none (drained) |
//!
//! **Why an account's keys share one tag.** The log-in lookup reads the
//! username's record, fence, counters and the cached profile of the id the
//! record names in one script; the session's script stores the session, its
//! metadata and index entry, evicts past the cap and counts the account's
//! success in one script; a profile read
//! resumes the session and reads the cached profile in one script. The username is immutable and names the account as
//! its id does, so one tag derived from it serves the keys named by username
//! and those named by user id alike. The session token carries the tag (its
//! first [`AccountTag::LEN`] characters, [`crate::session::new_token`]): a
//! profile read knows the slot from the token alone, and stays one script,
//! one round trip, as on a single Redis.
//!
//! **What the tag reveals.** It is 16 bits of SHA-256 of the username: it
//! puts the account in one of 65,536 buckets (about 150 accounts each with
//! ten million), so a session key in a Redis dump says nothing more than the
//! index `usess:{t}<id>` beside it already does, and to whoever holds a token
//! nothing they could not learn by using it (the profile names the user).
//! The token's other 240 bits are random, beyond guessing.
//!
//! **What spans slots, and how.** A log-in is counted per account and per
//! client address, two slots: each gets its own script in the *same*
//! pipeline (on a single Redis still one round trip; on a cluster the parts go
//! to their nodes at once), each taking its place atomically in its own
//! counters, and a place taken in one slot while the other refused is given
//! back in the batch's last pipeline ([`crate::throttle`]). The history
//! records go to one of [`HISTORY_QUEUES`] lists in the same last pipeline
//! (a batch's all to one, the batches taking the lists in turn), and the
//! queues' tags are chosen so that their slots are spread
//! evenly over the slot space ([`Keys::history_queues`]): no one node takes
//! every log-in's write. Pub/sub channel `<p>qr:changed` carries the key hash
//! of every code whose state changed (see [`crate::qr_events`]); on a cluster
//! `PUBLISH` reaches the subscribers of every node.
//!
//! An IPv6 client is counted by its /64 network, since one subscriber usually
//! holds a whole /64; an IPv4-mapped IPv6 address counts as the IPv4 address.

use std::net::IpAddr;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};

use crate::db::slot;

/// History queues: enough that the log-in records' writes spread over every
/// master of a cluster (with three masters, five or six each), few enough
/// that the drainer reads them all in one pipeline.
pub const HISTORY_QUEUES: usize = 16;

/// The hash tag every key of one account carries: four lowercase hex digits
/// of SHA-256 of the username (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AccountTag([u8; AccountTag::LEN]);

impl AccountTag {
    /// Characters in a tag (and at the start of every session token).
    pub const LEN: usize = 4;

    /// The tag of `username` (the canonical, lowercase one).
    pub fn of(username: &str) -> AccountTag {
        let digest = Sha256::new().chain_update(b"usermgmt account tag\0").chain_update(username).finalize();
        let mut tag = [0u8; AccountTag::LEN];
        let hex = hex::encode(&digest[..AccountTag::LEN / 2]);
        tag.copy_from_slice(hex.as_bytes());
        AccountTag(tag)
    }

    /// The tag at the start of `text` (a session token), if it is one.
    pub fn prefix_of(text: &str) -> Option<AccountTag> {
        let head = text.as_bytes().get(..AccountTag::LEN)?;
        let hex = head.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        hex.then(|| {
            let mut tag = [0u8; AccountTag::LEN];
            tag.copy_from_slice(head);
            AccountTag(tag)
        })
    }

    /// The tag's text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("0000")
    }
}

impl std::fmt::Display for AccountTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tags of the history queues, one per equal share of the slot space
/// (so that however a cluster's masters divide the slots into ranges, each
/// holds its share of the queues): for share `i`, the first `q<n>` whose slot
/// falls in it. The same on every server, so all of them drain all queues.
static HISTORY_TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let share = usize::from(slot::SLOTS) / HISTORY_QUEUES;
    (0..HISTORY_QUEUES)
        .map(|i| {
            (0u32..)
                .map(|n| format!("q{n}"))
                .find(|tag| usize::from(slot::slot(tag.as_bytes())) / share == i)
                .unwrap_or_else(|| format!("q{i}"))
        })
        .collect()
});

/// Builds keys under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys that all start with `prefix` (which must hold no `{` or `}`:
    /// [`crate::config`] refuses one that does).
    pub fn new(prefix: impl Into<String>) -> Keys {
        Keys { prefix: prefix.into() }
    }

    /// A session, by the hex SHA-256 of its token (the token itself is never stored).
    pub fn session(&self, tag: &AccountTag, token_hash: &str) -> String {
        format!("{}{token_hash}", self.session_prefix(tag))
    }

    /// What the key of a session of `tag` is before the token hash (for
    /// scripts that find hashes in the index).
    pub fn session_prefix(&self, tag: &AccountTag) -> String {
        format!("{}sess:{{{tag}}}", self.prefix)
    }

    /// The metadata of the session stored under `token_hash` ([`crate::device`]).
    pub fn session_meta(&self, tag: &AccountTag, token_hash: &str) -> String {
        format!("{}{token_hash}", self.session_meta_prefix(tag))
    }

    /// What a session metadata key of `tag` is before the token hash.
    pub fn session_meta_prefix(&self, tag: &AccountTag) -> String {
        format!("{}smeta:{{{tag}}}", self.prefix)
    }

    /// A user's cached profile (`username` is the account's, for its tag).
    pub fn profile(&self, username: &str, user_id: u64) -> String {
        format!("{}{user_id}", self.profile_prefix(&AccountTag::of(username)))
    }

    /// What a cached profile's key is before the user id (for a script that
    /// finds the id in a session entry or log-in record).
    pub fn profile_prefix(&self, tag: &AccountTag) -> String {
        format!("{}prof:{{{tag}}}", self.prefix)
    }

    /// The log-in record of a username (see [`crate::login_record`]).
    pub fn login_record(&self, username: &str) -> String {
        format!("{}login:{{{}}}{username}", self.prefix, AccountTag::of(username))
    }

    /// The fence against stale log-in records after a password change ([`crate::login_record`]).
    pub fn password_fence(&self, username: &str) -> String {
        format!("{}pwfence:{{{}}}{username}", self.prefix, AccountTag::of(username))
    }

    /// The index of a user's sessions (see [`crate::login_session`]).
    pub fn user_sessions(&self, username: &str, user_id: u64) -> String {
        format!("{}usess:{{{}}}{user_id}", self.prefix, AccountTag::of(username))
    }

    /// Log-ins of a username not known to have succeeded (see [`crate::throttle`]).
    pub fn login_failures_by_user(&self, username: &str) -> String {
        format!("{}thr:fail:user:{{{}}}{username}", self.prefix, AccountTag::of(username))
    }

    /// Log-ins from a client address not known to have succeeded.
    pub fn login_failures_by_addr(&self, addr: IpAddr) -> String {
        format!("{}thr:fail:addr:{{{}}}", self.prefix, network(addr))
    }

    /// Successful log-ins of a username.
    pub fn logins_by_user(&self, username: &str) -> String {
        format!("{}thr:ok:user:{{{}}}{username}", self.prefix, AccountTag::of(username))
    }

    /// Log-ins of a username in flight, each holding a place under the
    /// success limit until it is known to have succeeded or not.
    pub fn logins_in_flight_by_user(&self, username: &str) -> String {
        format!("{}thr:okp:user:{{{}}}{username}", self.prefix, AccountTag::of(username))
    }

    /// Successful log-ins from a client address.
    pub fn logins_by_addr(&self, addr: IpAddr) -> String {
        format!("{}thr:ok:addr:{{{}}}", self.prefix, network(addr))
    }

    /// Log-ins from a client address in flight.
    pub fn logins_in_flight_by_addr(&self, addr: IpAddr) -> String {
        format!("{}thr:okp:addr:{{{}}}", self.prefix, network(addr))
    }

    /// Sign-up attempts from a client address.
    pub fn signups_by_addr(&self, addr: IpAddr) -> String {
        format!("{}thr:signups:addr:{{{}}}", self.prefix, network(addr))
    }

    /// History queue `index` (of [`HISTORY_QUEUES`]; others name the first).
    pub fn history_queue(&self, index: usize) -> String {
        let tag = HISTORY_TAGS.get(index).map_or("q0", String::as_str);
        format!("{}hist:{{{tag}}}", self.prefix)
    }

    /// Every queue the drainer empties: the [`HISTORY_QUEUES`] queues, and the
    /// single queue of the builds before them (`hist:queue`), so that records
    /// left there by an upgrade are drained too.
    pub fn history_queues(&self) -> Vec<String> {
        let mut queues: Vec<String> = (0..HISTORY_QUEUES).map(|i| self.history_queue(i)).collect();
        queues.push(format!("{}hist:queue", self.prefix));
        queues
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
        format!("{}thr:qr:new:addr:{{{}}}", self.prefix, network(addr))
    }

    /// Approvals and denials by an account.
    pub fn qr_decisions_by_user(&self, user_id: u64) -> String {
        format!("{}thr:qr:ok:user:{user_id}", self.prefix)
    }

    /// Approvals and denials from a client address.
    pub fn qr_decisions_by_addr(&self, addr: IpAddr) -> String {
        format!("{}thr:qr:ok:addr:{{{}}}", self.prefix, network(addr))
    }

    /// Picture uploads of an account, by user id (immutable, like the username,
    /// and shorter). One key on its own: its throttle touches nothing else.
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
    use crate::db::slot::slot;

    #[test]
    fn every_key_starts_with_the_prefix() {
        let keys = Keys::new("t:");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let tag = AccountTag::of("bob");
        for key in [
            keys.session(&tag, "ab"),
            keys.profile("bob", 7),
            keys.login_failures_by_user("bob"),
            keys.login_failures_by_addr(ip),
            keys.logins_by_user("bob"),
            keys.logins_by_addr(ip),
            keys.user_sessions("bob", 7),
            keys.signups_by_addr(ip),
            keys.avatar_uploads_by_user(7),
            keys.qr_code("ab"),
            keys.qr_channel(),
            keys.qr_codes_by_addr(ip),
            keys.qr_decisions_by_user(7),
            keys.qr_decisions_by_addr(ip),
            keys.history_queue(3),
        ] {
            assert!(key.starts_with("t:"), "{key}");
        }
        assert_eq!(keys.session(&tag, "ab"), format!("t:sess:{{{tag}}}ab"));
        assert_eq!(keys.profile("bob", 7), format!("t:prof:{{{tag}}}7"));
        assert_eq!(keys.qr_code("ab"), "t:qr:{ab}");
    }

    #[test]
    fn an_accounts_keys_share_one_slot_and_an_addresses_another() {
        let keys = Keys::new("um:");
        let tag = AccountTag::of("bruce_lee");
        let account = slot(keys.session(&tag, "ff").as_bytes());
        for key in [
            keys.session_meta(&tag, "ff"),
            keys.profile("bruce_lee", 42),
            keys.user_sessions("bruce_lee", 42),
            keys.login_record("bruce_lee"),
            keys.password_fence("bruce_lee"),
            keys.login_failures_by_user("bruce_lee"),
            keys.logins_by_user("bruce_lee"),
            keys.logins_in_flight_by_user("bruce_lee"),
        ] {
            assert_eq!(slot(key.as_bytes()), account, "{key}");
        }
        let ip: IpAddr = "2001:db8:1:2::9".parse().unwrap();
        let address = slot(keys.login_failures_by_addr(ip).as_bytes());
        for key in [keys.logins_by_addr(ip), keys.logins_in_flight_by_addr(ip)] {
            assert_eq!(slot(key.as_bytes()), address, "{key}");
        }
        // The prefix has no say in the slot.
        assert_eq!(slot(Keys::new("other:").session(&tag, "ff").as_bytes()), account);
    }

    #[test]
    fn a_token_prefix_is_a_tag_only_if_it_is_hex() {
        let tag = AccountTag::of("ann");
        assert_eq!(tag.as_str().len(), AccountTag::LEN);
        assert_eq!(AccountTag::prefix_of(&format!("{tag}0123")), Some(tag));
        assert_eq!(AccountTag::prefix_of("ab"), None);
        assert_eq!(AccountTag::prefix_of("abcG"), None);
        assert_eq!(AccountTag::prefix_of("ABCD"), None);
    }

    #[test]
    fn history_queues_spread_evenly_over_the_slot_space() {
        let keys = Keys::new("um:");
        let queues = keys.history_queues();
        assert_eq!(queues.len(), HISTORY_QUEUES + 1);
        let share = usize::from(crate::db::slot::SLOTS) / HISTORY_QUEUES;
        for (i, queue) in queues[..HISTORY_QUEUES].iter().enumerate() {
            assert_eq!(usize::from(slot(queue.as_bytes())) / share, i, "{queue}");
        }
        assert!(queues.contains(&keys.history_queue(HISTORY_QUEUES - 1)));
    }

    #[test]
    fn addresses_are_counted_by_network() {
        let keys = Keys::new("");
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(keys.signups_by_addr(a), keys.signups_by_addr(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(keys.signups_by_addr(mapped), "thr:signups:addr:{192.0.2.1}");
    }
}
