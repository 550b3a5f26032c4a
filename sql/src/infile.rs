//! Feeding `LOAD DATA LOCAL INFILE` from memory instead of from files.
//!
//! The server answers such a statement by asking the client for "the file"
//! by name. The `mysql` crate passes that request to one handler per
//! connection; here the handler serves only what the tool staged for the next
//! statement, under the name the statement used. It never opens a file, so a
//! server (or anyone between) asking for `/etc/passwd` gets an error instead —
//! the classic risk of enabling local infile on a client.

use std::{
    fmt,
    io::{self, Write},
    sync::{Arc, Mutex},
};

use mysql::LocalInfileHandler;

/// Writes the rows of one statement.
pub type Feed = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + Send>;

/// The feed for the next `LOAD DATA LOCAL INFILE '<name>'` on one connection.
#[derive(Clone, Default)]
pub struct InfileSlot(Arc<Mutex<Option<(&'static str, Feed)>>>);

impl fmt::Debug for InfileSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InfileSlot")
    }
}

impl InfileSlot {
    /// Stages `feed` to answer the next request for the file `name`.
    pub fn stage(&self, name: &'static str, feed: Feed) {
        match self.0.lock() {
            Ok(mut slot) => *slot = Some((name, feed)),
            Err(poisoned) => *poisoned.into_inner() = Some((name, feed)),
        }
    }

    /// The handler to install on the connection: it runs the staged feed once,
    /// if the server asks for the staged name, and refuses anything else.
    pub fn handler(&self) -> LocalInfileHandler {
        let slot = self.0.clone();
        LocalInfileHandler::new(move |file_name, writer| {
            let staged = match slot.lock() {
                Ok(mut slot) => slot.take(),
                Err(poisoned) => poisoned.into_inner().take(),
            };
            match staged {
                Some((name, feed)) if name.as_bytes() == file_name => feed(writer),
                _ => Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "the server asked for the file {:?}, which this tool did not offer",
                        String::from_utf8_lossy(file_name)
                    ),
                )),
            }
        })
    }
}
