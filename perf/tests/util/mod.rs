//! The whole system for the load generator's smoke test: a throwaway database
//! seeded by the real seeding tool, and real `tcpserver` and `httpserver`
//! processes in front of it, all removed again when the [`System`] is dropped.

use std::{
    fs,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

use mysql::prelude::Queryable;
use rand::RngExt;
use testenv::{redis_url, workspace_root};

/// MariaDB's root over the unix socket, as `./test.sh` sets the machine up.
/// The servers use it too, for a database that exists only for this test.
const ROOT_SOCKET: &str = "socket=/run/mysqld/mysqld.sock";

/// Builds the other packages' binaries into this test's target directory
/// (`cargo test -p loadgen` does not) and returns that directory.
fn binaries() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("profile dir in target dir");
    let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cargo
        .args(["build", "--quiet", "-p", "seed", "-p", "tcpserver", "-p", "httpserver", "--manifest-path"])
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    assert!(cargo.status().expect("run cargo build").success(), "cargo build of the servers failed");
    profile_dir.to_owned()
}

/// Spawns `program`, stderr to `log`, and waits for its `listening on` line.
fn spawn_listening(program: &Path, args: &[String], log: &Path) -> (Child, SocketAddr) {
    let stderr = fs::File::create(log).expect("log file");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line).expect("read stdout");
    let addr = line.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok());
    let Some(addr) = addr else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{} did not start: {line:?}\n{}",
            program.display(),
            fs::read_to_string(log).unwrap_or_default()
        );
    };
    (child, addr)
}

/// A seeded database and both servers.
pub struct System {
    /// httpserver's address.
    pub addr: SocketAddr,
    servers: Vec<Child>,
    database: String,
    redis_prefix: String,
    dir: PathBuf,
}

impl System {
    /// Seeds `accounts` accounts into a new database and starts both servers.
    pub fn start(accounts: u64) -> System {
        let id = format!("{:016x}", rand::rng().random::<u64>());
        let dir = std::env::temp_dir().join(format!("loadgen-test-{id}"));
        fs::create_dir_all(dir.join("avatars")).expect("temp dir");
        let pepper = dir.join("pepper");
        fs::write(&pepper, (0..32).map(|_| rand::rng().random::<u8>()).collect::<Vec<u8>>()).expect("pepper");
        // What httpserver proves to tcpserver on each RPC connection.
        let rpc_secret = dir.join("rpc_secret");
        fs::write(&rpc_secret, (0..32).map(|_| rand::rng().random::<u8>()).collect::<Vec<u8>>())
            .expect("RPC secret");
        let rpc_secret = rpc_secret.display().to_string();
        let database = format!("usermgmt_loadtest_{id}");
        let mut system = System {
            addr: "127.0.0.1:0".parse().expect("address"),
            servers: Vec::new(),
            database,
            redis_prefix: format!("umtest:loadgen:{id}:"),
            dir,
        };

        let mut root = mysql::Conn::new(
            mysql::Opts::from_url(&format!("mysql://root@localhost/?{ROOT_SOCKET}")).expect("url"),
        )
        .expect("MariaDB root over the socket (run ./test.sh once to set the machine up)");
        root.query_drop(format!(
            "CREATE DATABASE `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            system.database
        ))
        .expect("create database");
        root.select_db(&system.database).expect("use database");
        root.query_drop(fs::read_to_string(workspace_root().join("sql/schema.sql")).expect("schema"))
            .expect("schema");
        let mysql_url = format!("mysql://root@localhost/{}?{ROOT_SOCKET}", system.database);

        let bin = binaries();
        let seeded = Command::new(bin.join("seed"))
            .args(["--accounts", &accounts.to_string(), "--mysql-url", &mysql_url, "--pepper-file"])
            .arg(&pepper)
            .output()
            .expect("run seed");
        assert!(seeded.status.success(), "seed failed: {}", text(&seeded));

        let backend_args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "4",
            "--mysql-url",
            &mysql_url,
            "--redis-url",
            &redis_url(),
            "--redis-prefix",
            &system.redis_prefix,
            "--avatar-dir",
            &system.dir.join("avatars").display().to_string(),
            "--pepper-file",
            &pepper.display().to_string(),
            "--metrics-listen",
            "127.0.0.1:0",
            // A load run logs a few hundred accounts in again and again from
            // one address: the throttles on successes would stop it, and the
            // failure counters hold in-flight hashes from this one address.
            "--logins-per-user",
            "1000000/600",
            "--logins-per-addr",
            "1000000/600",
            "--login-failures-per-addr",
            "1000000/300",
            "--rpc-secret-file",
            &rpc_secret,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (backend, backend_addr) =
            spawn_listening(&bin.join("tcpserver"), &backend_args, &system.dir.join("tcpserver.log"));
        system.servers.push(backend);
        let root = workspace_root();
        let front_args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--backend",
            &backend_addr.to_string(),
            "--html-dir",
            &root.join("html").display().to_string(),
            "--static-dir",
            &root.join("static").display().to_string(),
            "--rpc-secret-file",
            &rpc_secret,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (front, addr) =
            spawn_listening(&bin.join("httpserver"), &front_args, &system.dir.join("httpserver.log"));
        system.servers.push(front);
        system.addr = addr;
        system
    }

    /// The process ids of tcpserver and httpserver.
    #[allow(dead_code)] // Each test file compiles this module; only `qr.rs` reads memory.
    pub fn pids(&self) -> (u32, u32) {
        (self.servers[0].id(), self.servers[1].id())
    }

    /// Runs the load generator with `args` against this system.
    pub fn loadgen(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .arg("--addr")
            .arg(self.addr.to_string())
            .args(args)
            .output()
            .expect("run loadgen")
    }

    /// Both servers' logs, for failure messages.
    pub fn logs(&self) -> String {
        ["tcpserver.log", "httpserver.log"]
            .iter()
            .map(|name| {
                format!("--- {name}\n{}", fs::read_to_string(self.dir.join(name)).unwrap_or_default())
            })
            .collect()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        for mut child in self.servers.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if let Ok(Ok(mut root)) =
            mysql::Opts::from_url(&format!("mysql://root@localhost/?{ROOT_SOCKET}")).map(mysql::Conn::new)
        {
            let _ = root.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.database));
        }
        if let Ok(mut redis) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.redis_prefix))
                .query(&mut redis)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut redis);
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A process's output as text.
pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}
