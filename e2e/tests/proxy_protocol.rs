//! The client's address behind a load balancer: httpserver with
//! `--trusted-proxy`, sent PROXY protocol v2 headers by hand (as HAProxy's
//! `send-proxy-v2` writes them) and by a real HAProxy in front.
//!
//! What a user (or an operator) checks: the address a log-in is recorded
//! with (the session list's `ip`, which tcpserver stores from the RPC), and
//! the per-address connection share; that nobody else can choose their
//! address with a header; that a broken header gets a clear answer and a
//! close, and the server goes on.

mod util;

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use util::{Http, Options, Stack, connect, connect_from, is_closed, read_reply};

const PASSWORD: &str = "correct horse battery";

/// The v2 signature every header starts with.
const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A PROXY v2 header for a TCP connection from `client` to `server`, as
/// HAProxy's `send-proxy-v2` writes it.
fn proxy_header(client: SocketAddrV4, server: SocketAddrV4) -> Vec<u8> {
    let mut header = SIGNATURE.to_vec();
    header.extend_from_slice(&[0x21, 0x11, 0, 12]); // v2 PROXY, TCP over IPv4, 12 bytes of addresses
    header.extend_from_slice(&client.ip().octets());
    header.extend_from_slice(&server.ip().octets());
    header.extend_from_slice(&client.port().to_be_bytes());
    header.extend_from_slice(&server.port().to_be_bytes());
    header
}

fn v4(addr: &str) -> SocketAddrV4 {
    addr.parse().unwrap()
}

/// The proxy's address: connections from it must start with a header.
/// The tests' own helpers connect from 127.0.0.1, an ordinary client.
const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// A stack whose httpserver trusts [`PROXY`].
fn behind_proxy(options: Options) -> Stack {
    Stack::start_with(options.front("--trusted-proxy", PROXY))
}

/// A connection from the proxy's address.
fn from_proxy(stack: &Stack) -> TcpStream {
    connect_from(stack.addr, PROXY)
}

/// One HTTP/1.1 request on `stream` with a bearer token, its reply.
fn send(stream: &mut TcpStream, method: &str, path: &str, token: Option<&str>, body: &str) -> util::Reply {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes()).expect("send the request");
    read_reply(stream, false)
}

/// Logs `username` in on a connection through a PROXY header naming
/// `client`; the new session's token.
fn log_in_as(stack: &Stack, client: SocketAddrV4, username: &str) -> String {
    let mut stream = from_proxy(stack);
    stream.write_all(&proxy_header(client, v4("192.0.2.1:1088"))).unwrap();
    let body = format!("{{\"username\":\"{username}\",\"password\":\"{PASSWORD}\"}}");
    let reply = send(&mut stream, "POST", "/login", None, &body);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["data"]["token"].as_str().expect("token").to_owned()
}

/// The `ip` of the session `token` is, as `/sessions` lists it.
fn session_ip(stack: &Stack, token: &str) -> String {
    let reply =
        stack.client().request("GET", "/sessions", &[("Authorization", &format!("Bearer {token}"))], b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sessions = reply.json()["data"]["sessions"].as_array().expect("sessions").clone();
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    current[0]["ip"].as_str().expect("ip").to_owned()
}

#[test]
fn a_header_from_a_trusted_proxy_makes_its_client_the_address_of_the_requests() {
    let stack = behind_proxy(Options::default());
    let user = stack.sign_up("behind", PASSWORD);
    let token = log_in_as(&stack, v4("203.0.113.9:40000"), &user);
    assert_eq!(session_ip(&stack, &token), "203.0.113.9", "tcpserver was told the client's address");
    let other = log_in_as(&stack, v4("198.51.100.20:40001"), &user);
    assert_eq!(session_ip(&stack, &other), "198.51.100.20");
}

#[test]
fn the_per_address_connection_share_counts_the_client_behind_the_proxy() {
    let stack = behind_proxy(Options::default().front("--max-connections-per-addr", 1));
    let mut first = from_proxy(&stack);
    first.write_all(&proxy_header(v4("203.0.113.1:1"), v4("192.0.2.1:1088"))).unwrap();
    assert_eq!(send(&mut first, "GET", "/healthz", None, "").status, 200);
    // The same client through the proxy again: its one connection is held.
    let mut again = from_proxy(&stack);
    again.write_all(&proxy_header(v4("203.0.113.1:2"), v4("192.0.2.1:1088"))).unwrap();
    let refused = read_reply(&mut again, false);
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.text().contains("your address"), "{}", refused.text());
    // Another client through the same proxy is not: the proxy's own address shares nothing.
    let mut other = from_proxy(&stack);
    other.write_all(&proxy_header(v4("203.0.113.2:1"), v4("192.0.2.1:1088"))).unwrap();
    assert_eq!(send(&mut other, "GET", "/healthz", None, "").status, 200);
}

#[test]
fn a_header_from_an_address_that_is_not_trusted_is_refused_and_changes_no_address() {
    let stack = behind_proxy(Options::default());
    let untrusted = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut stream = connect_from(stack.addr, untrusted);
    stream.write_all(&proxy_header(v4("203.0.113.9:40000"), v4("192.0.2.1:1088"))).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let refused = read_reply(&mut stream, false);
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(is_closed(&mut stream));
    // Without a header it is an ordinary client, counted by its own address.
    let user = stack.sign_up("direct", PASSWORD);
    let mut client = Http::from_source(stack.addr, untrusted);
    let login = client.api_post("/login", &[("username", &user), ("password", PASSWORD)]);
    assert_eq!(login.status, 200, "{}", login.text());
    let token = login.json()["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(session_ip(&stack, &token), "127.0.0.2");
}

#[test]
fn without_trusted_proxies_a_header_is_refused_like_any_bytes_that_are_not_http() {
    let stack = Stack::start();
    let mut stream = connect(stack.addr);
    stream.write_all(&proxy_header(v4("203.0.113.9:40000"), v4("192.0.2.1:1088"))).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut stream, false).status, 400);
    assert!(is_closed(&mut stream));
}

#[test]
fn garbage_truncated_oversize_and_late_headers_get_a_clear_close_and_the_server_goes_on() {
    let stack = behind_proxy(Options::default());
    // Plain HTTP from the proxy: the header is required.
    let mut plain = from_proxy(&stack);
    let reply = send(&mut plain, "GET", "/healthz", None, "");
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("PROXY protocol v2"), "{}", reply.text());
    assert!(is_closed(&mut plain));
    // A v1 text header: not what send-proxy-v2 sends.
    let mut v1 = from_proxy(&stack);
    v1.write_all(b"PROXY TCP4 203.0.113.9 192.0.2.1 40000 1088\r\nGET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut v1, false).status, 400);
    // Announcing more than the bound.
    let mut oversize = from_proxy(&stack);
    let mut long = SIGNATURE.to_vec();
    long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    oversize.write_all(&long).unwrap();
    let reply = read_reply(&mut oversize, false);
    assert_eq!(reply.status, 400);
    assert!(reply.text().contains("over the"), "{}", reply.text());
    // A bad version byte.
    let mut bad = from_proxy(&stack);
    let mut header = proxy_header(v4("203.0.113.9:1"), v4("192.0.2.1:1088"));
    header[12] = 0x31;
    bad.write_all(&header).unwrap();
    assert_eq!(read_reply(&mut bad, false).status, 400);
    // Cut short: half a header, then the proxy goes away.
    let header = proxy_header(v4("203.0.113.9:1"), v4("192.0.2.1:1088"));
    for cut in [3, 15, 20] {
        let mut truncated = from_proxy(&stack);
        truncated.write_all(&header[..cut]).unwrap();
        truncated.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(is_closed(&mut truncated), "closed after {cut} bytes");
    }
    // Half a header and then nothing: closed at the header's deadline (5 s).
    let mut silent = from_proxy(&stack);
    silent.write_all(&header[..20]).unwrap();
    let started = Instant::now();
    let late = read_reply(&mut silent, false);
    assert_eq!(late.status, 408, "{}", late.text());
    assert!(started.elapsed() < Duration::from_secs(20));
    // And the server serves the next proxied client as before.
    let mut next = from_proxy(&stack);
    next.write_all(&proxy_header(v4("203.0.113.3:1"), v4("192.0.2.1:1088"))).unwrap();
    assert_eq!(send(&mut next, "GET", "/healthz", None, "").status, 200);
}

/// A private HAProxy (Debian's) on a free port in front of `backend`, with
/// `send-proxy-v2` to it and health checks of `/healthz` every 100 ms
/// (three failures in a row take the server out, each given 2 s, so a
/// loaded test machine's slow answer does not); stopped when dropped.
struct Haproxy {
    child: Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Haproxy {
    fn start(backend: SocketAddr) -> Haproxy {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let dir = std::env::temp_dir().join(format!("haproxy-test-{}", util::random_hex(8)));
        fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global\n  maxconn 64\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n  timeout check 2s\n\
             frontend edge\n  bind {addr}\n  default_backend web\n\
             backend web\n  option httpchk GET /healthz\n\
             server web1 {backend} send-proxy-v2 source {PROXY} check inter 100ms fall 3 rise 1\n"
        );
        let file = dir.join("haproxy.cfg");
        fs::write(&file, config).unwrap();
        let child = Command::new("/usr/sbin/haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("haproxy.log")).unwrap())
            .spawn()
            .expect("haproxy is installed (./test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not listen on {addr}");
            thread::sleep(Duration::from_millis(20));
        }
        Haproxy { child, addr, dir }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn behind_a_real_haproxy_with_send_proxy_v2_the_client_address_is_the_clients() {
    let stack = behind_proxy(Options::default());
    let haproxy = Haproxy::start(stack.addr);
    let user = stack.sign_up("haproxy", PASSWORD);
    let client_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
    let mut client = Http::from_source(haproxy.addr, client_ip);
    let login = client.api_post("/login", &[("username", &user), ("password", PASSWORD)]);
    assert_eq!(login.status, 200, "{}", login.text());
    let token = login.json()["data"]["token"].as_str().unwrap().to_owned();
    assert_eq!(session_ip(&stack, &token), "127.0.0.7", "not HAProxy's 127.0.0.1");
    // HAProxy keeps its connections to httpserver for reuse; a connection
    // opened for one client, with that client's header, must never carry
    // another's requests. Clients one after another, each kept alive:
    let mut clients = Vec::new();
    for n in 8..12u8 {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, n));
        let mut client = Http::from_source(haproxy.addr, ip);
        let login = client.api_post("/login", &[("username", &user), ("password", PASSWORD)]);
        assert_eq!(login.status, 200, "{}", login.text());
        let token = login.json()["data"]["token"].as_str().unwrap().to_owned();
        assert_eq!(session_ip(&stack, &token), ip.to_string(), "a connection of another client was reused");
        clients.push(client);
    }
    let mut again = Http::from_source(haproxy.addr, client_ip);
    let profile = again.request("GET", "/profile", &[("Authorization", &format!("Bearer {token}"))], b"");
    assert_eq!(profile.status, 200, "{}", profile.text());
    // HAProxy's health checks carry the header too (send-proxy-v2 applies to
    // them): they are answered 200, and nothing from it was refused unread.
    let metrics = || Http::new(stack.addr).get("/metrics").text();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics().contains("usermgmt_http_requests_total{endpoint=\"/healthz\",status=\"200\"}") {
        assert!(Instant::now() < deadline, "no health check came");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!metrics().contains("usermgmt_http_requests_total{endpoint=\"unread\""), "{}", metrics());
    // Nothing sent without the header gets in from HAProxy's address.
    let mut direct = from_proxy(&stack);
    assert_eq!(send(&mut direct, "GET", "/healthz", None, "").status, 400);
}
