//! Target `http`: the HTTP/1.1 request reader and the body decoders behind it.
//!
//! httpserver reads requests only from a `TcpStream` ([`HttpConnection`]), and
//! the head parser (`Head::from_parsed` and `framing` in `request.rs`) is
//! private, so the target does what the server does: it writes the input into
//! a connected socket, closes the writing side, and reads requests from the
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

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpStream};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use httpserver::input::Fields;
use httpserver::request::{Body, BodyBudget, Framing, HttpConnection, Timeouts};
use httpserver::{csrf, form, router, session_cookie};

/// Longest input used; the rest is ignored. Past the 16 KiB head cap and the
/// 16 KiB body cap, and well inside a Unix socket's send buffer (about 200 KiB
/// by default), so the whole input is written before the reader starts and a
/// run is repeatable (what the fuzzer reports as "stability").
pub const MAX_INPUT: usize = 40 * 1024;

/// Most requests read from one input, so a long pipeline stays cheap.
const MAX_REQUESTS: usize = 8;

/// Generous next to a local write; no input waits for them, since the writing
/// side is shut down after the input.
const TIMEOUTS: Timeouts =
    Timeouts { idle: Duration::from_secs(5), head: Duration::from_secs(5), body: Duration::from_secs(5) };

/// A connected pair of stream sockets, the server's end typed as the
/// `TcpStream` that [`HttpConnection`] takes.
///
/// A Unix socket pair rather than a loopback TCP connection: the reader sees
/// the same stream semantics (partial reads, EOF after the peer's shutdown,
/// read timeouts), but no port is used and nothing lingers in TIME_WAIT, which
/// at a thousand inputs a second would tie up tens of thousands of loopback
/// ports that other programs on the machine need.
fn socket_pair() -> (UnixStream, TcpStream) {
    let (client, server) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(e) => panic!("cannot create a socket pair: {e}"),
    };
    // SAFETY: the descriptor is an open stream socket whose ownership moves
    // into the TcpStream; HttpConnection only reads, writes and sets timeouts
    // on it, which behave the same on a Unix stream socket.
    let server = unsafe { TcpStream::from_raw_fd(server.into_raw_fd()) };
    (client, server)
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
    let (mut client, server) = socket_pair();
    if let Err(e) = client.write_all(data).and_then(|()| client.shutdown(Shutdown::Write)) {
        panic!("cannot write {} bytes to the socket pair: {e}", data.len());
    }
    // The client end stays open while the server reads, so that a
    // `100 Continue` written to it lands in its buffer instead of failing.
    let read = serve(HttpConnection::new(server, TIMEOUTS, Arc::new(BodyBudget::default())));
    drop(client);
    read
}

/// Reads and decodes requests until the input ends or one is refused, and
/// returns how many were read whole.
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
