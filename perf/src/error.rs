//! Why a load-generator run could not produce a report.

use std::{collections::BTreeMap, fmt, io};

use crate::{check::Failure, config::ConfigError};

/// Why the run stopped. Failed requests are not errors: they are counted in
/// the report.
#[derive(Debug)]
pub enum Error {
    /// A bad setting.
    Config(ConfigError),
    /// The event loop itself failed (not a connection: those are counted).
    Io(io::Error),
    /// The session tokens could not be written to the file asked for.
    SaveTokens {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The logins before a profile or nickname run did not all succeed.
    Setup {
        /// Sessions wanted.
        wanted: usize,
        /// Sessions obtained.
        got: usize,
        /// Why the others failed.
        failures: BTreeMap<Failure, u64>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "{e}"),
            Error::Io(e) => write!(f, "event loop: {e}"),
            Error::SaveTokens { path, source } => {
                write!(f, "cannot write the tokens to {}: {source}", path.display())
            }
            Error::Setup { wanted, got, failures } => {
                write!(f, "logging in the {wanted} session users gave {got} sessions")?;
                for (failure, n) in failures {
                    write!(f, "; {failure}: {n}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Io(e) | Error::SaveTokens { source: e, .. } => Some(e),
            Error::Setup { .. } => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}
