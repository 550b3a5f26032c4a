//! Reading requests from one client connection, within limits of size and time.
//!
//! A request head must arrive within the head timeout once its first byte has
//! (408); before that first byte a kept-alive connection may idle for the idle
//! timeout, after which it is closed without a word. The body must arrive
//! within the body timeout. A body over [`MAX_BODY_LEN`] first reserves its
//! length in the [`BodyBudget`], in all and from the client's address (503 when
//! either is spent), before a byte of it is read. Bytes after one request stay
//! buffered for the next, so pipelined requests work.
//!
//! [`HttpConnection`] reads from any [`Transport`], so it can be driven without
//! a socket (the unit tests and the `http` fuzz target do).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::body_budget::{BodyBudget, Reservation};
use crate::chunked::{ChunkError, ChunkedDecoder};
use crate::request::{
    Body, Framing, Head, MAX_BODY_LEN, MAX_DISCARD_LEN, MAX_HEAD_LEN, Request, RequestError, parse_head,
};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;

/// The time limits of [`HttpConnection`].
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Before the first byte of a request.
    pub idle: Duration,
    /// From the first byte of a head to its end.
    pub head: Duration,
    /// For the whole body.
    pub body: Duration,
}

/// The byte stream an [`HttpConnection`] reads requests from: a `TcpStream` in
/// the server, something in memory in tests and the fuzz target.
pub trait Transport: Read + Write {
    /// Bounds each following read; a read that waits longer fails with
    /// `WouldBlock` or `TimedOut`.
    ///
    /// # Errors
    ///
    /// When the stream cannot take the setting.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Bounds each following write, like [`Transport::set_read_timeout`].
    ///
    /// # Errors
    ///
    /// When the stream cannot take the setting.
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

/// The reading side of one client connection, with the bytes received but not
/// yet used.
#[derive(Debug)]
pub struct HttpConnection<S = TcpStream> {
    stream: S,
    buf: Vec<u8>,
    timeouts: Timeouts,
    budget: Arc<BodyBudget>,
}

impl<S: Transport> HttpConnection<S> {
    /// Wraps an accepted stream.
    pub fn new(stream: S, timeouts: Timeouts, budget: Arc<BodyBudget>) -> HttpConnection<S> {
        HttpConnection { stream, buf: Vec::with_capacity(READ_CHUNK), timeouts, budget }
    }

    /// The stream, for writing responses.
    pub fn stream(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Reads the next request head. `Ok(None)` means the client closed the
    /// connection or left it idle past the idle timeout between requests.
    ///
    /// # Errors
    ///
    /// A [`RequestError`]; afterwards the connection should be closed.
    pub fn read_head(&mut self) -> Result<Option<Head>, RequestError> {
        let mut head_deadline = None;
        loop {
            if !self.buf.is_empty() {
                head_deadline.get_or_insert_with(|| Instant::now() + self.timeouts.head);
                if let Some((head, len)) = parse_head(&self.buf)? {
                    self.buf.drain(..len);
                    return Ok(Some(head));
                }
            }
            let idle = head_deadline.is_none();
            let deadline = head_deadline.unwrap_or_else(|| Instant::now() + self.timeouts.idle);
            match self.fill(deadline, MAX_HEAD_LEN) {
                Ok(0) if idle => return Ok(None),
                Ok(0) => return Err(RequestError::Closed),
                Ok(_) => {}
                Err(RequestError::Timeout) if idle => return Ok(None),
                // A reset while idle is an ordinary way for a client to leave.
                Err(RequestError::Io(_)) if idle => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the body that `head` announces, refusing more than `max` bytes, and
    /// returns the whole request.
    ///
    /// # Errors
    ///
    /// A [`RequestError`]; afterwards the connection should be closed.
    pub fn read_request(&mut self, head: Head, max: usize, peer: IpAddr) -> Result<Request, RequestError> {
        let (body, reservation) = self.read_body(&head, max, peer)?;
        Ok(Request::holding(head, body, peer, reservation))
    }

    fn read_body(
        &mut self,
        head: &Head,
        max: usize,
        peer: IpAddr,
    ) -> Result<(Body, Option<Reservation>), RequestError> {
        let deadline = Instant::now() + self.timeouts.body;
        match head.framing {
            Framing::None => Ok((Body::Complete(Vec::new()), None)),
            Framing::Length(len) if len > max => {
                if len > MAX_DISCARD_LEN || head.expect_continue {
                    return Err(RequestError::BodyTooLarge);
                }
                self.discard(len, deadline)?;
                Ok((Body::TooLarge, None))
            }
            Framing::Length(len) => {
                let reservation = self.reserve(peer, len)?;
                self.send_continue(head, len)?;
                let mut body = Vec::with_capacity(len);
                let from_buf = len.min(self.buf.len());
                body.extend(self.buf.drain(..from_buf));
                while body.len() < len {
                    let want = (len - body.len()).min(READ_CHUNK);
                    if self.fill(deadline, want)? == 0 {
                        return Err(RequestError::Closed);
                    }
                    let take = (len - body.len()).min(self.buf.len());
                    body.extend(self.buf.drain(..take));
                }
                Ok((Body::Complete(body), reservation))
            }
            Framing::Chunked => {
                let reservation = self.reserve(peer, max)?;
                self.send_continue(head, 1)?;
                let mut decoder = ChunkedDecoder::new(max);
                let mut body = Vec::new();
                loop {
                    let used = decoder.feed(&self.buf, &mut body).map_err(|e| match e {
                        ChunkError::TooLarge => RequestError::BodyTooLarge,
                        e => RequestError::BadChunk(e),
                    })?;
                    self.buf.drain(..used);
                    if decoder.is_done() {
                        return Ok((Body::Complete(body), reservation));
                    }
                    if self.fill(deadline, READ_CHUNK)? == 0 {
                        return Err(RequestError::Closed);
                    }
                }
            }
        }
    }

    /// Reserves memory for a body over [`MAX_BODY_LEN`] from `peer`; small ones
    /// are already bounded by the connection caps.
    fn reserve(&self, peer: IpAddr, len: usize) -> Result<Option<Reservation>, RequestError> {
        if len <= MAX_BODY_LEN {
            return Ok(None);
        }
        self.budget.reserve(peer, len).map(Some).map_err(RequestError::Busy)
    }

    fn send_continue(&mut self, head: &Head, len: usize) -> Result<(), RequestError> {
        if head.expect_continue && self.buf.len() < len {
            self.stream.set_write_timeout(Some(self.timeouts.body)).map_err(RequestError::Io)?;
            self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(RequestError::Io)?;
        }
        Ok(())
    }

    fn discard(&mut self, len: usize, deadline: Instant) -> Result<(), RequestError> {
        let mut left = len;
        loop {
            let take = left.min(self.buf.len());
            self.buf.drain(..take);
            left -= take;
            if left == 0 {
                return Ok(());
            }
            if self.fill(deadline, left.min(READ_CHUNK))? == 0 {
                return Err(RequestError::Closed);
            }
        }
    }

    /// Reads up to `max` more bytes into the buffer before `deadline`; 0 at EOF.
    fn fill(&mut self, deadline: Instant, max: usize) -> Result<usize, RequestError> {
        let room = max.clamp(1, READ_CHUNK);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(RequestError::Timeout)?;
            self.stream.set_read_timeout(Some(left)).map_err(RequestError::Io)?;
            let start = self.buf.len();
            self.buf.resize(start + room, 0);
            let read = self.stream.read(&mut self.buf[start..]);
            self.buf.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(RequestError::Timeout);
                }
                Err(e) => return Err(RequestError::Io(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body_budget::BudgetError;
    use crate::request::MAX_UPLOAD_BODY_LEN;

    /// A connection in memory: reads give `input` in pieces of at most `piece`
    /// bytes, then end of file; writes are kept.
    #[derive(Debug)]
    struct Memory {
        input: Vec<u8>,
        piece: usize,
        written: Vec<u8>,
    }

    impl Read for Memory {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = out.len().min(self.piece).min(self.input.len());
            out[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            Ok(n)
        }
    }

    impl Write for Memory {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Transport for Memory {
        fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }

        fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    fn connection(input: &[u8], piece: usize) -> HttpConnection<Memory> {
        connection_with(input, piece, Arc::new(BodyBudget::default()))
    }

    fn connection_with(input: &[u8], piece: usize, budget: Arc<BodyBudget>) -> HttpConnection<Memory> {
        let timeouts = Timeouts {
            idle: Duration::from_secs(1),
            head: Duration::from_secs(1),
            body: Duration::from_secs(1),
        };
        let memory = Memory { input: input.to_vec(), piece, written: Vec::new() };
        HttpConnection::new(memory, timeouts, budget)
    }

    #[test]
    fn pipelined_requests_read_the_same_in_any_piece_size() {
        let raw = b"POST /login HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
                    POST /login HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n\
                    GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let peer = IpAddr::from([127, 0, 0, 1]);
        for piece in [1, 2, 7, 64, READ_CHUNK] {
            let mut conn = connection(raw, piece);
            let mut bodies = Vec::new();
            while let Some(head) = conn.read_head().unwrap() {
                match conn.read_request(head, MAX_BODY_LEN, peer).unwrap().body {
                    Body::Complete(body) => bodies.push(body),
                    Body::TooLarge => panic!("too large"),
                }
            }
            assert_eq!(bodies, [b"abc".to_vec(), b"de".to_vec(), Vec::new()], "pieces of {piece}");
        }
    }

    #[test]
    fn a_head_cut_short_is_closed_and_continue_is_sent_only_while_the_body_is_to_come() {
        let mut cut = connection(b"GET / HTTP/1.1\r\nHost:", 5);
        assert!(matches!(cut.read_head(), Err(RequestError::Closed)));
        let raw = b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi";
        // Sent when the body is still to come; not when it arrived with the head.
        for (piece, continued) in [(1, true), (raw.len(), false)] {
            let mut conn = connection(raw, piece);
            let head = conn.read_head().unwrap().unwrap();
            conn.read_request(head, MAX_BODY_LEN, IpAddr::from([127, 0, 0, 1])).unwrap();
            assert_eq!(conn.stream().written.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"), continued);
        }
    }

    #[test]
    fn an_upload_past_its_address_share_is_refused_before_its_body_is_read() {
        const MIB: usize = 1024 * 1024;
        let budget = Arc::new(BodyBudget::new(3 * MIB));
        let (hog, other) = (IpAddr::from([127, 0, 0, 2]), IpAddr::from([127, 0, 0, 3]));
        let held = budget.reserve(hog, 2 * MIB).unwrap();
        let len = MIB + 1;
        let mut raw = format!(
            "POST /uploadProfilePic HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: {len}\r\n\r\n"
        )
        .into_bytes();
        let head_len = raw.len();
        raw.resize(head_len + len, b'x');

        let mut refused = connection_with(&raw, READ_CHUNK, Arc::clone(&budget));
        let head = refused.read_head().unwrap().unwrap();
        let outcome = refused.read_request(head, MAX_UPLOAD_BODY_LEN, hog);
        assert!(matches!(outcome, Err(RequestError::Busy(BudgetError::AddressShareSpent))), "{outcome:?}");
        assert!(refused.stream().written.is_empty(), "no 100 Continue for a body that is refused");
        let failure = RequestError::Busy(BudgetError::AddressShareSpent).failure().unwrap().problem();
        assert_eq!((failure.status, failure.code, failure.retry_after), (503, 116, Some(1)));
        assert!(failure.message.contains("your address"), "{}", failure.message);

        let mut served = connection_with(&raw, READ_CHUNK, Arc::clone(&budget));
        let head = served.read_head().unwrap().unwrap();
        let request = served.read_request(head, MAX_UPLOAD_BODY_LEN, other).unwrap();
        assert!(matches!(&request.body, Body::Complete(body) if body.len() == len));
        assert_eq!(budget.held_by(other), len, "held while the request lives");
        drop(request);
        drop(held);
        assert_eq!(budget.in_flight(), 0);
    }
}
