//! The RPC client: a few persistent TCP connections to tcpserver, each shared
//! by many callers at once.
//!
//! A call picks a connection (round robin), registers its request id, writes
//! its frame and waits; one reader thread per connection reads the replies as
//! they come, in any order, and hands each to the caller whose id it carries.
//! So one connection carries many requests at a time: tcpserver reads a whole
//! batch of frames with one `read` and answers a batch with one `write`, and
//! no caller waits for another's reply to come back before sending its own.
//!
//! Bounds: `size` connections; at most [`MAX_CALLS_PER_CONNECTION`] calls on
//! each (what tcpserver takes from one connection before it stops reading
//! it). A call that finds every connection full is refused at once with
//! [`RpcError::Busy`], and every call ends by its deadline.
//!
//! tcpserver may restart at any moment. A reader that sees its connection end
//! fails the calls waiting on it; the next call opens a new one in the same
//! slot, and an idle connection is checked for a closed peer before it is
//! written to, so the front end carries on by itself. A request is never
//! applied twice: it is sent again on a fresh connection only if none of it was
//! written, or if it is safe to resend ([`proto::MessageType::is_safe_to_resend`]:
//! reads and QR waits by nature, sign-ups and nickname changes because
//! tcpserver makes them idempotent). Any other state-changing request whose
//! connection broke after it was sent fails with [`RpcError::Interrupted`].
//!
//! A pool serves one tcpserver; [`crate::balancer`] holds one per
//! `--backend` and chooses among them. A pool tells it when tcpserver ends a
//! connection and when replies last came (`liveness.rs`).
//!
//! Callers take turns writing on a connection (`write_turn.rs`), and wait for
//! their turn no longer than their own deadline. One whose time runs out before
//! it has written a byte gives up alone with [`RpcError::Timeout`]: the
//! connection and the other calls on it go on. One whose time runs out with
//! its frame partly written leaves the stream out of step, so that connection
//! is closed and the calls waiting on it fail with it (as if it had broken).
//!
//! A parked call (a QR wait, held by tcpserver up to 25 s) may be given up
//! before its reply: whoever watches its HTTP client calls [`GiveUp::now`]
//! when the client has gone ([`RpcPool::send_watched`]), which wakes the
//! call's thread at once (no thread wakes on a timer to ask). The call then
//! ends with [`RpcError::Abandoned`] and a `QrCancel` for it is written on
//! the same connection (request id `CANCEL_REQUEST_ID`, whose reply, like
//! the wait's own, answers nobody and is dropped), so tcpserver lets the wait
//! go at once instead of holding it to its deadline.
//!
//! Each new connection proves the RPC secret (`handshake.rs`) before any call
//! is written on it, by the deadline of the call that opened it. One refused
//! fails that call with [`RpcError::Handshake`] and is not kept.

#[cfg(test)]
pub(crate) mod fake_backend;
mod give_up;
mod handshake;
mod liveness;
mod slot;
mod socket;
mod write_turn;

use std::collections::HashMap;
use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use proto::{Frame, Message, RpcSecret};

pub use self::give_up::GiveUp;
pub use self::handshake::HandshakeError;
use self::liveness::Heard;
pub use self::liveness::LostHook;
use self::slot::Slot;
use self::socket::{WriteFailure, open, peer_still_open, remaining, write_frame};
use self::write_turn::WriteTurn;
use crate::metrics::{self, RpcMetrics};

/// Calls in flight on one connection, at most: one less than tcpserver takes
/// from one connection before it stops reading it (`MAX_IN_FLIGHT`, 256, in
/// `tcpserver/src/conn.rs`), so that calls never wait in socket buffers and a
/// `QrCancel` is read even on a full connection. A call given up keeps its
/// place until its cancel is written, so every frame tcpserver reads finds
/// at most 255 requests of this connection in flight there, its place to
/// spare. (A cancel whose turn to be written does not come within
/// `CANCEL_WRITE_TIME` is not sent, and its wait ends at its deadline.)
pub const MAX_CALLS_PER_CONNECTION: usize = 255;

/// The request id of every `QrCancel`: no call has it (ids start at 1), so
/// its reply is dropped as one nobody waits for.
const CANCEL_REQUEST_ID: u64 = 0;

/// The longest a `QrCancel` waits for its turn to be written: it is a courtesy
/// to tcpserver (the wait ends at its deadline anyway), not worth holding the
/// thread of a client that has gone.
const CANCEL_WRITE_TIME: Duration = Duration::from_millis(100);

/// Bytes a reader asks the socket for at a time: a batch of replies (a profile
/// is a few hundred bytes) in one `read`.
const READ_CHUNK: usize = 64 * 1024;

/// Stack of a reader thread: it only decodes frames into a heap buffer.
const READER_STACK_SIZE: usize = 128 * 1024;

/// Why a call failed without a reply from tcpserver.
#[derive(Debug)]
pub enum RpcError {
    /// No connection could be opened (refused, unreachable, or connect timed out).
    Unreachable(io::Error),
    /// A connection was opened but tcpserver did not accept its proof of the
    /// RPC secret (the servers' secrets differ, or it is not tcpserver); the
    /// request was not sent.
    Handshake(HandshakeError),
    /// No reply within the call's deadline.
    Timeout,
    /// The connection broke after a state-changing request was written; it may
    /// or may not have been applied.
    Interrupted,
    /// Every connection already carries its maximum of calls.
    Busy,
    /// The reply bytes are not a valid frame.
    Protocol(proto::Error),
    /// A valid frame that answers no request sent (an id never issued, or a
    /// request type).
    UnexpectedReply,
    /// The request could not be encoded (a field over the wire format's limits).
    Encode(proto::Error),
    /// The caller gave the call up before its reply: whoever it was for has
    /// gone ([`RpcPool::send_watched`]). tcpserver was told to let it go.
    Abandoned,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Unreachable(e) => write!(f, "back end unreachable: {e}"),
            RpcError::Handshake(e) => write!(f, "back end unreachable: {e}"),
            RpcError::Timeout => f.write_str("back end did not answer in time"),
            RpcError::Interrupted => f.write_str("connection to the back end broke mid-request"),
            RpcError::Busy => f.write_str("every back-end connection is at its limit of calls"),
            RpcError::Protocol(e) => write!(f, "garbled reply from the back end: {e}"),
            RpcError::UnexpectedReply => f.write_str("reply does not answer the request"),
            RpcError::Encode(e) => write!(f, "request cannot be encoded: {e}"),
            RpcError::Abandoned => f.write_str("call given up: its client went away"),
        }
    }
}

impl std::error::Error for RpcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RpcError::Unreachable(e) => Some(e),
            RpcError::Handshake(e) => Some(e),
            RpcError::Protocol(e) | RpcError::Encode(e) => Some(e),
            _ => None,
        }
    }
}

/// A fixed set of shared connections to one tcpserver.
#[derive(Debug)]
pub struct RpcPool {
    backend: String,
    /// What each new connection proves before it carries a call.
    secret: RpcSecret,
    timeout: Duration,
    links: Vec<Arc<Link>>,
    /// Calls on one connection at most ([`MAX_CALLS_PER_CONNECTION`]; lower in tests).
    calls_per_connection: usize,
    /// Round-robin position for the next call.
    next_link: AtomicUsize,
    next_id: AtomicU64,
    /// Calls in this pool now (writing or waiting): what the balancer
    /// compares to pick the least loaded backend.
    in_flight: AtomicUsize,
    /// This backend's counters.
    metrics: &'static RpcMetrics,
    /// When its readers last read reply bytes.
    heard: Arc<Heard>,
}

impl RpcPool {
    /// A pool of `size` connections to `backend` (`host:port`, resolved at each
    /// connect), each proving `secret` when it opens, where each call takes at
    /// most `timeout`. Opens nothing yet.
    pub fn new(backend: impl Into<String>, size: usize, timeout: Duration, secret: RpcSecret) -> RpcPool {
        RpcPool::watched(backend, size, timeout, secret, &metrics::RPC[0], None)
    }

    /// [`RpcPool::new`] counting into `metrics`, with `lost` called whenever
    /// tcpserver ends one of the connections (for the balancer).
    pub fn watched(
        backend: impl Into<String>,
        size: usize,
        timeout: Duration,
        secret: RpcSecret,
        metrics: &'static RpcMetrics,
        lost: Option<LostHook>,
    ) -> RpcPool {
        let heard = Arc::new(Heard::new());
        RpcPool {
            backend: backend.into(),
            secret,
            timeout,
            links: (0..size.max(1))
                .map(|_| Arc::new(Link { lost: lost.clone(), heard: Arc::clone(&heard), ..Link::default() }))
                .collect(),
            calls_per_connection: MAX_CALLS_PER_CONNECTION,
            next_link: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            metrics,
            heard,
        }
    }

    /// Whether any reply bytes came from tcpserver at or after `since`: a
    /// call that timed out while others were answered met a busy tcpserver;
    /// one that timed out in silence met a tcpserver that has stopped.
    pub fn heard_since(&self, since: Instant) -> bool {
        self.heard.since(since)
    }

    /// The longest one call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Calls in this pool now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Sends `message` and returns tcpserver's reply, which may be
    /// [`Message::Error`]: a refusal is a reply, not an [`RpcError`].
    ///
    /// # Errors
    ///
    /// An [`RpcError`] when no reply could be had; see the module doc for when a
    /// request is sent a second time.
    pub fn call(&self, message: Message) -> Result<Message, RpcError> {
        self.call_until(message, Instant::now() + self.timeout)
    }

    /// [`RpcPool::call`] with a deadline of its own (tests give callers
    /// different ones).
    fn call_until(&self, message: Message, deadline: Instant) -> Result<Message, RpcError> {
        let resendable = message.message_type().is_safe_to_resend();
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = encode(request_id, message)?;
        self.send(&request, request_id, resendable, deadline)
    }

    /// Sends a request already encoded (by [`encode`], with `request_id`) and
    /// waits for its reply until `deadline`; `resendable` says whether it may
    /// be sent a second time here after its connection broke
    /// ([`proto::MessageType::is_safe_to_resend`]). The balancer encodes a call
    /// once and hands the same bytes to another backend's pool when this one
    /// fails it before sending.
    ///
    /// # Errors
    ///
    /// As [`RpcPool::call`].
    pub fn send(
        &self,
        request: &[u8],
        request_id: u64,
        resendable: bool,
        deadline: Instant,
    ) -> Result<Message, RpcError> {
        self.send_watched(request, request_id, resendable, deadline, None)
    }

    /// [`RpcPool::send`] for a parked call, given up as soon as another
    /// thread calls [`GiveUp::now`] on `give_up`: its HTTP client has gone.
    /// The call then fails with [`RpcError::Abandoned`], and tcpserver is
    /// told to let it go (the module doc says how).
    ///
    /// # Errors
    ///
    /// As [`RpcPool::call`], and [`RpcError::Abandoned`].
    pub fn send_watched(
        &self,
        request: &[u8],
        request_id: u64,
        resendable: bool,
        deadline: Instant,
        give_up: Option<&GiveUp>,
    ) -> Result<Message, RpcError> {
        self.metrics.calls.add(1);
        self.metrics.in_flight.add(1);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let outcome = self.exchange_until(request, request_id, resendable, deadline, give_up);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.in_flight.add(-1);
        match &outcome {
            Ok(_) => {}
            Err(RpcError::Busy) => self.metrics.busy.add(1),
            Err(RpcError::Timeout) => self.metrics.timeouts.add(1),
            Err(RpcError::Abandoned) => self.metrics.abandoned.add(1),
            Err(_) => self.metrics.failures.add(1),
        }
        outcome
    }

    fn exchange_until(
        &self,
        request: &[u8],
        request_id: u64,
        resendable: bool,
        deadline: Instant,
        give_up: Option<&GiveUp>,
    ) -> Result<Message, RpcError> {
        let reserved = self.pick_link()?;
        let mut resent = false;
        loop {
            let failure = match reserved.exchange(self, request, request_id, deadline, give_up) {
                Ok(reply) => return Ok(reply),
                Err(failure) => failure,
            };
            let may_resend = match failure {
                Exchange::NotSent => true,
                Exchange::Lost => resendable,
                _ => false,
            };
            if may_resend && !resent && remaining(deadline).is_some() {
                if matches!(failure, Exchange::Lost) {
                    self.metrics.resent.add(1);
                }
                resent = true;
                continue;
            }
            return Err(match failure {
                Exchange::Unreachable(e) => RpcError::Unreachable(e),
                Exchange::Handshake(e) => RpcError::Handshake(e),
                Exchange::NotSent => RpcError::Unreachable(closed()),
                Exchange::Lost if resendable => RpcError::Unreachable(closed()),
                Exchange::Lost => RpcError::Interrupted,
                Exchange::TimedOut => RpcError::Timeout,
                Exchange::Garbled(e) => RpcError::Protocol(e),
                Exchange::WrongReply => RpcError::UnexpectedReply,
                Exchange::Abandoned => RpcError::Abandoned,
            });
        }
    }

    /// How many connections are open; for tests and health output.
    pub fn open_connections(&self) -> usize {
        self.links.iter().filter(|link| link.writer.take().is_some()).count()
    }

    /// The next connection in turn that has room for a call, reserving a place
    /// on it; [`RpcError::Busy`] if none has.
    fn pick_link(&self) -> Result<Reserved<'_>, RpcError> {
        let start = self.next_link.fetch_add(1, Ordering::Relaxed);
        (0..self.links.len())
            .map(|i| &self.links[(start + i) % self.links.len()])
            .find_map(|link| link.reserve(self.calls_per_connection))
            .ok_or(RpcError::Busy)
    }
}

impl Drop for RpcPool {
    /// Closes the connections, which ends their reader threads.
    fn drop(&mut self) {
        for link in &self.links {
            let mut writer = link.writer.take();
            link.end_connection(&mut writer, &Exchange::Lost);
        }
    }
}

/// A request frame, with the trace id of the HTTP request being served.
///
/// # Errors
///
/// [`RpcError::Encode`] for a field over the wire format's limits.
pub fn encode(request_id: u64, message: Message) -> Result<Vec<u8>, RpcError> {
    let mut request = Vec::new();
    let trace = crate::log::current_request_id();
    Frame { request_id, message }.encode_traced(trace, &mut request).map_err(RpcError::Encode)?;
    Ok(request)
}

fn closed() -> io::Error {
    io::Error::new(ErrorKind::ConnectionAborted, "connection to the back end closed")
}

/// How one attempt at a call ended, when it did not succeed.
#[derive(Debug)]
enum Exchange {
    /// No connection could be opened.
    Unreachable(io::Error),
    /// A connection was opened, but its handshake failed.
    Handshake(HandshakeError),
    /// The socket failed before any byte of the request was accepted.
    NotSent,
    /// The connection ended after the request (or part of it) was written.
    Lost,
    /// The deadline passed.
    TimedOut,
    /// The back end sent bytes that are not a frame.
    Garbled(proto::Error),
    /// The back end sent a frame that answers nothing sent.
    WrongReply,
    /// The caller gave up before the reply.
    Abandoned,
}

impl Exchange {
    /// The same outcome for another waiting call (errors are not `Clone`).
    fn copy(&self) -> Exchange {
        match self {
            Exchange::Unreachable(e) => Exchange::Unreachable(io::Error::new(e.kind(), e.to_string())),
            Exchange::Handshake(e) => Exchange::Handshake(e.copy()),
            Exchange::NotSent => Exchange::NotSent,
            Exchange::Lost => Exchange::Lost,
            Exchange::TimedOut => Exchange::TimedOut,
            Exchange::Garbled(e) => Exchange::Garbled(e.clone()),
            Exchange::WrongReply => Exchange::WrongReply,
            Exchange::Abandoned => Exchange::Abandoned,
        }
    }
}

/// One slot of the pool: at most one open connection at a time, its writing
/// half, and the calls waiting for replies on it.
#[derive(Debug, Default)]
struct Link {
    /// The open connection, if any. Its turn is held while connecting, while
    /// writing a frame (so frames never interleave) and while ending a
    /// connection.
    writer: WriteTurn<Option<TcpStream>>,
    /// Calls waiting for a reply on the current connection, by request id.
    waiting: Mutex<Waiting>,
    /// Calls on this link (writing or waiting), at most
    /// [`MAX_CALLS_PER_CONNECTION`].
    calls: AtomicUsize,
    /// Told when tcpserver ends the connection.
    lost: Option<LostHook>,
    /// The pool's record of when reply bytes last came.
    heard: Arc<Heard>,
}

#[derive(Debug, Default)]
struct Waiting {
    /// Which connection of this link is current: each new one gets the next
    /// number, so a reader can tell its own connection from a successor.
    /// Changed only with the writer lock held.
    connection: u64,
    calls: HashMap<u64, Arc<Slot>>,
    /// The highest request id written on the current connection: a reply with
    /// a higher id answers nothing sent.
    highest_sent: u64,
}

/// A place reserved on a link for one call; given back when dropped.
struct Reserved<'a>(&'a Arc<Link>);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Reserved<'_> {
    /// One attempt: send the frame on the link's connection (opening one if
    /// needed) and wait for its reply, or until the call is given up through
    /// `give_up`.
    fn exchange(
        &self,
        pool: &RpcPool,
        request: &[u8],
        request_id: u64,
        deadline: Instant,
        give_up: Option<&GiveUp>,
    ) -> Result<Message, Exchange> {
        let link = self.0;
        let slot = Arc::new(Slot::default());
        {
            // Out of time before writing anything: give up alone, leaving the
            // connection and the calls on it as they are.
            let Some(mut writer) = link.writer.take_until(deadline) else { return Err(Exchange::TimedOut) };
            if remaining(deadline).is_none() {
                return Err(Exchange::TimedOut);
            }
            if writer.as_ref().is_some_and(|stream| link.is_idle() && !peer_still_open(stream)) {
                // tcpserver closed it while idle (a restart): replace it before
                // writing anything, so even a state change is safe to send.
                link.end_connection(&mut writer, &Exchange::Lost);
            }
            if writer.is_none() {
                *writer = Some(link.connect(&pool.backend, &pool.secret, deadline)?);
                pool.metrics.connects.add(1);
            }
            let Some(stream) = writer.as_mut() else { return Err(Exchange::NotSent) };
            {
                let mut waiting = link.waiting();
                waiting.calls.insert(request_id, Arc::clone(&slot));
                waiting.highest_sent = waiting.highest_sent.max(request_id);
            }
            if let Err(failure) = write_frame(stream, request, deadline) {
                link.waiting().calls.remove(&request_id);
                if let WriteFailure::OutOfTime { written: 0 } = failure {
                    // Nothing of the frame went out: the stream is in step.
                    return Err(Exchange::TimedOut);
                }
                // A broken socket, or half a frame that leaves the stream out
                // of step: end this connection and fail the other calls on it.
                link.end_connection(&mut writer, &Exchange::Lost);
                return Err(match failure {
                    WriteFailure::Failed { written: 0 } => Exchange::NotSent,
                    WriteFailure::Failed { .. } => Exchange::Lost,
                    WriteFailure::OutOfTime { .. } => Exchange::TimedOut,
                });
            }
        }
        let outcome = slot.wait(deadline, give_up);
        if outcome.is_none() {
            link.waiting().calls.remove(&request_id);
        }
        // A reply may have landed between the timeout and the removal.
        match outcome.or_else(|| slot.take()) {
            Some(outcome) => outcome,
            // Given up with time left: tell tcpserver.
            None if remaining(deadline).is_some() => {
                link.cancel(request_id);
                Err(Exchange::Abandoned)
            }
            None => Err(Exchange::TimedOut),
        }
    }
}

impl Link {
    fn reserve(self: &Arc<Link>, max_calls: usize) -> Option<Reserved<'_>> {
        self.calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max_calls).then_some(n + 1))
            .ok()
            .map(|_| Reserved(self))
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether no call is waiting on this link (the caller's own is reserved
    /// but not yet registered).
    fn is_idle(&self) -> bool {
        self.waiting().calls.is_empty()
    }

    /// Opens a connection, proves the secret on it, and starts its reader
    /// thread, which holds the link for as long as the connection lasts.
    /// Called with the writer lock held.
    fn connect(
        self: &Arc<Link>,
        backend: &str,
        secret: &RpcSecret,
        deadline: Instant,
    ) -> Result<TcpStream, Exchange> {
        let mut stream = open(backend, deadline).map_err(Exchange::Unreachable)?;
        handshake::prove(&mut stream, secret, deadline).map_err(Exchange::Handshake)?;
        let reader = stream.try_clone().map_err(Exchange::Unreachable)?;
        let connection = {
            let mut waiting = self.waiting();
            waiting.connection += 1;
            waiting.highest_sent = 0;
            waiting.connection
        };
        let link = Arc::clone(self);
        thread::Builder::new()
            .name("rpc-reader".into())
            .stack_size(READER_STACK_SIZE)
            .spawn(move || link.read_replies(reader, connection))
            .map_err(Exchange::Unreachable)?;
        Ok(stream)
    }

    /// Writes a `QrCancel` of the wait `request_id` on the current connection,
    /// if there is one (with none, the wait's connection ended, and the wait
    /// with it) and its turn comes within [`CANCEL_WRITE_TIME`]. Its reply is
    /// dropped: no call waits for [`CANCEL_REQUEST_ID`]. A frame cut short
    /// leaves the stream out of step, so that connection ends, as for a call.
    fn cancel(&self, request_id: u64) {
        let Ok(frame) = encode(CANCEL_REQUEST_ID, Message::QrCancel { wait: request_id }) else { return };
        let deadline = Instant::now() + CANCEL_WRITE_TIME;
        let Some(mut writer) = self.writer.take_until(deadline) else { return };
        let Some(stream) = writer.as_mut() else { return };
        match write_frame(stream, &frame, deadline) {
            Ok(()) | Err(WriteFailure::OutOfTime { written: 0 }) => {}
            Err(_) => self.end_connection(&mut writer, &Exchange::Lost),
        }
    }

    /// Closes the current connection and fails every call waiting on it with
    /// `why`. Called with the writer lock held.
    fn end_connection(&self, writer: &mut Option<TcpStream>, why: &Exchange) {
        if let Some(stream) = writer.take() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let failed: Vec<Arc<Slot>> = {
            let mut waiting = self.waiting();
            // Whatever the old connection's reader still delivers is refused.
            waiting.connection += 1;
            waiting.calls.drain().map(|(_, slot)| slot).collect()
        };
        for slot in failed {
            slot.fill(Err(why.copy()));
        }
    }

    /// A reader's loop: decode replies and hand each to its caller until the
    /// connection ends, then end it for the writers too (unless a caller
    /// already has, and maybe opened the next one).
    fn read_replies(&self, mut stream: TcpStream, connection: u64) {
        // Zeroed once: bytes `..filled` are read but not yet decoded. It grows
        // (rarely: replies are small) only when one frame needs more room.
        let mut buf = vec![0u8; READ_CHUNK];
        let mut filled = 0;
        let ending = loop {
            match drain_frames(&buf[..filled], |frame| self.deliver(frame, connection)) {
                Ok(used) => {
                    buf.copy_within(used..filled, 0);
                    filled -= used;
                }
                Err(failure) => break failure,
            }
            if filled == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            match stream.read(&mut buf[filled..]) {
                Ok(0) => break Exchange::Lost,
                Ok(n) => {
                    filled += n;
                    self.heard.now();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break Exchange::Lost,
            }
        };
        let _ = stream.shutdown(Shutdown::Both);
        let mut writer = self.writer.take();
        if self.waiting().connection == connection {
            self.end_connection(&mut writer, &ending);
            drop(writer);
            // The peer ended a connection nobody here had given up on:
            // tcpserver is gone (or going), and the balancer should know now,
            // not at the next call.
            if let (Exchange::Lost, Some(lost)) = (&ending, &self.lost) {
                (lost.0)();
            }
        }
    }

    /// Hands one reply to its caller. A reply nobody waits for any more (its
    /// caller timed out) is dropped; one for an id never sent on this
    /// connection, or a request sent back, ends the connection.
    fn deliver(&self, frame: Frame, connection: u64) -> Result<(), Exchange> {
        let mut waiting = self.waiting();
        if waiting.connection != connection {
            // A caller ended this connection; its calls were failed already.
            return Err(Exchange::Lost);
        }
        if frame.message.message_type().is_request() || frame.request_id > waiting.highest_sent {
            return Err(Exchange::WrongReply);
        }
        if let Some(slot) = waiting.calls.remove(&frame.request_id) {
            drop(waiting);
            slot.fill(Ok(frame.message));
        }
        Ok(())
    }
}

/// Decodes and hands over every whole frame at the front of `bytes`; returns
/// how many bytes they took.
fn drain_frames(
    bytes: &[u8],
    mut deliver: impl FnMut(Frame) -> Result<(), Exchange>,
) -> Result<usize, Exchange> {
    let mut used_total = 0;
    loop {
        match Frame::decode(&bytes[used_total..]) {
            Ok(Some((frame, used))) => {
                used_total += used;
                deliver(frame)?;
            }
            Ok(None) => return Ok(used_total),
            Err(e) => return Err(Exchange::Garbled(e)),
        }
    }
}

#[cfg(test)]
mod tests;
