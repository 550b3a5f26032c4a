//! `httpserver`: reads its settings and serves until SIGTERM. See `--help`.

use std::process::ExitCode;

use httpserver::config::{Config, ConfigError, USAGE};

fn main() -> ExitCode {
    let config = match Config::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(ConfigError::HelpRequested) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("httpserver: {e}");
            return ExitCode::from(2);
        }
    };
    match httpserver::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("httpserver: {e}");
            ExitCode::FAILURE
        }
    }
}
