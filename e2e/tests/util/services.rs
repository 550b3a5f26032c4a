//! Private Redis and MariaDB servers for the fault tests, and the process
//! helpers those tests need (signals, liveness, resident memory).
//!
//! The fault tests kill, restart, slow down and reconfigure the databases, which
//! they must never do to the shared ones on 6379 and 3306 (other tests and
//! benchmarks use those). Each [`PrivateRedis`] and [`PrivateMariadb`] is a
//! server of its own on a free port, with its files in a temporary directory;
//! dropping it kills the process (even when the test panicked) and removes the
//! directory.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use super::{random_hex, workspace_root};

/// How long a private server may take to accept connections after it is
/// started. MariaDB's crash recovery on a loaded two-core machine is the slow case.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A port that nothing listens on now, below Linux's ephemeral range (32768 and
/// up) so that an outgoing connection cannot take it while a test's server is
/// down between a kill and a restart.
pub fn free_port() -> u16 {
    loop {
        let port = 20_000 + (rand::random::<u16>() % 12_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A scratch directory under the system's temp dir, unique to this call.
fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("usermgmt-{what}-{}", random_hex(8)));
    fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) touches no memory; callers pass the pid of a child they
    // have not reaped yet, so the pid cannot name another process.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}): {}", std::io::Error::last_os_error());
}

/// Waits for `child` to exit, at most `limit`; returns its status and how long it
/// took, or kills it and panics.
pub fn wait_exit(child: &mut Child, limit: Duration) -> (ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return (status, start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // pid (comm) state ...; comm may hold spaces, so look after the last ')'.
    stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).is_some_and(|s| s != "Z")
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Polls `ready` every 50 ms until it holds while `child` runs; on failure
/// (the child exited, e.g. because another server took its port, or
/// [`START_TIMEOUT`] passed) kills the child and returns its log.
fn wait_ready(child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let exited = child.try_wait().ok().flatten();
        if exited.is_none() && ready() {
            return Ok(());
        }
        if exited.is_some() || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(log).unwrap_or_default();
            return Err(format!("exit status {exited:?}; log:\n{log}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Starts a server on a free port with `start`, trying another port if the
/// first is taken meanwhile (by a test running beside this one).
fn on_a_free_port(what: &str, mut start: impl FnMut(u16) -> Result<(), String>) -> u16 {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        match start(port) {
            Ok(()) => return port,
            Err(e) => last = e,
        }
    }
    panic!("{what} did not start on any of five free ports: {last}");
}

/// A redis-server of the test's own: no persistence, so a restart loses every
/// key, as a Redis crash without persistence would.
pub struct PrivateRedis {
    child: Option<Child>,
    /// The port it listens on (kept across restarts).
    pub port: u16,
    dir: PathBuf,
}

impl PrivateRedis {
    /// Starts one on a free port and waits until it answers `PING`.
    pub fn start() -> PrivateRedis {
        let mut redis = PrivateRedis { child: None, port: 0, dir: scratch_dir("redis") };
        redis.port = on_a_free_port("redis-server", |port| {
            redis.port = port;
            redis.spawn()
        });
        redis
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A direct connection (with a timeout, so a stopped server fails the call).
    pub fn conn(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        let conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(conn)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills it with SIGKILL (a crash: no goodbye to its clients) and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("redis-server is running");
        child.kill().expect("kill redis-server");
        child.wait().expect("reap redis-server");
    }

    /// Starts it again on the same port and waits until it answers `PING`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        self.spawn().unwrap_or_else(|e| panic!("redis-server did not come back: {e}"));
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join("redis.log");
        let port = self.port.to_string();
        let dir = self.dir.display().to_string();
        let logfile = log.display().to_string();
        let args = [
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
            "--logfile",
            &logfile,
            // DEBUG SLEEP is how the overload tests make Redis slow.
            "--enable-debug-command",
            "local",
        ];
        let mut child = Command::new("redis-server")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (install it with scripts/services.sh)");
        let url = self.url();
        let pid = child.id();
        // Ready when the server on the port is this one (not another test's).
        wait_ready(&mut child, &log, || {
            redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
                .and_then(|mut c| redis::cmd("INFO").arg("server").query::<String>(&mut c))
                .is_ok_and(|info| info.lines().any(|l| l.trim() == format!("process_id:{pid}")))
        })?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The database a [`PrivateMariadb`] creates for the application.
pub const PRIVATE_DB: &str = "usermgmt_faults";

/// A mariadbd of the test's own, in a fresh data directory, with the schema of
/// `sql/schema.sql` and an application user with the same rights `sql/setup.sh`
/// gives (read and write rows, nothing else).
pub struct PrivateMariadb {
    child: Option<Child>,
    /// The TCP port it listens on (kept across restarts).
    pub port: u16,
    dir: PathBuf,
    password: String,
}

impl PrivateMariadb {
    /// Installs a data directory, starts the server and sets up the database.
    pub fn start() -> PrivateMariadb {
        // Made first, so that its drop removes the directory whatever fails below.
        let mut db = PrivateMariadb {
            child: None,
            port: 0,
            dir: scratch_dir("mariadb"),
            password: format!("pw{}", random_hex(20)),
        };
        let dir = &db.dir;
        let install = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            // Its own temp dir: bootstraps running side by side clash in /tmp.
            .arg(format!("--tmpdir={}", dir.display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--innodb-log-file-size=8M",
                "--innodb-buffer-pool-size=64M",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db (installed with mariadb-server by scripts/services.sh)");
        assert!(install.status.success(), "mariadb-install-db: {}", String::from_utf8_lossy(&install.stderr));
        db.port = on_a_free_port("mariadbd", |port| {
            db.port = port;
            db.spawn()
        });
        let schema =
            fs::read_to_string(workspace_root().join("sql/schema.sql")).expect("read sql/schema.sql");
        let mut root = db.try_root(None).expect("root connection to the private MariaDB");
        let password = &db.password;
        for statement in [
            format!("CREATE DATABASE {PRIVATE_DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"),
            format!("CREATE USER 'usermgmt'@'localhost' IDENTIFIED BY '{password}'"),
            format!("CREATE USER 'usermgmt'@'127.0.0.1' IDENTIFIED BY '{password}'"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON {PRIVATE_DB}.* TO 'usermgmt'@'localhost', 'usermgmt'@'127.0.0.1'"
            ),
            format!("USE {PRIVATE_DB}"),
        ] {
            root.query_drop(statement).expect("set up the private database");
        }
        root.query_drop(schema).expect("apply sql/schema.sql");
        fs::write(db.password_file(), format!("{}\n", db.password)).expect("write the password file");
        db
    }

    /// The application's URL, without the password (see [`Self::password_file`]).
    /// `prefer_socket=false` keeps the connection on TCP, where a kill is seen.
    pub fn url(&self) -> String {
        format!("mysql://usermgmt@127.0.0.1:{}/{PRIVATE_DB}?prefer_socket=false", self.port)
    }

    /// The file holding the application user's password, for `--mysql-password-file`.
    pub fn password_file(&self) -> PathBuf {
        self.dir.join("app_password")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// A root connection over the private socket, in the application's database.
    pub fn root(&self) -> mysql::Conn {
        self.try_root(Some(PRIVATE_DB)).expect("root connection to the private MariaDB")
    }

    fn try_root(&self, db: Option<&str>) -> mysql::Result<mysql::Conn> {
        let opts = mysql::OptsBuilder::new()
            .socket(Some(self.socket().display().to_string()))
            .user(Some("root"))
            .db_name(db);
        mysql::Conn::new(opts)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills it with SIGKILL (a crash: InnoDB recovers at the next start) and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("mariadbd is running");
        child.kill().expect("kill mariadbd");
        child.wait().expect("reap mariadbd");
    }

    /// Starts mariadbd again on the same data directory and port, and waits
    /// until it accepts connections (after InnoDB's crash recovery).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "mariadbd is already running");
        self.spawn().unwrap_or_else(|e| panic!("mariadbd did not come back: {e}"));
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.join("error.log");
        // Debian installs it in /usr/sbin, which is not on every PATH.
        let program =
            if Path::new("/usr/sbin/mariadbd").exists() { "/usr/sbin/mariadbd" } else { "mariadbd" };
        let mut child = Command::new(program)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--tmpdir={}", self.dir.display()))
            .arg(format!("--pid-file={}", self.dir.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--user=root",
                "--skip-networking=0",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--performance-schema=0",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=8M",
                // Durable commits: what the fault test checks is that an
                // acknowledged sign-up survives a crash.
                "--innodb-flush-log-at-trx-commit=1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mariadbd (installed with mariadb-server by scripts/services.sh)");
        // The socket is this server's own, and mariadbd creates it only after
        // binding its TCP port (it exits if the port is taken).
        let tcp = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_ready(&mut child, &log, || self.try_root(None).is_ok() && TcpStream::connect(tcp).is_ok())?;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
