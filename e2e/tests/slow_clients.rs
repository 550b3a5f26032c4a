//! Slow and idle clients: thousands of connections that send half a request
//! head and stop. They must not keep other people from logging in, the server
//! must close them once the head timeout has passed, and connections over the
//! connection cap must get a quick 503 rather than a wait. One client address
//! gets only its share: past its connection share it gets the same quick 503,
//! and stalled uploads from it spend only its share of the upload budget,
//! while another address (127.0.0.3 beside 127.0.0.2) is served.
//!
//! The tests of the global cap and of thousands of slow clients from one
//! address (127.0.0.1) raise the per-address connection share to the whole cap,
//! so that what they measure is the server's, not one address's, limit.
//!
//! Each connection costs a descriptor here and one in httpserver, so the test
//! raises its own soft open-file limit to the hard limit first (httpserver does
//! the same at start-up, which the last test checks). The tests that open
//! thousands of connections take turns, so that on a loaded two-core machine
//! they do not also compete with each other.

mod util;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use util::services::rss_kib;
use util::{Options, Stack, workspace_root};

/// Slow clients in the tests without a cap: the number the hardening issue names.
const SLOW_CLIENTS: usize = 3_000;

/// The first half of a log-in's head; the rest never comes (unless a test sends it).
const HALF_HEAD: &[u8] = b"POST /login HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nContent-Typ";

const PASSWORD: &str = "correct horse battery";

/// Generous bound for anything the server should do "at once", on a loaded machine.
const QUICK: Duration = Duration::from_secs(5);

/// Generous bound for the server to get through thousands of connections.
const SETTLE: Duration = Duration::from_secs(30);

/// The client address that takes more than its share in the per-address tests.
const HOG: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Another client address, which must be served meanwhile.
const NEIGHBOUR: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// `--max-connections-per-addr` for tests whose slow clients all come from
/// 127.0.0.1: the largest the server takes, so that only the global cap counts.
const WHOLE_CAP_PER_ADDR: usize = 100_000;

/// Lets one test at a time hold thousands of connections.
fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Raises this process's soft open-file limit to the hard limit (the soft one
/// may be 1024, well under the connections these tests hold).
fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0, "getrlimit");
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "setrlimit");
    }
    let needed = (2 * SLOW_CLIENTS + 1_000) as libc::rlim_t;
    assert!(limit.rlim_cur >= needed, "the hard open-file limit {} is below {needed}", limit.rlim_cur);
}

/// Threads of process `pid` (`Threads` of `/proc/<pid>/status`).
fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("Threads in /proc/<pid>/status")
}

/// Waits up to `limit` for `done`, polling every 50 ms; whether it came true.
fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Opens `n` connections, each of which sends [`HALF_HEAD`] and stops; each
/// comes with the moment its bytes were sent.
fn open_slow(addr: SocketAddr, n: usize) -> Vec<(TcpStream, Instant)> {
    (0..n)
        .map(|i| {
            let mut stream = TcpStream::connect_timeout(&addr, QUICK)
                .unwrap_or_else(|e| panic!("connect slow client {i}: {e}"));
            stream.write_all(HALF_HEAD).unwrap_or_else(|e| panic!("send half a head on {i}: {e}"));
            (stream, Instant::now())
        })
        .collect()
}

/// Like [`open_slow`], from the loopback address `source`.
fn open_slow_from(addr: SocketAddr, source: IpAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut stream = util::connect_from(addr, source);
            stream
                .write_all(HALF_HEAD)
                .unwrap_or_else(|e| panic!("send half a head on {i} from {source}: {e}"));
            stream
        })
        .collect()
}

/// Whether the server has closed `stream` (EOF or reset) or sent anything, without waiting.
fn answered_or_closed(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    stream.set_nonblocking(true).expect("nonblocking");
    let result = stream.peek(&mut probe);
    stream.set_nonblocking(false).expect("blocking");
    !matches!(result, Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// How a connection ended, read until the server closed it.
#[derive(Debug)]
struct Ending {
    /// What the server sent before closing.
    bytes: Vec<u8>,
    /// Whether it closed with a reset rather than an orderly EOF.
    reset: bool,
}

impl Ending {
    /// The status of the response the server sent, if any.
    fn status(&self) -> Option<u16> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        response.parse(&self.bytes).ok()?;
        response.code
    }

    /// A header of the response the server sent.
    fn header(&self, name: &str) -> Option<String> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        response.parse(&self.bytes).ok()?;
        let value = response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name))?.value;
        Some(String::from_utf8_lossy(value).into_owned())
    }

    /// The JSON `code` of the response's body.
    fn code(&self) -> Option<i64> {
        let at = self.bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        serde_json::from_slice::<serde_json::Value>(&self.bytes[at..]).ok()?["code"].as_i64()
    }
}

/// Reads `stream` until the server closes it; panics if that takes past `limit`.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Ending {
    let deadline = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
        let left = left.unwrap_or_else(|| panic!("not closed within {limit:?}; got {bytes:?}"));
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut chunk) {
            Ok(0) => return Ending { bytes, reset: false },
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return Ending { bytes, reset: true };
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("not closed within {limit:?} ({e}); got {:?}", String::from_utf8_lossy(&bytes)),
        }
    }
}

/// Logs `username` in on a new connection.
fn log_in(stack: &Stack, username: &str) -> util::Reply {
    stack.client().api_post("/login", &[("username", username), ("password", PASSWORD)])
}

#[test]
fn three_thousand_half_heads_do_not_stop_other_users_logging_in() {
    let _turn = heavy();
    raise_open_file_limit();
    // Long enough that none of them times out during the test.
    let stack = Stack::start_with(
        Options::default()
            .front("--head-timeout-ms", 50_000)
            .front("--max-connections-per-addr", WHOLE_CAP_PER_ADDR),
    );
    let (_, front) = stack.pids();
    // Counted before the sign-ups: the threads of their connections end a
    // moment after the connections do, and would blur the count afterwards.
    let idle_threads = threads(front);
    let users: Vec<String> = (0..4).map(|i| stack.sign_up(&format!("patient{i}"), PASSWORD)).collect();
    let idle_rss = rss_kib(front);

    let started = Instant::now();
    let mut slow = open_slow(stack.addr, SLOW_CLIENTS);
    let opened = started.elapsed();
    assert!(
        wait_for(SETTLE, || threads(front) >= idle_threads + SLOW_CLIENTS),
        "httpserver holds {} threads, not one per slow client",
        threads(front)
    );
    let (busy_threads, busy_rss) = (threads(front), rss_kib(front));

    for round in 0..5 {
        for username in &users {
            let reply = log_in(&stack, username);
            assert_eq!(
                reply.status,
                200,
                "log-in {round} of {username} while the slow clients hang: {}",
                reply.text()
            );
            assert!(reply.json()["data"]["token"].is_string());
        }
    }
    let hanging = slow.iter().filter(|(stream, _)| !answered_or_closed(stream)).count();
    assert_eq!(hanging, SLOW_CLIENTS, "every slow client was still waiting while the others logged in");

    // They were held, not forgotten: finishing a head gets its answer.
    let body = util::urlencode(&[("username", &users[0]), ("password", PASSWORD)]);
    for (stream, _) in slow.iter_mut().step_by(SLOW_CLIENTS / 10) {
        let rest =
            format!("e: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        stream.write_all(rest.as_bytes()).expect("send the rest of the head");
        stream.set_read_timeout(Some(util::RESPONSE_TIMEOUT)).expect("read timeout");
        assert_eq!(util::read_reply(stream, false).status, 200);
    }
    eprintln!(
        "{SLOW_CLIENTS} slow clients opened in {opened:?}; httpserver: {idle_threads} -> {busy_threads} \
         threads, {idle_rss} -> {busy_rss} KiB resident ({} KiB per connection)",
        busy_rss.saturating_sub(idle_rss) / SLOW_CLIENTS as u64
    );
}

#[test]
fn half_heads_are_closed_after_the_head_timeout() {
    let _turn = heavy();
    raise_open_file_limit();
    let timeout = Duration::from_millis(2_000);
    let stack = Stack::start_with(
        Options::default()
            .front("--head-timeout-ms", timeout.as_millis())
            .front("--max-connections-per-addr", WHOLE_CAP_PER_ADDR),
    );
    let (_, front) = stack.pids();
    let idle_threads = threads(front);

    let mut slow = open_slow(stack.addr, SLOW_CLIENTS);
    // The last one opened first: had the server closed early, this one would show it.
    slow.reverse();
    let (mut timed_out, mut closed_silently) = (0, 0);
    for (i, (stream, sent)) in slow.iter_mut().enumerate() {
        let ending = read_until_closed(stream, timeout + SETTLE);
        if i == 0 {
            let waited = sent.elapsed();
            assert!(waited >= timeout, "closed after {waited:?}, before the {timeout:?} head timeout");
        }
        match ending.status() {
            Some(408) => {
                assert_eq!(ending.code(), Some(105), "{}", String::from_utf8_lossy(&ending.bytes));
                assert!(!ending.reset, "a 408 is followed by an orderly close");
                timed_out += 1;
            }
            None if ending.bytes.is_empty() => closed_silently += 1,
            _ => panic!("slow client {i} got {:?}", String::from_utf8_lossy(&ending.bytes)),
        }
    }
    eprintln!(
        "{timed_out} slow clients got 408 and were closed, {closed_silently} were closed without a word"
    );
    assert!(
        wait_for(SETTLE, || threads(front) <= idle_threads + 16),
        "httpserver still holds {} threads after closing them (idle: {idle_threads})",
        threads(front)
    );
    assert_eq!(stack.client().get("/healthz").status, 200);
}

#[test]
fn connections_over_the_cap_get_a_quick_503() {
    let _turn = heavy();
    raise_open_file_limit();
    const CAP: usize = 1_000;
    let stack = Stack::start_with(
        Options::default()
            .front("--max-connections", CAP)
            .front("--head-timeout-ms", 50_000)
            .front("--max-connections-per-addr", WHOLE_CAP_PER_ADDR),
    );
    let (_, front) = stack.pids();
    let idle_threads = threads(front);

    // Slow clients take every slot...
    let holders = open_slow(stack.addr, CAP);
    assert!(
        wait_for(SETTLE, || threads(front) >= idle_threads + CAP),
        "httpserver admitted {} of {CAP} connections",
        threads(front).saturating_sub(idle_threads)
    );

    // ...and the slow clients after them are turned away at once, with 503 and Retry-After.
    let mut slowest = Duration::ZERO;
    for batch in 0..50 {
        let mut excess = Vec::new();
        for _ in 0..10 {
            excess.push((open_slow(stack.addr, 1).remove(0).0, Instant::now()));
        }
        for (mut stream, opened) in excess {
            let ending = read_until_closed(&mut stream, QUICK);
            let text = String::from_utf8_lossy(&ending.bytes).into_owned();
            assert_eq!(ending.status(), Some(503), "over the cap, batch {batch}: {text}");
            assert_eq!(ending.code(), Some(112), "{text}");
            assert!(ending.header("retry-after").is_some(), "no Retry-After: {text}");
            slowest = slowest.max(opened.elapsed());
        }
    }

    // A burst all at once: none is left hanging; each gets the 503 or, when
    // even the answering threads are busy, is closed at once.
    let burst = open_slow(stack.addr, 200);
    let mut answered = 0;
    for (mut stream, _) in burst {
        let ending = read_until_closed(&mut stream, QUICK);
        match ending.status() {
            Some(503) => answered += 1,
            None if ending.bytes.is_empty() => {}
            _ => panic!("burst over the cap got {:?}", String::from_utf8_lossy(&ending.bytes)),
        }
    }

    // A real user is told the same, quickly...
    let username = stack.username("late");
    let mut late = TcpStream::connect(stack.addr).expect("connect");
    let form = util::urlencode(&[("username", &username), ("password", PASSWORD)]);
    let request = format!(
        "POST /signUp HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    late.write_all(request.as_bytes()).expect("send a sign-up");
    let refused = read_until_closed(&mut late, QUICK);
    assert_eq!(refused.status(), Some(503), "{:?}", String::from_utf8_lossy(&refused.bytes));

    // ...and gets in once the slow clients are gone.
    drop(holders);
    let mut signed_up = None;
    assert!(
        wait_for(SETTLE, || {
            let reply =
                stack.client().api_post("/signUp", &[("username", &username), ("password", PASSWORD)]);
            let done = reply.status != 503;
            signed_up = Some(reply);
            done
        }),
        "still refused after the slow clients left"
    );
    let reply = signed_up.expect("a reply");
    assert_eq!(reply.status, 201, "{}", reply.text());
    eprintln!(
        "cap {CAP}: 500 slow clients over it each answered 503 within {slowest:?}; a burst of 200: \
         {answered} answered 503, the rest closed at once"
    );
}

/// Sends `GET /healthz` on a new connection from `source` and reads the
/// answer: the connection stays open (kept alive) when it was admitted.
fn health_from(addr: SocketAddr, source: IpAddr) -> (TcpStream, util::Reply) {
    let mut stream = util::connect_from(addr, source);
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n").expect("send");
    let reply = util::read_reply(&mut stream, false);
    (stream, reply)
}

#[test]
fn one_address_past_its_connection_share_gets_a_quick_503_while_another_logs_in() {
    let _turn = heavy();
    raise_open_file_limit();
    const SHARE: usize = 100;
    let stack = Stack::start_with(
        Options::default()
            .front("--max-connections-per-addr", SHARE)
            .front("--head-timeout-ms", 50_000)
            .front("--idle-timeout-ms", 60_000),
    );
    let (_, front) = stack.pids();
    let idle_threads = threads(front);
    let neighbour = stack.sign_up("neighbour", PASSWORD);

    // One address takes its whole share with slow clients...
    let mut holders = open_slow_from(stack.addr, HOG, SHARE);
    assert!(
        wait_for(SETTLE, || threads(front) >= idle_threads + SHARE),
        "httpserver admitted {} of the {SHARE} connections of one address",
        threads(front).saturating_sub(idle_threads)
    );

    // ...and every connection it opens past that is turned away at once, as at the global cap.
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let mut stream = open_slow_from(stack.addr, HOG, 1).remove(0);
        let opened = Instant::now();
        let ending = read_until_closed(&mut stream, QUICK);
        let text = String::from_utf8_lossy(&ending.bytes).into_owned();
        assert_eq!(ending.status(), Some(503), "connection {i} past the share: {text}");
        assert_eq!(ending.code(), Some(112), "{text}");
        assert_eq!(ending.header("retry-after").as_deref(), Some("1"), "{text}");
        assert!(text.contains("from your address"), "the message names the cause: {text}");
        slowest = slowest.max(opened.elapsed());
    }

    // Another address is served meanwhile: it logs in, over keep-alive, several times.
    let mut next_door = util::Http::from_source(stack.addr, NEIGHBOUR);
    for round in 0..3 {
        let reply = next_door.api_post("/login", &[("username", &neighbour), ("password", PASSWORD)]);
        assert_eq!(reply.status, 200, "log-in {round} from {NEIGHBOUR}: {}", reply.text());
        assert!(reply.json()["data"]["token"].is_string());
    }
    let hanging = holders.iter().filter(|stream| !answered_or_closed(stream)).count();
    assert_eq!(hanging, SHARE, "the share's own connections were kept waiting, not dropped");

    // The count is exact: one connection closed frees one slot, and only one.
    drop(holders.pop());
    let mut admitted = None;
    assert!(
        wait_for(SETTLE, || {
            let (stream, reply) = health_from(stack.addr, HOG);
            let done = reply.status == 200;
            if done {
                admitted = Some(stream);
            }
            done
        }),
        "the freed slot was not given back"
    );
    let (_, refused) = health_from(stack.addr, HOG);
    assert_eq!((refused.status, refused.code()), (503, 112), "one slot freed, one taken: {}", refused.text());
    drop(admitted);
    drop(holders);
    eprintln!("share {SHARE}: 30 connections past it each answered 503 within {slowest:?}");
}

#[test]
fn two_hundred_stalled_uploads_from_one_address_leave_another_addresses_upload_served() {
    let _turn = heavy();
    raise_open_file_limit();
    const STALLED: usize = 200;
    // 2 MiB each: the default 16 MiB share holds exactly eight of them. Without
    // the share, 128 would spend the whole 256 MiB budget.
    const ANNOUNCED: usize = 2 * 1024 * 1024;
    const HELD: usize = 8;
    // Longer than the test, so that the held uploads hold their share throughout.
    let stack = Stack::start_with(Options::default().front("--body-timeout-ms", 120_000));
    let (_, token) = stack.user_with_token("uploader", PASSWORD);

    let head = format!(
        "POST /uploadProfilePic HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\
         Content-Type: multipart/form-data; boundary=stalled\r\nContent-Length: {ANNOUNCED}\r\n\r\n"
    );
    let stalled: Vec<TcpStream> = (0..STALLED)
        .map(|i| {
            let mut stream = util::connect_from(stack.addr, HOG);
            stream.write_all(head.as_bytes()).unwrap_or_else(|e| panic!("send stalled upload {i}: {e}"));
            stream
        })
        .collect();
    assert!(
        wait_for(SETTLE, || stalled.iter().filter(|s| answered_or_closed(s)).count() >= STALLED - HELD),
        "only {} of the uploads past the address's share were answered",
        stalled.iter().filter(|s| answered_or_closed(s)).count()
    );
    let (mut refused, mut held) = (0, Vec::new());
    for (i, mut stream) in stalled.into_iter().enumerate() {
        if !answered_or_closed(&stream) {
            held.push(stream);
            continue;
        }
        let ending = read_until_closed(&mut stream, QUICK);
        let text = String::from_utf8_lossy(&ending.bytes).into_owned();
        assert_eq!((ending.status(), ending.code()), (Some(503), Some(116)), "stalled upload {i}: {text}");
        assert_eq!(ending.header("retry-after").as_deref(), Some("1"), "{text}");
        assert!(text.contains("from your address"), "the message names the cause: {text}");
        refused += 1;
    }
    assert_eq!((refused, held.len()), (STALLED - HELD, HELD), "the share holds exactly {HELD} uploads");

    // Another address uploads a picture big enough to need the budget (over 16 KiB).
    let picture = util::png(128);
    let (content_type, body) = util::multipart(&[], Some(("image", "me.png", &picture)));
    assert!(body.len() > 16 * 1024, "{} bytes would not touch the budget", body.len());
    let auth = format!("Bearer {token}");
    let mut next_door = util::Http::from_source(stack.addr, NEIGHBOUR);
    let uploaded = next_door.request(
        "POST",
        "/uploadProfilePic",
        &[("Content-Type", &content_type), ("Authorization", &auth)],
        &body,
    );
    assert_eq!(uploaded.status, 200, "upload from {NEIGHBOUR}: {}", uploaded.text());
    assert!(uploaded.json()["data"]["avatar_url"].is_string());
    let still = held.iter().filter(|s| !answered_or_closed(s)).count();
    assert_eq!(still, HELD, "the uploads within the share are still waiting for their bodies");
    eprintln!("{STALLED} stalled uploads from {HOG}: {refused} refused at once, {HELD} held its 16 MiB");
}

#[test]
fn httpserver_raises_its_open_file_limit_to_the_hard_limit() {
    let secret =
        util::write_rpc_secret(std::env::temp_dir().join(format!("rpc-secret-{}", util::random_hex(8))));
    let mut command = Command::new(util::httpserver_binary());
    command
        .args(["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:9"])
        .arg("--rpc-secret-file")
        .arg(&secret)
        .arg("--html-dir")
        .arg(workspace_root().join("html"))
        .arg("--static-dir")
        .arg(workspace_root().join("static"))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec the child only calls getrlimit and
    // setrlimit, which are async-signal-safe, on a struct of its own.
    unsafe {
        command.pre_exec(|| {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = 256;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn httpserver");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("listening line");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).expect("read limits");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&secret);
    assert!(line.starts_with("listening on"), "{line:?}");
    let row = limits.lines().find(|l| l.starts_with("Max open files")).expect("Max open files row");
    let numbers: Vec<&str> = row.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers.len(), 2, "{row}");
    assert_ne!(numbers[0], "256", "the soft limit was left where it started: {row}");
    assert_eq!(numbers[0], numbers[1], "soft and hard limits differ: {row}");
}
