//! The prober: one thread that pings the backends that are down, each when
//! its [`Health`] says a probe is due, and brings back those that answer.
//!
//! It sleeps on the balancer's condition variable until the earliest due
//! probe (or, with every backend up, until one goes down), so it costs
//! nothing while all is well. Probes go one after another, each bounded by
//! [`PROBE_TIMEOUT`]: a dead tcpserver on a reachable machine refuses at
//! once, so a round takes milliseconds; only backends that accept and then
//! say nothing cost their full second each.

use std::sync::atomic::Ordering;
use std::time::Instant;

use proto::Message;

use super::{Health, Lane, MAX_BACKENDS, PROBE_TIMEOUT, Shared};
use crate::rpc_pool;

/// Probes until the balancer is dropped.
pub(super) fn run(shared: &Shared) {
    while let Some((due, count)) = wait_for_due_probes(shared) {
        for &index in &due[..count] {
            probe(shared, index);
        }
    }
}

/// Blocks until at least one probe is due, and returns the backends to
/// probe; `None` once the balancer is being dropped.
fn wait_for_due_probes(shared: &Shared) -> Option<([usize; MAX_BACKENDS], usize)> {
    let mut health = shared.lock_health();
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let now = Instant::now();
        let mut due = [0usize; MAX_BACKENDS];
        let mut count = 0;
        for (index, state) in health.iter().enumerate() {
            if state.probe_due(now) {
                due[count] = index;
                count += 1;
            }
        }
        if count > 0 {
            return Some((due, count));
        }
        let next = health.iter().filter_map(Health::next_probe).min();
        health = match next {
            Some(at) => {
                let wait = at.saturating_duration_since(now);
                shared.changed.wait_timeout(health, wait).unwrap_or_else(|p| p.into_inner()).0
            }
            None => shared.changed.wait(health).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

/// One Ping to backend `index`: any reply brings it back; anything else
/// puts its next probe off.
fn probe(shared: &Shared, index: usize) {
    let request_id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let answered = rpc_pool::encode(request_id, Message::Ping).is_ok_and(|ping| {
        let pool = shared.backends[index].pool(Lane::Calls);
        pool.send(&ping, request_id, true, Instant::now() + PROBE_TIMEOUT).is_ok()
    });
    if answered {
        shared.answered(index);
    } else {
        shared.lock_health()[index].probe_failed(Instant::now());
    }
}
