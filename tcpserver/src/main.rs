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
