//! Whether the other end of a connection has closed it, asked without reading
//! anything and without waiting: one `poll` with a zero timeout for
//! `POLLRDHUP` (Linux: the peer shut its sending side), `POLLHUP` or
//! `POLLERR` (a reset). Unlike a peeking `recv`, it sees a close behind bytes
//! nobody has read yet (a request pipelined after a long poll, then a close).
//!
//! The RPC client asks it of an idle connection to tcpserver before writing on
//! it (`rpc_pool`). A parked call's HTTP client is not asked but watched
//! ([`ClientLink`], [`crate::hangup_watch`]): the kernel reports its close.

use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

/// True when the peer has closed the connection (shut its sending side) or
/// it failed (reset); false while it is open, with bytes waiting or none yet,
/// and when the question could not be asked (an interrupted `poll`).
pub fn closed(fd: RawFd) -> bool {
    let mut probe = libc::pollfd { fd, events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: poll reads and writes the one pollfd it is given, and with a
    // timeout of 0 returns at once; a descriptor that is not open is
    // reported as POLLNVAL, not an error.
    let ready = unsafe { libc::poll(&raw mut probe, 1, 0) };
    ready > 0 && probe.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// The connection a request came on, as a handler may have it watched for
/// the client's going ([`crate::hangup_watch`]). Held by the
/// [`crate::request::Request`] it serves, which never outlives the
/// connection (the server reads the next request only after this one is
/// answered and dropped).
#[derive(Debug, Clone, Copy)]
pub struct ClientLink {
    fd: RawFd,
}

impl ClientLink {
    /// The link of a client's connection.
    pub fn of(stream: &TcpStream) -> ClientLink {
        ClientLink { fd: stream.as_raw_fd() }
    }

    /// The connection's descriptor, open for as long as the link is held.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{Shutdown, TcpStream};
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::test_sockets::{eventually, pair};

    fn until_gone(stream: &TcpStream) -> bool {
        eventually(|| closed(stream.as_raw_fd()))
    }

    #[test]
    fn a_peer_that_waits_or_sends_more_is_there_and_one_that_closed_is_gone() {
        let (mut client, server) = pair();
        let fd = server.as_raw_fd();
        assert!(!closed(fd), "open, nothing sent");
        client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        thread::sleep(Duration::from_millis(50));
        assert!(!closed(fd), "bytes waiting are not a close, and are not consumed");
        assert!(!closed(fd));
        drop(client);
        assert!(until_gone(&server), "closed, behind bytes nobody read");
    }

    #[test]
    fn a_peer_whose_connection_was_reset_is_gone() {
        let (client, server) = pair();
        // Linger 0: close sends a reset, not an orderly end.
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setsockopt reads `size_of::<linger>()` bytes from `linger`.
        let set = unsafe {
            libc::setsockopt(
                client.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(set, 0);
        drop(client);
        assert!(until_gone(&server), "reset");
        server.shutdown(Shutdown::Both).ok();
    }
}
