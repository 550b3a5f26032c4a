//! Where the reader thread leaves one call's outcome, and the caller waits for
//! it until its deadline, or until whoever the call is for has gone.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use proto::Message;

use super::Exchange;
use super::give_up::GiveUp;
use super::socket::remaining;

/// Where a reader leaves one call's outcome.
#[derive(Debug, Default)]
pub(super) struct Slot {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    outcome: Option<Result<Message, Exchange>>,
    /// The call was given up ([`GiveUp::now`]): its caller stops waiting.
    abandoned: bool,
}

impl Slot {
    /// Leaves the outcome and wakes the caller.
    pub(super) fn fill(&self, outcome: Result<Message, Exchange>) {
        self.state().outcome = Some(outcome);
        self.changed.notify_one();
    }

    /// Wakes the caller to give the call up.
    pub(super) fn abandon(&self) {
        self.state().abandoned = true;
        self.changed.notify_one();
    }

    /// The outcome, if one was left.
    pub(super) fn take(&self) -> Option<Result<Message, Exchange>> {
        self.state().outcome.take()
    }

    /// The outcome; `None` once `deadline` passes without one, or as soon as
    /// the call is given up through `give_up` (a call nobody can give up
    /// passes `None` and sleeps until the deadline).
    pub(super) fn wait(
        self: &Arc<Self>,
        deadline: Instant,
        give_up: Option<&GiveUp>,
    ) -> Option<Result<Message, Exchange>> {
        if let Some(give_up) = give_up {
            give_up.attach(self);
        }
        let outcome = self.wait_until(deadline);
        if let Some(give_up) = give_up {
            give_up.detach();
        }
        outcome
    }

    fn wait_until(&self, deadline: Instant) -> Option<Result<Message, Exchange>> {
        let mut state = self.state();
        loop {
            if let Some(done) = state.outcome.take() {
                return Some(done);
            }
            if state.abandoned {
                return None;
            }
            let left = remaining(deadline)?;
            state = self.changed.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
