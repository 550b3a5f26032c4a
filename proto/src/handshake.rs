//! Proving the RPC secret: how every connection begins.
//!
//! tcpserver serves only callers that know a secret it shares with them (a
//! file of random bytes, `run/secrets/rpc_secret`). The secret itself never
//! crosses the wire. On accept the server sends a challenge carrying a fresh
//! nonce from the OS's random generator; the client answers with an HMAC of
//! that nonce under the secret; the server checks it in constant time, says so,
//! and only from then on reads requests:
//!
//! ```text
//!  client                                                      tcpserver
//!    | ------------------------- connect -----------------------> |
//!    | <------------- Challenge { nonce: 32 random bytes } ------- |
//!    | --- Proof { HMAC-SHA256(secret, nonce || CONTEXT) } ------> |
//!    | <------------------------ Accepted ----------------------- |
//!    | ------------------- requests, as before -----------------> |
//! ```
//!
//! All three are ordinary frames ([`crate::Message::Challenge`],
//! [`crate::Message::Proof`], [`crate::Message::Accepted`]) with request id 0.
//! Until a connection has proved the secret, the server answers nothing: it
//! closes the connection, without a word, on any other first frame, on a wrong
//! proof, or when no proof comes within its handshake timeout. A refused
//! client sees only the connection close. A client writes no request before
//! `Accepted`, so nothing it sends is ever read unauthenticated. This is what
//! made the protocol version 2 ([`crate::VERSION`]): a version-1 peer did not
//! begin this way.
//!
//! The nonce makes each proof good for one connection: a recorded proof is
//! worthless against the next challenge. [`CONTEXT`] names this exchange and
//! the protocol version, so the MAC cannot stand for anything else made with
//! the same key, and a new version changes every proof.
//!
//! What it does not do: it authenticates the caller, not the server, and it
//! neither encrypts nor protects what follows. Anyone who can read the traffic
//! sees passwords and session tokens; anyone who can alter it can take over a
//! connection once it is accepted. Across machines, keep the RPC traffic inside
//! a private network or a tunnel (WireGuard, SSH, TLS).

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::Error;

/// Bytes of a challenge's nonce: 256 bits, so that no two connections are ever
/// sent the same one.
pub const NONCE_LEN: usize = 32;

/// Bytes of a proof: one HMAC-SHA256 tag, whole.
pub const PROOF_LEN: usize = 32;

/// The shortest secret accepted, in bytes: an HMAC key of fewer than 128 bits
/// could be guessed. `scripts/services.sh` makes 32.
pub const MIN_SECRET_LEN: usize = 16;

/// What a proof is a MAC of, after the nonce. It names the protocol version:
/// a test fails when [`crate::VERSION`] changes and this does not.
pub const CONTEXT: &[u8] = b"usermgmt RPC handshake: client proof, protocol version 6";

/// A challenge's nonce: random bytes the server draws for each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nonce(pub [u8; NONCE_LEN]);

/// A client's answer to a challenge: `HMAC-SHA256(secret, nonce || CONTEXT)`.
///
/// Compare one only with [`RpcSecret::verify`], which takes constant time;
/// `==` is for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proof(pub [u8; PROOF_LEN]);

/// The shared secret, ready to prove or check proofs with.
///
/// It holds the HMAC state keyed with the secret, not the bytes themselves,
/// and its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct RpcSecret {
    keyed: Hmac<Sha256>,
}

impl RpcSecret {
    /// The secret from its bytes (a secret file's whole content, as it is).
    ///
    /// # Errors
    ///
    /// [`Error::SecretTooShort`] below [`MIN_SECRET_LEN`] bytes, and
    /// [`Error::SecretRefused`] if HMAC refuses the key (it takes keys of any
    /// length, so this does not happen).
    pub fn new(bytes: &[u8]) -> Result<RpcSecret, Error> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(Error::SecretTooShort { len: bytes.len(), min: MIN_SECRET_LEN });
        }
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(bytes).map_err(|_| Error::SecretRefused)?;
        Ok(RpcSecret { keyed })
    }

    /// The answer to a challenge with `nonce`.
    pub fn prove(&self, nonce: &Nonce) -> Proof {
        Proof(self.mac(nonce).finalize().into_bytes().into())
    }

    /// Whether `proof` answers the challenge with `nonce`, in time that does not
    /// depend on how much of it is right.
    pub fn verify(&self, nonce: &Nonce, proof: &Proof) -> bool {
        self.mac(nonce).verify_slice(&proof.0).is_ok()
    }

    fn mac(&self, nonce: &Nonce) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(&nonce.0);
        mac.update(CONTEXT);
        mac
    }
}

impl fmt::Debug for RpcSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RpcSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn secret(bytes: &[u8]) -> RpcSecret {
        RpcSecret::new(bytes).unwrap()
    }

    #[test]
    fn a_proof_is_the_hmac_of_nonce_and_context() {
        let nonce = Nonce([7; NONCE_LEN]);
        let mut message = nonce.0.to_vec();
        message.extend_from_slice(CONTEXT);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET).unwrap();
        mac.update(&message);
        let expected: [u8; PROOF_LEN] = mac.finalize().into_bytes().into();
        assert_eq!(secret(SECRET).prove(&nonce), Proof(expected));
    }

    #[test]
    fn only_the_right_secret_and_nonce_verify() {
        let nonce = Nonce([1; NONCE_LEN]);
        let proof = secret(SECRET).prove(&nonce);
        assert!(secret(SECRET).verify(&nonce, &proof));
        assert!(!secret(b"another secret of 32 bytes here!").verify(&nonce, &proof));
        assert!(!secret(SECRET).verify(&Nonce([2; NONCE_LEN]), &proof), "a proof is good for one nonce");
        for byte in 0..PROOF_LEN {
            let mut flipped = proof;
            flipped.0[byte] ^= 1;
            assert!(!secret(SECRET).verify(&nonce, &flipped), "byte {byte} flipped");
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            RpcSecret::new(&SECRET[..MIN_SECRET_LEN - 1]).unwrap_err(),
            Error::SecretTooShort { len: MIN_SECRET_LEN - 1, min: MIN_SECRET_LEN }
        );
        assert!(RpcSecret::new(&SECRET[..MIN_SECRET_LEN]).is_ok());
    }

    #[test]
    fn the_context_names_the_protocol_version() {
        let named = format!("protocol version {}", crate::VERSION);
        assert!(CONTEXT.ends_with(named.as_bytes()), "bump CONTEXT with VERSION");
    }

    #[test]
    fn the_secret_is_never_shown() {
        let shown = format!("{:?}", secret(b"super secret bytes, never shown"));
        assert!(!shown.contains("super"), "{shown}");
    }
}
