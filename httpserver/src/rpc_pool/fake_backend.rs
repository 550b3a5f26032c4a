//! A fake tcpserver for the pool's unit tests: it proves each connection as
//! tcpserver does, then runs a script of the test's on it, and tells the tests
//! what the pool sent.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use proto::handshake::NONCE_LEN;
use proto::{Frame, Message, Nonce, Profile, RpcSecret, Secret};

use super::RpcPool;

/// How long a test call may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// The secret the fake back end expects the pool to prove.
pub(crate) fn secret() -> RpcSecret {
    RpcSecret::new(b"the secret of the pool's tests").unwrap()
}

/// Challenges a new connection as tcpserver does, and returns the proof.
pub(crate) fn challenge(stream: &mut TcpStream) -> (Nonce, proto::Proof) {
    let nonce = Nonce([9; NONCE_LEN]);
    reply(stream, 0, Message::Challenge(nonce));
    match read_request(stream).map(|frame| frame.message) {
        Some(Message::Proof(proof)) => (nonce, proof),
        other => panic!("expected a proof first, got {other:?}"),
    }
}

/// tcpserver's side of the handshake with the tests' secret.
pub(crate) fn accept_proof(stream: &mut TcpStream) {
    let (nonce, proof) = challenge(stream);
    assert!(secret().verify(&nonce, &proof), "the pool proves the secret it was given");
    reply(stream, 0, Message::Accepted);
}

/// Reads request frames from a fake back end's side of a connection until
/// `n` have come.
pub(crate) fn read_requests(stream: &mut TcpStream, n: usize) -> Option<Vec<Frame>> {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok(Some((frame, used))) = Frame::decode(&buf) {
            buf.drain(..used);
            frames.push(frame);
        }
        if frames.len() >= n {
            return Some(frames);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// The next request frame; `None` if the pool closed the connection.
pub(crate) fn read_request(stream: &mut TcpStream) -> Option<Frame> {
    read_requests(stream, 1)?.pop()
}

/// Sends `message` as the reply to `request_id`.
pub(crate) fn reply(stream: &mut TcpStream, request_id: u64, message: Message) {
    let mut out = Vec::new();
    Frame { request_id, message }.encode(&mut out).unwrap();
    stream.write_all(&out).unwrap();
}

/// A profile reply for user `name`.
pub(crate) fn profile(name: &str) -> Message {
    Message::ProfileReply(Profile { username: name.into(), nickname: "n".into(), avatar: None })
}

/// A profile read with session `token`.
pub(crate) fn get_profile(token: &str) -> Message {
    Message::GetProfile { token: Secret::new(token), username: None }
}

/// A fake back end whose connections are each proved, then handled by
/// `script`, in order.
pub(crate) fn backend(
    scripts: Vec<Box<dyn FnOnce(TcpStream) + Send>>,
) -> (String, thread::JoinHandle<TcpListener>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || {
        for script in scripts {
            let (mut stream, _) = listener.accept().unwrap();
            accept_proof(&mut stream);
            script(stream);
        }
        listener
    });
    (addr, handle)
}

/// True if nobody else connected to the listener after its scripts ran.
pub(crate) fn no_further_connection(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// Waits (briefly) for the pool's readers to notice closed connections.
pub(crate) fn open_connections_settle(pool: &RpcPool, expected: usize) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    while pool.open_connections() != expected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    pool.open_connections()
}
