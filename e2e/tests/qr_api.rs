//! Scan-to-log-in through the JSON API, against real servers: the desktop's
//! wait held by one tcpserver, the phone's approval run by another on the
//! same Redis; denial, expiry, a second approval, a redemption without the
//! binding cookie; and the waits when tcpserver or Redis restart under them.

mod util;

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::services::PrivateRedis;
use util::{Http, Options, Reply, Stack};

const PASSWORD: &str = "correct horse battery";

/// Makes a code on `desktop`'s server; returns its key (the binding cookie is in the jar).
fn new_code(desktop: &mut Http) -> String {
    let reply = desktop.api_post("/qr/new", &[]);
    assert_eq!(reply.status, 201, "{}", reply.text());
    let data = &reply.json()["data"];
    let key = data["key"].as_str().expect("key").to_owned();
    assert_eq!(key.len(), 64, "256 random bits, in hex");
    assert!(
        data["url"].as_str().is_some_and(|u| u.starts_with("http://") && u.ends_with(&format!("/qr/{key}")))
    );
    assert!(data["expires_in"].as_u64().is_some_and(|s| s > 0));
    assert!(desktop.cookie("um_qr").is_some_and(|b| b.len() == 64), "the binding cookie");
    let cookie = desktop.last_set_cookies.iter().find(|c| c.starts_with("um_qr=")).expect("binding cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    key
}

fn wait(desktop: &mut Http, key: &str, seen: &str) -> Reply {
    desktop.api_get(&format!("/qr/wait?key={key}&seen={seen}"))
}

fn state(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["data"]["state"].as_str().unwrap_or_default().to_owned()
}

/// Waits in a thread; returns the reply and when it came.
fn wait_in_background(
    mut desktop: Http,
    key: &str,
    seen: &str,
) -> thread::JoinHandle<(Http, Reply, Instant)> {
    let (key, seen) = (key.to_owned(), seen.to_owned());
    thread::spawn(move || {
        let reply = wait(&mut desktop, &key, &seen);
        (desktop, reply, Instant::now())
    })
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn decide(phone: &mut Http, token: &str, key: &str, what: &str) -> Reply {
    phone.api_post_with(&format!("/qr/{what}"), &[("key", key)], &[("Authorization", &bearer(token))])
}

#[test]
fn a_wait_on_one_tcpserver_is_answered_by_an_approval_on_another_and_only_the_binding_gets_a_session() {
    let a = Stack::start();
    let b = Stack::start_with(Options::default().back("--redis-prefix", &a.redis_prefix));
    let (username, token) = b.user_with_token("qrphone", PASSWORD);
    let mut phone = b.client();
    let mut desktop = a.client();
    let key = new_code(&mut desktop);

    // Someone with the key but not the binding cookie: refused, no session.
    let mut thief = a.client();
    let stolen = wait(&mut thief, &key, "pending");
    assert_eq!((stolen.status, stolen.code()), (403, 22), "{}", stolen.text());
    assert!(thief.cookie("um_session").is_none());

    // The phone scans through B: the desktop's wait on A says so, with who.
    let waiting = wait_in_background(desktop, &key, "pending");
    thread::sleep(Duration::from_millis(300));
    let scanned = phone.request("GET", &format!("/qr/{key}"), &[("Authorization", &bearer(&token))], b"");
    assert_eq!(scanned.status, 200, "{}", scanned.text());
    let details = scanned.json()["data"].clone();
    assert_eq!(details["ip"], "127.0.0.1", "{details}");
    assert!(
        details["browser"].is_string() && details["created"].as_str().is_some_and(|t| t.ends_with("UTC"))
    );
    let (desktop, reply, _) = waiting.join().expect("wait thread");
    assert_eq!(state(&reply), "scanned");
    assert_eq!(reply.json()["data"]["nickname"].as_str(), Some(username.as_str()));

    // Approved through B: the wait parked on A answers, with the session cookie.
    let waiting = wait_in_background(desktop, &key, "scanned");
    thread::sleep(Duration::from_millis(300));
    let approved_at = Instant::now();
    let approved = decide(&mut phone, &token, &key, "approve");
    assert_eq!(approved.status, 200, "{}", approved.text());
    assert_eq!(approved.json()["data"]["state"], "confirmed");
    let (mut desktop, reply, answered_at) = waiting.join().expect("wait thread");
    let delay = answered_at.duration_since(approved_at);
    println!("approval on one tcpserver to the answer on the other: {delay:?}");
    assert!(delay < Duration::from_secs(3), "answered {delay:?} after the approval");
    assert_eq!(state(&reply), "confirmed");
    assert!(reply.json()["data"].get("token").is_none(), "the token is in the HttpOnly cookie only");
    assert!(desktop.cookie("um_session").is_some(), "{:?}", desktop.last_set_cookies);
    let profile = desktop.api_get("/profile");
    assert_eq!(profile.status, 200, "{}", profile.text());
    assert_eq!(profile.json()["data"]["username"].as_str(), Some(username.as_str()));

    // The scan-to-log-in is in the account's history with its method, once
    // the drainer (about a second behind) has written it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let qr_log_in = loop {
        let history = desktop.api_get("/loginHistory");
        assert_eq!(history.status, 200, "{}", history.text());
        let logins = history.json()["data"]["logins"].as_array().cloned().unwrap_or_default();
        if let Some(entry) = logins.iter().find(|l| l["method"] == "qr") {
            break entry.clone();
        }
        assert!(Instant::now() < deadline, "no qr log-in in the history: {logins:?}");
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (qr_log_in["outcome"].as_str(), qr_log_in["ip"].as_str()),
        (Some("success"), Some("127.0.0.1"))
    );

    // Single use: a second approval, a second redemption, the thief again.
    let again = decide(&mut phone, &token, &key, "approve");
    assert_eq!((again.status, again.code()), (409, 21), "{}", again.text());
    let mut fresh_desktop = a.client();
    fresh_desktop.set_cookie("um_qr", desktop.cookie("um_qr").unwrap_or("gone"));
    let redeemed_twice = wait(&mut fresh_desktop, &key, "pending");
    assert!(redeemed_twice.status != 200 || state(&redeemed_twice) == "expired", "{}", redeemed_twice.text());
    assert!(fresh_desktop.cookie("um_session").is_none(), "a consumed code makes no second session");
    let stolen = wait(&mut thief, &key, "pending");
    assert!(stolen.status == 403 || state(&stolen) == "expired", "{}", stolen.text());
    assert!(thief.cookie("um_session").is_none());
}

#[test]
fn a_denied_code_answers_the_wait_and_cannot_then_be_approved() {
    let stack = Stack::start();
    let (_, token) = stack.user_with_token("qrdeny", PASSWORD);
    let mut phone = stack.client();
    let mut desktop = stack.client();
    let key = new_code(&mut desktop);
    let waiting = wait_in_background(desktop, &key, "pending");
    thread::sleep(Duration::from_millis(300));
    let denied = decide(&mut phone, &token, &key, "deny");
    assert_eq!(denied.status, 200, "{}", denied.text());
    assert_eq!(denied.json()["data"]["state"], "denied");
    let (desktop, reply, _) = waiting.join().expect("wait thread");
    assert_eq!(state(&reply), "denied");
    assert!(desktop.cookie("um_session").is_none());
    let late = decide(&mut phone, &token, &key, "approve");
    assert_eq!((late.status, late.code()), (409, 21), "{}", late.text());
    // Without a session the phone can do nothing.
    let anonymous = stack.client().api_post("/qr/approve", &[("key", &key)]);
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
}

#[test]
fn a_code_past_its_lifetime_is_answered_expired_on_time_and_refused() {
    let stack = Stack::start_with(Options::default().back("--qr-ttl-secs", 2));
    let (_, token) = stack.user_with_token("qrexpire", PASSWORD);
    let mut desktop = stack.client();
    let key = new_code(&mut desktop);
    let started = Instant::now();
    let reply = wait(&mut desktop, &key, "pending");
    let took = started.elapsed();
    assert_eq!(state(&reply), "expired");
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(8), "answered after {took:?}");
    let late = decide(&mut stack.client(), &token, &key, "approve");
    assert_eq!((late.status, late.code()), (410, 20), "{}", late.text());
    let scan =
        stack.client().request("GET", &format!("/qr/{key}"), &[("Authorization", &bearer(&token))], b"");
    assert_eq!((scan.status, scan.code()), (410, 20), "{}", scan.text());
}

#[test]
fn waits_parked_when_tcpserver_stops_get_a_quick_answer_and_never_hang() {
    let mut stack = Stack::start();
    let mut handles = Vec::new();
    for _ in 0..20 {
        let mut desktop = stack.client();
        let key = new_code(&mut desktop);
        handles.push(wait_in_background(desktop, &key, "pending"));
    }
    thread::sleep(Duration::from_millis(700));
    let stopped_at = Instant::now();
    stack.kill_backend();
    for handle in handles {
        let (_, reply, at) = handle.join().expect("wait thread");
        let after = at.duration_since(stopped_at);
        assert!(after < Duration::from_secs(3), "answered {after:?} after tcpserver went away");
        assert!(reply.status == 503 || reply.status == 200, "{}: {}", reply.status, reply.text());
    }
    // Back again: a new code waits as before.
    stack.start_backend();
    let mut desktop = stack.client();
    let key = new_code(&mut desktop);
    let (_, token) = stack.user_with_token("qrrestart", PASSWORD);
    let waiting = wait_in_background(desktop, &key, "pending");
    thread::sleep(Duration::from_millis(300));
    assert_eq!(decide(&mut stack.client(), &token, &key, "approve").status, 200);
    let (_, reply, _) = waiting.join().expect("wait thread");
    assert_eq!(state(&reply), "confirmed");
}

#[test]
fn waits_parked_when_redis_restarts_read_the_code_again_and_are_answered_at_once() {
    let mut redis = PrivateRedis::start();
    let stack = Stack::start_with(Options::default().back("--redis-url", redis.url()));
    let mut handles = Vec::new();
    for _ in 0..10 {
        let mut desktop = stack.client();
        let key = new_code(&mut desktop);
        handles.push(wait_in_background(desktop, &key, "pending"));
    }
    thread::sleep(Duration::from_millis(700));
    // Redis comes back empty: the codes are gone, and the waits must hear of it
    // when the subscriber reconnects, not at their 25 s deadline.
    let restarted_at = Instant::now();
    redis.kill();
    redis.restart();
    for handle in handles {
        let (_, reply, at) = handle.join().expect("wait thread");
        let after = at.duration_since(restarted_at);
        assert!(after < Duration::from_secs(10), "answered {after:?} after Redis restarted");
        let answer: Value = reply.json();
        assert!(
            reply.status == 503 || answer["data"]["state"] == "expired",
            "{}: {}",
            reply.status,
            reply.text()
        );
    }
}

#[test]
fn another_sites_link_does_not_scan_a_code_in_the_visitors_name() {
    let stack = Stack::start();
    let username = stack.sign_up("qrcross", PASSWORD);
    let mut phone = stack.client();
    let login = phone.api_post("/login", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!(login.status, 200, "{}", login.text());
    let mut desktop = stack.client();
    let key = new_code(&mut desktop);
    let cross = phone.request("GET", &format!("/qr/{key}"), &[("Sec-Fetch-Site", "cross-site")], b"");
    assert_eq!(cross.status, 403, "{}", cross.text());
    assert!(!cross.text().contains("qr-approve-form"), "no Approve button for another site's link");
    // The desktop's code is still unscanned (the page's one-time check says so).
    let check = desktop.get(&format!("/qr/wait?key={key}"));
    assert!(check.text().contains("has not been scanned yet"), "{}", check.text());
    // Opened as a camera app opens it, the page offers Approve.
    let scanned = phone.get(&format!("/qr/{key}"));
    assert_eq!(scanned.status, 200, "{}", scanned.text());
    assert!(scanned.text().contains("qr-approve-form") && scanned.text().contains("id=\"qr-ip\">127.0.0.1<"));
}

#[test]
fn parked_waits_have_their_own_rpc_connections_and_never_starve_ordinary_calls() {
    // One connection for waits (255 calls) and one for everything else.
    let stack = Stack::start_with(
        Options::default()
            .front("--qr-rpc-pool", 1)
            .front("--rpc-pool", 1)
            .front("--max-connections-per-addr", 2000),
    );
    let (username, token) = stack.user_with_token("qrstarve", PASSWORD);
    let mut desktop = stack.client();
    let key = new_code(&mut desktop);
    let binding = desktop.cookie("um_qr").expect("binding cookie").to_owned();
    let request = format!(
        "GET /qr/wait?key={key} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nCookie: um_qr={binding}\r\n\r\n",
        stack.addr
    );
    let mut waits: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut stream = util::connect(stack.addr);
            std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send the wait");
            stream
        })
        .collect();
    thread::sleep(Duration::from_millis(1500));
    // Ordinary calls go on at once beside 255 parked waits.
    let started = Instant::now();
    let login = stack.client().api_post("/login", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!(login.status, 200, "{}", login.text());
    let profile = stack.client().request("GET", "/profile", &[("Authorization", &bearer(&token))], b"");
    assert_eq!(profile.status, 200, "{}", profile.text());
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    // The waits' own bound: 255 held, the other 45 refused at once (503, code 116).
    let (mut held, mut refused) = (0, 0);
    for stream in &mut waits {
        stream.set_nonblocking(true).expect("nonblocking");
        let mut probe = [0u8; 1];
        match stream.peek(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => held += 1,
            _ => {
                stream.set_nonblocking(false).expect("blocking");
                let reply = util::read_reply(stream, false);
                assert_eq!((reply.status, reply.code()), (503, 116), "{}", reply.text());
                refused += 1;
            }
        }
    }
    assert_eq!((held, refused), (255, 45));
}

/// `n` API waits on `key`, each on a connection of its own, as desktops'
/// pages hold them.
fn open_waits(stack: &Stack, key: &str, binding: &str, n: usize) -> Vec<std::net::TcpStream> {
    let request = format!(
        "GET /qr/wait?key={key} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nCookie: um_qr={binding}\r\n\r\n",
        stack.addr
    );
    (0..n)
        .map(|_| {
            let mut stream = util::connect(stack.addr);
            std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send the wait");
            stream
        })
        .collect()
}

/// Polls tcpserver's `name` until it reads `want`; how long that took.
fn until_backend_metric(stack: &Stack, name: &str, want: u64, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let value = stack.backend_metric(0, name);
        if value == Some(want) {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "{name} is {value:?}, not {want}, after {within:?}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The sum of httpserver's `name{backend=...}` samples.
fn front_metric(stack: &Stack, name: &str) -> u64 {
    let reply = stack.client().request("GET", "/metrics", &[], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let prefix = format!("{name}{{");
    reply
        .text()
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Desktops that close their pages while their waits are parked free what
/// the waits held, within seconds, not at the 25 s deadline: the waits in
/// tcpserver, and every place on the one RPC connection for waits, which
/// takes a full set of new waits at once afterwards.
#[test]
fn waits_whose_clients_disconnect_free_everything_they_held() {
    let stack = Stack::start_with(
        Options::default().front("--qr-rpc-pool", 1).front("--max-connections-per-addr", 2000),
    );
    let mut desktop = stack.client();
    let key = new_code(&mut desktop);
    let binding = desktop.cookie("um_qr").expect("binding cookie").to_owned();
    let full = 255;
    let waits = open_waits(&stack, &key, &binding, full);
    until_backend_metric(&stack, "usermgmt_qr_waits", full as u64, Duration::from_secs(10));
    drop(waits);
    let freed = until_backend_metric(&stack, "usermgmt_qr_waits", 0, Duration::from_secs(5));
    eprintln!("{full} waits let go {freed:?} after their clients closed");
    assert_eq!(stack.backend_metric(0, "usermgmt_qr_waits_cancelled_total"), Some(full as u64));
    assert_eq!(front_metric(&stack, "usermgmt_rpc_abandoned_total"), full as u64);
    assert_eq!(front_metric(&stack, "usermgmt_rpc_calls_in_flight"), 0, "no call is still parked");
    // Every place is free again: as many new waits are all held, none refused.
    let mut again = open_waits(&stack, &key, &binding, full);
    until_backend_metric(&stack, "usermgmt_qr_waits", full as u64, Duration::from_secs(10));
    for stream in &mut again {
        stream.set_nonblocking(true).expect("nonblocking");
        let mut probe = [0u8; 1];
        let held = matches!(stream.peek(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        assert!(held, "a new wait was answered at once: its place was not free");
    }
    // A wait whose client stays is still answered when its code changes.
    let (_, token) = stack.user_with_token("qrstays", PASSWORD);
    let mut phone = stack.client();
    let scanned = phone.request("GET", &format!("/qr/{key}"), &[("Authorization", &bearer(&token))], b"");
    assert_eq!(scanned.status, 200, "{}", scanned.text());
    for stream in &mut again {
        stream.set_nonblocking(false).expect("blocking");
        let reply = util::read_reply(stream, false);
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["data"]["state"], "scanned");
    }
}
