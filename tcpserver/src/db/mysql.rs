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

use std::convert::Infallible;
use std::io;

use mysql::{Conn, Opts, OptsBuilder, Transaction, TxOpts};

use super::{CONNECT_TIMEOUT, IO_TIMEOUT, Reconnecting};
use crate::metrics::Dependency;

/// Prepared statements kept per connection: more than the server uses, so none
/// is ever evicted and re-prepared.
const STATEMENT_CACHE_SIZE: usize = 64;

/// Connection options for a worker: the URL's, with `password` (if any)
/// replacing the URL's password, and the timeouts of [`super`].
///
/// # Errors
///
/// The URL error if `url` does not parse.
pub fn options(url: &str, password: Option<&str>) -> Result<Opts, mysql::UrlError> {
    let mut builder = OptsBuilder::from_opts(Opts::from_url(url)?)
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

/// Whether an error means the connection is unusable (or the server unreachable),
/// as opposed to a statement the server refused.
pub fn is_connection_error(e: &mysql::Error) -> bool {
    match e {
        mysql::Error::IoError(_) | mysql::Error::CodecError(_) | mysql::Error::DriverError(_) => true,
        // Too many connections, shutdown in progress, connection killed, server
        // gone away, lost connection, disconnected by the server for inactivity.
        mysql::Error::MySqlError(e) => matches!(e.code, 1040 | 1053 | 1927 | 2006 | 2013 | 4031),
        _ => false,
    }
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
    /// runs once more on a new connection (see the module documentation).
    ///
    /// # Errors
    ///
    /// The body's error (the transaction is then rolled back), the commit's, or
    /// a connectivity error if MySQL cannot be reached.
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
        let reused = self.link.is_open();
        crate::metrics::ROUND_TRIPS[Dependency::Mysql as usize].add(1);
        let result = run_transaction(self.conn()?, &mut body);
        match result {
            Ok(value) => Ok(value),
            Err((Stage::BeforeCommit, e)) if self.discard_if_broken(&e, reused) => {
                run_transaction(self.conn()?, &mut body).map_err(|(_, e)| {
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
