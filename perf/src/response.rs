//! Just enough HTTP/1.1 response parsing for a load generator: the status, the
//! body by `Content-Length`, and whether the server will close the connection.
//!
//! Answers arrive in pieces; [`parse`] is called on everything received so far
//! and returns `Ok(None)` until one whole response is there.

use std::{fmt, ops::Range};

/// Headers looked at per response; more is a malformed answer for this API.
const MAX_HEADERS: usize = 32;

/// The largest response accepted (head and body). The API's answers are a few
/// hundred bytes; anything near this is a bug worth reporting, not buffering.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// One complete response inside the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Where the body lies in the buffer.
    pub body: Range<usize>,
    /// Bytes of the buffer this response used (head and body).
    pub len: usize,
    /// The server said `Connection: close` (or spoke HTTP/1.0 without keep-alive).
    pub close: bool,
}

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The head is not valid HTTP.
    Malformed,
    /// No `Content-Length`, or an unusable one (chunked bodies are not expected here).
    NoLength,
    /// Longer than [`MAX_RESPONSE_LEN`].
    TooLarge,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParseError::Malformed => "malformed response head",
            ParseError::NoLength => "response without a usable Content-Length",
            ParseError::TooLarge => "response too large",
        })
    }
}

impl std::error::Error for ParseError {}

/// Parses the response at the start of `buf`.
///
/// # Errors
///
/// A [`ParseError`] when the bytes cannot become a valid response.
pub fn parse(buf: &[u8]) -> Result<Option<Response>, ParseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Response::new(&mut headers);
    let head_len = match head.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_LEN => return Err(ParseError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ParseError::Malformed),
    };
    let status = head.code.ok_or(ParseError::Malformed)?;
    let mut close = head.version == Some(0);
    let mut length = None;
    for header in head.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value).map_err(|_| ParseError::NoLength)?;
            let n: usize = value.trim().parse().map_err(|_| ParseError::NoLength)?;
            if length.is_some_and(|m| m != n) {
                return Err(ParseError::NoLength);
            }
            length = Some(n);
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = header.value;
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ParseError::NoLength);
        }
    }
    // 1xx, 204 and 304 have no body by definition.
    let length = match status {
        100..=199 | 204 | 304 => length.unwrap_or(0),
        _ => length.ok_or(ParseError::NoLength)?,
    };
    let len = head_len.checked_add(length).filter(|&n| n <= MAX_RESPONSE_LEN).ok_or(ParseError::TooLarge)?;
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(Response { status, body: head_len..len, len, close }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"code\":0}\n";

    #[test]
    fn whole_response_is_found_with_its_body() {
        let r = parse(OK).unwrap().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(&OK[r.body.clone()], b"{\"code\":0}\n");
        assert_eq!(r.len, OK.len());
        assert!(!r.close);
    }

    #[test]
    fn split_at_every_byte_it_waits_until_the_last() {
        for cut in 0..OK.len() {
            assert_eq!(parse(&OK[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(OK).unwrap().is_some());
    }

    #[test]
    fn bytes_after_the_response_are_not_consumed() {
        let mut two = OK.to_vec();
        two.extend_from_slice(OK);
        assert_eq!(parse(&two).unwrap().unwrap().len, OK.len());
    }

    #[test]
    fn close_is_noticed() {
        let r =
            parse(b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert_eq!((r.status, r.close), (503, true));
        let old = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap().unwrap();
        assert!(old.close);
        let kept = parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!kept.close);
    }

    #[test]
    fn unusable_answers_are_errors() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n\r\n"), Err(ParseError::NoLength));
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), Err(ParseError::NoLength));
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ParseError::NoLength)
        );
        assert_eq!(parse(b"SSH-2.0-OpenSSH\r\n\r\n"), Err(ParseError::Malformed));
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n"), Err(ParseError::TooLarge));
        assert_eq!(parse(&vec![b'a'; MAX_RESPONSE_LEN]), Err(ParseError::Malformed));
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        while endless.len() < MAX_RESPONSE_LEN {
            endless.extend_from_slice(b"X: y\r\n");
        }
        assert!(parse(&endless).is_err());
    }

    #[test]
    fn no_content_needs_no_length() {
        assert_eq!(parse(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap().unwrap().len, 27);
    }
}
