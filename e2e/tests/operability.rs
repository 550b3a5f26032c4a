//! What an operator relies on: request ids followed from the HTTP request into
//! tcpserver's log, JSON log lines that a parser reads one by one and that
//! hold no secret, `/readyz` saying which part is not ready, `/metrics`
//! only for the addresses allowed, and every route and operation under a
//! label of its own.

mod util;

use std::net::{IpAddr, SocketAddr};

use serde_json::Value;

use util::{Http, Options, Stack};

const PASSWORD: &str = "correct horse battery";

/// The lines of one server's log in the stack's scratch directory.
fn log_of(stack: &Stack, server: &str) -> String {
    std::fs::read_to_string(stack.dir.join(format!("{server}.log"))).unwrap_or_default()
}

#[test]
fn a_log_in_with_its_own_request_id_is_found_in_the_response_and_both_logs() {
    let stack = Stack::start();
    let username = stack.sign_up("traced", PASSWORD);
    let id = format!("test-{}", util::random_hex(12));
    let mut http = stack.client();
    let reply = http.api_post_with(
        "/login",
        &[("username", &username), ("password", PASSWORD)],
        &[("X-Request-Id", &id)],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-request-id"), Some(id.as_str()));

    let front = log_of(&stack, "httpserver");
    let line = front.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{id} not in:\n{front}"));
    assert!(line.contains("/login") && line.contains("200"), "{line}");
    let back = log_of(&stack, "tcpserver");
    let line = back.lines().find(|l| l.contains(&id)).unwrap_or_else(|| panic!("{id} not in:\n{back}"));
    assert!(line.contains("log_in") && line.contains("ok"), "{line}");

    // Without an id of its own, every response still carries one, and ids differ.
    let a = http.api_get("/healthz");
    let b = http.api_get("/no-such-page");
    let (a, b) = (a.header("x-request-id").unwrap(), b.header("x-request-id").unwrap());
    assert_ne!(a, b);
    assert!(a.len() == 32 && a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
}

#[test]
fn an_invalid_request_id_is_replaced_not_echoed() {
    let stack = Stack::start();
    let mut http = stack.client();
    let too_long = "a".repeat(65);
    for bad in [too_long.as_str(), "two words", "quote\"d", "tab\there", "semi;colon", "ünïcode"] {
        let reply = http.request("GET", "/healthz", &[("X-Request-Id", bad)], b"");
        let got = reply.header("x-request-id").unwrap_or_else(|| panic!("no id for {bad:?}"));
        assert_ne!(got, bad);
        assert!(got.len() == 32 && got.bytes().all(|c| c.is_ascii_hexdigit()), "{bad:?} gave {got:?}");
    }
    // A control character breaks the header itself: the request is refused, and
    // the refusal's id is still a fresh one, never the bytes sent.
    let mut raw = util::connect(stack.addr);
    std::io::Write::write_all(&mut raw, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\x01b\r\n\r\n")
        .unwrap();
    let reply = util::read_reply(&mut raw, false);
    assert_eq!(reply.status, 400, "{}", reply.text());
    let got = reply.header("x-request-id").expect("an id on the refusal");
    assert!(got.len() == 32 && !got.contains('\u{1}'), "{got:?}");
    let logs = stack.logs();
    assert!(!logs.contains(&too_long) && !logs.contains("two words") && !logs.contains('\u{1}'), "{logs}");
}

/// Each line parsed as JSON, with the fields every line has.
fn parsed_lines(log: &str, server: &str) -> Vec<Value> {
    log.lines()
        .map(|line| {
            let value: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{server}: not JSON ({e}): {line}"));
            for key in ["time", "level", "event", "message"] {
                assert!(value[key].is_string(), "{server}: no {key} in {line}");
            }
            assert!(value["request_id"].is_string() || value["request_id"].is_null(), "{line}");
            assert!(value["fields"].is_object(), "{line}");
            value
        })
        .collect()
}

#[test]
fn json_logs_parse_line_by_line_name_each_request_and_hold_no_secret() {
    let options = Options::default().front("--log-format", "json").back("--log-format", "json");
    let stack = Stack::start_with(options);
    let (username, token) = stack.user_with_token("jsonlog", PASSWORD);
    let mut http = stack.client();
    let id = format!("json-{}", util::random_hex(8));
    let wrong = "not the password at all";
    let reply = http.api_post_with(
        "/login",
        &[("username", &username), ("password", wrong)],
        &[("X-Request-Id", &id)],
    );
    assert_eq!(reply.status, 401);
    let auth = format!("Bearer {token}");
    assert_eq!(http.request("GET", "/profile", &[("Authorization", &auth)], b"").status, 200);
    assert_eq!(http.request("POST", "/logout", &[("Authorization", &auth)], b"").status, 200);

    let front = parsed_lines(&log_of(&stack, "httpserver"), "httpserver");
    let back = parsed_lines(&log_of(&stack, "tcpserver"), "tcpserver");
    let requests: Vec<&Value> = front.iter().filter(|v| v["event"] == "request").collect();
    assert!(requests.len() >= 5, "sign-up, two log-ins, profile, log-out: {requests:?}");
    let failed = requests.iter().find(|v| v["request_id"] == id.as_str()).expect("the failed log-in's line");
    assert_eq!(failed["fields"]["route"], "/login");
    assert_eq!(failed["fields"]["status"], "401");
    let handled = back.iter().find(|v| v["request_id"] == id.as_str()).expect("tcpserver's line for it");
    assert_eq!(handled["fields"]["outcome"], "BadCredentials");
    assert!(back.iter().any(|v| v["event"] == "request" && v["fields"]["operation"] == "log_out"));

    let everything = stack.logs();
    for secret in [PASSWORD, wrong, token.as_str()] {
        assert!(!everything.contains(secret), "a secret in the logs:\n{everything}");
    }
}

#[test]
fn readyz_says_ready_and_names_the_part_that_is_not() {
    let mut stack = Stack::start();
    let ready = stack.client().api_get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    let data = &ready.json()["data"];
    assert_eq!(
        (data["ready"].as_bool(), data["mysql"].as_str(), data["redis"].as_str()),
        (Some(true), Some("up"), Some("up"))
    );

    stack.kill_backend();
    let down = stack.client().api_get("/readyz");
    assert_eq!(down.status, 503, "{}", down.text());
    assert_eq!(down.json()["data"]["backend"], "down");
    assert_eq!(down.json()["data"]["not_ready"], serde_json::json!(["backend"]));
    assert_eq!(stack.client().api_get("/healthz").status, 503);

    // A back end whose Redis does not answer (nothing listens on port 1).
    let no_redis = Stack::start_with(Options::default().back("--redis-url", "redis://127.0.0.1:1/"));
    let reply = no_redis.client().api_get("/readyz");
    assert_eq!(reply.status, 503, "{}", reply.text());
    let data = &reply.json()["data"];
    assert_eq!(
        (data["backend"].as_str(), data["mysql"].as_str(), data["redis"].as_str()),
        (Some("up"), Some("up"), Some("down"))
    );
    assert_eq!(data["not_ready"], serde_json::json!(["redis"]));
    assert_eq!(reply.code(), 13);
    assert_eq!(no_redis.client().api_get("/healthz").status, 200, "liveness is not readiness");
}

#[test]
fn metrics_are_served_to_loopback_and_refused_elsewhere_unless_allowed() {
    let stack = Stack::start();
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let mut http = stack.client();
    assert_eq!(http.api_get("/healthz").status, 200);
    let metrics = http.get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(text.contains("# TYPE usermgmt_http_requests_total counter"), "{text}");
    assert!(
        text.contains("usermgmt_http_requests_total{endpoint=\"/healthz\",status=\"200\"} 1\n"),
        "{text}"
    );
    // 127.0.0.2 is loopback too: refusing it needs a list without loopback.
    let strict = Stack::start_with(Options::default().front("--metrics-allow", "127.0.0.3"));
    assert_eq!(Http::from_source(strict.addr, other).get("/metrics").status, 403);
    assert_eq!(strict.client().get("/metrics").status, 403, "127.0.0.1 is not on the list");
    let allowed: IpAddr = "127.0.0.3".parse().unwrap();
    assert_eq!(Http::from_source(strict.addr, allowed).get("/metrics").status, 200);
}

#[test]
fn readyz_says_draining_once_httpserver_is_told_to_stop() {
    let mut stack = Stack::start();
    let mut waiting = util::connect(stack.addr);
    let mut asking = util::connect(stack.addr);
    // A request in progress (its body never complete) keeps the server
    // draining rather than gone; `asking` has been served once, so it is a
    // kept-alive connection that the server reads from while it drains.
    std::io::Write::write_all(
        &mut waiting,
        b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    std::io::Write::write_all(
        &mut asking,
        b"GET /readyz HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n",
    )
    .unwrap();
    assert_eq!(util::read_reply(&mut asking, false).status, 200);
    let mut front = stack.take_front();
    // SAFETY: kill(2) on the child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(front.id() as libc::pid_t, libc::SIGTERM) }, 0);
    // The signal is taken on a thread of its own: give it a moment (so that
    // no answer races the flag), then ask until it has been taken.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let reply = loop {
        std::io::Write::write_all(
            &mut asking,
            b"GET /readyz HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n",
        )
        .unwrap();
        let reply = util::read_reply(&mut asking, false);
        if reply.status != 200 || std::time::Instant::now() > deadline {
            break reply;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(reply.status, 503, "{}", reply.text());
    let data = &reply.json()["data"];
    assert_eq!((data["draining"].as_bool(), data["backend"].as_str()), (Some(true), Some("up")), "{data}");
    assert_eq!(data["not_ready"], serde_json::json!(["draining"]));
    drop(waiting);
    assert!(front.wait().unwrap().success());
}

/// tcpserver's metrics address, from its log line `metrics on http://ADDR/metrics`.
fn backend_metrics_addr(stack: &Stack) -> SocketAddr {
    let log = log_of(stack, "tcpserver");
    log.lines()
        .find_map(|line| line.split("metrics on http://").nth(1)?.strip_suffix("/metrics")?.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in tcpserver's log:\n{log}"))
}

/// The value of the sample `series` (name and labels, exactly) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn account_security_and_qr_requests_are_counted_under_their_own_routes_and_operations() {
    let stack = Stack::start();
    let (_, token) = stack.user_with_token("labels", PASSWORD);
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let mut http = stack.client();
    assert_eq!(http.request("GET", "/sessions", &auth, b"").status, 200);
    assert_eq!(http.request("GET", "/loginHistory", &auth, b"").status, 200);
    let made = http.api_post("/qr/new", &[]);
    assert_eq!(made.status, 201, "{}", made.text());
    let key = made.json()["data"]["key"].as_str().expect("key").to_owned();
    assert_eq!(http.request("GET", &format!("/qr/{key}"), &auth, b"").status, 200, "scanned");
    let unknown = "0123456789abcdef".repeat(4);
    assert_eq!(http.request("GET", &format!("/qr/{unknown}"), &auth, b"").status, 410);
    assert_eq!(http.api_post_with("/qr/deny", &[("key", &key)], &auth).status, 200);

    let text = http.get("/metrics").text();
    for (series, at_least) in [
        ("usermgmt_http_requests_total{endpoint=\"/sessions\",status=\"200\"}", 1.0),
        ("usermgmt_http_requests_total{endpoint=\"/loginHistory\",status=\"200\"}", 1.0),
        ("usermgmt_http_requests_total{endpoint=\"/qr/new\",status=\"201\"}", 1.0),
        ("usermgmt_http_requests_total{endpoint=\"/qr/{key}\",status=\"200\"}", 1.0),
        ("usermgmt_http_requests_total{endpoint=\"/qr/{key}\",status=\"410\"}", 1.0),
        ("usermgmt_http_requests_total{endpoint=\"/qr/deny\",status=\"200\"}", 1.0),
    ] {
        assert!(sample(&text, series).is_some_and(|v| v >= at_least), "{series} in:\n{text}");
    }
    assert!(!text.contains(&key) && !text.contains(&unknown), "a code's key became a label");
    assert!(
        !text.contains("usermgmt_http_requests_total{endpoint=\"unmatched\""),
        "a route counted as unmatched:\n{text}"
    );

    let backend = Http::new(backend_metrics_addr(&stack)).get("/metrics").text();
    for operation in ["list_sessions", "login_history", "qr_create", "qr_scan", "qr_decide"] {
        let ok =
            format!("usermgmt_operation_duration_seconds_count{{operation=\"{operation}\",outcome=\"ok\"}}");
        assert!(sample(&backend, &ok).is_some_and(|v| v >= 1.0), "{ok} in:\n{backend}");
    }
    let rejected = "usermgmt_operation_duration_seconds_count{operation=\"qr_scan\",outcome=\"rejected\"}";
    assert!(sample(&backend, rejected).is_some_and(|v| v >= 1.0), "the unknown code's scan: {rejected}");
    let other = "usermgmt_operation_duration_seconds_count{operation=\"other\",outcome=\"ok\"}";
    assert_eq!(sample(&backend, other), Some(0.0), "no operation is `other`");
}
