//! Scan-to-log-in over the RPC protocol. Waits parked in the reactor hold no
//! worker, end with their connection, are all answered by one approval
//! (exactly one of them redeeming the code), and end at their deadline; and
//! the rules hold under simultaneous requests: one approval per code, the
//! decision and creation throttles exactly at their limits.

#[macro_use]
mod util;

use std::thread;
use std::time::{Duration, Instant};

use proto::{ErrorCode, Message, QrState, Secret};
use util::{Client, TestServer, all_at_once};

const PASSWORD: &str = "correct horse battery";

fn new_code(client: &mut Client) -> (Secret, Secret) {
    match client.call(Message::QrCreate { user_agent: "test".into(), client: None }) {
        Message::QrCreated { key, binding, expires_in_secs } => {
            assert_eq!(expires_in_secs, 120);
            (key, binding)
        }
        other => panic!("no code: {other:?}"),
    }
}

fn wait_message(key: &Secret, binding: &Secret, wait_ms: u32) -> Message {
    Message::QrWait {
        key: key.clone(),
        binding: binding.clone(),
        seen: QrState::Pending,
        wait_ms,
        client: None,
    }
}

/// Polls the server's gauge of parked waits until it reads `want`.
fn until_waits(server: &TestServer, want: u64, within: Duration) {
    let started = Instant::now();
    loop {
        let held = server.metric("usermgmt_qr_waits");
        if held == want {
            return;
        }
        assert!(started.elapsed() < within, "{held} waits held, not {want}, after {within:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn parked_waits_hold_no_worker_and_go_with_their_connection() {
    let server = TestServer::start_with(util::Options::default().arg("--workers", 1));
    let mut control = server.connect();
    let (key, binding) = new_code(&mut control);
    let mut waiting = server.connect();
    for _ in 0..200 {
        waiting.send(wait_message(&key, &binding, 25_000));
    }
    until_waits(&server, 200, Duration::from_secs(10));
    // With its only worker free, the server answers other work at once.
    let started = Instant::now();
    assert!(matches!(
        control.call(Message::QrCreate { user_agent: "x".into(), client: None }),
        Message::QrCreated { .. }
    ));
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    drop(waiting);
    until_waits(&server, 0, Duration::from_secs(3));
}

#[test]
fn a_cancelled_wait_is_let_go_at_once_and_the_others_on_its_connection_stay() {
    let server = TestServer::start();
    let mut desktop = server.connect();
    let (key, binding) = new_code(&mut desktop);
    let ids: Vec<u64> = (0..3).map(|_| desktop.send(wait_message(&key, &binding, 25_000))).collect();
    until_waits(&server, 3, Duration::from_secs(10));
    let started = Instant::now();
    let cancel = desktop.send(Message::QrCancel { wait: ids[1] });
    // The cancelled wait is answered (its last answer) and the cancel is
    // acknowledged, in either order, at once: not at the 25 s deadline.
    let mut answered = Vec::new();
    for _ in 0..2 {
        let frame = desktop.recv();
        answered.push((frame.request_id, frame.message));
    }
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    answered.sort_by_key(|(id, _)| *id);
    assert!(
        matches!(&answered[0], (id, Message::QrStatus { state: QrState::Pending, token: None, .. }) if *id == ids[1]),
        "{answered:?}"
    );
    assert_eq!(answered[1], (cancel, Message::QrCancelled));
    until_waits(&server, 2, Duration::from_secs(3));
    assert_eq!(server.metric("usermgmt_qr_waits_cancelled_total"), 1);
    // A wait no longer held, or never held here, is acknowledged the same.
    assert_eq!(desktop.call(Message::QrCancel { wait: ids[1] }), Message::QrCancelled);
    assert_eq!(desktop.call(Message::QrCancel { wait: 999_999 }), Message::QrCancelled);
    // Another connection cannot cancel this one's waits.
    let mut other = server.connect();
    assert_eq!(other.call(Message::QrCancel { wait: ids[0] }), Message::QrCancelled);
    until_waits(&server, 2, Duration::from_secs(3));
    assert_eq!(server.metric("usermgmt_qr_waits_cancelled_total"), 1);
}

on_single_and_cluster! {
fn one_approval_answers_every_wait_on_the_code_and_only_one_of_them_redeems_it(options) {
    let server = TestServer::start_with(options.clone());
    let mut phone = server.connect();
    let (_, token) = server.user_with_session(&mut phone, "qrwaits", PASSWORD);
    let mut desktop = server.connect();
    let (key, binding) = new_code(&mut desktop);
    let ids: Vec<u64> = (0..50).map(|_| desktop.send(wait_message(&key, &binding, 25_000))).collect();
    until_waits(&server, 50, Duration::from_secs(10));
    let decided =
        phone.call(Message::QrDecide { token: token.clone(), key: key.clone(), approve: true, client: None });
    assert_eq!(decided, Message::QrDecided { state: QrState::Confirmed });
    let mut sessions = Vec::new();
    for _ in &ids {
        let frame = desktop.recv();
        assert!(ids.contains(&frame.request_id));
        match frame.message {
            Message::QrStatus { state: QrState::Confirmed, token: Some(session), .. } => {
                sessions.push(session)
            }
            Message::QrStatus { state: QrState::Consumed, token: None, .. } => {}
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(sessions.len(), 1, "exactly one wait redeems the code");
    let profile = phone.call(Message::GetProfile { token: sessions[0].clone(), username: None });
    assert!(matches!(profile, Message::ProfileReply(_)), "the new session works: {profile:?}");
    let again = phone.call(Message::QrDecide { token, key, approve: true, client: None });
    assert!(matches!(&again, Message::Error(e) if e.code == ErrorCode::QrUsed), "{again:?}");
    until_waits(&server, 0, Duration::from_secs(3));
}
}

#[test]
fn a_wait_ends_at_its_deadline_with_the_state_it_had() {
    let server = TestServer::start();
    let mut desktop = server.connect();
    let (key, binding) = new_code(&mut desktop);
    let started = Instant::now();
    let reply = desktop.call(wait_message(&key, &binding, 500));
    let took = started.elapsed();
    assert!(matches!(reply, Message::QrStatus { state: QrState::Pending, token: None, .. }), "{reply:?}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_secs(5), "answered after {took:?}");
    // Another binding secret is refused at once.
    let wrong = desktop.call(wait_message(&key, &Secret::new("a".repeat(64)), 500));
    assert!(matches!(&wrong, Message::Error(e) if e.code == ErrorCode::QrNotYours), "{wrong:?}");
}

on_single_and_cluster! {
/// A wait parked on one tcpserver is answered by an approval made through
/// another (the same Redis, the same key prefix): the approving server's
/// script publishes the change, the waiting server's subscriber hears it.
fn an_approval_on_one_server_answers_a_wait_parked_on_another(options) {
    let waiting = TestServer::start_with(options.clone());
    let approving = TestServer::start_with(options.clone().arg("--redis-prefix", &waiting.redis_prefix));
    let mut phone = approving.connect();
    let (_, token) = approving.user_with_session(&mut phone, "qrcross", PASSWORD);
    let mut desktop = waiting.connect();
    let (key, binding) = new_code(&mut desktop);
    let id = desktop.send(wait_message(&key, &binding, 25_000));
    until_waits(&waiting, 1, Duration::from_secs(10));
    let started = Instant::now();
    let decided = phone.call(Message::QrDecide { token, key, approve: true, client: None });
    assert_eq!(decided, Message::QrDecided { state: QrState::Confirmed });
    let frame = desktop.recv();
    assert_eq!(frame.request_id, id);
    let Message::QrStatus { state: QrState::Confirmed, token: Some(session), .. } = frame.message else {
        panic!("unexpected answer {:?}", frame.message)
    };
    // Heard, not found at the deadline (25 s away).
    assert!(started.elapsed() < Duration::from_secs(10), "answered after {:?}", started.elapsed());
    let profile = phone.call(Message::GetProfile { token: session, username: None });
    assert!(matches!(profile, Message::ProfileReply(_)), "the session works on the other server: {profile:?}");
}
}

on_single_and_cluster! {
fn twenty_simultaneous_approvals_of_one_code_are_accepted_exactly_once(options) {
    let server = TestServer::start_with(options.clone());
    let mut setup = server.connect();
    let phones: Vec<Secret> =
        (0..20).map(|i| server.user_with_session(&mut setup, &format!("qrrace{i}"), PASSWORD).1).collect();
    let (key, _) = new_code(&mut setup);
    let approvals = phones
        .into_iter()
        .map(|token| Message::QrDecide { token, key: key.clone(), approve: true, client: None })
        .collect();
    let replies = all_at_once(&server, approvals);
    let accepted =
        replies.iter().filter(|r| matches!(r, Message::QrDecided { state: QrState::Confirmed })).count();
    let refused =
        replies.iter().filter(|r| matches!(r, Message::Error(e) if e.code == ErrorCode::QrUsed)).count();
    assert_eq!((accepted, refused), (1, 19), "{replies:?}");
}
}

on_single_and_cluster! {
fn simultaneous_decisions_and_codes_stop_exactly_at_their_limits(options) {
    let server = TestServer::start_with(
        options.clone().arg("--logins-per-user", "5/600").arg("--qr-codes-per-addr", "10/600"),
    );
    let mut setup = server.connect();
    let (_, token) = server.user_with_session(&mut setup, "qrlimit", PASSWORD);
    let keys: Vec<Secret> = (0..20).map(|_| new_code(&mut setup).0).collect();
    // One account deciding on 20 codes at once: five decisions, as five log-ins.
    let decisions = keys
        .into_iter()
        .map(|key| Message::QrDecide { token: token.clone(), key, approve: false, client: None })
        .collect();
    let replies = all_at_once(&server, decisions);
    let decided = replies.iter().filter(|r| matches!(r, Message::QrDecided { .. })).count();
    let throttled = replies
        .iter()
        .filter(|r| matches!(r, Message::Error(e) if e.code == ErrorCode::TooManyAttempts))
        .count();
    assert_eq!((decided, throttled), (5, 15), "{replies:?}");
    // One address making 40 codes at once: ten.
    let address: std::net::IpAddr = "192.0.2.44".parse().expect("address");
    let creations =
        (0..40).map(|_| Message::QrCreate { user_agent: "race".into(), client: Some(address) }).collect();
    let replies = all_at_once(&server, creations);
    let made = replies.iter().filter(|r| matches!(r, Message::QrCreated { .. })).count();
    let throttled = replies
        .iter()
        .filter(|r| matches!(r, Message::Error(e) if e.code == ErrorCode::TooManyAttempts))
        .count();
    assert_eq!((made, throttled), (10, 30), "{replies:?}");
}
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn four_thousand_parked_waits_take_under_two_kib_each() {
    const WAITS: usize = 4_096;
    let server = TestServer::start();
    let mut control = server.connect();
    // Warm up: the allocator's and Redis connections' first costs are not the waits'.
    let (key, binding) = new_code(&mut control);
    let mut warm = server.connect();
    for _ in 0..256 {
        warm.send(wait_message(&key, &binding, 25_000));
    }
    until_waits(&server, 256, Duration::from_secs(10));
    drop(warm);
    until_waits(&server, 0, Duration::from_secs(3));
    let before = rss_kib(server.pid());
    // 16 connections of 256 (tcpserver's in-flight cap per connection), each
    // desktop with a code of its own.
    let mut connections: Vec<Client> = (0..WAITS / 256).map(|_| server.connect()).collect();
    for connection in &mut connections {
        for _ in 0..256 {
            let (key, binding) = new_code(&mut control);
            connection.send(wait_message(&key, &binding, 25_000));
        }
    }
    until_waits(&server, WAITS as u64, Duration::from_secs(20));
    let held = rss_kib(server.pid());
    let per_wait = held.saturating_sub(before) * 1024 / WAITS as u64;
    println!("tcpserver: {before} KiB before, {held} KiB with {WAITS} waits parked: {per_wait} bytes a wait");
    assert!(per_wait < 2048, "{per_wait} bytes a wait");
    drop(connections);
    until_waits(&server, 0, Duration::from_secs(3));
}

#[test]
fn a_full_connection_of_parked_waits_is_freed_when_its_peer_closes() {
    // 256 waits is tcpserver's in-flight cap: the connection is no longer
    // read, so its EOF alone did not end them (they stayed to their deadline).
    let server = TestServer::start();
    let mut control = server.connect();
    let (key, binding) = new_code(&mut control);
    let mut full = server.connect();
    for _ in 0..256 {
        full.send(wait_message(&key, &binding, 25_000));
    }
    until_waits(&server, 256, Duration::from_secs(10));
    drop(full);
    until_waits(&server, 0, Duration::from_secs(3));
}

#[test]
fn a_thousand_waits_arriving_at_once_are_all_held_none_refused_as_overloaded() {
    // One worker and a queue of four: ten thousand desktops opening the page
    // together, in miniature. Their first checks go to the workers as room
    // allows, and the requests people are waiting on keep half the queue.
    let server = TestServer::start_with(util::Options::default().arg("--workers", 1).arg("--queue", 4));
    let mut control = server.connect();
    let (key, binding) = new_code(&mut control);
    let mut connections: Vec<Client> = (0..4).map(|_| server.connect()).collect();
    for connection in &mut connections {
        for _ in 0..250 {
            connection.send(wait_message(&key, &binding, 3_000));
        }
    }
    assert!(
        matches!(
            control.call(Message::QrCreate { user_agent: "x".into(), client: None }),
            Message::QrCreated { .. }
        ),
        "an ordinary request beside the flood of waits was not served"
    );
    for connection in &mut connections {
        for _ in 0..250 {
            let frame = connection.recv();
            assert!(
                matches!(frame.message, Message::QrStatus { state: QrState::Pending, .. }),
                "a wait was answered {:?}",
                frame.message
            );
        }
    }
    until_waits(&server, 0, Duration::from_secs(3));
}
