//! The pool against a fake tcpserver (`fake_backend.rs`) on real sockets.

use std::net::TcpListener;
use std::sync::mpsc;

use proto::{ErrorCode, Profile, Secret};

use super::fake_backend::*;
use super::*;

#[test]
fn many_calls_share_one_connection_and_each_gets_its_own_reply() {
    const CALLS: usize = 20;
    let (addr, server) = backend(vec![Box::new(|mut s| {
        let frames = read_requests(&mut s, CALLS).unwrap();
        // Answered in reverse order, each with the name its token carried.
        for frame in frames.into_iter().rev() {
            let Message::GetProfile { token, .. } = frame.message else { panic!("{frame:?}") };
            reply(&mut s, frame.request_id, profile(token.expose()));
        }
    })]);
    let pool = Arc::new(RpcPool::new(addr, 1, TIMEOUT, secret()));
    let callers: Vec<_> = (0..CALLS)
        .map(|i| {
            let pool = Arc::clone(&pool);
            thread::spawn(move || (i, pool.call(get_profile(&format!("user{i}")))))
        })
        .collect();
    for caller in callers {
        let (i, reply) = caller.join().unwrap();
        assert_eq!(reply.unwrap(), profile(&format!("user{i}")));
    }
    server.join().unwrap();
}

#[test]
fn a_connection_closed_while_idle_is_replaced_before_use() {
    let (tx, rx) = mpsc::channel();
    let (addr, server) = backend(vec![
        Box::new(move |mut s| {
            let f = read_request(&mut s).unwrap();
            reply(&mut s, f.request_id, Message::Pong);
            drop(s); // the back end restarts
            tx.send(()).unwrap();
        }),
        Box::new(|mut s| {
            let f = read_request(&mut s).unwrap();
            reply(&mut s, f.request_id, Message::LoggedOut);
        }),
    ]);
    let pool = RpcPool::new(addr, 1, TIMEOUT, secret());
    assert_eq!(pool.call(Message::Ping).unwrap(), Message::Pong);
    rx.recv().unwrap();
    // Not idempotent, so this works only because the dead connection is
    // noticed before anything is written to it.
    assert_eq!(pool.call(Message::Logout { token: Secret::new("t") }).unwrap(), Message::LoggedOut);
    assert!(no_further_connection(&server.join().unwrap()));
}

#[test]
fn a_state_change_lost_mid_flight_is_not_sent_again() {
    let (addr, server) = backend(vec![Box::new(|mut s| {
        read_request(&mut s).unwrap();
        // Applied, maybe, but the reply never comes.
    })]);
    let pool = RpcPool::new(addr, 4, TIMEOUT, secret());
    // A picture change counts an upload and a picture: not safe to resend.
    let picture = Message::SetAvatar { token: Secret::new("t"), username: None, image: vec![0x89, b'P'] };
    assert!(matches!(pool.call(picture), Err(RpcError::Interrupted)));
    assert!(no_further_connection(&server.join().unwrap()), "the request must not be repeated");
    assert_eq!(open_connections_settle(&pool, 0), 0, "the broken connection is closed");
}

#[test]
fn a_sign_up_lost_mid_flight_is_sent_again_once_the_same_bytes_and_key() {
    let (first, got_first) = mpsc::channel();
    let (addr, server) = backend(vec![
        Box::new(move |mut s| {
            // Applied, maybe, but the reply never comes.
            first.send(read_request(&mut s).unwrap()).unwrap();
        }),
        Box::new(|mut s| {
            let f = read_request(&mut s).unwrap();
            let Message::SignUp { username, .. } = &f.message else { panic!("{f:?}") };
            let created = Profile { username: username.clone(), nickname: username.clone(), avatar: None };
            reply(&mut s, f.request_id, Message::SignedUp(created));
        }),
    ]);
    let pool = RpcPool::new(addr, 1, TIMEOUT, secret());
    let sign_up = Message::SignUp {
        username: "newcomer".into(),
        password: Secret::new("pw"),
        nickname: None,
        client: None,
        key: proto::IdempotencyKey([7; proto::IDEMPOTENCY_KEY_LEN]),
    };
    assert!(matches!(pool.call(sign_up.clone()), Ok(Message::SignedUp(p)) if p.username == "newcomer"));
    let first = got_first.recv().unwrap();
    assert_eq!(first.message, sign_up, "the first copy carried the key");
    assert!(no_further_connection(&server.join().unwrap()), "sent again once, not twice");
}

#[test]
fn an_idempotent_read_lost_mid_flight_is_sent_again_once() {
    let (addr, server) = backend(vec![
        Box::new(|mut s| {
            read_request(&mut s).unwrap();
        }),
        Box::new(|mut s| {
            let f = read_request(&mut s).unwrap();
            reply(&mut s, f.request_id, profile("u"));
        }),
    ]);
    let pool = RpcPool::new(addr, 1, TIMEOUT, secret());
    assert_eq!(pool.call(get_profile("t")).unwrap(), profile("u"));
    server.join().unwrap();
}

#[test]
fn error_replies_are_replies_and_replies_to_nothing_sent_are_refused() {
    let (addr, server) = backend(vec![Box::new(|mut s| {
        let f = read_request(&mut s).unwrap();
        reply(&mut s, f.request_id, Message::error(ErrorCode::Forbidden, "no"));
        let f = read_request(&mut s).unwrap();
        reply(&mut s, f.request_id + 1, Message::Pong);
    })]);
    let pool = RpcPool::new(addr, 1, TIMEOUT, secret());
    assert!(matches!(pool.call(get_profile("t")), Ok(Message::Error(e)) if e.code == ErrorCode::Forbidden));
    assert!(matches!(pool.call(Message::Ping), Err(RpcError::UnexpectedReply)));
    assert_eq!(open_connections_settle(&pool, 0), 0, "a connection out of step is not reused");
    server.join().unwrap();
}

#[test]
fn a_silent_back_end_times_out_and_a_missing_one_is_unreachable() {
    let (release, wait) = mpsc::channel::<()>();
    let (addr, server) = backend(vec![Box::new(move |mut s| {
        read_request(&mut s).unwrap();
        let _ = wait.recv();
    })]);
    let pool = RpcPool::new(addr, 1, Duration::from_millis(200), secret());
    assert!(matches!(pool.call(Message::Ping), Err(RpcError::Timeout)));
    release.send(()).unwrap();
    let listener = server.join().unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let gone = RpcPool::new(format!("127.0.0.1:{port}"), 1, TIMEOUT, secret());
    assert!(matches!(gone.call(Message::Ping), Err(RpcError::Unreachable(_))));
    assert_eq!(gone.open_connections(), 0);
}

fn nickname_change() -> Message {
    Message::UpdateNickname { token: Secret::new("t"), username: None, nickname: "x".into() }
}

/// A back end that holds the reply to its first request (a nickname
/// change) until `release` says so, then answers it and one Ping more.
fn backend_holding_its_first_reply(
    got_first: mpsc::Sender<()>,
    release: mpsc::Receiver<()>,
) -> (String, thread::JoinHandle<TcpListener>) {
    backend(vec![Box::new(move |mut s| {
        let first = read_request(&mut s).unwrap();
        got_first.send(()).unwrap();
        release.recv().unwrap();
        reply(
            &mut s,
            first.request_id,
            Message::NicknameUpdated(Profile { username: "u".into(), nickname: "x".into(), avatar: None }),
        );
        let next = read_request(&mut s).unwrap();
        assert_eq!(next.message, Message::Ping, "nothing of the late call was written");
        reply(&mut s, next.request_id, Message::Pong);
    })])
}

/// The nickname change in flight got its reply, the one connection is
/// still open and still carries calls, and no other was opened.
fn assert_untouched(
    pool: &RpcPool,
    in_flight: thread::JoinHandle<Result<Message, RpcError>>,
    server: thread::JoinHandle<TcpListener>,
) {
    assert!(matches!(in_flight.join().unwrap(), Ok(Message::NicknameUpdated(_))));
    assert_eq!(pool.open_connections(), 1);
    assert_eq!(pool.call(Message::Ping).unwrap(), Message::Pong);
    assert!(no_further_connection(&server.join().unwrap()), "the connection was kept");
}

/// The pool, the caller in flight, the back end, and what releases its reply.
type CallInFlight = (
    Arc<RpcPool>,
    thread::JoinHandle<Result<Message, RpcError>>,
    thread::JoinHandle<TcpListener>,
    mpsc::Sender<()>,
);

/// A pool of one connection carrying a nickname change whose reply the
/// back end holds until `release` is sent.
fn one_connection_with_a_call_in_flight() -> CallInFlight {
    let (got_first, first_seen) = mpsc::channel();
    let (release, wait) = mpsc::channel();
    let (addr, server) = backend_holding_its_first_reply(got_first, wait);
    let pool = Arc::new(RpcPool::new(addr, 1, TIMEOUT, secret()));
    let in_flight = {
        let pool = Arc::clone(&pool);
        thread::spawn(move || pool.call(nickname_change()))
    };
    first_seen.recv().unwrap();
    (pool, in_flight, server, release)
}

#[test]
fn a_caller_out_of_time_while_another_holds_the_write_turn_fails_alone() {
    let (pool, in_flight, server, release) = one_connection_with_a_call_in_flight();
    // Another caller is writing (a picture to a slow back end, say).
    let held = pool.links[0].writer.take();
    let started = Instant::now();
    let late = pool.call_until(Message::Ping, started + Duration::from_millis(200));
    let waited = started.elapsed();
    assert!(matches!(late, Err(RpcError::Timeout)), "{late:?}");
    assert!(waited >= Duration::from_millis(200), "gave up after {waited:?}, before its deadline");
    assert!(waited < Duration::from_secs(2), "waited {waited:?} for the turn, past its deadline");
    drop(held);
    release.send(()).unwrap();
    assert_untouched(&pool, in_flight, server);
}

#[test]
fn a_caller_whose_deadline_passed_before_its_turn_writes_nothing_and_closes_nothing() {
    let (pool, in_flight, server, release) = one_connection_with_a_call_in_flight();
    // The turn is free, but this caller's time is gone by the time it gets it.
    let late = pool.call_until(Message::Logout { token: Secret::new("t") }, Instant::now());
    assert!(matches!(late, Err(RpcError::Timeout)), "{late:?}");
    release.send(()).unwrap();
    assert_untouched(&pool, in_flight, server);
}

#[test]
fn a_connection_whose_proof_is_refused_carries_no_call_and_is_not_kept() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        challenge(&mut s);
        // Nothing is written before Accepted, which never comes.
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut byte = [0u8; 1];
        assert!(matches!(s.read(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock));
        drop(s); // as tcpserver answers a wrong proof
        listener
    });
    let pool = RpcPool::new(addr, 1, TIMEOUT, RpcSecret::new(b"not the back end's secret").unwrap());
    let refused = pool.call(nickname_change());
    assert!(matches!(refused, Err(RpcError::Handshake(HandshakeError::Closed { proved: true }))));
    assert_eq!(pool.open_connections(), 0);
    assert!(no_further_connection(&server.join().unwrap()), "a refused call is not tried again");
}

#[test]
fn a_call_beyond_every_connections_limit_is_refused_at_once() {
    let (got_requests, requests_seen) = mpsc::channel();
    let (release, wait) = mpsc::channel::<()>();
    let (addr, server) = backend(vec![Box::new(move |mut s| {
        let frames = read_requests(&mut s, 2).unwrap();
        got_requests.send(()).unwrap();
        wait.recv().unwrap();
        for f in frames {
            reply(&mut s, f.request_id, Message::Pong);
        }
        let f = read_request(&mut s).unwrap();
        reply(&mut s, f.request_id, Message::Pong);
    })]);
    let mut pool = RpcPool::new(addr, 1, TIMEOUT, secret());
    pool.calls_per_connection = 2;
    let pool = Arc::new(pool);
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let pool = Arc::clone(&pool);
            thread::spawn(move || pool.call(Message::Ping))
        })
        .collect();
    requests_seen.recv().unwrap();
    let started = Instant::now();
    assert!(matches!(pool.call(Message::Ping), Err(RpcError::Busy)));
    assert!(started.elapsed() < TIMEOUT, "refused without waiting for the deadline");
    release.send(()).unwrap();
    for caller in busy {
        assert_eq!(caller.join().unwrap().unwrap(), Message::Pong);
    }
    assert_eq!(pool.call(Message::Ping).unwrap(), Message::Pong, "places are given back");
    server.join().unwrap();
}
