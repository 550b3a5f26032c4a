//! One log-in attempt as it waits in Redis for the drainer, and how a
//! worker's batch queues its attempts.
//!
//! A record is one line of tab-separated fields, the outcome first:
//! `outcome, version, attempt id, time (ms), user id (0: find by name),
//! username, address, browser, OS, method, session id`. None of the fields
//! can hold a tab: usernames are `[a-z0-9_.-]`, names come from fixed lists,
//! ids are hex.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::db::redis::Batch;
use crate::keys::{HISTORY_QUEUES, Keys};

/// Records the queues hold at most, together. At about 150 bytes each, a
/// million is 150 MB of Redis: over three minutes of log-ins at 5,000 a
/// second with MariaDB away, and still a small share of Redis's `maxmemory`.
/// Past it a log-in still succeeds but its record is dropped (and logged):
/// losing a history row is better than refusing every log-in while MariaDB
/// is down. Each batch cuts its queue back to its share ([`queue_on`]), so
/// only the records of the batches in flight ever lie beyond it.
pub const MAX_QUEUED: u64 = 1_000_000;

/// Records one queue holds at most: its share of [`MAX_QUEUED`].
pub const MAX_QUEUED_PER_QUEUE: u64 = MAX_QUEUED / HISTORY_QUEUES as u64;

/// The record format written by this build.
const VERSION: &str = "1";

/// How an attempt authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Username and password.
    Password,
    /// A scan-to-log-in code approved from a phone.
    Qr,
}

impl Method {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Qr => "qr",
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A session was opened.
    Success,
    /// The password was wrong.
    WrongPassword,
    /// A throttle refused it.
    Throttled,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::WrongPassword => "wrong_password",
            Outcome::Throttled => "throttled",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        [Outcome::Success, Outcome::WrongPassword, Outcome::Throttled].into_iter().find(|o| o.as_str() == s)
    }
}

/// One attempt, its text owned (`String`, as a worker makes it) or
/// borrowed from the record it was decoded from (`&str`, as the drainer
/// reads a round of them without copying each field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt<S = String> {
    /// 128 bits in hex: the row's unique key, so a record inserted twice is one row.
    pub attempt_id: S,
    /// When, ms since the epoch.
    pub time_ms: u64,
    /// `users.id`, or 0 when the attempt did not learn it (throttled before any lookup).
    pub user_id: u64,
    /// The lowercased username.
    pub username: S,
    /// The client address ("" if unknown).
    pub ip: S,
    /// Browser name.
    pub browser: S,
    /// OS name.
    pub os: S,
    /// How.
    pub method: Method,
    /// How it ended.
    pub outcome: Outcome,
    /// The public id of the session a success opened ("" otherwise).
    pub session: S,
}

/// A fresh id for an attempt made at `time_ms`: that time
/// ([`attempt_id_floor`]), then 80 random bits. Time first, so that the
/// table's key grows at its end as rows arrive instead of at random places,
/// and old rows are pruned by a range of the key; 80 bits keep two attempts
/// of one millisecond apart beyond any real chance of a clash. The id is
/// never shown and guards nothing, so the thread's generator (a CSPRNG
/// seeded by the OS) serves, without a system call per log-in.
pub fn new_attempt_id(time_ms: u64) -> String {
    let random: [u8; 10] = rand::random();
    format!("{}{}", attempt_id_floor(time_ms), hex::encode(random))
}

/// The first 12 hex digits of the ids of attempts made at `time_ms`: every
/// id of an earlier attempt sorts below it, every later one above.
pub fn attempt_id_floor(time_ms: u64) -> String {
    format!("{:012x}", time_ms & 0xffff_ffff_ffff)
}

/// The address as recorded.
pub fn ip_text(client: Option<IpAddr>) -> String {
    client.map(|a| a.to_canonical().to_string()).unwrap_or_default()
}

impl<S: AsRef<str>> Attempt<S> {
    /// The record: one line of tab-separated fields (module documentation).
    pub fn encode(&self) -> String {
        format!(
            "{}\t{VERSION}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.outcome.as_str(),
            self.attempt_id.as_ref(),
            self.time_ms,
            self.user_id,
            self.username.as_ref(),
            self.ip.as_ref(),
            self.browser.as_ref(),
            self.os.as_ref(),
            self.method.as_str(),
            self.session.as_ref()
        )
    }

    /// The same attempt, its text borrowed (what decoding its record gives).
    #[cfg(test)]
    pub fn as_borrowed(&self) -> Attempt<&str> {
        Attempt {
            attempt_id: self.attempt_id.as_ref(),
            time_ms: self.time_ms,
            user_id: self.user_id,
            username: self.username.as_ref(),
            ip: self.ip.as_ref(),
            browser: self.browser.as_ref(),
            os: self.os.as_ref(),
            method: self.method,
            outcome: self.outcome,
            session: self.session.as_ref(),
        }
    }
}

impl<'a> Attempt<&'a str> {
    /// The attempt in a record, its text borrowed from it, or `None` for one
    /// this build cannot read.
    pub fn decode(record: &'a str) -> Option<Attempt<&'a str>> {
        let mut f = record.split('\t');
        let mut next = || f.next();
        let outcome = Outcome::parse(next()?)?;
        if next()? != VERSION {
            return None;
        }
        let (attempt_id, time_ms, user_id) = (next()?, next()?.parse().ok()?, next()?.parse().ok()?);
        let (username, ip, browser, os) = (next()?, next()?, next()?, next()?);
        let method = next()?;
        let method = [Method::Password, Method::Qr].into_iter().find(|m| m.as_str() == method)?;
        let session = next()?;
        if next().is_some() {
            return None;
        }
        Some(Attempt { attempt_id, time_ms, user_id, username, ip, browser, os, method, outcome, session })
    }
}

/// The queue the next batch's records go to: batches take the queues in
/// turn, so that on a cluster the writes spread over every master.
static NEXT_QUEUE: AtomicUsize = AtomicUsize::new(0);

/// Records a batch added to a queue, to read its reply with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    records: u64,
}

impl Queued {
    /// How many of the records the queue's bound cut off, from the length
    /// the `RPUSH` replied: those past [`MAX_QUEUED_PER_QUEUE`]. An upper
    /// bound: a drainer's trim between the push and the cut leaves some of
    /// them in the queue after all.
    pub fn dropped(self, length: u64) -> u64 {
        self.records.min(length.saturating_sub(MAX_QUEUED_PER_QUEUE))
    }

    /// Logs the records the full queue refused (at most one line per batch).
    pub fn report(self, length: u64) {
        let dropped = self.dropped(length);
        if dropped > 0 {
            crate::log!(
                "log-in history: a queue is full ({MAX_QUEUED_PER_QUEUE} records); {dropped} attempts not recorded"
            );
        }
    }
}

/// Adds the queueing of a batch's `attempts` to `batch`, on the queue whose
/// turn it is; `None` when there is nothing to queue. Its one reply is the
/// queue's length ([`Queued::dropped`]).
///
/// One queue per batch, not one per account's queue: a batch's log-ins
/// are of as many accounts as it holds, and a command per account cost Redis
/// more than the log-in's other scripts together. An account's records may
/// so lie in several queues; each holds them in the order they happened,
/// and the drainer orders every round by time ([`super::drain`]).
///
/// A build with `--cfg usermgmt_without="history"` (made only by
/// `perf/cost.sh`, to measure what recording costs) queues nothing, so
/// neither Redis nor the drainer nor MariaDB does any of the history's work.
pub fn queue_cmds(batch: &mut Batch, keys: &Keys, attempts: &[Attempt]) -> Option<Queued> {
    if cfg!(usermgmt_without = "history") || attempts.is_empty() {
        return None;
    }
    let queue = keys.history_queue(NEXT_QUEUE.fetch_add(1, Ordering::Relaxed) % HISTORY_QUEUES);
    Some(queue_on(batch, &queue, attempts))
}

/// Adds `attempts` to `queue`: an `RPUSH` (its reply, the length, is the
/// batch's) and an `LTRIM` that cuts the queue back to its bound, dropping
/// from its end the records that did not fit. Two plain commands, not a
/// script: a script that checked the length first cost Redis four times as
/// much per record (0.63 against 0.16 µs, 16 records a batch), on every
/// log-in, to be exact in a case (MariaDB away for minutes) that only logs.
/// The bound so holds after every batch; between one's push and its cut the
/// queue may hold, beyond it, the records of the batches in flight (at most
/// [`crate::queue::MAX_BATCH`] per worker). Only the end is cut, so a
/// drainer's trim of the head ([`super::drain`]) is never disturbed.
pub fn queue_on(batch: &mut Batch, queue: &str, attempts: &[Attempt]) -> Queued {
    batch.cmd("RPUSH").arg(queue);
    for attempt in attempts {
        batch.arg(attempt.encode());
    }
    batch.cmd("LTRIM").arg(queue).arg(0).arg(MAX_QUEUED_PER_QUEUE - 1).ignore();
    Queued { records: attempts.len() as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> Attempt {
        Attempt {
            attempt_id: new_attempt_id(1_700_000_000_123),
            time_ms: 1_700_000_000_123,
            user_id: 7,
            username: "bruce_lee".into(),
            ip: "192.0.2.1".into(),
            browser: "Firefox".into(),
            os: "Linux".into(),
            method: Method::Password,
            outcome: Outcome::WrongPassword,
            session: String::new(),
        }
    }

    #[test]
    fn records_round_trip() {
        let a = attempt();
        let encoded = a.encode();
        assert_eq!(Attempt::decode(&encoded), Some(a.as_borrowed()));
        assert_eq!(a.attempt_id.len(), 32);
        assert_ne!(a.attempt_id, new_attempt_id(a.time_ms));
    }

    /// Regression: the drainer skipped every scan-to-log-in record as
    /// unreadable, because only the password method decoded.
    #[test]
    fn a_qr_log_in_record_is_readable_by_the_drainer() {
        let a = Attempt { method: Method::Qr, outcome: Outcome::Success, ..attempt() };
        let encoded = a.encode();
        assert_eq!(Attempt::decode(&encoded).map(|d| d.method), Some(Method::Qr));
    }

    #[test]
    fn unreadable_records_are_refused() {
        for bad in [
            "",
            "success",
            "success\t2\tx",
            "maybe\t1\ta\t1\t1\tu\t\tF\tL\tpassword\t",
            "success\t1\ta\t1\t1\tu\t\tF\tL\tpassword\t\textra",
        ] {
            assert_eq!(Attempt::decode(bad), None, "{bad}");
        }
    }
}
