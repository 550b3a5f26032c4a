//! Helpers for the integration tests: a real `tcpserver` process per test (with
//! an RPC secret of its own), a protocol client over `std::net::TcpStream` that
//! proves that secret when it connects, direct MySQL and Redis access
//! for checking what the server stored, and a TCP proxy that can cut or refuse
//! the server's database connections.
//!
//! Each [`TestServer`] has its own Redis prefix, its own avatar directory and
//! its own username prefix, and removes its keys, rows and files when dropped,
//! so tests run in parallel and leave nothing behind.

#![allow(dead_code)] // Each test file uses a different part of this module.

pub mod cluster;
mod redis_access;

#[allow(unused_imports)] // Each test file uses a different part.
pub use redis_access::{TestRedis, delete_keys, redis_keys};

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use proto::{ErrorCode, Frame, IdempotencyKey, Message, Profile, RpcSecret, Secret};

/// How long a test waits for any one reply before failing.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// A valid 2x2 RGB PNG, made with zlib and real CRCs.
pub const PNG: [u8; 75] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0xfd, 0xd4, 0x9a, 0x73, 0x00,
    0x00, 0x00, 0x12, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xc0, 0x00, 0xc2, 0x0c,
    0xff, 0x81, 0x00, 0x00, 0x1f, 0xee, 0x05, 0xfb, 0x0b, 0xd9, 0x68, 0x8b, 0x00, 0x00, 0x00, 0x00, 0x49,
    0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

#[allow(unused_imports)] // Each test file uses a different part.
pub use testenv::{TEST_MYSQL_USER, random_hex, workspace_root};

/// [`PNG`] with a `tEXt` chunk holding `text` after its header: a valid
/// picture whose bytes, and so whose file name, are `text`'s own, so that a
/// test's pictures are shared with no other test's.
pub fn png_with_text(text: &str) -> Vec<u8> {
    testenv::png::with_text(&PNG, text)
}

/// The file name tcpserver gives a PNG: its SHA-256 in hex, `.png`.
pub fn png_name(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{}.png", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Where the tests find MySQL, Redis and the pepper.
#[derive(Debug, Clone)]
pub struct TestEnv {
    /// The test database's URL, with the tests' own MySQL user and password.
    pub mysql_url: String,
    /// The Redis URL (of the single Redis).
    pub redis_url: String,
    /// The nodes of the test Redis Cluster, when the test runs on one.
    pub redis_cluster: Option<Vec<String>>,
    /// The pepper file.
    pub pepper_file: PathBuf,
}

impl TestEnv {
    /// From the variables `./test.sh` exports, or else from `run/secrets/`
    /// ([`testenv::Services::load`]).
    pub fn load() -> TestEnv {
        let testenv::Services { mysql_url, redis_url, pepper_file } = testenv::Services::load();
        TestEnv { mysql_url, redis_url, redis_cluster: None, pepper_file }
    }

    /// The same, with Redis on this test binary's shared cluster.
    pub fn on_cluster() -> TestEnv {
        TestEnv { redis_cluster: Some(cluster::TestCluster::shared().nodes()), ..TestEnv::load() }
    }

    /// Where tcpserver's links find Redis.
    pub fn target(&self) -> tcpserver::db::redis::Target {
        match &self.redis_cluster {
            Some(nodes) => tcpserver::db::redis::Target::cluster(nodes),
            None => tcpserver::db::redis::Target::single(&self.redis_url),
        }
        .expect("a valid Redis address")
    }

    /// A direct connection to the test database.
    pub fn mysql(&self) -> mysql::Conn {
        mysql::Conn::new(mysql::Opts::from_url(&self.mysql_url).expect("valid URL")).expect("MySQL is up")
    }

    /// A direct connection to Redis (the cluster, when the test runs on one).
    pub fn redis(&self) -> TestRedis {
        self.try_redis().expect("Redis is up")
    }

    fn try_redis(&self) -> redis::RedisResult<TestRedis> {
        match &self.redis_cluster {
            Some(nodes) => {
                let urls: Vec<String> = nodes.iter().map(|n| format!("redis://{n}/")).collect();
                let conn = redis::cluster::ClusterClient::new(urls)?.get_connection()?;
                Ok(TestRedis::Cluster(Box::new(conn), nodes.clone()))
            }
            None => Ok(TestRedis::Single(redis::Client::open(self.redis_url.as_str())?.get_connection()?)),
        }
    }

    /// The `tcpserver` arguments that point it at this Redis.
    fn redis_args(&self) -> Vec<String> {
        match &self.redis_cluster {
            Some(nodes) => vec!["--redis-cluster".into(), nodes.join(",")],
            None => vec!["--redis-url".into(), self.redis_url.clone()],
        }
    }

    /// The MySQL URL without its password, and the password.
    pub fn split_mysql_url(&self) -> (String, String) {
        testenv::split_mysql_url(&self.mysql_url)
    }
}

/// Sends each request at the same moment, one per connection (all connected
/// first, then released together by a barrier), and returns the replies in order.
pub fn all_at_once(server: &TestServer, requests: Vec<Message>) -> Vec<Message> {
    let barrier = Arc::new(std::sync::Barrier::new(requests.len()));
    let threads: Vec<_> = requests
        .into_iter()
        .map(|message| {
            let mut client = server.connect();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                client.call(message)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().expect("client thread")).collect()
}

/// A fresh sign-up idempotency key, random as httpserver makes them.
pub fn new_key() -> IdempotencyKey {
    IdempotencyKey(rand::random())
}

/// A running `tcpserver` process with its own namespace in Redis, MySQL and on disk.
pub struct TestServer {
    child: Option<Child>,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// Its Redis key prefix.
    pub redis_prefix: String,
    /// The prefix of every username this test creates.
    pub user_prefix: String,
    /// Where it looks for the picture files of earlier versions (none unless a test puts some).
    pub avatar_dir: PathBuf,
    /// Its scratch directory (stderr log, password and secret files, avatars).
    pub dir: PathBuf,
    /// The RPC secret it was started with, which its clients prove.
    pub secret: RpcSecret,
    /// Where to reach the databases.
    pub env: TestEnv,
    /// Its command line, for [`TestServer::restart`].
    args: Vec<String>,
}

/// Options for [`TestServer::start_with`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra command-line arguments, added last (so they override the defaults).
    pub args: Vec<String>,
    /// Whether the server uses this test binary's Redis Cluster instead of the single Redis.
    pub cluster: bool,
    /// The nodes of another cluster to use instead (a test's private one).
    pub cluster_nodes: Option<Vec<String>>,
}

impl Options {
    /// On this test binary's shared Redis Cluster ([`cluster::TestCluster::shared`]).
    pub fn on_cluster() -> Options {
        Options { cluster: true, ..Options::default() }
    }

    /// On the cluster of these nodes (a private [`cluster::TestCluster`]).
    pub fn on_nodes(nodes: Vec<String>) -> Options {
        Options { cluster_nodes: Some(nodes), ..Options::default() }
    }

    /// On the single Redis (`cluster` false) or the shared cluster.
    pub fn on(cluster: bool) -> Options {
        Options { cluster, ..Options::default() }
    }

    /// Adds `--flag value`.
    pub fn arg(mut self, flag: &str, value: impl ToString) -> Options {
        self.args.push(flag.to_owned());
        self.args.push(value.to_string());
        self
    }
}

impl TestServer {
    /// A server with test defaults (4 workers).
    pub fn start() -> TestServer {
        TestServer::start_with(Options::default())
    }

    /// A server with extra arguments.
    pub fn start_with(options: Options) -> TestServer {
        let env = match (&options.cluster_nodes, options.cluster) {
            (Some(nodes), _) => TestEnv { redis_cluster: Some(nodes.clone()), ..TestEnv::load() },
            (None, true) => TestEnv::on_cluster(),
            (None, false) => TestEnv::load(),
        };
        let id = random_hex(8);
        let dir = std::env::temp_dir().join(format!("tcpserver-test-{id}"));
        fs::create_dir_all(&dir).expect("temp dir");
        let (mysql_url, mysql_password) = env.split_mysql_url();
        let password_file = dir.join("mysql_password");
        fs::write(&password_file, format!("{mysql_password}\n")).expect("write password file");
        let secret_bytes: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
        let secret_file = dir.join("rpc_secret");
        fs::write(&secret_file, &secret_bytes).expect("write RPC secret file");
        let secret = RpcSecret::new(&secret_bytes).expect("a 32-byte secret");
        let avatar_dir = dir.join("avatars");
        let redis_prefix = format!("umtest:{id}:");
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "4",
            "--mysql-url",
            &mysql_url,
            "--metrics-listen",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (flag, value) in [
            ("--mysql-password-file", &password_file),
            ("--avatar-dir", &avatar_dir),
            ("--pepper-file", &env.pepper_file),
            ("--rpc-secret-file", &secret_file),
        ] {
            args.push(flag.into());
            args.push(value.display().to_string());
        }
        args.extend(env.redis_args());
        args.extend(["--redis-prefix".to_string(), redis_prefix.clone()]);
        args.extend(options.args);
        let (child, addr) = spawn_server(&args, &dir);
        TestServer {
            child: Some(child),
            addr,
            redis_prefix,
            user_prefix: format!("t{id}."),
            avatar_dir,
            dir,
            secret,
            env,
            args,
        }
    }

    /// Stops the server (SIGTERM, a clean exit) and starts it again with the
    /// same settings and directories; it listens on a new port.
    pub fn restart(&mut self) {
        let status = self.terminate();
        assert!(status.success(), "tcpserver exited with {status}");
        let (child, addr) = spawn_server(&self.args, &self.dir);
        self.child = Some(child);
        self.addr = addr;
    }

    /// Waits until the server's log (of all its runs) has `count` lines
    /// containing `needle`, and returns them; panics after [`REPLY_TIMEOUT`].
    pub fn wait_for_log(&self, needle: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let log = self.stderr();
            let lines: Vec<String> = log.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect();
            if lines.len() >= count {
                return lines;
            }
            assert!(Instant::now() < deadline, "not {count} lines with {needle:?} in the log:\n{log}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its Redis key layout.
    pub fn keys(&self) -> tcpserver::keys::Keys {
        tcpserver::keys::Keys::new(self.redis_prefix.clone())
    }

    /// Records waiting in its history queues.
    pub fn queued_history(&self) -> u64 {
        let mut redis = self.env.redis();
        self.keys()
            .history_queues()
            .iter()
            .map(|queue| redis::cmd("LLEN").arg(queue).query::<u64>(&mut redis).expect("LLEN"))
            .sum()
    }

    /// A username unique to this server: its prefix plus `suffix` (at most 22 chars).
    pub fn username(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.user_prefix)
    }

    /// A new protocol client, past the handshake.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr, &self.secret)
    }

    /// A new protocol client, past the handshake; `None` if the server closed
    /// the connection instead (at its connection limit, say).
    pub fn try_connect(&self) -> Option<Client> {
        let mut client = Client::connect_unproven(self.addr);
        client.prove(&self.secret).then_some(client)
    }

    /// A new connection that has not proved the secret (nor tried to).
    pub fn connect_unproven(&self) -> Client {
        Client::connect_unproven(self.addr)
    }

    /// What the server wrote to standard error so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// The value of one counter on the server's metrics listener (the address
    /// it logged at start), e.g. `usermgmt_password_hashes_total`.
    pub fn metric(&self, name: &str) -> u64 {
        let log = self.stderr();
        let addr = log
            .lines()
            .find_map(|line| line.split("metrics on http://").nth(1))
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
            .to_owned();
        let mut stream = TcpStream::connect(&addr).expect("metrics listener");
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("send scrape");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read scrape");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server still running");
        // SAFETY: kill(2) with a pid we spawned and have not reaped yet.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().expect("wait for tcpserver") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("tcpserver did not exit within 15 s of SIGTERM");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Signs up a user with this server's prefix; returns the full username.
    pub fn sign_up(&self, client: &mut Client, suffix: &str, password: &str) -> String {
        let username = self.username(suffix);
        let reply = client.call(Message::SignUp {
            username: username.clone(),
            password: password.into(),
            nickname: None,
            client: None,
            key: new_key(),
        });
        assert!(matches!(reply, Message::SignedUp(_)), "sign-up of {username} failed: {reply:?}");
        username
    }

    /// Signs up and logs in; returns the username and the token.
    pub fn user_with_session(&self, client: &mut Client, suffix: &str, password: &str) -> (String, Secret) {
        let username = self.sign_up(client, suffix, password);
        let token = client.log_in(&username, password).0;
        (username, token)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A failing test shows what the server said before its directory goes.
        if thread::panicking() {
            let log = self.stderr();
            let tail: Vec<&str> = log.lines().filter(|l| !l.contains("operation=")).collect();
            eprintln!(
                "--- tcpserver's log (last lines) ---\n{}",
                tail[tail.len().saturating_sub(40)..].join("\n")
            );
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Clean up even when the test failed; failures here must not hide that one.
        if let Ok(mut redis) = self.env.try_redis() {
            delete_keys(&mut redis, &self.redis_prefix);
        }
        if let Ok(Ok(mut mysql)) = mysql::Opts::from_url(&self.env.mysql_url).map(mysql::Conn::new) {
            let _ = delete_accounts(&mut mysql, &self.user_prefix);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Starts the tcpserver binary with `args`, its standard error appended to
/// `dir/stderr.log`, and waits for its `listening on` line.
fn spawn_server(args: &[String], dir: &Path) -> (Child, SocketAddr) {
    let log = dir.join("stderr.log");
    let stderr = fs::OpenOptions::new().create(true).append(true).open(&log).expect("stderr log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tcpserver"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn tcpserver");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read the listening line");
    let addr = line.trim().strip_prefix("listening on ").and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        let _ = child.kill();
        let log = fs::read_to_string(&log).unwrap_or_default();
        panic!("tcpserver did not start: stdout {line:?}, stderr:\n{log}")
    });
    (child, addr)
}

/// Deletes the accounts whose username starts with `prefix`, each as an
/// account deletion in tcpserver does ([`tcpserver::avatar_refs::delete_user`]:
/// its picture released, so that the shared test database keeps true counts
/// for the pictures other tests still use).
pub fn delete_accounts(mysql: &mut mysql::Conn, prefix: &str) -> mysql::Result<()> {
    let ids: Vec<u64> =
        mysql.exec("SELECT id FROM users WHERE username LIKE ?", (testenv::like_prefix(prefix),))?;
    for id in ids {
        let mut tx = mysql.start_transaction(mysql::TxOpts::default())?;
        tcpserver::avatar_refs::delete_user(&mut tx, id)?;
        tx.commit()?;
    }
    Ok(())
}

/// Defines a test twice, as a module of two: `single_node` against the
/// single Redis and `cluster` against this test binary's Redis Cluster; the
/// body gets `Options` for [`TestServer::start_with`].
#[macro_export]
macro_rules! on_single_and_cluster {
    ($(#[$meta:meta])* fn $name:ident($options:ident) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($options: $crate::util::Options) $body

            #[test]
            fn single_node() {
                run($crate::util::Options::on(false))
            }

            #[test]
            fn cluster() {
                run($crate::util::Options::on(true))
            }
        }
    };
}

/// A protocol client over a blocking socket.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    next_id: u64,
}

impl Client {
    /// Connects to a server and proves `secret`; panics unless it is accepted.
    pub fn connect(addr: SocketAddr, secret: &RpcSecret) -> Client {
        let mut client = Client::connect_unproven(addr);
        assert!(client.prove(secret), "tcpserver did not accept the RPC secret");
        client
    }

    /// Connects to a server without the handshake: the server's challenge is
    /// the first thing to read.
    pub fn connect_unproven(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to tcpserver");
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).expect("set timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client { stream, buf: Vec::new(), next_id: 1 }
    }

    /// The handshake, as httpserver does it: reads the challenge, answers with
    /// `secret`'s proof, and says whether the server accepted it.
    pub fn prove(&mut self, secret: &RpcSecret) -> bool {
        let Some(Frame { message: Message::Challenge(nonce), .. }) = self.try_recv() else {
            return false;
        };
        self.send_with_id(0, Message::Proof(secret.prove(&nonce)));
        matches!(self.try_recv(), Some(Frame { message: Message::Accepted, .. }))
    }

    /// The next frame, or `None` if the server closes the connection (or sends
    /// bytes that are not a frame) first.
    pub fn try_recv(&mut self) -> Option<Frame> {
        loop {
            if let Ok(Some((frame, used))) = Frame::decode(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends a request with a fresh id; returns the id.
    pub fn send(&mut self, message: Message) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send_with_id(id, message);
        id
    }

    /// Sends a request with the given id.
    pub fn send_with_id(&mut self, request_id: u64, message: Message) {
        let mut bytes = Vec::new();
        Frame { request_id, message }.encode(&mut bytes).expect("encodable request");
        self.write_raw(&bytes);
    }

    /// Sends raw bytes.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to tcpserver");
    }

    /// Receives the next frame.
    pub fn recv(&mut self) -> Frame {
        loop {
            if let Some((frame, used)) = Frame::decode(&self.buf).expect("server sent a valid frame") {
                self.buf.drain(..used);
                return frame;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = match self.stream.read(&mut chunk) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                other => other.expect("read a reply in time"),
            };
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a request and waits for its reply.
    pub fn call(&mut self, message: Message) -> Message {
        let id = self.send(message);
        let frame = self.recv();
        assert_eq!(frame.request_id, id, "reply to another request");
        frame.message
    }

    /// Logs in; panics unless it works. Returns the token and the profile.
    pub fn log_in(&mut self, username: &str, password: &str) -> (Secret, Profile) {
        match self.call(Message::Login {
            username: username.into(),
            password: password.into(),
            client: None,
            user_agent: None,
        }) {
            Message::LoggedIn { token, profile } => (token, profile),
            other => panic!("log-in of {username} failed: {other:?}"),
        }
    }

    /// Sends a request and waits for any reply; `None` if the server closed the
    /// connection instead (or refused the bytes).
    pub fn try_call(&mut self, message: Message) -> Option<Message> {
        let mut bytes = Vec::new();
        Frame { request_id: 0, message }.encode(&mut bytes).expect("encodable request");
        self.stream.write_all(&bytes).ok()?;
        self.try_recv().map(|frame| frame.message)
    }

    /// Whether the server closes this connection (EOF or reset) within the reply timeout.
    pub fn is_closed_by_server(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                    return true;
                }
                Err(_) => return false,
            }
        }
    }
}

/// The error code of a reply, or a panic naming what came instead.
pub fn error_code(reply: &Message) -> ErrorCode {
    match reply {
        Message::Error(e) => e.code,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// A TCP proxy in front of a database, which a test can cut or turn off.
pub struct Proxy {
    /// The address to give the server instead of the database's.
    pub addr: SocketAddr,
    refusing: Arc<AtomicBool>,
    sockets: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// A proxy forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let refusing = Arc::new(AtomicBool::new(false));
        let sockets: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s, st) = (Arc::clone(&refusing), Arc::clone(&sockets), Arc::clone(&stop));
        thread::spawn(move || {
            for client in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if r.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let mut list = s.lock().unwrap();
                for sock in [&client, &server] {
                    if let Ok(clone) = sock.try_clone() {
                        list.push(clone);
                    }
                }
                drop(list);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { addr, refusing, sockets, stop }
    }

    /// Closes every connection made so far, as a server restart or an idle
    /// timeout would.
    pub fn cut(&self) {
        for sock in self.sockets.lock().unwrap().drain(..) {
            let _ = sock.shutdown(Shutdown::Both);
        }
    }

    /// Makes new connections fail (or work again).
    pub fn set_refusing(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}
