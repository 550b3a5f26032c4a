//! HTTP/1.1 itself, with raw bytes over TCP: routing errors, size and time
//! limits, body framing, keep-alive and pipelining, static files.

mod util;

use std::io::Write;

use util::{Options, Stack, connect, is_closed, raw, read_reply};

const PASSWORD: &str = "correct horse battery";

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let stack = Stack::start();
    let mut http = stack.client();
    let missing = http.api_get("/nope");
    assert_eq!((missing.status, missing.code()), (404, 100));
    let page = http.get("/nope");
    assert_eq!(page.status, 404);
    assert!(page.text().contains("Page not found"));

    let get_login = http.api_get("/login");
    assert_eq!((get_login.status, get_login.code()), (405, 101));
    assert_eq!(get_login.header("allow"), Some("POST"));
    let post_home = http.request("POST", "/home", &[("Accept", "application/json")], b"");
    assert_eq!(post_home.status, 405);
    assert_eq!(post_home.header("allow"), Some("GET, HEAD"));
    let delete = http.request("DELETE", "/profile", &[], b"");
    assert_eq!(delete.status, 405);
    // The path is case-sensitive: /signup is the page, /signUp the operation.
    assert_eq!(http.request("POST", "/signup", &[], b"").status, 405);
}

#[test]
fn every_response_says_nosniff() {
    let stack = Stack::start();
    let mut http = stack.client();
    for path in ["/", "/nope", "/static/style.css", "/healthz", "/home"] {
        assert_eq!(http.get(path).header("x-content-type-options"), Some("nosniff"), "{path}");
    }
}

#[test]
fn a_head_too_large_gets_431() {
    let stack = Stack::start();
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n", "a".repeat(20 * 1024));
    assert_eq!(raw(stack.addr, big.as_bytes()).status, 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(raw(stack.addr, many.as_bytes()).status, 431);
}

#[test]
fn a_slow_head_gets_408_and_an_idle_connection_closes_quietly() {
    let stack =
        Stack::start_with(Options::default().front("--head-timeout-ms", 300).front("--idle-timeout-ms", 300));
    let mut slow = connect(stack.addr);
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").expect("send part of a head");
    let reply = read_reply(&mut slow, false);
    assert_eq!(reply.status, 408);
    assert_eq!(reply.header("connection"), Some("close"));

    let mut idle = connect(stack.addr);
    assert!(is_closed(&mut idle), "an idle connection is closed by the server");
}

#[test]
fn conflicting_lengths_are_400_and_unknown_codings_501() {
    let stack = Stack::start();
    let two = "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
    let reply = raw(stack.addr, two.as_bytes());
    assert_eq!(reply.status, 400);
    assert_eq!(reply.code(), 113);
    let both =
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(raw(stack.addr, both.as_bytes()).status, 400);
    let gzip = "POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_eq!(raw(stack.addr, gzip.as_bytes()).status, 501);
    let nonsense = "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n";
    assert_eq!(raw(stack.addr, nonsense.as_bytes()).status, 400);
    assert_eq!(raw(stack.addr, b"GET / HTTP/1.1\r\n\r\n").status, 400, "Host is required");
    assert_eq!(raw(stack.addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").status, 400);
}

#[test]
fn bodies_over_the_cap_get_413() {
    let stack = Stack::start();
    let mut http = stack.client();
    let long = format!("username=a&password={}", "x".repeat(20 * 1024));
    let reply = http.request(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
        long.as_bytes(),
    );
    assert_eq!((reply.status, reply.code()), (413, 104));

    // With Expect: 100-continue the server refuses before the body is sent.
    let mut stream = connect(stack.addr);
    let head = format!(
        "POST /uploadProfilePic HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\
         Expect: 100-continue\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        64 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).expect("send head");
    let early = read_reply(&mut stream, false);
    assert_eq!((early.status, early.code()), (413, 11));
    assert!(is_closed(&mut stream));
}

#[test]
fn expect_continue_and_chunked_bodies_work() {
    let stack = Stack::start();
    let username = stack.sign_up("chunky", PASSWORD);
    let form = util::urlencode(&[("username", &username), ("password", PASSWORD)]);
    let (first, second) = form.split_at(10);

    let mut stream = connect(stack.addr);
    let head = "POST /login HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\
                Expect: 100-continue\r\n\r\n";
    stream.write_all(head.as_bytes()).expect("send head");
    let mut interim = [0u8; 25];
    std::io::Read::read_exact(&mut stream, &mut interim).expect("100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    let body = format!(
        "{:x}\r\n{first}\r\n{:x};ext=1\r\n{second}\r\n0\r\nTrailer: x\r\n\r\n",
        first.len(),
        second.len()
    );
    stream.write_all(body.as_bytes()).expect("send chunks");
    let reply = read_reply(&mut stream, false);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["data"]["token"].is_string());

    let bad = "POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert_eq!(raw(stack.addr, bad.as_bytes()).status, 400);
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let stack = Stack::start();
    let mut stream = connect(stack.addr);
    let batch = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
                 HEAD /static/style.css HTTP/1.1\r\nHost: x\r\n\r\n\
                 GET /nope HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n\
                 GET /static/style.css HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(batch.as_bytes()).expect("send batch");
    assert_eq!(read_reply(&mut stream, false).status, 200);
    let head = read_reply(&mut stream, true);
    assert_eq!(head.status, 200);
    let length: usize = head.header("content-length").and_then(|l| l.parse().ok()).expect("length");
    assert!(length > 100, "HEAD announces the real length");
    assert_eq!(read_reply(&mut stream, false).status, 404);
    let last = read_reply(&mut stream, false);
    assert_eq!(last.body.len(), length);
    assert_eq!(last.header("connection"), Some("close"));
    assert!(is_closed(&mut stream));
}

#[test]
fn http10_closes_unless_asked_to_keep_alive() {
    let stack = Stack::start();
    let mut stream = connect(stack.addr);
    stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").expect("send");
    let reply = read_reply(&mut stream, false);
    assert_eq!(reply.status, 200);
    assert!(is_closed(&mut stream));

    let mut kept = connect(stack.addr);
    kept.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").expect("send");
    assert_eq!(read_reply(&mut kept, false).header("connection"), Some("keep-alive"));
    kept.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").expect("send again on the same connection");
    assert_eq!(read_reply(&mut kept, false).status, 200);
}

#[test]
fn static_files_have_types_caching_and_no_way_out() {
    let stack = Stack::start();
    let mut http = stack.client();
    let css = http.get("/static/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(css.header("cache-control"), Some("public, max-age=3600"));
    let icon = http.get("/static/icon.svg");
    assert_eq!(icon.header("content-type"), Some("image/svg+xml"));

    std::fs::write(stack.dir.join("secret.css"), "secret").expect("file outside the root");
    for path in [
        "/static/../secret.css",
        "/static/%2e%2e/secret.css",
        "/static/..%2fsecret.css",
        "/static/avatars/../../secret.css",
        "/static/avatars/..%5c..%5csecret.css",
        "/static/.%2e/secret.css",
        "/static//etc/passwd",
        "/static/avatars/.gitkeep",
        "/static/avatars/",
    ] {
        let reply = raw(stack.addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(reply.status, 404, "{path}");
        assert!(!reply.text().contains("secret"), "{path}");
    }
}

#[test]
fn a_client_that_vanishes_mid_body_does_not_hurt_the_server() {
    let stack = Stack::start();
    for _ in 0..20 {
        let mut stream = connect(stack.addr);
        stream
            .write_all(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nusername=")
            .expect("send part of a body");
        drop(stream);
    }
    assert_eq!(stack.client().get("/healthz").status, 200);
}

#[test]
fn deeply_nested_json_is_refused_without_harm() {
    let stack = Stack::start();
    let mut http = stack.client();
    // Within the 16 KiB body cap, far past serde_json's nesting limit: the
    // connection threads' small stacks must hold up.
    let deep = format!("{{\"username\":{}{}}}", "[".repeat(8000), "]".repeat(8000));
    let reply = http.request(
        "POST",
        "/login",
        &[("Content-Type", "application/json"), ("Accept", "application/json")],
        deep.as_bytes(),
    );
    assert_eq!((reply.status, reply.code()), (400, 107));
    assert_eq!(stack.client().get("/healthz").status, 200, "the server is still up");
}
