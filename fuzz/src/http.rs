//! Target `http`: the HTTP/1.1 request reader and the body decoders behind it.
//!
//! httpserver reads requests only from a `TcpStream` ([`HttpConnection`]), and
//! the head parser (`Head::from_parsed` and `framing` in `request.rs`) is
//! private, so the target does what the server does: it writes the input into
//! a loopback connection, closes the writing side, and reads requests from the
//! other end with [`HttpConnection::read_head`] and
//! [`HttpConnection::read_request`] under the server's own body limits
//! ([`router::body_limit`]), pipelined requests included. Each request is then
//! decoded as the handlers would: fields from the body (urlencoded, JSON,
//! multipart, raw image) and from the query string, the session credential and
//! the CSRF check.
//!
//! Properties: nothing panics; a body is exactly as long as its Content-Length
//! and never over its limit; "too large" is only said of a body over its limit;
//! the path is a prefix of the target and starts with `/`; and form encoding
//! round-trips the path.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use httpserver::input::Fields;
use httpserver::request::{Body, BodyBudget, Framing, HttpConnection, Timeouts};
use httpserver::{csrf, form, router, session_cookie};

/// Longest input used; the rest is ignored. Past the 16 KiB head cap and the
/// 16 KiB body cap, and small enough for one loopback socket buffer, so the
/// whole input is usually buffered before the reader starts, which keeps runs
/// repeatable (the fuzzer measures that as "stability").
pub const MAX_INPUT: usize = 40 * 1024;

/// Most requests read from one input, so a long pipeline stays cheap.
const MAX_REQUESTS: usize = 8;

/// How long the reader waits for the writer to finish before reading anyway.
const WRITE_WAIT: Duration = Duration::from_millis(200);

/// Generous next to a loopback write; no input waits for them, since the writing
/// side is shut down after the input.
const TIMEOUTS: Timeouts =
    Timeouts { idle: Duration::from_secs(5), head: Duration::from_secs(5), body: Duration::from_secs(5) };

/// One listener for the whole process; each input gets a new connection.
fn listener() -> &'static TcpListener {
    static LISTENER: OnceLock<TcpListener> = OnceLock::new();
    LISTENER.get_or_init(|| match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) {
        Ok(listener) => listener,
        Err(e) => panic!("cannot listen on loopback: {e}"),
    })
}

/// A connected pair: (client, server).
fn connect() -> (TcpStream, TcpStream) {
    let listener = listener();
    let addr = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => panic!("listener has no address: {e}"),
    };
    let client = match TcpStream::connect(addr) {
        Ok(client) => client,
        Err(e) => panic!("cannot connect to {addr}: {e}"),
    };
    match listener.accept() {
        Ok((server, _)) => (client, server),
        Err(e) => panic!("cannot accept: {e}"),
    }
}

/// Sends `data` as a client would and reads it as the server would.
///
/// # Panics
///
/// When the reader or a decoder panics or a property breaks.
pub fn run(data: &[u8]) {
    requests_read(data);
}

/// Like [`run`], and tells how many requests were read whole (for the seed
/// corpus check: every seed must be a request the server accepts).
///
/// # Panics
///
/// When the reader or a decoder panics or a property breaks.
pub fn requests_read(data: &[u8]) -> usize {
    let data = &data[..data.len().min(MAX_INPUT)];
    let (mut client, server) = connect();
    let (written, wait) = mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let _ = client.write_all(data);
            let _ = client.shutdown(Shutdown::Write);
            let _ = written.send(());
            // Drain any `100 Continue` until the server closes, so the close is
            // a clean FIN rather than a reset that would change what it reads.
            let mut sink = [0u8; 1024];
            while matches!(client.read(&mut sink), Ok(n) if n > 0) {}
        });
        let _ = wait.recv_timeout(WRITE_WAIT);
        serve(HttpConnection::new(server, TIMEOUTS, Arc::new(BodyBudget::default())))
    })
}

/// Reads and decodes requests until the input ends or one is refused, and
/// returns how many were read whole; dropping the connection at the end lets
/// the writer thread finish.
fn serve(mut conn: HttpConnection) -> usize {
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    for read in 0..MAX_REQUESTS {
        let head = match conn.read_head() {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => return read,
        };
        let path = head.path().to_owned();
        assert!(
            path.starts_with('/') && head.target.starts_with(&path),
            "path {path:?} of {:?}",
            head.target
        );
        assert_eq!(form::decode(form::encode(&path).as_bytes()).as_deref(), Ok(path.as_str()));
        let _ = head.keep_alive();
        let framing = head.framing;
        let limit = router::body_limit(&path);
        let Ok(request) = conn.read_request(head, limit, peer) else {
            return read;
        };
        match (&request.body, framing) {
            (Body::Complete(body), Framing::Length(len)) => assert_eq!(body.len(), len, "body length"),
            (Body::Complete(body), Framing::Chunked) => {
                assert!(body.len() <= limit, "chunked body over limit")
            }
            (Body::Complete(body), Framing::None) => assert!(body.is_empty(), "a body without framing"),
            (Body::TooLarge, Framing::Length(len)) => assert!(len > limit, "{len} bytes called too large"),
            (Body::TooLarge, framing) => panic!("too large with framing {framing:?}"),
        }
        decode_fields(&request);
    }
    MAX_REQUESTS
}

/// Runs the handlers' input decoding; every outcome is fine but a panic.
fn decode_fields(request: &httpserver::request::Request) {
    let _ = Fields::from_query(request);
    let _ = session_cookie::credential(request);
    let _ = session_cookie::cookie(request, csrf::CSRF_COOKIE);
    if let Ok(mut fields) = Fields::from_body(request) {
        for api in [false, true] {
            let _ = csrf::check(request, &fields, api, !api);
        }
        let _ = fields.take_file();
    }
}
