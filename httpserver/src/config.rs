//! The front end's settings: command-line flags, each with an environment variable
//! behind it and a default behind that.
//!
//! Flags win over the environment so that a test or an operator can override one
//! setting without clearing the rest. Every numeric setting is checked for a sane
//! range here, once, so the rest of the server can trust it.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::balancer::MAX_BACKENDS;
use crate::body_budget::MAX_BODY_BYTES_IN_FLIGHT;
use crate::metrics_allow::MetricsAllow;
use crate::proxy_protocol::TrustedProxies;
use crate::request::MAX_UPLOAD_BODY_LEN;

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to accept HTTP connections: loopback unless set otherwise.
    pub listen: SocketAddr,
    /// `host:port` of each tcpserver (1 to [`MAX_BACKENDS`], no two the same),
    /// in the order given; each resolved again at each connect so a restarted
    /// back end on another address is found. Calls are spread over them
    /// ([`crate::balancer`]).
    pub backends: Vec<String>,
    /// RPC connections to tcpserver, each shared by up to
    /// [`crate::rpc_pool::MAX_CALLS_PER_CONNECTION`] calls at once.
    pub rpc_pool_size: usize,
    /// Longest one RPC may take.
    pub rpc_timeout: Duration,
    /// The file holding the secret each RPC connection proves to tcpserver
    /// (the same file as tcpserver's `--rpc-secret-file`).
    pub rpc_secret_file: PathBuf,
    /// Most HTTP connections served at once; beyond it clients get a quick 503.
    pub max_connections: usize,
    /// Most of those one client network (an IPv4 address, an IPv6 /64) may
    /// hold; beyond it that client gets the same quick 503. A value at or over
    /// `max_connections` leaves only the global cap.
    pub max_connections_per_addr: usize,
    /// Bytes of the upload budget
    /// ([`crate::body_budget::MAX_BODY_BYTES_IN_FLIGHT`]) one client network
    /// may hold at once; a large body past it is refused with 503.
    pub upload_budget_per_addr: usize,
    /// Root of `/static/...`: the stylesheet, the icon, the script (pictures,
    /// under `/static/avatars/`, come from tcpserver: [`crate::avatar_cache`]).
    pub static_dir: PathBuf,
    /// Bytes of pictures kept in memory ([`crate::avatar_cache`]); 0 keeps none.
    pub avatar_cache_bytes: u64,
    /// Where the page templates live.
    pub html_dir: PathBuf,
    /// Add `Secure` to cookies (set when a TLS proxy sits in front).
    pub secure_cookies: bool,
    /// How long a request head may take to arrive once its first byte came.
    pub head_timeout: Duration,
    /// How long a kept-alive connection may sit idle before it is closed.
    pub idle_timeout: Duration,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// `--log-format` / `LOG_FORMAT`: text or one JSON object a line.
    pub log_format: hostsupport::log::Format,
    /// `--access-log` / `ACCESS_LOG`: a line for every request answered (on by default).
    pub access_log: bool,
    /// `--metrics-allow` / `METRICS_ALLOW`: the client addresses `/metrics` answers.
    pub metrics_allow: MetricsAllow,
    /// RPC connections of their own for scan-to-log-in long polls, so that
    /// parked waits never take the places of ordinary calls: each holds up to
    /// [`crate::rpc_pool::MAX_CALLS_PER_CONNECTION`] waits.
    pub qr_rpc_pool_size: usize,
    /// How long one long poll is held (at most tcpserver's 25 s).
    pub qr_wait: Duration,
    /// `--trusted-proxy` / `TRUSTED_PROXIES`: the load balancers whose
    /// connections start with a PROXY protocol v2 header naming the client
    /// ([`crate::proxy_protocol`]); none by default.
    pub trusted_proxies: TrustedProxies,
}

/// Why the command line or environment could not be turned into a [`Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A flag this program does not know.
    UnknownFlag(String),
    /// A flag that needs a value came last.
    MissingValue(&'static str),
    /// A value that does not parse or is out of range.
    BadValue {
        /// The flag (or its environment variable).
        setting: &'static str,
        /// What was given.
        value: String,
        /// What is expected.
        expected: &'static str,
    },
    /// `--help` was asked for; the caller prints [`USAGE`].
    HelpRequested,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::UnknownFlag(flag) => write!(f, "unknown flag {flag} (see --help)"),
            ConfigError::MissingValue(flag) => write!(f, "{flag} needs a value"),
            ConfigError::BadValue { setting, value, expected } => {
                write!(f, "{setting}: {value:?} is not {expected}")
            }
            ConfigError::HelpRequested => f.write_str("help requested"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The `--help` text.
pub const USAGE: &str = "\
usage: httpserver [flags]   (each flag can also be set by the environment variable shown)

  --listen ADDR           HTTPSERVER_LISTEN     [127.0.0.1:1088] this machine only;
                                   0.0.0.0:1088 (or [::]:1088) serves other machines
  --backend HOST:PORT[,HOST:PORT...]  BACKEND_ADDR  [127.0.0.1:1099]
                          tcpservers to spread calls over (at most 16)
  --rpc-pool N            RPC_POOL_SIZE         [16]     shared connections to tcpserver
  --rpc-timeout-ms MS     RPC_TIMEOUT_MS        [5000]   per call
  --rpc-secret-file PATH  RPC_SECRET_FILE       [run/secrets/rpc_secret]  as tcpserver's, >= 16 bytes
  --max-connections N     HTTP_MAX_CONNECTIONS  [4096]   beyond it: 503 + Retry-After
  --max-connections-per-addr N    HTTP_MAX_CONNECTIONS_PER_ADDR    [256]
                          of those, per client IPv4 address or IPv6 /64 (behind a
                          reverse proxy: --trusted-proxy, or raise it to --max-connections)
  --upload-budget-per-addr-mib N  HTTP_UPLOAD_BUDGET_PER_ADDR_MIB  [16]
                          MiB of upload bodies in flight per client address (3 to
                          256, of 256 MiB in all); past it: 503 + Retry-After
  --static-dir DIR        STATIC_DIR            [static]
  --avatar-cache-mib N    AVATAR_CACHE_MIB      [64]     MiB of pictures kept in memory
                          (0 to 4096; 0 asks tcpserver for every one)
  --html-dir DIR          HTML_DIR              [html]
  --secure-cookies        SECURE_COOKIES=1      [off]    add Secure to cookies
  --head-timeout-ms MS    HEAD_TIMEOUT_MS       [10000]  request head must arrive within
  --idle-timeout-ms MS    IDLE_TIMEOUT_MS       [30000]  idle keep-alive connections close
  --body-timeout-ms MS    BODY_TIMEOUT_MS       [30000]  request body must arrive within
  --log-format FMT        LOG_FORMAT            [text]   log lines as text or json
  --access-log on|off     ACCESS_LOG            [on]     a line for every request answered
  --metrics-allow LIST    METRICS_ALLOW         [loopback]  who may GET /metrics: any, or
                          addresses and CIDR blocks (loopback among them), commas between
  --qr-rpc-pool N         QR_RPC_POOL_SIZE      [48]     connections to tcpserver for
                          scan-to-log-in long polls only (256 waits each)
  --qr-wait-ms MS         QR_WAIT_MS            [25000]  one long poll is held at most (1 to 25000)
  --trusted-proxy LIST    TRUSTED_PROXIES       [none]   load balancers (addresses, CIDR blocks,
                          loopback; at most 32) whose connections must start with a PROXY
                          protocol v2 header (HAProxy send-proxy-v2) naming the client
";

/// One setting: its flag, its environment variable, and its default.
struct Setting {
    flag: &'static str,
    env: &'static str,
    default: &'static str,
}

/// Loopback: the demo and benchmark data (`./run.sh` seeds ten million accounts
/// whose passwords follow a documented pattern) must not be served to other
/// machines by accident. Serving them is a deliberate `--listen 0.0.0.0:1088`.
const LISTEN: Setting = Setting { flag: "--listen", env: "HTTPSERVER_LISTEN", default: "127.0.0.1:1088" };
const BACKEND: Setting = Setting { flag: "--backend", env: "BACKEND_ADDR", default: "127.0.0.1:1099" };
const RPC_POOL: Setting = Setting { flag: "--rpc-pool", env: "RPC_POOL_SIZE", default: "16" };
const RPC_TIMEOUT: Setting = Setting { flag: "--rpc-timeout-ms", env: "RPC_TIMEOUT_MS", default: "5000" };
const RPC_SECRET_FILE: Setting =
    Setting { flag: "--rpc-secret-file", env: "RPC_SECRET_FILE", default: "run/secrets/rpc_secret" };
const MAX_CONNECTIONS: Setting =
    Setting { flag: "--max-connections", env: "HTTP_MAX_CONNECTIONS", default: "4096" };
/// 256, a sixteenth of the default cap, so that one address can hold at most a
/// sixteenth of the slots while the others are served. A browser opens at most
/// six connections to a site, so that is forty people behind one NAT with every
/// connection busy at once, and far more in practice, as kept-alive connections
/// close after 30 s idle. Behind a reverse proxy every client has the proxy's
/// address, unless the proxy sends the PROXY protocol (`--trusted-proxy`):
/// without it, raise this to `--max-connections`.
const MAX_CONNECTIONS_PER_ADDR: Setting =
    Setting { flag: "--max-connections-per-addr", env: "HTTP_MAX_CONNECTIONS_PER_ADDR", default: "256" };
/// 16 MiB, [`crate::body_budget::DEFAULT_BODY_BYTES_PER_ADDR`] (which says why).
const UPLOAD_BUDGET_PER_ADDR: Setting =
    Setting { flag: "--upload-budget-per-addr-mib", env: "HTTP_UPLOAD_BUDGET_PER_ADDR_MIB", default: "16" };
const STATIC_DIR: Setting = Setting { flag: "--static-dir", env: "STATIC_DIR", default: "static" };
/// 64 MiB: a few thousand pictures of a typical 10 to 30 KB (the pictures on
/// the pages people are looking at now), or 32 at the 2 MiB cap, on a
/// process whose other memory is thread stacks and bounded buffers.
const AVATAR_CACHE: Setting = Setting { flag: "--avatar-cache-mib", env: "AVATAR_CACHE_MIB", default: "64" };
const HTML_DIR: Setting = Setting { flag: "--html-dir", env: "HTML_DIR", default: "html" };
const SECURE_COOKIES: Setting = Setting { flag: "--secure-cookies", env: "SECURE_COOKIES", default: "0" };
const HEAD_TIMEOUT: Setting = Setting { flag: "--head-timeout-ms", env: "HEAD_TIMEOUT_MS", default: "10000" };
const IDLE_TIMEOUT: Setting = Setting { flag: "--idle-timeout-ms", env: "IDLE_TIMEOUT_MS", default: "30000" };
const BODY_TIMEOUT: Setting = Setting { flag: "--body-timeout-ms", env: "BODY_TIMEOUT_MS", default: "30000" };
const LOG_FORMAT: Setting = Setting { flag: "--log-format", env: "LOG_FORMAT", default: "text" };
const ACCESS_LOG: Setting = Setting { flag: "--access-log", env: "ACCESS_LOG", default: "on" };
/// Loopback only: the metrics tell an outsider the traffic and error rates.
const METRICS_ALLOW: Setting = Setting { flag: "--metrics-allow", env: "METRICS_ALLOW", default: "loopback" };

/// 48 connections of 256 waits: 12,288 desktops waiting at once, above the
/// 10,000 this is built for, on 48 of tcpserver's 4,096 connection slots.
const QR_RPC_POOL: Setting = Setting { flag: "--qr-rpc-pool", env: "QR_RPC_POOL_SIZE", default: "48" };
const QR_WAIT: Setting = Setting { flag: "--qr-wait-ms", env: "QR_WAIT_MS", default: "25000" };
/// None: without a proxy in front nothing changes, and a client that sends
/// a PROXY header is refused like any other request that is not HTTP.
const TRUSTED_PROXIES: Setting = Setting { flag: "--trusted-proxy", env: "TRUSTED_PROXIES", default: "none" };

/// Longest long poll: tcpserver's own cap (`qr_waits::MAX_WAIT`).
pub const MAX_QR_WAIT_MS: u64 = 25_000;

/// Settings that take a value, in `--help` order. `--secure-cookies` is a switch.
const VALUED: [&Setting; 20] = [
    &LISTEN,
    &BACKEND,
    &RPC_POOL,
    &RPC_TIMEOUT,
    &RPC_SECRET_FILE,
    &MAX_CONNECTIONS,
    &MAX_CONNECTIONS_PER_ADDR,
    &UPLOAD_BUDGET_PER_ADDR,
    &STATIC_DIR,
    &AVATAR_CACHE,
    &HTML_DIR,
    &HEAD_TIMEOUT,
    &IDLE_TIMEOUT,
    &BODY_TIMEOUT,
    &LOG_FORMAT,
    &ACCESS_LOG,
    &METRICS_ALLOW,
    &QR_RPC_POOL,
    &QR_WAIT,
    &TRUSTED_PROXIES,
];

/// Largest RPC pool: each connection is a socket and a slot in tcpserver's table.
const MAX_RPC_POOL: usize = 4096;
/// Largest connection cap: each HTTP connection is a thread with its own stack.
const MAX_HTTP_CONNECTIONS: usize = 100_000;
/// Longest timeout accepted for any setting: ten minutes is already generous.
const MAX_TIMEOUT_MS: u64 = 600_000;
/// Largest `--avatar-cache-mib`: 4 GiB of pictures is more than a front end
/// should hold; past it, the database's own cache serves them better.
const MAX_AVATAR_CACHE_MIB: u64 = 4096;
/// The unit of `--upload-budget-per-addr-mib` and `--avatar-cache-mib`.
const MIB: usize = 1024 * 1024;
/// Smallest per-address upload budget, in MiB: one full-size upload
/// ([`MAX_UPLOAD_BODY_LEN`], 2 MiB + 64 KiB) must fit, or no upload could ever succeed.
const MIN_UPLOAD_BUDGET_PER_ADDR_MIB: usize = MAX_UPLOAD_BODY_LEN.div_ceil(MIB);
/// Largest per-address upload budget, in MiB: all of [`MAX_BODY_BYTES_IN_FLIGHT`];
/// more could never be held.
const MAX_UPLOAD_BUDGET_PER_ADDR_MIB: usize = MAX_BODY_BYTES_IN_FLIGHT / MIB;

impl Config {
    /// Reads the settings from `args` (without the program name), falling back to
    /// `env` (a lookup such as `|k| std::env::var(k).ok()`) and then to defaults.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first bad flag or value.
    pub fn parse(
        args: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut given: Vec<(&'static str, String)> = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(ConfigError::HelpRequested);
            }
            if arg == SECURE_COOKIES.flag {
                given.push((SECURE_COOKIES.flag, "1".to_owned()));
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            let setting = VALUED.iter().find(|s| s.flag == name).ok_or(ConfigError::UnknownFlag(arg))?;
            let value = match inline {
                Some(value) => value,
                None => args.next().ok_or(ConfigError::MissingValue(setting.flag))?,
            };
            given.push((setting.flag, value));
        }
        let value = |s: &Setting| -> String {
            given
                .iter()
                .rev()
                .find(|(flag, _)| *flag == s.flag)
                .map(|(_, v)| v.clone())
                .or_else(|| env(s.env))
                .unwrap_or_else(|| s.default.to_owned())
        };

        Ok(Config {
            listen: parse_with(&LISTEN, value(&LISTEN), "an address such as 127.0.0.1:1088")?,
            backends: backend_list(&BACKEND, value(&BACKEND))?,
            rpc_pool_size: number(&RPC_POOL, value(&RPC_POOL), 1, MAX_RPC_POOL as u64)? as usize,
            rpc_timeout: millis(&RPC_TIMEOUT, value(&RPC_TIMEOUT))?,
            rpc_secret_file: PathBuf::from(non_empty(&RPC_SECRET_FILE, value(&RPC_SECRET_FILE))?),
            max_connections: number(
                &MAX_CONNECTIONS,
                value(&MAX_CONNECTIONS),
                1,
                MAX_HTTP_CONNECTIONS as u64,
            )? as usize,
            max_connections_per_addr: number(
                &MAX_CONNECTIONS_PER_ADDR,
                value(&MAX_CONNECTIONS_PER_ADDR),
                1,
                MAX_HTTP_CONNECTIONS as u64,
            )? as usize,
            upload_budget_per_addr: number(
                &UPLOAD_BUDGET_PER_ADDR,
                value(&UPLOAD_BUDGET_PER_ADDR),
                MIN_UPLOAD_BUDGET_PER_ADDR_MIB as u64,
                MAX_UPLOAD_BUDGET_PER_ADDR_MIB as u64,
            )? as usize
                * MIB,
            static_dir: PathBuf::from(non_empty(&STATIC_DIR, value(&STATIC_DIR))?),
            avatar_cache_bytes: number(&AVATAR_CACHE, value(&AVATAR_CACHE), 0, MAX_AVATAR_CACHE_MIB)?
                * MIB as u64,
            html_dir: PathBuf::from(non_empty(&HTML_DIR, value(&HTML_DIR))?),
            secure_cookies: switch(&SECURE_COOKIES, value(&SECURE_COOKIES))?,
            head_timeout: millis(&HEAD_TIMEOUT, value(&HEAD_TIMEOUT))?,
            idle_timeout: millis(&IDLE_TIMEOUT, value(&IDLE_TIMEOUT))?,
            body_timeout: millis(&BODY_TIMEOUT, value(&BODY_TIMEOUT))?,
            log_format: hostsupport::log::Format::parse(value(&LOG_FORMAT).trim())
                .ok_or_else(|| bad(&LOG_FORMAT, value(&LOG_FORMAT), "text or json"))?,
            access_log: match value(&ACCESS_LOG).trim() {
                "on" => true,
                "off" => false,
                _ => return Err(bad(&ACCESS_LOG, value(&ACCESS_LOG), "on or off")),
            },
            metrics_allow: MetricsAllow::parse(&value(&METRICS_ALLOW)).ok_or_else(|| {
                bad(&METRICS_ALLOW, value(&METRICS_ALLOW), "any, or addresses and CIDR blocks")
            })?,
            qr_rpc_pool_size: number(&QR_RPC_POOL, value(&QR_RPC_POOL), 1, MAX_RPC_POOL as u64)? as usize,
            qr_wait: number(&QR_WAIT, value(&QR_WAIT), 1, MAX_QR_WAIT_MS).map(Duration::from_millis)?,
            trusted_proxies: TrustedProxies::parse(&value(&TRUSTED_PROXIES)).ok_or_else(|| {
                bad(
                    &TRUSTED_PROXIES,
                    value(&TRUSTED_PROXIES),
                    "none, or addresses, CIDR blocks and loopback (never any)",
                )
            })?,
        })
    }
}

fn bad(setting: &Setting, value: String, expected: &'static str) -> ConfigError {
    ConfigError::BadValue { setting: setting.flag, value, expected }
}

fn parse_with<T: std::str::FromStr>(
    setting: &Setting,
    value: String,
    expected: &'static str,
) -> Result<T, ConfigError> {
    value.trim().parse().map_err(|_| bad(setting, value, expected))
}

fn non_empty(setting: &Setting, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        return Err(bad(setting, value, "a non-empty value"));
    }
    Ok(value)
}

/// `host:port[,host:port...]`: 1 to [`MAX_BACKENDS`] non-empty entries, no
/// two the same (each is a metrics label and a pool of its own).
fn backend_list(setting: &Setting, value: String) -> Result<Vec<String>, ConfigError> {
    let list: Vec<String> = value.split(',').map(|entry| entry.trim().to_owned()).collect();
    let well_formed = |entry: &String| {
        entry.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    };
    let distinct = list.iter().enumerate().all(|(i, entry)| !list[..i].contains(entry));
    if list.is_empty() || list.len() > MAX_BACKENDS || !list.iter().all(well_formed) || !distinct {
        return Err(bad(setting, value, "1 to 16 distinct HOST:PORT addresses, commas between"));
    }
    Ok(list)
}

fn number(setting: &Setting, value: String, min: u64, max: u64) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(bad(setting, value, "a whole number in the allowed range")),
    }
}

fn millis(setting: &Setting, value: String) -> Result<Duration, ConfigError> {
    number(setting, value, 1, MAX_TIMEOUT_MS).map(Duration::from_millis)
}

fn switch(setting: &Setting, value: String) -> Result<bool, ConfigError> {
    match value.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(bad(setting, value, "1 or 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::parse(args.iter().map(|s| s.to_string()), move |k| {
            env.iter().find(|(name, _)| name == k).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_match_the_agreed_interface() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1088".parse().unwrap());
        assert!(c.listen.ip().is_loopback(), "other machines are served only when asked");
        assert_eq!(c.backends, ["127.0.0.1:1099"]);
        assert!(c.trusted_proxies.is_empty(), "no PROXY header is taken from anyone by default");
        assert_eq!(c.static_dir, PathBuf::from("static"));
        assert_eq!(c.html_dir, PathBuf::from("html"));
        assert!(!c.secure_cookies);
        assert_eq!(c.rpc_pool_size, 16);
        assert_eq!((c.max_connections, c.max_connections_per_addr), (4096, 256));
        assert_eq!(c.upload_budget_per_addr, crate::body_budget::DEFAULT_BODY_BYTES_PER_ADDR);
        assert_eq!(c.rpc_secret_file, PathBuf::from("run/secrets/rpc_secret"));
    }

    #[test]
    fn per_address_limits_are_settings_within_their_ranges() {
        let c = parse(
            &["--max-connections-per-addr", "4096"],
            &[("HTTP_UPLOAD_BUDGET_PER_ADDR_MIB", "256"), ("HTTP_MAX_CONNECTIONS_PER_ADDR", "7")],
        )
        .unwrap();
        assert_eq!((c.max_connections_per_addr, c.upload_budget_per_addr), (4096, MAX_BODY_BYTES_IN_FLIGHT));
        assert_eq!(MIN_UPLOAD_BUDGET_PER_ADDR_MIB, 3, "one full upload fits in the smallest share");
        let c = parse(&["--upload-budget-per-addr-mib", "3"], &[]).unwrap();
        assert!(c.upload_budget_per_addr >= MAX_UPLOAD_BODY_LEN);
        for (flag, value) in [
            ("--upload-budget-per-addr-mib", "2"),
            ("--upload-budget-per-addr-mib", "257"),
            ("--max-connections-per-addr", "0"),
        ] {
            assert!(
                matches!(parse(&[flag, value], &[]), Err(ConfigError::BadValue { setting, .. }) if setting == flag),
                "{flag} {value}"
            );
        }
    }

    #[test]
    fn the_picture_cache_is_a_setting_in_mib_within_its_range() {
        assert_eq!(parse(&[], &[]).unwrap().avatar_cache_bytes, 64 << 20);
        assert_eq!(parse(&["--avatar-cache-mib", "0"], &[]).unwrap().avatar_cache_bytes, 0);
        assert_eq!(parse(&[], &[("AVATAR_CACHE_MIB", "4096")]).unwrap().avatar_cache_bytes, 4096 << 20);
        for value in ["4097", "-1", "lots"] {
            assert!(
                matches!(parse(&["--avatar-cache-mib", value], &[]), Err(ConfigError::BadValue { .. })),
                "{value}"
            );
        }
    }

    #[test]
    fn log_format_and_metrics_allow_are_settings() {
        let c = parse(&[], &[]).unwrap();
        assert_eq!(c.log_format, hostsupport::log::Format::Text);
        assert!(c.metrics_allow.permits("127.0.0.1".parse().unwrap()));
        assert!(!c.metrics_allow.permits("192.0.2.1".parse().unwrap()));
        let c = parse(&["--log-format", "json", "--metrics-allow", "192.0.2.0/24"], &[]).unwrap();
        assert_eq!(c.log_format, hostsupport::log::Format::Json);
        assert!(c.metrics_allow.permits("192.0.2.1".parse().unwrap()));
        assert!(!c.metrics_allow.permits("127.0.0.1".parse().unwrap()));
        assert!(parse(&["--log-format", "xml"], &[]).is_err());
        assert!(parse(&[], &[("METRICS_ALLOW", "10.0.0.0/99")]).is_err());
    }

    #[test]
    fn the_rpc_secret_file_comes_from_its_flag_or_variable() {
        let env = [("RPC_SECRET_FILE", "/env/secret")];
        assert_eq!(parse(&[], &env).unwrap().rpc_secret_file, PathBuf::from("/env/secret"));
        let flag = parse(&["--rpc-secret-file=/flag/secret"], &env).unwrap();
        assert_eq!(flag.rpc_secret_file, PathBuf::from("/flag/secret"));
    }

    #[test]
    fn flags_beat_environment_which_beats_defaults() {
        let c = parse(
            &["--listen", "127.0.0.1:0", "--rpc-pool=8", "--secure-cookies"],
            &[("HTTPSERVER_LISTEN", "127.0.0.1:9"), ("RPC_TIMEOUT_MS", "250"), ("RPC_POOL_SIZE", "3")],
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(c.rpc_pool_size, 8);
        assert_eq!(c.rpc_timeout, Duration::from_millis(250));
        assert!(c.secure_cookies);
    }

    #[test]
    fn backend_takes_a_list_of_distinct_addresses_up_to_the_bound() {
        let c = parse(&["--backend", "127.0.0.1:1101, 127.0.0.1:1102"], &[]).unwrap();
        assert_eq!(c.backends, ["127.0.0.1:1101", "127.0.0.1:1102"]);
        let env = parse(&[], &[("BACKEND_ADDR", "tcp-a:1099,tcp-b:1099")]).unwrap();
        assert_eq!(env.backends, ["tcp-a:1099", "tcp-b:1099"]);
        let sixteen: Vec<String> = (0..16).map(|i| format!("127.0.0.1:{}", 2000 + i)).collect();
        assert_eq!(parse(&["--backend", &sixteen.join(",")], &[]).unwrap().backends.len(), 16);
        let seventeen: Vec<String> = (0..17).map(|i| format!("127.0.0.1:{}", 2000 + i)).collect();
        for bad in [
            seventeen.join(","),
            "127.0.0.1:1101,127.0.0.1:1101".to_owned(),
            "127.0.0.1:1101,".to_owned(),
            "127.0.0.1".to_owned(),
            ":1099".to_owned(),
            "127.0.0.1:99999".to_owned(),
        ] {
            assert!(
                matches!(
                    parse(&["--backend", &bad], &[]),
                    Err(ConfigError::BadValue { setting: "--backend", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_never_any() {
        let c = parse(&["--trusted-proxy", "127.0.0.1,10.1.0.0/16"], &[]).unwrap();
        assert!(c.trusted_proxies.trusts("127.0.0.1".parse().unwrap()));
        assert!(c.trusted_proxies.trusts("10.1.2.3".parse().unwrap()));
        assert!(!c.trusted_proxies.trusts("127.0.0.2".parse().unwrap()));
        let env = parse(&[], &[("TRUSTED_PROXIES", "loopback")]).unwrap();
        assert!(env.trusted_proxies.trusts("127.0.0.9".parse().unwrap()));
        for bad in ["any", "127.0.0.1,any", "10.0.0.0/33", "nowhere"] {
            assert!(
                matches!(
                    parse(&["--trusted-proxy", bad], &[]),
                    Err(ConfigError::BadValue { setting: "--trusted-proxy", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_input_names_the_setting() {
        assert_eq!(parse(&["--nope"], &[]).unwrap_err(), ConfigError::UnknownFlag("--nope".into()));
        assert_eq!(parse(&["--backend"], &[]).unwrap_err(), ConfigError::MissingValue("--backend"));
        assert!(matches!(
            parse(&["--rpc-pool", "0"], &[]).unwrap_err(),
            ConfigError::BadValue { setting: "--rpc-pool", .. }
        ));
        assert!(matches!(
            parse(&[], &[("HTTPSERVER_LISTEN", "nowhere")]).unwrap_err(),
            ConfigError::BadValue { setting: "--listen", .. }
        ));
        assert_eq!(parse(&["--help"], &[]).unwrap_err(), ConfigError::HelpRequested);
    }
}
