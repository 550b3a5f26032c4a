//! Building responses and writing them to the socket.
//!
//! Every response carries `Content-Length` (never chunked), `Date`, and
//! `X-Content-Type-Options: nosniff`; pages add the security headers in
//! [`PAGE_SECURITY_HEADERS`]. A response in memory is written with a single
//! `write_all` of head and body together, so a small reply is one packet.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hostsupport::calendar::civil_from_days;
use serde::Serialize;

use crate::error::Problem;

/// The status recorded for a request whose client closed its connection
/// before the answer ([`Response::client_gone`]); never sent.
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Headers every HTML page carries. The policy allows only this origin's
/// stylesheet, images and script files (the log-in page's `static/qr.js`),
/// no inline script, no framing, and forms that post only here.
pub const PAGE_SECURITY_HEADERS: [(&str, &str); 3] = [
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'",
    ),
    ("Referrer-Policy", "same-origin"),
    ("X-Frame-Options", "DENY"),
];

/// Headers most responses carry besides the fixed ones (type, caching,
/// a cookie or two, the request id, a page's security headers): the list is
/// allocated once at this size.
const HEADERS_USUALLY: usize = 8;

/// Bytes of the head's fixed lines at most: status line, `Date`,
/// `Content-Length`, `X-Content-Type-Options`, `Connection` and the blank line
/// (180 with the longest reason phrase and a 20-digit length).
const FIXED_HEAD_LEN: usize = 192;

/// What follows the head.
#[derive(Debug)]
pub enum Body {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// A file streamed from disk, of this length.
    File(File, u64),
    /// Bytes shared with a cache (a picture), sent without a copy.
    Shared(Arc<[u8]>),
}

/// A response under construction.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Names and values; a value known when the server was built is
    /// borrowed, not copied.
    headers: Vec<(&'static str, Cow<'static, str>)>,
    body: Body,
    /// Close the connection after this response, whatever the client asked.
    pub close: bool,
    /// Send the head only, as for HEAD, whatever the method: a 304 carries
    /// the `Content-Length` of the body it stands for, and no body.
    bodiless: bool,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::with_capacity(HEADERS_USUALLY),
            body: Body::Bytes(Vec::new()),
            close: false,
            bodiless: false,
        }
    }

    /// Adds a header (repeatable, as `Set-Cookie` needs).
    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body and its type.
    pub fn body(mut self, content_type: &'static str, body: Vec<u8>) -> Response {
        self.body = Body::Bytes(body);
        self.header("Content-Type", content_type)
    }

    /// Streams `file` of `len` bytes as the body.
    pub fn file(mut self, content_type: &'static str, file: File, len: u64) -> Response {
        self.body = Body::File(file, len);
        self.header("Content-Type", content_type)
    }

    /// Sends `bytes`, shared with their owner, as the body.
    pub fn shared(mut self, content_type: &'static str, bytes: Arc<[u8]>) -> Response {
        self.body = Body::Shared(bytes);
        self.header("Content-Type", content_type)
    }

    /// Keeps the body's length in the head but sends no body (a 304 Not
    /// Modified for a body the client holds).
    pub fn without_body(mut self) -> Response {
        self.bodiless = true;
        self
    }

    /// What is "answered" to a client that closed its connection before its
    /// answer was ready: status 499 (nginx's "client closed request"), which
    /// the access log and the metrics record and nobody reads; the connection
    /// is closed.
    pub fn client_gone() -> Response {
        Response::new(CLIENT_CLOSED_REQUEST).closing()
    }

    /// Asks for the connection to be closed after this response.
    pub fn closing(mut self) -> Response {
        self.close = true;
        self
    }

    /// An HTML page with the page security headers.
    pub fn html(status: u16, page: String) -> Response {
        let mut response = Response::new(status).body("text/html; charset=utf-8", page.into_bytes());
        for (name, value) in PAGE_SECURITY_HEADERS {
            response = response.header(name, value);
        }
        response.header("Cache-Control", "no-store")
    }

    /// The success envelope `{"code":0,"message":"ok","data":...}`.
    pub fn json_ok(status: u16, data: &impl Serialize) -> Response {
        #[derive(Serialize)]
        struct Envelope<'a, T> {
            code: u16,
            message: &'static str,
            data: &'a T,
        }
        json(status, &Envelope { code: 0, message: "ok", data })
    }

    /// The error envelope `{"code":N,"message":"..."}` with the problem's status
    /// and, where waiting helps, `Retry-After`.
    pub fn json_problem(problem: &Problem) -> Response {
        #[derive(Serialize)]
        struct Envelope<'a> {
            code: u16,
            message: &'a str,
        }
        let response = json(problem.status, &Envelope { code: problem.code, message: &problem.message });
        with_retry_after(response, problem)
    }

    /// A redirect to a path on this site.
    pub fn redirect(status: u16, location: impl Into<Cow<'static, str>>) -> Response {
        Response::new(status).header("Location", location).header("Cache-Control", "no-store")
    }

    /// Writes the response. `head_only` leaves out the body (for HEAD requests);
    /// `keep_alive` is the client's wish, overridden by [`Response::close`].
    ///
    /// # Errors
    ///
    /// Any socket error; the connection is then unusable.
    pub fn write_to(
        self,
        out: &mut impl Write,
        head_only: bool,
        keep_alive: bool,
        http11: bool,
    ) -> io::Result<()> {
        let body_len = match &self.body {
            Body::Bytes(bytes) => bytes.len() as u64,
            Body::File(_, len) => *len,
            Body::Shared(bytes) => bytes.len() as u64,
        };
        let head_only = head_only || self.bodiless;
        // One buffer for the head and a body in memory, sized once.
        let in_memory = match &self.body {
            Body::Bytes(bytes) if !head_only => bytes.len(),
            _ => 0,
        };
        let header_lines: usize = self.headers.iter().map(|(name, value)| name.len() + value.len() + 4).sum();
        let mut head = Vec::with_capacity(FIXED_HEAD_LEN + header_lines + in_memory);
        let version = if http11 { "HTTP/1.1" } else { "HTTP/1.0" };
        write!(head, "{version} {} {}\r\nDate: ", self.status, reason(self.status))?;
        write_http_date(&mut head, SystemTime::now())?;
        write!(head, "\r\nContent-Length: {body_len}\r\n")?;
        head.extend_from_slice(b"X-Content-Type-Options: nosniff\r\n");
        for (name, value) in &self.headers {
            write!(head, "{name}: {value}\r\n")?;
        }
        if self.close || !keep_alive {
            head.extend_from_slice(b"Connection: close\r\n");
        } else if !http11 {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        head.extend_from_slice(b"\r\n");
        match self.body {
            Body::Bytes(bytes) if !head_only => {
                head.extend_from_slice(&bytes);
                out.write_all(&head)?;
            }
            Body::Shared(bytes) if !head_only => {
                out.write_all(&head)?;
                out.write_all(&bytes)?;
            }
            Body::File(file, len) if !head_only => {
                out.write_all(&head)?;
                let copied = io::copy(&mut io::Read::take(file, len), out)?;
                if copied != len {
                    // The file shrank under us: the promised length cannot be kept.
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than announced"));
                }
            }
            _ => out.write_all(&head)?,
        }
        out.flush()
    }
}

fn json(status: u16, value: &impl Serialize) -> Response {
    // Serialising these plain structs cannot fail; an empty body would still be valid HTTP.
    let body = serde_json::to_vec(value).unwrap_or_default();
    Response::new(status).body("application/json", body).header("Cache-Control", "no-store")
}

/// Adds `Retry-After` when the problem has one.
pub fn with_retry_after(response: Response, problem: &Problem) -> Response {
    match problem.retry_after {
        Some(secs) => response.header("Retry-After", secs.to_string()),
        None => response,
    }
}

/// The reason phrase for the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// Writes `time` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), into
/// the head being built rather than a `String` of its own.
fn write_http_date(out: &mut impl Write, time: SystemTime) -> io::Result<()> {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let rem = secs % 86_400;
    write!(
        out,
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn http_date(time: SystemTime) -> String {
        let mut text = Vec::new();
        write_http_date(&mut text, time).unwrap();
        String::from_utf8(text).unwrap()
    }

    #[test]
    fn dates_are_imf_fixdate() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(UNIX_EPOCH), "Thu, 01 Jan 1970 00:00:00 GMT");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(http_date(leap), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn a_written_response_has_length_nosniff_and_body() {
        let mut out = Vec::new();
        Response::json_ok(200, &serde_json::json!({"a": 1})).write_to(&mut out, false, true, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 40\r\n"), "{text}");
        assert!(text.contains("X-Content-Type-Options: nosniff\r\n"));
        assert!(!text.contains("Connection: close"));
        assert!(text.ends_with("\r\n\r\n{\"code\":0,\"message\":\"ok\",\"data\":{\"a\":1}}"));
    }

    #[test]
    fn head_requests_get_the_length_but_no_body() {
        let mut out = Vec::new();
        Response::html(200, "<p>hi</p>".into()).write_to(&mut out, true, false, true).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 9\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.contains("frame-ancestors 'none'"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
