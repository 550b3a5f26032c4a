//! The RPC secret at the door, over real TCP: a connection is answered only
//! once it has proved the secret, and one that does not prove it is closed
//! with no answer and nothing done.

mod util;

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use proto::{ErrorCode, Frame, Message, RpcSecret};
use util::{Client, TestServer, error_code, new_key, redis_keys};

const PASSWORD: &str = "handshake-password";

/// Every Redis key of this server, sorted.
fn keys(server: &TestServer) -> Vec<String> {
    let mut keys = redis_keys(&mut server.env.redis(), &server.redis_prefix);
    keys.sort();
    keys
}

fn user_exists(server: &TestServer, username: &str) -> bool {
    let found: Option<u64> =
        server.env.mysql().exec_first("SELECT id FROM users WHERE username = ?", (username,)).expect("query");
    found.is_some()
}

/// A new connection's first frame: the challenge.
fn challenged(server: &TestServer) -> (Client, proto::Nonce) {
    let mut client = server.connect_unproven();
    match client.try_recv() {
        Some(Frame { request_id: 0, message: Message::Challenge(nonce) }) => (client, nonce),
        other => panic!("expected a challenge, got {other:?}"),
    }
}

/// `first` (a proof, say) if given, then a Ping, a log-in that would succeed
/// and a sign-up, pipelined in one write (the server may close the connection
/// after the first frame, and a second write would then fail).
fn requests_that_would_do_something(
    client: &mut Client,
    first: Option<Message>,
    username: &str,
    newcomer: &str,
) {
    let mut bytes = Vec::new();
    if let Some(message) = first {
        Frame { request_id: 0, message }.encode(&mut bytes).expect("encodable frame");
    }
    let requests = [
        Message::Ping,
        Message::Login {
            username: username.into(),
            password: PASSWORD.into(),
            client: None,
            user_agent: None,
        },
        Message::SignUp {
            username: newcomer.into(),
            password: PASSWORD.into(),
            nickname: None,
            client: None,
            key: new_key(),
        },
    ];
    for (request_id, message) in (1..).zip(requests) {
        Frame { request_id, message }.encode(&mut bytes).expect("encodable request");
    }
    client.write_raw(&bytes);
}

#[test]
fn a_connection_without_the_secret_gets_no_answer_and_nothing_is_done() {
    let server = TestServer::start();
    let username = server.sign_up(&mut server.connect(), "known", PASSWORD);
    let newcomer = server.username("newcomer");
    let before = keys(&server);

    let (mut client, _) = challenged(&server);
    requests_that_would_do_something(&mut client, None, &username, &newcomer);
    assert_eq!(client.try_recv(), None, "a request before the proof is answered");

    assert_eq!(keys(&server), before, "no session, log-in record or counter was made");
    assert!(!user_exists(&server, &newcomer), "the sign-up was not run");
    let log = server.stderr();
    assert_eq!(log.matches("refused: sent Ping before proving the RPC secret").count(), 1, "{log}");
    // The server itself is fine.
    assert_eq!(server.connect().call(Message::Ping), Message::Pong);
}

#[test]
fn a_wrong_or_replayed_proof_is_closed_with_no_answer() {
    let server = TestServer::start();
    let username = server.sign_up(&mut server.connect(), "known", PASSWORD);
    let newcomer = server.username("newcomer");
    let before = keys(&server);

    let (mut wrong, nonce) = challenged(&server);
    let other = RpcSecret::new(b"not the server's secret, though long").expect("secret");
    let proof = Message::Proof(other.prove(&nonce));
    requests_that_would_do_something(&mut wrong, Some(proof), &username, &newcomer);
    assert_eq!(wrong.try_recv(), None, "a wrong proof is answered");

    // A right proof, for another connection's challenge.
    let (_first, first_nonce) = challenged(&server);
    let (mut replayed, _) = challenged(&server);
    let proof = Message::Proof(server.secret.prove(&first_nonce));
    requests_that_would_do_something(&mut replayed, Some(proof), &username, &newcomer);
    assert_eq!(replayed.try_recv(), None, "a proof made for another challenge is answered");

    assert_eq!(keys(&server), before);
    assert!(!user_exists(&server, &newcomer));
    let log = server.stderr();
    assert_eq!(log.matches("refused: wrong RPC secret").count(), 2, "{log}");
}

#[test]
fn a_right_proof_is_accepted_and_the_connection_then_serves_requests() {
    let server = TestServer::start();
    let (mut client, nonce) = challenged(&server);
    client.send_with_id(0, Message::Proof(server.secret.prove(&nonce)));
    assert_eq!(client.try_recv(), Some(Frame { request_id: 0, message: Message::Accepted }));
    assert_eq!(client.call(Message::Ping), Message::Pong);
    let (username, _) = server.user_with_session(&mut client, "proved", PASSWORD);
    assert!(user_exists(&server, &username));
    // The handshake happens once: a second proof is refused like any reply
    // sent as a request, and the connection goes on.
    let late = client.call(Message::Proof(server.secret.prove(&nonce)));
    assert_eq!(error_code(&late), ErrorCode::UnexpectedMessage);
    assert_eq!(client.call(Message::Ping), Message::Pong);
    assert!(!server.stderr().contains("refused"), "{}", server.stderr());
}

#[test]
fn a_connection_that_proves_nothing_is_closed_after_the_handshake_timeout() {
    let server = TestServer::start();
    let (mut silent, _) = challenged(&server);
    let started = Instant::now();
    assert!(silent.is_closed_by_server(), "a silent connection is kept open");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(2), "closed after {waited:?}, before its timeout");
    assert!(waited < Duration::from_secs(15), "closed only after {waited:?}");
    assert!(server.stderr().contains("did not prove the RPC secret within 3s"), "{}", server.stderr());
}
