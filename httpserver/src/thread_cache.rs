//! Connection threads kept for the next connection once theirs has ended.
//!
//! Each connection has a thread of its own, and starting one and ending it
//! is not free: `clone`, the stack's `mmap` and guard page, the allocator's
//! per-thread set-up, then `munmap` and the exit. Clients that open a
//! connection per request (a phone approving a QR code, a script without
//! keep-alive) paid that every time: 6.5 % of httpserver's samples while
//! phones approved QR codes at 200 a second beside 10,000 parked waits. So a
//! thread whose connection has ended waits a while for the next one, as
//! MariaDB's `thread_cache_size` and Apache's spare servers do; a new
//! connection goes to a waiting thread when there is one, and to a new thread
//! otherwise.
//!
//! Both the number of waiting threads ([`MAX_IDLE_THREADS`]) and how long one
//! waits ([`IDLE_THREAD_LIFETIME`]) are bounded, so that the threads of a
//! burst of connections do not outlive it. An idle thread holds no
//! connection and no share of the connection caps: those belong to the job
//! it runs, and are given back when the job ends.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// Most threads kept waiting for a connection. Each keeps the pages of its
/// stack it has touched (tens of KiB) and nothing else; 256 of them are a
/// few MB, and cover a churn of thousands of connections a second, since a
/// thread is idle only between the end of one connection and the next.
pub const MAX_IDLE_THREADS: usize = 256;

/// How long an idle thread waits for a connection before it ends: long
/// enough to carry a steady churn across its gaps, short enough that a
/// burst's threads are gone soon after it.
pub const IDLE_THREAD_LIFETIME: Duration = Duration::from_secs(15);

/// What a thread runs: one connection's life.
type Job = Box<dyn FnOnce() + Send>;

/// Runs jobs on threads of its own, reusing the idle ones.
#[derive(Debug, Clone)]
pub struct ThreadCache {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Signalled once per job queued for an idle thread.
    job_queued: Condvar,
    max_idle: usize,
    lifetime: Duration,
    stack_size: usize,
}

struct State {
    /// Threads waiting for a job.
    idle: usize,
    /// Jobs handed to idle threads that none has taken yet; never more than
    /// `idle`, so each has a thread that will take it.
    queued: VecDeque<Job>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("idle", &self.idle).field("queued", &self.queued.len()).finish()
    }
}

impl ThreadCache {
    /// A cache keeping at most `max_idle` threads idle, each for at most
    /// `lifetime`, whose new threads get stacks of `stack_size` bytes.
    pub fn new(max_idle: usize, lifetime: Duration, stack_size: usize) -> ThreadCache {
        let state = State { idle: 0, queued: VecDeque::new() };
        let shared =
            Shared { state: Mutex::new(state), job_queued: Condvar::new(), max_idle, lifetime, stack_size };
        ThreadCache { shared: Arc::new(shared) }
    }

    /// Runs `job` on an idle thread, or on a new one when none is idle.
    ///
    /// # Errors
    ///
    /// The OS error if a new thread was needed and could not be started;
    /// `job` is then dropped unrun.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let job: Job = Box::new(job);
        let mut state = self.shared.lock();
        if state.idle > state.queued.len() {
            state.queued.push_back(job);
            drop(state);
            self.shared.job_queued.notify_one();
            return Ok(());
        }
        drop(state);
        let shared = Arc::clone(&self.shared);
        thread::Builder::new().stack_size(self.shared.stack_size).spawn(move || shared.serve(job))?;
        Ok(())
    }

    /// Threads waiting for a job now.
    pub fn idle(&self) -> usize {
        self.shared.lock().idle
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A job runs outside the lock, so a panic cannot leave the state half
        // changed: a poisoned lock is still sound.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A thread's life: `job`, then each job it is handed while it waits.
    fn serve(&self, mut job: Job) {
        loop {
            job();
            match self.next_job() {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    /// Waits, as one of the idle threads, for a job; `None` when there are
    /// enough idle threads already or none came within the lifetime.
    fn next_job(&self) -> Option<Job> {
        let mut state = self.lock();
        if state.idle >= self.max_idle {
            return None;
        }
        state.idle += 1;
        let deadline = Instant::now() + self.lifetime;
        loop {
            // Checked before leaving too: a job queued as the wait timed out
            // was counted on this thread.
            if let Some(job) = state.queued.pop_front() {
                state.idle -= 1;
                return Some(job);
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                state.idle -= 1;
                return None;
            };
            state = match self.job_queued.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Barrier, mpsc};

    const STACK: usize = 128 * 1024;

    /// Waits (up to 10 s) until `done` holds; false if it never did.
    fn eventually(done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            thread::sleep(Duration::from_millis(5));
        }
        done()
    }

    #[test]
    fn a_thread_whose_job_ended_runs_the_next_one() {
        let cache = ThreadCache::new(4, Duration::from_secs(30), STACK);
        let (sent, got) = mpsc::channel();
        let first = sent.clone();
        cache.run(move || first.send(thread::current().id()).unwrap()).unwrap();
        let first = got.recv().unwrap();
        assert!(eventually(|| cache.idle() == 1), "the thread did not wait for another job");
        cache.run(move || sent.send(thread::current().id()).unwrap()).unwrap();
        assert_eq!(got.recv().unwrap(), first);
        assert!(eventually(|| cache.idle() == 1));
    }

    #[test]
    fn no_more_threads_than_the_bound_stay_idle() {
        let cache = ThreadCache::new(2, Duration::from_secs(30), STACK);
        let barrier = Arc::new(Barrier::new(6));
        for _ in 0..5 {
            let barrier = Arc::clone(&barrier);
            cache
                .run(move || {
                    barrier.wait();
                })
                .unwrap();
        }
        // All five run at once: each needed a thread of its own.
        barrier.wait();
        assert!(eventually(|| cache.idle() == 2));
        thread::sleep(Duration::from_millis(50));
        assert_eq!(cache.idle(), 2);
    }

    #[test]
    fn an_idle_thread_ends_after_its_lifetime() {
        let cache = ThreadCache::new(4, Duration::from_millis(100), STACK);
        let (sent, got) = mpsc::channel();
        cache.run(move || sent.send(()).unwrap()).unwrap();
        got.recv().unwrap();
        assert!(eventually(|| cache.idle() == 0), "the idle thread outlived its lifetime");
    }

    #[test]
    fn every_job_runs_once_when_many_come_at_once_from_many_threads() {
        let cache = ThreadCache::new(8, Duration::from_secs(30), STACK);
        let ran = Arc::new(AtomicUsize::new(0));
        let submitters: Vec<_> = (0..4)
            .map(|_| {
                let (cache, ran) = (cache.clone(), Arc::clone(&ran));
                thread::spawn(move || {
                    for _ in 0..500 {
                        let ran = Arc::clone(&ran);
                        cache
                            .run(move || {
                                ran.fetch_add(1, Ordering::SeqCst);
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for submitter in submitters {
            submitter.join().unwrap();
        }
        assert!(eventually(|| ran.load(Ordering::SeqCst) == 2_000), "ran {}", ran.load(Ordering::SeqCst));
        thread::sleep(Duration::from_millis(50));
        assert_eq!(ran.load(Ordering::SeqCst), 2_000);
        assert!(cache.idle() <= 8);
    }

    #[test]
    fn a_job_that_panics_ends_its_thread_and_not_the_cache() {
        let cache = ThreadCache::new(4, Duration::from_secs(30), STACK);
        cache.run(|| panic!("a handler's bug")).unwrap();
        let (sent, got) = mpsc::channel();
        cache.run(move || sent.send(()).unwrap()).unwrap();
        got.recv().unwrap();
        assert!(eventually(|| cache.idle() == 1));
    }
}
