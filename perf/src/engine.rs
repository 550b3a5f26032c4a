//! The event loop that plays the users: one `mio` poll per thread over a fixed
//! set of keep-alive connections, each carrying one request at a time.
//!
//! A thread per connection would spend the two cores of the benchmark machine
//! on context switches at concurrency 2000. Here one thread writes a request,
//! and when the answer is complete it checks it and sends the next on the same
//! connection. Connections open lazily, on their first request, and again after
//! the server closed one or a request failed. A timer pass every `TICK` fails
//! the requests that outlived the timeout and reopens connections whose
//! connect failed (after `CONNECT_BACKOFF`, so a server that is down yields a
//! steady count of `connect` errors rather than a busy loop).

use std::{
    collections::BTreeMap,
    io::{self, Read, Write},
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use mio::{Events, Interest, Poll, Token, net::TcpStream};

use crate::{
    check::{Expect, Failure, check},
    histogram::Histogram,
    response::{self, MAX_RESPONSE_LEN},
    workload::Workload,
};

/// How often timeouts and reconnections are looked at: fine enough for a
/// timeout of seconds, coarse enough that scanning 2000 connections is free.
const TICK: Duration = Duration::from_millis(10);

/// Wait after a failed connect before the connection tries again.
const CONNECT_BACKOFF: Duration = Duration::from_millis(50);

/// Events taken per poll: a few per busy connection per turn.
const EVENTS_PER_POLL: usize = 1024;

/// Bytes read per `read` call: a whole answer of this API in one call.
const READ_CHUNK: usize = 16 * 1024;

/// How many requests a run may still start.
#[derive(Debug)]
pub struct Budget {
    next: AtomicU64,
    limit: u64,
    deadline: Option<Instant>,
}

impl Budget {
    /// Exactly `n` requests.
    pub fn requests(n: u64) -> Budget {
        Budget { next: AtomicU64::new(0), limit: n, deadline: None }
    }

    /// As many requests as start within `duration` from now.
    pub fn duration(duration: Duration) -> Budget {
        Budget { next: AtomicU64::new(0), limit: u64::MAX, deadline: Some(Instant::now() + duration) }
    }

    /// The sequence number of the next request, or `None` when the budget is spent.
    fn take(&self, now: Instant) -> Option<u64> {
        if self.deadline.is_some_and(|d| now >= d) {
            return None;
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        (seq < self.limit).then_some(seq)
    }
}

/// What one engine (or several, merged) measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Latencies of the successful requests, in microseconds.
    pub latency: Histogram,
    /// Failed requests by cause.
    pub failures: BTreeMap<Failure, u64>,
}

impl Stats {
    /// Successful requests.
    pub fn ok(&self) -> u64 {
        self.latency.len()
    }

    /// Failed requests.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &Stats) {
        self.latency.merge(&other.latency);
        for (failure, n) in &other.failures {
            *self.failures.entry(*failure).or_default() += n;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request (the budget is spent).
    Idle,
    /// Waiting for the TCP handshake of a new connection.
    Connecting,
    /// Writing the request.
    Sending,
    /// Waiting for (the rest of) the answer.
    Receiving,
    /// Waiting to reconnect after a failed connect.
    Backoff(Instant),
}

#[derive(Debug)]
struct Conn {
    stream: Option<TcpStream>,
    phase: Phase,
    out: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    started: Instant,
    expect: Option<Expect>,
}

/// One thread's event loop over its connections.
#[derive(Debug)]
pub struct Engine<'a> {
    poll: Poll,
    addr: SocketAddr,
    conns: Vec<Conn>,
    first_conn: usize,
    workload: Workload,
    budget: &'a Budget,
    timeout: Duration,
    stats: Stats,
    busy: usize,
    scratch: Vec<u8>,
}

impl<'a> Engine<'a> {
    /// An engine for the connections numbered `connections` (numbers are global
    /// across threads, so each connection keeps its own session) to `addr`.
    ///
    /// # Errors
    ///
    /// If the OS refuses to create the poll instance.
    pub fn new(
        addr: SocketAddr,
        connections: std::ops::Range<usize>,
        workload: Workload,
        budget: &'a Budget,
        timeout: Duration,
    ) -> io::Result<Engine<'a>> {
        let now = Instant::now();
        let first_conn = connections.start;
        let conns = connections
            .map(|_| Conn {
                stream: None,
                phase: Phase::Idle,
                out: Vec::with_capacity(512),
                written: 0,
                input: Vec::with_capacity(1024),
                started: now,
                expect: None,
            })
            .collect();
        Ok(Engine {
            poll: Poll::new()?,
            addr,
            conns,
            first_conn,
            workload,
            budget,
            timeout,
            stats: Stats::default(),
            busy: 0,
            scratch: vec![0; READ_CHUNK],
        })
    }

    /// Runs until the budget is spent and every request has been answered or
    /// has failed; returns what was measured and the workload (with the
    /// sessions a login workload collected).
    ///
    /// # Errors
    ///
    /// Only if polling itself fails; request failures are counted instead.
    pub fn run(mut self) -> io::Result<(Stats, Workload)> {
        let mut events = Events::with_capacity(EVENTS_PER_POLL);
        let now = Instant::now();
        for idx in 0..self.conns.len() {
            self.start_next(idx, now);
        }
        let mut next_tick = now + TICK;
        while self.busy > 0 {
            match self.poll.poll(&mut events, Some(TICK)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for event in events.iter() {
                let idx = event.token().0;
                let Some(conn) = self.conns.get(idx) else { continue };
                // Readiness is edge-triggered and reported per direction: a
                // writable edge (the peer acknowledged the request) while an
                // answer is awaited needs no read, and vice versa.
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                let writable = event.is_writable() || event.is_write_closed() || event.is_error();
                match conn.phase {
                    Phase::Connecting if writable => self.connected(idx, now),
                    Phase::Sending if writable => self.send(idx, now),
                    Phase::Receiving if readable => self.receive(idx, now),
                    _ => {}
                }
            }
            if now >= next_tick {
                self.tick(now);
                next_tick = now + TICK;
            }
        }
        Ok((self.stats, self.workload))
    }

    /// Gives connection `idx` its next request, opening the connection if needed.
    fn start_next(&mut self, idx: usize, now: Instant) {
        let was_busy = !matches!(self.conns[idx].phase, Phase::Idle);
        let Some(seq) = self.budget.take(now) else {
            let conn = &mut self.conns[idx];
            conn.phase = Phase::Idle;
            conn.stream = None;
            if was_busy {
                self.busy -= 1;
            }
            return;
        };
        if !was_busy {
            self.busy += 1;
        }
        let conn = &mut self.conns[idx];
        conn.out.clear();
        conn.written = 0;
        conn.input.clear();
        conn.expect = Some(self.workload.request(seq, self.first_conn + idx, &mut conn.out));
        conn.started = now;
        if conn.stream.is_some() {
            conn.phase = Phase::Sending;
            self.send(idx, now);
            return;
        }
        match TcpStream::connect(self.addr) {
            Ok(mut stream) => {
                let registered = self.poll.registry().register(
                    &mut stream,
                    Token(idx),
                    Interest::READABLE | Interest::WRITABLE,
                );
                conn.stream = Some(stream);
                conn.phase = Phase::Connecting;
                if registered.is_err() {
                    self.fail(idx, Failure::Connect, now);
                }
            }
            Err(_) => self.fail(idx, Failure::Connect, now),
        }
    }

    /// A new connection became writable: it is established, or it failed.
    fn connected(&mut self, idx: usize, now: Instant) {
        let Some(stream) = self.conns[idx].stream.as_ref() else { return };
        match (stream.take_error(), stream.peer_addr()) {
            (Ok(None), Ok(_)) => {
                // Like browsers and wrk: a request goes out in one segment at
                // once, never held back by Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                self.conns[idx].phase = Phase::Sending;
                self.send(idx, now);
            }
            // Spurious wake-up: the handshake is still under way.
            (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => {}
            _ => self.fail(idx, Failure::Connect, now),
        }
    }

    fn send(&mut self, idx: usize, now: Instant) {
        let conn = &mut self.conns[idx];
        let Some(stream) = conn.stream.as_mut() else { return };
        while conn.written < conn.out.len() {
            match stream.write(&conn.out[conn.written..]) {
                Ok(0) => return self.fail(idx, Failure::Closed, now),
                Ok(n) => conn.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(idx, Failure::Closed, now),
            }
        }
        // The answer's arrival raises a readable edge; nothing to read before.
        conn.phase = Phase::Receiving;
    }

    fn receive(&mut self, idx: usize, now: Instant) {
        let conn = &mut self.conns[idx];
        let Some(stream) = conn.stream.as_mut() else { return };
        loop {
            match stream.read(&mut self.scratch) {
                Ok(0) => return self.fail(idx, Failure::Closed, now),
                Ok(n) => {
                    if conn.input.len() + n > MAX_RESPONSE_LEN {
                        return self.fail(idx, Failure::BadResponse, now);
                    }
                    conn.input.extend_from_slice(&self.scratch[..n]);
                    match response::parse(&conn.input) {
                        // Stop at a whole answer: the server sends nothing
                        // unasked, so draining to WouldBlock would only cost a
                        // system call per request.
                        Ok(Some(answer)) => return self.answered(idx, answer, now),
                        Ok(None) => {}
                        Err(_) => return self.fail(idx, Failure::BadResponse, now),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(idx, Failure::Closed, now),
            }
        }
    }

    fn answered(&mut self, idx: usize, answer: response::Response, now: Instant) {
        let conn = &mut self.conns[idx];
        let Some(expect) = conn.expect.take() else { return };
        let body = conn.input.get(answer.body.clone()).unwrap_or_default();
        match check(answer.status, body, &expect) {
            Ok(token) => {
                let micros = now.duration_since(conn.started).as_micros();
                self.stats.latency.record(u32::try_from(micros).unwrap_or(u32::MAX));
                self.workload.answered(expect, token);
            }
            Err(failure) => *self.stats.failures.entry(failure).or_default() += 1,
        }
        if answer.close {
            conn.stream = None;
        }
        self.start_next(idx, now);
    }

    /// Counts a failed request, drops the connection (its state is unknown) and
    /// moves on: to the next request, or to a back-off after a failed connect.
    fn fail(&mut self, idx: usize, failure: Failure, now: Instant) {
        *self.stats.failures.entry(failure).or_default() += 1;
        let conn = &mut self.conns[idx];
        conn.stream = None;
        conn.expect = None;
        if matches!(failure, Failure::Connect | Failure::ConnectTimeout) {
            conn.phase = Phase::Backoff(now + CONNECT_BACKOFF);
        } else {
            self.start_next(idx, now);
        }
    }

    fn tick(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let late = now.duration_since(self.conns[idx].started) > self.timeout;
            match self.conns[idx].phase {
                Phase::Connecting if late => self.fail(idx, Failure::ConnectTimeout, now),
                Phase::Sending | Phase::Receiving if late => self.fail(idx, Failure::Timeout, now),
                Phase::Backoff(until) if now >= until => self.start_next(idx, now),
                _ => {}
            }
        }
    }
}
