//! What a pool tells about its tcpserver besides replies: that tcpserver
//! ended a connection ([`LostHook`], called by a reader thread), and when
//! reply bytes last came ([`Heard`]). The balancer uses both to take a dead
//! or stopped tcpserver out of its rotation.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Called by a reader thread when tcpserver ended its connection (EOF or a
/// socket error while reading), which is how a backend that dies while idle
/// is noticed at once; the balancer marks it down.
#[derive(Clone)]
pub struct LostHook(pub Arc<dyn Fn() + Send + Sync>);

impl fmt::Debug for LostHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LostHook")
    }
}

/// When a pool last heard from its tcpserver (a read that brought reply
/// bytes, on any of its connections), so the balancer can tell a call that
/// timed out on a busy tcpserver from one on a tcpserver that has gone
/// silent. One relaxed store per read, not per reply.
#[derive(Debug)]
pub(super) struct Heard {
    epoch: Instant,
    /// One more than the milliseconds from `epoch` to the last read with
    /// bytes; 0 while nothing was ever read.
    at_ms: AtomicU64,
}

impl Heard {
    pub(super) fn new() -> Heard {
        Heard { epoch: Instant::now(), at_ms: AtomicU64::new(0) }
    }

    pub(super) fn now(&self) {
        self.at_ms.store(self.millis(Instant::now()).saturating_add(1), Ordering::Relaxed);
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether bytes came at or after `since` (to the millisecond).
    pub(super) fn since(&self, since: Instant) -> bool {
        self.at_ms.load(Ordering::Relaxed) > self.millis(since)
    }
}

impl Default for Heard {
    fn default() -> Heard {
        Heard::new()
    }
}
