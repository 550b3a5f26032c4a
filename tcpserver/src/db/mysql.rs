//! One worker's MySQL connection.
//!
//! Statements go through the connection's prepared-statement cache (the `mysql`
//! crate keeps one per connection, keyed by SQL text), so each statement is
//! prepared once per connection and then costs one round trip.
//!
//! A pooled connection can die while idle (the server's `wait_timeout`, a
//! restart, a proxy). That is found out on use, and must not fail the user's
//! request, so a statement that fails because its *reused* connection is gone
//! runs once more on a fresh connection: a read is simply repeated, and a
//! transaction is repeated only if the failure came before `COMMIT` was sent,
//! because a transaction whose connection dies before its commit is rolled
//! back by the server: nothing was applied, and running it again cannot apply
//! anything twice. A failure during `COMMIT` leaves the outcome unknown, so it
//! is reported, never retried.
//!
//! One failure is known to have applied nothing wherever it comes, `COMMIT`
//! included: error 1213, the server's "deadlock found; try restarting the
//! transaction". InnoDB gives it to the loser of a lock cycle, and a Galera node
//! gives it when another node committed a conflicting change first: two nodes
//! inserting the same username both succeed locally, and the conflict shows
//! only at `COMMIT`, as a certification failure. The server has rolled the
//! whole transaction back, so the whole transaction runs again (a few times at
//! most, [`MAX_CONFLICT_RETRIES`]); once the other node's row has arrived, the
//! retry sees it (a sign-up then meets the unique key: 1062, name taken).
//!
//! Connections go exactly where the URL says. The `mysql` crate's
//! `prefer_socket` (on by default) would switch a connection to `127.0.0.1` to
//! the server's unix socket after the handshake, which behind a proxy (the
//! fleet's HAProxy, which chooses the Galera node taking writes) is the socket
//! of whichever node answered: it would bypass the proxy and stay on that node
//! after a failover. [`options`] turns it off; a URL with `socket=` still uses
//! that socket.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use mysql::{Conn, Opts, OptsBuilder, Transaction, TxOpts};

use super::{CONNECT_TIMEOUT, IO_TIMEOUT, Reconnecting};
use crate::metrics::Dependency;

/// Prepared statements kept per connection: more than the server uses, so none
/// is ever evicted and re-prepared.
const STATEMENT_CACHE_SIZE: usize = 64;

/// How many times a transaction the server rolled back for a conflict
/// (error 1213) is run again before the error is reported. A conflict between
/// two writers ends as soon as one of them has committed and the other sees
/// its rows, which on a healthy cluster takes well under a millisecond of
/// replication; five retries with `conflict_backoff` between them cover
/// 62 ms, and a transaction that still loses then is answered "unavailable"
/// rather than kept spinning in a worker.
pub const MAX_CONFLICT_RETRIES: u32 = 5;

/// The wait before conflict retry `n` (1-based): 2 ms, doubling. The winner's
/// change must reach this node before the retry can see it, and the losers of
/// one conflict should not all come back at the same instant.
fn conflict_backoff(n: u32) -> Duration {
    Duration::from_millis(2u64 << n.saturating_sub(1).min(8))
}

/// MySQL's "deadlock found when trying to get lock; try restarting the
/// transaction": the server rolled the whole transaction back (see the
/// module documentation).
pub const ER_LOCK_DEADLOCK: u16 = 1213;

/// Galera's "WSREP has not yet prepared node for application use" (the code is
/// MySQL's unknown-command error): the node is not in the primary component,
/// or still joining, and refuses every statement. Its connection is treated as
/// broken, so the next attempt connects again, through the proxy, to a node
/// that serves.
const ER_WSREP_NOT_READY: u16 = 1047;

/// Connection options for a worker: the URL's, with `password` (if any)
/// replacing the URL's password, the timeouts of [`super`], and no switch to
/// a unix socket the URL did not name (`prefer_socket` off; see the module
/// documentation).
///
/// # Errors
///
/// The URL error if `url` does not parse.
pub fn options(url: &str, password: Option<&str>) -> Result<Opts, mysql::UrlError> {
    let mut builder = OptsBuilder::from_opts(Opts::from_url(url)?)
        .prefer_socket(false)
        .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
        .read_timeout(Some(IO_TIMEOUT))
        .write_timeout(Some(IO_TIMEOUT))
        .tcp_nodelay(true)
        .stmt_cache_size(Some(STATEMENT_CACHE_SIZE));
    if let Some(password) = password {
        builder = builder.pass(Some(password));
    }
    Ok(builder.into())
}

/// `opts` for a link that reads and writes only ASCII text (the history
/// drainer's, [`crate::history::drain::Drainer::new`]: its columns are ASCII, its values hex, names from fixed lists
/// and addresses): the connection says so (`SET NAMES ascii`, run again on
/// every reconnect), so MariaDB stores each string as it comes instead of
/// converting it from utf8mb4 character by character, about a twelfth of
/// what its inserts cost the server (perf of mariadbd under fixed log-ins:
/// the conversions were 7 % of its samples).
pub fn ascii_only(opts: Opts) -> Opts {
    OptsBuilder::from_opts(opts).init(vec!["SET NAMES ascii"]).into()
}

/// Whether an error means the connection is unusable (or the server unreachable),
/// as opposed to a statement the server refused.
pub fn is_connection_error(e: &mysql::Error) -> bool {
    match e {
        mysql::Error::IoError(_) | mysql::Error::CodecError(_) | mysql::Error::DriverError(_) => true,
        // Too many connections, shutdown in progress, connection killed, server
        // gone away, lost connection, disconnected by the server for inactivity,
        // a Galera node that is not ready.
        mysql::Error::MySqlError(e) => {
            matches!(e.code, 1040 | 1053 | 1927 | 2006 | 2013 | 4031 | ER_WSREP_NOT_READY)
        }
        _ => false,
    }
}

/// Whether the server rolled the transaction back for a conflict with another
/// (error 1213): nothing was applied, and running it again is safe.
pub fn is_conflict(e: &mysql::Error) -> bool {
    matches!(e, mysql::Error::MySqlError(e) if e.code == ER_LOCK_DEADLOCK)
}

/// Whether running the statement again on a new connection may help: the old
/// connection broke, but not by timing out (a server that is slow to answer would
/// only be given more work).
fn is_retryable(e: &mysql::Error) -> bool {
    let timed_out = matches!(e, mysql::Error::IoError(io)
        if matches!(io.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock));
    is_connection_error(e) && !timed_out
}

/// The error returned while no connection can be made.
fn not_connected() -> mysql::Error {
    mysql::Error::IoError(io::Error::new(io::ErrorKind::NotConnected, "MySQL is unreachable"))
}

/// Where a transaction failed.
enum Stage {
    /// Before `COMMIT` was sent: nothing was applied.
    BeforeCommit,
    /// During `COMMIT`: the outcome is unknown.
    Commit,
}

/// A lazily made, self-repairing MySQL connection.
#[derive(Debug)]
pub struct MysqlLink {
    opts: Opts,
    link: Reconnecting<Conn>,
}

impl MysqlLink {
    /// A link that connects on first use.
    pub fn new(opts: Opts, worker: usize) -> MysqlLink {
        MysqlLink { opts, link: Reconnecting::new("MySQL", worker) }
    }

    /// Connects now, so the first request does not pay for it; a failure is
    /// logged and left for the next use to retry.
    pub fn warm_up(&mut self) {
        let _ = self.conn();
    }

    /// The open connection, making one if needed and allowed by the backoff.
    fn conn(&mut self) -> mysql::Result<&mut Conn> {
        let opts = &self.opts;
        self.link.get(|| Conn::new(opts.clone())).ok_or_else(not_connected)
    }

    /// Forgets a connection that failed, and says whether the caller may retry.
    fn discard_if_broken(&mut self, e: &mysql::Error, reused: bool) -> bool {
        if !is_connection_error(e) {
            return false;
        }
        crate::metrics::DEPENDENCY_ERRORS[Dependency::Mysql as usize].add(1);
        self.link.forget();
        let retry = reused && is_retryable(e);
        if retry {
            crate::log!("worker {}: idle MySQL connection was lost ({e}); reconnecting", self.link.worker);
        }
        retry
    }

    /// Runs a read-only operation, once more on a new connection if the reused
    /// one turns out to be dead.
    ///
    /// # Errors
    ///
    /// The operation's error, or a connectivity error if MySQL cannot be reached.
    pub fn read<T>(&mut self, mut op: impl FnMut(&mut Conn) -> mysql::Result<T>) -> mysql::Result<T> {
        let reused = self.link.is_open();
        crate::metrics::ROUND_TRIPS[Dependency::Mysql as usize].add(1);
        let result = op(self.conn()?);
        match result {
            Err(e) if self.discard_if_broken(&e, reused) => {
                let result = op(self.conn()?);
                if let Err(e) = &result {
                    self.discard_if_broken(e, false);
                }
                result
            }
            other => other,
        }
    }

    /// Runs `body` in a transaction and commits it. If the reused connection
    /// turns out to be dead before the commit was sent, the whole transaction
    /// runs once more on a new connection; if the server rolls it back for a
    /// conflict (error 1213, at any statement or at `COMMIT`), it runs again,
    /// up to [`MAX_CONFLICT_RETRIES`] times (see the module documentation).
    /// `body` must therefore be safe to run more than once.
    ///
    /// # Errors
    ///
    /// The body's error (the transaction is then rolled back), the commit's,
    /// a connectivity error if MySQL cannot be reached, or the conflict if it
    /// outlasted the retries.
    pub fn transaction<T>(
        &mut self,
        mut body: impl FnMut(&mut Transaction<'_>) -> mysql::Result<T>,
    ) -> mysql::Result<T> {
        let Ok(value) = self.transaction_or_abort(|tx| body(tx).map(Ok::<T, Infallible>))?;
        Ok(value)
    }

    /// [`MysqlLink::transaction`] for a body that can also fail for a reason
    /// of its own (a rule it checks midway): `Ok(Err(reason))` from the body
    /// rolls the transaction back and is returned as it is, never retried.
    ///
    /// # Errors
    ///
    /// As [`MysqlLink::transaction`]; the body's own reasons are `Ok(Err(_))`.
    pub fn transaction_or_abort<T, E>(
        &mut self,
        mut body: impl FnMut(&mut Transaction<'_>) -> mysql::Result<Result<T, E>>,
    ) -> mysql::Result<Result<T, E>> {
        let mut retries = 0;
        loop {
            match self.transaction_once(&mut body) {
                Err(e) if is_conflict(&e) && retries < MAX_CONFLICT_RETRIES => {
                    retries += 1;
                    crate::metrics::MYSQL_CONFLICT_RETRIES.add(1);
                    std::thread::sleep(conflict_backoff(retries));
                }
                other => return other,
            }
        }
    }

    /// One run of a transaction, once more on a new connection if the reused
    /// one was dead before the commit was sent.
    fn transaction_once<T, E>(
        &mut self,
        body: &mut impl FnMut(&mut Transaction<'_>) -> mysql::Result<Result<T, E>>,
    ) -> mysql::Result<Result<T, E>> {
        let reused = self.link.is_open();
        crate::metrics::ROUND_TRIPS[Dependency::Mysql as usize].add(1);
        let result = run_transaction(self.conn()?, body);
        match result {
            Ok(value) => Ok(value),
            Err((Stage::BeforeCommit, e)) if self.discard_if_broken(&e, reused) => {
                run_transaction(self.conn()?, body).map_err(|(_, e)| {
                    self.discard_if_broken(&e, false);
                    e
                })
            }
            Err((_, e)) => {
                self.discard_if_broken(&e, false);
                Err(e)
            }
        }
    }
}

fn run_transaction<T, E>(
    conn: &mut Conn,
    body: &mut impl FnMut(&mut Transaction<'_>) -> mysql::Result<Result<T, E>>,
) -> Result<Result<T, E>, (Stage, mysql::Error)> {
    let mut tx = conn.start_transaction(TxOpts::default()).map_err(|e| (Stage::BeforeCommit, e))?;
    // On error `tx` is dropped here, which sends ROLLBACK.
    match body(&mut tx).map_err(|e| (Stage::BeforeCommit, e))? {
        Ok(value) => {
            tx.commit().map_err(|e| (Stage::Commit, e))?;
            Ok(Ok(value))
        }
        Err(reason) => {
            tx.rollback().map_err(|e| (Stage::BeforeCommit, e))?;
            Ok(Err(reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: u16) -> mysql::Error {
        mysql::Error::MySqlError(mysql::error::MySqlError {
            state: "40001".into(),
            message: String::new(),
            code,
        })
    }

    #[test]
    fn only_a_deadlock_or_certification_failure_is_a_conflict() {
        assert!(is_conflict(&server_error(ER_LOCK_DEADLOCK)));
        assert!(!is_conflict(&server_error(crate::db::users::ER_DUP_ENTRY)));
        // A lock wait timeout rolls back only the statement: not a whole-transaction retry.
        assert!(!is_conflict(&server_error(1205)));
        assert!(!is_connection_error(&server_error(ER_LOCK_DEADLOCK)));
    }

    #[test]
    fn a_galera_node_that_is_not_ready_is_a_broken_connection() {
        assert!(is_connection_error(&server_error(ER_WSREP_NOT_READY)));
    }

    #[test]
    fn conflict_retries_back_off_within_a_bound() {
        let waits: Vec<Duration> = (1..=MAX_CONFLICT_RETRIES).map(conflict_backoff).collect();
        assert_eq!(waits.first(), Some(&Duration::from_millis(2)));
        assert!(waits.windows(2).all(|w| w[1] == w[0] * 2));
        assert!(waits.iter().sum::<Duration>() < Duration::from_millis(100));
    }

    #[test]
    fn connections_never_switch_to_a_socket_the_url_did_not_name() {
        let opts = options("mysql://u@127.0.0.1:3310/db", Some("pw")).unwrap();
        assert!(!opts.get_prefer_socket());
        assert_eq!((opts.get_ip_or_hostname().as_ref(), opts.get_tcp_port()), ("127.0.0.1", 3310));
        let opts = options("mysql://u@127.0.0.1:3310/db?prefer_socket=true", None).unwrap();
        assert!(!opts.get_prefer_socket(), "the fleet's proxy must never be bypassed");
    }
}
