//! One client connection: its socket, its bounded buffers, and its state.
//!
//! The read buffer holds at most one frame's worth of bytes beyond what has been
//! decoded ([`MAX_READ_BUF`]); since a frame can never be longer than that, a
//! full buffer always holds a complete frame, and reading can always make
//! progress once frames are taken out. Replies are appended to the write buffer
//! and sent by [`Connection::flush`], which copes with partial writes by keeping
//! the unsent suffix. A peer that sends requests but does not read its replies
//! is stopped from sending more once its unsent replies pass
//! [`WRITE_HIGH_WATER`], or once it has [`MAX_IN_FLIGHT`] requests at the
//! workers, so that no peer can make the server buffer without bound. Until a
//! connection has proved the RPC secret (its [`Gate`]), its read buffer holds
//! one proof frame at most ([`PROOF_FRAME_LEN`]).

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::Interest;
use mio::net::TcpStream;
use proto::{Frame, HEADER_LEN, Header, MAX_BODY_LEN, TraceId};

use crate::gate::{Gate, PROOF_FRAME_LEN};

/// Largest read buffer: one whole frame of the largest size.
pub const MAX_READ_BUF: usize = HEADER_LEN + MAX_BODY_LEN;

/// Unsent reply bytes beyond which the peer's requests are no longer read. A
/// reply is at most a few hundred bytes, so this is thousands of replies: a
/// peer that has not read that many is not reading.
pub const WRITE_HIGH_WATER: usize = 256 * 1024;

/// Requests of one connection that may wait at the workers at once. Enough for
/// `httpserver` to pipeline freely over a few connections, small enough that one
/// connection cannot fill the whole queue and starve the others.
pub const MAX_IN_FLIGHT: usize = 256;

/// Buffer capacity kept once a buffer empties: a connection that once carried a
/// 2 MiB picture should not hold 2 MiB for the rest of its life.
const KEEP_CAPACITY: usize = 64 * 1024;

/// A written prefix of the write buffer is dropped once it passes this, so the
/// buffer does not creep while a slow peer drains it.
const COMPACT_AFTER: usize = 64 * 1024;

/// What one call to [`Connection::read_some`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Bytes were read; more may follow.
    Data,
    /// Nothing to read for now.
    Blocked,
    /// The peer closed its sending side.
    Eof,
}

/// A client connection.
#[derive(Debug)]
pub struct Connection {
    /// Serial number, unique for the life of the process; tells this connection
    /// apart from earlier and later ones in the same slab slot.
    pub id: u64,
    /// The peer's address, for the log.
    pub peer: SocketAddr,
    /// The socket, registered with the poll under this connection's token.
    pub stream: TcpStream,
    /// The interest the socket is registered with.
    pub interest: Interest,
    /// Requests handed to workers and not answered yet.
    pub in_flight: usize,
    /// No more requests will be read: the peer sent EOF, or the server is
    /// shutting down. The connection closes once its replies are sent.
    pub done_reading: bool,
    /// Reading stopped for backpressure before the socket was drained; it must
    /// be resumed (not waited for: readiness is edge-triggered) once relieved.
    pub paused: bool,
    /// Whether the connection has proved the RPC secret, so that its frames
    /// are requests.
    pub gate: Gate,
    read_buf: Vec<u8>,
    /// Bytes at the front of `read_buf` already decoded.
    read_pos: usize,
    write_buf: Vec<u8>,
    /// Bytes at the front of `write_buf` already sent.
    written: usize,
}

impl Connection {
    /// A new connection with empty buffers, registered as readable, behind `gate`.
    pub fn new(id: u64, peer: SocketAddr, stream: TcpStream, gate: Gate) -> Connection {
        Connection {
            id,
            peer,
            stream,
            interest: Interest::READABLE,
            in_flight: 0,
            done_reading: false,
            paused: false,
            gate,
            read_buf: Vec::new(),
            read_pos: 0,
            write_buf: Vec::new(),
            written: 0,
        }
    }

    /// Whether the peer must wait before more of its requests are taken.
    pub fn backpressured(&self) -> bool {
        self.pending_output() > WRITE_HIGH_WATER || self.in_flight >= MAX_IN_FLIGHT
    }

    /// Reply bytes not yet sent.
    pub fn pending_output(&self) -> usize {
        self.write_buf.len() - self.written
    }

    /// Whether everything is answered and sent, so a connection that reads no
    /// more can be closed.
    pub fn finished(&self) -> bool {
        self.done_reading && self.in_flight == 0 && self.pending_output() == 0
    }

    /// The header of the next frame, once its bytes are buffered: a pending
    /// connection's first frame is judged by it before its body is read.
    ///
    /// # Errors
    ///
    /// The codec's error for a header that cannot start a valid frame.
    pub fn peek_header(&self) -> Result<Option<Header>, proto::Error> {
        Header::decode(self.read_buf.get(self.read_pos..).unwrap_or_default())
    }

    /// The next complete frame from the read buffer, if there is one, with
    /// the trace id it carries.
    ///
    /// # Errors
    ///
    /// The codec's error: the stream cannot be resynchronised and must be closed.
    pub fn next_frame(&mut self) -> Result<Option<(Frame, TraceId)>, proto::Error> {
        let unread = self.read_buf.get(self.read_pos..).unwrap_or_default();
        match Frame::decode_traced(unread)? {
            Some((frame, trace, used)) => {
                self.read_pos += used;
                if self.read_pos == self.read_buf.len() {
                    self.read_buf.clear();
                    self.read_buf.shrink_to(KEEP_CAPACITY);
                    self.read_pos = 0;
                }
                Ok(Some((frame, trace)))
            }
            None => Ok(None),
        }
    }

    /// Reads once from the socket into the read buffer, through `scratch`.
    ///
    /// # Errors
    ///
    /// The socket's error (other than `WouldBlock`, which is [`ReadStatus::Blocked`]).
    pub fn read_some(&mut self, scratch: &mut [u8]) -> io::Result<ReadStatus> {
        // Decoded bytes are dropped before new ones come in, keeping the buffer
        // within MAX_READ_BUF.
        if self.read_pos > 0 {
            self.read_buf.drain(..self.read_pos);
            self.read_pos = 0;
        }
        let cap = if self.gate.is_open() { MAX_READ_BUF } else { PROOF_FRAME_LEN };
        let room = cap.saturating_sub(self.read_buf.len()).min(scratch.len());
        let Some(target) = scratch.get_mut(..room).filter(|t| !t.is_empty()) else {
            // Unreachable while frames are decoded after every read: a full
            // buffer holds a whole frame (before the gate opens, a whole
            // proof, its header screened). Treat it as "no progress" all the same.
            return Ok(ReadStatus::Blocked);
        };
        loop {
            return match self.stream.read(target) {
                Ok(0) => Ok(ReadStatus::Eof),
                Ok(n) => {
                    self.read_buf.extend_from_slice(target.get(..n).unwrap_or_default());
                    Ok(ReadStatus::Data)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadStatus::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Appends a reply to the write buffer.
    ///
    /// # Errors
    ///
    /// The codec's error if the reply cannot be encoded (a field too long); the
    /// buffer is then left as it was.
    pub fn queue(&mut self, frame: &Frame) -> Result<(), proto::Error> {
        frame.encode(&mut self.write_buf)
    }

    /// Writes until the buffer is empty or the socket would block.
    ///
    /// # Errors
    ///
    /// The socket's error; the connection should be closed.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.written < self.write_buf.len() {
            let unsent = self.write_buf.get(self.written..).unwrap_or_default();
            match self.stream.write(unsent) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.write_buf.len() {
            self.write_buf.clear();
            self.write_buf.shrink_to(KEEP_CAPACITY);
            self.written = 0;
        } else if self.written >= COMPACT_AFTER {
            self.write_buf.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }

    /// The interest the socket needs now: writable only while output is pending.
    pub fn wanted_interest(&self) -> Interest {
        if self.pending_output() > 0 { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE }
    }
}
