//! One log-in attempt as it waits in Redis for the drainer, and the script
//! that queues it.
//!
//! A record is one line of tab-separated fields, the outcome first:
//! `outcome, version, attempt id, time (ms), user id (0: find by name),
//! username, address, browser, OS, method, session id`. None of the fields
//! can hold a tab: usernames are `[a-z0-9_.-]`, names come from fixed lists,
//! ids are hex.

use std::net::IpAddr;
use std::sync::LazyLock;

use rand::TryRng;
use rand::rngs::SysRng;

use crate::db::redis::{Batch, LuaScript};
use crate::keys::{AccountTag, HISTORY_QUEUES, Keys};

/// Records the queues hold at most, together. At about 150 bytes each, a
/// million is 150 MB of Redis: over three minutes of log-ins at 5,000 a
/// second with MariaDB away, and still a small share of Redis's `maxmemory`.
/// Past it a log-in still succeeds but its record is dropped (and logged):
/// losing a history row is better than refusing every log-in while MariaDB
/// is down.
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

/// One attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 128 random bits in hex: the row's unique key, so a record inserted twice is one row.
    pub attempt_id: String,
    /// When, ms since the epoch.
    pub time_ms: u64,
    /// `users.id`, or 0 when the attempt did not learn it (throttled before any lookup).
    pub user_id: u64,
    /// The lowercased username.
    pub username: String,
    /// The client address ("" if unknown).
    pub ip: String,
    /// Browser name.
    pub browser: String,
    /// OS name.
    pub os: String,
    /// How.
    pub method: Method,
    /// How it ended.
    pub outcome: Outcome,
    /// The public id of the session a success opened ("" otherwise).
    pub session: String,
}

/// A fresh attempt id.
pub fn new_attempt_id() -> String {
    let mut bytes = [0u8; 16];
    // The OS generator does not fail on the systems this runs on; should it,
    // the time and a counter-free fallback keep ids distinct enough for one row.
    if SysRng.try_fill_bytes(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&crate::session::unix_now_us().to_be_bytes());
        bytes[8..].copy_from_slice(&rand::random::<u64>().to_be_bytes());
    }
    hex::encode(bytes)
}

/// The address as recorded.
pub fn ip_text(client: Option<IpAddr>) -> String {
    client.map(|a| a.to_canonical().to_string()).unwrap_or_default()
}

impl Attempt {
    /// Everything after the outcome, starting with a tab: what the session
    /// script prefixes with the outcome it decides.
    pub fn tail(&self) -> String {
        format!(
            "\t{VERSION}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.attempt_id,
            self.time_ms,
            self.user_id,
            self.username,
            self.ip,
            self.browser,
            self.os,
            self.method.as_str(),
            self.session
        )
    }

    /// The whole record.
    pub fn encode(&self) -> String {
        format!("{}{}", self.outcome.as_str(), self.tail())
    }

    /// The attempt in a record, or `None` for one this build cannot read.
    pub fn decode(record: &str) -> Option<Attempt> {
        let f: Vec<&str> = record.split('\t').collect();
        let [outcome, VERSION, attempt_id, time_ms, user_id, username, ip, browser, os, method, session] =
            f[..]
        else {
            return None;
        };
        let method = [Method::Password, Method::Qr].into_iter().find(|m| m.as_str() == method)?;
        Some(Attempt {
            attempt_id: attempt_id.to_owned(),
            time_ms: time_ms.parse().ok()?,
            user_id: user_id.parse().ok()?,
            username: username.to_owned(),
            ip: ip.to_owned(),
            browser: browser.to_owned(),
            os: os.to_owned(),
            method,
            outcome: Outcome::parse(outcome)?,
            session: session.to_owned(),
        })
    }
}

/// KEYS[1] = a queue; ARGV[1] = its cap, ARGV[2..] = records. Appends the
/// records that fit; returns how many did not.
const QUEUE: &str = r"#!lua
local room = tonumber(ARGV[1]) - redis.call('LLEN', KEYS[1])
local dropped = 0
for i = 2, #ARGV do
  if room > 0 then
    redis.call('RPUSH', KEYS[1], ARGV[i])
    room = room - 1
  else
    dropped = dropped + 1
  end
end
return dropped
";

/// The queueing script (`QUEUE`), sent by its SHA-1 once Redis has it.
pub static QUEUE_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(QUEUE));

/// Adds the queueing of `attempts` to a batch: one script per queue they go
/// to (each account's to the queue of its tag, [`Keys::history_queue_for`]),
/// each with one reply, the records dropped; returns how many scripts.
pub fn queue_cmds(batch: &mut Batch, keys: &Keys, attempts: &[Attempt]) -> usize {
    let mut queues: Vec<(String, Vec<String>)> = Vec::new();
    for attempt in attempts {
        let queue = keys.history_queue_for(&AccountTag::of(&attempt.username));
        let record = attempt.encode();
        match queues.iter_mut().find(|(q, _)| *q == queue) {
            Some((_, records)) => records.push(record),
            None => queues.push((queue, vec![record])),
        }
    }
    for (queue, records) in &queues {
        let cmd = batch.script(&QUEUE_SCRIPT).arg(1).arg(queue).arg(MAX_QUEUED_PER_QUEUE);
        for record in records {
            cmd.arg(record);
        }
    }
    queues.len()
}

/// Logs records the full queue refused (at most one line per call).
pub fn report_dropped(dropped: u64) {
    if dropped > 0 {
        crate::log!(
            "log-in history: a queue is full ({MAX_QUEUED_PER_QUEUE} records); {dropped} attempts not recorded"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> Attempt {
        Attempt {
            attempt_id: new_attempt_id(),
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
    fn records_round_trip_and_the_outcome_can_be_prefixed() {
        let a = attempt();
        assert_eq!(Attempt::decode(&a.encode()), Some(a.clone()));
        let throttled = Attempt::decode(&format!("throttled{}", a.tail())).unwrap();
        assert_eq!(throttled.outcome, Outcome::Throttled);
        assert_eq!(a.attempt_id.len(), 32);
        assert_ne!(a.attempt_id, new_attempt_id());
    }

    /// Regression: the drainer skipped every scan-to-log-in record as
    /// unreadable, because only the password method decoded.
    #[test]
    fn a_qr_log_in_record_is_readable_by_the_drainer() {
        let a = Attempt { method: Method::Qr, outcome: Outcome::Success, ..attempt() };
        assert_eq!(Attempt::decode(&a.encode()).map(|d| d.method), Some(Method::Qr));
    }

    #[test]
    fn unreadable_records_are_refused() {
        for bad in ["", "success", "success\t2\tx", "maybe\t1\ta\t1\t1\tu\t\tF\tL\tpassword\t"] {
            assert_eq!(Attempt::decode(bad), None, "{bad}");
        }
    }
}
