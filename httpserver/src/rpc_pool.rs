//! The RPC client: a bounded pool of persistent TCP connections to tcpserver.
//!
//! A call leases one connection, writes one frame, reads the one reply, and gives
//! the connection back, so each connection carries one request at a time and a
//! reply can never be matched to the wrong caller. At most `size` connections are
//! open; a caller that finds them all busy waits, but never past its deadline.
//!
//! tcpserver may restart at any moment. An idle connection is checked before use
//! (a closed peer shows up as a readable EOF), and a dead one is replaced in the
//! same slot, so the front end carries on by itself. A request is never applied
//! twice: it is sent again on a fresh connection only if none of it was written,
//! or if it is idempotent (`Ping`, `GetProfile`). A state-changing request whose
//! connection broke after it was sent fails with [`RpcError::Interrupted`].

use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proto::{Frame, Message};

/// Bytes read from a socket at a time. Replies are small (a profile); a larger
/// one simply takes more reads.
const READ_CHUNK: usize = 4096;

/// Why a call failed without a reply from tcpserver.
#[derive(Debug)]
pub enum RpcError {
    /// No connection could be opened (refused, unreachable, or connect timed out).
    Unreachable(io::Error),
    /// No reply within the call's deadline.
    Timeout,
    /// The connection broke after a state-changing request was written; it may
    /// or may not have been applied.
    Interrupted,
    /// Every connection stayed leased until the deadline.
    Busy,
    /// The reply bytes are not a valid frame.
    Protocol(proto::Error),
    /// A valid frame that does not answer this request (wrong id, or a request type).
    UnexpectedReply,
    /// The request could not be encoded (a field over the wire format's limits).
    Encode(proto::Error),
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Unreachable(e) => write!(f, "back end unreachable: {e}"),
            RpcError::Timeout => f.write_str("back end did not answer in time"),
            RpcError::Interrupted => f.write_str("connection to the back end broke mid-request"),
            RpcError::Busy => f.write_str("every back-end connection stayed busy"),
            RpcError::Protocol(e) => write!(f, "garbled reply from the back end: {e}"),
            RpcError::UnexpectedReply => f.write_str("reply does not answer the request"),
            RpcError::Encode(e) => write!(f, "request cannot be encoded: {e}"),
        }
    }
}

impl std::error::Error for RpcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RpcError::Unreachable(e) => Some(e),
            RpcError::Protocol(e) | RpcError::Encode(e) => Some(e),
            _ => None,
        }
    }
}

/// A bounded pool of connections to one tcpserver.
#[derive(Debug)]
pub struct RpcPool {
    backend: String,
    size: usize,
    timeout: Duration,
    state: Mutex<PoolState>,
    /// Signalled whenever a connection is returned or a slot freed.
    freed: Condvar,
    next_id: AtomicU64,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Connections ready for use, most recently used last (warmest first out).
    idle: Vec<Connection>,
    /// Open or opening connections, leased ones included; never above `size`.
    open: usize,
}

impl RpcPool {
    /// A pool of at most `size` connections to `backend` (`host:port`, resolved at
    /// each connect), where each call takes at most `timeout`. Opens nothing yet.
    pub fn new(backend: impl Into<String>, size: usize, timeout: Duration) -> RpcPool {
        RpcPool {
            backend: backend.into(),
            size: size.max(1),
            timeout,
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends `message` and returns tcpserver's reply, which may be
    /// [`Message::Error`]: a refusal is a reply, not an [`RpcError`].
    ///
    /// # Errors
    ///
    /// An [`RpcError`] when no reply could be had; see the module doc for when a
    /// request is sent a second time.
    pub fn call(&self, message: Message) -> Result<Message, RpcError> {
        let deadline = Instant::now() + self.timeout;
        let idempotent = matches!(message, Message::Ping | Message::GetProfile { .. });
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = Vec::new();
        Frame { request_id, message }.encode(&mut request).map_err(RpcError::Encode)?;
        // The encoded frame is all that is needed from here on; an image is not kept twice.

        let mut lease = self.lease(deadline)?;
        let mut resent = false;
        loop {
            let failure = match lease.connection()?.exchange(&request, request_id, deadline) {
                Ok(reply) => {
                    lease.give_back();
                    return Ok(reply);
                }
                Err(failure) => failure,
            };
            let may_resend = match failure {
                Exchange::NotSent => true,
                Exchange::Lost => idempotent,
                _ => false,
            };
            if may_resend && !resent {
                resent = true;
                lease.reconnect(&self.backend, deadline)?;
                continue;
            }
            return Err(match failure {
                Exchange::NotSent => RpcError::Unreachable(closed()),
                Exchange::Lost if idempotent => RpcError::Unreachable(closed()),
                Exchange::Lost => RpcError::Interrupted,
                Exchange::TimedOut => RpcError::Timeout,
                Exchange::Garbled(e) => RpcError::Protocol(e),
                Exchange::WrongReply => RpcError::UnexpectedReply,
            });
        }
    }

    /// How many connections are open (leased or idle); for tests and health output.
    pub fn open_connections(&self) -> usize {
        self.lock().open
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the state inconsistent
        // (every update is a single push, pop or counter change).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes an idle connection, or opens one if there is room, or waits.
    fn lease(&self, deadline: Instant) -> Result<Lease<'_>, RpcError> {
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                drop(state);
                let mut lease = Lease { pool: self, conn: Some(conn), returned: false };
                if !lease.conn.as_ref().is_some_and(Connection::is_alive) {
                    // tcpserver closed it (restart, idle reaping): same slot, new socket.
                    lease.reconnect(&self.backend, deadline)?;
                }
                return Ok(lease);
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                let mut lease = Lease { pool: self, conn: None, returned: false };
                lease.reconnect(&self.backend, deadline)?;
                return Ok(lease);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RpcError::Busy);
            }
            state = match self.freed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(ErrorKind::ConnectionAborted, "connection to the back end closed")
}

/// One slot of the pool, held for the length of a call. Dropping it without
/// [`Lease::give_back`] closes the connection and frees the slot, so an error on
/// any path can never leak a slot or return a half-used connection.
struct Lease<'a> {
    pool: &'a RpcPool,
    conn: Option<Connection>,
    returned: bool,
}

impl Lease<'_> {
    fn connection(&mut self) -> Result<&mut Connection, RpcError> {
        self.conn.as_mut().ok_or_else(|| RpcError::Unreachable(closed()))
    }

    /// Replaces the connection in this slot with a fresh one.
    fn reconnect(&mut self, backend: &str, deadline: Instant) -> Result<(), RpcError> {
        self.conn = None;
        self.conn = Some(Connection::open(backend, deadline).map_err(RpcError::Unreachable)?);
        Ok(())
    }

    fn give_back(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.lock().idle.push(conn);
            self.returned = true;
            self.pool.freed.notify_one();
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.returned {
            let mut state = self.pool.lock();
            state.open = state.open.saturating_sub(1);
            drop(state);
            self.pool.freed.notify_one();
        }
    }
}

/// How one request/reply exchange on a connection ended, when it did not succeed.
#[derive(Debug)]
enum Exchange {
    /// The socket failed before any byte of the request was accepted.
    NotSent,
    /// The socket failed after the request (or part of it) was written.
    Lost,
    /// The deadline passed.
    TimedOut,
    /// The reply is not a valid frame.
    Garbled(proto::Error),
    /// A valid frame, but not the reply to this request.
    WrongReply,
}

/// One persistent connection and its read buffer.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    fn open(backend: &str, deadline: Instant) -> io::Result<Connection> {
        let mut last = io::Error::new(ErrorKind::NotFound, "back-end address resolves to nothing");
        for addr in backend.to_socket_addrs()? {
            let left = remaining(deadline).ok_or_else(|| io::Error::from(ErrorKind::TimedOut))?;
            match TcpStream::connect_timeout(&addr, left) {
                Ok(stream) => {
                    // Requests are single small frames: send them now, not after 40 ms.
                    stream.set_nodelay(true)?;
                    return Ok(Connection { stream, buf: Vec::with_capacity(READ_CHUNK) });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// An idle connection must have nothing to read: EOF means tcpserver closed
    /// it, and stray bytes mean the stream is out of step. Either way, replace it.
    fn is_alive(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut probe = [0u8; 1];
        let alive = matches!(self.stream.peek(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock);
        alive && self.stream.set_nonblocking(false).is_ok()
    }

    fn exchange(&mut self, request: &[u8], request_id: u64, deadline: Instant) -> Result<Message, Exchange> {
        let mut written = 0;
        while written < request.len() {
            let left = remaining(deadline).ok_or(Exchange::TimedOut)?;
            self.stream.set_write_timeout(Some(left)).map_err(|_| Exchange::NotSent)?;
            match self.stream.write(&request[written..]) {
                Ok(0) => return Err(if written == 0 { Exchange::NotSent } else { Exchange::Lost }),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(Exchange::TimedOut),
                Err(_) => return Err(if written == 0 { Exchange::NotSent } else { Exchange::Lost }),
            }
        }

        self.buf.clear();
        loop {
            match Frame::decode(&self.buf) {
                Ok(Some((frame, used))) => {
                    // One request in flight, so exactly one reply and nothing after it.
                    let answers = frame.request_id == request_id
                        && used == self.buf.len()
                        && !frame.message.message_type().is_request();
                    return if answers { Ok(frame.message) } else { Err(Exchange::WrongReply) };
                }
                Ok(None) => {}
                Err(e) => return Err(Exchange::Garbled(e)),
            }
            let left = remaining(deadline).ok_or(Exchange::TimedOut)?;
            self.stream.set_read_timeout(Some(left)).map_err(|_| Exchange::Lost)?;
            let start = self.buf.len();
            self.buf.resize(start + READ_CHUNK, 0);
            let read = self.stream.read(&mut self.buf[start..]);
            self.buf.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Err(Exchange::Lost),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Err(Exchange::TimedOut),
                Err(_) => return Err(Exchange::Lost),
            }
        }
    }
}

/// Time left before `deadline`, or `None` once it has passed (a zero timeout
/// would mean "block forever" to the socket API).
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::thread;

    use proto::{ErrorCode, Profile, Secret};

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// Reads one request frame from a fake back end's side of a connection.
    fn read_request(stream: &mut TcpStream) -> Option<Frame> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            if let Ok(Some((frame, _))) = Frame::decode(&buf) {
                return Some(frame);
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn reply(stream: &mut TcpStream, request_id: u64, message: Message) {
        let mut out = Vec::new();
        Frame { request_id, message }.encode(&mut out).unwrap();
        stream.write_all(&out).unwrap();
    }

    fn profile() -> Message {
        Message::ProfileReply(Profile { username: "u".into(), nickname: "n".into(), avatar: None })
    }

    fn get_profile() -> Message {
        Message::GetProfile { token: Secret::new("t"), username: None }
    }

    /// A fake back end whose connections are each handled by `script`, in order.
    fn backend(scripts: Vec<Box<dyn FnOnce(TcpStream) + Send>>) -> (String, thread::JoinHandle<TcpListener>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = thread::spawn(move || {
            for script in scripts {
                let (stream, _) = listener.accept().unwrap();
                script(stream);
            }
            listener
        });
        (addr, handle)
    }

    /// True if nobody else connected to the listener after its scripts ran.
    fn no_further_connection(listener: &TcpListener) -> bool {
        listener.set_nonblocking(true).unwrap();
        matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock)
    }

    #[test]
    fn a_connection_closed_while_idle_is_replaced_before_use() {
        let (tx, rx) = mpsc::channel();
        let (addr, server) = backend(vec![
            Box::new(move |mut s| {
                let f = read_request(&mut s).unwrap();
                reply(&mut s, f.request_id, Message::Pong);
                drop(s); // the back end restarts
                tx.send(()).unwrap();
            }),
            Box::new(|mut s| {
                let f = read_request(&mut s).unwrap();
                reply(&mut s, f.request_id, Message::LoggedOut);
            }),
        ]);
        let pool = RpcPool::new(addr, 4, TIMEOUT);
        assert_eq!(pool.call(Message::Ping).unwrap(), Message::Pong);
        rx.recv().unwrap();
        // Not idempotent, so this works only because the dead connection is
        // noticed before anything is written to it.
        assert_eq!(pool.call(Message::Logout { token: Secret::new("t") }).unwrap(), Message::LoggedOut);
        assert_eq!(pool.open_connections(), 1);
        assert!(no_further_connection(&server.join().unwrap()));
    }

    #[test]
    fn a_state_change_lost_mid_flight_is_not_sent_again() {
        let (addr, server) = backend(vec![Box::new(|mut s| {
            read_request(&mut s).unwrap();
            // Applied, maybe, but the reply never comes.
        })]);
        let pool = RpcPool::new(addr, 4, TIMEOUT);
        let nickname =
            Message::UpdateNickname { token: Secret::new("t"), username: None, nickname: "x".into() };
        assert!(matches!(pool.call(nickname), Err(RpcError::Interrupted)));
        assert!(no_further_connection(&server.join().unwrap()), "the request must not be repeated");
        assert_eq!(pool.open_connections(), 0, "the broken connection's slot is freed");
    }

    #[test]
    fn an_idempotent_read_lost_mid_flight_is_sent_again_once() {
        let (addr, server) = backend(vec![
            Box::new(|mut s| {
                read_request(&mut s).unwrap();
            }),
            Box::new(|mut s| {
                let f = read_request(&mut s).unwrap();
                reply(&mut s, f.request_id, profile());
            }),
        ]);
        let pool = RpcPool::new(addr, 4, TIMEOUT);
        assert_eq!(pool.call(get_profile()).unwrap(), profile());
        server.join().unwrap();
    }

    #[test]
    fn error_replies_are_replies_and_wrong_ids_are_refused() {
        let (addr, server) = backend(vec![Box::new(|mut s| {
            let f = read_request(&mut s).unwrap();
            reply(&mut s, f.request_id, Message::error(ErrorCode::Forbidden, "no"));
            let f = read_request(&mut s).unwrap();
            reply(&mut s, f.request_id + 1, Message::Pong);
        })]);
        let pool = RpcPool::new(addr, 1, TIMEOUT);
        assert!(matches!(pool.call(get_profile()), Ok(Message::Error(e)) if e.code == ErrorCode::Forbidden));
        assert!(matches!(pool.call(Message::Ping), Err(RpcError::UnexpectedReply)));
        assert_eq!(pool.open_connections(), 0, "a connection out of step is not reused");
        server.join().unwrap();
    }

    #[test]
    fn a_silent_back_end_times_out_and_a_missing_one_is_unreachable() {
        let (release, wait) = mpsc::channel::<()>();
        let (addr, server) = backend(vec![Box::new(move |mut s| {
            read_request(&mut s).unwrap();
            let _ = wait.recv();
        })]);
        let pool = RpcPool::new(addr, 1, Duration::from_millis(200));
        assert!(matches!(pool.call(Message::Ping), Err(RpcError::Timeout)));
        release.send(()).unwrap();
        let listener = server.join().unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let gone = RpcPool::new(format!("127.0.0.1:{port}"), 1, TIMEOUT);
        assert!(matches!(gone.call(Message::Ping), Err(RpcError::Unreachable(_))));
        assert_eq!(gone.open_connections(), 0);
    }

    #[test]
    fn callers_wait_for_a_free_connection_but_not_past_their_deadline() {
        let (got_request, request_seen) = mpsc::channel();
        let (release, wait) = mpsc::channel::<()>();
        let (addr, server) = backend(vec![
            Box::new(move |mut s| {
                let f = read_request(&mut s).unwrap();
                got_request.send(()).unwrap();
                wait.recv().unwrap();
                let mut out = Vec::new();
                Frame { request_id: f.request_id, message: Message::Pong }.encode(&mut out).unwrap();
                let _ = s.write_all(&out);
            }),
            Box::new(|mut s| {
                let f = read_request(&mut s).unwrap();
                reply(&mut s, f.request_id, Message::Pong);
            }),
        ]);
        let pool = std::sync::Arc::new(RpcPool::new(addr, 1, Duration::from_millis(300)));
        let first = {
            let pool = std::sync::Arc::clone(&pool);
            thread::spawn(move || pool.call(Message::Ping))
        };
        request_seen.recv().unwrap();
        assert!(matches!(pool.call(Message::Ping), Err(RpcError::Busy)), "the only connection is leased");
        release.send(()).unwrap();
        let _ = first.join().unwrap(); // Pong or Timeout, depending on who was first
        // Whatever happened to the first call, its slot came back.
        assert_eq!(pool.call(Message::Ping).unwrap(), Message::Pong);
        assert_eq!(pool.open_connections(), 1);
        server.join().unwrap();
    }
}
