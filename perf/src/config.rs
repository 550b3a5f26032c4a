//! Command line and environment of the load generator.

use std::{
    fmt,
    net::{SocketAddr, ToSocketAddrs},
    time::Duration,
};

use crate::workload::Naming;

/// Requests per run unless told otherwise: the original documents' 50,000.
pub const DEFAULT_REQUESTS: u64 = 50_000;

/// Simultaneous users unless told otherwise: the lower of the two benchmark levels.
pub const DEFAULT_CONCURRENCY: usize = 200;

/// Seeded accounts that random logins draw from: the seeding tool's default.
pub const DEFAULT_ACCOUNTS: u64 = 10_000_000;

/// The fixed set of users of `login-fixed`, as in the original documents.
pub const FIXED_USERS: u64 = 200;

/// Connections one run may hold: below the 20,000 open files this machine
/// allows a process, with room for the servers' own descriptors.
pub const MAX_CONCURRENCY: usize = 16_000;

/// The longest a request may take before it counts as `timeout`, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

const USAGE: &str = "\
usage: loadgen [options]

Plays users of usermgmt over keep-alive HTTP/1.1 and checks every answer.

  --scenario S      login-fixed | login-random | profile | nickname | qr [login-fixed]
  --requests N      requests to make [50000]
  --duration SECS   run for this long instead of a number of requests
  --concurrency C   simultaneous connections, one request each at a time [200]
  --accounts N      seeded accounts random logins draw from [10000000]
  --addr HOST:PORT  httpserver [127.0.0.1:1088]
  --username-of T   username of account i, {i} = i in 8 digits [user{i}]
  --password-of T   password of account i, as the seeding tool makes it [pass{i}]
  --sessions N      users logged in first for profile/nickname [= concurrency]
  --timeout-ms MS   a request slower than this fails as timeout [5000]
  --threads N       event-loop threads [1]
  --save-tokens F   profile/nickname: also write the session tokens to F, one per
                    line (for perf/wrk/profile.lua)
  --waits N         qr: desktops waiting at once on scan-to-log-in codes [10000]
  --approve-rate R  qr: phone approvals a second [200]
  --tcpserver-pid P, --httpserver-pid P   qr: report these processes' memory
  --json            print the report as one JSON object
  -h, --help        this text

Every flag is also an environment variable: LOADGEN_<FLAG> (LOADGEN_CONCURRENCY...).
Exit status: 0 if every request succeeded, 1 if any failed, 2 on bad usage.";

/// What the simulated users do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Log in as one of the first 200 accounts, in turn.
    LoginFixed,
    /// Log in as a random account out of `--accounts`.
    LoginRandom,
    /// Read the profile with a valid session (`Authorization: Bearer`).
    Profile,
    /// Change the nickname with a valid session.
    Nickname,
    /// Scan-to-log-in: `--waits` desktops hold long polls while phones
    /// approve them at `--approve-rate`, with log-ins at `--concurrency`
    /// beside them (see `crate::qr`).
    Qr,
}

impl Scenario {
    /// Every scenario, in the order of the benchmark table.
    pub const ALL: [Scenario; 4] =
        [Scenario::LoginFixed, Scenario::LoginRandom, Scenario::Profile, Scenario::Nickname];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::LoginFixed => "login-fixed",
            Scenario::LoginRandom => "login-random",
            Scenario::Profile => "profile",
            Scenario::Nickname => "nickname",
            Scenario::Qr => "qr",
        }
    }

    /// Whether users are drawn at random (the `Random(..)` of the report line).
    pub fn random(self) -> bool {
        self == Scenario::LoginRandom
    }

    /// Whether users log in before the measured part.
    pub fn needs_sessions(self) -> bool {
        matches!(self, Scenario::Profile | Scenario::Nickname)
    }
}

/// The settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// What the users do.
    pub scenario: Scenario,
    /// Requests to make (ignored when `duration` is set).
    pub requests: u64,
    /// Run for this long instead.
    pub duration: Option<Duration>,
    /// Simultaneous connections.
    pub concurrency: usize,
    /// Seeded accounts for random logins.
    pub accounts: u64,
    /// httpserver's address, resolved.
    pub addr: SocketAddr,
    /// The `Host` header: the address as given.
    pub host: String,
    /// How seeded accounts are named.
    pub naming: Naming,
    /// Sessions for profile and nickname runs.
    pub sessions: usize,
    /// Request timeout.
    pub timeout: Duration,
    /// Event-loop threads.
    pub threads: usize,
    /// Print JSON instead of text.
    pub json: bool,
    /// Where to write the session tokens, if anywhere.
    pub save_tokens: Option<std::path::PathBuf>,
    /// `qr`: desktops waiting at once.
    pub waits: usize,
    /// `qr`: approvals a second.
    pub approve_rate: u32,
    /// `qr`: the processes whose memory the report shows (tcpserver, httpserver).
    pub pids: (Option<u32>, Option<u32>),
}

/// A setting that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `-h` or `--help`: print [`ConfigError::usage`].
    HelpRequested,
    /// A flag nobody knows.
    UnknownFlag(String),
    /// A flag that needs a value came last.
    MissingValue(String),
    /// A number outside its range.
    BadNumber { setting: String, value: String, min: u64, max: u64 },
    /// A scenario name nobody knows.
    UnknownScenario(String),
    /// An address that does not resolve.
    BadAddress(String),
    /// A name template without `{i}`.
    BadTemplate(String),
}

impl ConfigError {
    /// The help text.
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
            ConfigError::UnknownScenario(s) => {
                write!(f, "unknown scenario {s:?} (login-fixed, login-random, profile, nickname, qr)")
            }
            ConfigError::BadAddress(a) => write!(f, "cannot resolve the address {a:?}"),
            ConfigError::BadTemplate(t) => write!(f, "the template {t:?} has no {{i}}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Flags that take a value.
const VALUE_FLAGS: [&str; 16] = [
    "--waits",
    "--approve-rate",
    "--tcpserver-pid",
    "--httpserver-pid",
    "--scenario",
    "--requests",
    "--duration",
    "--concurrency",
    "--accounts",
    "--addr",
    "--username-of",
    "--password-of",
    "--sessions",
    "--timeout-ms",
    "--threads",
    "--save-tokens",
];

impl Config {
    /// Reads `LOADGEN_*` variables through `env`, then the flags in `args`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the bad setting.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut settings: Vec<(String, String)> = Vec::new();
        for flag in VALUE_FLAGS.iter().chain(&["--json"]) {
            let name = format!("LOADGEN_{}", flag.trim_start_matches("--").replace('-', "_").to_uppercase());
            if let Some(value) = env(&name).filter(|v| !v.is_empty()) {
                settings.push((flag.to_string(), value));
            }
        }
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            match flag.as_str() {
                "-h" | "--help" => return Err(ConfigError::HelpRequested),
                "--json" => settings.push((flag, "1".into())),
                f if VALUE_FLAGS.contains(&f) => {
                    let value = args.next().ok_or_else(|| ConfigError::MissingValue(flag.clone()))?;
                    settings.push((flag, value));
                }
                _ => return Err(ConfigError::UnknownFlag(flag)),
            }
        }
        let mut config = Config::defaults()?;
        let mut sessions = None;
        for (flag, value) in settings {
            let number = |min: u64, max: u64| {
                value.parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| {
                    ConfigError::BadNumber { setting: flag.clone(), value: value.clone(), min, max }
                })
            };
            match flag.as_str() {
                "--scenario" => {
                    config.scenario = Scenario::ALL
                        .into_iter()
                        .chain([Scenario::Qr])
                        .find(|s| s.name() == value)
                        .ok_or_else(|| ConfigError::UnknownScenario(value.clone()))?;
                }
                "--requests" => config.requests = number(1, u64::MAX)?,
                "--duration" => config.duration = Some(Duration::from_secs(number(1, 86_400)?)),
                "--concurrency" => config.concurrency = number(1, MAX_CONCURRENCY as u64)? as usize,
                "--accounts" => config.accounts = number(1, 99_999_999)?,
                "--addr" => {
                    config.addr = resolve(&value)?;
                    config.host = value;
                }
                "--username-of" => config.naming.username = template(value)?,
                "--password-of" => config.naming.password = template(value)?,
                "--sessions" => sessions = Some(number(1, MAX_CONCURRENCY as u64)? as usize),
                "--timeout-ms" => config.timeout = Duration::from_millis(number(1, 600_000)?),
                "--threads" => config.threads = number(1, 64)? as usize,
                "--save-tokens" => config.save_tokens = Some(value.into()),
                "--waits" => config.waits = number(1, crate::qr::MAX_WAITS as u64)? as usize,
                "--approve-rate" => config.approve_rate = number(1, 100_000)? as u32,
                "--tcpserver-pid" => config.pids.0 = Some(number(1, u64::from(u32::MAX))? as u32),
                "--httpserver-pid" => config.pids.1 = Some(number(1, u64::from(u32::MAX))? as u32),
                _ => config.json = value != "0",
            }
        }
        config.sessions = sessions.unwrap_or(config.concurrency);
        Ok(config)
    }

    fn defaults() -> Result<Config, ConfigError> {
        let host = "127.0.0.1:1088".to_owned();
        Ok(Config {
            scenario: Scenario::LoginFixed,
            requests: DEFAULT_REQUESTS,
            duration: None,
            concurrency: DEFAULT_CONCURRENCY,
            accounts: DEFAULT_ACCOUNTS,
            addr: resolve(&host)?,
            host,
            naming: Naming { username: "user{i}".into(), password: "pass{i}".into() },
            sessions: DEFAULT_CONCURRENCY,
            timeout: DEFAULT_TIMEOUT,
            threads: 1,
            json: false,
            save_tokens: None,
            waits: crate::qr::DEFAULT_WAITS,
            approve_rate: crate::qr::DEFAULT_APPROVE_RATE,
            pids: (None, None),
        })
    }
}

fn resolve(addr: &str) -> Result<SocketAddr, ConfigError> {
    addr.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| ConfigError::BadAddress(addr.into()))
}

fn template(value: String) -> Result<String, ConfigError> {
    if value.contains("{i}") { Ok(value) } else { Err(ConfigError::BadTemplate(value)) }
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
    fn defaults_are_the_original_benchmark() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.scenario, Scenario::LoginFixed);
        assert_eq!((c.requests, c.concurrency, c.sessions, c.accounts), (50_000, 200, 200, 10_000_000));
        assert_eq!(c.addr, "127.0.0.1:1088".parse().unwrap());
        assert_eq!(c.naming.password(3), "pass00000003");
        assert!(!c.json);
    }

    #[test]
    fn flags_and_environment_combine_with_flags_last() {
        let c = parse(
            &["--scenario", "profile", "--concurrency", "2000", "--json"],
            &[("LOADGEN_CONCURRENCY", "5"), ("LOADGEN_DURATION", "10")],
        )
        .unwrap();
        assert_eq!((c.scenario, c.concurrency, c.sessions), (Scenario::Profile, 2000, 2000));
        assert_eq!(c.duration, Some(Duration::from_secs(10)));
        assert!(c.json);
    }

    #[test]
    fn bad_settings_are_named() {
        assert_eq!(parse(&["--scenario", "x"], &[]).unwrap_err(), ConfigError::UnknownScenario("x".into()));
        assert_eq!(parse(&["--password-of", "pw"], &[]).unwrap_err(), ConfigError::BadTemplate("pw".into()));
        assert_eq!(parse(&["--threads"], &[]).unwrap_err(), ConfigError::MissingValue("--threads".into()));
        assert!(matches!(parse(&["--concurrency", "0"], &[]).unwrap_err(), ConfigError::BadNumber { .. }));
        assert!(matches!(parse(&["--addr", "nowhere"], &[]).unwrap_err(), ConfigError::BadAddress(_)));
        assert_eq!(parse(&["-x"], &[]).unwrap_err(), ConfigError::UnknownFlag("-x".into()));
    }

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(parse(&["--scenario", s.name()], &[]).unwrap().scenario, s);
        }
        assert!(Scenario::LoginRandom.random() && !Scenario::LoginFixed.random());
    }
}
