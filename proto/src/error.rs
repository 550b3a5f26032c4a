//! The one error type of the codec. Every way a peer's bytes can be wrong has its
//! own variant, so that a server can log the cause and close just that connection.

use std::fmt;

/// Why bytes could not be decoded into a frame, a frame could not be encoded,
/// or a secret cannot be used for the handshake.
///
/// "Not enough bytes yet" is not an error: decoders return `Ok(None)` for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The first two bytes are not [`crate::MAGIC`]: the peer does not speak this protocol.
    BadMagic(u16),
    /// The peer speaks a protocol version this build does not know.
    UnsupportedVersion(u8),
    /// The header names a message type that does not exist.
    UnknownType(u8),
    /// The header announces a body longer than [`crate::MAX_BODY_LEN`], or an
    /// encoder was asked to produce one.
    FrameTooLarge {
        /// The announced (or attempted) body length.
        len: usize,
        /// The largest body allowed.
        max: usize,
    },
    /// The body ended in the middle of a field.
    Truncated,
    /// The body has bytes left over after the last field of its message.
    TrailingBytes(usize),
    /// A text field is not valid UTF-8.
    InvalidUtf8,
    /// An optional field or address carries a tag byte outside its defined set.
    InvalidTag(u8),
    /// An error reply carries a code this build does not know.
    UnknownErrorCode(u16),
    /// A scan-to-log-in state byte that no state has.
    UnknownQrState(u8),
    /// A text field is longer than its 16-bit length prefix can describe.
    FieldTooLong(usize),
    /// An RPC secret shorter than [`crate::handshake::MIN_SECRET_LEN`] bytes.
    SecretTooShort {
        /// Its length.
        len: usize,
        /// The shortest allowed.
        min: usize,
    },
    /// HMAC refused the RPC secret as a key (it takes keys of any length, so
    /// this does not happen; it is a variant rather than a panic).
    SecretRefused,
    /// A frame's trace id is longer than [`crate::MAX_TRACE_LEN`] or holds a
    /// byte outside its alphabet ([`crate::trace`]).
    BadTrace,
    /// A list field (devices, log-in history) holds more items than its bound.
    ListTooLong {
        /// Its item count.
        len: usize,
        /// The most allowed.
        max: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadMagic(magic) => write!(f, "bad magic 0x{magic:04x}"),
            Error::UnsupportedVersion(v) => write!(f, "unsupported protocol version {v}"),
            Error::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            Error::FrameTooLarge { len, max } => {
                write!(f, "frame body of {len} bytes exceeds the maximum of {max}")
            }
            Error::Truncated => f.write_str("frame body ends in the middle of a field"),
            Error::TrailingBytes(n) => write!(f, "{n} unexpected bytes after the last field"),
            Error::InvalidUtf8 => f.write_str("text field is not valid UTF-8"),
            Error::InvalidTag(tag) => write!(f, "invalid field tag {tag}"),
            Error::UnknownErrorCode(code) => write!(f, "unknown error code {code}"),
            Error::UnknownQrState(b) => write!(f, "unknown scan-to-log-in state {b}"),
            Error::FieldTooLong(len) => write!(f, "text field of {len} bytes is too long"),
            Error::SecretTooShort { len, min } => {
                write!(f, "RPC secret of {len} bytes is shorter than the minimum of {min}")
            }
            Error::SecretRefused => f.write_str("RPC secret refused as an HMAC key"),
            Error::BadTrace => f.write_str("trace id too long or outside its alphabet"),
            Error::ListTooLong { len, max } => write!(f, "list of {len} items exceeds the maximum of {max}"),
        }
    }
}

impl std::error::Error for Error {}
