//! The event loop: one thread, one `mio::Poll`, every client socket.
//!
//! Connections live in a [`Slab`] and a connection's token is its slab key;
//! the listener, the workers' waker and the shutdown pipe have fixed tokens at
//! the top of the range, where no slab key reaches. Each turn polls, handles the
//! events by token, then always drains the completion channel (wakes coalesce,
//! so one wake may stand for many completions).
//!
//! Readiness is edge-triggered and may be spurious: `WouldBlock` is normal
//! flow, and a socket is read until it blocks, unless reading stops early for
//! backpressure or fairness. In those two cases nobody will tell us again that
//! bytes are waiting, so the connection is put on the `ready` list (fairness)
//! or marked `paused` and put there once its backpressure is relieved.
//!
//! Slab keys are reused, so a completion names its connection by token *and*
//! serial number, and is dropped if the slot now holds another connection.
//!
//! A new connection is sent a challenge at once and reads nothing but its proof
//! until it has proved the RPC secret ([`crate::gate`]); a pass over the
//! connections, at most every [`SWEEP_INTERVAL`], closes those that have not
//! within their handshake timeout.

use std::io;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use proto::{ErrorCode, Frame, Message, RpcSecret, TraceId};
use slab::Slab;

use crate::conn::{Connection, ReadStatus};
use crate::dispatch::{self, Route};
use crate::error::Error;
use crate::gate::{Gate, Refusal, SWEEP_INTERVAL};
use crate::pool::{Completion, Job, SubmitError, WorkerPool, busy};
use crate::qr_events::QrEvent;
use crate::qr_waits::{Ended, QrWaits, Refused};
use crate::shutdown::Shutdown;

/// The listening socket's token.
pub const LISTENER: Token = Token(usize::MAX);
/// The token of the waker the workers use to signal completions.
pub const WAKER: Token = Token(usize::MAX - 1);
/// The shutdown pipe's token.
pub const SHUTDOWN: Token = Token(usize::MAX - 2);

/// How long a shutdown waits for in-flight requests to be answered and sent.
/// Every request finishes within the database I/O timeout, so this is enough
/// for all of them, and short enough for an orchestrator's stop timeout.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Events taken per poll.
const EVENTS_CAPACITY: usize = 1024;

/// Bytes read from a socket per read call.
const READ_CHUNK: usize = 64 * 1024;

/// Reads per connection per turn before others get their go: 1 MiB, enough for
/// a picture upload to make fast progress without starving small requests.
const READS_PER_TURN: usize = 16;

/// Wait before accepting again after `accept` failed for want of resources
/// (file descriptors, memory), instead of spinning on the error.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Wait before handing parked waits' checks to the workers again after the
/// queue was full: short against a wait's 25 s, long enough not to spin.
const QR_RETRY: Duration = Duration::from_millis(10);

/// Connections refused for being over the limit are logged at most this often.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a connection was closed.
#[derive(Debug)]
enum Close {
    /// Everything was answered and the peer (or shutdown) ended the conversation.
    Finished,
    /// The peer sent bytes that are not a valid frame.
    Protocol(proto::Error),
    /// The socket failed.
    Io(io::Error),
    /// The peer did not prove the RPC secret.
    Refused(Refusal),
}

/// Counts connections refused at the limit, for a rate-limited log line.
#[derive(Debug, Default)]
struct Refusals {
    since_log: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, max: usize) {
        self.since_log += 1;
        let now = Instant::now();
        if self.last_log.is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_INTERVAL) {
            crate::log!("refused {} connection(s): at the limit of {max}", self.since_log);
            self.since_log = 0;
            self.last_log = Some(now);
        }
    }
}

/// The event loop and everything it owns.
#[derive(Debug)]
pub struct Reactor {
    poll: Poll,
    events: Events,
    listener: Option<TcpListener>,
    conns: Slab<Connection>,
    max_connections: usize,
    next_conn_id: u64,
    pool: Option<WorkerPool>,
    completions: Receiver<Completion>,
    shutdown: Shutdown,
    scratch: Box<[u8]>,
    /// Connections that may have unread input although no event will say so.
    ready: Vec<Token>,
    /// Connections that got replies this turn and need a flush.
    touched: Vec<Token>,
    accept_retry_at: Option<Instant>,
    draining_until: Option<Instant>,
    refusals: Refusals,
    /// What connections must prove they know before their requests are read.
    secret: RpcSecret,
    /// When to look next for connections past their handshake timeout; `None`
    /// while none is waiting to prove the secret.
    sweep_at: Option<Instant>,
    /// Scan-to-log-in waits parked here ([`crate::qr_waits`]).
    qr: QrWaits,
    /// Announcements of changed codes ([`crate::qr_events`]).
    qr_events: Receiver<QrEvent>,
    /// When to hand queued checks to the workers again after a full queue.
    qr_retry_at: Option<Instant>,
}

impl Reactor {
    /// A reactor over a bound listener. The listener and the shutdown pipe are
    /// registered with `poll` here; the waker must already be registered (the
    /// pool holds it).
    ///
    /// # Errors
    ///
    /// The I/O error if a registration fails.
    pub fn new(
        poll: Poll,
        mut listener: TcpListener,
        mut shutdown: Shutdown,
        (pool, completions): (WorkerPool, Receiver<Completion>),
        max_connections: usize,
        secret: RpcSecret,
        qr_events: Receiver<QrEvent>,
    ) -> io::Result<Reactor> {
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry().register(shutdown.source(), SHUTDOWN, Interest::READABLE)?;
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            listener: Some(listener),
            conns: Slab::with_capacity(max_connections.min(1024)),
            max_connections,
            next_conn_id: 0,
            pool: Some(pool),
            completions,
            shutdown,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            ready: Vec::new(),
            touched: Vec::new(),
            accept_retry_at: None,
            draining_until: None,
            refusals: Refusals::default(),
            secret,
            sweep_at: None,
            qr: QrWaits::new(),
            qr_events,
            qr_retry_at: None,
        })
    }

    /// Runs until shutdown, then waits (up to [`DRAIN_TIMEOUT`]) for in-flight
    /// requests to be answered, and stops the workers.
    ///
    /// # Errors
    ///
    /// The I/O error if polling itself fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut batch: Vec<(Token, bool, bool, bool)> = Vec::with_capacity(EVENTS_CAPACITY);
        loop {
            let timeout = self.timeout();
            if let Err(e) = self.poll.poll(&mut self.events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            batch.clear();
            batch.extend(self.events.iter().map(|e| {
                let closed = e.is_read_closed() || e.is_error();
                (e.token(), e.is_readable() || closed, e.is_writable(), closed)
            }));
            for &(token, readable, writable, closed) in &batch {
                match token {
                    LISTENER => self.accept_all(),
                    WAKER => {} // Completions are drained below, every turn.
                    SHUTDOWN => self.begin_shutdown(),
                    token => {
                        if closed {
                            self.end_waits(token);
                        }
                        self.on_connection_event(token, readable, writable);
                    }
                }
            }
            self.drain_completions();
            self.run_ready();
            self.pump_waits();
            crate::metrics::QR_WAITS.set(i64::try_from(self.qr.len()).unwrap_or(i64::MAX));
            // One wake-up call for all the jobs of this turn (see `queue`).
            if let Some(pool) = &self.pool {
                pool.wake_workers();
            }
            if self.sweep_at.is_some_and(|at| Instant::now() >= at) {
                self.sweep_handshakes();
            }
            if self.accept_retry_at.is_some_and(|at| Instant::now() >= at) {
                self.accept_retry_at = None;
                self.accept_all();
            }
            if let Some(deadline) = self.draining_until {
                if self.conns.is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    crate::log!(
                        "shutdown: gave up on {} connection(s) after {DRAIN_TIMEOUT:?}",
                        self.conns.len()
                    );
                    break;
                }
            }
        }
        // Closes the queue and waits for the workers.
        drop(self.pool.take());
        Ok(())
    }

    /// How long the next poll may wait.
    fn timeout(&self) -> Option<Duration> {
        // Connections with unread input, or with output queued outside the
        // turn's flush (challenges to connections accepted on a retry), go on
        // at once.
        if !self.ready.is_empty() || !self.touched.is_empty() {
            return Some(Duration::ZERO);
        }
        let now = Instant::now();
        let checks = self.qr.has_queued().then(|| self.qr_retry_at.unwrap_or(now));
        [self.accept_retry_at, self.draining_until, self.sweep_at, self.qr.next_deadline(), checks]
            .into_iter()
            .flatten()
            .map(|at| at.saturating_duration_since(now))
            .min()
    }

    fn accept_all(&mut self) {
        let Some(listener) = &self.listener else { return };
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.max_connections {
                        drop(stream);
                        self.refusals.note(self.max_connections);
                        continue;
                    }
                    // Replies are small and latency matters more than packet count.
                    let _ = stream.set_nodelay(true);
                    let (gate, challenge) = match Gate::challenge(Instant::now()) {
                        Ok(made) => made,
                        Err(e) => {
                            crate::log!("cannot challenge the connection from {peer}: {e}");
                            continue;
                        }
                    };
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    if let Err(e) = self.poll.registry().register(&mut stream, token, Interest::READABLE) {
                        crate::log!("cannot register connection from {peer}: {e}");
                        continue;
                    }
                    self.next_conn_id += 1;
                    let deadline = gate.deadline();
                    let conn = entry.insert(Connection::new(self.next_conn_id, peer, stream, gate));
                    crate::metrics::CONNECTIONS_OPEN.add(1);
                    // A challenge always encodes: a fixed-size body.
                    let _ = conn.queue(&challenge);
                    // Sent this turn, when the touched connections are flushed.
                    self.touched.push(token);
                    if let (None, Some(at)) = (self.sweep_at, deadline) {
                        self.sweep_at = Some(at);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => {}
                Err(e) => {
                    // Out of descriptors or memory: the pending connections stay in
                    // the backlog, and no new event will announce them, so retry later.
                    crate::log!("accept failed: {e}; retrying in {ACCEPT_RETRY:?}");
                    self.accept_retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn on_connection_event(&mut self, token: Token, readable: bool, writable: bool) {
        if readable {
            self.pump(token);
        }
        if readable || writable {
            self.after_io(token);
        }
    }

    /// Takes requests from a connection: decodes what is buffered, then reads
    /// more, until the socket blocks, the peer is done, backpressure applies, or
    /// this connection has had its share of the turn.
    fn pump(&mut self, token: Token) {
        let mut reads = 0;
        loop {
            loop {
                let Some(conn) = self.conns.get_mut(token.0) else { return };
                if conn.done_reading {
                    return;
                }
                if !conn.gate.is_open() {
                    match self.admit(token) {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(refusal) => return self.close(token, Close::Refused(refusal)),
                    }
                }
                let Some(conn) = self.conns.get_mut(token.0) else { return };
                if conn.backpressured() {
                    conn.paused = true;
                    return;
                }
                match conn.next_frame() {
                    Ok(Some((frame, trace))) => self.take_request(token, frame, trace),
                    Ok(None) => break,
                    Err(e) => return self.close(token, Close::Protocol(e)),
                }
            }
            if reads == READS_PER_TURN {
                self.ready.push(token);
                return;
            }
            let Some(conn) = self.conns.get_mut(token.0) else { return };
            match conn.read_some(&mut self.scratch) {
                Ok(ReadStatus::Data) => reads += 1,
                Ok(ReadStatus::Blocked) => return,
                Ok(ReadStatus::Eof) if !conn.gate.is_open() => {
                    return self.close(token, Close::Refused(Refusal::Closed));
                }
                Ok(ReadStatus::Eof) => {
                    conn.done_reading = true;
                    self.end_waits(token);
                    return;
                }
                Err(e) => return self.close(token, Close::Io(e)),
            }
        }
    }

    /// Takes a pending connection's proof, if it is buffered whole: opens its
    /// gate and queues `Accepted` (which the client waits for before its first
    /// request). `Ok(false)` while more bytes are needed.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] for anything but a right proof; nothing is answered.
    fn admit(&mut self, token: Token) -> Result<bool, Refusal> {
        let Some(conn) = self.conns.get_mut(token.0) else { return Ok(false) };
        match conn.peek_header() {
            Ok(Some(header)) => Gate::screen(&header)?,
            Ok(None) => return Ok(false),
            Err(e) => return Err(Refusal::Garbled(e)),
        }
        let Some((frame, _)) = conn.next_frame().map_err(Refusal::Garbled)? else { return Ok(false) };
        conn.gate.admit(&frame, &self.secret)?;
        // A bodiless frame always encodes.
        let _ = conn.queue(&Frame { request_id: 0, message: Message::Accepted });
        Ok(true)
    }

    /// Closes the connections past their handshake timeout, and says when to
    /// look again: at the next deadline, but not before [`SWEEP_INTERVAL`].
    fn sweep_handshakes(&mut self) {
        let now = Instant::now();
        let mut overdue = Vec::new();
        let mut next: Option<Instant> = None;
        for (key, conn) in &self.conns {
            match conn.gate.deadline() {
                Some(at) if at <= now => overdue.push(Token(key)),
                Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                None => {}
            }
        }
        for token in overdue {
            self.close(token, Close::Refused(Refusal::TimedOut));
        }
        self.sweep_at = next.map(|at| at.max(now + SWEEP_INTERVAL));
    }

    /// Answers a request on the spot or hands it to a worker.
    fn take_request(&mut self, token: Token, frame: Frame, trace: TraceId) {
        let Frame { request_id, message } = frame;
        crate::metrics::FRAMES[message.message_type() as usize].add(1);
        let work = match dispatch::route(message) {
            Route::Answer(reply) => return self.reply(token, request_id, reply),
            Route::Work(message) => message,
        };
        let Some(conn_id) = self.conns.get(token.0).map(|conn| conn.id) else { return };
        if let Message::QrWait { wait_ms, .. } = &work {
            let wait_ms = *wait_ms;
            return self.take_wait(token, conn_id, request_id, trace, work, wait_ms);
        }
        if let Message::QrCancel { wait } = &work {
            let wait = *wait;
            return self.cancel_wait(token, conn_id, request_id, wait);
        }
        let job = Job { token, conn_id, request_id, trace, message: work, wait: None };
        let submitted = match &self.pool {
            Some(pool) => pool.submit(job),
            None => Err(SubmitError::Closed),
        };
        match submitted {
            Ok(()) => self.count_in_flight(token),
            Err(SubmitError::Full) => {
                crate::metrics::SHED_FULL.add(1);
                self.reply(token, request_id, busy(ErrorCode::Overloaded));
            }
            Err(SubmitError::Closed) => self.reply(token, request_id, busy(ErrorCode::Unavailable)),
        }
    }

    /// Takes a `QrWait`: it is held here from its first check on (see
    /// `qr_waits`), and that check is a background job. When the workers'
    /// share for those is full (ten thousand desktops opening the page at
    /// once), a wait with time to wait stays queued here for its check,
    /// as a parked wait's later checks do, instead of being refused; only
    /// a wait that asked for no waiting (one look) is answered `Overloaded`.
    fn take_wait(
        &mut self,
        token: Token,
        conn_id: u64,
        request_id: u64,
        trace: TraceId,
        work: Message,
        wait_ms: u32,
    ) {
        let wait = match self.qr.begin((token, conn_id, request_id), work.clone(), Instant::now()) {
            Ok(wait) => wait,
            Err(Refused::Full) => return self.reply(token, request_id, Error::QrWaitsFull.to_message()),
        };
        let job = Job { token, conn_id, request_id, trace, message: work, wait: Some(wait) };
        let submitted = match &self.pool {
            Some(pool) => pool.submit_background(job),
            None => Err(SubmitError::Closed),
        };
        match submitted {
            Ok(()) => self.count_in_flight(token),
            Err(SubmitError::Full) if wait_ms > 0 => {
                let now = Instant::now();
                match self.qr.unsent(wait, now) {
                    None => {
                        self.count_in_flight(token);
                        self.qr_retry_at.get_or_insert(now + QR_RETRY);
                    }
                    Some(_) => self.reply(token, request_id, busy(ErrorCode::Overloaded)),
                }
            }
            Err(SubmitError::Full) => {
                self.qr.remove(wait);
                crate::metrics::SHED_FULL.add(1);
                self.reply(token, request_id, busy(ErrorCode::Overloaded));
            }
            Err(SubmitError::Closed) => {
                self.qr.remove(wait);
                self.reply(token, request_id, busy(ErrorCode::Unavailable));
            }
        }
    }

    /// Takes a `QrCancel`: the wait `wait` of this connection ends now, with
    /// its last answer (which its client no longer reads), so that its place
    /// here and its count among the connection's requests in flight are
    /// given back at once, not at its deadline. Answered `QrCancelled`
    /// whether or not the wait was still held; no worker is involved. A
    /// check of it a worker still runs finds it gone and is dropped.
    fn cancel_wait(&mut self, token: Token, conn_id: u64, request_id: u64, wait: u64) {
        if let Some(ended) = self.qr.cancel(token, conn_id, wait) {
            crate::metrics::QR_WAITS_CANCELLED.add(1);
            self.answer_wait(ended);
        }
        self.reply(token, request_id, Message::QrCancelled);
    }

    /// Counts a request taken for a connection, until its reply is queued.
    fn count_in_flight(&mut self, token: Token) {
        if let Some(conn) = self.conns.get_mut(token.0) {
            conn.in_flight += 1;
        }
    }

    /// Appends a reply to a connection's write buffer (sent by `after_io`).
    fn reply(&mut self, token: Token, request_id: u64, message: Message) {
        let Some(conn) = self.conns.get_mut(token.0) else { return };
        if let Err(e) = conn.queue(&Frame { request_id, message }) {
            crate::log!(
                "connection {} ({}): reply to request {request_id} not encodable: {e}",
                token.0,
                conn.peer
            );
            let fallback = Message::error(ErrorCode::Internal, "The reply could not be encoded.");
            // A short constant message always encodes.
            let _ = conn.queue(&Frame { request_id, message: fallback });
        }
    }

    /// Sends what is buffered, resumes a paused reader, closes a finished
    /// connection, and keeps the registered interest in line.
    fn after_io(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(token.0) else { return };
        if let Err(e) = conn.flush() {
            return self.close(token, Close::Io(e));
        }
        if conn.finished() {
            return self.close(token, Close::Finished);
        }
        if conn.paused && !conn.backpressured() {
            conn.paused = false;
            self.ready.push(token);
        }
        let wanted = conn.wanted_interest();
        if wanted != conn.interest {
            if let Err(e) = self.poll.registry().reregister(&mut conn.stream, token, wanted) {
                return self.close(token, Close::Io(e));
            }
            conn.interest = wanted;
        }
    }

    fn drain_completions(&mut self) {
        if let Some(pool) = &self.pool {
            pool.rearm_wake();
        }
        while let Ok(done) = self.completions.try_recv() {
            if let Some(checked) = done.wait {
                let (wait, unchanged, ttl_ms) = (checked.wait, checked.unchanged, checked.ttl_ms);
                if let Some(ended) = self.qr.checked(wait, done.reply, unchanged, ttl_ms, Instant::now()) {
                    self.answer_wait(ended);
                }
                continue;
            }
            // The connection may be gone, or its slot reused by a newer one.
            let Some(conn) = self.conns.get_mut(done.token.0).filter(|c| c.id == done.conn_id) else {
                continue;
            };
            conn.in_flight = conn.in_flight.saturating_sub(1);
            self.reply(done.token, done.request_id, done.reply);
            self.touched.push(done.token);
        }
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &token in &touched {
            self.after_io(token);
        }
        touched.clear();
        self.touched = touched;
    }

    /// Ends the parked waits of a connection whose peer closed its side
    /// (answered, if it still reads), so that the connection can finish and
    /// free them. Called on EOF, and on the peer's close event itself: a
    /// connection with [`crate::conn::MAX_IN_FLIGHT`] parked waits is not
    /// read (backpressure), so its EOF would otherwise wait for them.
    fn end_waits(&mut self, token: Token) {
        for ended in self.qr.end_connection(token) {
            self.answer_wait(ended);
        }
    }

    /// Sends the answer of a wait that ended, as a completion would be.
    fn answer_wait(&mut self, ended: Ended) {
        let Some(conn) = self.conns.get_mut(ended.token.0).filter(|c| c.id == ended.conn_id) else { return };
        conn.in_flight = conn.in_flight.saturating_sub(1);
        self.reply(ended.token, ended.request_id, ended.reply);
        self.touched.push(ended.token);
    }

    /// Takes the announcements of changed codes, queues the checks they and
    /// the deadlines call for, and hands the workers as many as their queue takes.
    fn pump_waits(&mut self) {
        while let Ok(event) = self.qr_events.try_recv() {
            match event {
                QrEvent::Changed(key_hash) => self.qr.announce(&key_hash),
                QrEvent::Resync => self.qr.resync(),
            }
        }
        let now = Instant::now();
        self.qr.expire_due(now);
        if self.qr_retry_at.is_some_and(|at| now < at) {
            return;
        }
        self.qr_retry_at = None;
        while let Some(wait) = self.qr.next_check() {
            let Some((token, conn_id, request_id, message)) = self.qr.request(wait) else { continue };
            let job =
                Job { token, conn_id, request_id, trace: proto::TraceId::NONE, message, wait: Some(wait) };
            let submitted = match &self.pool {
                Some(pool) => pool.submit_background(job),
                None => Err(SubmitError::Closed),
            };
            if submitted.is_err() {
                if let Some(ended) = self.qr.unsent(wait, now) {
                    self.answer_wait(ended);
                }
                self.qr_retry_at = Some(now + QR_RETRY);
                return;
            }
        }
    }

    /// Waits held now.
    pub fn waits_held(&self) -> usize {
        self.qr.len()
    }

    fn run_ready(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        ready.sort_unstable();
        ready.dedup();
        for &token in &ready {
            self.pump(token);
            self.after_io(token);
        }
        // `pump` may have queued some again for the next turn; keep the allocation.
        ready.clear();
        if self.ready.is_empty() {
            self.ready = ready;
        }
    }

    fn begin_shutdown(&mut self) {
        self.shutdown.drain();
        if self.draining_until.is_some() {
            return;
        }
        let in_flight: usize = self.conns.iter().map(|(_, c)| c.in_flight).sum();
        crate::log!(
            "shutting down: no new connections; finishing {in_flight} request(s) on {} connection(s)",
            self.conns.len()
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_retry_at = None;
        self.draining_until = Some(Instant::now() + DRAIN_TIMEOUT);
        // Parked waits are answered now, with where their codes stood: the
        // desktop asks again (another tcpserver, or this one restarted).
        for ended in self.qr.end_all() {
            self.answer_wait(ended);
        }
        let tokens: Vec<Token> = self
            .conns
            .iter_mut()
            .map(|(key, conn)| {
                conn.done_reading = true;
                Token(key)
            })
            .collect();
        for token in tokens {
            self.after_io(token);
        }
    }

    fn close(&mut self, token: Token, why: Close) {
        let Some(mut conn) = self.conns.try_remove(token.0) else { return };
        crate::metrics::CONNECTIONS_OPEN.add(-1);
        // Whatever its waits held goes with them.
        self.qr.close_connection(token);
        if matches!(why, Close::Protocol(_)) {
            // Best effort: replies to the valid requests before the bad bytes.
            let _ = conn.flush();
        }
        let _ = self.poll.registry().deregister(&mut conn.stream);
        match why {
            Close::Finished => {}
            Close::Protocol(e) => {
                crate::log!("connection {} ({}): closed: protocol error: {e}", token.0, conn.peer);
            }
            Close::Refused(why) => {
                crate::log!("connection {} ({}): refused: {why}", token.0, conn.peer);
            }
            Close::Io(e) => {
                if !matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) {
                    crate::log!("connection {} ({}): closed: {e}", token.0, conn.peer);
                }
            }
        }
    }
}
