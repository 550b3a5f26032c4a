//! A real Prometheus (Debian's package, which `e2e/tests/prometheus/setup.sh`
//! installs from `./test.sh`) scrapes both servers of a test stack: the
//! targets are up, and the request counters and histogram counts it stored
//! are exactly the traffic this test sent.

mod util;

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use util::{Http, Stack, urlencode};

const PASSWORD: &str = "correct horse battery";

/// Where Debian installs the server.
const PROMETHEUS: &str = "/usr/bin/prometheus";

/// How long the stored values may take to reach what was sent: a few scrapes
/// at one a second, with room for a loaded machine.
const SETTLE: Duration = Duration::from_secs(60);

/// A private Prometheus, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Prometheus {
    /// Starts Prometheus on a free port with a config that scrapes `targets`
    /// (job name, `host:port`) every second, its data under `dir`.
    fn start(dir: &std::path::Path, targets: &[(&str, SocketAddr)]) -> Prometheus {
        assert!(
            std::path::Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is missing: run e2e/tests/prometheus/setup.sh (./test.sh does)"
        );
        let addr = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port");
        let mut config =
            String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: ['{target}']\n"
            ));
        }
        let config_file = dir.join("prometheus.yml");
        fs::write(&config_file, config).expect("write config");
        let log = dir.join("prometheus.log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, addr, log };
        let deadline = Instant::now() + SETTLE;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "prometheus never listened:\n{}", prometheus.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
        prometheus
    }

    fn logs(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of an instant query that yields one series, if it does.
    fn value(&self, query: &str) -> Option<f64> {
        let reply = Http::new(self.addr).get(&format!("/api/v1/query?{}", urlencode(&[("query", query)])));
        let body: Value = serde_json::from_slice(&reply.body).ok()?;
        let result = body["data"]["result"].as_array()?;
        match result.as_slice() {
            [one] => one["value"][1].as_str()?.parse().ok(),
            _ => None,
        }
    }

    /// Waits until every query has its expected value; panics with the values
    /// seen last if they do not within [`SETTLE`].
    fn wait_for(&self, expected: &[(&str, f64)]) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let seen: Vec<Option<f64>> = expected.iter().map(|(q, _)| self.value(q)).collect();
            if seen.iter().zip(expected).all(|(got, (_, want))| *got == Some(*want)) {
                return;
            }
            if Instant::now() > deadline {
                let table: Vec<String> = expected
                    .iter()
                    .zip(&seen)
                    .map(|((q, want), got)| format!("{q}: want {want}, got {got:?}"))
                    .collect();
                panic!("Prometheus never stored the traffic sent:\n{}\n{}", table.join("\n"), self.logs());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tcpserver's metrics address, from its log line `metrics on http://ADDR/metrics`.
fn backend_metrics_addr(stack: &Stack) -> SocketAddr {
    let log = fs::read_to_string(stack.dir.join("tcpserver.log")).unwrap_or_default();
    log.lines()
        .find_map(|line| line.split("metrics on http://").nth(1)?.strip_suffix("/metrics")?.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in tcpserver's log:\n{log}"))
}

#[test]
fn prometheus_scrapes_both_servers_and_stores_exactly_the_traffic_sent() {
    let stack = Stack::start();
    let dir = stack.dir.join("prometheus");
    fs::create_dir_all(&dir).expect("prometheus dir");
    let prometheus =
        Prometheus::start(&dir, &[("httpserver", stack.addr), ("tcpserver", backend_metrics_addr(&stack))]);

    let (good, bad, reads) = (10, 3, 12);
    let username = stack.sign_up("scraped", PASSWORD);
    let mut http = stack.client();
    let mut token = String::new();
    for _ in 0..good {
        let reply = http.api_post("/login", &[("username", &username), ("password", PASSWORD)]);
        assert_eq!(reply.status, 200, "{}", reply.text());
        token = reply.json()["data"]["token"].as_str().expect("token").to_owned();
    }
    for _ in 0..bad {
        let reply = http.api_post("/login", &[("username", &username), ("password", "not the password")]);
        assert_eq!(reply.status, 401, "{}", reply.text());
    }
    let auth = format!("Bearer {token}");
    for _ in 0..reads {
        assert_eq!(http.request("GET", "/profile", &[("Authorization", &auth)], b"").status, 200);
    }

    let logins = f64::from(good + bad);
    prometheus.wait_for(&[
        ("up{job=\"httpserver\"}", 1.0),
        ("up{job=\"tcpserver\"}", 1.0),
        ("usermgmt_http_requests_total{endpoint=\"/signUp\",status=\"201\"}", 1.0),
        ("usermgmt_http_requests_total{endpoint=\"/login\",status=\"200\"}", f64::from(good)),
        ("usermgmt_http_requests_total{endpoint=\"/login\",status=\"401\"}", f64::from(bad)),
        ("usermgmt_http_requests_total{endpoint=\"/profile\",status=\"200\"}", f64::from(reads)),
        ("usermgmt_http_request_duration_seconds_count{endpoint=\"/login\"}", logins),
        ("sum(usermgmt_http_request_duration_seconds_bucket{endpoint=\"/login\",le=\"+Inf\"})", logins),
        ("usermgmt_frames_received_total{type=\"Login\"}", logins),
        ("usermgmt_operation_duration_seconds_count{operation=\"log_in\",outcome=\"ok\"}", f64::from(good)),
        (
            "usermgmt_operation_duration_seconds_count{operation=\"log_in\",outcome=\"rejected\"}",
            f64::from(bad),
        ),
        (
            "usermgmt_operation_duration_seconds_count{operation=\"get_profile\",outcome=\"ok\"}",
            f64::from(reads),
        ),
        ("usermgmt_sessions_created_total", f64::from(good)),
        ("usermgmt_errors_total{name=\"BadCredentials\"}", f64::from(bad)),
        ("usermgmt_rpc_calls_total", f64::from(1 + good + bad + reads)),
    ]);
    // An operator's queries from the README answer too, once a rate has two
    // scrapes to compare.
    let deadline = Instant::now() + SETTLE;
    for query in [
        "sum(rate(usermgmt_http_requests_total{endpoint=\"/login\"}[1m]))",
        "histogram_quantile(0.99, sum by (le) (rate(usermgmt_http_request_duration_seconds_bucket{endpoint=\"/login\"}[1m])))",
    ] {
        while prometheus.value(query).is_none() {
            assert!(Instant::now() < deadline, "{query} has no value");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
