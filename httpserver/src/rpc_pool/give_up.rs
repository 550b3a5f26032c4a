//! How another thread tells a parked call that whoever it is for has gone.
//!
//! A parked call's thread sleeps on its slot until the reply or the deadline;
//! nothing wakes it on a timer. Whoever watches the call's HTTP client (the
//! hang-up watcher, `crate::hangup_watch`) holds its [`GiveUp`] and calls
//! [`GiveUp::now`] when the client closes: the call's current slot is
//! abandoned, its thread wakes at once and the call ends with
//! [`super::RpcError::Abandoned`].

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::slot::Slot;

/// One parked call's way to be given up from another thread; shared, as an
/// `Arc`, by the call and its watcher.
#[derive(Debug, Default)]
pub struct GiveUp {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Set once, never cleared.
    given_up: bool,
    /// The slot the call waits on now (a resent call waits on a new one).
    waiting_on: Option<Arc<Slot>>,
}

impl GiveUp {
    /// Gives the call up: wakes it if it waits, and makes it end as soon as
    /// it would wait otherwise.
    pub fn now(&self) {
        let mut state = self.state();
        state.given_up = true;
        if let Some(slot) = state.waiting_on.take() {
            slot.abandon();
        }
    }

    /// Whether [`GiveUp::now`] was called.
    pub fn is_given_up(&self) -> bool {
        self.state().given_up
    }

    /// Makes `slot` the one [`GiveUp::now`] abandons; abandons it at once
    /// when the call was given up already.
    pub(super) fn attach(&self, slot: &Arc<Slot>) {
        let mut state = self.state();
        if state.given_up {
            slot.abandon();
        } else {
            state.waiting_on = Some(Arc::clone(slot));
        }
    }

    /// Lets go of the slot once the call has its outcome.
    pub(super) fn detach(&self) {
        self.state().waiting_on = None;
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;

    const LONG: Duration = Duration::from_secs(20);

    #[test]
    fn a_call_given_up_while_it_waits_wakes_at_once_without_an_outcome() {
        let give_up = Arc::new(GiveUp::default());
        let slot = Arc::new(Slot::default());
        let started = Instant::now();
        let waiter = {
            let (give_up, slot) = (Arc::clone(&give_up), Arc::clone(&slot));
            thread::spawn(move || slot.wait(Instant::now() + LONG, Some(&give_up)).is_none())
        };
        thread::sleep(Duration::from_millis(50));
        give_up.now();
        assert!(waiter.join().unwrap(), "given up, not answered");
        assert!(started.elapsed() < LONG / 2, "woken by the give-up, not the deadline");
        assert!(give_up.is_given_up());
    }

    #[test]
    fn a_call_given_up_before_it_waits_does_not_wait_and_an_answered_one_keeps_its_outcome() {
        let give_up = GiveUp::default();
        give_up.now();
        let slot = Arc::new(Slot::default());
        let started = Instant::now();
        assert!(slot.wait(Instant::now() + LONG, Some(&give_up)).is_none());
        assert!(started.elapsed() < LONG / 2);

        let answered = Arc::new(Slot::default());
        answered.fill(Err(super::super::Exchange::TimedOut));
        let not_given_up = GiveUp::default();
        assert!(answered.wait(Instant::now() + LONG, Some(&not_given_up)).is_some());
        not_given_up.now();
        assert!(answered.take().is_none(), "a late give-up leaves nothing behind");
    }
}
