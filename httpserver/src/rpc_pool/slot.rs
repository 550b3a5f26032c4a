//! Where the reader thread leaves one call's outcome, and the caller waits for
//! it until its deadline, or until whoever the call is for has gone.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use proto::Message;

use super::Exchange;
use super::socket::remaining;

/// How often a parked call asks whether its client has gone: a desktop that
/// closed its page is let go within a second, and ten thousand parked calls
/// cost ten thousand cheap checks (a `recv` that does not wait) a second.
pub(super) const GIVEN_UP_INTERVAL: Duration = Duration::from_secs(1);

/// Where a reader leaves one call's outcome.
#[derive(Debug, Default)]
pub(super) struct Slot {
    outcome: Mutex<Option<Result<Message, Exchange>>>,
    filled: Condvar,
}

impl Slot {
    /// Leaves the outcome and wakes the caller.
    pub(super) fn fill(&self, outcome: Result<Message, Exchange>) {
        *self.outcome.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        self.filled.notify_one();
    }

    /// The outcome, if one was left.
    pub(super) fn take(&self) -> Option<Result<Message, Exchange>> {
        self.outcome.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// The outcome; `None` once `deadline` passes without one, or as soon as
    /// `given_up` says so (asked every [`GIVEN_UP_INTERVAL`]; a caller that
    /// cannot give up passes `None` and sleeps until the deadline).
    pub(super) fn wait(
        &self,
        deadline: Instant,
        given_up: Option<&dyn Fn() -> bool>,
    ) -> Option<Result<Message, Exchange>> {
        let mut outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(done) = outcome.take() {
                return Some(done);
            }
            let left = remaining(deadline)?;
            let nap = if given_up.is_some() { left.min(GIVEN_UP_INTERVAL) } else { left };
            outcome = self.filled.wait_timeout(outcome, nap).unwrap_or_else(PoisonError::into_inner).0;
            if outcome.is_none() && nap < left && given_up.is_some_and(|gone| gone()) {
                return None;
            }
        }
    }
}
