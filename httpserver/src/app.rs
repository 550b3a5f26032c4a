//! What every handler shares: the settings, the RPC pool, the templates and the
//! static file root, built once at start-up.

use std::fmt;

use proto::Message;

use crate::config::Config;
use crate::error::Failure;
use crate::rpc_pool::RpcPool;
use crate::static_files::StaticFiles;
use crate::templates::{TemplateError, Templates};

/// The server's shared state; handlers get `&App`.
#[derive(Debug)]
pub struct App {
    /// The settings.
    pub config: Config,
    /// Connections to tcpserver.
    pub rpc: RpcPool,
    /// The page templates.
    pub templates: Templates,
    /// The `/static/` file root.
    pub statics: StaticFiles,
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
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Templates(e) => write!(f, "{e}"),
            StartError::StaticDir(e) => write!(f, "cannot open the static directory: {e}"),
            StartError::Bind(e) => write!(f, "cannot listen: {e}"),
            StartError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Templates(e) => Some(e),
            StartError::StaticDir(e) | StartError::Bind(e) | StartError::Signals(e) => Some(e),
        }
    }
}

impl App {
    /// Loads templates and checks the static root; opens no connection yet.
    ///
    /// # Errors
    ///
    /// A [`StartError`] when a directory is missing or a template is bad.
    pub fn new(config: Config) -> Result<App, StartError> {
        let templates = Templates::load(&config.html_dir).map_err(StartError::Templates)?;
        let statics = StaticFiles::new(&config.static_dir).map_err(StartError::StaticDir)?;
        let rpc = RpcPool::new(config.backend.clone(), config.rpc_pool_size, config.rpc_timeout);
        Ok(App { config, rpc, templates, statics })
    }

    /// One RPC, with tcpserver's refusals and transport failures both as [`Failure`].
    ///
    /// # Errors
    ///
    /// [`Failure::Rejected`] for an error reply, [`Failure::Http`] for a transport failure.
    pub fn call(&self, message: Message) -> Result<Message, Failure> {
        match self.rpc.call(message)? {
            Message::Error(reply) => Err(Failure::Rejected(reply)),
            reply => Ok(reply),
        }
    }
}
