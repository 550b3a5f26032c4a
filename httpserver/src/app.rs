//! What every handler shares: the settings, the RPC pool, the templates, the
//! static file root and the picture cache, built once at start-up.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use proto::handshake::MIN_SECRET_LEN;
use proto::{Message, RpcSecret};

use crate::avatar_cache::AvatarCache;
use crate::balancer::{Balancer, BalancerError, Lane, LaneSettings};
use crate::config::Config;
use crate::error::Failure;
use crate::hangup_watch::HangupWatch;
use crate::peer_closed::ClientLink;
use crate::rpc_pool::{GiveUp, RpcError};
use crate::static_files::StaticFiles;
use crate::templates::{TemplateError, Templates};

/// The server's shared state; handlers get `&App`.
#[derive(Debug)]
pub struct App {
    /// The settings.
    pub config: Config,
    /// Connections to the tcpservers, in two lanes: ordinary calls, and
    /// scan-to-log-in long polls with their own count of connections and a
    /// deadline past the longest wait.
    pub rpc: Balancer,
    /// The page templates.
    pub templates: Templates,
    /// The `/static/` file root.
    pub statics: StaticFiles,
    /// The pictures served lately (`/static/avatars/`), bounded in bytes.
    pub avatars: AvatarCache,
    /// Set on SIGTERM or SIGINT: the server is draining (`/readyz` says 503).
    pub stopping: Arc<AtomicBool>,
    /// Watches the clients of parked calls, to give a call up when its
    /// client leaves.
    pub hangups: HangupWatch,
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The templates are missing or malformed.
    Templates(TemplateError),
    /// The static directory does not exist.
    StaticDir(std::io::Error),
    /// The listening socket could not be opened.
    Bind(std::io::Error),
    /// The signal handlers could not be installed.
    Signals(std::io::Error),
    /// The RPC balancer could not be built.
    Balancer(BalancerError),
    /// The hang-up watcher's `epoll` or thread could not be made.
    HangupWatch(std::io::Error),
    /// The RPC secret file cannot be read.
    ReadRpcSecret {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The RPC secret file holds fewer than [`MIN_SECRET_LEN`] bytes (or is
    /// otherwise refused by [`RpcSecret::new`]).
    RpcSecret {
        /// The file.
        path: PathBuf,
        /// Why it was refused.
        source: proto::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Templates(e) => write!(f, "{e}"),
            StartError::StaticDir(e) => write!(f, "cannot open the static directory: {e}"),
            StartError::Bind(e) => write!(f, "cannot listen: {e}"),
            StartError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            StartError::Balancer(e) => write!(f, "{e}"),
            StartError::HangupWatch(e) => write!(f, "cannot start the hang-up watcher: {e}"),
            StartError::ReadRpcSecret { path, source } => write!(
                f,
                "cannot read the RPC secret file {}: {source} (give --rpc-secret-file the file \
                 tcpserver reads; scripts/services.sh makes run/secrets/rpc_secret)",
                path.display()
            ),
            StartError::RpcSecret { path, source } => write!(
                f,
                "the RPC secret file {}: {source}; at least {MIN_SECRET_LEN} random bytes are needed",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Templates(e) => Some(e),
            StartError::StaticDir(e)
            | StartError::Bind(e)
            | StartError::Signals(e)
            | StartError::HangupWatch(e)
            | StartError::ReadRpcSecret { source: e, .. } => Some(e),
            StartError::RpcSecret { source, .. } => Some(source),
            StartError::Balancer(e) => Some(e),
        }
    }
}

impl App {
    /// Reads the RPC secret, loads templates and checks the static root; opens
    /// no connection yet.
    ///
    /// # Errors
    ///
    /// A [`StartError`] when the secret file is missing or short, a directory
    /// is missing or a template is bad.
    pub fn new(config: Config) -> Result<App, StartError> {
        let secret = read_rpc_secret(&config.rpc_secret_file)?;
        let templates = Templates::load(&config.html_dir).map_err(StartError::Templates)?;
        let statics = StaticFiles::new(&config.static_dir).map_err(StartError::StaticDir)?;
        let calls = LaneSettings { connections: config.rpc_pool_size, timeout: config.rpc_timeout };
        let waits = LaneSettings {
            connections: config.qr_rpc_pool_size,
            timeout: config.qr_wait + config.rpc_timeout,
        };
        let rpc = Balancer::new(&config.backends, calls, waits, &secret).map_err(StartError::Balancer)?;
        let avatars = AvatarCache::new(config.avatar_cache_bytes);
        let hangups = HangupWatch::start().map_err(StartError::HangupWatch)?;
        Ok(App {
            config,
            rpc,
            templates,
            statics,
            avatars,
            stopping: Arc::new(AtomicBool::new(false)),
            hangups,
        })
    }

    /// Whether the server has been told to stop and is finishing its requests.
    pub fn is_draining(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// One RPC, with tcpserver's refusals and transport failures both as [`Failure`].
    ///
    /// # Errors
    ///
    /// [`Failure::Rejected`] for an error reply, [`Failure::Http`] for a transport failure.
    pub fn call(&self, message: Message) -> Result<Message, Failure> {
        match self.rpc.call(Lane::Calls, message)? {
            Message::Error(reply) => Err(Failure::Rejected(reply)),
            reply => Ok(reply),
        }
    }

    /// [`App::call`] for a long poll, over the connections kept for them,
    /// given up as soon as the client on `link` has gone (a desktop closed
    /// its page; [`App::hangups`] notices): tcpserver is told to let the wait
    /// go, and the thread and the connection's place are free at once, not
    /// at the wait's deadline.
    ///
    /// # Errors
    ///
    /// As [`App::call`].
    pub fn call_parked(&self, message: Message, link: Option<ClientLink>) -> Result<Parked, Failure> {
        let give_up = Arc::new(GiveUp::default());
        let _watching = link.and_then(|link| match self.hangups.watch(link, &give_up) {
            Ok(watching) => Some(watching),
            Err(e) => {
                crate::log!(
                    "httpserver: cannot watch a parked call's client, it is held to its deadline: {e}"
                );
                None
            }
        });
        match self.rpc.call_watched(Lane::Waits, message, Some(&give_up)) {
            Ok(Message::Error(reply)) => Err(Failure::Rejected(reply)),
            Ok(reply) => Ok(Parked::Answered(reply)),
            Err(RpcError::Abandoned) => Ok(Parked::ClientGone),
            Err(error) => Err(error.into()),
        }
    }
}

/// How a parked call ended, when it did not fail.
#[derive(Debug)]
pub enum Parked {
    /// tcpserver's reply (not an error reply).
    Answered(Message),
    /// The client went away first; nothing is to be answered.
    ClientGone,
}

/// The secret file's bytes as they are, as tcpserver reads them.
fn read_rpc_secret(path: &Path) -> Result<RpcSecret, StartError> {
    let bytes =
        std::fs::read(path).map_err(|source| StartError::ReadRpcSecret { path: path.to_owned(), source })?;
    RpcSecret::new(&bytes).map_err(|source| StartError::RpcSecret { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_with_secret_file(path: &Path) -> Result<App, StartError> {
        let args = ["--rpc-secret-file".to_owned(), path.display().to_string()];
        App::new(Config::parse(args, |_| None).unwrap())
    }

    #[test]
    fn a_missing_or_short_rpc_secret_stops_the_start_with_a_clear_message() {
        let dir = std::env::temp_dir().join(format!("httpserver-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = start_with_secret_file(&dir.join("missing")).unwrap_err();
        assert!(matches!(missing, StartError::ReadRpcSecret { .. }), "{missing}");
        assert!(missing.to_string().contains("RPC secret file"), "{missing}");
        let short = dir.join("short");
        std::fs::write(&short, b"fifteen bytes!!").unwrap();
        let refused = start_with_secret_file(&short).unwrap_err();
        assert!(matches!(refused, StartError::RpcSecret { .. }), "{refused}");
        assert!(refused.to_string().contains("16"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
