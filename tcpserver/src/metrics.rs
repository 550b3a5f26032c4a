//! Counters the server keeps about itself, in the Prometheus text format.
//!
//! Each counter is a process-wide atomic that the reactor and the workers add
//! to with one relaxed `fetch_add` (no lock on the hot path); [`render`] reads
//! them all for the metrics listener ([`crate::metrics_http`]), which serves
//! them from a thread of its own so that a scrape never waits on the reactor.
//! Names follow Prometheus conventions: a `usermgmt_` prefix, `_total` for
//! counters, no label whose values a client chooses.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    help: &'static str,
    value: AtomicU64,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Counter {
        Counter { name, help, value: AtomicU64::new(0) }
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// Full password hashes computed (PBKDF2 at a stored hash's cost): sign-ups,
/// log-ins the verified cache could not vouch for, unknown usernames.
pub static PASSWORD_HASHES: Counter =
    Counter::new("usermgmt_password_hashes_total", "Full password hashes computed.");

/// Requests refused by a throttle (429) before any work was done for them.
pub static THROTTLED: Counter = Counter::new(
    "usermgmt_throttled_total",
    "Requests refused by a throttle before any password was hashed.",
);

/// Sessions opened by a log-in.
pub static SESSIONS_CREATED: Counter = Counter::new("usermgmt_sessions_created_total", "Sessions opened.");

/// Sessions ended because their account opened more than the cap allows.
pub static SESSIONS_EVICTED: Counter = Counter::new(
    "usermgmt_sessions_evicted_total",
    "Oldest sessions ended because their account passed the per-account cap.",
);

/// Scan-to-log-in waits parked in the reactor right now (a gauge, set by
/// the reactor once per turn).
pub static QR_WAITS: AtomicU64 = AtomicU64::new(0);

/// Scan-to-log-in codes approved or denied (their waits are answered).
pub static QR_DECISIONS: Counter =
    Counter::new("usermgmt_qr_decisions_total", "Scan-to-log-in codes approved or denied.");

/// Every counter, in the order [`render`] writes them.
static ALL: [&Counter; 5] =
    [&PASSWORD_HASHES, &THROTTLED, &SESSIONS_CREATED, &SESSIONS_EVICTED, &QR_DECISIONS];

/// All counters in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let mut out = String::new();
    for counter in ALL {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {} {}", counter.name, counter.help);
        let _ = writeln!(out, "# TYPE {} counter", counter.name);
        let _ = writeln!(out, "{} {}", counter.name, counter.get());
    }
    let _ = writeln!(out, "# HELP usermgmt_qr_waits Scan-to-log-in waits parked in the reactor.");
    let _ = writeln!(out, "# TYPE usermgmt_qr_waits gauge");
    let _ = writeln!(out, "usermgmt_qr_waits {}", QR_WAITS.load(Ordering::Relaxed));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_rendered_with_its_type() {
        PASSWORD_HASHES.add(2);
        let text = render();
        for counter in ALL {
            assert!(text.contains(&format!("# TYPE {} counter\n", counter.name)), "{text}");
        }
        let line = text.lines().find(|l| l.starts_with("usermgmt_password_hashes_total ")).unwrap();
        assert!(line.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 2);
    }
}
