//! The front end under trouble: tcpserver going away and coming back while
//! httpserver keeps running, more connections than it will serve, and a front
//! end that does not hold the back end's RPC secret.

mod util;

use std::io::Write;
use std::net::TcpStream;

use mysql::prelude::Queryable;

use util::{Options, Stack, connect, read_reply};

const PASSWORD: &str = "correct horse battery";

#[test]
fn tcpserver_restart_gives_503_during_the_gap_and_service_resumes_without_restarting_httpserver() {
    let mut stack = Stack::start();
    let (username, token) = stack.user_with_token("survivor", PASSWORD);
    let auth = format!("Bearer {token}");
    let mut http = stack.client();
    // Warm the pool so that it holds connections the restart will break.
    for _ in 0..4 {
        assert_eq!(http.request("GET", "/profile", &[("Authorization", &auth)], b"").status, 200);
    }

    stack.kill_backend();
    // 503 (not 504): the front end notices at once that nobody is there.
    let health = http.get("/healthz");
    assert_eq!(health.status, 503, "{}", health.text());
    assert!(health.header("retry-after").is_some());
    let profile = http.request("GET", "/profile", &[("Authorization", &auth)], b"");
    assert_eq!((profile.status, profile.code()), (503, 110));
    let login = http.api_post("/login", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!(login.status, 503);
    let page = stack.client().get("/signup");
    assert_eq!(page.status, 200, "pages that need no back end still work");

    stack.start_backend();
    assert!(stack.front_is_running(), "httpserver was never restarted");
    let health = http.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.text());
    // Sessions live in Redis, so the old token still works after the restart.
    let profile = http.request("GET", "/profile", &[("Authorization", &auth)], b"");
    assert_eq!(profile.status, 200, "{}", profile.text());
    let changed =
        http.api_post_with("/updateNickName", &[("nickname", "Back again")], &[("Authorization", &auth)]);
    assert_eq!(changed.status, 200, "{}", changed.text());
    let login = http.api_post("/login", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!(login.status, 200, "{}", login.text());
}

#[test]
fn state_changes_after_a_restart_are_applied_exactly_once() {
    let mut stack = Stack::start_with(Options::default().front("--rpc-pool", "2"));
    let (_, token) = stack.user_with_token("once", PASSWORD);
    let auth = format!("Bearer {token}");
    let mut http = stack.client();
    assert_eq!(http.request("GET", "/profile", &[("Authorization", &auth)], b"").status, 200);

    stack.kill_backend();
    stack.start_backend();
    // The pooled connections are dead; the first write after the restart must
    // find that out before sending, and go through on a fresh connection.
    for round in 0..4 {
        let nickname = format!("Round {round}");
        let changed =
            http.api_post_with("/updateNickName", &[("nickname", &nickname)], &[("Authorization", &auth)]);
        assert_eq!(changed.status, 200, "{}", changed.text());
        assert_eq!(changed.json()["data"]["nickname"], nickname.as_str());
    }
}

#[test]
fn connections_over_the_cap_get_a_quick_503() {
    let stack = Stack::start_with(
        Options::default().front("--max-connections", 3).front("--idle-timeout-ms", 60_000),
    );
    // Three idle connections take every slot (each holds a thread waiting for a request).
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(stack.addr)).collect();
    // The server accepts in order, so a request on the third proves all three are admitted.
    held[2].write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
    assert_eq!(read_reply(&mut held[2], false).status, 200);

    let mut extra = connect(stack.addr);
    extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n").expect("send");
    let refused = read_reply(&mut extra, false);
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("connection"), Some("close"));
    assert_eq!(refused.code(), 112);

    // When a slot frees up, new connections are served again.
    drop(held.pop());
    let served = (0..200).find_map(|_| {
        let mut stream = connect(stack.addr);
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        let reply = read_reply(&mut stream, false);
        (reply.status == 200).then_some(reply)
    });
    assert!(served.is_some(), "a freed slot is reused");
}

#[test]
fn an_httpserver_with_another_rpc_secret_is_refused_and_no_request_reaches_the_back_end() {
    let dir = std::env::temp_dir().join(format!("usermgmt-other-secret-{}", util::random_hex(8)));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let other = util::write_rpc_secret(dir.join("rpc_secret"));
    let stack = Stack::start_with(Options::default().front("--rpc-secret-file", other.display()));
    let mut http = stack.client();
    let asked = std::time::Instant::now();
    let health = http.get("/healthz");
    let took = asked.elapsed();
    assert_eq!((health.status, health.code()), (503, 110), "{}", health.text());
    let username = stack.username("never");
    let signup = http.api_post("/signUp", &[("username", &username), ("password", PASSWORD)]);
    assert_eq!((signup.status, signup.code()), (503, 110), "{}", signup.text());
    let logs = stack.logs();
    assert!(logs.contains("refused: wrong RPC secret"), "{logs}");
    let mut mysql = mysql::Conn::new(mysql::Opts::from_url(&util::TestEnv::load().mysql_url).expect("URL"))
        .expect("MySQL is up");
    let stored: Option<u64> =
        mysql.exec_first("SELECT id FROM users WHERE username = ?", (&username,)).expect("query");
    assert_eq!(stored, None, "the sign-up never reached the back end");
    eprintln!("another RPC secret: /healthz answered 503 code 110 after {took:?}");
    drop(stack);
    let _ = std::fs::remove_dir_all(&dir);
}
