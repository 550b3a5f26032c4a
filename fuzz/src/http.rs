//! Target `http`: the HTTP/1.1 request head parser, the request reader and the
//! body decoders behind it.
//!
//! Each input is first given whole to the byte-level head parser,
//! [`request::parse_head`]. Then it is read as the server reads a connection:
//! an [`HttpConnection`] over an in-memory [`Transport`] that hands out the
//! input and then reports end of file, with [`HttpConnection::read_head`] and
//! [`HttpConnection::read_request`] under the server's own body limits
//! ([`router::body_limit`]), pipelined requests included. Each request is then
//! decoded as the handlers would: fields from the body (urlencoded, JSON,
//! multipart, raw image) and from the query string, the session credential and
//! the CSRF check. No socket is involved, so a run is repeatable and uses no
//! ports.
//!
//! Properties: nothing panics; a complete head is at most `MAX_HEAD_LEN` bytes,
//! parses the same without the bytes after it and is incomplete one byte short;
//! the connection reads the same first head as the byte parser, and refuses
//! what it refuses; a body is exactly as long as its Content-Length and never
//! over its limit; "too large" is only said of a body over its limit; the path
//! is a prefix of the target and starts with `/`; and form encoding round-trips
//! the path.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use httpserver::body_budget::BodyBudget;
use httpserver::connection::{HttpConnection, Timeouts, Transport};
use httpserver::input::Fields;
use httpserver::request::{self, Body, Framing, Head, MAX_HEAD_LEN, RequestError};
use httpserver::{csrf, form, router, session_cookie};

/// Longest input used; the rest is ignored. Past the 16 KiB head cap and the
/// 16 KiB body cap, so that both limits are reached.
pub const MAX_INPUT: usize = 40 * 1024;

/// Most requests read from one input, so a long pipeline stays cheap.
const MAX_REQUESTS: usize = 8;

/// Never reached: reads from [`Replay`] do not wait.
const TIMEOUTS: Timeouts =
    Timeouts { idle: Duration::from_secs(5), head: Duration::from_secs(5), body: Duration::from_secs(5) };

/// A client connection in memory: reads hand out the input, then end of file,
/// as a socket does once the client has sent everything and shut down its
/// writing side; what the server writes (a `100 Continue`) is dropped.
#[derive(Debug)]
struct Replay<'a> {
    input: &'a [u8],
}

impl Read for Replay<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.input.read(out)
    }
}

impl Write for Replay<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for Replay<'_> {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// Parses `data` as the server would.
///
/// # Panics
///
/// When the parser, the reader or a decoder panics or a property breaks.
pub fn run(data: &[u8]) {
    requests_read(data);
}

/// Like [`run`], and tells how many requests were read whole (for the seed
/// corpus check: every seed must be a request the server accepts).
///
/// # Panics
///
/// When the parser, the reader or a decoder panics or a property breaks.
pub fn requests_read(data: &[u8]) -> usize {
    let data = &data[..data.len().min(MAX_INPUT)];
    let first = check_head_parser(data);
    let mut conn = HttpConnection::new(Replay { input: data }, TIMEOUTS, Arc::new(BodyBudget::default()));
    match (&first, conn.read_head()) {
        (Ok(Some(expected)), Ok(Some(head))) => {
            assert_eq!(&head, expected, "the connection read another head than parse_head");
            serve(conn, head)
        }
        (Err(_), Err(_)) | (Ok(None), Ok(None) | Err(RequestError::Closed)) => 0,
        (first, read) => panic!("parse_head gave {first:?} but the connection read {read:?}"),
    }
}

/// Checks [`request::parse_head`] on the whole input and returns its result.
fn check_head_parser(data: &[u8]) -> Result<Option<Head>, RequestError> {
    let Some((head, len)) = request::parse_head(data)? else {
        return Ok(None);
    };
    assert!(len <= MAX_HEAD_LEN && len <= data.len(), "head of {len} bytes in {}", data.len());
    match request::parse_head(&data[..len]) {
        Ok(Some((alone, alone_len))) => {
            assert_eq!((&alone, alone_len), (&head, len), "the bytes after the head changed it")
        }
        other => panic!("the head alone parses as {other:?}"),
    }
    let short = request::parse_head(&data[..len - 1]);
    assert!(matches!(short, Ok(None)), "a head one byte short parses as {short:?}");
    Ok(Some(head))
}

/// Reads and decodes requests, `head` first, until the input ends or one is
/// refused, and returns how many were read whole.
fn serve(mut conn: HttpConnection<Replay<'_>>, head: Head) -> usize {
    let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut head = head;
    for read in 0..MAX_REQUESTS {
        let path = head.path().to_owned();
        assert!(
            path.starts_with('/') && head.target().starts_with(&path),
            "path {path:?} of {:?}",
            head.target()
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
        head = match conn.read_head() {
            Ok(Some(next)) => next,
            Ok(None) | Err(_) => return read + 1,
        };
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
