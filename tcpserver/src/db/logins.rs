//! The SQL of the log-in history (`logins`) and of the devices each account
//! has used (`known_devices`). Multi-row statements are built from `?`
//! placeholders only; every value is bound.

use std::collections::HashMap;

use mysql::prelude::Queryable;
use mysql::{Params, Value};

use proto::LoginEntry;

/// Rows one INSERT of the drainer writes at most: 200 rows of about 200
/// bytes are a 40 KB statement (far below `max_allowed_packet`) with 2,200
/// placeholders (below the 65,535 a prepared statement may have), and one
/// such statement a second already outruns the log-ins two cores can serve.
pub const MAX_ROWS_PER_INSERT: usize = 200;

/// Rows one pruning DELETE removes at most: short enough that the locks it
/// takes never stall the drainer's inserts for long.
pub const PRUNE_BATCH: u64 = 5_000;

/// A history row to insert, borrowing its text from the record it was
/// decoded from (a round's rows are built and sent at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRow<'a> {
    /// Unique attempt id (hex): a second insert of the same attempt is ignored.
    pub attempt_id: &'a str,
    /// `users.id`.
    pub user_id: u64,
    /// ms since the epoch.
    pub time_ms: u64,
    /// Client address text.
    pub ip: &'a str,
    /// Browser name.
    pub browser: &'a str,
    /// OS name.
    pub os: &'a str,
    /// "password", ...
    pub method: &'static str,
    /// "success", ...
    pub outcome: &'static str,
    /// New browser/OS/network for the account.
    pub new_device: bool,
    /// New network after several failures.
    pub suspicious: bool,
    /// Public id of the session opened ("" for failures).
    pub session: &'a str,
}

/// The ids of the accounts named (a name with no account has no entry).
///
/// # Errors
///
/// The MySQL error.
pub fn user_ids(q: &mut impl Queryable, usernames: &[&str]) -> mysql::Result<HashMap<String, u64>> {
    let mut found = HashMap::new();
    for chunk in usernames.chunks(MAX_ROWS_PER_INSERT) {
        let sql = format!("SELECT username, id FROM users WHERE username IN ({})", marks(chunk.len()));
        let rows: Vec<(String, u64)> = q.exec(sql, chunk.to_vec())?;
        found.extend(rows);
    }
    Ok(found)
}

/// The fingerprints among `wanted` that their accounts used at or after
/// `since_ms`, each with the last time the table holds.
///
/// # Errors
///
/// The MySQL error.
pub fn known(
    q: &mut impl Queryable,
    wanted: &[(u64, [u8; 16])],
    since_ms: u64,
) -> mysql::Result<HashMap<(u64, [u8; 16]), u64>> {
    let mut found = HashMap::new();
    for chunk in wanted.chunks(MAX_ROWS_PER_INSERT) {
        let pairs = vec!["(?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT user_id, fingerprint, last_seen_ms FROM known_devices \
             WHERE (user_id, fingerprint) IN ({pairs}) AND last_seen_ms >= ?"
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 2 + 1);
        for (user, fp) in chunk {
            values.push(Value::from(*user));
            values.push(Value::from(fp.to_vec()));
        }
        values.push(Value::from(since_ms));
        let rows: Vec<(u64, Vec<u8>, u64)> = q.exec(sql, Params::Positional(values))?;
        for (user, fp, seen) in rows {
            if let Ok(fp) = <[u8; 16]>::try_from(fp.as_slice()) {
                found.insert((user, fp), seen);
            }
        }
    }
    Ok(found)
}

/// Failed attempts one round's suspicion check reads at most, per statement:
/// the failed-log-in throttle lets few through per account, but throttled
/// attempts are recorded too, and this bounds what a flood of them costs.
pub const MAX_FAILURES_READ: usize = 10_000;

/// The times of the failed attempts of each of `users` at or after
/// `from_ms`, at most [`MAX_FAILURES_READ`] per statement of
/// [`MAX_ROWS_PER_INSERT`] users.
///
/// # Errors
///
/// The MySQL error.
pub fn failures_since(
    q: &mut impl Queryable,
    users: &[u64],
    from_ms: u64,
) -> mysql::Result<HashMap<u64, Vec<u64>>> {
    let mut found: HashMap<u64, Vec<u64>> = HashMap::new();
    for chunk in users.chunks(MAX_ROWS_PER_INSERT) {
        let sql = format!(
            "SELECT user_id, time_ms FROM logins WHERE user_id IN ({}) AND time_ms >= ? \
             AND outcome <> 'success' LIMIT {MAX_FAILURES_READ}",
            marks(chunk.len())
        );
        let mut values: Vec<Value> = chunk.iter().map(|u| Value::from(*u)).collect();
        values.push(Value::from(from_ms));
        let rows: Vec<(u64, u64)> = q.exec(sql, Params::Positional(values))?;
        for (user, at) in rows {
            found.entry(user).or_default().push(at);
        }
    }
    Ok(found)
}

/// Inserts history rows, ignoring any whose attempt id is there already (a
/// drain repeated after a crash) or whose account is gone (deleted meanwhile).
///
/// # Errors
///
/// The MySQL error.
pub fn insert(q: &mut impl Queryable, rows: &[NewRow<'_>]) -> mysql::Result<()> {
    for chunk in rows.chunks(MAX_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT IGNORE INTO logins (attempt_id, user_id, time_ms, ip, browser, os, method, outcome, \
             new_device, suspicious, session_id) VALUES {}",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 11);
        for r in chunk {
            values.extend([
                Value::from(r.attempt_id),
                Value::from(r.user_id),
                Value::from(r.time_ms),
                Value::from(r.ip),
                Value::from(r.browser),
                Value::from(r.os),
                Value::from(r.method),
                Value::from(r.outcome),
                Value::from(r.new_device),
                Value::from(r.suspicious),
                Value::from(r.session),
            ]);
        }
        q.exec_drop(sql, Params::Positional(values))?;
    }
    Ok(())
}

/// Records that each account used each fingerprint at the given time.
///
/// # Errors
///
/// The MySQL error.
pub fn remember(q: &mut impl Queryable, seen: &[(u64, [u8; 16], u64)]) -> mysql::Result<()> {
    for chunk in seen.chunks(MAX_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT IGNORE INTO known_devices (user_id, fingerprint, last_seen_ms) VALUES {} \
             ON DUPLICATE KEY UPDATE last_seen_ms = GREATEST(last_seen_ms, VALUES(last_seen_ms))",
            vec!["(?, ?, ?)"; chunk.len()].join(", ")
        );
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
        for (user, fp, at) in chunk {
            values.extend([Value::from(*user), Value::from(fp.to_vec()), Value::from(*at)]);
        }
        q.exec_drop(sql, Params::Positional(values))?;
    }
    Ok(())
}

/// The account's newest `limit` attempts, newest first.
///
/// # Errors
///
/// The MySQL error.
pub fn latest(q: &mut impl Queryable, user: u64, limit: usize) -> mysql::Result<Vec<LoginEntry>> {
    type Row = (u64, String, String, String, String, String, bool, bool, String);
    let rows: Vec<Row> = q.exec(
        "SELECT time_ms, ip, browser, os, method, outcome, new_device, suspicious, session_id \
         FROM logins WHERE user_id = ? ORDER BY time_ms DESC, attempt_id DESC LIMIT ?",
        (user, limit as u64),
    )?;
    Ok(rows
        .into_iter()
        .map(|(time_ms, ip, browser, os, method, outcome, new_device, suspicious, session)| LoginEntry {
            time: time_ms / 1000,
            ip,
            browser,
            os,
            method,
            outcome,
            new_device,
            suspicious,
            session,
        })
        .collect())
}

/// Deletes up to [`PRUNE_BATCH`] history rows and device fingerprints older
/// than `before_ms`; returns how many rows went.
///
/// # Errors
///
/// The MySQL error.
pub fn prune(q: &mut mysql::Conn, before_ms: u64) -> mysql::Result<u64> {
    // The key leads with the time (`attempt_id_floor`): a range of it.
    q.exec_drop(
        format!("DELETE FROM logins WHERE attempt_id < ? ORDER BY attempt_id LIMIT {PRUNE_BATCH}"),
        (crate::history::record::attempt_id_floor(before_ms),),
    )?;
    let logins = q.affected_rows();
    q.exec_drop(
        format!("DELETE FROM known_devices WHERE last_seen_ms < ? LIMIT {PRUNE_BATCH}"),
        (before_ms,),
    )?;
    Ok(logins + q.affected_rows())
}

fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}
