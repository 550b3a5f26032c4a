//! `loadgen`: the command line of the load generator (see the library docs).

use std::process::ExitCode;

use loadgen::{
    config::{Config, ConfigError},
    runner,
};

fn main() -> ExitCode {
    let config = match Config::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(ConfigError::HelpRequested) => {
            println!("{}", ConfigError::usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadgen: {e}\n\n{}", ConfigError::usage());
            return ExitCode::from(2);
        }
    };
    if config.scenario == loadgen::config::Scenario::Qr {
        return match loadgen::qr::run(&config) {
            Ok(report) => {
                if config.json {
                    println!("{}", report.to_json());
                } else {
                    println!("{report}");
                }
                if report.clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
            }
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match runner::run(&config) {
        Ok(report) => {
            if config.json {
                println!("{}", report.to_json());
            } else {
                println!("{report}");
            }
            if report.stats.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
