//! Helpers for the integration tests: the whole system for real (a `tcpserver`
//! process on MariaDB and Redis, an `httpserver` process in front of it), a small
//! HTTP/1.1 client with a cookie jar over `std::net::TcpStream`, and test data.
//!
//! Each [`Stack`] has its own Redis prefix, username prefix and directory of
//! static files and avatars, and removes its keys, rows and files when dropped,
//! so tests run in parallel and leave nothing behind.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use mysql::prelude::Queryable;
use serde_json::Value;

/// How long a test waits for any one response before failing.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the tests find MySQL, Redis and the pepper ([`testenv::Services`]).
pub use testenv::Services as TestEnv;
#[allow(unused_imports)] // Each test file uses a different part.
pub use testenv::{TEST_MYSQL_USER, random_hex, workspace_root};

/// Writes a new RPC secret (32 random bytes) to `path`, for a test's pair of
/// servers to share, and returns the path.
pub fn write_rpc_secret(path: PathBuf) -> PathBuf {
    let secret: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    fs::write(&path, secret).expect("write the RPC secret file");
    path
}

/// The `tcpserver` binary, built on first use (see [`workspace_binary`]).
pub fn tcpserver_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| workspace_binary("tcpserver"))
}

/// The `httpserver` binary, built on first use (see [`workspace_binary`]).
pub fn httpserver_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| workspace_binary("httpserver"))
}

/// The `seed` binary (the seeding tool), built on first use (see [`workspace_binary`]).
pub fn seed_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| workspace_binary("seed"))
}

/// Builds the binary of workspace package `package` into this test's own target
/// directory and profile, and returns its path. (`cargo test -p e2e` does not
/// build other packages' binaries, and `CARGO_BIN_EXE_*` names only a package's own.)
fn workspace_binary(package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/<profile>/deps/<test binary>
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary in <target>/<profile>/deps");
    let target_dir = profile_dir.parent().expect("profile dir in target dir");
    let mut cargo = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cargo
        .args(["build", "--quiet", "-p", package, "--manifest-path"])
        .arg(workspace_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cargo.arg("--release");
    }
    let status = cargo.status().unwrap_or_else(|e| panic!("run cargo build -p {package}: {e}"));
    assert!(status.success(), "cargo build -p {package} failed");
    let binary = profile_dir.join(package);
    assert!(binary.exists(), "no {package} at {}", binary.display());
    binary
}

/// Spawns `program` with `args`, stderr to `log`, and waits for its
/// `listening on <addr>` line.
fn spawn_listening(program: &Path, args: &[String], log: &Path) -> (Child, SocketAddr) {
    let stderr = fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
    let addr = line.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        let log = fs::read_to_string(log).unwrap_or_default();
        panic!("{} did not start: stdout {line:?}, log:\n{log}", program.display())
    });
    (child, addr)
}

/// Options for [`Stack::start_with`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra httpserver arguments, added last (so they override the defaults).
    pub front_args: Vec<String>,
    /// Extra tcpserver arguments, added last (e.g. another `--redis-url`).
    pub back_args: Vec<String>,
    /// How many tcpservers httpserver balances over (0 means 1); they share
    /// the stack's MySQL, Redis prefix and picture directory.
    pub tcpservers: usize,
}

impl Options {
    /// For tests about something else (faults, overload) that log a few
    /// accounts in again and again from one address: the throttles on
    /// successful log-ins and sign-ups, and the sessions one account may
    /// hold, raised past what they reach (a token taken at the start stays
    /// valid). The limits themselves are tested at their defaults.
    pub fn under_load() -> Options {
        Options::default()
            .back("--max-sessions-per-user", 1_000_000)
            .back("--logins-per-user", "1000000/600")
            .back("--logins-per-addr", "1000000/600")
            .back("--signups-per-addr", "1000000/600")
    }

    /// Runs `n` tcpservers, all given to httpserver's `--backend`.
    pub fn tcpservers(mut self, n: usize) -> Options {
        self.tcpservers = n;
        self
    }

    /// Adds `--flag value` to httpserver's command line.
    pub fn front(mut self, flag: &str, value: impl ToString) -> Options {
        self.front_args.push(flag.to_owned());
        self.front_args.push(value.to_string());
        self
    }

    /// Adds `--flag value` to tcpserver's command line.
    pub fn back(mut self, flag: &str, value: impl ToString) -> Options {
        self.back_args.push(flag.to_owned());
        self.back_args.push(value.to_string());
        self
    }

    /// Adds a switch such as `--secure-cookies` to httpserver's command line.
    pub fn front_switch(mut self, flag: &str) -> Options {
        self.front_args.push(flag.to_owned());
        self
    }
}

/// A running system: tcpserver and httpserver, with their own namespace.
pub struct Stack {
    /// Each tcpserver's process, while it runs.
    backends: Vec<Option<Child>>,
    front: Option<Child>,
    /// The first tcpserver's address (fixed for the life of the stack, so it can restart).
    pub backend_addr: SocketAddr,
    /// Every tcpserver's address, in `--backend` order (each fixed for the life of the stack).
    pub backend_addrs: Vec<SocketAddr>,
    /// httpserver's address.
    pub addr: SocketAddr,
    /// Redis key prefix of this stack.
    pub redis_prefix: String,
    /// Prefix of every username this stack creates.
    pub user_prefix: String,
    /// Scratch directory: logs, static files, avatars.
    pub dir: PathBuf,
    env: TestEnv,
    backend_args: Vec<String>,
    front_args: Vec<String>,
}

impl Stack {
    /// Both servers with test defaults.
    pub fn start() -> Stack {
        Stack::start_with(Options::default())
    }

    /// Both servers, httpserver with extra arguments.
    pub fn start_with(options: Options) -> Stack {
        let env = TestEnv::load();
        let id = random_hex(8);
        let dir = std::env::temp_dir().join(format!("httpserver-test-{id}"));
        let static_dir = dir.join("static");
        fs::create_dir_all(static_dir.join("avatars")).expect("temp dir");
        for file in ["style.css", "icon.svg", "qr.js"] {
            fs::copy(workspace_root().join("static").join(file), static_dir.join(file))
                .expect("copy static file");
        }
        let (mysql_url, password) = env.split_mysql_url();
        let password_file = dir.join("mysql_password");
        fs::write(&password_file, format!("{password}\n")).expect("password file");
        let secret_file = write_rpc_secret(dir.join("rpc_secret")).display().to_string();
        let redis_prefix = format!("umtest:http:{id}:");
        let mut backend_args: Vec<String> = vec![
            "--workers".into(),
            "4".into(),
            "--mysql-url".into(),
            mysql_url,
            "--mysql-password-file".into(),
            password_file.display().to_string(),
            "--redis-url".into(),
            env.redis_url.clone(),
            "--redis-prefix".into(),
            redis_prefix.clone(),
            "--avatar-dir".into(),
            static_dir.join("avatars").display().to_string(),
            "--pepper-file".into(),
            env.pepper_file.display().to_string(),
            "--metrics-listen".into(),
            "127.0.0.1:0".into(),
            "--rpc-secret-file".into(),
            secret_file.clone(),
        ];
        backend_args.extend(options.back_args);
        let tcpservers = options.tcpservers.max(1);
        let mut stack = Stack {
            backends: (0..tcpservers).map(|_| None).collect(),
            front: None,
            backend_addr: "127.0.0.1:0".parse().expect("address"),
            backend_addrs: vec!["127.0.0.1:0".parse().expect("address"); tcpservers],
            addr: "127.0.0.1:0".parse().expect("address"),
            redis_prefix,
            user_prefix: format!("h{id}_"),
            dir,
            env,
            backend_args,
            front_args: Vec::new(),
        };
        for index in 0..tcpservers {
            stack.start_backend_at(index);
        }
        let backends: Vec<String> = stack.backend_addrs.iter().map(SocketAddr::to_string).collect();
        let mut front_args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--backend",
            &backends.join(","),
            "--html-dir",
            &workspace_root().join("html").display().to_string(),
            "--static-dir",
            &static_dir.display().to_string(),
            "--rpc-pool",
            "8",
            "--rpc-secret-file",
            &secret_file,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        front_args.extend(options.front_args);
        let (front, addr) =
            spawn_listening(httpserver_binary(), &front_args, &stack.dir.join("httpserver.log"));
        stack.front = Some(front);
        stack.addr = addr;
        stack.front_args = front_args;
        stack
    }

    /// A second tcpserver and httpserver in front of it, on the same MariaDB
    /// database, Redis prefix and RPC secret as this stack's (so that a
    /// session opened through one pair is good through the other), with
    /// `front_args` added to httpserver's command line: two machines of a
    /// fleet. Its processes stop when it is dropped; this stack's cleanup
    /// covers what it wrote.
    pub fn another_pair(&self, front_args: &[(&str, String)]) -> Pair {
        let n = random_hex(4);
        let mut args = vec!["--listen".to_string(), "127.0.0.1:0".to_string()];
        args.extend(self.backend_args.iter().cloned());
        let (backend, backend_addr) =
            spawn_listening(tcpserver_binary(), &args, &self.dir.join(format!("tcpserver-{n}.log")));
        let mut args = self.front_args.clone();
        args.extend(["--backend".to_string(), backend_addr.to_string()]);
        for (flag, value) in front_args {
            args.extend([flag.to_string(), value.clone()]);
        }
        let (front, addr) =
            spawn_listening(httpserver_binary(), &args, &self.dir.join(format!("httpserver-{n}.log")));
        Pair { backend, front, backend_addr, addr }
    }

    /// Starts tcpserver, on the same port as before if it ran already.
    pub fn start_backend(&mut self) {
        self.start_backend_at(0);
    }

    /// Starts tcpserver number `index` (of [`Options::tcpservers`]), on the
    /// same port as before if it ran already.
    pub fn start_backend_at(&mut self, index: usize) {
        assert!(self.backends[index].is_none(), "tcpserver {index} is already running");
        let mut args = vec!["--listen".to_string(), self.backend_addrs[index].to_string()];
        args.extend(self.backend_args.iter().cloned());
        let (child, addr) = spawn_listening(tcpserver_binary(), &args, &self.dir.join(backend_log(index)));
        self.backends[index] = Some(child);
        self.backend_addrs[index] = addr;
        if index == 0 {
            self.backend_addr = addr;
        }
    }

    /// Kills tcpserver (SIGKILL: the harshest way for it to go) and waits for it.
    pub fn kill_backend(&mut self) {
        self.kill_backend_at(0);
    }

    /// Kills tcpserver number `index` with SIGKILL and waits for it.
    pub fn kill_backend_at(&mut self, index: usize) {
        let mut child = self.backends[index].take().expect("tcpserver is running");
        child.kill().expect("kill tcpserver");
        child.wait().expect("reap tcpserver");
    }

    /// Hands tcpserver's process to the caller, to signal and reap it itself.
    pub fn take_backend(&mut self) -> Child {
        self.take_backend_at(0)
    }

    /// Hands the process of tcpserver number `index` to the caller; it may
    /// be started again with [`Stack::start_backend_at`] once reaped.
    pub fn take_backend_at(&mut self, index: usize) -> Child {
        self.backends[index].take().expect("tcpserver is running")
    }

    /// Hands httpserver's process to the caller, to signal and reap it itself.
    pub fn take_front(&mut self) -> Child {
        self.front.take().expect("httpserver is running")
    }

    /// The process ids of tcpserver and httpserver (0 for one that was taken or stopped).
    pub fn pids(&self) -> (u32, u32) {
        (self.backends[0].as_ref().map_or(0, Child::id), self.front.as_ref().map_or(0, Child::id))
    }

    /// Whether httpserver is still the process it was (it must never need a restart).
    pub fn front_is_running(&mut self) -> bool {
        self.front.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// A username unique to this stack: its prefix plus `suffix` (at most 22 chars).
    pub fn username(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.user_prefix)
    }

    /// A new HTTP client (own connection, own cookie jar).
    pub fn client(&self) -> Http {
        Http::new(self.addr)
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What both servers wrote to standard error so far.
    pub fn logs(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let mut logs = format!("--- httpserver\n{}", read("httpserver.log"));
        for index in 0..self.backends.len() {
            let name = backend_log(index);
            logs.push_str(&format!("--- {}\n{}", name.trim_end_matches(".log"), read(&name)));
        }
        logs
    }

    /// The value of one unlabelled counter (`usermgmt_..._total`) on the
    /// metrics listener of tcpserver number `index`, found at the address
    /// its log names (the latest start's); `None` if it cannot be read (not
    /// running, say).
    pub fn backend_metric(&self, index: usize, name: &str) -> Option<u64> {
        let log = fs::read_to_string(self.dir.join(backend_log(index))).ok()?;
        let addr = log.lines().rev().find_map(|line| line.split("metrics on http://").nth(1))?;
        let mut stream = TcpStream::connect(addr.strip_suffix("/metrics")?).ok()?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// A connection to the test database, as the tests' own MySQL user.
    pub fn mysql(&self) -> mysql::Conn {
        mysql::Conn::new(mysql::Opts::from_url(&self.env.mysql_url).expect("MySQL URL")).expect("MySQL")
    }

    /// A connection to the tests' Redis.
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.env.redis_url.as_str()).and_then(|c| c.get_connection()).expect("Redis")
    }

    /// Signs up `suffix` through the JSON API; returns the full username.
    pub fn sign_up(&self, suffix: &str, password: &str) -> String {
        let username = self.username(suffix);
        let reply = self.client().api_post("/signUp", &[("username", &username), ("password", password)]);
        assert_eq!(reply.status, 201, "sign-up of {username}: {}", reply.text());
        username
    }

    /// Signs up and logs in through the JSON API; returns the username and token.
    pub fn user_with_token(&self, suffix: &str, password: &str) -> (String, String) {
        let username = self.sign_up(suffix, password);
        let reply = self.client().api_post("/login", &[("username", &username), ("password", password)]);
        assert_eq!(reply.status, 200, "log-in of {username}: {}", reply.text());
        let token = reply.json()["data"]["token"].as_str().expect("token in login data").to_owned();
        (username, token)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let backends: Vec<Option<Child>> = self.backends.iter_mut().map(Option::take).collect();
        for child in std::iter::once(self.front.take()).chain(backends).flatten() {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        // Clean up even when the test failed; failures here must not hide that one.
        if let Ok(mut redis) =
            redis::Client::open(self.env.redis_url.as_str()).and_then(|c| c.get_connection())
        {
            let keys = redis_keys(&mut redis, &self.redis_prefix);
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&keys).query(&mut redis);
            }
        }
        if let Ok(Ok(mut mysql)) = mysql::Opts::from_url(&self.env.mysql_url).map(mysql::Conn::new) {
            let _ = delete_accounts(&mut mysql, &self.user_prefix);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The log file of tcpserver number `index`: `tcpserver.log` for the first,
/// as with a single one.
fn backend_log(index: usize) -> String {
    if index == 0 { "tcpserver.log".to_owned() } else { format!("tcpserver-{index}.log") }
}

/// A tcpserver and its httpserver beside a [`Stack`]'s ([`Stack::another_pair`]).
pub struct Pair {
    backend: Child,
    front: Child,
    /// The tcpserver's address.
    pub backend_addr: SocketAddr,
    /// The httpserver's address.
    pub addr: SocketAddr,
}

impl Pair {
    /// A new HTTP client of this pair's httpserver.
    pub fn client(&self) -> Http {
        Http::new(self.addr)
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in [&mut self.front, &mut self.backend] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Deletes the accounts whose username starts with `prefix`, each as an
/// account deletion in tcpserver does ([`tcpserver::avatar_refs::delete_user`]:
/// its picture released, so that the shared test database keeps true counts
/// for the pictures other tests still use).
fn delete_accounts(mysql: &mut mysql::Conn, prefix: &str) -> mysql::Result<()> {
    let ids: Vec<u64> =
        mysql.exec("SELECT id FROM users WHERE username LIKE ?", (testenv::like_prefix(prefix),))?;
    for id in ids {
        let mut tx = mysql.start_transaction(mysql::TxOpts::default())?;
        tcpserver::avatar_refs::delete_user(&mut tx, id)?;
        tx.commit()?;
    }
    Ok(())
}

/// Every key under a prefix (SCAN, never KEYS).
pub fn redis_keys(redis: &mut redis::Connection, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, batch)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(redis)
        else {
            return keys;
        };
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (lowercase).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The JSON `code`.
    pub fn code(&self) -> i64 {
        self.json()["code"].as_i64().unwrap_or_else(|| panic!("no code in {}", self.text()))
    }
}

/// Reads one response from `stream`; `head_only` for replies to HEAD. Reads the
/// head a byte at a time so that pipelined responses after it stay in the socket.
pub fn read_reply(stream: &mut TcpStream, head_only: bool) -> Reply {
    loop {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).expect("read a response in time");
            assert!(n > 0, "connection closed before a response; got {:?}", String::from_utf8_lossy(&head));
            head.push(byte[0]);
        }
        let parsed = parse_response_head(&head).expect("valid response head").expect("a whole head");
        if parsed.status == 100 {
            continue;
        }
        let ResponseHead { status, headers, .. } = parsed;
        let length = parsed.content_length.expect("every response has a Content-Length");
        let mut body = vec![0u8; if head_only { 0 } else { length }];
        stream.read_exact(&mut body).expect("read the body in time");
        return Reply { status, headers, body };
    }
}

/// A response head: its length in bytes, status, headers (names lowercased,
/// in order) and `Content-Length`, if it has a number.
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub content_length: Option<usize>,
}

/// Parses the response head at the start of `buf`: `None` while it is
/// incomplete, an error for bytes that are not a response head.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = parsed.parse(buf).map_err(|e| format!("bad response head: {e}"))?
    else {
        return Ok(None);
    };
    let status = parsed.code.ok_or("no status")?;
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
        .collect();
    let content_length =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok());
    Ok(Some(ResponseHead { len, status, headers, content_length }))
}

/// Opens a connection with the test timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to httpserver");
    stream.set_read_timeout(Some(RESPONSE_TIMEOUT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Opens a connection from `source`, another loopback address such as
/// 127.0.0.2 (bound before connecting), so the server counts it as another
/// client; with the test timeouts.
pub fn connect_from(addr: SocketAddr, source: IpAddr) -> TcpStream {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0))).unwrap_or_else(|e| panic!("bind {source}: {e}"));
    socket.connect(&SockAddr::from(addr)).unwrap_or_else(|e| panic!("connect from {source}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(RESPONSE_TIMEOUT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// Sends raw bytes on a new connection and reads one response.
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut stream = connect(addr);
    stream.write_all(bytes).expect("send request");
    read_reply(&mut stream, false)
}

/// Whether the server closes `stream` (EOF or reset) before the test timeout.
pub fn is_closed(stream: &mut TcpStream) -> bool {
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => return true,
            Err(_) => return false,
        }
    }
}

/// A keep-alive HTTP/1.1 client with a cookie jar, like a minimal browser.
pub struct Http {
    addr: SocketAddr,
    /// The loopback address its connections come from, when not the default.
    source: Option<IpAddr>,
    stream: Option<TcpStream>,
    /// Cookies received, by name.
    pub jar: Vec<(String, String)>,
    /// `Set-Cookie` values received with the last response.
    pub last_set_cookies: Vec<String>,
}

impl Http {
    /// A client for the server at `addr`.
    pub fn new(addr: SocketAddr) -> Http {
        Http { addr, source: None, stream: None, jar: Vec::new(), last_set_cookies: Vec::new() }
    }

    /// A client whose connections come from `source` (see [`connect_from`]).
    pub fn from_source(addr: SocketAddr, source: IpAddr) -> Http {
        Http { source: Some(source), ..Http::new(addr) }
    }

    /// A cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.jar.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Sets a cookie by hand.
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.jar.retain(|(n, _)| n != name);
        self.jar.push((name.to_owned(), value.to_owned()));
    }

    /// Sends a request with the jar's cookies; reads the response and stores its cookies.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(n, v)| format!("{n}={v}")).collect();
            head.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if method == "POST" || !body.is_empty() {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        // A kept-alive connection may have been closed by the server meanwhile;
        // one retry on a fresh connection covers that (tests never send twice otherwise).
        let reply = match self.try_send(&bytes, method == "HEAD") {
            Some(reply) => reply,
            None => {
                self.stream = None;
                self.try_send(&bytes, method == "HEAD").expect("server answers on a fresh connection")
            }
        };
        if reply.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            self.stream = None;
        }
        self.last_set_cookies = reply.all("set-cookie").into_iter().map(str::to_owned).collect();
        for set in self.last_set_cookies.clone() {
            let pair = set.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.jar.retain(|(n, _)| n != name);
                if !value.is_empty() && !set.contains("Max-Age=0") {
                    self.jar.push((name.to_owned(), value.to_owned()));
                }
            }
        }
        reply
    }

    fn try_send(&mut self, bytes: &[u8], head_only: bool) -> Option<Reply> {
        let fresh = self.stream.is_none();
        let (addr, source) = (self.addr, self.source);
        let stream = self.stream.get_or_insert_with(|| match source {
            Some(source) => connect_from(addr, source),
            None => connect(addr),
        });
        if stream.write_all(bytes).is_err() && !fresh {
            return None;
        }
        if !fresh {
            // Detect a connection the server closed while idle before waiting on it.
            let mut probe = [0u8; 1];
            stream.set_nonblocking(true).ok()?;
            let closed = matches!(stream.peek(&mut probe), Ok(0));
            stream.set_nonblocking(false).ok()?;
            if closed {
                return None;
            }
        }
        Some(read_reply(stream, head_only))
    }

    /// GET with the jar's cookies.
    pub fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    /// GET asking for JSON.
    pub fn api_get(&mut self, path: &str) -> Reply {
        self.request("GET", path, &[("Accept", "application/json")], b"")
    }

    /// POST of a urlencoded form, as a browser sends it (no JSON Accept).
    pub fn form_post(&mut self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        self.request("POST", path, &all, urlencode(fields).as_bytes())
    }

    /// POST of a JSON object asking for JSON.
    pub fn api_post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        self.api_post_with(path, fields, &[])
    }

    /// POST of a JSON object asking for JSON, with extra headers.
    pub fn api_post_with(&mut self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let object: serde_json::Map<String, Value> =
            fields.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        let body = serde_json::to_vec(&object).expect("JSON");
        let mut all = vec![("Content-Type", "application/json"), ("Accept", "application/json")];
        all.extend_from_slice(headers);
        self.request("POST", path, &all, &body)
    }

    /// Browser-style: loads `page` to get the CSRF cookie and field, then posts the
    /// form with the token, as the page's own form would.
    pub fn submit(&mut self, page: &str, action: &str, fields: &[(&str, &str)]) -> Reply {
        let page = self.get(page);
        let token = csrf_field(&page.text()).unwrap_or_else(|| panic!("no csrf field in {}", page.text()));
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        let origin = format!("http://{}", self.addr);
        self.form_post(action, &all, &[("Origin", &origin)])
    }
}

/// The value of the hidden `csrf` field in a page.
pub fn csrf_field(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[at..].find('"')?;
    Some(html[at..at + end].to_owned())
}

/// `a=1&b=two%20words`.
pub fn urlencode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// A multipart/form-data body: text fields, then one file field. Returns the
/// Content-Type and the body.
pub fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = format!("----usermgmt{}", random_hex(16));
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    if let Some((name, filename, data)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A valid `size`×`size` RGB PNG ([`testenv::png::gradient`]).
pub fn png(size: u32) -> Vec<u8> {
    testenv::png::gradient(size)
}

/// [`png`] of `size` with a `tEXt` chunk holding `text` after its header: a
/// picture whose bytes, and so whose file name (and count in the shared
/// `avatars` table), belong to `text` alone.
pub fn png_with_text(size: u32, text: &str) -> Vec<u8> {
    testenv::png::with_text(&png(size), text)
}

pub mod fleet;
pub mod probe;
pub mod services;
pub mod webdriver;
