//! The `tcpserver` binary: read the settings, install the signal handlers, run.
//!
//! Exit status: 0 after a clean shutdown (SIGINT or SIGTERM) or `--help`, 2 for
//! bad settings on the command line or in the environment, 1 when the server
//! cannot start or its event loop fails.

use std::process::ExitCode;

use tcpserver::config::{self, Config, ConfigError};
use tcpserver::{Shutdown, log};

/// jemalloc: cheaper than glibc's malloc for the workers' many small
/// allocations per batch (see Cargo.toml).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    log::set_format(config.log_format);
    hostsupport::log::set_access_lines(config.access_log);
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

/// Descriptors needed besides the connections: the listener, the workers'
/// MySQL and Redis connections, the waker.
const SPARE_DESCRIPTORS: usize = 256;

/// Raises the soft open-file limit to the hard one (see
/// [`hostsupport::open_files`]) and logs what needs saying.
fn raise_open_file_limit(max_connections: usize) {
    for warning in hostsupport::open_files::raise_soft_limit(max_connections, SPARE_DESCRIPTORS) {
        log!("tcpserver: {warning}");
    }
}
