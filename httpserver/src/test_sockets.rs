//! What the unit tests of socket code share: a connected pair of loopback
//! sockets, and waiting a bounded time for something to become true.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// The longest [`eventually`] waits.
const PATIENCE: Duration = Duration::from_secs(5);

/// A client socket and the server's end of its connection.
pub(crate) fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// Whether `condition` holds within [`PATIENCE`], asked every 5 ms.
pub(crate) fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < PATIENCE {
        if condition() {
            return true;
        }
        thread::sleep(Duration::from_millis(5));
    }
    false
}
