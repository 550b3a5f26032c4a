//! The balancer against fake tcpservers (`rpc_pool/fake_backend.rs`): real
//! sockets, scripted deaths. Waits are for events (a request seen, a state
//! changed) with a bound, never a sleep standing for an assertion.

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use proto::{Message, Profile, Secret};

use super::*;
use crate::rpc_pool::fake_backend::{
    TIMEOUT, accept_proof, get_profile, profile, read_request, reply, secret,
};

/// How long a test waits for the balancer to notice something.
const NOTICE: Duration = Duration::from_secs(5);

fn lanes() -> (LaneSettings, LaneSettings) {
    let lane = LaneSettings { connections: 1, timeout: TIMEOUT };
    (lane, lane)
}

fn balancer(addrs: &[String]) -> Balancer {
    let (calls, waits) = lanes();
    Balancer::new(addrs, calls, waits, &secret()).unwrap()
}

fn nickname_change() -> Message {
    Message::UpdateNickname { token: Secret::new("t"), username: None, nickname: "x".into() }
}

fn sign_up() -> Message {
    Message::SignUp {
        username: "newcomer".into(),
        password: Secret::new("pw"),
        nickname: None,
        client: None,
        key: proto::IdempotencyKey([9; proto::IDEMPOTENCY_KEY_LEN]),
    }
}

/// A write that is not safe to resend: it counts an upload and a picture.
fn picture_change() -> Message {
    Message::SetAvatar { token: Secret::new("t"), username: None, image: vec![0x89, b'P'] }
}

/// The answer a live tcpserver would give.
fn answer(request: &Message) -> Message {
    match request {
        Message::Ping => Message::Pong,
        Message::GetProfile { .. } => profile("u"),
        Message::UpdateNickname { .. } => {
            Message::NicknameUpdated(Profile { username: "u".into(), nickname: "x".into(), avatar: None })
        }
        Message::SetAvatar { .. } => Message::AvatarSet(Profile {
            username: "u".into(),
            nickname: "x".into(),
            avatar: Some(format!("{}.png", "a".repeat(64))),
        }),
        Message::SignUp { username, .. } => Message::SignedUp(Profile {
            username: username.clone(),
            nickname: username.clone(),
            avatar: None,
        }),
        _ => Message::LoggedOut,
    }
}

/// A fake tcpserver on `listener` answering every request on every
/// connection, and telling `seen` about each one (the probes' Pings too).
fn serving(listener: TcpListener) -> mpsc::Receiver<Message> {
    let (seen, requests) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let seen = seen.clone();
            thread::spawn(move || {
                accept_proof(&mut stream);
                while let Some(frame) = read_request(&mut stream) {
                    // Told before the reply goes, so a caller that has its
                    // reply finds the request among those seen.
                    let answer = answer(&frame.message);
                    if seen.send(frame.message).is_err() {
                        return;
                    }
                    reply(&mut stream, frame.request_id, answer);
                }
            });
        }
    });
    requests
}

fn live_backend() -> (String, mpsc::Receiver<Message>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (addr, serving(listener))
}

/// An address where nothing listens: connections are refused.
fn dead_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A fake tcpserver that proves one connection, reads one request, tells
/// `got` what it was, and dies (connection and listener closed) without
/// answering: a SIGKILL with a call in flight.
fn dies_with_a_call_in_flight() -> (String, mpsc::Receiver<Message>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (got, requests) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _): (TcpStream, _) = listener.accept().unwrap();
        accept_proof(&mut stream);
        let frame = read_request(&mut stream).unwrap();
        drop(listener);
        drop(stream);
        got.send(frame.message).unwrap();
    });
    (addr, requests)
}

/// Waits until `condition` holds, at most [`NOTICE`]; whether it did.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + NOTICE;
    while !condition() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
    true
}

fn ups(balancer: &Balancer) -> Vec<bool> {
    balancer.states().into_iter().map(|(_, up)| up).collect()
}

fn drain(requests: &mpsc::Receiver<Message>) -> Vec<Message> {
    requests.try_iter().collect()
}

#[test]
fn calls_on_an_idle_pair_alternate_between_them() {
    let (a, seen_a) = live_backend();
    let (b, seen_b) = live_backend();
    let balancer = balancer(&[a, b]);
    for _ in 0..10 {
        assert_eq!(balancer.call(Lane::Calls, get_profile("t")).unwrap(), profile("u"));
    }
    assert_eq!((drain(&seen_a).len(), drain(&seen_b).len()), (5, 5));
    assert_eq!(ups(&balancer), [true, true]);
}

#[test]
fn the_least_loaded_backend_gets_the_next_calls() {
    // A holds the first call without answering; every call after it goes to B.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = listener.local_addr().unwrap().to_string();
    let (got_first, first_seen) = mpsc::channel();
    let (release, wait) = mpsc::channel::<()>();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        accept_proof(&mut stream);
        let first = read_request(&mut stream).unwrap();
        got_first.send(()).unwrap();
        wait.recv().unwrap();
        reply(&mut stream, first.request_id, Message::Pong);
        while let Some(frame) = read_request(&mut stream) {
            reply(&mut stream, frame.request_id, answer(&frame.message));
        }
    });
    let (b, seen_b) = live_backend();
    let balancer = Arc::new(balancer(&[a, b]));
    let held = {
        let balancer = Arc::clone(&balancer);
        thread::spawn(move || balancer.call(Lane::Calls, Message::Ping))
    };
    first_seen.recv().unwrap();
    for _ in 0..4 {
        assert_eq!(balancer.call(Lane::Calls, get_profile("t")).unwrap(), profile("u"));
    }
    assert_eq!(drain(&seen_b).len(), 4, "A had a call in flight, B none");
    release.send(()).unwrap();
    assert_eq!(held.join().unwrap().unwrap(), Message::Pong);
}

#[test]
fn a_refused_backend_is_marked_down_and_even_a_write_moves_to_the_other() {
    let (b, seen_b) = live_backend();
    let balancer = balancer(&[dead_address(), b]);
    // The first call goes to the first backend: refused before a byte was
    // written, so even a state change is safe to send to the next.
    assert!(matches!(balancer.call(Lane::Calls, picture_change()), Ok(Message::AvatarSet(_))));
    assert_eq!(ups(&balancer), [false, true]);
    assert_eq!(drain(&seen_b), [picture_change()]);
    for _ in 0..6 {
        assert_eq!(balancer.call(Lane::Calls, get_profile("t")).unwrap(), profile("u"));
    }
    assert_eq!(drain(&seen_b).iter().filter(|m| **m == get_profile("t")).count(), 6, "none to the dead one");
}

#[test]
fn a_write_lost_with_its_backend_fails_interrupted_and_is_never_sent_to_the_other() {
    let (a, got_a) = dies_with_a_call_in_flight();
    let (b, seen_b) = live_backend();
    let balancer = balancer(&[a, b]);
    assert!(matches!(balancer.call(Lane::Calls, picture_change()), Err(RpcError::Interrupted)));
    assert_eq!(got_a.recv().unwrap(), picture_change());
    assert_eq!(ups(&balancer), [false, true], "the dead one is out at once");
    // The next call shows what B received before it: nothing.
    assert_eq!(balancer.call(Lane::Calls, Message::Ping).unwrap(), Message::Pong);
    assert_eq!(drain(&seen_b), [Message::Ping], "the interrupted change was not sent again");
}

/// The writes tcpserver makes idempotent go to the other backend as they
/// were sent (the sign-up with its key), and its answer is the call's.
#[test]
fn a_sign_up_or_nickname_change_lost_with_its_backend_is_answered_by_the_other() {
    for (write, answered) in [
        (
            sign_up(),
            Message::SignedUp(Profile {
                username: "newcomer".into(),
                nickname: "newcomer".into(),
                avatar: None,
            }),
        ),
        (nickname_change(), answer(&nickname_change())),
    ] {
        let (a, got_a) = dies_with_a_call_in_flight();
        let (b, seen_b) = live_backend();
        let balancer = balancer(&[a, b]);
        assert_eq!(balancer.call(Lane::Calls, write.clone()).unwrap(), answered);
        assert_eq!(got_a.recv().unwrap(), write, "the dying one had it");
        assert_eq!(drain(&seen_b), [write], "the same request, key and all, went to the other once");
        assert_eq!(ups(&balancer), [false, true]);
    }
}

#[test]
fn an_idempotent_read_lost_with_its_backend_is_answered_by_the_other() {
    let (a, got_a) = dies_with_a_call_in_flight();
    let (b, seen_b) = live_backend();
    let balancer = balancer(&[a, b]);
    assert_eq!(balancer.call(Lane::Calls, get_profile("t")).unwrap(), profile("u"));
    assert_eq!(got_a.recv().unwrap(), get_profile("t"));
    assert_eq!(drain(&seen_b), [get_profile("t")]);
    assert_eq!(ups(&balancer), [false, true]);
}

#[test]
fn a_backend_that_closes_an_idle_connection_is_down_before_any_call_finds_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = listener.local_addr().unwrap().to_string();
    let (answered, first_answered) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        accept_proof(&mut stream);
        let ping = read_request(&mut stream).unwrap();
        reply(&mut stream, ping.request_id, Message::Pong);
        answered.send(()).unwrap();
        // tcpserver dies while the connection is idle.
        drop(listener);
        drop(stream);
    });
    let (b, _seen_b) = live_backend();
    let balancer = balancer(&[a, b]);
    assert_eq!(balancer.call(Lane::Calls, Message::Ping).unwrap(), Message::Pong);
    first_answered.recv().unwrap();
    assert!(eventually(|| ups(&balancer) == [false, true]), "the reader's EOF marks it down");
}

#[test]
fn a_dead_backend_is_probed_and_taken_back_when_it_answers() {
    // By host name: the prober resolves it at each probe, as callers do.
    let a = dead_address().replace("127.0.0.1", "localhost");
    let (b, _seen_b) = live_backend();
    let balancer = balancer(&[a.clone(), b]);
    assert_eq!(balancer.call(Lane::Calls, Message::Ping).unwrap(), Message::Pong);
    assert_eq!(ups(&balancer), [false, true]);
    // tcpserver is restarted on the same address.
    let seen_a = serving(TcpListener::bind(a.replace("localhost", "127.0.0.1")).unwrap());
    assert!(eventually(|| ups(&balancer) == [true, true]), "the prober brings it back");
    assert_eq!(seen_a.recv_timeout(NOTICE).unwrap(), Message::Ping, "by a Ping");
    for _ in 0..4 {
        balancer.call(Lane::Calls, get_profile("t")).unwrap();
    }
    assert!(drain(&seen_a).contains(&get_profile("t")), "and it takes calls again");
}

#[test]
fn with_every_backend_down_a_call_still_tries_them_and_finds_one_back() {
    let a = dead_address();
    let balancer = balancer(std::slice::from_ref(&a));
    assert!(matches!(balancer.call(Lane::Calls, Message::Ping), Err(RpcError::Unreachable(_))));
    assert_eq!(ups(&balancer), [false]);
    let _seen = serving(TcpListener::bind(&a).unwrap());
    // No wait for the prober: the next call tries the backend itself.
    assert_eq!(
        balancer.call(Lane::Calls, nickname_change()).map(|m| m.message_type()).unwrap(),
        proto::MessageType::NicknameUpdated
    );
    assert_eq!(ups(&balancer), [true]);
}

#[test]
fn waits_and_calls_are_balanced_in_lanes_of_their_own() {
    let (a, seen_a) = live_backend();
    let (b, seen_b) = live_backend();
    let balancer = balancer(&[a, b]);
    balancer.call(Lane::Waits, Message::Ping).unwrap();
    balancer.call(Lane::Calls, Message::Ping).unwrap();
    assert_eq!(balancer.open_connections(0, Lane::Waits) + balancer.open_connections(1, Lane::Waits), 1);
    assert_eq!(balancer.open_connections(0, Lane::Calls) + balancer.open_connections(1, Lane::Calls), 1);
    assert_eq!(drain(&seen_a).len() + drain(&seen_b).len(), 2);
}

#[test]
fn a_wait_parked_on_a_backend_that_dies_is_parked_on_the_other_for_the_time_left() {
    let (a, got_a) = dies_with_a_call_in_flight();
    let (b, seen_b) = live_backend();
    let lane = LaneSettings { connections: 1, timeout: Duration::from_secs(4) };
    let balancer = Balancer::new(&[a, b], lane, lane, &secret()).unwrap();
    let wait = |wait_ms| Message::QrWait {
        key: Secret::new("k"),
        binding: Secret::new("b"),
        seen: proto::QrState::Pending,
        wait_ms,
        client: None,
    };
    // The fake answers anything it does not know with LoggedOut: a reply all the same.
    assert!(balancer.call(Lane::Waits, wait(3500)).is_ok());
    assert_eq!(got_a.recv().unwrap(), wait(3500));
    let Some(Message::QrWait { wait_ms, .. }) = drain(&seen_b).pop() else { panic!("B got no wait") };
    // Of the call's 4 s, some went to A; the second wait leaves its 1 s margin.
    assert!(wait_ms <= 3000, "parked on B for {wait_ms} ms, past the time left");
}

#[test]
fn a_backend_that_answers_nothing_is_taken_out_at_its_first_timeout_and_a_busy_one_is_not() {
    // A: proves its connections, then reads and answers nothing (SIGSTOP).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            thread::spawn(move || {
                accept_proof(&mut stream);
                while read_request(&mut stream).is_some() {}
            });
        }
    });
    let (b, _seen_b) = live_backend();
    let lane = LaneSettings { connections: 1, timeout: Duration::from_millis(300) };
    let balancer = Balancer::new(&[a, b], lane, lane, &secret()).unwrap();
    assert!(matches!(balancer.call(Lane::Calls, Message::Ping), Err(RpcError::Timeout)));
    assert_eq!(ups(&balancer), [false, true], "silent for the whole call: out");
    assert_eq!(balancer.call(Lane::Calls, Message::Ping).unwrap(), Message::Pong, "the next goes to B");

    // C holds one call past its deadline but answers the others meanwhile: busy, not dead.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = listener.local_addr().unwrap().to_string();
    let (held, first_held) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        accept_proof(&mut stream);
        let slow = read_request(&mut stream).unwrap();
        held.send(()).unwrap();
        while let Some(frame) = read_request(&mut stream) {
            reply(&mut stream, frame.request_id, answer(&frame.message));
        }
        drop(slow);
    });
    let lane = LaneSettings { connections: 1, timeout: Duration::from_millis(600) };
    let balancer = Arc::new(Balancer::new(&[c], lane, lane, &secret()).unwrap());
    let slow = {
        let balancer = Arc::clone(&balancer);
        thread::spawn(move || balancer.call(Lane::Calls, get_profile("slow")))
    };
    first_held.recv().unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(800) {
        assert_eq!(balancer.call(Lane::Calls, Message::Ping).unwrap(), Message::Pong);
    }
    assert!(matches!(slow.join().unwrap(), Err(RpcError::Timeout)));
    assert_eq!(ups(&balancer), [true], "it answered others while that call waited");
}

#[test]
fn the_number_of_backends_is_bounded() {
    let (calls, waits) = lanes();
    assert!(matches!(Balancer::new(&[], calls, waits, &secret()), Err(BalancerError::BackendCount(0))));
    let many: Vec<String> = (0..=MAX_BACKENDS).map(|i| format!("127.0.0.1:{}", 3000 + i)).collect();
    assert!(matches!(
        Balancer::new(&many, calls, waits, &secret()),
        Err(BalancerError::BackendCount(n)) if n == MAX_BACKENDS + 1
    ));
}
