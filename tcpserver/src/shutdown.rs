//! How the reactor learns that it should stop: a self-pipe.
//!
//! The read end is registered with the reactor's poll. SIGINT and SIGTERM write
//! a byte to the write end from the signal handler (signal-hook's `pipe`), and
//! [`ShutdownHandle::trigger`] does the same from any thread, so signals and
//! programmatic stops take one path into the event loop.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use signal_hook::consts::{SIGINT, SIGTERM};

/// The read end of the shutdown pipe, for the reactor.
#[derive(Debug)]
pub struct Shutdown {
    read: mio::net::UnixStream,
    write: UnixStream,
}

/// Stops a running server from another thread.
#[derive(Debug)]
pub struct ShutdownHandle(UnixStream);

impl Shutdown {
    /// A new pipe; nothing triggers it until [`Shutdown::on_signals`] or a handle does.
    ///
    /// # Errors
    ///
    /// The I/O error if the socket pair cannot be made.
    pub fn new() -> io::Result<Shutdown> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok(Shutdown { read: mio::net::UnixStream::from_std(read), write })
    }

    /// Makes SIGINT and SIGTERM trigger the shutdown.
    ///
    /// # Errors
    ///
    /// The I/O error if a handler cannot be installed.
    pub fn on_signals(&self) -> io::Result<()> {
        for signal in [SIGINT, SIGTERM] {
            signal_hook::low_level::pipe::register(signal, self.write.try_clone()?)?;
        }
        Ok(())
    }

    /// A handle that triggers the shutdown.
    ///
    /// # Errors
    ///
    /// The I/O error if the socket cannot be duplicated.
    pub fn handle(&self) -> io::Result<ShutdownHandle> {
        Ok(ShutdownHandle(self.write.try_clone()?))
    }

    /// The end to register with the poll.
    pub fn source(&mut self) -> &mut mio::net::UnixStream {
        &mut self.read
    }

    /// Empties the pipe after a wake-up.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 64];
        while matches!(self.read.read(&mut buf), Ok(n) if n > 0) {}
    }
}

impl ShutdownHandle {
    /// Asks the server to stop. A full pipe already holds a request, so a
    /// failed write loses nothing.
    pub fn trigger(&self) {
        let _ = (&self.0).write(&[1]);
    }
}
