//! A private Redis Cluster for the tests (three masters, three replicas,
//! `scripts/redis-cluster.sh`), on free ports from 21000 up, with its data
//! under the target directory's `tmp/redis-clusters/`. (Each node also
//! listens on its port + 10000 for the cluster bus. Any of those ports may
//! be held by an outgoing connection of another process at that moment:
//! they are checked just before, and a start that fails anyway moves on to
//! the next ten.)
//!
//! [`TestCluster::shared`] starts one per test binary, the first time a test
//! asks, and every test of the binary uses it under its own key prefix. A
//! test binary has no hook that runs when it ends, so the cluster is stopped
//! by a watcher started with it: a shell loop that waits for the test
//! process to exit and then stops the nodes and removes their directory
//! (`./test.sh` also stops any cluster left under that directory when it
//! ends). A test that kills nodes gets a cluster of its own,
//! [`TestCluster::private`], stopped when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Nodes in a test cluster.
pub const NODES: u16 = 6;

/// The lowest first port of a test cluster.
const FIRST_BASE: u16 = 21_000;

/// First ports tried, ten apart: up to 22,690 (bus ports up to 32,695).
const BASES: usize = 170;

/// A running cluster.
#[derive(Debug)]
pub struct TestCluster {
    /// Where its nodes keep their files.
    pub dir: PathBuf,
    /// The first node's port; the others follow.
    pub first_port: u16,
    /// Whether dropping it stops it (a private cluster).
    owned: bool,
}

static SHARED: OnceLock<TestCluster> = OnceLock::new();
static STARTED: AtomicUsize = AtomicUsize::new(0);

fn script() -> PathBuf {
    super::workspace_root().join("scripts/redis-cluster.sh")
}

/// `scripts/redis-cluster.sh <verb> <dir> <first port>`, with the test
/// nodes' memory bound, its input and output discarded.
fn cluster_script(verb: &str, dir: &Path, first_port: u16) -> Command {
    let mut command = Command::new(script());
    command
        .arg(verb)
        .arg(dir)
        .arg(first_port.to_string())
        .env("REDIS_MAXMEMORY", "256mb")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Whether `port` and its cluster-bus port are free on loopback now.
fn free(port: u16) -> bool {
    [port, port + 10_000].iter().all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
}

impl TestCluster {
    /// This test binary's shared cluster, started on first use.
    pub fn shared() -> &'static TestCluster {
        SHARED.get_or_init(|| TestCluster::start(false))
    }

    /// A cluster of the caller's own (for a test that kills nodes), stopped when dropped.
    pub fn private() -> TestCluster {
        TestCluster::start(true)
    }

    fn start(owned: bool) -> TestCluster {
        let n = STARTED.fetch_add(1, Ordering::SeqCst);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("redis-clusters")
            .join(format!("{}-{n}", std::process::id()));
        // A base port per process and cluster, then the next free one: test
        // binaries of other runs on this machine may hold some.
        let seed = (std::process::id() as usize * 7 + n * 13) % BASES;
        for attempt in 0..BASES {
            let first_port = FIRST_BASE + 10 * ((seed + attempt) % BASES) as u16;
            if !(0..NODES).all(|i| free(first_port + i)) {
                continue;
            }
            let status =
                cluster_script("start", &dir, first_port).status().expect("run scripts/redis-cluster.sh");
            let cluster = TestCluster { dir: dir.clone(), first_port, owned };
            if status.success() {
                cluster.watch();
                return cluster;
            }
            // Lost a race for a port, say: stop what started, try the next.
            cluster.stop();
        }
        panic!("no free ports for a test Redis Cluster from {FIRST_BASE} (and their bus ports)");
    }

    /// Stops the nodes once this process has exited (a detached shell).
    fn watch(&self) {
        let watcher = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; '{script}' stop '{dir}' {port} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            script = script().display(),
            dir = self.dir.display(),
            port = self.first_port,
        );
        let _ = Command::new("setsid")
            .args(["sh", "-c", &watcher])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// Stops every node.
    pub fn stop(&self) {
        let _ = cluster_script("stop", &self.dir, self.first_port).stderr(Stdio::null()).status();
    }

    /// Starts the nodes that are down again (a killed node rejoins).
    pub fn restart_down_nodes(&self) {
        let status = cluster_script("start", &self.dir, self.first_port)
            .status()
            .expect("run scripts/redis-cluster.sh");
        assert!(status.success(), "the test cluster did not come back");
    }

    /// `host:port` of every node, as `--redis-cluster` takes them.
    pub fn nodes(&self) -> Vec<String> {
        (0..NODES).map(|i| format!("127.0.0.1:{}", self.first_port + i)).collect()
    }

    /// The `--redis-cluster` value.
    pub fn arg(&self) -> String {
        self.nodes().join(",")
    }

    /// The pid of the node on `port`.
    pub fn pid(&self, port: u16) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(port.to_string()).join("redis.pid")).ok()?.trim().parse().ok()
    }

    /// The port of the master that serves `key` now.
    pub fn master_of(&self, key: &str) -> u16 {
        let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}/", self.first_port))
            .and_then(|c| c.get_connection())
            .expect("a test cluster node");
        let slot: u16 =
            redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query(&mut conn).expect("CLUSTER KEYSLOT");
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).expect("CLUSTER NODES");
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (from, to) = range.split_once('-').unwrap_or((range, range));
                matches!((from.parse::<u16>(), to.parse::<u16>()), (Ok(f), Ok(t)) if (f..=t).contains(&slot))
            });
            if serves {
                let address = fields[1].split('@').next().unwrap_or_default();
                return address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a node port");
            }
        }
        panic!("no master serves slot {slot}:\n{nodes}");
    }

    /// `CLUSTER NODES` as the first live node sees it, for a failure message.
    pub fn describe(&self) -> String {
        (0..NODES)
            .find_map(|i| {
                let port = self.first_port + i;
                let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(1)))
                    .ok()?;
                redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut c).ok()
            })
            .unwrap_or_else(|| "no node answers".into())
    }

    /// The ports of the masters now.
    pub fn masters(&self) -> Vec<u16> {
        (0..NODES)
            .map(|i| self.first_port + i)
            .filter(|port| {
                redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection_with_timeout(std::time::Duration::from_secs(1)))
                    .and_then(|mut c| redis::cmd("ROLE").query::<Vec<redis::Value>>(&mut c))
                    .is_ok_and(
                        |role| matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master"),
                    )
            })
            .collect()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.owned {
            self.stop();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
