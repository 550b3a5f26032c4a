//! The small fleet for the fleet tests: the topology of `./run.sh cluster`
//! (HAProxy, httpserver ×2, tcpserver ×2, a Redis Cluster, a three-node Galera
//! cluster) started by the same script, `scripts/cluster/fleet.sh`, once per
//! test binary, with few accounts, its own ports and its own directory under
//! the target directory, so that it never meets `./run.sh cluster` or the
//! single node.
//!
//! The tests kill its processes by the pids in the files the script writes,
//! and bring them back with `fleet.sh start`, which starts only what is down.
//! Tests that kill something take [`Fleet::exclusive`] first, so two of them
//! never break the fleet at once. The fleet is stopped when the test binary
//! exits (an `atexit` hook); if the binary is killed instead, the next run's
//! [`Fleet::get`] stops what is left before starting afresh.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use super::{httpserver_binary, seed_binary, tcpserver_binary, workspace_root};

pub mod load;
pub mod processes;

/// The fleet's ports start at one of ten bases from here, 100 apart, chosen
/// by the target directory (so that test runs of two checkouts on one machine
/// do not meet), unless `USERMGMT_TEST_FLEET_PORT_BASE` says otherwise.
/// `scripts/cluster/ports.sh` lays them out from the base B: B..B+65, and the
/// Redis cluster bus at B+10060..B+10065. All of 8100..9065 and 18160..19065:
/// below the range the other tests draw their ports from (20000 and up) and
/// apart from `./run.sh cluster`'s.
const FIRST_PORT_BASE: u16 = 8100;

/// Accounts seeded into the test fleet: enough for log-ins by seeded name,
/// few enough to hash in seconds in a debug build.
pub const SEED_ACCOUNTS: u32 = 2000;

/// How long one request may take before the load counts it as failed: past
/// httpserver's RPC timeout (5 s) and the Galera stall of a failover (~5 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The running test fleet.
#[derive(Debug)]
pub struct Fleet {
    /// Its directory (pid files, logs, data).
    pub dir: PathBuf,
    /// The first of its ports.
    pub port_base: u16,
    /// The edge (HAProxy).
    pub edge: SocketAddr,
    /// The application's MySQL password on the fleet's Galera cluster.
    mysql_password: String,
    exclusive: Mutex<()>,
}

/// One Galera node's view of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// `wsrep_local_state_comment`: Synced, Donor/Desynced, Joining, ...
    pub state: String,
    /// `wsrep_cluster_size`.
    pub cluster_size: u32,
}

impl Fleet {
    /// The fleet, started on first use (a minute or so); every later call
    /// returns the same one.
    pub fn get() -> &'static Fleet {
        static FLEET: OnceLock<Fleet> = OnceLock::new();
        FLEET.get_or_init(Fleet::start)
    }

    fn start() -> Fleet {
        // <target>/<profile>/<binary>: the fleet lives in <target>/fleet-test.
        let bin_dir = tcpserver_binary().parent().expect("binary in a directory").to_owned();
        httpserver_binary();
        seed_binary();
        let dir = bin_dir.parent().expect("profile dir in the target dir").join("fleet-test");
        let port_base =
            std::env::var("USERMGMT_TEST_FLEET_PORT_BASE").ok().and_then(|p| p.parse().ok()).unwrap_or_else(
                || FIRST_PORT_BASE + 100 * (fnv1a(dir.as_os_str().as_encoded_bytes()) % 10) as u16,
            );
        fs::create_dir_all(&dir).expect("create the fleet's directory");
        let fleet = Fleet {
            edge: SocketAddr::from(([127, 0, 0, 1], port_base)),
            dir,
            port_base,
            mysql_password: String::new(),
            exclusive: Mutex::new(()),
        };
        // Whatever an earlier, killed run left: its binaries may be older.
        fleet.script("stop", &bin_dir);
        assert!(
            std::net::TcpListener::bind(fleet.edge).is_ok(),
            "port {port_base} is taken (another test fleet?): set USERMGMT_TEST_FLEET_PORT_BASE to a free range"
        );
        fleet.script("start", &bin_dir);
        let _ = FLEET_FOR_EXIT.set((fleet.dir.clone(), port_base, bin_dir));
        // SAFETY: atexit(3) with a function that takes nothing and returns nothing.
        unsafe { libc::atexit(stop_at_exit) };
        let password =
            fs::read_to_string(fleet.dir.join("secrets/mysql_password")).expect("the fleet's secrets");
        Fleet { mysql_password: password.trim().to_owned(), ..fleet }
    }

    /// Runs `scripts/cluster/fleet.sh <command>` on this fleet; panics with its
    /// output if it fails.
    fn script(&self, command: &str, bin_dir: &Path) {
        let output = fleet_command(command, &self.dir, self.port_base, bin_dir)
            .output()
            .unwrap_or_else(|e| panic!("run scripts/cluster/fleet.sh {command}: {e}"));
        assert!(
            output.status.success(),
            "fleet.sh {command} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts whatever of the fleet is not running (a killed process), as
    /// `./run.sh cluster` does when run again; nothing running is restarted.
    pub fn restart_missing(&self) {
        let bin_dir = tcpserver_binary().parent().expect("binary in a directory").to_owned();
        self.script("start", &bin_dir);
    }

    /// Starts whatever is down (a test that failed half-way may have left a
    /// process killed) and waits until Galera is whole again.
    pub fn make_whole(&self, limit: Duration) {
        self.restart_missing();
        self.wait_galera_synced(limit);
    }

    /// A guard for a test that breaks part of the fleet: one such test at a time.
    pub fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.exclusive.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The pid of a process of the fleet: `tcpserver1`, `httpserver2`,
    /// `galera/node3/node`, `haproxy/haproxy`.
    pub fn pid(&self, name: &str) -> u32 {
        let path = self.dir.join(format!("{name}.pid"));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {text:?}"))
    }

    /// The metrics listener of tcpserver `n` (1 or 2).
    /// The address httpserver `n` (1 or 2) listens on (scripts/cluster/ports.sh).
    pub fn httpserver_addr(&self, n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port_base + n))
    }

    pub fn tcpserver_metrics(&self, n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port_base + 12 + n))
    }

    /// The ports of the six Redis Cluster nodes.
    pub fn redis_ports(&self) -> impl Iterator<Item = u16> {
        let first = self.port_base + 60;
        first..first + 6
    }

    /// A Redis node's role (`master`, `slave`), or `None` if it does not answer.
    pub fn redis_role(&self, port: u16) -> Option<String> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).ok()?;
        match role.first()? {
            redis::Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            redis::Value::SimpleString(s) => Some(s.clone()),
            _ => None,
        }
    }

    /// The port of a Redis Cluster master.
    pub fn redis_master(&self) -> u16 {
        self.redis_ports()
            .find(|&port| self.redis_role(port).as_deref() == Some("master"))
            .unwrap_or_else(|| panic!("no Redis master answers:\n{}", self.status()))
    }

    /// The SQL port of Galera node `n` (1..=3).
    pub fn galera_port(&self, n: u32) -> u16 {
        self.port_base + 20 + n as u16
    }

    /// The MySQL address tcpserver uses: HAProxy's, which follows the node
    /// taking writes.
    pub fn mysql_proxy_port(&self) -> u16 {
        self.port_base + 20
    }

    /// A connection as the application's user to `port` (a node, or HAProxy),
    /// over TCP to exactly that port.
    pub fn mysql(&self, port: u16) -> mysql::Result<mysql::Conn> {
        let opts = mysql::OptsBuilder::new()
            .ip_or_hostname(Some("127.0.0.1"))
            .tcp_port(port)
            .user(Some("usermgmt"))
            .pass(Some(self.mysql_password.as_str()))
            .db_name(Some("usermgmt"))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(Duration::from_secs(2)))
            .read_timeout(Some(Duration::from_secs(10)));
        mysql::Conn::new(opts)
    }

    /// The Galera node (1..=3) a new connection through HAProxy reaches: the
    /// one taking writes.
    pub fn writer(&self) -> u32 {
        let mut conn = self.mysql(self.mysql_proxy_port()).expect("MySQL through HAProxy");
        let name: String = conn.query_first("SELECT @@wsrep_node_name").expect("query").expect("a name");
        name.trim_start_matches("node").parse().unwrap_or_else(|_| panic!("node name {name:?}"))
    }

    /// Galera node `n`'s state, or `None` if it does not answer.
    pub fn node_state(&self, n: u32) -> Option<NodeState> {
        let mut conn = self.mysql(self.galera_port(n)).ok()?;
        let rows: Vec<(String, String)> = conn
            .query(
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state_comment', 'wsrep_cluster_size')",
            )
            .ok()?;
        let value = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        Some(NodeState {
            state: value("wsrep_local_state_comment")?,
            cluster_size: value("wsrep_cluster_size")?.parse().ok()?,
        })
    }

    /// How many local transactions Galera node `n` has rolled back for a
    /// conflict with another node's write: failed certification at COMMIT
    /// (`wsrep_local_cert_failures`) or aborted by an arriving write set
    /// (`wsrep_local_bf_aborts`).
    pub fn conflicts(&self, n: u32) -> u64 {
        let mut conn = self.mysql(self.galera_port(n)).expect("MySQL on the node");
        let rows: Vec<(String, u64)> = conn
            .query("SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_cert_failures', 'wsrep_local_bf_aborts')")
            .expect("wsrep status");
        rows.iter().map(|(_, v)| v).sum()
    }

    /// Waits until every Galera node is Synced in a cluster of three.
    pub fn wait_galera_synced(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let want = Some(NodeState { state: "Synced".into(), cluster_size: 3 });
        while !(1..=3).all(|n| self.node_state(n) == want) {
            assert!(
                Instant::now() < deadline,
                "Galera not synced after {limit:?}: {:?}",
                (1..=3).map(|n| self.node_state(n)).collect::<Vec<_>>()
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// The usernames of `names` that Galera node `port` (or HAProxy) has.
    pub fn stored_usernames(&self, port: u16, names: &[String]) -> Vec<String> {
        let mut conn = self.mysql(port).expect("MySQL");
        let mut found = Vec::new();
        for chunk in names.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let rows: Vec<String> = conn
                .exec(format!("SELECT username FROM users WHERE username IN ({marks})"), chunk.to_vec())
                .expect("select usernames");
            found.extend(rows);
        }
        found.sort();
        found
    }

    /// What `fleet.sh status` says (every process, Redis Cluster, Galera), for
    /// failure messages.
    pub fn status(&self) -> String {
        let bin_dir = tcpserver_binary().parent().expect("binary in a directory").to_owned();
        let output =
            fleet_command("status", &self.dir, self.port_base, &bin_dir).output().expect("fleet.sh status");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// FNV-1a, 64 bits: a stable hash of a path, to pick a port base by.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// `scripts/cluster/fleet.sh COMMAND DIR` with the test fleet's settings.
fn fleet_command(command: &str, dir: &Path, port_base: u16, bin_dir: &Path) -> Command {
    let mut cmd = Command::new(workspace_root().join("scripts/cluster/fleet.sh"));
    cmd.arg(command)
        .arg(dir)
        .env("FLEET_PORT_BASE", port_base.to_string())
        .env("FLEET_BIN_DIR", bin_dir)
        .env("FLEET_STATE_DIR", dir)
        .env("SEED_ACCOUNTS", SEED_ACCOUNTS.to_string())
        .env("GALERA_BUFFER_POOL", "128M")
        // A node that is not Synced within three minutes has failed: say so
        // then, not after the default quarter of an hour.
        .env("GALERA_WAIT_SECS", "180")
        .env("REDIS_MAXMEMORY", "256mb")
        // The load comes from one address (the tests'): its per-address
        // shares are raised, as perf/run.sh does (tcpserver reads these).
        .env("SIGNUPS_PER_ADDR", "1000000000/60")
        .env("LOGINS_PER_ADDR", "1000000000/600")
        .env("LOGINS_PER_USER", "1000000000/600")
        .env("LOGIN_FAILURES_PER_ADDR", "1000000000/300");
    cmd
}

extern "C" fn stop_at_exit() {
    if let Some(fleet) = FLEET_FOR_EXIT.get() {
        let _ = fleet_command("stop", &fleet.0, fleet.1, &fleet.2).output();
    }
}

/// What [`stop_at_exit`] needs, set when the fleet starts.
static FLEET_FOR_EXIT: OnceLock<(PathBuf, u16, PathBuf)> = OnceLock::new();

/// One HTTP/1.1 request on a connection of its own (`Connection: close`), as a
/// load generator sends it: the status, or `None` if the connection failed or
/// no complete status line came within [`REQUEST_TIMEOUT`]. Never retried.
pub fn request_status(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<u16> {
    request(addr, method, path, headers, body).map(|(status, _)| status)
}

/// [`request_status`] with the whole response (head and body) as text.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).ok()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()?;
    Some((status, text))
}

/// A form POST as an API client sends it (JSON answers), with extra headers.
pub fn api_post(addr: SocketAddr, path: &str, form: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    let mut all = vec![("Accept", "application/json"), ("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request(addr, "POST", path, &all, form.as_bytes())
}

/// Logs in through `addr`: the session token, or `None` unless it worked.
pub fn log_in(addr: SocketAddr, username: &str, password: &str) -> Option<String> {
    let form = format!("username={username}&password={}", password.replace(' ', "+"));
    let (status, text) = api_post(addr, "/login", &form, &[])?;
    if status != 200 {
        return None;
    }
    let body = text.split_once("\r\n\r\n")?.1;
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    json["data"]["token"].as_str().map(str::to_owned)
}

/// The value of one counter on the metrics listener at `addr`, or `None`.
pub fn metric(addr: SocketAddr, name: &str) -> Option<u64> {
    let (status, text) = request(addr, "GET", "/metrics", &[], b"")?;
    (status == 200).then_some(())?;
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A sign-up through `addr` as an API client sends it: the status, or `None`.
pub fn sign_up(addr: SocketAddr, username: &str, password: &str) -> Option<u16> {
    let body = format!("username={username}&password={}", password.replace(' ', "+"));
    request_status(
        addr,
        "POST",
        "/signUp",
        &[("Accept", "application/json"), ("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
}
