//! One backend's health as the balancer sees it: up (calls go to it) or down
//! (no call goes to it while another is up; it is only probed), and when the
//! next probe is due.
//!
//! A plain state machine with no clock and no lock of its own: every method
//! that depends on time takes `now`, so tests walk it through a death, failed
//! probes and a return without sleeping, and the balancer keeps all backends'
//! machines under one mutex beside the condition variable the prober waits on.
//!
//! ```text
//!          failed (refused, reset, handshake refused, peer closed)
//!   Up ─────────────────────────────────────────────────────────▶ Down { next_probe = now + FIRST_PROBE_AFTER }
//!    ▲                                                               │  probe_failed: next_probe = now + interval,
//!    └──────────────── probe answered (Pong), or a call answered ────┘  interval doubles up to MAX_PROBE_INTERVAL
//! ```

use std::time::{Duration, Instant};

/// How soon after a backend is found dead it is first probed: a restarted
/// tcpserver listens within a few hundred milliseconds of its start, and a
/// probe of a dead one costs one refused connection on this machine.
pub const FIRST_PROBE_AFTER: Duration = Duration::from_millis(250);

/// The longest wait between two probes of a dead backend: it is taken back
/// at most a second after it answers again, and a backend that stays dead
/// costs one refused connection a second.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Where one backend stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Calls go to it.
    Up,
    /// Found dead; probed from `next_probe` on, `interval` after each failed probe.
    Down {
        /// When it was found dead.
        since: Instant,
        /// When the next probe is due.
        next_probe: Instant,
        /// The wait after the next failed probe.
        interval: Duration,
    },
}

/// What a step changed, for the caller to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing: it was already in that state.
    None,
    /// Up to down.
    WentDown,
    /// Down to up, after being down this long.
    CameBack(Duration),
}

impl Health {
    /// Whether calls go to it.
    pub fn is_up(&self) -> bool {
        matches!(self, Health::Up)
    }

    /// A sign that it is dead: a connection refused or reset, a handshake
    /// refused, a connection its peer ended. Up goes down with its first probe
    /// [`FIRST_PROBE_AFTER`] from `now`; down stays down with its schedule
    /// as it was, so a stream of failing calls never puts the probe off.
    pub fn failed(&mut self, now: Instant) -> Change {
        match self {
            Health::Up => {
                *self = Health::Down {
                    since: now,
                    next_probe: now + FIRST_PROBE_AFTER,
                    interval: FIRST_PROBE_AFTER * 2,
                };
                Change::WentDown
            }
            Health::Down { .. } => Change::None,
        }
    }

    /// It answered (a probe, or a call sent to it while no backend was up):
    /// back up.
    pub fn answered(&mut self, now: Instant) -> Change {
        match *self {
            Health::Up => Change::None,
            Health::Down { since, .. } => {
                *self = Health::Up;
                Change::CameBack(now.saturating_duration_since(since))
            }
        }
    }

    /// A probe did not answer: the next one comes after the interval, which
    /// doubles up to [`MAX_PROBE_INTERVAL`].
    pub fn probe_failed(&mut self, now: Instant) {
        if let Health::Down { next_probe, interval, .. } = self {
            *next_probe = now + *interval;
            *interval = (*interval * 2).min(MAX_PROBE_INTERVAL);
        }
    }

    /// When the next probe is due; `None` while up.
    pub fn next_probe(&self) -> Option<Instant> {
        match self {
            Health::Up => None,
            Health::Down { next_probe, .. } => Some(*next_probe),
        }
    }

    /// Whether a probe is due at `now`.
    pub fn probe_due(&self, now: Instant) -> bool {
        self.next_probe().is_some_and(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_failure_takes_it_down_and_schedules_the_first_probe() {
        let t0 = Instant::now();
        let mut health = Health::Up;
        assert!(health.is_up() && health.next_probe().is_none() && !health.probe_due(t0 + ms(10_000)));
        assert_eq!(health.failed(t0), Change::WentDown);
        assert!(!health.is_up());
        assert_eq!(health.next_probe(), Some(t0 + FIRST_PROBE_AFTER));
        assert!(!health.probe_due(t0 + FIRST_PROBE_AFTER - ms(1)));
        assert!(health.probe_due(t0 + FIRST_PROBE_AFTER));
    }

    #[test]
    fn more_failures_while_down_do_not_put_the_probe_off() {
        let t0 = Instant::now();
        let mut health = Health::Up;
        health.failed(t0);
        for k in 1..100 {
            assert_eq!(health.failed(t0 + ms(k)), Change::None);
        }
        assert_eq!(health.next_probe(), Some(t0 + FIRST_PROBE_AFTER));
    }

    #[test]
    fn failed_probes_back_off_to_the_bound_and_no_further() {
        let t0 = Instant::now();
        let mut health = Health::Up;
        health.failed(t0);
        let mut now = t0 + FIRST_PROBE_AFTER;
        let mut waits = Vec::new();
        for _ in 0..6 {
            assert!(health.probe_due(now));
            health.probe_failed(now);
            let next = health.next_probe().unwrap();
            waits.push(next - now);
            assert!(!health.probe_due(next - ms(1)), "not probed before its time");
            now = next;
        }
        assert_eq!(waits, [ms(500), ms(1000), ms(1000), ms(1000), ms(1000), ms(1000)]);
        assert!(waits.iter().all(|w| *w <= MAX_PROBE_INTERVAL));
    }

    #[test]
    fn an_answer_brings_it_back_and_says_how_long_it_was_down() {
        let t0 = Instant::now();
        let mut health = Health::Up;
        health.failed(t0);
        health.probe_failed(t0 + ms(250));
        assert_eq!(health.answered(t0 + ms(750)), Change::CameBack(ms(750)));
        assert!(health.is_up() && health.next_probe().is_none());
        assert_eq!(health.answered(t0 + ms(800)), Change::None, "already up");
        assert_eq!(health.failed(t0 + ms(900)), Change::WentDown, "and it can die again");
        assert_eq!(health.next_probe(), Some(t0 + ms(900) + FIRST_PROBE_AFTER), "with a fresh schedule");
    }

    #[test]
    fn a_probe_failure_while_up_changes_nothing() {
        let t0 = Instant::now();
        let mut health = Health::Up;
        health.probe_failed(t0);
        assert_eq!(health, Health::Up);
    }
}
