//! The bounded queue between the reactor and the workers.
//!
//! Profile reads, log-ins and nickname changes wait in a lane of their own,
//! so that a worker can take several of them at once and share Redis and
//! MySQL round trips among them ([`crate::dispatch::handle_batch`]), while
//! every other request is taken one at a time.
//!
//! Pushing a job wakes no one: the reactor pushes everything one turn of its
//! event loop decoded, then calls [`JobQueue::wake_workers`] once, which wakes
//! as many idle workers as the queue needs: one per other request and one per
//! [`MAX_BATCH`] batchable ones. A worker takes its share of the batchable
//! lane: what is queued there divided between itself and the workers woken
//! for it and not yet up, at most [`MAX_BATCH`]. Waking a worker per job
//! instead (the first design) had each woken worker find one or two jobs and
//! pay a Redis round trip and two context switches for them; waking per turn
//! lets the requests of a turn share them.
//! Each lane is first in, first out; a worker takes its share of each
//! (the other requests first, each answered as soon as it has run:
//! [`crate::pool`]), so neither lane starves.
//!
//! Background jobs (the checks of parked scan-to-log-in waits, which the
//! reactor keeps queued on its own side and hands over as room allows) may
//! fill only [`BACKGROUND_SHARE`] of the queue, so that ten thousand desktops
//! opening the log-in page at once never take the places of log-ins and
//! profile reads.
//!
//! A job that waited longer than [`MAX_QUEUE_WAIT`] is handed out as stale,
//! to be answered `Overloaded` rather than run: when the back end is slower
//! than its callers, they hear so within that time instead of at their own
//! timeout, and the workers spend their time on requests still worth answering.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use proto::Message;

use crate::pool::{Job, SubmitError};

/// Batchable requests a worker takes at once, at most. A batch is what is
/// queued (it never waits for more to arrive); sixteen keeps what a batch adds
/// to its last request's latency to a few Redis round trips' worth of work.
pub const MAX_BATCH: usize = 16;

/// Longest a job waits for a worker before it is answered `Overloaded`
/// instead: well inside httpserver's 5 s call timeout, and well above the
/// waits of a busy but healthy server (a second at most, at concurrency 2000
/// in the benchmark).
pub const MAX_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// The part of the queue background jobs may fill: a half, so that the
/// requests people are waiting on always find the other half free.
pub const BACKGROUND_SHARE: (usize, usize) = (1, 2);

/// The queue; see the module documentation.
#[derive(Debug)]
pub struct JobQueue {
    state: Mutex<Lanes>,
    /// Signalled when a job arrives or the queue closes.
    arrived: Condvar,
    /// Jobs queued in both lanes together, at most.
    capacity: usize,
    /// See [`MAX_QUEUE_WAIT`].
    max_wait: Duration,
}

/// A job and when it was queued.
type Queued = (Instant, Job);

#[derive(Debug, Default)]
struct Lanes {
    /// Profile reads, log-ins and nickname changes.
    batchable: VecDeque<Queued>,
    others: VecDeque<Queued>,
    closed: bool,
    /// Workers waiting for a job right now.
    idle: usize,
    /// Of the idle workers, those woken by [`JobQueue::wake_workers`] and not
    /// yet up: the ones a batch is shared with.
    woken: usize,
}

impl Lanes {
    fn len(&self) -> usize {
        self.batchable.len() + self.others.len()
    }
}

impl JobQueue {
    /// An empty queue that holds at most `capacity` jobs (at least one).
    pub fn new(capacity: usize) -> JobQueue {
        JobQueue::with_max_wait(capacity, MAX_QUEUE_WAIT)
    }

    /// As [`JobQueue::new`], with another limit on a job's wait.
    pub fn with_max_wait(capacity: usize, max_wait: Duration) -> JobQueue {
        JobQueue {
            state: Mutex::new(Lanes::default()),
            arrived: Condvar::new(),
            capacity: capacity.max(1),
            max_wait,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lanes> {
        // Every change is one push, pop or flag: a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a job without blocking, and without waking a worker: call
    /// [`JobQueue::wake_workers`] after the last push of a turn.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Full`] at capacity, [`SubmitError::Closed`] once closed;
    /// the job is dropped.
    pub fn push(&self, job: Job) -> Result<(), SubmitError> {
        self.push_within(job, self.capacity)
    }

    /// Queues a background job as [`JobQueue::push`] does, but only while
    /// the queue is under [`BACKGROUND_SHARE`] of its capacity.
    ///
    /// # Errors
    ///
    /// As [`JobQueue::push`]; `Full` already at that share.
    pub fn push_background(&self, job: Job) -> Result<(), SubmitError> {
        let (numerator, denominator) = BACKGROUND_SHARE;
        self.push_within(job, (self.capacity * numerator / denominator).max(1))
    }

    fn push_within(&self, job: Job, limit: usize) -> Result<(), SubmitError> {
        let mut lanes = self.lock();
        if lanes.closed {
            return Err(SubmitError::Closed);
        }
        if lanes.len() >= limit {
            return Err(SubmitError::Full);
        }
        let queued = (Instant::now(), job);
        if is_batchable(&queued.1.message) {
            lanes.batchable.push_back(queued);
        } else {
            lanes.others.push_back(queued);
        }
        crate::metrics::QUEUE_DEPTH.set(lanes.len() as i64);
        Ok(())
    }

    /// Wakes the idle workers that the queued jobs need and that are not
    /// already on their way: one per request that is not batchable and one per
    /// [`MAX_BATCH`] batchable ones.
    pub fn wake_workers(&self) {
        let mut lanes = self.lock();
        let needed = lanes.others.len() + lanes.batchable.len().div_ceil(MAX_BATCH);
        let asleep = lanes.idle.saturating_sub(lanes.woken);
        let wake = needed.saturating_sub(lanes.woken).min(asleep);
        lanes.woken += wake;
        drop(lanes);
        for _ in 0..wake {
            self.arrived.notify_one();
        }
    }

    /// Waits for work and moves it into `batch`: a fair share of the
    /// requests that are not batchable and of the batchable ones.
    /// Jobs met on the way that waited too long go to `stale` instead. Returns
    /// `false` once the queue is closed and empty.
    pub fn take(&self, batch: &mut Vec<Job>, stale: &mut Vec<Job>) -> bool {
        let mut lanes = self.lock();
        while lanes.len() == 0 {
            if lanes.closed {
                return false;
            }
            lanes.idle += 1;
            lanes = self.arrived.wait(lanes).unwrap_or_else(PoisonError::into_inner);
            lanes.idle -= 1;
            // A spurious wake-up may take a woken worker's place; the count
            // only steers sharing, so it need not be exact.
            lanes.woken = lanes.woken.saturating_sub(1).min(lanes.idle);
        }
        // The other requests too are split among the woken workers, at most
        // MAX_BATCH each: one per worker and batch could serve fewer of them
        // a second than arrive beside a flood of log-ins (approvals and the
        // checks they set off, say), and they would queue without end.
        let now = Instant::now();
        let (others, batchable) =
            (batch_share(lanes.others.len(), lanes.woken), batch_share(lanes.batchable.len(), lanes.woken));
        take_share(&mut lanes.others, others, (now, self.max_wait), batch, stale);
        take_share(&mut lanes.batchable, batchable, (now, self.max_wait), batch, stale);
        crate::metrics::QUEUE_DEPTH.set(lanes.len() as i64);
        true
    }

    /// Refuses new jobs; workers still take the ones queued, then stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }
}

/// Moves up to `share` jobs from the front of `lane` into `batch`, and the
/// ones met on the way that waited longer than `max_wait` into `stale`. A
/// parked wait's check is never stale: its wait has a deadline of its own,
/// and a check answered `Overloaded` instead of run would leave the wait
/// held with no answer to come.
fn take_share(
    lane: &mut VecDeque<Queued>,
    share: usize,
    (now, max_wait): (Instant, Duration),
    batch: &mut Vec<Job>,
    stale: &mut Vec<Job>,
) {
    let mut taken = 0;
    while taken < share {
        let Some((queued_at, job)) = lane.pop_front() else { break };
        let waited = now.duration_since(queued_at);
        crate::metrics::QUEUE_WAIT.observe(waited.as_secs_f64());
        if job.wait.is_some() || waited <= max_wait {
            batch.push(job);
            taken += 1;
        } else {
            stale.push(job);
        }
    }
}

/// Whether a request waits in the batchable lane: profile reads, log-ins
/// and nickname changes, which a worker runs several at a time.
pub fn is_batchable(message: &Message) -> bool {
    matches!(message, Message::GetProfile { .. } | Message::Login { .. } | Message::UpdateNickname { .. })
}

/// How many of `queued` batchable jobs a worker takes when `woken` other
/// workers are on their way to take some too: an even split, at most
/// [`MAX_BATCH`].
fn batch_share(queued: usize, woken: usize) -> usize {
    queued.div_ceil(woken + 1).min(MAX_BATCH)
}

#[cfg(test)]
mod tests {
    use mio::Token;
    use proto::Secret;

    use super::*;

    fn job(request_id: u64, message: Message) -> Job {
        Job { token: Token(0), conn_id: 1, request_id, trace: proto::TraceId::NONE, message, wait: None }
    }

    fn read(request_id: u64) -> Job {
        job(request_id, Message::GetProfile { token: Secret::new("t"), username: None })
    }

    fn logout(request_id: u64) -> Job {
        job(request_id, Message::Logout { token: Secret::new("t") })
    }

    fn ids(batch: &[Job]) -> Vec<u64> {
        batch.iter().map(|job| job.request_id).collect()
    }

    #[test]
    fn both_lanes_are_taken_in_shares_of_at_most_a_batch() {
        let queue = JobQueue::new(100);
        for id in 1..=20 {
            queue.push(read(id)).unwrap();
        }
        for id in 100..120 {
            queue.push(logout(id)).unwrap();
        }
        let (mut batch, mut stale) = (Vec::new(), Vec::new());
        assert!(queue.take(&mut batch, &mut stale));
        assert_eq!(ids(&batch), (100..116).chain(1..=16).collect::<Vec<_>>());
        batch.clear();
        assert!(queue.take(&mut batch, &mut stale));
        assert_eq!(ids(&batch), (116..120).chain(17..=20).collect::<Vec<_>>());
        assert!(stale.is_empty());
    }

    #[test]
    fn background_jobs_leave_half_the_queue_to_requests() {
        let queue = JobQueue::new(8);
        for id in 1..=4 {
            queue.push_background(logout(id)).unwrap();
        }
        assert!(matches!(queue.push_background(logout(5)), Err(SubmitError::Full)));
        for id in 6..=9 {
            queue.push(read(id)).unwrap();
        }
        assert!(matches!(queue.push(read(10)), Err(SubmitError::Full)));
    }

    #[test]
    fn a_worker_leaves_woken_workers_their_share() {
        assert_eq!(batch_share(10, 0), 10, "nobody else is free: the whole batch");
        assert_eq!(batch_share(40, 0), MAX_BATCH);
        assert_eq!(batch_share(10, 3), 3, "split four ways, rounded up");
        assert_eq!(batch_share(1, 15), 1);
        assert_eq!(batch_share(0, 2), 0);
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_drains_then_stops() {
        let queue = JobQueue::new(2);
        queue.push(logout(1)).unwrap();
        queue.push(read(2)).unwrap();
        assert_eq!(queue.push(read(3)).unwrap_err(), SubmitError::Full);
        queue.close();
        assert_eq!(queue.push(read(4)).unwrap_err(), SubmitError::Closed);
        let (mut batch, mut stale) = (Vec::new(), Vec::new());
        assert!(queue.take(&mut batch, &mut stale), "jobs queued before closing are still handed out");
        assert_eq!(ids(&batch), vec![1, 2]);
        batch.clear();
        assert!(!queue.take(&mut batch, &mut stale));
        assert!(batch.is_empty() && stale.is_empty());
    }

    #[test]
    fn a_waiting_worker_wakes_for_a_job() {
        let queue = std::sync::Arc::new(JobQueue::new(4));
        let worker = {
            let queue = std::sync::Arc::clone(&queue);
            std::thread::spawn(move || {
                let (mut batch, mut stale) = (Vec::new(), Vec::new());
                queue.take(&mut batch, &mut stale).then(|| ids(&batch))
            })
        };
        // Wait until the worker sleeps, so the test shows that it is woken.
        while queue.lock().idle == 0 {
            std::thread::yield_now();
        }
        queue.push(logout(7)).unwrap();
        queue.wake_workers();
        assert_eq!(worker.join().unwrap(), Some(vec![7]));
    }

    #[test]
    fn jobs_that_waited_too_long_are_handed_out_as_stale() {
        let queue = JobQueue::with_max_wait(10, Duration::from_millis(50));
        queue.push(logout(1)).unwrap();
        queue.push(read(2)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        queue.push(logout(3)).unwrap();
        queue.push(read(4)).unwrap();
        let (mut batch, mut stale) = (Vec::new(), Vec::new());
        assert!(queue.take(&mut batch, &mut stale));
        assert_eq!(ids(&batch), vec![3, 4]);
        assert_eq!(ids(&stale), vec![1, 2]);
    }

    #[test]
    fn checks_of_parked_waits_are_never_stale_and_are_taken_together() {
        let queue = JobQueue::with_max_wait(40, Duration::from_millis(50));
        let check = |id| Job { wait: Some(crate::qr_waits::WaitRef { id: 0, serial: id }), ..logout(id) };
        for id in 1..=20 {
            queue.push_background(check(id)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        let (mut batch, mut stale) = (Vec::new(), Vec::new());
        assert!(queue.take(&mut batch, &mut stale));
        assert!(stale.is_empty(), "a wait's check was shed");
        assert_eq!(ids(&batch), (1..=16).collect::<Vec<_>>());
    }
}
