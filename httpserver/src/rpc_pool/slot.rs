//! Where the reader thread leaves one call's outcome, and the caller waits for
//! it until its deadline.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Instant;

use proto::Message;

use super::Exchange;
use super::socket::remaining;

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

    /// The outcome, or `None` once `deadline` passes without one.
    pub(super) fn wait(&self, deadline: Instant) -> Option<Result<Message, Exchange>> {
        let mut outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(done) = outcome.take() {
                return Some(done);
            }
            let left = remaining(deadline)?;
            outcome = self.filled.wait_timeout(outcome, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}
