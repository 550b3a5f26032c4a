//! What the server measures about itself, in the Prometheus text format.
//!
//! Each metric is a process-wide set of atomics ([`hostsupport::metrics`])
//! that the reactor and the workers add to with relaxed `fetch_add`s (no lock
//! on the hot path); [`render`] reads them all for the metrics listener
//! ([`crate::metrics_http`]), which serves them from a thread of its own so
//! that a scrape never waits on the reactor. Names follow Prometheus
//! conventions: a `usermgmt_` prefix, `_total` for counters, `_seconds` for
//! times; every label value comes from a fixed list (a message type, an
//! operation, an outcome, a dependency), never from a client.

use hostsupport::metrics::{Counter, Gauge, Histogram, LATENCY_BOUNDS, family, sample, seconds};
use proto::{ErrorCode, MessageType};

/// A counter with its name and help, unlabelled.
#[derive(Debug)]
pub struct Named {
    name: &'static str,
    help: &'static str,
    counter: Counter,
}

impl Named {
    const fn new(name: &'static str, help: &'static str) -> Named {
        Named { name, help, counter: Counter::new() }
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.counter.add(n);
    }

    /// The count so far.
    pub fn get(&self) -> u64 {
        self.counter.get()
    }
}

/// Full password hashes computed (PBKDF2 at a stored hash's cost): sign-ups,
/// log-ins the verified cache could not vouch for, unknown usernames.
pub static PASSWORD_HASHES: Named =
    Named::new("usermgmt_password_hashes_total", "Full password hashes computed.");

/// Microseconds spent computing them.
pub static PASSWORD_HASH_MICROS: Counter = Counter::new();

/// Requests refused by a throttle (429) before any work was done for them.
pub static THROTTLED: Named =
    Named::new("usermgmt_throttled_total", "Requests refused by a throttle before any password was hashed.");

/// Sessions opened by a log-in.
pub static SESSIONS_CREATED: Named = Named::new("usermgmt_sessions_created_total", "Sessions opened.");

/// Sessions ended because their account opened more than the cap allows.
pub static SESSIONS_EVICTED: Named = Named::new(
    "usermgmt_sessions_evicted_total",
    "Oldest sessions ended because their account passed the per-account cap.",
);

/// Sessions ended by a log-out.
pub static SESSIONS_LOGGED_OUT: Named =
    Named::new("usermgmt_sessions_logged_out_total", "Sessions ended by a log-out.");

/// Scan-to-log-in waits parked in the reactor right now (set by the reactor
/// once per turn).
pub static QR_WAITS: Gauge = Gauge::new();

/// Log-in records waiting in Redis for the history drainer, as the last
/// round of this process's drainer left them (set once per round; records
/// other tcpservers queued since are not in it until the next).
pub static HISTORY_QUEUED: Gauge = Gauge::new();

/// Rounds of this process's log-in history drainer, counted when each ends
/// (each reads the queues once, and writes to MySQL when it found records):
/// shows the drainer alive while idle, and lets a test tell its Redis round
/// trips from the workers'.
pub static HISTORY_DRAIN_ROUNDS: Named = Named::new(
    "usermgmt_history_drain_rounds_total",
    "Rounds of the log-in history drainer, idle ones included.",
);

/// Scan-to-log-in waits ended early because their client went away
/// (`QrCancel` from httpserver, when the desktop closed its page).
pub static QR_WAITS_CANCELLED: Named = Named::new(
    "usermgmt_qr_waits_cancelled_total",
    "Scan-to-log-in waits ended early because their client went away.",
);

/// Scan-to-log-in codes approved or denied (their waits are answered).
pub static QR_DECISIONS: Named =
    Named::new("usermgmt_qr_decisions_total", "Scan-to-log-in codes approved or denied.");

/// Sign-ups that found their username taken by the account their own
/// idempotency key created (a copy sent again after a lost connection), and
/// were answered as the first copy was.
pub static SIGN_UPS_REPEATED: Named = Named::new(
    "usermgmt_sign_ups_repeated_total",
    "Sign-ups answered from the account an earlier copy of the same request created.",
);

/// Nickname changes that changed no row: the nickname stored was already
/// that one (a copy sent again after a lost connection, or the same name set
/// twice), so no version was bumped.
pub static NICKNAMES_UNCHANGED: Named = Named::new(
    "usermgmt_nickname_changes_unchanged_total",
    "Nickname changes that found that nickname already stored and changed nothing.",
);

/// Log-ins the verified-credentials cache vouched for (no hash).
pub static VERIFIED_HITS: Named =
    Named::new("usermgmt_verified_cache_hits_total", "Log-ins the verified-credentials cache vouched for.");

/// Log-ins it could not (a full hash follows).
pub static VERIFIED_MISSES: Named = Named::new(
    "usermgmt_verified_cache_misses_total",
    "Log-ins the verified-credentials cache could not vouch for.",
);

/// Profiles found in Redis's profile cache.
pub static PROFILE_HITS: Named =
    Named::new("usermgmt_profile_cache_hits_total", "Profiles found in the Redis profile cache.");

/// Profiles not found there (read from MySQL).
pub static PROFILE_MISSES: Named =
    Named::new("usermgmt_profile_cache_misses_total", "Profiles missing from the Redis profile cache.");

/// MySQL transactions run again because the server rolled them back for a
/// conflict (a deadlock, or a Galera certification failure at `COMMIT`).
pub static MYSQL_CONFLICT_RETRIES: Named = Named::new(
    "usermgmt_mysql_conflict_retries_total",
    "MySQL transactions run again after the server rolled them back for a conflict (deadlock, Galera certification).",
);

/// Jobs answered Overloaded because the queue was full.
pub static SHED_FULL: Counter = Counter::new();

/// Jobs answered Overloaded because they waited past the queue's time limit.
pub static SHED_STALE: Counter = Counter::new();

/// Client connections open now.
pub static CONNECTIONS_OPEN: Gauge = Gauge::new();

/// Jobs waiting for a worker now.
pub static QUEUE_DEPTH: Gauge = Gauge::new();

/// How long each job waited for a worker.
pub static QUEUE_WAIT: Histogram = Histogram::new(LATENCY_BOUNDS);

/// Bounds of the batch-size histogram: 1 to [`crate::queue::MAX_BATCH`], the
/// most batchable jobs a worker takes at once (the requests it runs one by
/// one are not counted, so no batch is larger).
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0];

/// Batchable jobs (profile reads, log-ins, nickname changes) a worker ran
/// together; the requests it runs one by one before them are not counted.
pub static BATCH_SIZE: Histogram = Histogram::new(BATCH_BOUNDS);

/// Microseconds workers spent running batches (not waiting for one).
pub static WORKER_BUSY_MICROS: Counter = Counter::new();

/// The dependencies whose round trips, errors and connections are counted.
#[derive(Debug, Clone, Copy)]
pub enum Dependency {
    /// MariaDB.
    Mysql = 0,
    /// Redis.
    Redis = 1,
}

const DEPENDENCIES: [&str; 2] = ["mysql", "redis"];

/// Per dependency: operations sent (a Redis command or pipeline is one round
/// trip; a MySQL read or transaction is one operation of one or more).
pub static ROUND_TRIPS: [Counter; 2] = [const { Counter::new() }; 2];

/// Per dependency: operations that failed for the connection's sake.
pub static DEPENDENCY_ERRORS: [Counter; 2] = [const { Counter::new() }; 2];

/// Per dependency: connections made (the first one of each worker included).
pub static CONNECTS: [Counter; 2] = [const { Counter::new() }; 2];

impl Dependency {
    /// The dependency of a [`crate::db`] link's name (`MySQL` or `Redis`).
    pub fn of(name: &str) -> Dependency {
        if name == "MySQL" { Dependency::Mysql } else { Dependency::Redis }
    }
}

/// Frames decoded, by their type byte (every byte, so none is ever unlabelled).
pub static FRAMES: [Counter; 256] = [const { Counter::new() }; 256];

/// The operations whose latency is measured, in label order: one per request
/// type a worker runs (the log's `operation` too, [`crate::dispatch::operation_label`]);
/// any other type (none reaches a worker today) is `other`, the last.
pub const OPERATIONS: [&str; 19] = [
    "sign_up",
    "log_in",
    "log_out",
    "get_profile",
    "update_nickname",
    "set_avatar",
    "check_ready",
    "list_sessions",
    "revoke_session",
    "revoke_other_sessions",
    "login_history",
    "change_password",
    "delete_account",
    "qr_create",
    "qr_wait",
    "qr_scan",
    "qr_decide",
    "get_avatar",
    "other",
];

/// How an operation ended: `ok`; `rejected` (the client's doing: bad input,
/// wrong password, throttled, no session); `failed` (the server's: a
/// dependency down, overloaded, an internal error).
const OUTCOMES: [&str; 3] = ["ok", "rejected", "failed"];

/// Per operation and outcome: time from the worker taking the job to its
/// reply (for `qr_wait`, each check of the code: a parked wait's time in the
/// reactor is not a worker's).
pub static OPERATION_LATENCY: [[Histogram; OUTCOMES.len()]; OPERATIONS.len()] =
    [const { [const { Histogram::new(LATENCY_BOUNDS) }; OUTCOMES.len()] }; OPERATIONS.len()];

/// Per error code (by its number, at most 63): error replies sent.
pub static ERRORS: [Counter; 64] = [const { Counter::new() }; 64];

/// The label index of a request type in [`OPERATIONS`].
pub fn operation_index(kind: MessageType) -> usize {
    match kind {
        MessageType::SignUp => 0,
        MessageType::Login => 1,
        MessageType::Logout => 2,
        MessageType::GetProfile => 3,
        MessageType::UpdateNickname => 4,
        MessageType::SetAvatar => 5,
        MessageType::CheckReady => 6,
        MessageType::ListSessions => 7,
        MessageType::RevokeSession => 8,
        MessageType::RevokeOtherSessions => 9,
        MessageType::LoginHistory => 10,
        MessageType::ChangePassword => 11,
        MessageType::DeleteAccount => 12,
        MessageType::QrCreate => 13,
        MessageType::QrWait => 14,
        MessageType::QrScan => 15,
        MessageType::QrDecide => 16,
        MessageType::GetAvatar => 17,
        _ => OPERATIONS.len() - 1,
    }
}

/// The outcome index of an error code (see `OUTCOMES`).
pub fn outcome_index(error: Option<ErrorCode>) -> usize {
    match error {
        None => 0,
        Some(
            ErrorCode::Overloaded
            | ErrorCode::Unavailable
            | ErrorCode::Internal
            | ErrorCode::InsufficientStorage,
        ) => 2,
        Some(_) => 1,
    }
}

/// Counts an error reply.
pub fn count_error(code: ErrorCode) {
    if let Some(counter) = ERRORS.get(code as usize) {
        counter.add(1);
    }
}

/// All metrics in the Prometheus text exposition format (version 0.0.4).
pub fn render() -> String {
    let mut out = String::with_capacity(32 * 1024);
    for named in [
        &PASSWORD_HASHES,
        &THROTTLED,
        &SESSIONS_CREATED,
        &SESSIONS_EVICTED,
        &SESSIONS_LOGGED_OUT,
        &VERIFIED_HITS,
        &VERIFIED_MISSES,
        &MYSQL_CONFLICT_RETRIES,
        &PROFILE_HITS,
        &PROFILE_MISSES,
        &QR_DECISIONS,
        &QR_WAITS_CANCELLED,
        &HISTORY_DRAIN_ROUNDS,
        &SIGN_UPS_REPEATED,
        &NICKNAMES_UNCHANGED,
    ] {
        family(&mut out, named.name, "counter", named.help);
        sample(&mut out, named.name, "", named.get());
    }
    let name = "usermgmt_password_hash_seconds_total";
    family(&mut out, name, "counter", "Time spent computing full password hashes.");
    sample(&mut out, name, "", seconds(PASSWORD_HASH_MICROS.get()));
    let name = "usermgmt_connections_open";
    family(&mut out, name, "gauge", "RPC client connections open.");
    sample(&mut out, name, "", CONNECTIONS_OPEN.get());
    let name = "usermgmt_frames_received_total";
    family(&mut out, name, "counter", "Frames decoded, by message type.");
    for (byte, counter) in FRAMES.iter().enumerate() {
        if let Some(kind) = u8::try_from(byte).ok().and_then(MessageType::from_u8) {
            sample(&mut out, name, &format!("type=\"{kind:?}\""), counter.get());
        }
    }
    let name = "usermgmt_qr_waits";
    family(&mut out, name, "gauge", "Scan-to-log-in waits parked in the reactor.");
    sample(&mut out, name, "", QR_WAITS.get());
    let name = "usermgmt_history_queued";
    family(
        &mut out,
        name,
        "gauge",
        "Log-in records waiting in Redis for the history drainer, after its last round.",
    );
    sample(&mut out, name, "", HISTORY_QUEUED.get());
    let name = "usermgmt_queue_depth";
    family(&mut out, name, "gauge", "Jobs waiting for a worker.");
    sample(&mut out, name, "", QUEUE_DEPTH.get());
    let name = "usermgmt_queue_wait_seconds";
    family(&mut out, name, "histogram", "How long jobs waited for a worker.");
    QUEUE_WAIT.render(&mut out, name, "");
    let name = "usermgmt_batch_size";
    family(&mut out, name, "histogram", "Batchable jobs a worker ran together.");
    BATCH_SIZE.render(&mut out, name, "");
    let name = "usermgmt_worker_busy_seconds_total";
    family(&mut out, name, "counter", "Time workers spent running jobs, all workers together.");
    sample(&mut out, name, "", seconds(WORKER_BUSY_MICROS.get()));
    let name = "usermgmt_shed_jobs_total";
    family(&mut out, name, "counter", "Jobs answered Overloaded instead of run.");
    sample(&mut out, name, "reason=\"queue_full\"", SHED_FULL.get());
    sample(&mut out, name, "reason=\"waited_too_long\"", SHED_STALE.get());
    let name = "usermgmt_operation_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from a worker taking a job to its reply, by operation and outcome.",
    );
    for (op, by_outcome) in OPERATIONS.iter().zip(&OPERATION_LATENCY) {
        for (outcome, histogram) in OUTCOMES.iter().zip(by_outcome) {
            histogram.render(&mut out, name, &format!("operation=\"{op}\",outcome=\"{outcome}\""));
        }
    }
    let name = "usermgmt_errors_total";
    family(&mut out, name, "counter", "Error replies sent, by error code.");
    for code in ErrorCode::ALL {
        let count = ERRORS.get(code as usize).map_or(0, Counter::get);
        sample(&mut out, name, &format!("code=\"{}\",name=\"{code:?}\"", code as u16), count);
    }
    for (name, help, counters) in [
        (
            "usermgmt_dependency_round_trips_total",
            "Operations sent to a dependency (a Redis command or pipeline, a MySQL read or transaction).",
            &ROUND_TRIPS,
        ),
        (
            "usermgmt_dependency_errors_total",
            "Operations that failed because the dependency's connection did.",
            &DEPENDENCY_ERRORS,
        ),
        (
            "usermgmt_dependency_connects_total",
            "Connections made to a dependency, first ones and reconnections.",
            &CONNECTS,
        ),
    ] {
        family(&mut out, name, "counter", help);
        for (dep, counter) in DEPENDENCIES.iter().zip(counters) {
            sample(&mut out, name, &format!("dependency=\"{dep}\""), counter.get());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_rendered_with_its_type() {
        PASSWORD_HASHES.add(2);
        OPERATION_LATENCY[1][0].observe(0.003);
        let text = render();
        for family in [
            "usermgmt_password_hashes_total counter",
            "usermgmt_queue_wait_seconds histogram",
            "usermgmt_connections_open gauge",
        ] {
            assert!(text.contains(&format!("# TYPE {family}\n")), "{text}");
        }
        let line = text.lines().find(|l| l.starts_with("usermgmt_password_hashes_total ")).unwrap();
        assert!(line.rsplit(' ').next().unwrap().parse::<u64>().unwrap() >= 2);
        assert!(
            text.contains("usermgmt_operation_duration_seconds_count{operation=\"log_in\",outcome=\"ok\"} ")
        );
        assert!(text.contains("usermgmt_frames_received_total{type=\"Login\"} "));
    }

    #[test]
    fn every_request_a_worker_runs_has_an_operation_label_of_its_own() {
        let mut seen = std::collections::HashSet::new();
        for byte in 0..=u8::MAX {
            let Some(kind) = MessageType::from_u8(byte) else { continue };
            // Ping and QrCancel are answered by the reactor, and the
            // handshake's proof comes before any work.
            if !kind.is_request()
                || kind.is_handshake()
                || matches!(kind, MessageType::Ping | MessageType::QrCancel)
            {
                continue;
            }
            let label = OPERATIONS[operation_index(kind)];
            assert_ne!(label, "other", "{kind:?} has no label");
            assert!(seen.insert(label), "{kind:?} shares the label {label}");
        }
        for kind in [MessageType::ChangePassword, MessageType::QrDecide, MessageType::CheckReady] {
            OPERATION_LATENCY[operation_index(kind)][0].observe(0.001);
        }
        let text = render();
        for op in ["change_password", "qr_decide", "check_ready", "list_sessions", "qr_wait"] {
            assert!(
                text.contains(&format!(
                    "usermgmt_operation_duration_seconds_count{{operation=\"{op}\",outcome=\"ok\"}} "
                )),
                "{op}"
            );
        }
    }
}
