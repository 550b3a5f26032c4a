//! Command line and environment of the seeding tool.
//!
//! Every setting is a flag and an environment variable; the flag wins. The
//! defaults seed the development database `usermgmt` with ten million accounts
//! at the server's default hash cost, connecting as MariaDB's root over the
//! unix socket (see [`DEFAULT_MYSQL_URL`] for why root).

use std::{fmt, path::PathBuf};

use crate::accounts::MAX_ACCOUNTS;

/// How many accounts to seed unless told otherwise: the ten million the
/// original documents ask for.
pub const DEFAULT_ACCOUNTS: u64 = 10_000_000;

/// PBKDF2 iterations unless told otherwise: tcpserver's default, so seeded and
/// signed-up accounts cost the same to log in.
pub const DEFAULT_HASH_COST: u32 = 1_000;

/// The pepper tcpserver reads by default, relative to the workspace root.
pub const DEFAULT_PEPPER_FILE: &str = "run/secrets/pepper";

/// Root over the unix socket: the tool sets the `AUTO_INCREMENT` of `users`
/// past the seeded id range, which needs the ALTER privilege the application
/// user does not have. Nothing else it does needs more than INSERT and SELECT.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@localhost/usermgmt?socket=/run/mysqld/mysqld.sock";

/// One line per setting: flag, environment variable, meaning and default.
const USAGE: &str = "\
usage: seed [options]

Creates the seeded accounts user00000001..userNNNNNNNN (password passNNNNNNNN)
in MariaDB. Idempotent: accounts already seeded are kept, missing ones added.

  --accounts N      SEED_ACCOUNTS   accounts to have in total [10000000]
  --hash-cost N     HASH_COST       PBKDF2 iterations [1000, tcpserver's default]
  --pepper-file P   PEPPER_FILE     the server's pepper [run/secrets/pepper]
  --mysql-url URL   SEED_MYSQL_URL  [mysql://root@localhost/usermgmt?socket=/run/mysqld/mysqld.sock]
  --threads N       SEED_THREADS    hashing threads [all cores]
  -h, --help                        this text";

/// The settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seeded accounts wanted in total (ids `1..=accounts`).
    pub accounts: u64,
    /// PBKDF2 iteration count for new hashes.
    pub hash_cost: u32,
    /// File holding the server-wide pepper (raw bytes, used as they are).
    pub pepper_file: PathBuf,
    /// Where to connect; the database in it must already have the schema.
    pub mysql_url: String,
    /// Threads that hash passwords.
    pub threads: usize,
}

/// A setting that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `-h` or `--help` was given: print [`ConfigError::usage`] and stop.
    HelpRequested,
    /// A flag nobody knows.
    UnknownFlag(String),
    /// A flag that needs a value came last.
    MissingValue(&'static str),
    /// A value that is not a number in the allowed range.
    BadNumber { setting: &'static str, value: String, min: u64, max: u64 },
}

impl ConfigError {
    /// The help text, printed for `--help` and after every other error.
    pub fn usage() -> &'static str {
        USAGE
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::HelpRequested => f.write_str("help requested"),
            ConfigError::UnknownFlag(flag) => write!(f, "unknown option {flag}"),
            ConfigError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ConfigError::BadNumber { setting, value, min, max } => {
                write!(f, "{setting}: {value:?} is not a number from {min} to {max}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the environment (through `env`), then the flags in `args`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad setting.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut config = Config {
            accounts: DEFAULT_ACCOUNTS,
            hash_cost: DEFAULT_HASH_COST,
            pepper_file: PathBuf::from(DEFAULT_PEPPER_FILE),
            mysql_url: DEFAULT_MYSQL_URL.to_owned(),
            threads,
        };
        for (name, flag) in [
            ("SEED_ACCOUNTS", "--accounts"),
            ("HASH_COST", "--hash-cost"),
            ("PEPPER_FILE", "--pepper-file"),
            ("SEED_MYSQL_URL", "--mysql-url"),
            ("SEED_THREADS", "--threads"),
        ] {
            if let Some(value) = env(name).filter(|v| !v.is_empty()) {
                config.set(flag, name, value)?;
            }
        }
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let flag: &'static str = match flag.as_str() {
                "-h" | "--help" => return Err(ConfigError::HelpRequested),
                "--accounts" => "--accounts",
                "--hash-cost" => "--hash-cost",
                "--pepper-file" => "--pepper-file",
                "--mysql-url" => "--mysql-url",
                "--threads" => "--threads",
                _ => return Err(ConfigError::UnknownFlag(flag)),
            };
            let value = args.next().ok_or(ConfigError::MissingValue(flag))?;
            config.set(flag, flag, value)?;
        }
        Ok(config)
    }

    fn set(&mut self, flag: &str, setting: &'static str, value: String) -> Result<(), ConfigError> {
        let number = |min: u64, max: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| ConfigError::BadNumber { setting, value: value.clone(), min, max })
        };
        match flag {
            "--accounts" => self.accounts = number(0, MAX_ACCOUNTS)?,
            "--hash-cost" => self.hash_cost = number(1, u64::from(u32::MAX))? as u32,
            "--threads" => self.threads = number(1, 1024)? as usize,
            "--pepper-file" => self.pepper_file = PathBuf::from(value),
            _ => self.mysql_url = value,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::parse(args.iter().map(|s| s.to_string()), move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_seed_ten_million_at_the_server_cost() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!((c.accounts, c.hash_cost), (10_000_000, 1_000));
        assert_eq!(c.pepper_file, PathBuf::from("run/secrets/pepper"));
        assert!(c.mysql_url.contains("socket=/run/mysqld/mysqld.sock"));
    }

    #[test]
    fn flags_win_over_environment() {
        let c = parse(&["--accounts", "5000"], &[("SEED_ACCOUNTS", "7"), ("HASH_COST", "2000")]).unwrap();
        assert_eq!((c.accounts, c.hash_cost), (5000, 2000));
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(parse(&["--bogus"], &[]).unwrap_err(), ConfigError::UnknownFlag("--bogus".into()));
        assert_eq!(parse(&["--accounts"], &[]).unwrap_err(), ConfigError::MissingValue("--accounts"));
        assert!(matches!(
            parse(&["--accounts", "100000000"], &[]).unwrap_err(),
            ConfigError::BadNumber { setting: "--accounts", .. }
        ));
        assert!(matches!(
            parse(&[], &[("SEED_THREADS", "x")]).unwrap_err(),
            ConfigError::BadNumber { setting: "SEED_THREADS", .. }
        ));
    }
}
