//! Throttling of log-ins, sign-ups and uploads, with counters in Redis.
//!
//! A failure counter (and the sign-up and upload counters) is a Redis sorted
//! set with one member per attempt and a TTL equal to its window, started by
//! the first attempt (a fixed window). A member per attempt rather than `INCR`
//! makes counting idempotent (a command sent again over a new connection adds
//! the same member twice and counts it once) and lets an attempt leave its
//! counter again. Successful log-ins are counted by a plain `INCR`
//! ([`crate::login_counters`]): nothing ever leaves that count, and at a busy
//! address it stays one number, not one member per log-in; the log-ins in
//! flight hold their places under that limit in a small set of their own.
//!
//! **Counted before the work, so the limits hold under concurrency.** An
//! attempt is admitted by a Lua script that checks its counters and adds it
//! to them in one atomic step, *before* its password is hashed (for a log-in
//! the lookup does this, [`crate::login_record::lookup`] and
//! [`crate::login_counters`]; `ADMIT` for the others): with five guesses
//! allowed, five concurrent guesses are admitted and the sixth is refused
//! without costing a hash, however many arrive at the same moment and however
//! the workers (and tcpservers) batch them. (Reading the counts, hashing, then
//! counting would judge every guess in flight against the count from before
//! any of them failed.)
//!
//! **One script per hash slot.** Counters of one account share a slot, and
//! counters of one client address share another ([`crate::keys`]); a check
//! over both is one script per slot in the same pipeline (one round trip on a
//! single Redis as on a cluster), each all-or-nothing in its slot. When one
//! slot refuses while the other admitted, the other's place is given back
//! ([`admit`], [`release`]). Meanwhile that place may refuse another attempt:
//! more refusals, never more admissions.
//!
//! A failed-log-in counter therefore counts attempts not known to have
//! succeeded: an admitted attempt holds its place in flight (a negative
//! score, minus the time it was admitted, ms); when it fails, its score
//! becomes the time it failed, in microseconds ([`mark_failed`]); when it
//! succeeds, it leaves the counter, and a user's success also removes the
//! failures that *ended before that log-in began* (a person who mistypes and
//! then gets it right starts afresh), never those still in flight or recorded
//! beside it, so a success in a batch of guesses does not reset them. An
//! attempt that could not be checked (MySQL down) leaves too ([`release`]).
//! A place still in flight after [`IN_FLIGHT_MAX_MS`] was left behind (a
//! batch that failed halfway on a cluster, a tcpserver killed mid-batch) and
//! is purged by the next check. Attempts counted whatever their outcome
//! (sign-ups, picture uploads, QR codes made and decided) never hold a place
//! in flight: they are counted at once for the whole window ([`Hold`]).
//!
//! While a counter is at its limit, a request is refused before anything else
//! is done, with the time left on the window as `retry_after_secs`. Counters
//! are per username and per client address, so an attack on one account never
//! slows another user's log-in.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use crate::db::redis::{Batch, LuaScript, RedisLink};
use crate::error::Error;

/// A limit: at most `max_attempts` within `window_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Attempts allowed per window.
    pub max_attempts: u64,
    /// Window length in seconds.
    pub window_secs: u64,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.max_attempts, self.window_secs)
    }
}

/// Why a `<attempts>/<seconds>` setting does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLimit;

impl FromStr for Limit {
    type Err = BadLimit;

    /// `<attempts>/<seconds>`, both positive: `5/300` is five per five minutes.
    fn from_str(s: &str) -> Result<Limit, BadLimit> {
        let (max, window) = s.split_once('/').ok_or(BadLimit)?;
        let max_attempts: u64 = max.trim().parse().map_err(|_| BadLimit)?;
        let window_secs: u64 = window.trim().parse().map_err(|_| BadLimit)?;
        if max_attempts == 0 || window_secs == 0 {
            return Err(BadLimit);
        }
        Ok(Limit { max_attempts, window_secs })
    }
}

/// Failed log-ins per username: five guesses per five minutes makes online
/// guessing hopeless while a person who mistypes is held up for minutes at worst.
pub const LOGIN_FAILURES_PER_USER: Limit = Limit { max_attempts: 5, window_secs: 5 * 60 };

/// Failed log-ins per client address: higher than per user, because many people
/// can share an address (an office, a carrier NAT), but it stops one machine
/// from trying one password against many accounts.
pub const LOGIN_FAILURES_PER_ADDR: Limit = Limit { max_attempts: 50, window_secs: 5 * 60 };

/// Successful log-ins per account: every log-in opens a session that Redis
/// keeps for up to a day, so an account logging in in a loop (its password
/// known, as the demo accounts' are) would fill Redis. Thirty in ten minutes
/// is more than any person signing in on their devices needs.
pub const LOGINS_PER_USER: Limit = Limit { max_attempts: 30, window_secs: 10 * 60 };

/// Successful log-ins per client address: a busy office or a carrier NAT logs
/// many people in, so this is twenty times the per-account figure (one a
/// second on average); it bounds the sessions one machine can create across
/// many accounts whose passwords it has.
pub const LOGINS_PER_ADDR: Limit = Limit { max_attempts: 600, window_secs: 10 * 60 };

/// Sign-up attempts per client address: a household signs up a few accounts; a
/// script signing up thousands is slowed to 20 per 10 minutes.
pub const SIGNUPS_PER_ADDR: Limit = Limit { max_attempts: 20, window_secs: 10 * 60 };

/// Pictures accepted per account: ten an hour. A person choosing a picture
/// tries a few (a crop, another photo) and then keeps one for months, so ten
/// never stand in their way; a script re-uploading a 2 MiB picture with one
/// byte changed is held to 20 MiB of MariaDB writes (and, on a Galera
/// cluster, of replication to every node) and hashing an hour per account
/// instead of as fast as the database goes. (Replaced pictures are deleted in
/// the same transaction, so what an account keeps stored is one picture: the
/// store holds at most one 2 MiB picture per account.)
pub const AVATAR_UPLOADS_PER_USER: Limit = Limit { max_attempts: 10, window_secs: 60 * 60 };

/// Scan-to-log-in codes made per client address: sixty in ten minutes. A
/// desktop's log-in page makes one when it opens and one each time a code
/// expires (every two minutes), so a few people on one network behind one
/// address stay far below it, while one address cannot fill Redis with codes.
pub const QR_CODES_PER_ADDR: Limit = Limit { max_attempts: 60, window_secs: 10 * 60 };

/// The limits a server applies; each one is a setting (`--login-failures-per-user`
/// and so on), defaulting to the constants above. A benchmark that sends
/// thousands of log-ins a second from one address raises them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Failed log-ins per username.
    pub failures_per_user: Limit,
    /// Failed log-ins per client address.
    pub failures_per_addr: Limit,
    /// Successful log-ins per account.
    pub logins_per_user: Limit,
    /// Successful log-ins per client address.
    pub logins_per_addr: Limit,
    /// Sign-up attempts per client address.
    pub signups_per_addr: Limit,
    /// Scan-to-log-in codes made per client address.
    pub qr_codes_per_addr: Limit,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            failures_per_user: LOGIN_FAILURES_PER_USER,
            failures_per_addr: LOGIN_FAILURES_PER_ADDR,
            logins_per_user: LOGINS_PER_USER,
            logins_per_addr: LOGINS_PER_ADDR,
            signups_per_addr: SIGNUPS_PER_ADDR,
            qr_codes_per_addr: QR_CODES_PER_ADDR,
        }
    }
}

/// How long an attempt may hold an in-flight place (a failure counter's
/// member not yet marked, or a place under a success limit) before the place
/// is taken to have been left behind and is purged: by a batch that failed
/// halfway on a cluster, or a tcpserver killed mid-batch. No log-in stays
/// in flight this long (a batch waits at most two seconds in the queue, and
/// each of its Redis and MySQL steps gives up after a few seconds), so a
/// purge never frees a place still in use, and a place left behind costs
/// its account or address one attempt for a minute, not for a whole window.
pub const IN_FLIGHT_MAX_MS: u64 = 60_000;

/// KEYS = counters (of one hash slot); ARGV = member, now (ms), the score
/// to record it with, then a limit and a window per counter. Purges
/// in-flight places older than [`IN_FLIGHT_MAX_MS`], then adds the member to
/// every counter (with the score of its [`Hold`]), unless one of them is at
/// its limit: all or nothing, so a refused attempt holds no place anywhere.
/// Returns 0 when admitted (also when the member is already in: a resent
/// command), else the seconds until the longest window ends.
const ADMIT: &str = r"#!lua
local now = tonumber(ARGV[2])
local stale = '(' .. (IN_FLIGHT_MAX - now)
local wait = 0
for i = 1, #KEYS do
  local limit, window = tonumber(ARGV[2 * i + 2]), tonumber(ARGV[2 * i + 3])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], stale, '(0')
  if not redis.call('ZSCORE', KEYS[i], ARGV[1]) and redis.call('ZCARD', KEYS[i]) >= limit then
    local ttl = redis.call('TTL', KEYS[i])
    if ttl < 1 then
      ttl = window
    end
    wait = math.max(wait, ttl)
  end
end
if wait > 0 then
  return wait
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'NX', ARGV[3], ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[2 * i + 3], 'NX')
end
return 0
";

/// `ADMIT`, sent by its SHA-1 once Redis has it.
pub static ADMIT_SCRIPT: LazyLock<LuaScript> = LazyLock::new(|| LuaScript::new(in_flight_script(ADMIT)));

/// A script's source with [`IN_FLIGHT_MAX_MS`] written in (Lua has no
/// constants shared with Rust; the value is part of the script's hash, so a
/// build with another value loads its own script).
pub(crate) fn in_flight_script(source: &str) -> &'static str {
    Box::leak(source.replace("IN_FLIGHT_MAX", &IN_FLIGHT_MAX_MS.to_string()).into_boxed_str())
}

/// One attempt's identity in its counters: random, so that two attempts never
/// share a member, and the same for every counter the attempt is counted in.
pub fn new_member() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `counters` grouped by hash slot, in their order of first appearance: each
/// group can be admitted by one script (on a single Redis too: one code path).
fn by_slot(counters: &[(String, Limit)]) -> Vec<Vec<&(String, Limit)>> {
    let mut groups: Vec<(u16, Vec<&(String, Limit)>)> = Vec::new();
    for counter in counters {
        let slot = crate::db::slot::slot(counter.0.as_bytes());
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, group)) => group.push(counter),
            None => groups.push((slot, vec![counter])),
        }
    }
    groups.into_iter().map(|(_, group)| group).collect()
}

/// How an admitted attempt holds its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Until its outcome is known ([`mark_failed`] or [`release`]): a log-in,
    /// or a check of the current password. Purged if left behind past
    /// [`IN_FLIGHT_MAX_MS`].
    InFlight,
    /// Counted at once for the whole window, whatever the outcome: a sign-up,
    /// a picture upload, a QR code made or decided. (Held in flight, such a
    /// place would be purged after a minute, and the limit would be per
    /// minute instead of per window.)
    Counted,
}

impl Hold {
    /// The member's score: negative (minus the time admitted, ms) in
    /// flight, the time admitted in µs once counted, as a failure's is.
    fn score(self, now_ms: u64) -> i64 {
        let now_ms = i64::try_from(now_ms).unwrap_or(i64::MAX);
        match self {
            Hold::InFlight => -now_ms,
            Hold::Counted => now_ms.saturating_mul(1000),
        }
    }
}

/// Adds the admission of `member` on `counters` to a batch: one `ADMIT`
/// per hash slot among them, each with one reply; returns how many. The
/// attempt is admitted if every reply admits it ([`admitted`]); one slot's
/// place taken while another refused is given back by [`release`].
pub fn admit_cmds(batch: &mut Batch, counters: &[(String, Limit)], member: &str, hold: Hold) -> usize {
    let groups = by_slot(counters);
    let now_ms = crate::session::unix_now_ms();
    for group in &groups {
        let command = batch.script(&ADMIT_SCRIPT).arg(group.len());
        for (key, _) in group {
            command.arg(key);
        }
        command.arg(member).arg(now_ms).arg(hold.score(now_ms));
        for (_, limit) in group {
            command.arg(limit.max_attempts).arg(limit.window_secs);
        }
    }
    groups.len()
}

/// The verdict on one attempt from its `ADMIT` replies (one per slot).
///
/// # Errors
///
/// [`Error::TooManyAttempts`] if a counter refused it, with the longest wait.
pub fn admitted(replies: &[i64]) -> Result<(), Error> {
    let wait = replies.iter().copied().max().unwrap_or(0);
    if wait > 0 {
        crate::metrics::THROTTLED.add(1);
        return Err(Error::TooManyAttempts { retry_after_secs: u32::try_from(wait).unwrap_or(u32::MAX) });
    }
    Ok(())
}

/// Counts one attempt on every counter unless one of them is at its limit:
/// atomically within each hash slot, and with the places taken in the other
/// slots given back (one more round trip, only then) when one refuses.
///
/// # Errors
///
/// [`Error::TooManyAttempts`] past a limit, or [`Error::Unavailable`] if Redis
/// is down.
pub fn admit(redis: &mut RedisLink, counters: &[(String, Limit)]) -> Result<(), Error> {
    admit_as(redis, counters, &new_member())
}

/// [`admit`] for an attempt that names itself (`member`): a copy of the same
/// request sent again, which names itself the same (a sign-up by its
/// idempotency key), finds its place taken by itself and is admitted, so one
/// request is counted once, and never refused for its own first copy.
/// Meant for counters of one hash slot, as a sign-up's one per-address
/// counter is: with several, a copy refused in one slot would give back, in
/// the others, the place its first copy holds there.
///
/// # Errors
///
/// As [`admit`].
pub fn admit_as(redis: &mut RedisLink, counters: &[(String, Limit)], member: &str) -> Result<(), Error> {
    if counters.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::new();
    admit_cmds(&mut batch, counters, member, Hold::Counted);
    let replies: Vec<i64> = redis.run(&batch)?;
    let verdict = admitted(&replies);
    if verdict.is_err() && replies.contains(&0) {
        let mut undo = Batch::new();
        release(&mut undo, counters, member);
        redis.run::<()>(&undo)?;
    }
    verdict
}

/// Adds the commands that record an admitted attempt as failed at `now_us`
/// (microseconds since the epoch) to a batch (`XX`: a counter whose
/// window ended meanwhile is not revived, and one the attempt holds no
/// place in is left alone).
pub fn mark_failed(batch: &mut Batch, counters: &[(String, Limit)], member: &str, now_us: u64) {
    for (key, _) in counters {
        batch.cmd("ZADD").arg(key).arg("XX").arg(now_us).arg(member).ignore();
    }
}

/// Adds the commands that take an attempt out of its counters again (it
/// succeeded, could not be checked, or was refused in another slot) to a
/// batch; harmless where it holds no place.
pub fn release(batch: &mut Batch, counters: &[(String, Limit)], member: &str) {
    for (key, _) in counters {
        batch.cmd("ZREM").arg(key).arg(member).ignore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_attempts_per_seconds() {
        assert_eq!("5/300".parse(), Ok(Limit { max_attempts: 5, window_secs: 300 }));
        assert_eq!(LOGINS_PER_ADDR.to_string().parse(), Ok(LOGINS_PER_ADDR));
        for bad in ["", "5", "5/", "/300", "0/300", "5/0", "-1/300", "five/300"] {
            assert_eq!(bad.parse::<Limit>(), Err(BadLimit), "{bad}");
        }
    }

    #[test]
    fn counters_are_admitted_one_script_per_slot() {
        let keys = crate::keys::Keys::new("t:");
        let addr: std::net::IpAddr = "192.0.2.7".parse().unwrap();
        let counters = [
            (keys.login_failures_by_user("ann"), LOGIN_FAILURES_PER_USER),
            (keys.login_failures_by_addr(addr), LOGIN_FAILURES_PER_ADDR),
            (keys.logins_by_user("ann"), LOGINS_PER_USER),
        ];
        let groups = by_slot(&counters);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        let mut batch = Batch::new();
        assert_eq!(admit_cmds(&mut batch, &counters, "m", Hold::InFlight), 2);
    }

    #[test]
    fn scripts_know_how_long_a_place_may_stay_in_flight() {
        assert!(ADMIT_SCRIPT.code().contains(&IN_FLIGHT_MAX_MS.to_string()));
        assert!(!ADMIT_SCRIPT.code().contains("IN_FLIGHT_MAX"));
    }

    #[test]
    fn a_refused_attempt_waits_for_the_window_admission_does_not() {
        assert!(admitted(&[0, 0]).is_ok());
        assert!(matches!(admitted(&[0, 17, 3]), Err(Error::TooManyAttempts { retry_after_secs: 17 })));
    }
}
