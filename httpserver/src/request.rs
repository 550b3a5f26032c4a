//! One HTTP/1.1 request: its head, how its body is framed, and what can be
//! wrong with it.
//!
//! The head is parsed with `httparse` each time more bytes arrive, until it is
//! complete; it may be at most [`MAX_HEAD_LEN`] bytes with [`MAX_HEADERS`] headers
//! (431 otherwise). The body is framed by Content-Length or chunked
//! Transfer-Encoding, never both (400), and capped per endpoint (413).
//! Reading a request from a socket within its time limits is
//! [`crate::connection`]'s job, and the memory large bodies may hold is
//! [`crate::body_budget`]'s.
//!
//! The head parser itself, [`parse_head`], works on bytes alone, so it can be
//! driven without a socket (the unit tests and the `http` fuzz target do).

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::ops::Range;

use crate::body_budget::{BudgetError, Reservation};
use crate::chunked::ChunkError;
use crate::error::{Failure, HttpError};
use crate::peer_closed::ClientLink;

/// Largest request head (request line and headers). 16 KiB holds any real
/// browser's headers with room for large cookies; more is an attack or a bug.
pub const MAX_HEAD_LEN: usize = 16 * 1024;

/// Most headers in one request. Browsers send about 15.
pub const MAX_HEADERS: usize = 64;

/// Largest body for every endpoint but the upload: a form with a username, a
/// password and a nickname is well under 1 KiB.
pub const MAX_BODY_LEN: usize = 16 * 1024;

/// Largest upload body: one picture at its cap plus room for the multipart
/// framing and the small fields beside it.
pub const MAX_UPLOAD_BODY_LEN: usize = proto::MAX_IMAGE_LEN + 64 * 1024;

/// A body over its cap but under this, sent without `Expect: 100-continue`, is
/// read and thrown away so that a browser sees a proper "too large" page instead
/// of a reset connection. Larger ones get a bare 413 and the connection closes.
pub const MAX_DISCARD_LEN: usize = 16 * 1024 * 1024;

/// Request methods this server routes; anything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`: like GET, without the body.
    Head,
    /// `POST`
    Post,
    /// Any other method; answered with 405 (or 404).
    Other,
}

impl Method {
    /// The method's name (`OTHER` for any method this server does not route).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Other => "OTHER",
        }
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head.
///
/// It owns one copy of the head's bytes as received, header names lowercased
/// in place, and finds the request target and each header by its place in
/// them: two allocations per request (the bytes and the places) where a
/// `String` per name and a `Vec` per value made thirty, which thousands of
/// connection threads' allocators paid dearly for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// True for HTTP/1.1, false for HTTP/1.0.
    pub http11: bool,
    /// How the body is delimited.
    pub framing: Framing,
    /// The client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// The head's bytes, names lowercased.
    raw: Box<[u8]>,
    /// Where the target is in `raw` (valid UTF-8: `httparse` checked it).
    target: Range<usize>,
    /// Where each header's name and value are in `raw`, in the order sent.
    headers: Vec<(Range<usize>, Range<usize>)>,
}

impl Head {
    /// The request target as sent: path and optional query.
    pub fn target(&self) -> &str {
        std::str::from_utf8(&self.raw[self.target.clone()]).unwrap_or("/")
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        let target = self.target();
        target.split_once('?').map_or(target, |(path, _)| path)
    }

    /// The first value of header `name` (lowercase), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.values(name).next().and_then(|v| std::str::from_utf8(v).ok()).map(str::trim)
    }

    /// Every value of header `name` (lowercase), as sent.
    fn values<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| &self.raw[n.clone()] == name.as_bytes())
            .map(|(_, v)| &self.raw[v.clone()])
    }

    /// Whether the connection may serve another request after this one: HTTP/1.1
    /// unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let has = |token: &str| {
            self.values("connection")
                .filter_map(|v| std::str::from_utf8(v).ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if self.http11 { !has("close") } else { has("keep-alive") }
    }

    /// Builds a head from a complete parse of the `len` bytes at the start of
    /// `buf`, checking what httparse leaves to us.
    fn from_parsed(buf: &[u8], len: usize, parsed: &httparse::Request<'_, '_>) -> Result<Head, RequestError> {
        let method = match parsed.method {
            Some("GET") => Method::Get,
            Some("HEAD") => Method::Head,
            Some("POST") => Method::Post,
            Some(_) => Method::Other,
            None => return Err(RequestError::Malformed("no method")),
        };
        let target = parsed.path.unwrap_or_default();
        if !target.starts_with('/') {
            // Only origin-form: this server is no proxy.
            return Err(RequestError::Malformed("request target must start with /"));
        }
        let head = &buf[..len];
        let mut raw: Box<[u8]> = head.into();
        let headers: Vec<(Range<usize>, Range<usize>)> = parsed
            .headers
            .iter()
            .map(|h| (place_in(head, h.name.as_bytes()), place_in(head, h.value)))
            .collect();
        for (name, _) in &headers {
            raw[name.clone()].make_ascii_lowercase();
        }
        let mut head = Head {
            method,
            http11: parsed.version == Some(1),
            framing: Framing::None,
            expect_continue: false,
            raw,
            target: place_in(head, target.as_bytes()),
            headers,
        };
        let hosts = head.values("host").count();
        if hosts > 1 || (head.http11 && hosts == 0) {
            return Err(RequestError::Malformed("HTTP/1.1 needs exactly one Host header"));
        }
        head.framing = framing(&head)?;
        head.expect_continue = head.http11
            && head.values("expect").any(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
        Ok(head)
    }
}

/// Where `part`, a slice `httparse` returned, lies in `head`, the bytes it
/// parsed (an empty range for a slice that is not in them, which a parser
/// that borrows every slice from its input never returns).
fn place_in(head: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if end <= head.len() => start..end,
        _ => 0..0,
    }
}

#[cfg(test)]
impl Head {
    /// A head as if parsed from `method target HTTP/1.1` with a Host and `headers`.
    pub(crate) fn for_tests(method: &str, target: &str, headers: &[(&str, &str)]) -> Head {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: localhost:1088\r\n");
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut slots);
        assert!(parsed.parse(raw.as_bytes()).is_ok_and(|s| s.is_complete()), "bad test head {raw:?}");
        match Head::from_parsed(raw.as_bytes(), raw.len(), &parsed) {
            Ok(head) => head,
            Err(e) => panic!("bad test head {raw:?}: {e}"),
        }
    }
}

/// Parses the request head at the start of `buf`, the bytes received so far.
///
/// Returns `Ok(None)` while the head is incomplete and still under
/// [`MAX_HEAD_LEN`], or the head and its length in bytes (the body, or the next
/// request, starts there). Needs no socket: [`crate::connection::HttpConnection::read_head`] calls
/// it each time more bytes arrive, and the fuzz target calls it directly.
///
/// # Errors
///
/// [`RequestError::HeadTooLarge`] or [`RequestError::TooManyHeaders`] past the
/// limits, [`RequestError::Malformed`] for anything that is not an HTTP/1.x
/// request head, and the framing errors of [`Head`] (conflicting lengths, an
/// unsupported transfer coding).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_LEN => {
            Ok(Some((Head::from_parsed(buf, len, &parsed)?, len)))
        }
        Ok(httparse::Status::Complete(_)) => Err(RequestError::HeadTooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_LEN => Err(RequestError::HeadTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(RequestError::TooManyHeaders),
        Err(e) => Err(RequestError::Malformed(syntax_error(e))),
    }
}

/// What was wrong with a head that `httparse` refused, in words for the client.
fn syntax_error(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::Token => "the request line is not a method, a target and a version",
        httparse::Error::Version => "the version is not HTTP/1.0 or HTTP/1.1",
        httparse::Error::HeaderName => "a header line is not a name, a colon and a value",
        httparse::Error::HeaderValue => "a header value has a control character",
        httparse::Error::NewLine => "a line does not end in CRLF",
        httparse::Error::Status | httparse::Error::TooManyHeaders => "not an HTTP/1.x request head",
    }
}

/// Works out the body framing from Content-Length and Transfer-Encoding.
fn framing(head: &Head) -> Result<Framing, RequestError> {
    let mut length: Option<usize> = None;
    for value in head.values("content-length") {
        // A list such as "5, 5" is allowed if every member agrees.
        for item in value.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
                return Err(RequestError::Malformed("Content-Length is not a number of bytes"));
            }
            // A number too big for usize is still a length, just one over every
            // cap: it saturates, and the body is refused as too large (413).
            let n =
                item.iter().fold(0usize, |n, d| n.saturating_mul(10).saturating_add(usize::from(d - b'0')));
            match length {
                Some(seen) if seen != n => return Err(RequestError::ConflictingLength),
                _ => length = Some(n),
            }
        }
    }
    let codings: Vec<String> = head
        .values("transfer-encoding")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|t| String::from_utf8_lossy(t.trim_ascii()).to_ascii_lowercase())
        .collect();
    if codings.is_empty() {
        return Ok(length.map_or(Framing::None, Framing::Length));
    }
    if length.is_some() {
        // The classic request-smuggling shape: refuse rather than pick one.
        return Err(RequestError::ConflictingLength);
    }
    if !head.http11 {
        return Err(RequestError::Malformed("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if codings != ["chunked"] {
        return Err(RequestError::UnsupportedTransferEncoding);
    }
    Ok(Framing::Chunked)
}

/// The body as the handlers get it.
#[derive(Debug)]
pub enum Body {
    /// All of it.
    Complete(Vec<u8>),
    /// It was over the endpoint's cap, read and dropped (see [`MAX_DISCARD_LEN`]).
    TooLarge,
}

/// A whole request.
#[derive(Debug)]
pub struct Request {
    /// The head.
    pub head: Head,
    /// The body.
    pub body: Body,
    /// The client's address (IPv4-mapped IPv6 addresses shown as IPv4).
    pub peer: IpAddr,
    /// The connection it came on, to ask whether the client is still there
    /// (`None` for requests made up by tests).
    pub client_link: Option<ClientLink>,
    /// Holds the body's share of the [`crate::body_budget::BodyBudget`] until
    /// the request is dropped.
    _reservation: Option<Reservation>,
}

impl Request {
    /// Assembles a request (used by the server and by tests).
    pub fn new(head: Head, body: Body, peer: IpAddr) -> Request {
        Request::holding(head, body, peer, None)
    }

    /// Assembles a request whose body holds `reservation` until it is dropped.
    pub(crate) fn holding(head: Head, body: Body, peer: IpAddr, reservation: Option<Reservation>) -> Request {
        Request { head, body, peer: peer.to_canonical(), client_link: None, _reservation: reservation }
    }

    /// The request, able to ask whether its client is still there on `link`.
    pub fn with_client_link(mut self, link: ClientLink) -> Request {
        self.client_link = Some(link);
        self
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.head.path()
    }

    /// The query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.head.target().split_once('?').map(|(_, query)| query)
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }
}

/// What a client is told when its address already holds its whole share of
/// the upload budget: waiting helps only once its other uploads finish.
const ADDRESS_BUSY_MESSAGE: &str = "Too many uploads from your address are in progress. \
     Please wait for them to finish and try again.";

/// Why a request could not be read.
#[derive(Debug)]
pub enum RequestError {
    /// The peer closed the connection in the middle of a request.
    Closed,
    /// The socket failed.
    Io(io::Error),
    /// The head or the body did not arrive in time.
    Timeout,
    /// The head is over [`MAX_HEAD_LEN`].
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] headers.
    TooManyHeaders,
    /// Not valid HTTP/1.x.
    Malformed(&'static str),
    /// Two different Content-Lengths, or Content-Length with Transfer-Encoding.
    ConflictingLength,
    /// A Transfer-Encoding other than `chunked`.
    UnsupportedTransferEncoding,
    /// The body is over its cap and was not read.
    BodyTooLarge,
    /// The chunked body is malformed.
    BadChunk(ChunkError),
    /// The memory budget for large bodies, or the client's share of it, is spent.
    Busy(BudgetError),
}

impl RequestError {
    /// The error to answer with, or `None` when the connection should just close.
    pub fn http_error(&self) -> Option<HttpError> {
        Some(match self {
            RequestError::Closed | RequestError::Io(_) => return None,
            RequestError::Timeout => HttpError::RequestTimeout,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => HttpError::HeadTooLarge,
            RequestError::Malformed(_) | RequestError::BadChunk(_) => HttpError::MalformedRequest,
            RequestError::ConflictingLength => HttpError::ConflictingLength,
            RequestError::UnsupportedTransferEncoding => HttpError::UnsupportedTransferEncoding,
            RequestError::BodyTooLarge => HttpError::BodyTooLarge,
            RequestError::Busy(_) => HttpError::Busy,
        })
    }

    /// What the client is told, or `None` when the connection should just
    /// close. A malformed head or chunked body says what was wrong with it, so
    /// the author of a client can fix it; those details are about the syntax
    /// the client sent, never about the server.
    pub fn failure(&self) -> Option<Failure> {
        let kind = self.http_error()?;
        Some(match self {
            RequestError::Malformed(why) => {
                Failure::http_because(kind, format!("The request is not valid HTTP: {why}."))
            }
            RequestError::BadChunk(e) => {
                Failure::http_because(kind, format!("The chunked body is malformed: {e}."))
            }
            RequestError::Busy(BudgetError::AddressShareSpent) => {
                Failure::http_because(kind, ADDRESS_BUSY_MESSAGE)
            }
            _ => Failure::http(kind),
        })
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Closed => f.write_str("peer closed the connection mid-request"),
            RequestError::Io(e) => write!(f, "socket error: {e}"),
            RequestError::Timeout => f.write_str("request did not arrive in time"),
            RequestError::HeadTooLarge => write!(f, "request head over {MAX_HEAD_LEN} bytes"),
            RequestError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} headers"),
            RequestError::Malformed(why) => write!(f, "malformed request: {why}"),
            RequestError::ConflictingLength => f.write_str("conflicting body lengths"),
            RequestError::UnsupportedTransferEncoding => f.write_str("unsupported transfer coding"),
            RequestError::BodyTooLarge => f.write_str("body over its cap"),
            RequestError::BadChunk(e) => write!(f, "bad chunked body: {e}"),
            RequestError::Busy(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RequestError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RequestError::Io(e) => Some(e),
            RequestError::BadChunk(e) => Some(e),
            RequestError::Busy(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Head, RequestError> {
        match parse_head(raw.as_bytes()) {
            Ok(Some((head, len))) => {
                assert_eq!(len, raw.len(), "the whole test head is used");
                Ok(head)
            }
            Ok(None) => panic!("test head {raw:?} is incomplete"),
            Err(e) => Err(e),
        }
    }

    #[test]
    fn a_head_is_incomplete_until_its_blank_line_and_errors_are_told_apart() {
        let raw = b"GET /home HTTP/1.1\r\nHost: a\r\n\r\nNEXT";
        for cut in 0..raw.len() - 4 {
            assert!(matches!(parse_head(&raw[..cut]), Ok(None)), "cut at {cut}");
        }
        let (head, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!((head.path(), &raw[len..]), ("/home", &b"NEXT"[..]));
        assert!(matches!(parse_head(b"GET / HTTP/1.1\r\nHo st: a\r\n\r\n"), Err(RequestError::Malformed(_))));
        assert!(matches!(parse_head(&[b'a'; MAX_HEAD_LEN]), Err(RequestError::HeadTooLarge)));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_LEN));
        assert!(matches!(parse_head(long.as_bytes()), Err(RequestError::HeadTooLarge)));
    }

    #[test]
    fn a_plain_post_has_its_length_and_path() {
        let head = parse("POST /login?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path(), "/login");
        assert_eq!(head.framing, Framing::Length(12));
        assert!(head.keep_alive());
    }

    #[test]
    fn headers_are_found_by_lowercase_name_with_their_values_as_sent() {
        let head = parse(
            "GET /qr/wait?key=K&seen=pending HTTP/1.1\r\nHOST: a\r\nX-Empty:\r\n\
             User-Agent: Mozilla/5.0 (X11)\r\nCookie: A=1\r\ncookie: B=2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.target(), "/qr/wait?key=K&seen=pending");
        assert_eq!(head.path(), "/qr/wait");
        assert_eq!(head.header("host"), Some("a"));
        assert_eq!(head.header("user-agent"), Some("Mozilla/5.0 (X11)"));
        assert_eq!(head.header("x-empty"), Some(""));
        assert_eq!(head.header("cookie"), Some("A=1"), "the first of repeated headers");
        assert_eq!(head.header("Cookie"), None, "names are asked for in lowercase");
        assert_eq!(head.header("accept"), None);
        let request = Request::new(head, Body::Complete(Vec::new()), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(request.query(), Some("key=K&seen=pending"));
    }

    #[test]
    fn lengths_must_agree_and_never_meet_transfer_encoding() {
        let same = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(same.unwrap().framing, Framing::Length(5));
        let two = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        assert!(matches!(two, Err(RequestError::ConflictingLength)));
        let both =
            parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(both, Err(RequestError::ConflictingLength)));
        for bad in ["-1", "+5", "5a", "", "0x10", "1 2"] {
            let raw = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {bad}\r\n\r\n");
            assert!(matches!(parse(&raw), Err(RequestError::Malformed(_))), "{bad:?}");
        }
        // Past 64 bits it is still a number, one over every cap.
        let huge = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n");
        assert_eq!(huge.unwrap().framing, Framing::Length(usize::MAX));
    }

    #[test]
    fn only_plain_chunked_is_understood() {
        let chunked = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n");
        assert_eq!(chunked.unwrap().framing, Framing::Chunked);
        let gzip = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert!(matches!(gzip, Err(RequestError::UnsupportedTransferEncoding)));
        let old = parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(old, Err(RequestError::Malformed(_))));
    }

    #[test]
    fn host_is_required_once_in_http11_and_targets_are_paths() {
        assert!(matches!(parse("GET / HTTP/1.1\r\n\r\n"), Err(RequestError::Malformed(_))));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
        assert!(parse("GET / HTTP/1.0\r\n\r\n").is_ok());
        assert!(matches!(
            parse("GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
    }

    #[test]
    fn keep_alive_follows_the_version_defaults() {
        assert!(!parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap().keep_alive());
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive());
        assert!(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().keep_alive());
    }
}
