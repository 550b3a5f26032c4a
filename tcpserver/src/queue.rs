//! The bounded queue between the reactor and the workers.
//!
//! Profile reads wait in a lane of their own, so that a worker can take
//! several of them at once and answer them with one Redis round trip
//! ([`crate::dispatch::handle_batch`]), while every other request is taken one
//! at a time: a sign-up or a log-in that has to hash a password or wait for
//! MySQL never holds up other requests behind it in the same worker, and the
//! other workers stay busy. Each lane is first in, first out; a worker takes
//! one other request (if any) before the reads, so neither lane starves.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use proto::Message;

use crate::pool::{Job, SubmitError};

/// Profile reads a worker takes at once, at most. A batch is whatever is
/// queued (it never waits for more to arrive); sixteen keeps what a batch adds
/// to its last read's latency to a few Redis round trips' worth of work.
pub const MAX_BATCH: usize = 16;

/// The queue; see the module documentation.
#[derive(Debug)]
pub struct JobQueue {
    state: Mutex<Lanes>,
    /// Signalled when a job arrives or the queue closes.
    arrived: Condvar,
    /// Jobs queued in both lanes together, at most.
    capacity: usize,
}

#[derive(Debug, Default)]
struct Lanes {
    reads: VecDeque<Job>,
    others: VecDeque<Job>,
    closed: bool,
}

impl Lanes {
    fn len(&self) -> usize {
        self.reads.len() + self.others.len()
    }
}

impl JobQueue {
    /// An empty queue that holds at most `capacity` jobs (at least one).
    pub fn new(capacity: usize) -> JobQueue {
        JobQueue { state: Mutex::new(Lanes::default()), arrived: Condvar::new(), capacity: capacity.max(1) }
    }

    fn lock(&self) -> MutexGuard<'_, Lanes> {
        // Every change is one push, pop or flag: a panic cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a job without blocking.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Full`] at capacity, [`SubmitError::Closed`] once closed;
    /// the job is dropped.
    pub fn push(&self, job: Job) -> Result<(), SubmitError> {
        let mut lanes = self.lock();
        if lanes.closed {
            return Err(SubmitError::Closed);
        }
        if lanes.len() >= self.capacity {
            return Err(SubmitError::Full);
        }
        match job.message {
            Message::GetProfile { .. } => lanes.reads.push_back(job),
            _ => lanes.others.push_back(job),
        }
        drop(lanes);
        self.arrived.notify_one();
        Ok(())
    }

    /// Waits for work and moves it into `batch`: one request that is not a
    /// profile read, if any is queued, and up to [`MAX_BATCH`] profile reads.
    /// Returns `false` once the queue is closed and empty.
    pub fn take(&self, batch: &mut Vec<Job>) -> bool {
        let mut lanes = self.lock();
        while lanes.len() == 0 {
            if lanes.closed {
                return false;
            }
            lanes = self.arrived.wait(lanes).unwrap_or_else(PoisonError::into_inner);
        }
        batch.extend(lanes.others.pop_front());
        let reads = lanes.reads.len().min(MAX_BATCH);
        batch.extend(lanes.reads.drain(..reads));
        true
    }

    /// Refuses new jobs; workers still take the ones queued, then stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use mio::Token;
    use proto::Secret;

    use super::*;

    fn job(request_id: u64, message: Message) -> Job {
        Job { token: Token(0), conn_id: 1, request_id, message }
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
    fn reads_come_in_batches_and_other_requests_one_at_a_time() {
        let queue = JobQueue::new(100);
        for id in 1..=20 {
            queue.push(read(id)).unwrap();
        }
        queue.push(logout(100)).unwrap();
        queue.push(logout(101)).unwrap();
        let mut batch = Vec::new();
        assert!(queue.take(&mut batch));
        assert_eq!(ids(&batch), [100].into_iter().chain(1..=16).collect::<Vec<_>>());
        batch.clear();
        assert!(queue.take(&mut batch));
        assert_eq!(ids(&batch), vec![101, 17, 18, 19, 20]);
    }

    #[test]
    fn a_full_queue_refuses_and_a_closed_one_drains_then_stops() {
        let queue = JobQueue::new(2);
        queue.push(logout(1)).unwrap();
        queue.push(read(2)).unwrap();
        assert_eq!(queue.push(read(3)).unwrap_err(), SubmitError::Full);
        queue.close();
        assert_eq!(queue.push(read(4)).unwrap_err(), SubmitError::Closed);
        let mut batch = Vec::new();
        assert!(queue.take(&mut batch), "jobs queued before closing are still handed out");
        assert_eq!(ids(&batch), vec![1, 2]);
        batch.clear();
        assert!(!queue.take(&mut batch));
        assert!(batch.is_empty());
    }

    #[test]
    fn a_waiting_worker_wakes_for_a_job() {
        let queue = std::sync::Arc::new(JobQueue::new(4));
        let worker = {
            let queue = std::sync::Arc::clone(&queue);
            std::thread::spawn(move || {
                let mut batch = Vec::new();
                queue.take(&mut batch).then(|| ids(&batch))
            })
        };
        queue.push(logout(7)).unwrap();
        assert_eq!(worker.join().unwrap(), Some(vec![7]));
    }
}
