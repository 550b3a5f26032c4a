//! What the operator sees while a seed runs: a progress bar with rate and ETA
//! on a terminal, one line per batch otherwise (logs, `perf/run.sh`).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the bar redraws: smooth enough, and cheap next to the hashing.
const REFRESH_PER_SEC: u8 = 4;

/// Progress of one run, counted in hashed accounts (hashing is what takes the
/// time, so the rate and the ETA follow it).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for `total` accounts on standard error, drawn only on a terminal.
    pub fn new(total: u64) -> Progress {
        let bar =
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(REFRESH_PER_SEC));
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec} ETA {eta} {msg}",
        );
        if let Ok(style) = style {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(250));
        Progress { bar }
    }

    /// A progress that shows nothing (tests).
    #[cfg(test)]
    pub fn hidden() -> Progress {
        Progress { bar: ProgressBar::hidden() }
    }

    /// Counts `n` more accounts hashed. Safe to call from many threads.
    pub fn advance(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Accounts counted so far.
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Shows what is happening now (beside the bar).
    pub fn phase(&self, text: String) {
        self.bar.set_message(text);
    }

    /// Prints a line above the bar, or alone when there is no bar.
    pub fn line(&self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
