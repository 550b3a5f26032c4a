//! Everything that can stop a seeding run, each with a message that says what
//! to do about it.

use std::{fmt, io, path::PathBuf};

use tcpserver::password::PasswordError;

use crate::config::ConfigError;

/// Why the seeding tool stopped.
#[derive(Debug)]
pub enum Error {
    /// The command line or an environment variable is wrong.
    Config(ConfigError),
    /// The pepper file could not be read.
    Pepper { path: PathBuf, source: io::Error },
    /// The hash cost or the pepper were refused by the password hasher.
    Hasher(PasswordError),
    /// A MariaDB statement or the connection failed.
    Mysql(mysql::Error),
    /// The server does not allow `LOAD DATA LOCAL INFILE`.
    LocalInfileDisabled,
    /// Another seed holds the database's seed lock.
    AlreadyRunning,
    /// The accounts already seeded do not verify with this pepper: they were
    /// made for another `run/secrets/pepper`, and no one could log in as them.
    PepperMismatch { id: u64 },
    /// Rows that are not seeded accounts sit where seeded ones must go.
    Conflict { first: u64, last: u64, rows: u64 },
    /// A `LOAD DATA` statement stored fewer rows than it was sent (the server
    /// skips rows that collide with a unique key and only warns).
    ShortLoad { table: &'static str, sent: u64, stored: u64, first_warning: String },
    /// The final count check found other numbers than the seed should have left.
    CountMismatch { table: &'static str, expected: u64, found: u64 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Pepper { path, source } => {
                write!(f, "cannot read the pepper file {}: {source}", path.display())
            }
            Error::Hasher(e) => write!(f, "password hasher: {e}"),
            Error::Mysql(e) => write!(f, "MariaDB: {e}"),
            Error::LocalInfileDisabled => f.write_str(
                "the server has local_infile=OFF, so LOAD DATA LOCAL INFILE is refused; \
                 run sql/mariadb/apply.sh (or SET GLOBAL local_infile=ON as root)",
            ),
            Error::AlreadyRunning => {
                f.write_str("another seed is running against this database; wait for it or stop it")
            }
            Error::PepperMismatch { id } => write!(
                f,
                "account {id} was seeded with another pepper than the one given, so its password \
                 would not verify; seed into a fresh database or use the pepper it was made with"
            ),
            Error::Conflict { first, last, rows } => write!(
                f,
                "{rows} row(s) that are not seeded accounts use ids or usernames of accounts \
                 {first}..={last}; the seed reserves ids below 100000000 and usernames \
                 user00000001..user99999999; move those rows or seed into a fresh database"
            ),
            Error::ShortLoad { table, sent, stored, first_warning } => write!(
                f,
                "LOAD DATA into {table} stored {stored} of {sent} rows (first warning: \
                 {first_warning:?}); the batch was rolled back"
            ),
            Error::CountMismatch { table, expected, found } => write!(
                f,
                "{table} holds {found} seeded rows where {expected} were expected; rows were \
                 deleted or added by hand (seed into a fresh database to start over)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Pepper { source, .. } => Some(source),
            Error::Config(e) => Some(e),
            Error::Hasher(e) => Some(e),
            Error::Mysql(e) => Some(e),
            _ => None,
        }
    }
}

impl From<mysql::Error> for Error {
    fn from(e: mysql::Error) -> Error {
        Error::Mysql(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

impl From<PasswordError> for Error {
    fn from(e: PasswordError) -> Error {
        Error::Hasher(e)
    }
}
