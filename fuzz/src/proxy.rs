//! Target `proxy`: the PROXY protocol v2 header a trusted load balancer
//! sends first on each connection, [`httpserver::proxy_protocol::parse`]
//! (the `ppp` crate's parser behind httpserver's own bounds).
//!
//! Properties besides "no panic": a header is whole only with all the bytes
//! its length announces, never more than `MAX_HEADER_LEN`, and one byte
//! short it is incomplete (so the socket reader waits for exactly those
//! bytes and takes none of the request behind them); what follows a header
//! never changes what it says; a client address is the connection's own for
//! a `LOCAL` header or an address family without an IP.

use std::net::SocketAddr;

use httpserver::proxy_protocol::{FIXED_LEN, MAX_HEADER_LEN, header_len, parse};

/// The connection's own peer, as the target pretends it.
const PROXY: &str = "127.0.0.3:40000";

/// Parses the input, then checks what it found against the input's prefixes
/// and against the same header followed by other bytes.
///
/// # Panics
///
/// When the parser panics or a property breaks.
pub fn run(data: &[u8]) {
    let proxy: SocketAddr = PROXY.parse().expect("a literal address");
    match parse(data, proxy) {
        Ok(Some((client, used))) => {
            assert!((FIXED_LEN..=MAX_HEADER_LEN).contains(&used), "header of {used} bytes");
            assert!(used <= data.len(), "used {used} of {} bytes", data.len());
            assert_eq!(
                header_len(data).ok().flatten(),
                Some(used),
                "the fixed part announces the length used"
            );
            assert!(parse(&data[..used - 1], proxy).is_ok_and(|r| r.is_none()), "whole one byte short");
            let mut followed = data[..used].to_vec();
            followed.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n\r\n\r\n\0\r\nQUIT\n");
            let again = parse(&followed, proxy).ok().flatten();
            assert_eq!(again, Some((client, used)), "the bytes after a header change it");
            let command = data[12] & 0x0f;
            let family = data[13] & 0xf0;
            if command == 0 || !(family == 0x10 || family == 0x20) {
                assert_eq!(client, proxy, "LOCAL or a family without an IP keeps the proxy's address");
            }
        }
        Ok(None) => {
            let announced = header_len(data).ok().flatten();
            assert!(
                data.len() < FIXED_LEN || announced.is_some_and(|len| data.len() < len),
                "{} bytes, announced {announced:?}, and not whole",
                data.len()
            );
        }
        Err(_) => {}
    }
}
