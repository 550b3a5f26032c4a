//! `seed`: the command line of the seeding tool (see the library's docs).

use std::process::ExitCode;

use seed::{
    config::{Config, ConfigError},
    seeder,
};

fn main() -> ExitCode {
    let config = match Config::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(ConfigError::HelpRequested) => {
            println!("{}", ConfigError::usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("seed: {e}\n\n{}", ConfigError::usage());
            return ExitCode::from(2);
        }
    };
    match seeder::run(&config) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("seed: {e}");
            ExitCode::FAILURE
        }
    }
}
