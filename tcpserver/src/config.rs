//! Settings of the back end: command-line flags, each with an environment variable
//! of its own and a documented default.
//!
//! A flag wins over its variable, and the variable over the default. Parsing is
//! hand-written over `std::env::args` (no argument-parsing crate): the grammar is
//! only `--name value` or `--name=value`, plus `--help`. Every value is checked
//! here, at start, so that a typo stops the server with a message that names the
//! flag instead of failing later under load.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::throttle::{Limit, Limits};

/// Where the server listens by default: loopback, because only `httpserver` (on the
/// same machine) should reach it; port 1099 as agreed between the two servers.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:1099";

/// The application's MySQL account and database; the password comes from
/// `--mysql-password-file` so it never shows in `ps`.
pub const DEFAULT_MYSQL_URL: &str = "mysql://usermgmt@127.0.0.1:3306/usermgmt";

/// The local Redis.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// Every Redis key starts with this, so that several deployments (or test runs)
/// can share one Redis and each can find and delete its own keys.
pub const DEFAULT_REDIS_PREFIX: &str = "um:";

/// Worker threads. Each one blocks on MySQL, Redis or a password hash, and
/// each answers a batch of requests per round trip (`queue`), so a few per
/// core keep the CPU busy. Measured on two cores (`perf/ab.sh`, 2026-11-23):
/// 4 workers instead of 16 cut the p99 of random log-ins from 94 to 50 ms and
/// of nickname changes from 42 to 31 ms at the same throughput; fewer threads
/// hashing at once finish each batch sooner. It also keeps MySQL at 4
/// connections.
pub const DEFAULT_WORKERS: usize = 4;

/// Jobs waiting for a worker: as many as httpserver serves HTTP connections by
/// default, so one request from each of them fits (the front end shares a few
/// connections and sends every call at once). At a few thousand requests a
/// second that is about a second of work, well inside the front end's 5 s call
/// timeout: a longer queue would only make callers time out instead of getting
/// a quick `Overloaded` they can act on.
pub const DEFAULT_QUEUE_LEN: usize = 4096;

/// Open client connections. `httpserver` uses a small pool of persistent
/// connections, and load generators a few thousand; 4096 stays well inside the
/// file-descriptor limit that `sysctl/tune.sh` sets, with room for the workers'
/// database connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// PBKDF2 iterations for new password hashes (see the README for the reasoning:
/// the pepper carries most of the protection, the count keeps logins fast).
pub const DEFAULT_HASH_COST: u32 = 1_000;

/// A session ends after 30 minutes without use.
pub const DEFAULT_SESSION_IDLE_SECS: u64 = 30 * 60;

/// A session ends 24 hours after log-in, however busy.
pub const DEFAULT_SESSION_MAX_SECS: u64 = 24 * 60 * 60;

/// Where versions before pictures moved into MariaDB stored them as files:
/// read at start to copy in those MariaDB lacks ([`crate::avatar_import`]),
/// never written.
pub const DEFAULT_AVATAR_DIR: &str = "static/avatars";

/// The server-wide secret mixed into every password hash (made by `scripts/services.sh`).
pub const DEFAULT_PEPPER_FILE: &str = "run/secrets/pepper";

/// Where the metrics listener serves `GET /metrics` ([`crate::metrics_http`]):
/// loopback, so only a scraper on this machine reads it unless told otherwise.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9099";
/// The secret every RPC connection must prove it knows before its first request
/// (`proto::handshake`); httpserver reads the same file. Made by `scripts/services.sh`.
pub const DEFAULT_RPC_SECRET_FILE: &str = "run/secrets/rpc_secret";

/// Everything the server needs to start. Build with [`Config::from_env_and_args`]
/// or [`Config::parse`]; [`Config::default`] holds the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `--listen` / `TCPSERVER_LISTEN`: address to bind (port 0 picks a free one).
    pub listen: SocketAddr,
    /// `--mysql-url` / `MYSQL_URL`.
    pub mysql_url: String,
    /// `--mysql-password-file` / `MYSQL_PASSWORD_FILE`: replaces the URL's password.
    pub mysql_password_file: Option<PathBuf>,
    /// `--redis-url` / `REDIS_URL`.
    pub redis_url: String,
    /// `--redis-cluster` / `REDIS_CLUSTER`: nodes of a Redis Cluster
    /// (`host:port` each); when given, used instead of `--redis-url`.
    pub redis_cluster: Vec<String>,
    /// `--redis-prefix` / `REDIS_PREFIX`: first characters of every key.
    pub redis_prefix: String,
    /// `--workers` / `WORKERS`: worker threads (each with its own MySQL and Redis connection).
    pub workers: usize,
    /// `--queue` / `QUEUE_LEN`: jobs that may wait for a worker.
    pub queue_len: usize,
    /// `--max-connections` / `MAX_CONNECTIONS`: client connections kept open at once.
    pub max_connections: usize,
    /// `--hash-cost` / `HASH_COST`: PBKDF2 iterations for new hashes.
    pub hash_cost: u32,
    /// `--session-idle-secs` / `SESSION_IDLE_SECS`: idle lifetime of a session.
    pub session_idle_secs: u64,
    /// `--session-max-secs` / `SESSION_MAX_SECS`: absolute lifetime of a session.
    pub session_max_secs: u64,
    /// `--avatar-dir` / `AVATAR_DIR`: where earlier versions stored picture
    /// files, copied into MariaDB at start if it lacks them.
    pub avatar_dir: PathBuf,
    /// `--pepper-file` / `PEPPER_FILE`: the password pepper.
    pub pepper_file: PathBuf,
    /// `--metrics-listen` / `METRICS_LISTEN`: where `GET /metrics` is served
    /// (`off` for nowhere).
    pub metrics_listen: Option<SocketAddr>,
    /// `--max-sessions-per-user` / `MAX_SESSIONS_PER_USER`: sessions one
    /// account may hold; past it the oldest end.
    pub max_sessions_per_user: u64,
    /// The throttles' limits, each `--<name> <attempts>/<seconds>`
    /// (`--login-failures-per-user`, `--login-failures-per-addr`,
    /// `--logins-per-user`, `--logins-per-addr`, `--signups-per-addr`).
    pub limits: Limits,
    /// `--rpc-secret-file` / `RPC_SECRET_FILE`: what RPC clients must prove they know.
    pub rpc_secret_file: PathBuf,
    /// `--log-format` / `LOG_FORMAT`: `text` (the default) or `json`, one
    /// object a line ([`mod@crate::log`]).
    pub log_format: crate::log::Format,
    /// `--access-log` / `ACCESS_LOG`: a line for every request answered (on by default).
    pub access_log: bool,
    /// `--qr-ttl-secs` / `QR_TTL_SECS`: lifetime of a scan-to-log-in code.
    pub qr_ttl_secs: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 1099)),
            mysql_url: DEFAULT_MYSQL_URL.to_owned(),
            mysql_password_file: None,
            redis_url: DEFAULT_REDIS_URL.to_owned(),
            redis_cluster: Vec::new(),
            redis_prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            workers: DEFAULT_WORKERS,
            queue_len: DEFAULT_QUEUE_LEN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            hash_cost: DEFAULT_HASH_COST,
            session_idle_secs: DEFAULT_SESSION_IDLE_SECS,
            session_max_secs: DEFAULT_SESSION_MAX_SECS,
            avatar_dir: PathBuf::from(DEFAULT_AVATAR_DIR),
            pepper_file: PathBuf::from(DEFAULT_PEPPER_FILE),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9099))),
            limits: Limits::default(),
            max_sessions_per_user: crate::login_session::DEFAULT_MAX_SESSIONS_PER_USER,
            rpc_secret_file: PathBuf::from(DEFAULT_RPC_SECRET_FILE),
            log_format: crate::log::Format::Text,
            access_log: true,
            qr_ttl_secs: crate::qr_store::DEFAULT_TTL_SECS,
        }
    }
}

/// One setting: its flag, its environment variable, and a line for `--help`.
struct Setting {
    flag: &'static str,
    env: &'static str,
    help: &'static str,
}

const SETTINGS: &[Setting] = &[
    Setting { flag: "--listen", env: "TCPSERVER_LISTEN", help: "address to listen on [127.0.0.1:1099]" },
    Setting {
        flag: "--mysql-url",
        env: "MYSQL_URL",
        help: "MySQL URL [mysql://usermgmt@127.0.0.1:3306/usermgmt]",
    },
    Setting {
        flag: "--mysql-password-file",
        env: "MYSQL_PASSWORD_FILE",
        help: "file holding the MySQL password [none: the URL's]",
    },
    Setting { flag: "--redis-url", env: "REDIS_URL", help: "Redis URL [redis://127.0.0.1:6379/]" },
    Setting {
        flag: "--redis-cluster",
        env: "REDIS_CLUSTER",
        help: "Redis Cluster nodes host:port,host:port,... (any of them will do; list several so \
               that one down is no matter); when set, used instead of --redis-url [none]",
    },
    Setting {
        flag: "--redis-prefix",
        env: "REDIS_PREFIX",
        help: "prefix of every Redis key, without { or } [um:]",
    },
    Setting { flag: "--workers", env: "WORKERS", help: "worker threads [4]" },
    Setting { flag: "--queue", env: "QUEUE_LEN", help: "jobs waiting for a worker before Overloaded [4096]" },
    Setting { flag: "--max-connections", env: "MAX_CONNECTIONS", help: "open client connections [4096]" },
    Setting { flag: "--hash-cost", env: "HASH_COST", help: "PBKDF2 iterations, at least 1000 [1000]" },
    Setting { flag: "--session-idle-secs", env: "SESSION_IDLE_SECS", help: "idle session lifetime [1800]" },
    Setting {
        flag: "--session-max-secs",
        env: "SESSION_MAX_SECS",
        help: "absolute session lifetime [86400]",
    },
    Setting {
        flag: "--avatar-dir",
        env: "AVATAR_DIR",
        help: "picture files of earlier versions, copied into MariaDB at start [static/avatars]",
    },
    Setting {
        flag: "--pepper-file",
        env: "PEPPER_FILE",
        help: "password pepper, >= 16 bytes [run/secrets/pepper]",
    },
    Setting {
        flag: "--metrics-listen",
        env: "METRICS_LISTEN",
        help: "address of GET /metrics, or off [127.0.0.1:9099]",
    },
    Setting {
        flag: "--login-failures-per-user",
        env: "LOGIN_FAILURES_PER_USER",
        help: "failed log-ins per username, attempts/seconds [5/300]",
    },
    Setting {
        flag: "--login-failures-per-addr",
        env: "LOGIN_FAILURES_PER_ADDR",
        help: "failed log-ins per client address [50/300]",
    },
    Setting {
        flag: "--logins-per-user",
        env: "LOGINS_PER_USER",
        help: "successful log-ins per account [30/600]",
    },
    Setting {
        flag: "--logins-per-addr",
        env: "LOGINS_PER_ADDR",
        help: "successful log-ins per client address [600/600]",
    },
    Setting {
        flag: "--max-sessions-per-user",
        env: "MAX_SESSIONS_PER_USER",
        help: "sessions one account may hold; the oldest end past it [32]",
    },
    Setting {
        flag: "--signups-per-addr",
        env: "SIGNUPS_PER_ADDR",
        help: "sign-ups per client address [20/600]",
    },
    Setting {
        flag: "--qr-ttl-secs",
        env: "QR_TTL_SECS",
        help: "lifetime of a scan-to-log-in code, 1 to 600 [120]",
    },
    Setting {
        flag: "--qr-codes-per-addr",
        env: "QR_CODES_PER_ADDR",
        help: "scan-to-log-in codes made per client address [60/600]",
    },
    Setting {
        flag: "--rpc-secret-file",
        env: "RPC_SECRET_FILE",
        help: "secret RPC clients must prove, >= 16 bytes [run/secrets/rpc_secret]",
    },
    Setting { flag: "--log-format", env: "LOG_FORMAT", help: "log lines as text or json [text]" },
    Setting {
        flag: "--access-log",
        env: "ACCESS_LOG",
        help: "a line for every request answered, on or off [on]",
    },
];

/// Why the settings could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `--help` was given: not a failure, the caller prints [`usage`] and exits 0.
    HelpRequested,
    /// An argument that is not a known flag.
    UnknownFlag(String),
    /// A flag at the end of the command line without its value.
    MissingValue(&'static str),
    /// A value that does not parse or is out of range.
    InvalidValue {
        /// The flag (or environment variable) that carried it.
        setting: String,
        /// The value as given.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::HelpRequested => f.write_str("help requested"),
            ConfigError::UnknownFlag(flag) => write!(f, "unknown argument {flag:?} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ConfigError::InvalidValue { setting, value, expected } => {
                write!(f, "invalid value {value:?} for {setting}: expected {expected}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The `--help` text.
pub fn usage() -> String {
    let mut text = String::from(
        "usage: tcpserver [--flag value]...\n\nThe usermgmt back end. Each flag can also be set \
         through the environment variable shown.\n\n",
    );
    for s in SETTINGS {
        text.push_str(&format!("  {:<22} {:<20} {}\n", s.flag, s.env, s.help));
    }
    text
}

impl Config {
    /// Reads the process's environment and command line.
    ///
    /// # Errors
    ///
    /// See [`Config::parse`].
    pub fn from_env_and_args() -> Result<Config, ConfigError> {
        Config::parse(std::env::args().skip(1), |name| std::env::var(name).ok())
    }

    /// Builds a config from arguments (without the program name) and an
    /// environment lookup, so that tests need not touch the real environment.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for an unknown flag, a missing value, or a value out of range.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        for s in SETTINGS {
            if let Some(value) = env(s.env).filter(|v| !v.is_empty()) {
                config.set(s.flag, s.env, value)?;
            }
        }
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(ConfigError::HelpRequested);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let setting = SETTINGS.iter().find(|s| s.flag == name).ok_or(ConfigError::UnknownFlag(arg))?;
            let value = match inline {
                Some(v) => v,
                None => args.next().ok_or(ConfigError::MissingValue(setting.flag))?,
            };
            config.set(setting.flag, setting.flag, value)?;
        }
        if config.session_max_secs < config.session_idle_secs {
            return Err(ConfigError::InvalidValue {
                setting: "--session-max-secs".into(),
                value: config.session_max_secs.to_string(),
                expected: "a value at least as large as --session-idle-secs",
            });
        }
        Ok(config)
    }

    /// Stores one value; `shown` is the name used in an error message.
    fn set(&mut self, flag: &str, shown: &str, value: String) -> Result<(), ConfigError> {
        let invalid = |expected| ConfigError::InvalidValue {
            setting: shown.to_owned(),
            value: value.clone(),
            expected,
        };
        match flag {
            "--listen" => {
                self.listen = value
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| invalid("host:port"))?;
            }
            "--mysql-url" => {
                if !value.starts_with("mysql://") {
                    return Err(invalid("a mysql:// URL"));
                }
                self.mysql_url = value;
            }
            "--mysql-password-file" => self.mysql_password_file = Some(PathBuf::from(value)),
            "--redis-url" => {
                if !(value.starts_with("redis://") || value.starts_with("redis+unix://")) {
                    return Err(invalid("a redis:// URL"));
                }
                self.redis_url = value;
            }
            "--redis-cluster" => {
                self.redis_cluster = cluster_nodes(&value).ok_or_else(|| {
                    invalid("host:port,host:port,... (at most 64 nodes, each a host and a port)")
                })?;
            }
            "--redis-prefix" => {
                // A brace would make part of the prefix the keys' hash tag.
                if value.contains(['{', '}']) {
                    return Err(invalid("a prefix without { or }"));
                }
                self.redis_prefix = value;
            }
            "--workers" => self.workers = number(&value, 1, 1024).ok_or_else(|| invalid("1 to 1024"))?,
            "--queue" => {
                self.queue_len = number(&value, 1, 1 << 20).ok_or_else(|| invalid("1 to 1048576"))?
            }
            "--max-connections" => {
                self.max_connections = number(&value, 1, 1 << 20).ok_or_else(|| invalid("1 to 1048576"))?;
            }
            "--hash-cost" => {
                self.hash_cost = number(&value, crate::password::MIN_ITERATIONS as usize, 100_000_000)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid("1000 to 100000000"))?;
            }
            "--session-idle-secs" => {
                self.session_idle_secs =
                    number(&value, 1, 365 * 86_400).ok_or_else(|| invalid("1 to 31536000"))? as u64;
            }
            "--session-max-secs" => {
                self.session_max_secs =
                    number(&value, 1, 365 * 86_400).ok_or_else(|| invalid("1 to 31536000"))? as u64;
            }
            "--avatar-dir" => self.avatar_dir = PathBuf::from(value),
            "--pepper-file" => self.pepper_file = PathBuf::from(value),
            "--max-sessions-per-user" => {
                self.max_sessions_per_user =
                    number(&value, 1, 1 << 20).ok_or_else(|| invalid("1 to 1048576"))? as u64;
            }
            "--metrics-listen" => {
                self.metrics_listen = match value.as_str() {
                    "off" => None,
                    _ => Some(
                        value
                            .to_socket_addrs()
                            .ok()
                            .and_then(|mut addrs| addrs.next())
                            .ok_or_else(|| invalid("host:port or off"))?,
                    ),
                };
            }
            "--login-failures-per-user"
            | "--login-failures-per-addr"
            | "--logins-per-user"
            | "--logins-per-addr"
            | "--signups-per-addr"
            | "--qr-codes-per-addr" => {
                let limit: Limit =
                    value.parse().map_err(|_| invalid("<attempts>/<seconds>, both positive"))?;
                let limits = &mut self.limits;
                *match flag {
                    "--login-failures-per-user" => &mut limits.failures_per_user,
                    "--login-failures-per-addr" => &mut limits.failures_per_addr,
                    "--logins-per-user" => &mut limits.logins_per_user,
                    "--logins-per-addr" => &mut limits.logins_per_addr,
                    "--qr-codes-per-addr" => &mut limits.qr_codes_per_addr,
                    _ => &mut limits.signups_per_addr,
                } = limit;
            }
            "--rpc-secret-file" => self.rpc_secret_file = PathBuf::from(value),
            "--access-log" => {
                self.access_log = match value.trim() {
                    "on" => true,
                    "off" => false,
                    _ => return Err(invalid("on or off")),
                };
            }
            "--log-format" => {
                self.log_format = crate::log::Format::parse(&value).ok_or_else(|| invalid("text or json"))?;
            }
            "--qr-ttl-secs" => {
                self.qr_ttl_secs = number(&value, 1, crate::qr_store::MAX_TTL_SECS as usize)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| invalid("1 to 600"))?;
            }
            _ => return Err(ConfigError::UnknownFlag(flag.to_owned())),
        }
        Ok(())
    }
}

/// The nodes of `--redis-cluster`: a comma-separated list of `host:port`
/// (an IPv6 host in brackets), at most [`crate::db::redis::MAX_CLUSTER_NODES`].
fn cluster_nodes(value: &str) -> Option<Vec<String>> {
    let nodes: Vec<String> =
        value.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    let valid = |node: &String| {
        let Some((host, port)) = node.rsplit_once(':') else { return false };
        let host_ok = !host.is_empty()
            && (host.starts_with('[') && host.ends_with(']')
                || host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')));
        host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
    };
    (!nodes.is_empty() && nodes.len() <= crate::db::redis::MAX_CLUSTER_NODES && nodes.iter().all(valid))
        .then_some(nodes)
}

/// Parses a decimal in `min..=max`.
fn number(value: &str, min: usize, max: usize) -> Option<usize> {
    value.trim().parse::<usize>().ok().filter(|n| (min..=max).contains(n))
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
    fn nothing_given_means_the_documented_defaults() {
        let config = parse(&[], &[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.workers, 4);
        assert_eq!(config.metrics_listen.map(|a| a.to_string()).as_deref(), Some(DEFAULT_METRICS_LISTEN));
        assert_eq!(config.rpc_secret_file, PathBuf::from(DEFAULT_RPC_SECRET_FILE));
    }

    #[test]
    fn limits_and_the_metrics_listener_are_settings() {
        let config = parse(
            &["--logins-per-user", "100/60", "--metrics-listen", "off"],
            &[("SIGNUPS_PER_ADDR", "7/70")],
        )
        .unwrap();
        assert_eq!(config.limits.logins_per_user, Limit { max_attempts: 100, window_secs: 60 });
        assert_eq!(config.limits.signups_per_addr, Limit { max_attempts: 7, window_secs: 70 });
        assert_eq!(config.limits.failures_per_user, crate::throttle::LOGIN_FAILURES_PER_USER);
        assert_eq!(config.metrics_listen, None);
        assert!(parse(&["--logins-per-addr", "0/60"], &[]).is_err());
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        assert_eq!(parse(&[], &[]).unwrap().log_format, crate::log::Format::Text);
        assert_eq!(parse(&[], &[("LOG_FORMAT", "json")]).unwrap().log_format, crate::log::Format::Json);
        assert!(parse(&["--log-format", "yaml"], &[]).is_err());
    }

    #[test]
    fn the_rpc_secret_file_comes_from_its_flag_or_variable() {
        let from_env = parse(&[], &[("RPC_SECRET_FILE", "/env/secret")]).unwrap();
        assert_eq!(from_env.rpc_secret_file, PathBuf::from("/env/secret"));
        let from_flag =
            parse(&["--rpc-secret-file", "/flag/secret"], &[("RPC_SECRET_FILE", "/env/secret")]).unwrap();
        assert_eq!(from_flag.rpc_secret_file, PathBuf::from("/flag/secret"));
    }

    #[test]
    fn flags_win_over_environment_variables() {
        let config = parse(
            &["--workers", "3", "--redis-prefix=t:", "--listen", "127.0.0.1:0"],
            &[("WORKERS", "7"), ("QUEUE_LEN", "9"), ("REDIS_PREFIX", "env:")],
        )
        .unwrap();
        assert_eq!(config.workers, 3);
        assert_eq!(config.queue_len, 9);
        assert_eq!(config.redis_prefix, "t:");
        assert_eq!(config.listen.port(), 0);
    }

    #[test]
    fn bad_input_names_the_setting() {
        assert_eq!(parse(&["--bogus"], &[]), Err(ConfigError::UnknownFlag("--bogus".into())));
        assert_eq!(parse(&["--workers"], &[]), Err(ConfigError::MissingValue("--workers")));
        let err = parse(&["--hash-cost", "10"], &[]).unwrap_err();
        assert!(err.to_string().contains("--hash-cost"), "{err}");
        let err = parse(&[], &[("WORKERS", "0")]).unwrap_err();
        assert!(err.to_string().contains("WORKERS"), "{err}");
        assert!(parse(&["--session-idle-secs", "100", "--session-max-secs", "50"], &[]).is_err());
        assert!(parse(&["--mysql-url", "postgres://x"], &[]).is_err());
        assert_eq!(parse(&["--help"], &[]), Err(ConfigError::HelpRequested));
    }

    #[test]
    fn a_redis_cluster_is_a_list_of_nodes_that_replaces_the_url() {
        assert!(parse(&[], &[]).unwrap().redis_cluster.is_empty());
        let config =
            parse(&["--redis-cluster", "127.0.0.1:7000, 127.0.0.1:7001,[::1]:7002,redis-3.local:7003"], &[])
                .unwrap();
        assert_eq!(
            config.redis_cluster,
            ["127.0.0.1:7000", "127.0.0.1:7001", "[::1]:7002", "redis-3.local:7003"]
        );
        let from_env = parse(&[], &[("REDIS_CLUSTER", "10.0.0.1:6379")]).unwrap();
        assert_eq!(from_env.redis_cluster, ["10.0.0.1:6379"]);
        for bad in ["", ",", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", ":7000", "a b:1", "redis://h:1"] {
            let err = parse(&["--redis-cluster", bad], &[]).unwrap_err();
            assert!(err.to_string().contains("--redis-cluster"), "{bad}: {err}");
        }
        let many = (0..65).map(|i| format!("h:{}", 7000 + i)).collect::<Vec<_>>().join(",");
        assert!(parse(&["--redis-cluster", &many], &[]).is_err());
        assert!(usage().contains("--redis-cluster") && usage().contains("REDIS_CLUSTER"));
    }

    #[test]
    fn a_redis_prefix_cannot_hold_a_hash_tag() {
        assert!(parse(&["--redis-prefix", "um{x}:"], &[]).is_err());
        assert!(parse(&[], &[("REDIS_PREFIX", "a}")]).is_err());
    }

    #[test]
    fn usage_lists_every_flag() {
        let text = usage();
        for s in SETTINGS {
            assert!(text.contains(s.flag) && text.contains(s.env));
        }
    }
}
