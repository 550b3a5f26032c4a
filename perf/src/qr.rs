//! The `qr` scenario: many desktops waiting on scan-to-log-in codes at once,
//! phones approving them at a steady rate, and log-ins beside them.
//!
//! 1. Phones: accounts from [`PHONE_ACCOUNTS_FROM`] on log in, one session
//!    each (not measured; the log-ins beside use accounts 1 to 200, so their
//!    sessions never push a phone's out).
//! 2. Baseline, first half: log-ins at `--concurrency` alone, for half as
//!    long as the approvals will take.
//! 3. Desktops: `--waits` of them make a code (`POST /qr/new`), each from a
//!    loopback source address of its own among [`SOURCE_ADDRESSES`] (as
//!    desktops come from many networks, so per-address limits apply as they
//!    would), and hold `GET /qr/wait`, asking again whenever a wait ends
//!    without news; one `mio` loop holds them all.
//! 4. With every wait held, the servers' memory is read (`--tcpserver-pid`,
//!    `--httpserver-pid`); then phones approve the codes at `--approve-rate`
//!    (each from a source address of its own too), while log-ins run beside.
//! 5. Baseline, second half: once every desktop is answered, log-ins alone
//!    again. The two halves make one baseline, so that a machine whose speed
//!    drifts over the minutes of a run (these virtual machines' does, by a
//!    fifth) weighs on the baseline as on the log-ins between its halves.
//!
//! The report: time from sending an approval to its desktop's answer (p50,
//! p99), the log-in latency beside against the baseline, the memory, and
//! every approval accounted for: a desktop that got no session after its
//! approval succeeded is *lost*, one that got a session its approval did
//! not give is *doubled*.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream as StdStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, net::TcpStream};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::{Config, FIXED_USERS};
use crate::engine::{Budget, Stats};
use crate::error::Error;
use crate::histogram::Histogram;
use crate::response;
use crate::runner::{drive, login};
use crate::workload::{Session, Users};

/// Desktops one run may hold: each is a socket here and in both servers.
pub const MAX_WAITS: usize = 50_000;

/// Desktops held by default: the 10,000 the feature is built for.
pub const DEFAULT_WAITS: usize = 10_000;

/// Approvals a second by default.
pub const DEFAULT_APPROVE_RATE: u32 = 200;

/// Loopback source addresses the desktops (127.0.0.2 …) and the phones
/// (127.0.1.1 …) are spread over: 10,000 desktops make 40 per address,
/// inside every per-address limit at its default.
pub const SOURCE_ADDRESSES: u32 = 250;

/// The first account the phones log in as.
pub const PHONE_ACCOUNTS_FROM: u64 = 1_001;

/// Threads making the codes, and threads approving them.
const CREATE_THREADS: usize = 8;
const PHONE_THREADS: usize = 8;

/// How long a single exchange (a code, an approval) may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long after the last approval the desktops may still be answered.
const ANSWER_GRACE: Duration = Duration::from_secs(30);

/// Pause before a wait answered 503 is asked again: the log-in page's own
/// (`RETRY_MS` in `static/qr.js`), so the scenario loads the servers as
/// ten thousand real pages would, not with a storm of instant retries.
const WAIT_RETRY: Duration = Duration::from_secs(1);

/// Longest the wait loop sleeps in `poll` with nothing due.
const POLL_TICK: Duration = Duration::from_millis(100);

/// What the run measured.
#[derive(Debug)]
pub struct QrReport {
    /// Desktops that held a wait.
    pub waits: usize,
    /// Approvals answered 200.
    pub approved: u64,
    /// Desktops that got their session.
    pub answered: u64,
    /// Desktops whose approval succeeded but that got no session.
    pub lost: u64,
    /// Desktops that got a session their approval did not give.
    pub doubled: u64,
    /// Everything else that went wrong, by kind.
    pub failures: BTreeMap<String, u64>,
    /// From sending an approval to its desktop's answer, in microseconds.
    pub approval_to_answer: Histogram,
    /// Log-ins beside the waits.
    pub logins_beside: Stats,
    /// Log-ins alone: half before the waits, half after.
    pub logins_baseline: Stats,
    /// How long the log-ins beside lasted (the approvals' time), and the
    /// two halves of the baseline together.
    pub logins_time: Duration,
    /// Resident memory (KiB) of tcpserver and httpserver before the waits and with them held.
    pub memory: Vec<(&'static str, u64, u64)>,
}

impl QrReport {
    /// True when every approval was answered once, and nothing else failed.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.doubled == 0 && self.failures.is_empty() && self.answered == self.waits as u64
    }

    /// Successful log-ins a second in one of the two log-in runs.
    fn logins_per_sec(&self, run: &Stats) -> f64 {
        run.ok() as f64 / self.logins_time.as_secs_f64()
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |h: &Histogram, q: f64| f64::from(h.quantile(q)) / 1000.0;
        serde_json::json!({
            "scenario": "qr",
            "waits": self.waits,
            "approved": self.approved,
            "answered": self.answered,
            "lost": self.lost,
            "doubled": self.doubled,
            "failures": self.failures,
            "approval_to_answer_ms": { "p50": ms(&self.approval_to_answer, 0.5), "p99": ms(&self.approval_to_answer, 0.99) },
            "login_p99_ms": { "beside": ms(&self.logins_beside.latency, 0.99), "baseline": ms(&self.logins_baseline.latency, 0.99) },
            "login_p50_ms": { "beside": ms(&self.logins_beside.latency, 0.5), "baseline": ms(&self.logins_baseline.latency, 0.5) },
            "login_qps": { "beside": self.logins_per_sec(&self.logins_beside), "baseline": self.logins_per_sec(&self.logins_baseline) },
            "login_errors": { "beside": self.logins_beside.failed(), "baseline": self.logins_baseline.failed() },
            "memory_kib": self.memory.iter().map(|(name, before, held)| serde_json::json!({
                "process": name, "before": before, "held": held,
                "per_wait_bytes": held.saturating_sub(*before) * 1024 / (self.waits.max(1) as u64),
            })).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for QrReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |h: &Histogram, q: f64| f64::from(h.quantile(q)) / 1000.0;
        writeln!(f, "[qr]")?;
        writeln!(
            f,
            "Waits({}) - Approved({}) - Answered({}) - Lost({}) - Doubled({})",
            self.waits, self.approved, self.answered, self.lost, self.doubled
        )?;
        writeln!(
            f,
            "Approval to answer p50({:.2}ms) - p99({:.2}ms) - max({:.2}ms)",
            ms(&self.approval_to_answer, 0.5),
            ms(&self.approval_to_answer, 0.99),
            f64::from(self.approval_to_answer.max()) / 1000.0
        )?;
        writeln!(
            f,
            "Log-in p99 beside({:.2}ms, {} errors) - alone({:.2}ms, {} errors)",
            ms(&self.logins_beside.latency, 0.99),
            self.logins_beside.failed(),
            ms(&self.logins_baseline.latency, 0.99),
            self.logins_baseline.failed()
        )?;
        writeln!(
            f,
            "Log-in p50 beside({:.2}ms) - alone({:.2}ms); per second beside({:.0}) - alone({:.0})",
            ms(&self.logins_beside.latency, 0.5),
            ms(&self.logins_baseline.latency, 0.5),
            self.logins_per_sec(&self.logins_beside),
            self.logins_per_sec(&self.logins_baseline)
        )?;
        for (name, before, held) in &self.memory {
            let per_wait = held.saturating_sub(*before) * 1024 / (self.waits.max(1) as u64);
            writeln!(
                f,
                "Memory {name}: {before} KiB before, {held} KiB with the waits held ({per_wait} bytes a wait)"
            )?;
        }
        write!(f, "Failures({:?})", self.failures)
    }
}

/// Runs the scenario.
///
/// # Errors
///
/// [`Error::Setup`] if the phones could not all log in; [`Error::Io`] if
/// an event loop could not run.
pub fn run(config: &Config) -> Result<QrReport, Error> {
    let waits = config.waits;
    let phones = log_in_phones(config, waits)?;
    let approval_time =
        Duration::from_secs_f64(waits as f64 / f64::from(config.approve_rate)).max(Duration::from_secs(2));
    let logins = || login(config, Users::Fixed(FIXED_USERS), false);
    let half_baseline =
        || drive(config, config.concurrency, config.threads, logins(), &Budget::duration(approval_time / 2));
    let (mut logins_baseline, _) = half_baseline()?;
    let memory_before: Vec<u64> = pids(config).map(|(_, pid)| rss_kib(pid)).collect();

    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let desktops = make_codes(config, waits, &mut failures);
    // Phone i approves desktop i's code.
    let keys: Vec<Option<String>> = desktops.iter().map(|d| d.as_ref().map(|d| d.key.clone())).collect();
    let started = Instant::now();
    let answered_at: Vec<AtomicU64> = (0..waits).map(|_| AtomicU64::new(0)).collect();
    let sent_at: Vec<AtomicU64> = (0..waits).map(|_| AtomicU64::new(0)).collect();
    let approved_ok: Vec<AtomicU64> = (0..waits).map(|_| AtomicU64::new(0)).collect();
    let deadline = Instant::now() + approval_time + ANSWER_GRACE + Duration::from_secs(5);

    let (wait_failures, phone_failures, logins_beside) = thread::scope(|scope| {
        let held = scope.spawn(|| hold_waits(config, desktops, &answered_at, started, deadline));
        // Let every wait reach its tcpserver before the memory is read.
        thread::sleep(Duration::from_secs(2));
        let memory_held: Vec<u64> = pids(config).map(|(_, pid)| rss_kib(pid)).collect();
        let beside = scope.spawn(|| {
            drive(config, config.concurrency, config.threads, logins(), &Budget::duration(approval_time))
        });
        let phone_failures = approve_all(config, (&phones, &keys), &sent_at, &approved_ok, started);
        let beside = beside.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        let wait_failures = held.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (wait_failures, phone_failures, beside.map(|(stats, _)| (stats, memory_held)))
    });
    let (logins_beside, memory_held) = logins_beside?;
    logins_baseline.merge(&half_baseline()?.0);
    for (kind, n) in wait_failures?.into_iter().chain(phone_failures) {
        *failures.entry(kind).or_default() += n;
    }

    let mut report = QrReport {
        waits,
        approved: 0,
        answered: 0,
        lost: 0,
        doubled: 0,
        failures,
        approval_to_answer: Histogram::default(),
        logins_beside,
        logins_baseline,
        logins_time: approval_time,
        memory: pids(config)
            .zip(memory_before.into_iter().zip(memory_held))
            .map(|((name, _), (before, held))| (name, before, held))
            .collect(),
    };
    for i in 0..waits {
        let approved = approved_ok[i].load(Ordering::Relaxed) == 1;
        let answered = answered_at[i].load(Ordering::Relaxed);
        report.approved += u64::from(approved);
        report.answered += u64::from(answered > 0);
        match (approved, answered > 0) {
            (true, false) => report.lost += 1,
            (false, true) => report.doubled += 1,
            (true, true) => {
                let sent = sent_at[i].load(Ordering::Relaxed);
                let micros = answered.saturating_sub(sent);
                report.approval_to_answer.record(u32::try_from(micros).unwrap_or(u32::MAX));
            }
            (false, false) => {}
        }
    }
    Ok(report)
}

fn pids(config: &Config) -> impl Iterator<Item = (&'static str, u32)> {
    let (tcp, http) = config.pids;
    [("tcpserver", tcp), ("httpserver", http)].into_iter().filter_map(|(name, pid)| Some((name, pid?)))
}

/// Resident memory of a process in KiB (0 if it cannot be read).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn log_in_phones(config: &Config, waits: usize) -> Result<Vec<Session>, Error> {
    let accounts: Vec<u64> = (PHONE_ACCOUNTS_FROM..PHONE_ACCOUNTS_FROM + waits as u64).collect();
    let workload = login(config, Users::List(std::sync::Arc::new(accounts)), true);
    let (stats, workloads) =
        drive(config, waits.min(config.concurrency), 1, workload, &Budget::requests(waits as u64))?;
    let sessions: Vec<Session> =
        workloads.into_iter().flat_map(crate::workload::Workload::into_sessions).collect();
    if sessions.len() != waits {
        return Err(Error::Setup { wanted: waits, got: sessions.len(), failures: stats.failures });
    }
    Ok(sessions)
}

/// The loopback address desktop (`group` 0) or phone (`group` 1) `i` comes from.
fn source(group: u8, i: usize) -> IpAddr {
    let n = (i as u32) % SOURCE_ADDRESSES;
    IpAddr::V4(Ipv4Addr::new(127, 0, group, (n + 1 + u32::from(group == 0)) as u8))
}

/// A blocking connection from `from` to `to`.
fn connect_from(from: IpAddr, to: SocketAddr) -> io::Result<StdStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SockAddr::from(SocketAddr::new(from, 0)))?;
    socket.connect_timeout(&SockAddr::from(to), EXCHANGE_TIMEOUT)?;
    let stream: StdStream = socket.into();
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    Ok(stream)
}

/// A response: status, body, `Set-Cookie` values.
type Answer = (u16, Vec<u8>, Vec<String>);

/// One response read whole from a blocking stream.
fn read_response(stream: &mut StdStream, buf: &mut Vec<u8>) -> io::Result<Answer> {
    loop {
        if let Some(parsed) = parse(buf)? {
            return Ok(parsed);
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(ErrorKind::UnexpectedEof, "closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A complete response at the start of `buf`, taken out of it.
fn parse(buf: &mut Vec<u8>) -> io::Result<Option<Answer>> {
    let parsed = response::parse(buf).map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()))?;
    let Some(r) = parsed else { return Ok(None) };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut head = httparse::Response::new(&mut headers);
    let _ = head.parse(buf);
    let cookies = head
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("set-cookie"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .collect();
    let body = buf[r.body.clone()].to_vec();
    buf.drain(..r.len);
    Ok(Some((r.status, body, cookies)))
}

/// A desktop with its code, on its kept-alive connection.
struct Desktop {
    stream: StdStream,
    key: String,
    binding: String,
}

fn make_codes(config: &Config, waits: usize, failures: &mut BTreeMap<String, u64>) -> Vec<Option<Desktop>> {
    let made: Vec<Vec<(usize, Result<Desktop, String>)>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..CREATE_THREADS)
            .map(|t| {
                scope.spawn(move || {
                    (t..waits).step_by(CREATE_THREADS).map(|i| (i, make_code(config, i))).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut desktops: Vec<Option<Desktop>> = (0..waits).map(|_| None).collect();
    for (i, outcome) in made.into_iter().flatten() {
        match outcome {
            Ok(desktop) => desktops[i] = Some(desktop),
            Err(kind) => *failures.entry(format!("new code: {kind}")).or_default() += 1,
        }
    }
    desktops
}

fn make_code(config: &Config, i: usize) -> Result<Desktop, String> {
    let mut stream = connect_from(source(0, i), config.addr).map_err(|e| format!("connect: {}", e.kind()))?;
    let request = format!(
        "POST /qr/new HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: loadgen desktop {i}\r\n\
         Content-Length: 0\r\n\r\n",
        config.host
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("send: {}", e.kind()))?;
    let (status, body, cookies) =
        read_response(&mut stream, &mut Vec::new()).map_err(|e| format!("read: {}", e.kind()))?;
    if status != 201 {
        return Err(format!("status {status}"));
    }
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| "bad body".to_owned())?;
    let key = json["data"]["key"].as_str().ok_or("no key")?.to_owned();
    let binding = cookies
        .iter()
        .find_map(|c| c.strip_prefix("um_qr=")?.split(';').next().map(str::to_owned))
        .ok_or("no binding cookie")?;
    Ok(Desktop { stream, key, binding })
}

/// Holds every desktop's wait on one `mio` loop until it is answered with a
/// session, or `deadline`; records when each was. Returns the failures.
fn hold_waits(
    config: &Config,
    desktops: Vec<Option<Desktop>>,
    answered_at: &[AtomicU64],
    started: Instant,
    deadline: Instant,
) -> io::Result<BTreeMap<String, u64>> {
    struct Held {
        stream: TcpStream,
        key: String,
        binding: String,
        buf: Vec<u8>,
        seen: &'static str,
    }
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut poll = Poll::new()?;
    let mut held: Vec<Option<Held>> = Vec::with_capacity(desktops.len());
    let send = |h: &mut Held, host: &str| -> io::Result<()> {
        let request = format!(
            "GET /qr/wait?key={}&seen={} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nCookie: um_qr={}\r\n\r\n",
            h.key, h.seen, h.binding
        );
        // The socket's buffer is empty between requests: a small one fits whole.
        let n = h.stream.write(request.as_bytes())?;
        if n == request.len() { Ok(()) } else { Err(io::Error::new(ErrorKind::WriteZero, "short write")) }
    };
    let mut open = 0usize;
    for (i, desktop) in desktops.into_iter().enumerate() {
        let Some(desktop) = desktop else {
            held.push(None);
            continue;
        };
        desktop.stream.set_nonblocking(true)?;
        let mut h = Held {
            stream: TcpStream::from_std(desktop.stream),
            key: desktop.key,
            binding: desktop.binding,
            buf: Vec::new(),
            seen: "pending",
        };
        poll.registry().register(&mut h.stream, Token(i), Interest::READABLE)?;
        match send(&mut h, &config.host) {
            Ok(()) => {
                open += 1;
                held.push(Some(h));
            }
            Err(e) => {
                *failures.entry(format!("wait send: {}", e.kind())).or_default() += 1;
                held.push(None);
            }
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 16 * 1024];
    // Waits answered 503 are asked again after the page's own pause, in the
    // order they were answered (one delay for all keeps this a FIFO).
    let mut retries: VecDeque<(Instant, usize)> = VecDeque::new();
    while open > 0 && Instant::now() < deadline {
        let now = Instant::now();
        while let Some(&(at, i)) = retries.front() {
            if at > now {
                break;
            }
            retries.pop_front();
            let Some(h) = held.get_mut(i).and_then(Option::as_mut) else { continue };
            if let Err(e) = send(h, &config.host) {
                *failures.entry(format!("wait send: {}", e.kind())).or_default() += 1;
                if let Some(mut h) = held[i].take() {
                    let _ = poll.registry().deregister(&mut h.stream);
                }
                open -= 1;
            }
        }
        let timeout =
            retries.front().map_or(POLL_TICK, |&(at, _)| at.saturating_duration_since(now).min(POLL_TICK));
        poll.poll(&mut events, Some(timeout))?;
        for event in &events {
            let i = event.token().0;
            let Some(h) = held.get_mut(i).and_then(Option::as_mut) else { continue };
            let mut ended: Option<Result<(), String>> = None;
            loop {
                match h.stream.read(&mut chunk) {
                    Ok(0) => {
                        ended = Some(Err("wait: closed".into()));
                        break;
                    }
                    Ok(n) => h.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        ended = Some(Err(format!("wait: {}", e.kind())));
                        break;
                    }
                }
            }
            while ended.is_none() {
                let Ok(Some((status, body, cookies))) = parse(&mut h.buf) else { break };
                let state = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["data"]["state"].as_str().map(str::to_owned));
                match (status, state.as_deref()) {
                    (200, Some("confirmed")) if cookies.iter().any(|c| c.starts_with("um_session=")) => {
                        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX).max(1);
                        answered_at[i].store(micros, Ordering::Relaxed);
                        ended = Some(Ok(()));
                    }
                    (200, Some(seen @ ("pending" | "scanned"))) => {
                        h.seen = if seen == "scanned" { "scanned" } else { "pending" };
                        if let Err(e) = send(h, &config.host) {
                            ended = Some(Err(format!("wait send: {}", e.kind())));
                        }
                    }
                    (503, state) => {
                        if let Some("scanned") = state {
                            h.seen = "scanned";
                        }
                        *failures.entry("wait: 503, asked again after 1 s".into()).or_default() += 1;
                        retries.push_back((Instant::now() + WAIT_RETRY, i));
                    }
                    (status, state) => ended = Some(Err(format!("wait: status {status}, state {state:?}"))),
                }
            }
            if let Some(outcome) = ended {
                if let Err(kind) = outcome {
                    *failures.entry(kind).or_default() += 1;
                }
                if let Some(mut h) = held[i].take() {
                    let _ = poll.registry().deregister(&mut h.stream);
                }
                open -= 1;
            }
        }
    }
    if open > 0 {
        *failures.entry("wait: not answered in time".into()).or_default() += open as u64;
    }
    Ok(failures)
}

/// Approves every desktop's code at the configured rate; records when each
/// approval was sent and whether it succeeded. Returns the failures.
fn approve_all(
    config: &Config,
    (phones, keys): (&[Session], &[Option<String>]),
    sent_at: &[AtomicU64],
    approved_ok: &[AtomicU64],
    started: Instant,
) -> BTreeMap<String, u64> {
    let begin = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.approve_rate));
    let outcomes: Vec<BTreeMap<String, u64>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..PHONE_THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let mut failures = BTreeMap::new();
                    for i in (t..phones.len()).step_by(PHONE_THREADS) {
                        let at = begin + interval * i as u32;
                        if let Some(wait) = at.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                        let Some(key) = keys.get(i).and_then(Option::as_deref) else { continue };
                        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                        sent_at[i].store(micros, Ordering::Relaxed);
                        match approve(config, i, &phones[i].token, key) {
                            Ok(()) => approved_ok[i].store(1, Ordering::Relaxed),
                            Err(kind) => *failures.entry(kind).or_default() += 1,
                        }
                    }
                    failures
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut all = BTreeMap::new();
    for (kind, n) in outcomes.into_iter().flatten() {
        *all.entry(kind).or_default() += n;
    }
    all
}

fn approve(config: &Config, i: usize, token: &str, key: &str) -> Result<(), String> {
    let mut stream =
        connect_from(source(1, i), config.addr).map_err(|e| format!("approve connect: {}", e.kind()))?;
    let body = format!("{{\"key\":\"{key}\"}}");
    let request = format!(
        "POST /qr/approve HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {token}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        config.host,
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| format!("approve send: {}", e.kind()))?;
    let (status, body, _) =
        read_response(&mut stream, &mut Vec::new()).map_err(|e| format!("approve read: {}", e.kind()))?;
    let state = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["data"]["state"].as_str().map(str::to_owned));
    match (status, state.as_deref()) {
        (200, Some("confirmed")) => Ok(()),
        (status, _) => Err(format!("approve: status {status}")),
    }
}
