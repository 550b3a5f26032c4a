//! How the workers tell the drainer that records are queued.
//!
//! The drainer sleeps until a worker has queued a record (or
//! [`super::drain::IDLE_CHECK`] passes, for records another tcpserver left
//! behind when it died), instead of asking Redis several times a second for
//! nothing: an idle server keeps no connection busy. A notice is a flag under
//! a mutex and one `notify_one`, about a hundred nanoseconds per batch.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// The flag and its condition variable.
#[derive(Debug, Default)]
pub struct Wake {
    pending: Mutex<bool>,
    cond: Condvar,
}

impl Wake {
    /// Records are queued: wakes the drainer if it sleeps.
    pub fn notify(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if !*pending {
            *pending = true;
            self.cond.notify_one();
        }
    }

    /// Waits until notified or `timeout` passes; clears the flag. Returns
    /// whether it was notified.
    pub fn wait(&self, timeout: Duration) -> bool {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut pending, _) = self
            .cond
            .wait_timeout_while(pending, timeout, |pending| !*pending)
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *pending, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn a_notice_before_the_wait_is_not_lost_and_counts_once() {
        let wake = Wake::default();
        wake.notify();
        wake.notify();
        assert!(wake.wait(Duration::from_secs(5)));
        assert!(!wake.wait(Duration::from_millis(10)), "the flag was cleared");
    }

    #[test]
    fn a_notice_from_another_thread_ends_the_wait() {
        let wake = Arc::new(Wake::default());
        let notifier = Arc::clone(&wake);
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            notifier.notify();
        });
        assert!(wake.wait(Duration::from_secs(30)));
        t.join().unwrap();
    }
}
