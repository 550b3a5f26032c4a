//! How many password hashes [`crate::pbkdf2_sha256::derive_many`] computes
//! side by side on this machine, chosen by timing each choice once.
//!
//! Why by timing: the best number depends on the core, not on a feature
//! flag. Per hash at 1,000 iterations on SHA-NI, one chain at a time against
//! the best interleaving: an AMD EPYC (2026-12-02) 70.6 µs against 33.7 with
//! eight chains, still falling at eight; a Sapphire Rapids–class Intel Xeon
//! (2026-12-02, `cargo run --release -p tcpserver --example hash_cost`)
//! about 100 µs against 80 with two or three, and 85–95 with eight, whose
//! vectors no longer fit in the sixteen registers the SHA instructions can
//! address and are spilled to the stack. Both CPUs report the same features.
//! Linux chooses its RAID-6 and XOR routines the same way, by timing each at
//! boot. The choice changes only the speed: every lane count gives the same
//! keys (the tests of [`crate::pbkdf2_sha256`] check each).

use std::sync::OnceLock;
use std::time::Instant;

use crate::pbkdf2_sha256::{self, OUTPUT_LEN};

/// The lane counts tried: each divides [`HASHES_PER_TRIAL`].
const CANDIDATES: [usize; 6] = [1, 2, 3, 4, 6, 8];

/// Hashes per timed trial of one candidate (a multiple of every candidate,
/// so that each trial is whole groups).
const HASHES_PER_TRIAL: usize = 24;

/// Iterations per hash while timing: a tenth of the default cost, so that
/// the whole choice takes a few milliseconds, once per process.
const TRIAL_ITERATIONS: u32 = 100;

/// Trials per candidate; the median counts, so that a trial the scheduler
/// interrupted (a busy or virtual machine) does not decide.
const TRIALS: usize = 7;

/// A candidate within this share of the fastest counts as fast as it; the
/// fewest lanes among those is taken (less state per hash, nothing to gain).
const TIE_SHARE: f64 = 0.03;

/// What the timing found.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneChoice {
    /// The lane count taken.
    pub lanes: usize,
    /// Each candidate with its median time per hash, in microseconds at
    /// the timing's iteration count (a tenth of the default cost).
    pub micros_per_hash: Vec<(usize, f64)>,
}

impl std::fmt::Display for LaneChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} side by side (µs per hash at {TRIAL_ITERATIONS} iterations:", self.lanes)?;
        for (lanes, micros) in &self.micros_per_hash {
            write!(f, " {lanes}: {micros:.1}")?;
        }
        write!(f, ")")
    }
}

static CHOICE: OnceLock<LaneChoice> = OnceLock::new();

/// This process's choice, timed on first use (a few milliseconds of one
/// thread; the server asks at start-up, before it serves).
pub fn choice() -> &'static LaneChoice {
    CHOICE.get_or_init(time_candidates)
}

/// The lane count [`crate::pbkdf2_sha256::derive_many`] uses.
pub fn lanes() -> usize {
    choice().lanes
}

fn time_candidates() -> LaneChoice {
    let passwords: Vec<[u8; OUTPUT_LEN]> = (0..HASHES_PER_TRIAL).map(|i| [i as u8; OUTPUT_LEN]).collect();
    let salt = [0xa5u8; 16];
    let inputs: Vec<(&[u8], &[u8])> = passwords.iter().map(|p| (&p[..], &salt[..])).collect();
    let mut trials: Vec<Vec<f64>> = vec![Vec::with_capacity(TRIALS); CANDIDATES.len()];
    // Candidates in turn within each trial, so that a slow stretch of the
    // machine falls on all of them alike.
    for _ in 0..TRIALS {
        for (times, &lanes) in trials.iter_mut().zip(&CANDIDATES) {
            let started = Instant::now();
            std::hint::black_box(pbkdf2_sha256::derive_in_lanes(&inputs, TRIAL_ITERATIONS, lanes));
            times.push(started.elapsed().as_secs_f64() * 1e6 / HASHES_PER_TRIAL as f64);
        }
    }
    let micros_per_hash: Vec<(usize, f64)> = CANDIDATES
        .iter()
        .zip(trials)
        .map(|(&lanes, mut times)| {
            times.sort_by(f64::total_cmp);
            (lanes, times[times.len() / 2])
        })
        .collect();
    LaneChoice { lanes: fewest_within_tie(&micros_per_hash), micros_per_hash }
}

/// The fewest lanes whose time is within [`TIE_SHARE`] of the fastest.
fn fewest_within_tie(micros_per_hash: &[(usize, f64)]) -> usize {
    let fastest = micros_per_hash.iter().map(|&(_, micros)| micros).fold(f64::INFINITY, f64::min);
    micros_per_hash
        .iter()
        .filter(|&&(_, micros)| micros <= fastest * (1.0 + TIE_SHARE))
        .map(|&(lanes, _)| lanes)
        .min()
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fewest_lanes_as_fast_as_the_fastest_are_taken() {
        // As measured on an AMD EPYC: still faster at eight.
        assert_eq!(fewest_within_tie(&[(1, 7.1), (2, 4.5), (4, 4.0), (8, 3.4)]), 8);
        // As on an Intel Xeon: two and three about equal, more spill.
        assert_eq!(fewest_within_tie(&[(1, 10.0), (2, 8.1), (3, 8.0), (4, 8.6), (8, 9.2)]), 2);
        assert_eq!(fewest_within_tie(&[(1, 5.0)]), 1);
    }

    #[test]
    fn the_choice_is_one_of_the_candidates_with_every_candidate_timed() {
        let choice = choice();
        assert!(CANDIDATES.contains(&choice.lanes), "{choice}");
        let timed: Vec<usize> = choice.micros_per_hash.iter().map(|&(lanes, _)| lanes).collect();
        assert_eq!(timed, CANDIDATES);
        assert!(choice.micros_per_hash.iter().all(|&(_, micros)| micros > 0.0), "{choice}");
        for lanes in CANDIDATES {
            assert_eq!(HASHES_PER_TRIAL % lanes, 0, "{lanes} lanes make whole groups");
            assert!(lanes <= pbkdf2_sha256::MAX_LANES);
        }
    }
}
