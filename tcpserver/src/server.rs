//! Putting the pieces together: read the secrets, bind, start the workers, run
//! the reactor.
//!
//! Everything that can be wrong with the settings (a missing pepper or RPC
//! secret, a bad URL,
//! a port in use) is found by [`Server::bind`], before the first client is
//! accepted, and reported as a [`ServerError`] that says what to fix. MySQL and
//! Redis being down is not such an error: the server starts, answers
//! `Unavailable`, and recovers by itself when they come back.

use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use mio::net::TcpListener;
use mio::{Poll, Waker};
use proto::RpcSecret;
use proto::handshake::MIN_SECRET_LEN;

use crate::config::Config;
use crate::db::mysql::MysqlLink;
use crate::db::redis::{RedisLink, Target};
use crate::keys::Keys;
use crate::password::{MIN_PEPPER_LEN, PasswordError, PasswordHasher};
use crate::pool::WorkerPool;
use crate::reactor::{Reactor, WAKER};
use crate::service::{Service, Shared};
use crate::session::Lifetimes;
use crate::shutdown::Shutdown;
use crate::verified::VerifiedCache;

/// Why the server could not start, or stopped with an error.
#[derive(Debug)]
pub enum ServerError {
    /// The pepper file cannot be read.
    ReadPepper {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The pepper file holds fewer than [`MIN_PEPPER_LEN`] bytes.
    PepperTooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The RPC secret file cannot be read.
    ReadRpcSecret {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The RPC secret file holds fewer than [`MIN_SECRET_LEN`] bytes (or is
    /// otherwise refused by [`RpcSecret::new`]).
    RpcSecret {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        source: proto::Error,
    },
    /// The hasher refused the settings (hash cost too low), or the OS
    /// generator gave no key for the verified-credentials cache.
    Hasher(PasswordError),
    /// The MySQL password file cannot be read.
    ReadMysqlPassword {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The MySQL URL does not parse.
    MysqlUrl(mysql::UrlError),
    /// The Redis URL (or a cluster node's address) does not parse.
    RedisUrl(redis::RedisError),
    /// The listening address cannot be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// Setting up or running the event loop or the workers failed.
    Io(io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::ReadPepper { path, source } => write!(
                f,
                "cannot read the pepper file {}: {source} (create one with `head -c 32 /dev/urandom > {0}`)",
                path.display()
            ),
            ServerError::PepperTooShort { path, len } => write!(
                f,
                "the pepper file {} holds {len} bytes; at least {MIN_PEPPER_LEN} are needed",
                path.display()
            ),
            ServerError::ReadRpcSecret { path, source } => write!(
                f,
                "cannot read the RPC secret file {}: {source} (create one with \
                 `(umask 077; head -c 32 /dev/urandom > {0})`, and give httpserver the same file)",
                path.display()
            ),
            ServerError::RpcSecret { path, source } => write!(
                f,
                "the RPC secret file {}: {source}; at least {MIN_SECRET_LEN} random bytes are needed",
                path.display()
            ),
            ServerError::Hasher(e) => write!(f, "password hashing settings: {e}"),
            ServerError::ReadMysqlPassword { path, source } => {
                write!(f, "cannot read the MySQL password file {}: {source}", path.display())
            }
            ServerError::MysqlUrl(e) => write!(f, "invalid MySQL URL: {e}"),
            ServerError::RedisUrl(e) => write!(f, "invalid Redis URL: {e}"),
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Io(e) => write!(f, "event loop: {e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::ReadPepper { source, .. }
            | ServerError::ReadRpcSecret { source, .. }
            | ServerError::ReadMysqlPassword { source, .. }
            | ServerError::Bind { source, .. } => Some(source),
            ServerError::Io(e) => Some(e),
            ServerError::RpcSecret { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    reactor: Reactor,
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
}

impl Server {
    /// Reads the secrets, binds the listener and starts the workers.
    ///
    /// # Errors
    ///
    /// [`ServerError`] saying which setting is wrong.
    pub fn bind(config: &Config, shutdown: Shutdown) -> Result<Server, ServerError> {
        let pepper = read_pepper(&config.pepper_file)?;
        let hasher = PasswordHasher::new(pepper, config.hash_cost).map_err(ServerError::Hasher)?;
        // Timed now, before any log-in waits on it.
        crate::log!("password hashes: {}", crate::pbkdf2_lanes::choice());
        let secret = read_rpc_secret(&config.rpc_secret_file)?;
        let mysql_password = match &config.mysql_password_file {
            Some(path) => Some(read_password(path)?),
            None => None,
        };
        let mysql_opts = crate::db::mysql::options(&config.mysql_url, mysql_password.as_deref())
            .map_err(ServerError::MysqlUrl)?;
        let redis = match config.redis_cluster.as_slice() {
            [] => Target::single(&config.redis_url),
            nodes => Target::cluster(nodes),
        }
        .map_err(ServerError::RedisUrl)?;
        crate::avatar_import::start(config.avatar_dir.clone(), mysql_opts.clone())
            .map_err(ServerError::Io)?;
        let lifetimes = Lifetimes { idle_secs: config.session_idle_secs, max_secs: config.session_max_secs };
        let verified = VerifiedCache::new().map_err(ServerError::Hasher)?;
        let keys = Keys::new(config.redis_prefix.clone());
        let qr_channel = keys.qr_channel();
        let shared = Arc::new(Shared::new(
            hasher,
            verified,
            keys,
            lifetimes,
            (config.limits, config.max_sessions_per_user, config.qr_ttl_secs),
        ));
        // The drainer's links are numbered after the workers' in the log.
        let drainer = crate::history::drain::Drainer::new(
            mysql_opts.clone(),
            config.workers,
            RedisLink::new(redis.clone(), config.workers),
            shared.keys.clone(),
        );
        drainer.start(Arc::clone(&shared.history_wake)).map_err(ServerError::Io)?;

        let listener = TcpListener::bind(config.listen)
            .map_err(|source| ServerError::Bind { addr: config.listen, source })?;
        let local_addr = listener.local_addr().map_err(ServerError::Io)?;
        let metrics_addr = match config.metrics_listen {
            Some(addr) => {
                Some(crate::metrics_http::spawn(addr).map_err(|source| ServerError::Bind { addr, source })?)
            }
            None => None,
        };
        let poll = Poll::new().map_err(ServerError::Io)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(ServerError::Io)?);
        let (completions_tx, completions) = mpsc::channel();
        let qr_events =
            crate::qr_events::start(&redis, qr_channel, Arc::clone(&waker)).map_err(ServerError::Io)?;
        let make_service = move |worker| {
            Service::new(
                Arc::clone(&shared),
                MysqlLink::new(mysql_opts.clone(), worker),
                RedisLink::new(redis.clone(), worker),
            )
        };
        let pool = WorkerPool::start(config.workers, config.queue_len, make_service, completions_tx, waker)
            .map_err(ServerError::Io)?;
        let reactor = Reactor::new(
            poll,
            listener,
            shutdown,
            (pool, completions),
            config.max_connections,
            secret,
            qr_events,
        )
        .map_err(ServerError::Io)?;
        Ok(Server { reactor, local_addr, metrics_addr })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `GET /metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Serves until the shutdown pipe fires, then drains and returns.
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] if the event loop fails.
    pub fn run(self) -> Result<(), ServerError> {
        self.reactor.run().map_err(ServerError::Io)
    }
}

/// Binds, prints `listening on <addr>` on standard output (the line scripts and
/// tests wait for), and serves until `shutdown` fires.
///
/// # Errors
///
/// [`ServerError`] if the server cannot start or its event loop fails.
pub fn run(config: &Config, shutdown: Shutdown) -> Result<(), ServerError> {
    let server = Server::bind(config, shutdown)?;
    let addr = server.local_addr();
    // Logged before the listening line, so whoever waits for that line finds it.
    if let Some(metrics) = server.metrics_addr() {
        crate::log!("metrics on http://{metrics}/metrics");
    }
    let mut stdout = io::stdout().lock();
    // If stdout is closed nobody is waiting for the line; keep serving.
    let _ = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush());
    drop(stdout);
    crate::log!(
        "listening on {addr} with {} workers, queue {}, at most {} connections",
        config.workers,
        config.queue_len,
        config.max_connections
    );
    server.run()
}

fn read_pepper(path: &Path) -> Result<Vec<u8>, ServerError> {
    let pepper =
        std::fs::read(path).map_err(|source| ServerError::ReadPepper { path: path.to_owned(), source })?;
    if pepper.len() < MIN_PEPPER_LEN {
        return Err(ServerError::PepperTooShort { path: path.to_owned(), len: pepper.len() });
    }
    Ok(pepper)
}

fn read_rpc_secret(path: &Path) -> Result<RpcSecret, ServerError> {
    let bytes =
        std::fs::read(path).map_err(|source| ServerError::ReadRpcSecret { path: path.to_owned(), source })?;
    // The file's bytes as they are, like the pepper's: both servers read them alike.
    RpcSecret::new(&bytes).map_err(|source| ServerError::RpcSecret { path: path.to_owned(), source })
}

fn read_password(path: &Path) -> Result<String, ServerError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ServerError::ReadMysqlPassword { path: path.to_owned(), source })?;
    // Files written by editors and `echo` end with a newline that is not part of it.
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}
