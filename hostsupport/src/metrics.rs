//! The metric types both servers keep about themselves, and their Prometheus
//! text exposition (format 0.0.4).
//!
//! Every metric is a fixed set of atomics, updated with relaxed `fetch_add`s:
//! no lock and no allocation on the hot path, and a scrape reads them from
//! another thread while the servers go on. Label values are never chosen by
//! a client: each labelled family is an array indexed by a value from a fixed
//! list (an endpoint of the router, a message type, a status of a short list),
//! so the number of series is bounded by construction.
//!
//! A build with `--cfg usermgmt_without="metrics"` (made only by
//! `perf/cost.sh`, to measure what the metrics cost) leaves every update out:
//! the series stay at zero and the rest of the server is the same code.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Whether updates are recorded: always, except in the cost-measuring build.
const RECORDING: bool = !cfg!(usermgmt_without = "metrics");

/// A monotonically increasing count.
#[derive(Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Zero.
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        if RECORDING {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Counter {
        Counter::new()
    }
}

/// A value that goes up and down (open connections, calls in flight).
#[derive(Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Zero.
    pub const fn new() -> Gauge {
        Gauge(AtomicI64::new(0))
    }

    /// Adds `n` (negative to lower it).
    pub fn add(&self, n: i64) {
        if RECORDING {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Sets it.
    pub fn set(&self, n: i64) {
        if RECORDING {
            self.0.store(n, Ordering::Relaxed);
        }
    }

    /// The value now.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Default for Gauge {
    fn default() -> Gauge {
        Gauge::new()
    }
}

/// Most finite buckets a histogram has: enough for latencies from 0.5 ms to
/// 10 s in steps of about 2.5, and it keeps each histogram at 19 atomics.
pub const MAX_BUCKETS: usize = 16;

/// Latency bounds in seconds, from half a millisecond (a cached profile read)
/// to 10 s (past every timeout of the system: 5 s for a call).
pub const LATENCY_BOUNDS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The counts of a histogram: one per bucket (not cumulative; summed at
/// render), the sum of the values in millionths, and the count.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: [AtomicU64; MAX_BUCKETS],
    /// Values above the last bound.
    over: AtomicU64,
    sum_millionths: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending, at most [`MAX_BUCKETS`];
    /// more are ignored).
    pub const fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; MAX_BUCKETS],
            over: AtomicU64::new(0),
            sum_millionths: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one value (seconds, or items for a size).
    pub fn observe(&self, value: f64) {
        if !RECORDING {
            return;
        }
        let bounds = &self.bounds[..self.bounds.len().min(MAX_BUCKETS)];
        match bounds.iter().position(|&bound| value <= bound) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        // Saturating float-to-int conversion; a negative value counts as 0.
        self.sum_millionths.fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Values recorded so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines of this series;
    /// `labels` is empty or `key="value",...` without braces.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, bucket) in self.bounds.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.over.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}");
        let braces = |labels: &str| if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let sum = self.sum_millionths.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        // The count is the +Inf bucket, read once, so the two always agree.
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample line; `labels` as in [`Histogram::render`].
pub fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = match labels {
        "" => writeln!(out, "{name} {value}"),
        labels => writeln!(out, "{name}{{{labels}}} {value}"),
    };
}

/// A count of microseconds, rendered in seconds (the base unit).
pub fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_the_count() {
        static H: Histogram = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0] {
            H.observe(v);
        }
        let mut out = String::new();
        H.render(&mut out, "x_seconds", "op=\"a\"");
        assert_eq!(
            out,
            "x_seconds_bucket{op=\"a\",le=\"0.1\"} 2\nx_seconds_bucket{op=\"a\",le=\"1\"} 3\n\
             x_seconds_bucket{op=\"a\",le=\"+Inf\"} 4\nx_seconds_sum{op=\"a\"} 3.65\nx_seconds_count{op=\"a\"} 4\n"
        );
        let mut bare = String::new();
        H.render(&mut bare, "x", "");
        assert!(bare.contains("x_bucket{le=\"+Inf\"} 4\nx_sum 3.65\nx_count 4\n"), "{bare}");
    }
}
