//! The result of a run, as the original documents printed it
//! (`Total Requests(50000) - Concurrency(200) - Random(false) - Cost(2.78s) -
//! QPS(17954/sec)`), followed by the latency and error figures; or as JSON for
//! scripts (`perf/run.sh` builds its table from that).

use std::{fmt, time::Duration};

use serde_json::json;

use crate::{config::Scenario, engine::Stats};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// What the users did.
    pub scenario: Scenario,
    /// Simultaneous connections.
    pub concurrency: usize,
    /// Time from the first request to the last answer (session set-up excluded).
    pub wall: Duration,
    /// Latencies and failures.
    pub stats: Stats,
}

impl Report {
    /// Requests made: answered correctly or failed.
    pub fn total(&self) -> u64 {
        self.stats.ok() + self.stats.failed()
    }

    /// Correct answers per second (failures do not count as throughput).
    pub fn qps(&self) -> f64 {
        self.stats.ok() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The line in the original documents' form.
    pub fn summary_line(&self) -> String {
        format!(
            "Total Requests({}) - Concurrency({}) - Random({}) - Cost({:.2}s) - QPS({:.0}/sec)",
            self.total(),
            self.concurrency,
            self.scenario.random(),
            self.wall.as_secs_f64(),
            self.qps()
        )
    }

    /// Percentiles of the successful requests.
    pub fn latency_line(&self) -> String {
        let h = &self.stats.latency;
        format!(
            "Latency p50({}) - p90({}) - p99({}) - max({}) - mean({})",
            millis(h.quantile(0.50)),
            millis(h.quantile(0.90)),
            millis(h.quantile(0.99)),
            millis(h.max()),
            millis(h.mean().round() as u32)
        )
    }

    /// `Errors(0)`, or the count with the causes.
    pub fn errors_line(&self) -> String {
        let failed = self.stats.failed();
        if failed == 0 {
            return "Errors(0)".to_owned();
        }
        let causes: Vec<String> = self.stats.failures.iter().map(|(f, n)| format!("{f}: {n}")).collect();
        format!("Errors({failed}) - {}", causes.join(", "))
    }

    /// Everything as one JSON object (latencies in milliseconds).
    pub fn to_json(&self) -> serde_json::Value {
        let h = &self.stats.latency;
        let ms = |micros: u32| f64::from(micros) / 1000.0;
        let errors: serde_json::Map<String, serde_json::Value> =
            self.stats.failures.iter().map(|(f, n)| (f.to_string(), json!(n))).collect();
        json!({
            "scenario": self.scenario.name(),
            "random": self.scenario.random(),
            "concurrency": self.concurrency,
            "requests": self.total(),
            "ok": self.stats.ok(),
            "errors": self.stats.failed(),
            "errors_by_kind": errors,
            "seconds": self.wall.as_secs_f64(),
            "qps": self.qps(),
            "latency_ms": {
                "p50": ms(h.quantile(0.50)),
                "p90": ms(h.quantile(0.90)),
                "p99": ms(h.quantile(0.99)),
                "max": ms(h.max()),
                "mean": h.mean() / 1000.0,
            },
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[{}]", self.scenario.name())?;
        writeln!(f, "{}", self.summary_line())?;
        writeln!(f, "{}", self.latency_line())?;
        write!(f, "{}", self.errors_line())
    }
}

/// Microseconds as milliseconds with two decimals: `1234` is `1.23ms`.
fn millis(micros: u32) -> String {
    format!("{:.2}ms", f64::from(micros) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Failure;

    fn report(ok: u32, failures: &[(Failure, u64)]) -> Report {
        let mut stats = Stats::default();
        for i in 0..ok {
            stats.latency.record(1_000 + i % 100);
        }
        stats.failures = failures.iter().copied().collect();
        Report { scenario: Scenario::LoginFixed, concurrency: 200, wall: Duration::from_millis(2_785), stats }
    }

    #[test]
    fn summary_has_the_original_form() {
        assert_eq!(
            report(50_000, &[]).summary_line(),
            "Total Requests(50000) - Concurrency(200) - Random(false) - Cost(2.79s) - QPS(17953/sec)"
        );
    }

    #[test]
    fn latency_and_errors_follow() {
        let r = report(100, &[(Failure::Status(503), 3), (Failure::Connect, 1)]);
        assert_eq!(
            r.latency_line(),
            "Latency p50(1.05ms) - p90(1.10ms) - p99(1.10ms) - max(1.10ms) - mean(1.05ms)"
        );
        assert_eq!(r.errors_line(), "Errors(4) - connect: 1, status 503: 3");
        assert_eq!(report(1, &[]).errors_line(), "Errors(0)");
        assert!(r.summary_line().starts_with("Total Requests(104) "));
    }

    #[test]
    fn json_carries_every_figure() {
        let j = report(10, &[(Failure::Timeout, 2)]).to_json();
        assert_eq!(j["scenario"], "login-fixed");
        assert_eq!(
            (j["requests"].as_u64(), j["ok"].as_u64(), j["errors"].as_u64()),
            (Some(12), Some(10), Some(2))
        );
        assert_eq!(j["errors_by_kind"]["timeout"], 2);
        assert!(j["latency_ms"]["p99"].as_f64().unwrap() >= 1.0);
    }
}
