//! The client's real address behind a load balancer: the PROXY protocol,
//! version 2 (HAProxy's `send-proxy-v2`), on connections from trusted proxies.
//!
//! Behind HAProxy every connection comes from HAProxy's address, so the
//! per-address connection and upload shares ([`crate::addr_quota`],
//! [`crate::body_budget`]), tcpserver's per-address throttles and the
//! log-in history (the address travels in the RPC) and `--metrics-allow`
//! would all see one client. HAProxy can open each connection with a
//! binary header naming the client's address; this module reads it.
//!
//! Only from `--trusted-proxy` addresses, and from them it is required: a
//! connection from a trusted proxy must begin with a whole, valid v2 header
//! within [`HEADER_TIMEOUT`], at most [`MAX_HEADER_LEN`] bytes, or it is
//! closed (after a 400 or 408 that says why). From any other address nothing
//! is read before the HTTP request, so a client that sends a header of its
//! own gets the 400 any bytes that are not HTTP get, and cannot choose the
//! address it is counted by. `X-Forwarded-For` is never read: any client
//! can write it.
//!
//! The header is read exactly (16 fixed bytes, then the length they
//! announce), so not one byte of the request behind it is taken. Parsing is
//! the `ppp` crate's (maintained, no RustSec advisory); this module bounds
//! and times the reading and decides which address counts. A `LOCAL` header
//! (the proxy's own health check) and an address family other than IPv4 or
//! IPv6 leave the connection's own address.

use std::fmt;
use std::io::{self, ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ppp::v2;

use crate::metrics_allow::MetricsAllow;

/// The 12 bytes every v2 header starts with.
pub const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part: signature, version and command, family and protocol, length.
pub const FIXED_LEN: usize = 16;

/// Longest header accepted, fixed part included: the addresses take at most
/// 216 bytes (two Unix paths; IPv6 takes 36), which leaves room for the
/// TLVs HAProxy may add (a unique id of up to 128 bytes, an ALPN, an
/// authority, a CRC), while a peer cannot make a connection hold the 64 KiB
/// the length field allows.
pub const MAX_HEADER_LEN: usize = FIXED_LEN + 512;

/// How long a trusted proxy has to send its whole header: HAProxy writes it
/// with the connection's first bytes, so this only ends connections that
/// send nothing or a part.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The `--trusted-proxy` list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustedProxies {
    list: Option<MetricsAllow>,
}

impl TrustedProxies {
    /// `none` (or nothing), or a comma-separated list of addresses, CIDR
    /// blocks and `loopback` (at most [`crate::metrics_allow::MAX_ENTRIES`]).
    /// `any` is refused: it would let every client name its own address.
    pub fn parse(list: &str) -> Option<TrustedProxies> {
        let trimmed = list.trim();
        if trimmed.is_empty() || trimmed == "none" {
            return Some(TrustedProxies::default());
        }
        if trimmed.split(',').any(|entry| entry.trim() == "any") {
            return None;
        }
        MetricsAllow::parse(trimmed).map(|allow| TrustedProxies { list: Some(allow) })
    }

    /// Whether no proxy is trusted (the default).
    pub fn is_empty(&self) -> bool {
        self.list.is_none()
    }

    /// Whether connections from `peer` begin with a PROXY header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        self.list.as_ref().is_some_and(|list| list.permits(peer))
    }
}

/// Why a trusted proxy's connection was closed before its request.
#[derive(Debug)]
pub enum ProxyError {
    /// The bytes do not start with the v2 signature (a v1 text header, or
    /// a proxy not set to `send-proxy-v2`, or plain HTTP).
    NotV2,
    /// The header announces more than [`MAX_HEADER_LEN`] bytes.
    TooLong(usize),
    /// A v2 header that does not parse (version, command, family, protocol
    /// or a length too short for its addresses).
    Malformed(v2::ParseError),
    /// A header for datagrams: this listener serves TCP.
    NotStream,
    /// The connection closed before the header was whole.
    Truncated {
        /// Bytes received.
        got: usize,
    },
    /// [`HEADER_TIMEOUT`] passed before the header was whole.
    TimedOut,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::NotV2 => f.write_str(
                "a connection from a trusted proxy must start with a PROXY protocol v2 header \
                 (HAProxy: send-proxy-v2)",
            ),
            ProxyError::TooLong(len) => {
                write!(f, "PROXY header of {len} bytes, over the {MAX_HEADER_LEN} accepted")
            }
            ProxyError::Malformed(e) => write!(f, "malformed PROXY v2 header: {e}"),
            ProxyError::NotStream => f.write_str("PROXY header for datagrams on a TCP listener"),
            ProxyError::Truncated { got } => {
                write!(f, "connection closed after {got} bytes of a PROXY header")
            }
            ProxyError::TimedOut => write!(f, "PROXY header not received within {HEADER_TIMEOUT:?}"),
            ProxyError::Io(e) => write!(f, "reading the PROXY header: {e}"),
        }
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProxyError::Io(e) => Some(e),
            ProxyError::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

/// How many bytes the header at the start of `bytes` takes, once its fixed
/// part is there: `Ok(None)` below [`FIXED_LEN`] bytes (if they are a
/// prefix of the signature).
///
/// # Errors
///
/// [`ProxyError::NotV2`] for bytes that are not the signature's,
/// [`ProxyError::TooLong`] past [`MAX_HEADER_LEN`].
pub fn header_len(bytes: &[u8]) -> Result<Option<usize>, ProxyError> {
    let signature_part = bytes.len().min(SIGNATURE.len());
    if bytes[..signature_part] != SIGNATURE[..signature_part] {
        return Err(ProxyError::NotV2);
    }
    let Some(length) = bytes.get(14..FIXED_LEN) else { return Ok(None) };
    let len = FIXED_LEN + usize::from(u16::from_be_bytes([length[0], length[1]]));
    if len > MAX_HEADER_LEN {
        return Err(ProxyError::TooLong(len));
    }
    Ok(Some(len))
}

/// The client's address from a whole header (`header`, exactly as long as
/// [`header_len`] said), for a connection whose own peer is `proxy`.
///
/// # Errors
///
/// A [`ProxyError`] for a header that is not a valid v2 one.
pub fn client_address(header: &[u8], proxy: SocketAddr) -> Result<SocketAddr, ProxyError> {
    let parsed = v2::Header::try_from(header).map_err(ProxyError::Malformed)?;
    if parsed.protocol == v2::Protocol::Datagram {
        return Err(ProxyError::NotStream);
    }
    Ok(match (parsed.command, parsed.addresses) {
        (v2::Command::Proxy, v2::Addresses::IPv4(ip)) => {
            SocketAddr::new(ip.source_address.into(), ip.source_port)
        }
        (v2::Command::Proxy, v2::Addresses::IPv6(ip)) => {
            SocketAddr::new(ip.source_address.into(), ip.source_port)
        }
        // The proxy speaking for itself (a health check), or a family with
        // no IP address: the connection's own address is the one that counts.
        _ => proxy,
    })
}

/// Parses the header at the start of `bytes` in one go: the client's
/// address and the bytes the header took, or `Ok(None)` while it is not
/// whole. For the fuzz target and the tests; [`read_client`] reads a socket.
///
/// # Errors
///
/// As [`header_len`] and [`client_address`].
pub fn parse(bytes: &[u8], proxy: SocketAddr) -> Result<Option<(SocketAddr, usize)>, ProxyError> {
    let Some(len) = header_len(bytes)? else { return Ok(None) };
    let Some(header) = bytes.get(..len) else { return Ok(None) };
    client_address(header, proxy).map(|client| Some((client, len)))
}

/// Reads the header a trusted proxy sends first on `stream`, and nothing
/// after it, within [`HEADER_TIMEOUT`]; returns the client's address.
/// Leaves the stream with no read timeout (the connection sets its own).
///
/// # Errors
///
/// A [`ProxyError`]; the connection must then be closed.
pub fn read_client(stream: &mut TcpStream, proxy: SocketAddr) -> Result<SocketAddr, ProxyError> {
    let deadline = Instant::now() + HEADER_TIMEOUT;
    let mut header = vec![0u8; FIXED_LEN];
    read_exact_by(stream, &mut header, 0, deadline)?;
    let len = header_len(&header)?.unwrap_or(FIXED_LEN);
    header.resize(len, 0);
    read_exact_by(stream, &mut header, FIXED_LEN, deadline)?;
    stream.set_read_timeout(None).map_err(ProxyError::Io)?;
    client_address(&header, proxy)
}

/// Fills `out[from..]`, checking the signature as it comes so that a peer
/// sending HTTP is told at once rather than at the deadline.
fn read_exact_by(
    stream: &mut TcpStream,
    out: &mut [u8],
    from: usize,
    deadline: Instant,
) -> Result<(), ProxyError> {
    let mut filled = from;
    while filled < out.len() {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
        let left = left.ok_or(ProxyError::TimedOut)?;
        stream.set_read_timeout(Some(left)).map_err(ProxyError::Io)?;
        match stream.read(&mut out[filled..]) {
            Ok(0) => return Err(ProxyError::Truncated { got: filled }),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(ProxyError::TimedOut);
            }
            Err(e) => return Err(ProxyError::Io(e)),
        }
        if from == 0 {
            header_len(&out[..filled])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    /// A v2 PROXY header for a TCP connection from `client` to `server`.
    fn header(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
        v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (client, server),
        )
        .build()
        .unwrap()
    }

    #[test]
    fn a_proxy_header_names_the_client_of_either_family() {
        let v4: SocketAddr = "203.0.113.7:51000".parse().unwrap();
        let bytes = header(v4, "10.0.0.1:1088".parse().unwrap());
        assert_eq!(parse(&bytes, proxy()).unwrap(), Some((v4, bytes.len())));
        let v6: SocketAddr = "[2001:db8::5]:443".parse().unwrap();
        let bytes = header(v6, "[2001:db8::1]:1088".parse().unwrap());
        assert_eq!(parse(&bytes, proxy()).unwrap(), Some((v6, bytes.len())));
    }

    #[test]
    fn a_header_is_not_whole_until_its_last_byte_and_takes_nothing_after_it() {
        let client: SocketAddr = "198.51.100.2:1234".parse().unwrap();
        let mut bytes = header(client, "10.0.0.1:1088".parse().unwrap());
        let len = bytes.len();
        for cut in 0..len {
            assert!(parse(&bytes[..cut], proxy()).unwrap().is_none(), "whole at {cut} of {len}");
        }
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&bytes, proxy()).unwrap(), Some((client, len)));
    }

    #[test]
    fn a_local_header_and_an_unspecified_family_leave_the_proxy_address() {
        let local = v2::Builder::new(v2::Version::Two | v2::Command::Local, 0x00).build().unwrap();
        assert_eq!(parse(&local, proxy()).unwrap(), Some((proxy(), local.len())));
    }

    #[test]
    fn garbage_oversize_and_datagram_headers_are_refused() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n\r\n", proxy()), Err(ProxyError::NotV2)));
        assert!(matches!(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", proxy()), Err(ProxyError::NotV2)));
        let mut long = SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(parse(&long, proxy()), Err(ProxyError::TooLong(65_551))));
        let mut bad_version = SIGNATURE.to_vec();
        bad_version.extend_from_slice(&[0x11, 0x11, 0, 12]);
        bad_version.extend_from_slice(&[0; 12]);
        assert!(matches!(parse(&bad_version, proxy()), Err(ProxyError::Malformed(_))));
        let mut too_short_for_addresses = SIGNATURE.to_vec();
        too_short_for_addresses.extend_from_slice(&[0x21, 0x21, 0, 12]);
        too_short_for_addresses.extend_from_slice(&[0; 12]);
        assert!(matches!(parse(&too_short_for_addresses, proxy()), Err(ProxyError::Malformed(_))));
        let udp = v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Datagram,
            ("192.0.2.1:53".parse::<SocketAddr>().unwrap(), "192.0.2.2:53".parse::<SocketAddr>().unwrap()),
        )
        .build()
        .unwrap();
        assert!(matches!(parse(&udp, proxy()), Err(ProxyError::NotStream)));
    }

    #[test]
    fn the_trusted_list_is_none_by_default_and_never_any() {
        let none = TrustedProxies::parse("none").unwrap();
        assert!(none.is_empty() && !none.trusts("127.0.0.1".parse().unwrap()));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        let loopback = TrustedProxies::parse("loopback").unwrap();
        assert!(loopback.trusts("127.0.0.1".parse().unwrap()) && loopback.trusts("::1".parse().unwrap()));
        assert!(!loopback.trusts("192.0.2.1".parse().unwrap()));
        assert_eq!(TrustedProxies::parse("any"), None);
        assert_eq!(TrustedProxies::parse("10.0.0.1, any"), None);
    }
}
