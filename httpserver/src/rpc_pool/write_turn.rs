//! A turn at writing on one shared connection, waited for no longer than the
//! caller's deadline.
//!
//! Callers of one connection take turns at its writing half, so that frames
//! never interleave. `std::sync::Mutex` has no timed lock, yet a caller must
//! never wait to write longer than its own deadline, and one whose deadline
//! passes while it waits must give up alone, without touching the connection
//! (the other calls in flight on it are healthy). So the turn is a flag under a
//! mutex with a condition variable, waited on with `wait_timeout` until the
//! caller's deadline. The value it guards sits in a mutex of its own that only
//! the turn's holder locks, so locking it never waits.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// A value used by one caller at a time, in turns that can be waited for
/// until a deadline.
#[derive(Debug, Default)]
pub(super) struct WriteTurn<T> {
    /// Whether some caller holds the turn.
    taken: Mutex<bool>,
    /// Signalled each time the turn is given back.
    freed: Condvar,
    value: Mutex<T>,
}

/// The turn, held: access to the value until dropped.
#[derive(Debug)]
pub(super) struct TurnGuard<'a, T> {
    // Fields drop in order: the value's lock is let go before the turn is
    // given back, so the next holder never waits for it.
    value: MutexGuard<'a, T>,
    _release: Release<'a>,
}

/// Gives the turn back when dropped, and wakes one waiter.
#[derive(Debug)]
struct Release<'a> {
    taken: &'a Mutex<bool>,
    freed: &'a Condvar,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        *lock(self.taken) = false;
        // One waiter is enough: whoever is woken takes the turn if it is free,
        // even with its deadline gone, and so gives it back (and wakes the
        // next) in turn; only a waiter that finds it taken gives up unwoken.
        self.freed.notify_one();
    }
}

impl<T> WriteTurn<T> {
    /// The turn, if it is free or comes free before `deadline`; `None` once
    /// `deadline` has passed with the turn still taken.
    ///
    /// A caller that gets the turn must still check its own time: a free turn
    /// is handed out even at (or after) its deadline.
    pub(super) fn take_until(&self, deadline: Instant) -> Option<TurnGuard<'_, T>> {
        let mut taken = lock(&self.taken);
        while *taken {
            let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
            taken = self.freed.wait_timeout(taken, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        *taken = true;
        drop(taken);
        Some(self.guard())
    }

    /// The turn, however long it takes: for the reader thread and the pool's
    /// `Drop`, which end a connection. Bounded all the same, since every
    /// caller gives the turn back by its own deadline.
    pub(super) fn take(&self) -> TurnGuard<'_, T> {
        let mut taken = lock(&self.taken);
        while *taken {
            taken = self.freed.wait(taken).unwrap_or_else(PoisonError::into_inner);
        }
        *taken = true;
        drop(taken);
        self.guard()
    }

    /// Builds the guard once the flag is ours.
    fn guard(&self) -> TurnGuard<'_, T> {
        TurnGuard { value: lock(&self.value), _release: Release { taken: &self.taken, freed: &self.freed } }
    }
}

impl<T> Deref for TurnGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for TurnGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

/// Every change under these locks is one assignment: a panic cannot leave the
/// value torn, so a poisoned lock is used as it is.
fn lock<V>(mutex: &Mutex<V>) -> MutexGuard<'_, V> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_waiter_gives_up_at_its_deadline_while_the_turn_is_held() {
        let turn = WriteTurn::<u32>::default();
        let held = turn.take();
        let started = Instant::now();
        assert!(turn.take_until(started + Duration::from_millis(100)).is_none());
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100), "gave up early, after {waited:?}");
        assert!(waited < Duration::from_secs(2), "waited {waited:?} past its deadline");
        drop(held);
        assert!(turn.take_until(Instant::now()).is_some(), "a free turn is had even at the deadline");
    }

    #[test]
    fn the_turn_passes_to_a_waiter_when_given_back() {
        let turn = Arc::new(WriteTurn::<u32>::default());
        let mut held = turn.take();
        *held = 1;
        let (started, waiting) = mpsc::channel();
        let waiter = {
            let turn = Arc::clone(&turn);
            thread::spawn(move || {
                started.send(()).unwrap();
                let mut value = turn.take_until(Instant::now() + Duration::from_secs(10)).expect("the turn");
                *value += 1;
                *value
            })
        };
        waiting.recv().unwrap();
        thread::sleep(Duration::from_millis(20));
        drop(held);
        assert_eq!(waiter.join().unwrap(), 2);
        assert_eq!(*turn.take(), 2);
    }
}
