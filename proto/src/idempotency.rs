//! Which requests a client may send again after losing the connection they
//! went out on, and the key that makes a sign-up one of them.
//!
//! When a connection breaks after a request was written, the client cannot
//! tell whether the server applied it: tcpserver may have committed it and
//! died before its reply went out. Sending it again (to the same tcpserver on
//! a fresh connection, or to another) is safe only if applying it twice
//! leaves what applying it once leaves, and answers what the first would
//! have. Two kinds of request pass that test
//! ([`crate::MessageType::is_safe_to_resend`]):
//!
//! - **Naturally idempotent** ([`crate::MessageType::is_idempotent`]): the
//!   reads, which change nothing, and `QrWait`, whose one change (redeeming
//!   a confirmed code) is a one-shot transition a second wait finds done.
//! - **Made idempotent by the server**, for the writes a user makes most:
//!   - `SignUp` carries an [`IdempotencyKey`], random per HTTP request,
//!     stored with the account in the transaction that creates it
//!     (`users.signup_key`). A sign-up that finds its username taken by an
//!     account with its own key is the same request arriving again: it is
//!     answered `SignedUp` with that account's profile, as the first would
//!     have been, never `UsernameTaken`. Another key on a taken name is
//!     another person: `UsernameTaken`. The key also names the attempt in
//!     the per-address sign-up counter, so a resend is counted once.
//!   - `UpdateNickname` needs no key: tcpserver applies it only where the
//!     stored nickname differs from the new one (compared byte for byte),
//!     and only then bumps the profile's version. A resend that finds its
//!     nickname already stored changes nothing and answers the profile as it
//!     is. (The argument for why no key is needed is on tcpserver's
//!     `db::users::change_nicknames`.)
//!
//! Every other request changes state in a way a second application would
//! repeat (a session opened, a picture counted, a password changed, a code
//! approved, a throttle counted), and is never sent again once any byte of
//! it may have reached a server: the client reports it interrupted.

use std::fmt;

/// Bytes of an [`IdempotencyKey`]: 128 bits, so that two requests made
/// independently never share one (the chance is about `n² / 2¹²⁹` for `n`
/// keys: negligible for any number of sign-ups).
pub const IDEMPOTENCY_KEY_LEN: usize = 16;

/// A random value a client makes once per user request (one HTTP request)
/// and sends with every copy of that request, so the server can tell a copy
/// sent again after a lost connection from a new request. The client makes
/// it from a cryptographically secure generator: the key is what stands for
/// "the same request", so it must be unguessable as well as unique. It is
/// not a secret from the logs (only a caller that proved the RPC secret can
/// send one, and all it earns is the answer to the request that stored it:
/// a username and a nickname), so `Debug` shows it, in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(pub [u8; IDEMPOTENCY_KEY_LEN]);

impl IdempotencyKey {
    /// The key's bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; IDEMPOTENCY_KEY_LEN] {
        &self.0
    }

    /// The key in lowercase hex (32 characters), for a log or a Redis member.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_prints_as_its_hex() {
        let key = IdempotencyKey([0xab; IDEMPOTENCY_KEY_LEN]);
        assert_eq!(key.to_hex(), "ab".repeat(IDEMPOTENCY_KEY_LEN));
        assert_eq!(format!("{key:?}"), format!("IdempotencyKey({})", "ab".repeat(16)));
    }
}
