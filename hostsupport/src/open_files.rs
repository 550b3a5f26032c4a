//! The open-file limit a server starts with.
//!
//! Each connection holds a descriptor, and the soft limit many shells and
//! service managers start a process with (1024) would make `accept` fail
//! (EMFILE) far below a server's connection cap. The hard limit is the most a
//! process may ask for without privileges, so a server raises its soft limit
//! to it at start-up and says so when even that is too low for its cap.

use std::fmt;
use std::io;

/// Something a server should log about its open-file limit.
#[derive(Debug)]
pub enum Warning {
    /// The soft limit could not be raised.
    CannotRaise(io::Error),
    /// The limit is below the connection cap plus the descriptors the server
    /// needs besides its connections.
    BelowCap {
        /// The soft limit in force.
        limit: libc::rlim_t,
        /// `--max-connections`.
        max_connections: usize,
        /// Descriptors needed besides the connections.
        spare: usize,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::CannotRaise(e) => write!(f, "cannot raise the open-file limit: {e}"),
            Warning::BelowCap { limit, max_connections, spare } => write!(
                f,
                "the open-file limit ({limit}) is below --max-connections ({max_connections}) plus {spare} \
                 spare; connections past it will be refused"
            ),
        }
    }
}

/// Raises the soft limit on open files to the hard limit, and checks it
/// against `max_connections` connections plus `spare` other descriptors.
/// Returns what the caller should log (nothing when all is well, or when the
/// limit cannot even be read).
pub fn raise_soft_limit(max_connections: usize, spare: usize) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return warnings;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            warnings.push(Warning::CannotRaise(io::Error::last_os_error()));
        }
    }
    if limit.rlim_cur < max_connections.saturating_add(spare) as libc::rlim_t {
        warnings.push(Warning::BelowCap { limit: limit.rlim_cur, max_connections, spare });
    }
    warnings
}
