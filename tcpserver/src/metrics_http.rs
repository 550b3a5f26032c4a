//! The metrics listener: a minimal HTTP/1.1 server for `GET /metrics`, on a
//! thread of its own, apart from the reactor.
//!
//! A scraper (Prometheus, curl, a test) connects, sends one request and reads
//! the counters of [`crate::metrics`]. Connections are served one at a time,
//! each bounded in time and in the bytes read, so a stuck or hostile client
//! can hold the listener for at most [`CLIENT_TIMEOUT`] and costs nothing
//! else: the reactor and the workers never wait on this thread.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

/// How long one scrape may take to send its request and read the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// The listener thread's stack: rendering is shallow, but its first
/// allocations set up the thread's cache in jemalloc (the binary's
/// allocator), which overflowed a 64 KiB stack in a debug build.
const STACK_SIZE: usize = 256 * 1024;

/// Largest request head read; a scrape's is a few hundred bytes.
const MAX_REQUEST_LEN: usize = 8 * 1024;

/// Binds `addr` and serves scrapes from a new thread; returns the bound
/// address (port 0 picks a free one).
///
/// # Errors
///
/// The bind error, or the error of starting the thread.
pub fn spawn(addr: SocketAddr) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    thread::Builder::new().name("metrics".into()).stack_size(STACK_SIZE).spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Err(e) = serve(stream) {
                crate::log!("metrics: scrape failed: {e}");
            }
        }
    })?;
    Ok(bound)
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let request_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let (status, body) = match request_line.split(|&b| b == b' ').take(2).collect::<Vec<_>>()[..] {
        [b"GET", b"/metrics"] => ("200 OK", crate::metrics::render()),
        [b"GET", _] => ("404 Not Found", "only /metrics is served here\n".to_owned()),
        _ => ("405 Method Not Allowed", "GET /metrics\n".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}

/// The request up to its blank line (or what arrived of it within the bounds).
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while head.len() < MAX_REQUEST_LEN && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(head)
}
