//! The drainer: moves queued log-in records from Redis into MariaDB.
//!
//! One thread per tcpserver, with a MySQL and a Redis connection of its own.
//! Each round reads the head of every queue ([`Keys::history_queues`]: the
//! records are spread over several, so that no one Redis node takes every
//! log-in's write), up to [`DRAIN_BATCH`] records in all, in one round trip;
//! writes them in one transaction (multi-row `INSERT IGNORE`s of at most
//! [`logins::MAX_ROWS_PER_INSERT`] rows), and only after the COMMIT takes
//! them off their lists, with a script per queue that trims only if the head
//! still holds exactly the records it read (so two drainers, of two
//! tcpservers, never trim records the other has not written). A kill between COMMIT and trim
//! leaves records that the next round inserts again: the unique attempt id
//! makes that a no-op. A full round is followed at once by the next; after a
//! short one the thread sleeps until a worker queues a record ([`Wake`]) or
//! [`IDLE_CHECK`] passes, then waits [`DRAIN_PERIOD`] more so that a round
//! carries a quarter-second of log-ins (one COMMIT for many rows) rather
//! than one batch's; that bounds how late a record reaches the table.
//!
//! In the same transaction it decides what needs the account's past: a
//! success is a *new device* when the account has not used that browser, OS
//! and network (/24 for IPv4, /48 for IPv6) in [`KNOWN_FOR_MS`] (the
//! `known_devices` table, filled here), and *suspicious* when it also comes
//! from a new network after at least [`SUSPICIOUS_AFTER_FAILURES`] failed
//! attempts in the [`SUSPICION_WINDOW_MS`] before it. Every
//! [`PRUNE_INTERVAL`] it deletes rows older than 90 days, [`logins::PRUNE_BATCH`]
//! at a time.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::known_cache::{KnownCache, Pair};
use super::record::{Attempt, Outcome};
use super::wake::Wake;
use crate::db::logins::{self, NewRow};
use crate::db::mysql::MysqlLink;
use crate::db::redis::{Batch, LuaScript, RedisLink};
use crate::keys::Keys;

/// Records one round reads at most: five full INSERTs in one transaction,
/// under 100 ms of MariaDB work, so a round never holds its locks for long.
pub const DRAIN_BATCH: usize = 1_000;

/// Records one round reads at most from one queue: its share of [`DRAIN_BATCH`].
pub const DRAIN_PER_QUEUE: usize = DRAIN_BATCH / (crate::keys::HISTORY_QUEUES + 1);

/// Wait between a worker's notice and the round it starts: a record waits at
/// most this (plus one round) before it is in the table, and under load a
/// round gathers this long's records into one transaction.
pub const DRAIN_PERIOD: Duration = Duration::from_millis(250);

/// Longest sleep without a notice: records that a tcpserver killed before
/// draining them left in a shared queue are picked up by another within this.
/// (A restarted one drains at once.)
pub const IDLE_CHECK: Duration = Duration::from_secs(5);

/// Pause after a failed round (MariaDB or Redis away), so an outage is not
/// hammered; the records wait in Redis meanwhile.
pub const RETRY_PERIOD: Duration = Duration::from_secs(1);

/// How long history rows and known devices are kept: 90 days.
pub const KNOWN_FOR_MS: u64 = 90 * 24 * 3600 * 1000;

/// How often old rows are pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// Failed attempts before a new-network success that make it suspicious.
pub const SUSPICIOUS_AFTER_FAILURES: usize = 3;

/// How far back those failures count: 15 minutes, three windows of the
/// failed-log-in throttle.
pub const SUSPICION_WINDOW_MS: u64 = 15 * 60 * 1000;

/// KEYS[1] = the queue; ARGV = how many were read, the first and the last.
/// Trims them off if the head is still exactly those; returns 1 if it did.
const TRIM: &str = r"
local n = tonumber(ARGV[1])
if redis.call('LINDEX', KEYS[1], 0) == ARGV[2] and redis.call('LINDEX', KEYS[1], n - 1) == ARGV[3] then
  redis.call('LTRIM', KEYS[1], n, -1)
  return 1
end
return 0
";

static TRIM_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(TRIM));

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Records moved into MariaDB.
    pub moved: usize,
    /// Whether a queue held more than the round took (the next starts at once).
    pub full: bool,
    /// Records the queues held beyond those the round took (when it read them).
    pub left: usize,
}

/// Why a round failed.
#[derive(Debug)]
pub enum DrainError {
    /// Reading or trimming the queue.
    Redis(redis::RedisError),
    /// Writing the rows.
    Mysql(mysql::Error),
}

impl std::fmt::Display for DrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DrainError::Redis(e) => write!(f, "Redis: {e}"),
            DrainError::Mysql(e) => write!(f, "MySQL: {e}"),
        }
    }
}

/// The drainer's state.
#[derive(Debug)]
pub struct Drainer {
    mysql: MysqlLink,
    redis: RedisLink,
    keys: Keys,
    /// The device fingerprints the table is known to hold.
    known: KnownCache,
}

impl Drainer {
    /// A drainer over links of its own: to MySQL with `mysql` (its
    /// connection speaking ASCII, [`crate::db::mysql::ascii_only`]: all it
    /// writes is ASCII), numbered `link` in the log, and `redis`.
    pub fn new(mysql: mysql::Opts, link: usize, redis: RedisLink, keys: Keys) -> Drainer {
        let mysql = MysqlLink::new(crate::db::mysql::ascii_only(mysql), link);
        Drainer { mysql, redis, keys, known: KnownCache::new() }
    }

    /// Runs rounds forever on a thread of its own, sleeping between them
    /// until `wake` is notified.
    ///
    /// # Errors
    ///
    /// The OS error if the thread cannot be started.
    pub fn start(mut self, wake: Arc<Wake>) -> std::io::Result<()> {
        thread::Builder::new().name("history-drain".into()).spawn(move || {
            let mut next_prune = Instant::now();
            let mut failing = false;
            loop {
                let round = self.round();
                crate::metrics::HISTORY_DRAIN_ROUNDS.add(1);
                match round {
                    Ok(n) => {
                        if failing {
                            crate::log!("log-in history: drained again");
                            failing = false;
                        }
                        if !n.full && wake.wait(IDLE_CHECK) {
                            thread::sleep(DRAIN_PERIOD);
                        }
                    }
                    Err(e) => {
                        if !failing {
                            crate::log!("log-in history: records wait in Redis: {e}");
                            failing = true;
                        }
                        thread::sleep(RETRY_PERIOD);
                    }
                }
                if Instant::now() >= next_prune {
                    next_prune = Instant::now() + PRUNE_INTERVAL;
                    self.prune();
                }
            }
        })?;
        Ok(())
    }

    /// One round over every queue: returns how many records it moved, and
    /// whether any queue had more than it took.
    ///
    /// # Errors
    ///
    /// [`DrainError`]; the records then stay queued.
    pub fn round(&mut self) -> Result<Round, DrainError> {
        let queues = self.keys.history_queues();
        let last = DRAIN_PER_QUEUE as isize - 1;
        let mut read = Batch::new();
        for queue in &queues {
            read.cmd("LRANGE").arg(queue).arg(0).arg(last);
        }
        for queue in &queues {
            read.cmd("LLEN").arg(queue);
        }
        let replies: Vec<redis::Value> = self.redis.run(&read).map_err(DrainError::Redis)?;
        let (heads, lengths) = replies.split_at(queues.len().min(replies.len()));
        // The records stay in the reply's buffers; the round borrows them.
        let heads: Vec<Vec<&[u8]>> = heads.iter().map(records_of).collect::<Result<_, _>>()?;
        let lengths: Vec<usize> = lengths
            .iter()
            .map(redis::from_redis_value_ref)
            .collect::<Result<_, _>>()
            .map_err(|e: redis::ParsingError| DrainError::Redis(e.into()))?;
        let moved: usize = heads.iter().map(Vec::len).sum();
        let full = heads.iter().any(|records| records.len() >= DRAIN_PER_QUEUE);
        // What this round leaves queued, for operators (and perf/ab.sh).
        let left = lengths.iter().sum::<usize>().saturating_sub(moved);
        crate::metrics::HISTORY_QUEUED.set(i64::try_from(left).unwrap_or(i64::MAX));
        if moved == 0 {
            return Ok(Round { moved, full, left });
        }
        let mut attempts: Vec<Attempt<&str>> = heads
            .iter()
            .flatten()
            .filter_map(|r| {
                let attempt = std::str::from_utf8(r).ok().and_then(Attempt::decode);
                if attempt.is_none() {
                    crate::log!("log-in history: skipped an unreadable record of {} bytes", r.len());
                }
                attempt
            })
            .collect();
        // A batch's records share a queue, so one account's may lie in
        // several: the round takes them in the order they happened.
        attempts.sort_by_key(|a| a.time_ms);
        let cache = &mut self.known;
        let written = self.mysql.transaction(|tx| write(tx, &attempts, cache)).map_err(DrainError::Mysql)?;
        for (pair, at) in written {
            self.known.learn(pair, at);
        }
        let mut trim = Batch::new();
        for (queue, records) in queues.iter().zip(&heads) {
            if let (Some(first), Some(last)) = (records.first(), records.last()) {
                trim.script(&TRIM_SCRIPT).arg(1).arg(queue).arg(records.len()).arg(first).arg(last);
            }
        }
        let trimmed: Vec<i64> = self.redis.run(&trim).map_err(DrainError::Redis)?;
        if trimmed.contains(&0) {
            crate::log!("log-in history: another drainer took some of these records first");
        }
        Ok(Round { moved, full, left })
    }

    fn prune(&mut self) {
        let before = crate::session::unix_now_ms().saturating_sub(KNOWN_FOR_MS);
        loop {
            match self.mysql.read(|c| logins::prune(c, before)) {
                Ok(n) if n >= logins::PRUNE_BATCH => continue,
                Ok(_) => return,
                Err(e) => {
                    crate::log!(
                        "log-in history: pruning failed, next try in {} s: {e}",
                        PRUNE_INTERVAL.as_secs()
                    );
                    return;
                }
            }
        }
    }
}

/// Writes a round's attempts, with their flags, in the caller's transaction;
/// returns the device fingerprints it wrote, for the cache to learn once the
/// transaction is committed. Fingerprints the cache knows are neither read
/// nor, unless a day stale, written ([`KnownCache`]).
fn write(
    tx: &mut impl mysql::prelude::Queryable,
    attempts: &[Attempt<&str>],
    cache: &mut KnownCache,
) -> mysql::Result<HashMap<Pair, u64>> {
    let unnamed: Vec<&str> = {
        let mut names: Vec<&str> = attempts.iter().filter(|a| a.user_id == 0).map(|a| a.username).collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    let ids = if unnamed.is_empty() { HashMap::new() } else { logins::user_ids(tx, &unnamed)? };
    // Attempts on names with no account are not history.
    let resolved: Vec<(u64, &Attempt<&str>)> = attempts
        .iter()
        .filter_map(|a| match a.user_id {
            0 => ids.get(a.username).map(|id| (*id, a)),
            id => Some((id, a)),
        })
        .collect();
    let now = crate::session::unix_now_ms();
    let since = now.saturating_sub(KNOWN_FOR_MS);
    // Each success's device and network, computed once.
    let prints: Vec<Option<Prints>> =
        resolved.iter().map(|(id, a)| (a.outcome == Outcome::Success).then(|| Prints::of(*id, a))).collect();
    let mut wanted: Vec<Pair> = prints
        .iter()
        .flatten()
        .flat_map(|p| [p.device, p.network])
        .filter(|pair| !cache.known_since(pair, since))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    if !wanted.is_empty() {
        // What the table holds was committed before this round: true
        // whether or not this transaction commits.
        for (pair, seen) in logins::known(tx, &wanted, since)? {
            cache.learn(pair, seen);
        }
    }
    // Pairs first used earlier in this round.
    let mut used_in_round: HashSet<Pair> = HashSet::new();
    let known = |pair: &Pair, used_in_round: &HashSet<Pair>| {
        cache.known_since(pair, since) || used_in_round.contains(pair)
    };
    // The failures before each success that may come from a new network, in
    // one statement for the round (most successes come from a known one).
    let mut suspects: Vec<u64> =
        prints.iter().flatten().filter(|p| !known(&p.network, &used_in_round)).map(|p| p.network.0).collect();
    suspects.sort_unstable();
    suspects.dedup();
    let earliest = resolved.iter().map(|(_, a)| a.time_ms).min().unwrap_or(now);
    let stored_failures = match suspects.is_empty() {
        true => HashMap::new(),
        false => logins::failures_since(tx, &suspects, earliest.saturating_sub(SUSPICION_WINDOW_MS))?,
    };
    let mut rows = Vec::with_capacity(resolved.len());
    let mut seen: HashMap<Pair, u64> = HashMap::new();
    for ((user, a), prints) in resolved.iter().zip(&prints) {
        let (mut new_device, mut suspicious) = (false, false);
        if let Some(&Prints { device, network }) = prints.as_ref() {
            new_device = !known(&device, &used_in_round);
            if !known(&network, &used_in_round) {
                let stored = stored_failures.get(user).map_or(&[][..], Vec::as_slice);
                suspicious =
                    failures_before(*user, a.time_ms, stored, &resolved) >= SUSPICIOUS_AFTER_FAILURES;
            }
            for pair in [device, network] {
                used_in_round.insert(pair);
                let at = seen.entry(pair).or_insert(a.time_ms);
                *at = (*at).max(a.time_ms);
            }
        }
        rows.push(NewRow {
            attempt_id: a.attempt_id,
            user_id: *user,
            time_ms: a.time_ms,
            ip: a.ip,
            browser: a.browser,
            os: a.os,
            method: a.method.as_str(),
            outcome: a.outcome.as_str(),
            new_device,
            suspicious,
            session: if a.outcome == Outcome::Success { a.session } else { "" },
        });
    }
    logins::insert(tx, &rows)?;
    seen.retain(|pair, at| cache.needs_write(pair, *at));
    let mut writes: Vec<(u64, [u8; 16], u64)> =
        seen.iter().map(|(&(user, fp), &at)| (user, fp, at)).collect();
    // In key order, so that two drainers' upserts lock rows in one order.
    writes.sort_unstable();
    logins::remember(tx, &writes)?;
    Ok(seen)
}

/// The records of one queue's `LRANGE` reply, borrowed from it.
fn records_of(reply: &redis::Value) -> Result<Vec<&[u8]>, DrainError> {
    let unreadable =
        || DrainError::Redis(redis::ParsingError::from("a queue's head is not a list of records").into());
    match reply {
        redis::Value::Array(items) => items
            .iter()
            .map(|item| match item {
                redis::Value::BulkString(bytes) => Ok(bytes.as_slice()),
                _ => Err(unreadable()),
            })
            .collect(),
        _ => Err(unreadable()),
    }
}

/// `user`'s failed attempts in the window up to `at`: those in the table
/// (`stored`, their times) and those of this round (`round`; one of the
/// same millisecond as the success counts as before it).
fn failures_before(user: u64, at: u64, stored: &[u64], round: &[(u64, &Attempt<&str>)]) -> usize {
    let from = at.saturating_sub(SUSPICION_WINDOW_MS);
    let in_window = |t: u64| t >= from && t <= at;
    let stored = stored.iter().filter(|t| in_window(**t)).count();
    let queued = round
        .iter()
        .filter(|(u, a)| *u == user && a.outcome != Outcome::Success && in_window(a.time_ms))
        .count();
    stored + queued
}

/// The network an address belongs to, for "seen before": /24 for IPv4, /48 for IPv6.
pub fn network(ip: &str) -> String {
    match ip.parse::<IpAddr>().map(|a| a.to_canonical()) {
        Ok(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        Err(_) => String::new(),
    }
}

/// What a success is checked against: its account's use of its browser, OS
/// and network, and of its network alone.
#[derive(Debug, Clone, Copy)]
struct Prints {
    device: Pair,
    network: Pair,
}

impl Prints {
    fn of(user: u64, a: &Attempt<&str>) -> Prints {
        let network = network(a.ip);
        Prints {
            device: (user, digest(&["device", a.browser, a.os, &network])),
            network: (user, network_digest(&network)),
        }
    }
}

fn network_digest(network: &str) -> [u8; 16] {
    digest(&["network", network])
}

fn digest(parts: &[&str]) -> [u8; 16] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_slash_24_and_slash_48() {
        assert_eq!(network("203.0.113.4"), "203.0.113.0/24");
        assert_eq!(network("::ffff:203.0.113.200"), "203.0.113.0/24");
        assert_eq!(network("2001:db8:aa:bb::1"), "2001:db8:aa::/48");
        assert_eq!(network(""), "");
        let print = |ip: &str| {
            Prints::of(
                7,
                &Attempt::decode(&format!("success\t1\ta\t1\t7\tu\t{ip}\tF\tL\tpassword\t")).unwrap(),
            )
        };
        assert_eq!(print("203.0.113.4").network, print("203.0.113.99").network);
        assert_ne!(print("203.0.113.4").network, print("203.0.114.4").network);
        assert_ne!(print("203.0.113.4").device, print("203.0.113.4").network);
    }
}
