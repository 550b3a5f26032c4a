//! The server as a network service: framing, pipelining, many connections,
//! backpressure and overload, broken peers, lost dependencies, start-up errors
//! and shutdown.

mod util;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use proto::{ErrorCode, Frame, HEADER_LEN, MAGIC, MAX_BODY_LEN, Message, MessageType, VERSION};
use util::{Client, Options, Proxy, TestServer, error_code, new_key};

const PASSWORD: &str = "reactor-password";

fn header(version: u8, kind: u8, body_len: u32) -> Vec<u8> {
    let mut b = MAGIC.to_be_bytes().to_vec();
    b.push(version);
    b.push(kind);
    b.extend_from_slice(&7u64.to_be_bytes());
    b.extend_from_slice(&body_len.to_be_bytes());
    b
}

#[test]
fn ping_is_answered_and_replies_sent_as_requests_are_refused() {
    let server = TestServer::start();
    let mut c = server.connect();
    assert_eq!(c.call(Message::Ping), Message::Pong);
    let reply = c.call(Message::Pong);
    assert_eq!(error_code(&reply), ErrorCode::UnexpectedMessage);
    let reply = c.call(Message::LoggedOut);
    assert_eq!(error_code(&reply), ErrorCode::UnexpectedMessage);
    // The connection is still usable.
    assert_eq!(c.call(Message::Ping), Message::Pong);
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let server = TestServer::start();
    let mut steady = server.connect();
    assert_eq!(steady.call(Message::Ping), Message::Pong);

    // Bodies start with the frame's trace id (protocol 3): none here.
    let mut trailing = header(VERSION, MessageType::Ping as u8, 4);
    trailing.extend_from_slice(b"\0xyz");
    let mut bad_trace = header(VERSION, MessageType::Ping as u8, 2);
    bad_trace.extend_from_slice(b"\x01\n");
    let mut garbage: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect();
    garbage[0] = 0;
    let mut bad_utf8 = header(VERSION, MessageType::Logout as u8, 5);
    bad_utf8.extend_from_slice(&[0, 0, 2, 0xff, 0xfe]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("http request", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec()),
        ("bad version", header(VERSION + 1, MessageType::Ping as u8, 0)),
        ("unknown type", header(VERSION, 0x42, 0)),
        ("oversize length", header(VERSION, MessageType::SetAvatar as u8, MAX_BODY_LEN as u32 + 1)),
        ("trailing bytes", trailing),
        ("control character in the trace id", bad_trace),
        ("invalid utf-8", bad_utf8),
        ("garbage", garbage),
    ];
    let count = cases.len();
    for (what, bytes) in cases {
        let mut bad = server.connect();
        assert_eq!(bad.call(Message::Ping), Message::Pong, "{what}");
        bad.write_raw(&bytes);
        assert!(bad.is_closed_by_server(), "{what}: connection left open");
        assert_eq!(steady.call(Message::Ping), Message::Pong, "after {what}");
    }
    // A frame cut short by the peer closing is not an error worth a reply.
    let mut cut = server.connect();
    cut.write_raw(&header(VERSION, MessageType::Logout as u8, 100)[..HEADER_LEN - 3]);
    drop(cut);
    assert_eq!(steady.call(Message::Ping), Message::Pong);

    let log = server.stderr();
    assert_eq!(log.matches("protocol error").count(), count, "one log line per bad connection:\n{log}");
}

#[test]
fn pipelined_requests_on_500_connections_get_their_own_answers() {
    // 500 log-ins of one account: within its limits here, so that only the reactor is tested.
    let server = TestServer::start_with(
        Options::default()
            .arg("--workers", 8)
            .arg("--queue", 4096)
            .arg("--logins-per-user", "1000/600")
            .arg("--max-sessions-per-user", 1000),
    );
    let mut setup = server.connect();
    let (username, token) = server.user_with_session(&mut setup, "crowd", PASSWORD);
    const THREADS: usize = 50;
    const PER_THREAD: usize = 10;
    let (addr, secret) = (server.addr, &server.secret);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (username, token) = (&username, &token);
            s.spawn(move || {
                let mut clients: Vec<Client> =
                    (0..PER_THREAD).map(|_| Client::connect(addr, secret)).collect();
                let mut expected = Vec::new();
                for (i, c) in clients.iter_mut().enumerate() {
                    // Ids unique per connection, deliberately not in sending order.
                    let base = ((t * PER_THREAD + i) as u64) << 8;
                    c.send_with_id(base + 3, Message::Ping);
                    c.send_with_id(base + 1, Message::GetProfile { token: token.clone(), username: None });
                    c.send_with_id(
                        base + 2,
                        Message::Login { username: username.clone(), password: PASSWORD.into(), client: None, user_agent: None },
                    );
                    c.send_with_id(base + 4, Message::Logout { token: "0".repeat(64).into() });
                    expected.push(base);
                }
                for (c, base) in clients.iter_mut().zip(expected) {
                    let mut replies = HashMap::new();
                    for _ in 0..4 {
                        let Frame { request_id, message } = c.recv();
                        assert!(replies.insert(request_id, message).is_none(), "two replies to {request_id}");
                    }
                    assert_eq!(replies.remove(&(base + 3)), Some(Message::Pong));
                    assert!(matches!(replies.remove(&(base + 1)), Some(Message::ProfileReply(p)) if &p.username == username));
                    assert!(matches!(replies.remove(&(base + 2)), Some(Message::LoggedIn { .. })));
                    assert_eq!(replies.remove(&(base + 4)), Some(Message::LoggedOut));
                }
            });
        }
    });
    assert_eq!(setup.call(Message::Ping), Message::Pong);
}

#[test]
fn a_full_queue_is_answered_with_overloaded_at_once() {
    // One slow worker and room for one waiting job.
    let server = TestServer::start_with(
        Options::default().arg("--workers", 1).arg("--queue", 1).arg("--hash-cost", 200_000),
    );
    let mut c = server.connect();
    let ids: Vec<u64> = (0..20)
        .map(|i| {
            c.send(Message::Login {
                username: server.username(&format!("u{i}")),
                password: PASSWORD.into(),
                client: None,
                user_agent: None,
            })
        })
        .collect();
    let mut overloaded = 0;
    let mut answered = Vec::new();
    for _ in &ids {
        let frame = c.recv();
        answered.push(frame.request_id);
        match frame.message {
            Message::Error(e) if e.code == ErrorCode::Overloaded => {
                assert_eq!(e.retry_after_secs, 1);
                overloaded += 1;
            }
            Message::Error(e) => assert_eq!(e.code, ErrorCode::BadCredentials),
            other => panic!("unexpected reply {other:?}"),
        }
    }
    answered.sort_unstable();
    assert_eq!(answered, ids, "every request answered exactly once");
    assert!(overloaded >= 1, "twenty slow jobs fit a queue of one?");
    // Once the burst is over the server works normally.
    let username = server.sign_up(&mut c, "after", PASSWORD);
    c.log_in(&username, PASSWORD);
}

#[test]
fn connections_beyond_the_limit_are_closed_at_once() {
    let server = TestServer::start_with(Options::default().arg("--max-connections", 2));
    let mut first = server.connect();
    let mut second = server.connect();
    assert_eq!(first.call(Message::Ping), Message::Pong);
    assert_eq!(second.call(Message::Ping), Message::Pong);
    let mut third = server.connect_unproven();
    assert!(third.is_closed_by_server());
    drop(second);
    // The freed slot is taken again once the server has seen the close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if server.try_connect().and_then(|mut c| c.try_call(Message::Ping)) == Some(Message::Pong) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot never came back");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(first.call(Message::Ping), Message::Pong);
}

/// A server whose Redis or MySQL does not answer says `Unavailable`, quickly.
#[test]
fn unreachable_dependencies_give_unavailable() {
    let no_redis = TestServer::start_with(Options::default().arg("--redis-url", "redis://127.0.0.1:1/"));
    let mut c = no_redis.connect();
    let reply = c.call(Message::Login {
        username: no_redis.username("x"),
        password: PASSWORD.into(),
        client: None,
        user_agent: None,
    });
    let Message::Error(e) = reply else { panic!("{reply:?}") };
    assert_eq!((e.code, e.retry_after_secs), (ErrorCode::Unavailable, 1));
    let reply = c.call(Message::GetProfile { token: "a".repeat(64).into(), username: None });
    assert_eq!(error_code(&reply), ErrorCode::Unavailable);
    assert_eq!(c.call(Message::Ping), Message::Pong, "the reactor does not need Redis");

    let no_mysql = TestServer::start_with(
        Options::default().arg("--mysql-url", "mysql://usermgmt_test@127.0.0.1:1/usermgmt_test"),
    );
    let mut c = no_mysql.connect();
    let reply = c.call(Message::SignUp {
        username: no_mysql.username("x"),
        password: PASSWORD.into(),
        nickname: None,
        client: None,
        key: new_key(),
    });
    assert_eq!(error_code(&reply), ErrorCode::Unavailable);
    let reply = c.call(Message::Login {
        username: no_mysql.username("x"),
        password: PASSWORD.into(),
        client: None,
        user_agent: None,
    });
    assert_eq!(error_code(&reply), ErrorCode::Unavailable);
}

fn upstream(url: &str, default_port: u16) -> SocketAddr {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host_port = rest.rsplit('@').next().unwrap_or(rest).split('/').next().unwrap_or("127.0.0.1");
    let with_port =
        if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:{default_port}") };
    with_port.parse().expect("database address")
}

/// The test Redis URL, through `proxy`: same database number, so the keys
/// land where the test's cleanup looks for them.
fn redis_url_through(env: &util::TestEnv, proxy: &Proxy) -> String {
    let rest = env.redis_url.split("://").nth(1).unwrap_or(&env.redis_url);
    let db = rest.split_once('/').map_or("", |(_, db)| db);
    format!("redis://{}/{db}", proxy.addr)
}

/// The test database's URL, through `proxy`; `prefer_socket=false` keeps the
/// connection on TCP (the crate would otherwise switch to MariaDB's socket).
fn mysql_url_through(env: &util::TestEnv, proxy: &Proxy) -> String {
    let (mysql_url, _) = env.split_mysql_url();
    let db = mysql_url.rsplit('/').next().unwrap_or("usermgmt_test");
    let user = mysql::Opts::from_url(&mysql_url).ok().and_then(|o| o.get_user().map(str::to_owned));
    let user = user.unwrap_or_else(|| util::TEST_MYSQL_USER.to_owned());
    format!("mysql://{user}@{}/{db}?prefer_socket=false", proxy.addr)
}

/// Connections that die while idle (a restart, an idle timeout) are replaced
/// without failing the request that finds them dead, and a write that meets a
/// dead connection is applied exactly once. While a database refuses
/// connections requests fail fast, and service resumes when it is back.
#[test]
fn lost_database_connections_are_replaced_and_service_resumes() {
    let env = util::TestEnv::load();
    let redis_proxy = Proxy::start(upstream(&env.redis_url, 6379));
    let mysql_proxy = Proxy::start(upstream(&env.mysql_url, 3306));
    let server = TestServer::start_with(
        Options::default()
            .arg("--workers", 1)
            .arg("--redis-url", redis_url_through(&env, &redis_proxy))
            .arg("--mysql-url", mysql_url_through(&env, &mysql_proxy)),
    );
    let mut c = server.connect();
    let (username, token) = server.user_with_session(&mut c, "survivor", PASSWORD);

    redis_proxy.cut();
    mysql_proxy.cut();
    let reply = c.call(Message::UpdateNickname {
        token: token.clone(),
        username: None,
        nickname: "still here".into(),
    });
    assert!(matches!(reply, Message::NicknameUpdated(_)), "{reply:?}");
    let version: Option<u64> =
        env.mysql().exec_first("SELECT version FROM users WHERE username = ?", (&username,)).unwrap();
    assert_eq!(version, Some(1), "the update was applied exactly once");

    mysql_proxy.cut();
    c.log_in(&username, PASSWORD);
    redis_proxy.cut();
    assert!(matches!(
        c.call(Message::GetProfile { token: token.clone(), username: None }),
        Message::ProfileReply(_)
    ));

    redis_proxy.set_refusing(true);
    redis_proxy.cut();
    let reply = c.call(Message::GetProfile { token: token.clone(), username: None });
    assert_eq!(error_code(&reply), ErrorCode::Unavailable);
    redis_proxy.set_refusing(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.call(Message::GetProfile { token: token.clone(), username: None }) {
            Message::ProfileReply(p) => {
                assert_eq!(p.nickname, "still here");
                break;
            }
            other => assert_eq!(error_code(&other), ErrorCode::Unavailable),
        }
        assert!(Instant::now() < deadline, "service did not resume after Redis came back");
        thread::sleep(Duration::from_millis(100));
    }
    let log = server.stderr();
    assert!(log.contains("Redis connection restored"), "{log}");
}

/// A user who logs in again with the password this server verified recently
/// is answered from Redis (the log-in record and the profile cache), so such
/// log-ins go on while MySQL is unreachable; anything that needs the stored
/// hash (a wrong password, a user not seen before) says the service is
/// unavailable instead of guessing.
#[test]
fn repeated_logins_need_no_mysql() {
    let env = util::TestEnv::load();
    let mysql_proxy = Proxy::start(upstream(&env.mysql_url, 3306));
    let server = TestServer::start_with(
        Options::default().arg("--workers", 1).arg("--mysql-url", mysql_url_through(&env, &mysql_proxy)),
    );
    let mut c = server.connect();
    let username = server.sign_up(&mut c, "regular", PASSWORD);
    let (_, first) = c.log_in(&username, PASSWORD);

    mysql_proxy.set_refusing(true);
    mysql_proxy.cut();
    let (token, again) = c.log_in(&username, PASSWORD);
    assert_eq!(again, first, "the same profile, from the cache");
    let profile = c.call(Message::GetProfile { token, username: None });
    assert!(matches!(profile, Message::ProfileReply(p) if p.username == username));

    let wrong = c.call(Message::Login {
        username: username.clone(),
        password: "not the password".into(),
        client: None,
        user_agent: None,
    });
    assert_eq!(error_code(&wrong), ErrorCode::Unavailable);
    let stranger = c.call(Message::Login {
        username: server.username("stranger"),
        password: PASSWORD.into(),
        client: None,
        user_agent: None,
    });
    assert_eq!(error_code(&stranger), ErrorCode::Unavailable);
}

/// tcpserver reaches MySQL at the address it is given and nowhere else: given
/// a loopback TCP address (a proxy here, HAProxy in the fleet) and no
/// `prefer_socket` in the URL, it must not switch to the server's unix socket
/// after connecting (the `mysql` crate's default), which would bypass the
/// proxy. So when the proxy stops forwarding, MySQL is unreachable to it.
#[test]
fn mysql_is_reached_only_through_the_address_given() {
    let env = util::TestEnv::load();
    let mysql_proxy = Proxy::start(upstream(&env.mysql_url, 3306));
    let url = mysql_url_through(&env, &mysql_proxy).replace("?prefer_socket=false", "");
    assert!(!url.contains("prefer_socket"), "{url}");
    let server = TestServer::start_with(Options::default().arg("--workers", 1).arg("--mysql-url", url));
    let mut c = server.connect();
    server.sign_up(&mut c, "proxied", PASSWORD);

    mysql_proxy.set_refusing(true);
    mysql_proxy.cut();
    let reply = c.call(Message::SignUp {
        username: server.username("bypass"),
        password: PASSWORD.into(),
        nickname: None,
        client: None,
        key: new_key(),
    });
    assert_eq!(error_code(&reply), ErrorCode::Unavailable, "MySQL was reached around the proxy: {reply:?}");
    let stored: Option<u64> = env
        .mysql()
        .exec_first("SELECT id FROM users WHERE username = ?", (server.username("bypass"),))
        .unwrap();
    assert_eq!(stored, None);
}

#[test]
fn sigterm_answers_requests_in_flight_then_exits_zero() {
    let mut server =
        TestServer::start_with(Options::default().arg("--workers", 1).arg("--hash-cost", 100_000));
    let mut c = server.connect();
    let login = c.send(Message::Login {
        username: server.username("late"),
        password: PASSWORD.into(),
        client: None,
        user_agent: None,
    });
    let ping = c.send(Message::Ping);
    // The Pong proves the reactor has taken the log-in (frames are read in order).
    let pong = c.recv();
    assert_eq!((pong.request_id, pong.message), (ping, Message::Pong));
    let pid = server.pid();
    let status = thread::scope(|s| {
        let waiter = s.spawn(|| server.terminate());
        let reply = c.recv();
        assert_eq!(reply.request_id, login);
        assert_eq!(error_code(&reply.message), ErrorCode::BadCredentials);
        assert!(c.is_closed_by_server(), "the connection is closed after its last reply");
        waiter.join().unwrap()
    });
    assert!(status.success(), "tcpserver {pid} exited with {status}");
    assert!(server.stderr().contains("shutting down"));
}

fn start_failure(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_tcpserver"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run tcpserver");
    assert!(!output.status.success(), "tcpserver started with {args:?}");
    assert!(output.stdout.is_empty(), "no listening line on failure");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_settings_stop_the_server_with_a_clear_message() {
    let dir = std::env::temp_dir().join(format!("tcpserver-start-{}", util::random_hex(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let short = dir.join("short-pepper");
    std::fs::write(&short, b"too short").unwrap();
    let missing = dir.join("missing");
    let listen = ["--listen", "127.0.0.1:0"];

    let err = start_failure(&[&listen[..], &["--pepper-file", short.to_str().unwrap()]].concat());
    assert!(err.contains("pepper") && err.contains("16"), "{err}");
    let err = start_failure(&[&listen[..], &["--pepper-file", missing.to_str().unwrap()]].concat());
    assert!(err.contains("pepper") && err.contains("missing"), "{err}");
    let pepper = util::TestEnv::load().pepper_file.display().to_string();
    let with_pepper = [&listen[..], &["--pepper-file", &pepper]].concat();
    let short_secret = dir.join("short-secret");
    std::fs::write(&short_secret, b"fifteen bytes!!").unwrap();
    let err =
        start_failure(&[&with_pepper[..], &["--rpc-secret-file", short_secret.to_str().unwrap()]].concat());
    assert!(err.contains("RPC secret") && err.contains("16"), "{err}");
    let err = start_failure(&[&with_pepper[..], &["--rpc-secret-file", missing.to_str().unwrap()]].concat());
    assert!(err.contains("RPC secret") && err.contains("missing"), "{err}");
    let err = start_failure(&["--workers", "zero"]);
    assert!(err.contains("--workers"), "{err}");
    let err = start_failure(&["--no-such-flag"]);
    assert!(err.contains("--no-such-flag"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A request that is not batchable (a log-out here; scan-to-log-in
/// decisions and checks alike) is not kept waiting behind log-ins queued
/// before it: the worker runs it before its next batch. Before, it ran
/// after a batch of 16 log-ins, and beside a flood of them such requests
/// were served at one per batch.
#[test]
fn a_log_out_queued_behind_a_flood_of_log_ins_is_answered_before_them() {
    const LOGINS: u64 = 3 * tcpserver::queue::MAX_BATCH as u64;
    let server = TestServer::start_with(Options::default().arg("--workers", 1));
    let mut c = server.connect();
    let (flooded, _) = server.user_with_session(&mut c, "flooded", PASSWORD);
    let (_, leaving) = server.user_with_session(&mut c, "leaving", PASSWORD);
    let mut bytes = Vec::new();
    for request_id in 1..=LOGINS {
        // Wrong passwords: full hashes, then throttled; all batchable.
        let message = Message::Login {
            username: flooded.clone(),
            password: "wrong".into(),
            client: None,
            user_agent: None,
        };
        Frame { request_id, message }.encode(&mut bytes).expect("encodable");
    }
    let log_out = LOGINS + 1;
    Frame { request_id: log_out, message: Message::Logout { token: leaving.clone() } }
        .encode(&mut bytes)
        .expect("encodable");
    // One write: the reactor queues all of it in one turn, then wakes the worker.
    c.write_raw(&bytes);
    let mut order = Vec::new();
    for _ in 0..=LOGINS {
        let frame = c.recv();
        if frame.request_id == log_out {
            assert!(matches!(frame.message, Message::LoggedOut), "{:?}", frame.message);
        } else {
            let code = error_code(&frame.message);
            assert!(matches!(code, ErrorCode::BadCredentials | ErrorCode::TooManyAttempts), "{code:?}");
        }
        order.push(frame.request_id);
    }
    let place = order.iter().position(|id| *id == log_out).expect("the log-out was answered");
    assert!(place < tcpserver::queue::MAX_BATCH, "answered after {place} log-ins queued before it");
    let reply = c.call(Message::GetProfile { token: leaving, username: None });
    assert_eq!(error_code(&reply), ErrorCode::Unauthenticated, "the session ended");
}
