//! The blocking socket calls of the RPC client, each bounded by the caller's
//! deadline: connect, write a frame, and check an idle connection for a closed
//! peer.
//!
//! A socket timeout of zero means "block forever" to the socket API, so every
//! timeout here comes from [`remaining`], which says `None` instead of zero.

use std::io::{self, ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Why a frame was not written whole, and how much of it went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteFailure {
    /// The deadline came first (the socket's write timeout, or no time left).
    OutOfTime {
        /// Bytes of the frame sent.
        written: usize,
    },
    /// The socket failed.
    Failed {
        /// Bytes of the frame sent.
        written: usize,
    },
}

/// Writes a whole frame before `deadline`.
pub(super) fn write_frame(
    stream: &mut TcpStream,
    frame: &[u8],
    deadline: Instant,
) -> Result<(), WriteFailure> {
    let mut written = 0;
    while written < frame.len() {
        let left = remaining(deadline).ok_or(WriteFailure::OutOfTime { written })?;
        stream.set_write_timeout(Some(left)).map_err(|_| WriteFailure::Failed { written })?;
        match stream.write(&frame[written..]) {
            Ok(0) => return Err(WriteFailure::Failed { written }),
            Ok(n) => written += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // The write timeout: the peer is not reading fast enough.
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(WriteFailure::OutOfTime { written });
            }
            Err(_) => return Err(WriteFailure::Failed { written }),
        }
    }
    Ok(())
}

/// Whether the peer has not closed an idle connection: nothing to read yet
/// (bytes waiting on an idle connection are read by its reader, so only EOF
/// or an error shows here).
pub(super) fn peer_still_open(stream: &TcpStream) -> bool {
    !crate::peer_closed::closed(stream.as_raw_fd())
}

pub(super) fn open(backend: &str, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = io::Error::new(ErrorKind::NotFound, "back-end address resolves to nothing");
    for addr in backend.to_socket_addrs()? {
        let left = remaining(deadline).ok_or_else(|| io::Error::from(ErrorKind::TimedOut))?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(stream) => {
                // Requests are single small frames: send them now, not after 40 ms.
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Time left before `deadline`, or `None` once it has passed (a zero timeout
/// would mean "block forever" to the socket API).
pub(super) fn remaining(deadline: Instant) -> Option<Duration> {
    deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
}
