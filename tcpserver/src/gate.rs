//! The RPC secret at the door: no request of a connection is read until the
//! connection has proved it knows the secret (the handshake of
//! [`proto::handshake`]).
//!
//! On accept the reactor queues a [`Message::Challenge`] with a nonce from the
//! OS's generator, and the connection's [`Gate`] stays pending until a right
//! [`Message::Proof`] comes back. Until then the connection may buffer one
//! proof frame and no more ([`PROOF_FRAME_LEN`]), its first frame is judged by
//! its header alone (anything but a proof of the proof's length is refused
//! before its body is waited for), and nothing it sends is answered. Every
//! [`Refusal`] closes the connection without a reply and is logged once, with
//! the peer and the cause: never the secret, the nonce or the proof.

use std::fmt;
use std::time::{Duration, Instant};

use proto::handshake::PROOF_LEN;
use proto::{Frame, HEADER_LEN, Header, Message, MessageType, Nonce, RpcSecret};
use rand::TryRng;
use rand::rngs::SysRng;

/// How long a new connection has to prove the secret. A client that has it
/// answers the challenge within one round trip (httpserver does at once,
/// inside its 5 s call timeout); 3 s is far beyond a loaded loopback or LAN
/// round trip, and short enough that connections which never prove anything
/// give their slots (of `--max-connections`) back soon.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often, at most, the reactor looks for connections past their
/// handshake timeout: one pass over the connections per interval at worst, and
/// an overdue connection is closed at most this late.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// Bytes a connection may hold in its read buffer before the gate opens: one
/// proof frame, which is all a client may send before `Accepted`.
pub const PROOF_FRAME_LEN: usize = HEADER_LEN + PROOF_LEN;

/// Whether a connection's requests may be read yet.
#[derive(Debug)]
pub enum Gate {
    /// Challenged with `nonce`; must prove the secret before `deadline`.
    Pending {
        /// The nonce the challenge carried.
        nonce: Nonce,
        /// When the connection is closed unless it has proved the secret.
        deadline: Instant,
    },
    /// Proved the secret: its frames are requests.
    Open,
}

/// Why a connection was closed before it proved the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The first frame was not a proof.
    NotAProof(MessageType),
    /// A proof frame announced a body of another length than a proof's.
    ProofLength(u32),
    /// The first bytes were not a valid frame.
    Garbled(proto::Error),
    /// The proof does not answer the challenge with the secret.
    WrongProof,
    /// No proof within [`HANDSHAKE_TIMEOUT`].
    TimedOut,
    /// The peer closed the connection before it proved anything.
    Closed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAProof(kind) => write!(f, "sent {kind:?} before proving the RPC secret"),
            Refusal::ProofLength(len) => write!(f, "sent a proof of {len} bytes, not {PROOF_LEN}"),
            Refusal::Garbled(e) => write!(f, "sent bytes that are not a frame before the handshake: {e}"),
            Refusal::WrongProof => f.write_str("wrong RPC secret (its proof does not verify)"),
            Refusal::TimedOut => write!(f, "did not prove the RPC secret within {HANDSHAKE_TIMEOUT:?}"),
            Refusal::Closed => f.write_str("closed the connection before proving the RPC secret"),
        }
    }
}

/// Why no challenge could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRandomness;

impl fmt::Display for NoRandomness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the OS random generator failed")
    }
}

impl std::error::Error for NoRandomness {}

impl Gate {
    /// A pending gate with a fresh nonce, due at `now` plus
    /// [`HANDSHAKE_TIMEOUT`], and the challenge frame to send.
    ///
    /// # Errors
    ///
    /// [`NoRandomness`] if the OS generator fails; the connection is then not taken.
    pub fn challenge(now: Instant) -> Result<(Gate, Frame), NoRandomness> {
        let mut nonce = Nonce([0; proto::handshake::NONCE_LEN]);
        SysRng.try_fill_bytes(&mut nonce.0).map_err(|_| NoRandomness)?;
        let challenge = Frame { request_id: 0, message: Message::Challenge(nonce) };
        Ok((Gate::Pending { nonce, deadline: now + HANDSHAKE_TIMEOUT }, challenge))
    }

    /// Whether the connection has proved the secret.
    pub fn is_open(&self) -> bool {
        matches!(self, Gate::Open)
    }

    /// When a pending connection is due to be closed; `None` once open.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Gate::Pending { deadline, .. } => Some(*deadline),
            Gate::Open => None,
        }
    }

    /// Judges a pending connection's first frame by its header, before its
    /// body is read.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] for a frame that cannot be a proof.
    pub fn screen(header: &Header) -> Result<(), Refusal> {
        if header.message_type != MessageType::Proof {
            return Err(Refusal::NotAProof(header.message_type));
        }
        if header.body_len as usize != PROOF_LEN {
            return Err(Refusal::ProofLength(header.body_len));
        }
        Ok(())
    }

    /// Opens the gate if `frame` proves the secret for this connection's
    /// challenge; an open gate stays open.
    ///
    /// # Errors
    ///
    /// [`Refusal::WrongProof`] or [`Refusal::NotAProof`]; the connection must be closed.
    pub fn admit(&mut self, frame: &Frame, secret: &RpcSecret) -> Result<(), Refusal> {
        let Gate::Pending { nonce, .. } = self else { return Ok(()) };
        let Message::Proof(proof) = &frame.message else {
            return Err(Refusal::NotAProof(frame.message.message_type()));
        };
        if !secret.verify(nonce, proof) {
            return Err(Refusal::WrongProof);
        }
        *self = Gate::Open;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> RpcSecret {
        RpcSecret::new(b"a secret of more than sixteen bytes").unwrap()
    }

    fn pending() -> (Gate, Nonce) {
        let (gate, challenge) = Gate::challenge(Instant::now()).unwrap();
        let Message::Challenge(nonce) = challenge.message else { panic!("{challenge:?}") };
        (gate, nonce)
    }

    fn proof_frame(proof: proto::Proof) -> Frame {
        Frame { request_id: 0, message: Message::Proof(proof) }
    }

    #[test]
    fn a_right_proof_opens_the_gate_and_a_wrong_one_does_not() {
        let (mut gate, nonce) = pending();
        let other = RpcSecret::new(b"another secret, also long enough").unwrap();
        assert_eq!(gate.admit(&proof_frame(other.prove(&nonce)), &secret()), Err(Refusal::WrongProof));
        assert!(!gate.is_open());
        gate.admit(&proof_frame(secret().prove(&nonce)), &secret()).unwrap();
        assert!(gate.is_open());
        assert_eq!(gate.deadline(), None);
    }

    #[test]
    fn each_challenge_has_its_own_nonce() {
        let (_, a) = pending();
        let (mut gate, _) = pending();
        assert_ne!(a, pending().1);
        // A proof for another connection's challenge is worth nothing here.
        assert_eq!(gate.admit(&proof_frame(secret().prove(&a)), &secret()), Err(Refusal::WrongProof));
    }

    #[test]
    fn only_a_proof_header_of_the_proofs_length_passes_the_screen() {
        let header = |message_type, body_len| Header { message_type, request_id: 0, body_len };
        assert_eq!(Gate::screen(&header(MessageType::Proof, PROOF_LEN as u32)), Ok(()));
        assert_eq!(Gate::screen(&header(MessageType::Ping, 0)), Err(Refusal::NotAProof(MessageType::Ping)));
        assert_eq!(Gate::screen(&header(MessageType::Proof, 1 << 20)), Err(Refusal::ProofLength(1 << 20)));
        let (mut gate, _) = pending();
        let ping = Frame { request_id: 1, message: Message::Ping };
        assert_eq!(gate.admit(&ping, &secret()), Err(Refusal::NotAProof(MessageType::Ping)));
    }
}
