//! The accept loop and the life of one connection.
//!
//! One thread per connection, as many as `--max-connections`, of which one
//! client network (an IPv4 address, an IPv6 /64) may hold at most
//! `--max-connections-per-addr`; each serves requests one after another while
//! the client keeps the connection alive. Past either cap a new connection is
//! not left hanging in the backlog: a few short-lived threads answer `503` with
//! `Retry-After` at once and close it, and if even those are all busy the
//! accept loop answers it itself, without waiting.
//!
//! A connection from a `--trusted-proxy` address (HAProxy in front) is
//! counted by the client its PROXY protocol v2 header names
//! ([`crate::proxy_protocol`]), read first on the connection's thread: that
//! address takes the per-address share, bounds its uploads, is what
//! `--metrics-allow` checks and what tcpserver is told.
//!
//! SIGTERM and SIGINT stop the accept loop and close the listener, so new
//! connections are refused at once; requests in progress get a few seconds to
//! finish, their responses say `Connection: close`, and then the process exits.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::addr_quota::{AddrQuota, QuotaShare};
use crate::app::{App, StartError};
use crate::body_budget::BodyBudget;
use crate::config::Config;
use crate::connection::{HttpConnection, Timeouts};
use crate::error::{Failure, HttpError};
use crate::handlers::{self, Client};
use crate::peer_closed::ClientLink;
use crate::proxy_protocol::{self, ProxyError};
use crate::request::{Method, RequestError};
use crate::response::Response;
use crate::thread_cache::{IDLE_THREAD_LIFETIME, MAX_IDLE_THREADS, ThreadCache};
use crate::{request_id, router};

/// Stack of a connection thread. Handlers are shallow; JSON nesting is capped
/// by serde_json at 128 levels. Small stacks keep thousands of threads cheap.
const CONNECTION_STACK_SIZE: usize = 512 * 1024;

/// Most threads answering over-the-cap connections with 503 at once.
const MAX_REJECTING: usize = 32;

/// Stack of a rejecting thread: it only reads and writes a few bytes.
const REJECT_STACK_SIZE: usize = 64 * 1024;

/// How long a rejected client has to send its request before the 503 goes out.
const REJECT_READ_TIMEOUT: Duration = Duration::from_millis(100);

/// A client that does not read its response within this time is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// After an error response, how long unread request bytes are drained so the
/// close does not turn into a reset that destroys the response in flight.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);

/// Most bytes drained while lingering.
const LINGER_MAX_BYTES: usize = 4 * 1024 * 1024;

/// How long requests in progress may take to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections the kernel may queue before `accept`. std's `bind` asks for 128,
/// which overflows when a couple of thousand clients connect at once (each
/// overflow costs a client a SYN retransmission, a second or more). The kernel
/// caps it at `net.core.somaxconn`, which `sysctl/tune.sh` raises.
const LISTEN_BACKLOG: libc::c_int = 4096;

/// After an accept error such as EMFILE, wait this long rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Binds, prints `listening on <addr>`, and serves until SIGTERM or SIGINT.
///
/// # Errors
///
/// A [`StartError`] if the server cannot start; once serving, errors only
/// close the connection they happen on.
pub fn run(config: Config) -> Result<(), StartError> {
    let app = Arc::new(App::new(config)?);
    let listener = TcpListener::bind(app.config.listen).map_err(StartError::Bind)?;
    widen_backlog(&listener);
    let local = listener.local_addr().map_err(StartError::Bind)?;
    println!("listening on {local}");
    let _ = std::io::stdout().flush();

    let stop = Arc::clone(&app.stopping);
    watch_signals(Arc::clone(&stop), local)?;
    let server = Server::new(app, Arc::clone(&stop));
    server.accept_loop(&listener, &stop);
    // Refuse new connections while the requests in progress finish, rather than
    // leave them in the backlog until the exit resets them.
    drop(listener);
    server.in_flight.wait_idle(DRAIN_TIMEOUT);
    crate::log!("httpserver: stopped");
    Ok(())
}

/// Raises the listen backlog of an already listening socket to [`LISTEN_BACKLOG`]:
/// calling `listen` again on Linux only changes the queue length.
fn widen_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on a descriptor this listener owns and keeps open; it
    // touches no memory of ours.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        crate::log!("httpserver: cannot raise the listen backlog: {}", std::io::Error::last_os_error());
    }
}

/// On SIGTERM/SIGINT, sets `stop` and wakes the accept loop with a connection.
fn watch_signals(stop: Arc<AtomicBool>, local: SocketAddr) -> Result<(), StartError> {
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(StartError::Signals)?;
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                stop.store(true, Ordering::SeqCst);
                let _ = TcpStream::connect_timeout(&reachable(local), Duration::from_secs(1));
            }
        })
        .map_err(StartError::Signals)?;
    Ok(())
}

/// An address this process can connect to for a listener bound to `local`.
fn reachable(local: SocketAddr) -> SocketAddr {
    match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), local.port()),
        _ => local,
    }
}

/// The accept loop's state.
struct Server {
    app: Arc<App>,
    budget: Arc<BodyBudget>,
    connections: Arc<AtomicUsize>,
    /// Connections held per client network.
    per_addr: Arc<AddrQuota>,
    rejecting: Arc<AtomicUsize>,
    in_flight: Arc<InFlight>,
    /// Set on SIGTERM/SIGINT: connections end after the response in progress.
    stopping: Arc<AtomicBool>,
    /// The connections' threads, kept for the next connection when theirs ends.
    threads: ThreadCache,
}

impl Server {
    fn new(app: Arc<App>, stopping: Arc<AtomicBool>) -> Server {
        let budget = Arc::new(BodyBudget::new(app.config.upload_budget_per_addr));
        let per_addr = Arc::new(AddrQuota::new(app.config.max_connections_per_addr));
        Server {
            app,
            budget,
            connections: Arc::new(AtomicUsize::new(0)),
            per_addr,
            rejecting: Arc::new(AtomicUsize::new(0)),
            in_flight: Arc::new(InFlight::default()),
            stopping,
            threads: ThreadCache::new(MAX_IDLE_THREADS, IDLE_THREAD_LIFETIME, CONNECTION_STACK_SIZE),
        }
    }

    fn accept_loop(&self, listener: &TcpListener, stop: &AtomicBool) {
        for stream in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match stream {
                Ok(stream) => self.admit(stream),
                Err(e) if e.kind() == ErrorKind::Interrupted || e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    crate::log!("httpserver: accept failed: {e}");
                    thread::sleep(ACCEPT_BACKOFF);
                }
            }
        }
    }

    /// Starts a thread for `stream`, or turns it away when the server or the
    /// client's network is at its cap.
    fn admit(&self, stream: TcpStream) {
        let Ok(peer) = stream.peer_addr() else {
            // Already gone (reset before it was accepted): nothing to answer.
            return;
        };
        let Some(slot) = Slot::take(&self.connections, self.app.config.max_connections) else {
            reject(stream, &self.rejecting, Full::Server);
            return;
        };
        // A trusted proxy's connections are counted by the client its PROXY
        // header names, read on the connection's own thread (the accept loop
        // never waits on a peer); anyone else's by its own address, here.
        let from_proxy = self.app.config.trusted_proxies.trusts(peer.ip());
        let share = if from_proxy {
            None
        } else {
            let Some(share) = self.per_addr.take(peer.ip(), 1) else {
                reject(stream, &self.rejecting, Full::Address);
                return;
            };
            Some(share)
        };
        let app = Arc::clone(&self.app);
        let budget = Arc::clone(&self.budget);
        let per_addr = Arc::clone(&self.per_addr);
        let in_flight = Arc::clone(&self.in_flight);
        let stopping = Arc::clone(&self.stopping);
        let spawned = self.threads.run(move || {
            let mut stream = stream;
            let (client, share) = match share {
                Some(share) => (peer, share),
                None => match client_behind_proxy(&app, &mut stream, peer, &per_addr) {
                    Some(admitted) => admitted,
                    None => return,
                },
            };
            let _held = (slot, share);
            serve(&app, stream, client, budget, &in_flight, &stopping);
        });
        if let Err(e) = spawned {
            crate::log!("httpserver: cannot start a connection thread: {e}");
        }
    }
}

/// Reads the PROXY header a trusted proxy's connection starts with and takes
/// the share of the client it names; `None` when the connection was
/// answered and closed instead: a header missing, malformed, cut short or
/// late (400 or 408, logged once), or the client over its share (503).
fn client_behind_proxy(
    app: &App,
    stream: &mut TcpStream,
    proxy: SocketAddr,
    per_addr: &Arc<AddrQuota>,
) -> Option<(SocketAddr, QuotaShare)> {
    let client = match proxy_protocol::read_client(stream, proxy) {
        Ok(client) => client,
        Err(e) => {
            crate::log!("{proxy}: {e}");
            let error = match e {
                ProxyError::TimedOut => HttpError::RequestTimeout,
                _ => HttpError::MalformedRequest,
            };
            let failure = Failure::http_because(error, e.to_string());
            let response = handlers::failure(app, Client::Api, &failure).closing();
            finish("-", "unread", Some(response.status), Instant::now());
            if response.write_to(stream, false, false, true).is_ok() {
                linger(stream);
            }
            return None;
        }
    };
    let Some(share) = per_addr.take(client.ip(), 1) else {
        if too_many_connections(Full::Address).write_to(stream, false, false, true).is_ok() {
            linger(stream);
        }
        return None;
    };
    Some((client, share))
}

/// One unit of the connection count, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Slot(Arc::clone(count)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts requests being handled, so shutdown can wait for them.
#[derive(Default)]
struct InFlight {
    count: Mutex<usize>,
    idle: Condvar,
}

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        *self.count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        InFlightGuard(Arc::clone(self))
    }

    fn wait_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut count = self.count.lock().unwrap_or_else(|p| p.into_inner());
        while *count > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return };
            count = match self.idle.wait_timeout(count, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut count = self.0.count.lock().unwrap_or_else(|p| p.into_inner());
        *count = count.saturating_sub(1);
        if *count == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// Serves requests on one connection until either side closes it, or until
/// the server is stopping and the request in progress has been answered.
fn serve(
    app: &App,
    stream: TcpStream,
    peer: SocketAddr,
    budget: Arc<BodyBudget>,
    in_flight: &Arc<InFlight>,
    stopping: &AtomicBool,
) {
    // Responses are written whole; there is nothing to gain from Nagle's delay.
    if stream.set_nodelay(true).and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT))).is_err() {
        return;
    }
    let timeouts = Timeouts {
        idle: app.config.idle_timeout,
        head: app.config.head_timeout,
        body: app.config.body_timeout,
    };
    let mut conn = HttpConnection::new(stream, timeouts, budget);
    loop {
        // Between requests, lines belong to no request.
        crate::log::set_request_id(proto::TraceId::NONE);
        let head = match conn.read_head() {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                crate::log::set_request_id(request_id::generate());
                let started = Instant::now();
                refuse(app, &mut conn, &e, Client::Api, None, peer, |status| {
                    finish("-", "unread", status, started)
                });
                return;
            }
        };
        // From a whole head until the response is written, shutdown waits for
        // this request: its response must not be cut off by the exit.
        let _busy = in_flight.enter();
        let started = Instant::now();
        let id = request_id::choose(head.header("x-request-id"));
        crate::log::set_request_id(id);
        let (keep_alive, http11, head_only) = (head.keep_alive(), head.http11, head.method == Method::Head);
        let client = Client::of(&head);
        let method = head.method.as_str();
        let path = head.path().to_owned();
        let endpoint = router::endpoint(&path);
        let request = match conn.read_request(head, router::body_limit(&path), peer.ip()) {
            Ok(request) => request.with_client_link(ClientLink::of(conn.stream())),
            Err(e) => {
                refuse(app, &mut conn, &e, client, Some(&path), peer, |status| {
                    finish(method, endpoint, status, started)
                });
                return;
            }
        };
        let response = router::route(app, &request).header(request_id::HEADER, id.as_str().to_owned());
        drop(request);
        let keep_alive = keep_alive && !stopping.load(Ordering::SeqCst);
        let close = response.close || !keep_alive;
        // Counted and logged before the write, so that a client that has its
        // answer finds the request in the log and the metrics.
        finish(method, endpoint, Some(response.status), started);
        let written = response.write_to(conn.stream(), head_only, keep_alive, http11);
        if written.is_err() || close {
            return;
        }
    }
}

/// Counts an answered request in the metrics and writes its access line,
/// just before its response is written; `status` `None` (nothing was
/// answered) counts and writes nothing.
fn finish(method: &str, endpoint: &str, status: Option<u16>, started: Instant) {
    if let Some(status) = status {
        let took = started.elapsed();
        crate::metrics::record(endpoint, status, took.as_secs_f64());
        crate::log::request(method, endpoint, status, took.as_micros());
    }
}

/// Answers a request that could not be read (when there is anything to say),
/// then closes the connection gently; `answered` is called with the status
/// (or `None`) just before the response is written.
fn refuse(
    app: &App,
    conn: &mut HttpConnection,
    error: &RequestError,
    client: Client,
    path: Option<&str>,
    peer: SocketAddr,
    answered: impl FnOnce(Option<u16>),
) {
    let Some(failure) = error.failure() else {
        return answered(None);
    };
    if !matches!(error, RequestError::Timeout | RequestError::BodyTooLarge) {
        crate::log!("{peer}: {error}");
    }
    let failure = match (error, path) {
        (RequestError::BodyTooLarge, Some(path)) => router::too_large(path),
        _ => failure,
    };
    let id = crate::log::current_request_id();
    let response =
        handlers::failure(app, client, &failure).closing().header(request_id::HEADER, id.as_str().to_owned());
    answered(Some(response.status));
    if response.write_to(conn.stream(), false, false, true).is_ok() {
        linger(conn.stream());
    }
}

/// Which cap a refused connection met.
#[derive(Debug, Clone, Copy)]
enum Full {
    /// `--max-connections`: the server's.
    Server,
    /// `--max-connections-per-addr`: the client network's share.
    Address,
}

/// Turns away a connection over a cap with a quick 503, on a short-lived
/// thread so the accept loop never waits on a client.
fn reject(stream: TcpStream, rejecting: &Arc<AtomicUsize>, full: Full) {
    let Some(slot) = Slot::take(rejecting, MAX_REJECTING) else {
        return refuse_now(stream, full);
    };
    let spawned = thread::Builder::new().stack_size(REJECT_STACK_SIZE).spawn(move || {
        let _slot = slot;
        let mut stream = stream;
        if stream.set_read_timeout(Some(REJECT_READ_TIMEOUT)).is_err()
            || stream.set_write_timeout(Some(REJECT_READ_TIMEOUT)).is_err()
        {
            return;
        }
        // Take in the request first, so closing does not reset the connection
        // before the client has read the answer.
        let mut scratch = [0u8; 4096];
        let _ = stream.read(&mut scratch);
        if too_many_connections(full).write_to(&mut stream, false, false, true).is_ok() {
            linger(&mut stream);
        }
    });
    if spawned.is_err() {
        crate::log!("httpserver: cannot start a thread to refuse a connection");
    }
}

/// When every rejecting thread is busy (a burst over the cap), answers on the
/// accept loop itself, without waiting: takes in what the client has sent so
/// far, so that closing does not turn into a reset, writes the 503 (a few
/// hundred bytes, for which a new socket's send buffer always has room) and
/// closes. A client whose request arrives only after that may see a reset.
fn refuse_now(mut stream: TcpStream, full: Full) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let mut scratch = [0u8; 4096];
    for _ in 0..4 {
        if !matches!(stream.read(&mut scratch), Ok(n) if n > 0) {
            break;
        }
    }
    if too_many_connections(full).write_to(&mut stream, false, false, true).is_ok() {
        let _ = stream.shutdown(Shutdown::Write);
    }
}

/// The answer past a connection cap: 503 with `Retry-After` and code 112, then
/// close. Past its address's share the message says so: waiting alone does not
/// help a client that holds its share itself.
fn too_many_connections(full: Full) -> Response {
    let failure = match full {
        Full::Server => Failure::http(HttpError::TooManyConnections),
        Full::Address => Failure::http_because(
            HttpError::TooManyConnections,
            "Too many connections from your address. Please close some and try again in a moment.",
        ),
    };
    Response::json_problem(&failure.problem()).closing()
}

/// Half-closes, then reads and drops what the client still sends for a moment,
/// so the response is not lost to a reset; then the stream is dropped.
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() || stream.set_read_timeout(Some(LINGER_TIMEOUT)).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIMEOUT;
    let mut scratch = [0u8; 8192];
    let mut drained = 0;
    while drained < LINGER_MAX_BYTES && Instant::now() < deadline {
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}
