//! The RPC balancer: one [`RpcPool`] per tcpserver (`--backend A,B,...`),
//! each call sent to one of them, and a dead one taken out of the rotation
//! at once and back in when it answers again.
//!
//! **Which backend.** A call goes to the backend, among those up, with the
//! fewest calls of its kind in flight from this httpserver; ties (an idle
//! system, or even load) go round robin, from a start that moves on by one
//! with each call. Round robin alone would be simpler, but calls differ a
//! hundredfold in cost (a profile read from Redis against a log-in that
//! hashes a password; a QR wait is parked for up to 25 s), and a tcpserver
//! that falls behind (a slow database node, its queue full, a pause) keeps
//! its calls longer, so its count rises and new calls go elsewhere until it
//! catches up, with no timer and no measurement of latency: the counts are
//! atomics the pools keep anyway, a few loads per call for at most
//! [`MAX_BACKENDS`]. Long polls and ordinary calls are balanced apart (the
//! [`Lane`]s): each lane has its own pools and counts.
//!
//! **Noticing a dead backend.** A backend is marked down (`health`) the
//! moment a call finds its connection refused or reset, its handshake
//! refused, or a write failing, and the moment a pool's reader thread sees
//! tcpserver end a connection (EOF or a read error), even with no call in
//! flight. No call is sent to a backend that is down while another is up; a
//! background thread (`prober`) pings it, 250 ms after it went down and
//! then every 500 ms to 1 s, each ping bounded by [`PROBE_TIMEOUT`], and takes
//! it back at its first answer. With every backend down, calls still try
//! them (down ones last), so a single tcpserver that restarts is used again
//! at the first call after it is back, as before there was a balancer. A
//! call that times out marks its backend down only if not one reply byte
//! came from it (on any connection of that lane) for the whole attempt: a
//! busy tcpserver still answers others (it sheds load with a quick
//! Overloaded), while one that is stopped without closing its sockets
//! (SIGSTOP, a partition) answers nothing, and is then probed like a dead one.
//!
//! **Sending again.** A call is encoded once. When a backend fails it before
//! any byte of it was written (connection refused, handshake refused, every
//! connection of that backend full), it goes at once to the next backend,
//! whatever its type. When the connection broke after the request was
//! written, it may have been applied: a request that is safe to resend
//! ([`proto::MessageType::is_safe_to_resend`]) is sent again (first on a
//! fresh connection of the same backend, which fails at once when it is
//! dead, then elsewhere), and the reply to the copy is the true answer. Those
//! are the naturally idempotent requests (profile reads, QR waits, Ping,
//! readiness) and the two writes tcpserver makes idempotent: a sign-up,
//! which carries a random key that a copy finding its own account is
//! answered by, and a nickname change, applied only where the nickname
//! differs ([`proto::idempotency`]). So when a tcpserver dies under load, a
//! sign-up or a nickname change in flight there is answered by another, 201
//! or 200 if stored, and never answered 503 after it was stored. Any other
//! write fails with [`RpcError::Interrupted`] (HTTP 503) and is never sent
//! twice. Each call tries each backend at most once, all within the call's
//! one deadline.

mod health;
mod prober;

use std::fmt;
use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use proto::{Message, RpcSecret};

pub use self::health::{Change, FIRST_PROBE_AFTER, Health, MAX_PROBE_INTERVAL};
use crate::metrics::{self, RpcMetrics};
use crate::rpc_pool::{self, GiveUp, LostHook, RpcError, RpcPool};

/// Most backends one httpserver balances over: every backend costs a pool
/// of connections in each lane (`--rpc-pool` + `--qr-rpc-pool` sockets, and
/// their reader threads) and a set of metric series, and a call looks at
/// each backend's count. Sixteen tcpservers carry far more than one
/// httpserver can send.
pub const MAX_BACKENDS: usize = 16;

/// Longest a probe (one Ping to a backend that is down) may take: a live
/// tcpserver answers a Ping from its reactor in well under a millisecond,
/// and a dead one refuses the connection at once; one that takes longer is
/// not ready to take calls.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Stack of the prober thread: it sends Pings, which may open connections,
/// and so resolve a backend's host name (glibc's resolver and its NSS
/// modules want far more stack than the probe itself).
const PROBER_STACK_SIZE: usize = 256 * 1024;

/// Which pools a call uses: ordinary calls, or long polls that tcpserver
/// parks (QR waits), which must never take the places of ordinary calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Every call but long polls.
    Calls,
    /// Long polls.
    Waits,
}

/// The size of one lane's pool to each backend, and how long its calls may take.
#[derive(Debug, Clone, Copy)]
pub struct LaneSettings {
    /// Connections to each backend.
    pub connections: usize,
    /// Longest one call may take.
    pub timeout: Duration,
}

/// Calls spread over the backends; see the module doc.
#[derive(Debug)]
pub struct Balancer {
    shared: Arc<Shared>,
}

/// What the callers and the prober share.
#[derive(Debug)]
struct Shared {
    backends: Vec<Backend>,
    /// Each backend's state machine, by index; changed only under this lock.
    health: Mutex<Vec<Health>>,
    /// Signalled when a backend goes down (the prober has a new probe to
    /// schedule) and when the balancer is dropped.
    changed: Condvar,
    stopping: AtomicBool,
    /// Where the round-robin tie-break starts for the next call.
    next: AtomicUsize,
    /// Request ids, unique over all the pools, so one encoded call can be
    /// sent to any of them.
    next_id: AtomicU64,
}

/// One tcpserver.
#[derive(Debug)]
struct Backend {
    /// As configured: the metrics label and the log's name for it.
    addr: String,
    calls: RpcPool,
    waits: RpcPool,
    /// A copy of `health[i].is_up()`, read without the lock on every call.
    up: AtomicBool,
    metrics: &'static RpcMetrics,
}

impl Backend {
    fn pool(&self, lane: Lane) -> &RpcPool {
        match lane {
            Lane::Calls => &self.calls,
            Lane::Waits => &self.waits,
        }
    }
}

/// Why the balancer could not be built.
#[derive(Debug)]
pub enum BalancerError {
    /// No backend, or more than [`MAX_BACKENDS`].
    BackendCount(usize),
    /// The prober thread could not be started.
    Prober(io::Error),
}

impl fmt::Display for BalancerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BalancerError::BackendCount(n) => {
                write!(f, "{n} backends given; 1 to {MAX_BACKENDS} are supported")
            }
            BalancerError::Prober(e) => write!(f, "cannot start the backend prober thread: {e}"),
        }
    }
}

impl std::error::Error for BalancerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BalancerError::Prober(e) => Some(e),
            BalancerError::BackendCount(_) => None,
        }
    }
}

impl Balancer {
    /// Pools to each of `addrs` (`host:port`, resolved at each connect), in
    /// both lanes, each connection proving `secret`; every backend starts
    /// up. Opens no connection yet; starts the prober thread.
    ///
    /// # Errors
    ///
    /// A [`BalancerError`] for a count of backends out of range, or when the
    /// prober cannot start.
    pub fn new(
        addrs: &[String],
        calls: LaneSettings,
        waits: LaneSettings,
        secret: &RpcSecret,
    ) -> Result<Balancer, BalancerError> {
        if addrs.is_empty() || addrs.len() > MAX_BACKENDS {
            return Err(BalancerError::BackendCount(addrs.len()));
        }
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| Shared {
            backends: addrs
                .iter()
                .zip(&metrics::RPC)
                .enumerate()
                .map(|(index, (addr, metrics))| {
                    let lost = lost_hook(weak.clone(), index);
                    let pool = |lane: LaneSettings| {
                        RpcPool::watched(
                            addr.clone(),
                            lane.connections,
                            lane.timeout,
                            secret.clone(),
                            metrics,
                            Some(lost.clone()),
                        )
                    };
                    metrics.up.set(1);
                    Backend {
                        addr: addr.clone(),
                        calls: pool(calls),
                        waits: pool(waits),
                        up: AtomicBool::new(true),
                        metrics,
                    }
                })
                .collect(),
            health: Mutex::new(vec![Health::Up; addrs.len()]),
            changed: Condvar::new(),
            stopping: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        });
        let prober = Arc::clone(&shared);
        thread::Builder::new()
            .name("rpc-prober".into())
            .stack_size(PROBER_STACK_SIZE)
            .spawn(move || prober::run(&prober))
            .map_err(BalancerError::Prober)?;
        Ok(Balancer { shared })
    }

    /// Sends `message` on `lane` to one backend (another when that one fails
    /// it, as the module doc says) and returns tcpserver's reply, which may
    /// be [`Message::Error`]: a refusal is a reply, not an [`RpcError`].
    ///
    /// # Errors
    ///
    /// The [`RpcError`] of the last backend tried when none gave a reply.
    pub fn call(&self, lane: Lane, message: Message) -> Result<Message, RpcError> {
        self.call_watched(lane, message, None)
    }

    /// [`Balancer::call`] for a parked call, given up when another thread
    /// says through `give_up` that its client has gone
    /// ([`RpcPool::send_watched`]); that is final, never a reason to try
    /// another backend.
    ///
    /// # Errors
    ///
    /// As [`Balancer::call`], and [`RpcError::Abandoned`].
    pub fn call_watched(
        &self,
        lane: Lane,
        message: Message,
        give_up: Option<&GiveUp>,
    ) -> Result<Message, RpcError> {
        let shared = &self.shared;
        let resendable = message.message_type().is_safe_to_resend();
        let request_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        // A long poll sent again elsewhere must end within what is left of
        // the call's time, not after its whole wait again.
        let wait = matches!(message, Message::QrWait { .. }).then(|| message.clone());
        let mut request = rpc_pool::encode(request_id, message)?;
        let deadline = Instant::now() + shared.backends[0].pool(lane).timeout();
        let (order, count) = shared.order(lane);
        let mut last = None;
        for &index in &order[..count] {
            if last.is_some() && Instant::now() >= deadline {
                break;
            }
            if let (Some(wait), Some(_)) = (&wait, &last) {
                request = rpc_pool::encode(request_id, shortened(wait.clone(), deadline))?;
            }
            let backend = &shared.backends[index];
            let was_up = backend.up.load(Ordering::Acquire);
            let attempt_started = Instant::now();
            let error =
                match backend.pool(lane).send_watched(&request, request_id, resendable, deadline, give_up) {
                    Ok(reply) => {
                        if !was_up {
                            // Sent while no backend was up, and answered: a probe
                            // of its own.
                            shared.answered(index);
                        }
                        return Ok(reply);
                    }
                    Err(error) => error,
                };
            let step = Step::after(&error);
            if step.dead {
                shared.failed(index, &error);
            } else if matches!(error, RpcError::Timeout) && !backend.pool(lane).heard_since(attempt_started) {
                // Not a byte from it for the whole attempt: stopped, not busy.
                shared.failed(index, &"no reply to anything for the call's whole time");
            }
            if !step.elsewhere {
                return Err(error);
            }
            last = Some(error);
        }
        Err(last.unwrap_or_else(|| RpcError::Unreachable(io::Error::from(ErrorKind::TimedOut))))
    }

    /// The configured addresses, in order: the metrics' labels.
    pub fn addresses(&self) -> Vec<String> {
        self.shared.backends.iter().map(|b| b.addr.clone()).collect()
    }

    /// Each backend's address and whether calls go to it now.
    pub fn states(&self) -> Vec<(String, bool)> {
        self.shared.backends.iter().map(|b| (b.addr.clone(), b.up.load(Ordering::Acquire))).collect()
    }

    /// How many connections are open to backend `index` in `lane`; for tests.
    pub fn open_connections(&self, index: usize, lane: Lane) -> usize {
        self.shared.backends.get(index).map_or(0, |b| b.pool(lane).open_connections())
    }
}

impl Drop for Balancer {
    /// Stops the prober (at its next wake, at most [`PROBE_TIMEOUT`] later).
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _guard = self.shared.lock_health();
        self.shared.changed.notify_all();
    }
}

/// Time a long poll leaves for its answer to come back before the call's
/// deadline, when it is sent again to another backend.
const WAIT_ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// `wait` (a [`Message::QrWait`]) held no longer than what is left before
/// `deadline`, less [`WAIT_ANSWER_MARGIN`].
fn shortened(wait: Message, deadline: Instant) -> Message {
    match wait {
        Message::QrWait { key, binding, seen, wait_ms, client } => {
            let left = deadline.saturating_duration_since(Instant::now()).saturating_sub(WAIT_ANSWER_MARGIN);
            let left_ms = u32::try_from(left.as_millis()).unwrap_or(u32::MAX);
            Message::QrWait { key, binding, seen, wait_ms: wait_ms.min(left_ms), client }
        }
        other => other,
    }
}

/// What a failed attempt says about its backend and the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Step {
    /// The backend looks dead: take it out.
    dead: bool,
    /// The call may go to the next backend.
    elsewhere: bool,
}

impl Step {
    fn after(error: &RpcError) -> Step {
        match error {
            // Nothing of the request reached tcpserver (or, from the pool, one
            // safe to resend whose connection broke and whose resend found the
            // backend gone: safe to send anywhere).
            RpcError::Unreachable(_) | RpcError::Handshake(_) => Step { dead: true, elsewhere: true },
            // This backend's connections are all full; nothing was written.
            RpcError::Busy => Step { dead: false, elsewhere: true },
            // A state change that may have been applied: never sent twice.
            RpcError::Interrupted => Step { dead: true, elsewhere: false },
            // The call's deadline is spent; a reply that makes no sense ended
            // its connection but says nothing of the process.
            RpcError::Timeout | RpcError::Protocol(_) | RpcError::UnexpectedReply | RpcError::Encode(_) => {
                Step { dead: false, elsewhere: false }
            }
            // Its client has gone: the call is over, wherever it was.
            RpcError::Abandoned => Step { dead: false, elsewhere: false },
        }
    }
}

impl Shared {
    fn lock_health(&self) -> MutexGuard<'_, Vec<Health>> {
        // Each change under the lock is one assignment of a small value.
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The backends to try, in order: those up, fewest calls of `lane` in
    /// flight first (ties in round-robin order), then those down.
    fn order(&self, lane: Lane) -> ([usize; MAX_BACKENDS], usize) {
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut order = [0usize; MAX_BACKENDS];
        let mut count = 0;
        let mut ups = 0;
        for up in [true, false] {
            for k in 0..n {
                let index = (start + k) % n;
                if self.backends[index].up.load(Ordering::Acquire) == up {
                    order[count] = index;
                    count += 1;
                }
            }
            if up {
                ups = count;
            }
        }
        // A stable sort keeps the round-robin order among equals; at most 16
        // elements, sorted in place without allocating.
        order[..ups].sort_by_key(|&index| self.backends[index].pool(lane).in_flight());
        (order, count)
    }

    /// Backend `index` looks dead (`why`): out of the rotation, probe scheduled.
    fn failed(&self, index: usize, why: &dyn fmt::Display) {
        let mut health = self.lock_health();
        if health[index].failed(Instant::now()) == Change::WentDown {
            let backend = &self.backends[index];
            backend.up.store(false, Ordering::Release);
            backend.metrics.up.set(0);
            backend.metrics.downs.add(1);
            self.changed.notify_all();
            drop(health);
            crate::log!(
                "rpc: backend {} is down ({why}); calls go to the others while it is probed",
                backend.addr
            );
        }
    }

    /// Backend `index` answered: back in the rotation.
    fn answered(&self, index: usize) {
        let mut health = self.lock_health();
        if let Change::CameBack(after) = health[index].answered(Instant::now()) {
            let backend = &self.backends[index];
            backend.up.store(true, Ordering::Release);
            backend.metrics.up.set(1);
            drop(health);
            crate::log!(
                "rpc: backend {} answers again after {} ms; it takes calls",
                backend.addr,
                after.as_millis()
            );
        }
    }
}

/// What a pool's reader calls when tcpserver ends one of backend `index`'s
/// connections. It holds the balancer weakly: the pools belong to it.
fn lost_hook(shared: Weak<Shared>, index: usize) -> LostHook {
    LostHook(Arc::new(move || {
        if let Some(shared) = shared.upgrade() {
            shared.failed(index, &"tcpserver closed the connection");
        }
    }))
}

#[cfg(test)]
mod tests;
