//! The worker pool: where blocking work happens, away from the reactor.
//!
//! The reactor hands each request to the pool as a [`Job`] through a bounded
//! queue, without ever blocking: when the queue is full, [`WorkerPool::submit`]
//! gives the job back and the reactor answers `Overloaded`. Each worker owns a
//! [`Service`] (its own MySQL and Redis connections), takes its share of the
//! [`JobQueue`], runs what is not batchable first, one by one, each answered
//! at once (the reactor woken for each), then the batch
//! (profile reads, log-ins and nickname changes together), sends a
//! [`Completion`] per job back through a channel and wakes the reactor's
//! poll with the shared [`Waker`]. Workers never touch client sockets.
//!
//! Dropping the pool closes the queue; the workers finish the jobs already
//! queued, and the drop waits for them.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use std::{fmt, io, thread};

use mio::{Token, Waker};
use proto::{ErrorCode, ErrorReply, Message, MessageType, TraceId};

use crate::dispatch;
use crate::error::{Error, RETRY_AFTER_BUSY_SECS};
use crate::log::{Event, Level};
use crate::qr_waits::WaitRef;
use crate::queue::{JobQueue, MAX_BATCH};
use crate::service::Service;

/// One request on its way to a worker.
#[derive(Debug)]
pub struct Job {
    /// The connection's slab key.
    pub token: Token,
    /// The connection's serial number, to tell it from a later one in the same slot.
    pub conn_id: u64,
    /// The client's request id, echoed in the reply.
    pub request_id: u64,
    /// The HTTP request id the caller sent with the frame (empty if none),
    /// written in every log line about this job.
    pub trace: TraceId,
    /// The request.
    pub message: Message,
    /// For a scan-to-log-in wait: which one this check is for ([`crate::qr_waits`]).
    pub wait: Option<WaitRef>,
}

/// A reply on its way back to the reactor.
#[derive(Debug)]
pub struct Completion {
    /// The connection's slab key.
    pub token: Token,
    /// The connection's serial number; the reactor drops the completion if the
    /// slot now holds another connection.
    pub conn_id: u64,
    /// The request id being answered.
    pub request_id: u64,
    /// The reply.
    pub reply: Message,
    /// For a check of a scan-to-log-in wait: what it found.
    pub wait: Option<WaitChecked>,
}

/// What a worker's check of a parked wait found, beside its reply.
#[derive(Debug, Clone, Copy)]
pub struct WaitChecked {
    /// The wait.
    pub wait: WaitRef,
    /// The code is still where the desktop last saw it: park, do not answer.
    pub unchanged: bool,
    /// Milliseconds the code has left.
    pub ttl_ms: u64,
}

/// Why a job was not queued. The caller still knows the request id and answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full.
    Full,
    /// The workers are gone (only during shutdown).
    Closed,
}

/// A fixed set of worker threads behind a bounded queue.
pub struct WorkerPool {
    queue: Arc<JobQueue>,
    workers: Vec<JoinHandle<()>>,
    /// Set by the worker that wakes the reactor, cleared by the reactor just
    /// before it drains the completions: while it is set, a wake is already on
    /// its way, and other workers skip theirs (one `eventfd` write and one
    /// reactor wakeup per batch of replies, not per reply).
    wake_pending: Arc<AtomicBool>,
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool").field("workers", &self.workers.len()).finish_non_exhaustive()
    }
}

impl WorkerPool {
    /// Starts `workers` threads; `make_service(i)` builds worker `i`'s service on
    /// its own thread.
    ///
    /// # Errors
    ///
    /// The I/O error if a thread cannot be spawned.
    pub fn start(
        workers: usize,
        queue_len: usize,
        make_service: impl Fn(usize) -> Service + Send + Sync + 'static,
        completions: Sender<Completion>,
        waker: Arc<Waker>,
    ) -> io::Result<WorkerPool> {
        let queue = Arc::new(JobQueue::new(queue_len));
        let make_service = Arc::new(make_service);
        let wake_pending = Arc::new(AtomicBool::new(false));
        let mut pool = WorkerPool {
            queue: Arc::clone(&queue),
            workers: Vec::with_capacity(workers),
            wake_pending: Arc::clone(&wake_pending),
        };
        for i in 0..workers {
            let wake_pending = Arc::clone(&wake_pending);
            let queue = Arc::clone(&queue);
            let make_service = Arc::clone(&make_service);
            let completions = completions.clone();
            let waker = Arc::clone(&waker);
            let handle = thread::Builder::new().name(format!("worker-{i}")).spawn(move || {
                let mut service = make_service(i);
                service.warm_up();
                work(&mut service, &queue, &completions, &Wake { waker: &waker, pending: &wake_pending });
            })?;
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Called by the reactor right before it drains the completions: a
    /// completion sent after this wakes the reactor again.
    pub fn rearm_wake(&self) {
        self.wake_pending.store(false, Ordering::SeqCst);
    }

    /// Queues a job without blocking; [`WorkerPool::wake_workers`] wakes a
    /// worker for it.
    ///
    /// # Errors
    ///
    /// [`SubmitError`] if the queue is full or closed; the job is dropped.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        self.queue.push(job)
    }

    /// Queues a background job (a parked wait's check) within its share of
    /// the queue ([`crate::queue::BACKGROUND_SHARE`]).
    ///
    /// # Errors
    ///
    /// As [`WorkerPool::submit`].
    pub fn submit_background(&self, job: Job) -> Result<(), SubmitError> {
        self.queue.push_background(job)
    }

    /// Wakes the workers the jobs submitted since the last call need. The
    /// reactor calls it once per turn, after its last submit.
    pub fn wake_workers(&self) {
        self.queue.wake_workers();
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Closing the queue ends each worker's loop once the queue is empty.
        self.queue.close();
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                crate::log!("a worker thread panicked outside a request");
            }
        }
    }
}

/// The reply when no worker can take a request now (`Overloaded`: the queue is
/// full, or the request waited too long; `Unavailable`: shutting down).
pub fn busy(code: ErrorCode) -> Message {
    let message = match code {
        ErrorCode::Overloaded => "The server is busy. Please try again in a moment.",
        _ => "The server is shutting down. Please try again in a moment.",
    };
    Message::Error(ErrorReply { code, message: message.into(), retry_after_secs: RETRY_AFTER_BUSY_SECS })
}

/// How a worker wakes the reactor: only when no wake is pending already.
struct Wake<'a> {
    waker: &'a Waker,
    pending: &'a AtomicBool,
}

impl Wake<'_> {
    /// Wakes the reactor unless a wake is already on its way (sent after the
    /// reactor's last [`WorkerPool::rearm_wake`], so it will drain this
    /// completion too).
    fn wake(&self) -> io::Result<()> {
        if self.pending.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.waker.wake()
    }
}

/// Counts one answered job in the metrics and writes its log line (event
/// `request`, with the caller's request id): the operation, its outcome (`ok`
/// or the error code's name) and how long its batch took.
fn log_reply(kind: MessageType, reply: &Message, trace: TraceId, took: Duration) {
    let error = match reply {
        Message::Error(e) => Some(e.code),
        _ => None,
    };
    if let Some(code) = error {
        crate::metrics::count_error(code);
    }
    let operation = crate::metrics::operation_index(kind);
    let outcome = crate::metrics::outcome_index(error);
    crate::metrics::OPERATION_LATENCY[operation][outcome].observe(took.as_secs_f64());
    let label = dispatch::operation_label(kind);
    let status = match error {
        Some(code) => format!("{code:?}"),
        None => "ok".to_owned(),
    };
    let level = if outcome == 2 { Level::Warn } else { Level::Info };
    if level == Level::Info && !hostsupport::log::access_lines() {
        return;
    }
    Event::new(level, "request", trace.as_str())
        .field("operation", label)
        .field("outcome", &status)
        .field("micros", took.as_micros())
        .write(format_args!("{label}: {status}"));
}

/// A worker's loop: take its share of the queue (see [`JobQueue::take`])
/// and serve it ([`serve_share`]), until the queue closes or the reactor
/// is gone.
fn work(service: &mut Service, queue: &JobQueue, completions: &Sender<Completion>, waker: &Wake<'_>) {
    let mut batch = Vec::with_capacity(2 * MAX_BATCH);
    let mut stale = Vec::new();
    while queue.take(&mut batch, &mut stale) {
        if serve_share(service, (&mut batch, &mut stale), completions, waker).is_err() {
            return;
        }
    }
}

/// The reactor has exited: its end of the completions channel, or its
/// poll, is gone, and nobody is left to answer.
struct ReactorGone;

/// Serves one share: answers the stale jobs as shed, runs and answers the
/// requests that are not batchable one by one, then the batch, waking the
/// reactor after each answer and after the batch.
fn serve_share(
    service: &mut Service,
    (batch, stale): (&mut Vec<Job>, &mut Vec<Job>),
    completions: &Sender<Completion>,
    waker: &Wake<'_>,
) -> Result<(), ReactorGone> {
    send_all(completions, stale.drain(..).map(shed))?;
    // Checks of parked waits (one Redis read each) and the requests that
    // are not batchable (scan-to-log-in decisions, log-outs, ...) run
    // first, each answered at once (the reactor woken for it): behind
    // the batch they would wait for its round trips and hashes, and a
    // desktop's answer would wait for two batches (the phone's decision,
    // then the check it sets off).
    let mut i = 0;
    while i < batch.len() {
        if crate::queue::is_batchable(&batch[i].message) {
            i += 1;
            continue;
        }
        let job = batch.remove(i);
        let answered = match job.wait {
            Some(_) => vec![check_wait(service, job)],
            None => run_batch(service, vec![job]),
        };
        send_all(completions, answered)?;
        waker.wake().map_err(|_| ReactorGone)?;
    }
    if !batch.is_empty() {
        crate::metrics::BATCH_SIZE.observe(batch.len() as f64);
        send_all(completions, run_batch(service, std::mem::take(batch)))?;
    }
    // For the batch's replies, and the stale jobs' if nothing else woke it.
    waker.wake().map_err(|_| ReactorGone)
}

/// Hands completions to the reactor, in order.
fn send_all(
    completions: &Sender<Completion>,
    answered: impl IntoIterator<Item = Completion>,
) -> Result<(), ReactorGone> {
    answered.into_iter().try_for_each(|completion| completions.send(completion).map_err(|_| ReactorGone))
}

/// The answer to a job that waited too long for a worker: `Overloaded`,
/// logged.
fn shed(job: Job) -> Completion {
    crate::metrics::SHED_STALE.add(1);
    crate::metrics::count_error(ErrorCode::Overloaded);
    let operation = dispatch::operation_label(job.message.message_type());
    Event::new(Level::Warn, "request", job.trace.as_str())
        .field("operation", operation)
        .field("connection", job.token.0)
        .field("outcome", "shed")
        .write(format_args!("{operation}: waited too long for a worker"));
    Completion {
        token: job.token,
        conn_id: job.conn_id,
        request_id: job.request_id,
        reply: busy(ErrorCode::Overloaded),
        wait: None,
    }
}

/// Runs `jobs` together ([`dispatch::handle_batch`]), logs each reply, and
/// returns their completions in order.
fn run_batch(service: &mut Service, jobs: Vec<Job>) -> Vec<Completion> {
    let started = Instant::now();
    let (meta, messages): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .map(|job| {
            let kind = job.message.message_type();
            ((job.token, job.conn_id, job.request_id, job.trace, kind), job.message)
        })
        .unzip();
    let count = messages.len();
    let outcomes = catch_unwind(AssertUnwindSafe(|| dispatch::handle_batch(service, messages)));
    let outcomes: Vec<Result<Message, Option<Error>>> = match outcomes {
        Ok(outcomes) => outcomes.into_iter().map(|outcome| outcome.map_err(Some)).collect(),
        Err(_) => (0..count).map(|_| Err(None)).collect(),
    };
    let took = started.elapsed();
    crate::metrics::WORKER_BUSY_MICROS.add(took.as_micros() as u64);
    meta.into_iter()
        .zip(outcomes)
        .map(|((token, conn_id, request_id, trace, kind), outcome)| {
            let operation = dispatch::operation_label(kind);
            let reply = match outcome {
                Ok(reply) => reply,
                Err(Some(e)) => {
                    if let Error::Internal(cause) = &e {
                        Event::new(Level::Error, "internal_error", trace.as_str())
                            .field("operation", operation)
                            .field("connection", token.0)
                            .field("request", request_id)
                            .write(format_args!("{operation}: {cause}"));
                    }
                    e.to_message()
                }
                Err(None) => {
                    Event::new(Level::Error, "internal_error", trace.as_str())
                        .field("operation", operation)
                        .field("connection", token.0)
                        .field("request", request_id)
                        .write(format_args!("{operation}: panicked"));
                    Message::error(ErrorCode::Internal, "Something went wrong on our side. Please try again.")
                }
            };
            log_reply(kind, &reply, trace, took);
            Completion { token, conn_id, request_id, reply, wait: None }
        })
        .collect()
}

/// Checks the code of one scan-to-log-in wait ([`Service::qr_check`]); an
/// error ends the wait with that error. Each check is timed as operation
/// `qr_wait` (a worker's part of a wait, not its time parked).
fn check_wait(service: &mut Service, job: Job) -> Completion {
    let Job { token, conn_id, request_id, message, wait, .. } = job;
    let started = Instant::now();
    let checked = match message {
        Message::QrWait { key, binding, seen, client, .. } => {
            catch_unwind(AssertUnwindSafe(|| service.qr_check(&key, &binding, seen, client)))
        }
        _ => Ok(Err(Error::Internal(crate::error::Internal::CorruptEntry("wait without a QrWait")))),
    };
    let (reply, unchanged, ttl_ms) = match checked {
        Ok(Ok(check)) => (check.reply, check.unchanged, check.ttl_ms),
        Ok(Err(e)) => {
            if let Error::Internal(cause) = &e {
                crate::log!("qr-wait (connection {}, request {request_id}): {cause}", token.0);
            }
            (e.to_message(), false, 0)
        }
        Err(_) => {
            crate::log!("qr-wait (connection {}, request {request_id}): panicked", token.0);
            (
                Message::error(ErrorCode::Internal, "Something went wrong on our side. Please try again."),
                false,
                0,
            )
        }
    };
    let error = match &reply {
        Message::Error(e) => Some(e.code),
        _ => None,
    };
    if let Some(code) = error {
        crate::metrics::count_error(code);
    }
    let operation = crate::metrics::operation_index(MessageType::QrWait);
    let outcome = crate::metrics::outcome_index(error);
    crate::metrics::OPERATION_LATENCY[operation][outcome].observe(started.elapsed().as_secs_f64());
    let wait = wait.map(|wait| WaitChecked { wait, unchanged, ttl_ms });
    Completion { token, conn_id, request_id, reply, wait }
}
