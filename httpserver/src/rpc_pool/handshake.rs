//! The client's side of the RPC handshake ([`proto::handshake`]): on every new
//! connection, before any call is written on it, read tcpserver's challenge,
//! answer with the secret's proof, and wait for `Accepted`, all by the deadline
//! of the call that opened the connection.
//!
//! It reads exactly one frame at a time (header, then the body it announces,
//! at most [`MAX_HANDSHAKE_BODY`] bytes), so no byte meant for the reader
//! thread is taken here, and a peer that is not tcpserver costs a few bytes.
//! A refused proof is seen only as the connection closing: tcpserver answers a
//! wrong secret with nothing.

use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::net::TcpStream;
use std::time::Instant;

use proto::handshake::NONCE_LEN;
use proto::{Frame, HEADER_LEN, Header, Message, MessageType, RpcSecret};

use super::socket::{WriteFailure, remaining, write_frame};

/// Largest body read during the handshake: a challenge's nonce (`Accepted`
/// has none). A longer one announced is refused before it is read.
const MAX_HANDSHAKE_BODY: usize = NONCE_LEN;

/// Why a new connection could not be proved to tcpserver.
#[derive(Debug)]
pub enum HandshakeError {
    /// The socket failed.
    Io(io::Error),
    /// The call's deadline passed before the handshake was over.
    TimedOut,
    /// tcpserver closed the connection before its challenge (`proved` false)
    /// or after the proof (`proved` true: the two servers' secrets differ).
    Closed {
        /// Whether the proof had been sent.
        proved: bool,
    },
    /// The bytes are not a frame of this protocol version (an older
    /// tcpserver, or something else on its port).
    Garbled(proto::Error),
    /// A frame, but not the one the handshake expects there.
    Unexpected(MessageType),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "RPC handshake: {e}"),
            HandshakeError::TimedOut => f.write_str("RPC handshake not finished in time"),
            HandshakeError::Closed { proved: false } => {
                f.write_str("the back end closed the connection before its challenge")
            }
            HandshakeError::Closed { proved: true } => f.write_str(
                "the back end refused the RPC secret (is --rpc-secret-file the same file as tcpserver's?)",
            ),
            HandshakeError::Garbled(e) => write!(f, "RPC handshake: not a frame of this protocol: {e}"),
            HandshakeError::Unexpected(kind) => write!(f, "RPC handshake: unexpected {kind:?}"),
        }
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HandshakeError::Io(e) => Some(e),
            HandshakeError::Garbled(e) => Some(e),
            _ => None,
        }
    }
}

impl HandshakeError {
    /// The same error for another waiting call (`io::Error` is not `Clone`).
    pub(super) fn copy(&self) -> HandshakeError {
        match self {
            HandshakeError::Io(e) => HandshakeError::Io(io::Error::new(e.kind(), e.to_string())),
            HandshakeError::TimedOut => HandshakeError::TimedOut,
            HandshakeError::Closed { proved } => HandshakeError::Closed { proved: *proved },
            HandshakeError::Garbled(e) => HandshakeError::Garbled(e.clone()),
            HandshakeError::Unexpected(kind) => HandshakeError::Unexpected(*kind),
        }
    }
}

/// Proves `secret` on a connection just opened, by `deadline`; on success the
/// stream is left with no read timeout, as the reader thread needs it.
///
/// # Errors
///
/// A [`HandshakeError`]; the connection must then be dropped.
pub(super) fn prove(
    stream: &mut TcpStream,
    secret: &RpcSecret,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    let nonce = match read_frame(stream, deadline, false)? {
        Message::Challenge(nonce) => nonce,
        other => return Err(HandshakeError::Unexpected(other.message_type())),
    };
    let mut proof = Vec::new();
    Frame { request_id: 0, message: Message::Proof(secret.prove(&nonce)) }
        .encode(&mut proof)
        .map_err(HandshakeError::Garbled)?;
    write_frame(stream, &proof, deadline).map_err(|failure| match failure {
        WriteFailure::OutOfTime { .. } => HandshakeError::TimedOut,
        WriteFailure::Failed { .. } => HandshakeError::Closed { proved: false },
    })?;
    match read_frame(stream, deadline, true)? {
        Message::Accepted => {}
        other => return Err(HandshakeError::Unexpected(other.message_type())),
    }
    // The socket's read timeout is shared with the reader thread's clone,
    // which must block until replies come, however long that is.
    stream.set_read_timeout(None).map_err(HandshakeError::Io)
}

/// Reads one whole frame, and nothing after it.
fn read_frame(stream: &mut TcpStream, deadline: Instant, proved: bool) -> Result<Message, HandshakeError> {
    let mut frame = vec![0u8; HEADER_LEN];
    read_exact_by(stream, &mut frame, deadline, proved)?;
    let header = match Header::decode(&frame) {
        Ok(Some(header)) => header,
        Ok(None) => return Err(HandshakeError::Closed { proved }),
        Err(e) => return Err(HandshakeError::Garbled(e)),
    };
    let body_len = header.body_len as usize;
    if body_len > MAX_HANDSHAKE_BODY {
        return Err(HandshakeError::Unexpected(header.message_type));
    }
    frame.resize(HEADER_LEN + body_len, 0);
    read_exact_by(stream, &mut frame[HEADER_LEN..], deadline, proved)?;
    match Frame::decode(&frame) {
        Ok(Some((frame, _))) => Ok(frame.message),
        Ok(None) => Err(HandshakeError::Closed { proved }),
        Err(e) => Err(HandshakeError::Garbled(e)),
    }
}

/// Fills `out` from the socket by `deadline`.
fn read_exact_by(
    stream: &mut TcpStream,
    out: &mut [u8],
    deadline: Instant,
    proved: bool,
) -> Result<(), HandshakeError> {
    let mut filled = 0;
    while filled < out.len() {
        let left = remaining(deadline).ok_or(HandshakeError::TimedOut)?;
        stream.set_read_timeout(Some(left)).map_err(HandshakeError::Io)?;
        match stream.read(&mut out[filled..]) {
            Ok(0) => return Err(HandshakeError::Closed { proved }),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(HandshakeError::TimedOut);
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Err(HandshakeError::Closed { proved });
            }
            Err(e) => return Err(HandshakeError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpListener;
    use std::thread;
    use std::time::Duration;

    use proto::Nonce;

    use super::*;

    fn secret(bytes: &[u8]) -> RpcSecret {
        RpcSecret::new(bytes).unwrap()
    }

    fn send(stream: &mut TcpStream, message: Message) {
        let mut out = Vec::new();
        Frame { request_id: 0, message }.encode(&mut out).unwrap();
        stream.write_all(&out).unwrap();
    }

    /// A server that challenges, and accepts only a proof made with `expected`
    /// (closing the connection otherwise); returns whether it accepted.
    fn server(expected: RpcSecret) -> (std::net::SocketAddr, thread::JoinHandle<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let nonce = Nonce([3; NONCE_LEN]);
            send(&mut s, Message::Challenge(nonce));
            let mut proof = [0u8; HEADER_LEN + proto::handshake::PROOF_LEN];
            s.read_exact(&mut proof).unwrap();
            let Ok(Some((Frame { message: Message::Proof(proof), .. }, _))) = Frame::decode(&proof) else {
                return false;
            };
            let right = expected.verify(&nonce, &proof);
            if right {
                send(&mut s, Message::Accepted);
            }
            right
        });
        (addr, handle)
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    const SECRET: &[u8] = b"the secret both servers share";

    #[test]
    fn the_right_secret_is_accepted_and_leaves_no_read_timeout() {
        let (addr, server) = server(secret(SECRET));
        let mut stream = TcpStream::connect(addr).unwrap();
        prove(&mut stream, &secret(SECRET), deadline()).unwrap();
        assert!(server.join().unwrap());
        assert_eq!(stream.read_timeout().unwrap(), None);
    }

    #[test]
    fn a_refused_secret_shows_as_the_connection_closing_after_the_proof() {
        let (addr, server) = server(secret(SECRET));
        let mut stream = TcpStream::connect(addr).unwrap();
        let refused = prove(&mut stream, &secret(b"some other secret, as long"), deadline());
        assert!(matches!(refused, Err(HandshakeError::Closed { proved: true })), "{refused:?}");
        assert!(!server.join().unwrap());
        assert!(refused.unwrap_err().to_string().contains("--rpc-secret-file"));
    }

    #[test]
    fn a_silent_server_is_given_up_on_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let started = Instant::now();
        let silent = prove(&mut stream, &secret(SECRET), started + Duration::from_millis(150));
        assert!(matches!(silent, Err(HandshakeError::TimedOut)), "{silent:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
    }

    #[test]
    fn a_peer_of_another_protocol_is_refused_unread() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
            let (mut s, _) = listener.accept().unwrap();
            // A frame announcing a body far longer than any of the handshake's.
            let mut big = Vec::new();
            Frame { request_id: 0, message: Message::Pong }.encode(&mut big).unwrap();
            big[12..16].copy_from_slice(&(1u32 << 20).to_be_bytes());
            s.write_all(&big).unwrap();
        });
        let mut http = TcpStream::connect(addr).unwrap();
        let garbled = prove(&mut http, &secret(SECRET), deadline());
        assert!(matches!(garbled, Err(HandshakeError::Garbled(_))), "{garbled:?}");
        let mut big = TcpStream::connect(addr).unwrap();
        let unexpected = prove(&mut big, &secret(SECRET), deadline());
        assert!(matches!(unexpected, Err(HandshakeError::Unexpected(MessageType::Pong))), "{unexpected:?}");
        peer.join().unwrap();
    }
}
