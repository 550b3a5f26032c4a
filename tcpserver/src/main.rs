//! The `tcpserver` binary: read the settings, install the signal handlers, run.
//!
//! Exit status: 0 after a clean shutdown (SIGINT or SIGTERM) or `--help`, 2 for
//! bad settings on the command line or in the environment, 1 when the server
//! cannot start or its event loop fails.

use std::process::ExitCode;

use tcpserver::config::{self, Config, ConfigError};
use tcpserver::{Shutdown, log};

fn main() -> ExitCode {
    let config = match Config::from_env_and_args() {
        Ok(config) => config,
        Err(ConfigError::HelpRequested) => {
            print!("{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tcpserver: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = match Shutdown::new().and_then(|s| s.on_signals().map(|()| s)) {
        Ok(shutdown) => shutdown,
        Err(e) => {
            eprintln!("tcpserver: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    raise_open_file_limit(config.max_connections);
    match tcpserver::run(&config, shutdown) {
        Ok(()) => {
            log!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            log!("tcpserver: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard limit. Each connection holds
/// a descriptor, and the soft limit many shells and service managers start a
/// process with (1024) would make `accept` fail (EMFILE) far below
/// `--max-connections`; the hard limit is the most this process may ask for.
/// Warns when even that is too low for the configured cap.
fn raise_open_file_limit(max_connections: usize) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct given to them.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            log!("tcpserver: cannot raise the open-file limit: {}", std::io::Error::last_os_error());
        }
    }
    // The listener, the workers' MySQL and Redis connections, the waker.
    let spare = 256;
    if limit.rlim_cur < (max_connections + spare) as libc::rlim_t {
        log!(
            "tcpserver: the open-file limit ({}) is below --max-connections ({max_connections}) plus {spare} \
             spare; connections past it will be refused",
            limit.rlim_cur
        );
    }
}
