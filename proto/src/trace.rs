//! The trace id: the request id of the HTTP request a frame was sent for, so
//! that one request can be followed through both servers' logs.
//!
//! Since protocol version 3 the body of every frame outside the handshake
//! starts with it, before the message's own fields:
//!
//! ```text
//!  body: | trace_len u8 | trace (trace_len bytes) | message fields ... |
//! ```
//!
//! It is a frame-level field, not a field of each message, so a new message
//! type carries it without saying so. `trace_len` is 0 ("no trace") or at most
//! [`MAX_TRACE_LEN`], and the bytes are of [`is_trace_byte`]'s alphabet
//! (`A-Z a-z 0-9 - _ .`): printable, and safe unquoted in a log line, a JSON
//! string and an HTTP header. Replies carry an empty trace. The handshake's
//! frames ([`crate::handshake`]) carry none: their bodies are exactly their
//! fields, as in version 2.

use std::fmt;

use crate::error::Error;

/// Longest trace id: room for a UUID (36), a W3C trace id (32) or a ULID (26)
/// with a prefix, and short enough to cost nothing per frame and per log line.
pub const MAX_TRACE_LEN: usize = 64;

/// A trace id of 0 to [`MAX_TRACE_LEN`] bytes of a safe alphabet; empty means
/// none. Fixed-size and `Copy`, so carrying one with every job allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceId {
    len: u8,
    bytes: [u8; MAX_TRACE_LEN],
}

/// True for the bytes a trace id may hold: ASCII letters, digits, `-`, `_`, `.`.
pub fn is_trace_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

impl TraceId {
    /// No trace.
    pub const NONE: TraceId = TraceId { len: 0, bytes: [0; MAX_TRACE_LEN] };

    /// The trace id spelled by `text`, or `None` if it is empty, longer than
    /// [`MAX_TRACE_LEN`] or holds a byte outside the alphabet.
    pub fn parse(text: &str) -> Option<TraceId> {
        TraceId::from_bytes(text.as_bytes()).filter(|t| !t.is_empty())
    }

    /// As [`TraceId::parse`], but the empty id is allowed (it is [`TraceId::NONE`]).
    fn from_bytes(raw: &[u8]) -> Option<TraceId> {
        if raw.len() > MAX_TRACE_LEN || !raw.iter().copied().all(is_trace_byte) {
            return None;
        }
        let mut bytes = [0; MAX_TRACE_LEN];
        bytes[..raw.len()].copy_from_slice(raw);
        // raw.len() <= MAX_TRACE_LEN, which fits in u8.
        Some(TraceId { len: raw.len() as u8, bytes })
    }

    /// True for [`TraceId::NONE`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The id as text (empty for none).
    pub fn as_str(&self) -> &str {
        // Only bytes of the ASCII alphabet are ever stored.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }

    /// Appends the wire form (length byte, then the bytes) to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        out.extend_from_slice(&self.bytes[..self.len as usize]);
    }

    /// Reads the wire form from the front of `body`; returns the id and the
    /// rest of the body.
    ///
    /// # Errors
    ///
    /// [`Error::Truncated`] when the body ends inside it, [`Error::BadTrace`]
    /// when it is too long or holds a byte outside the alphabet.
    pub(crate) fn decode(body: &[u8]) -> Result<(TraceId, &[u8]), Error> {
        let (&len, rest) = body.split_first().ok_or(Error::Truncated)?;
        let len = len as usize;
        if len > MAX_TRACE_LEN {
            return Err(Error::BadTrace);
        }
        let raw = rest.get(..len).ok_or(Error::Truncated)?;
        let trace = TraceId::from_bytes(raw).ok_or(Error::BadTrace)?;
        Ok((trace, &rest[len..]))
    }
}

impl Default for TraceId {
    fn default() -> TraceId {
        TraceId::NONE
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({:?})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_ids_of_the_alphabet_parse() {
        assert_eq!(TraceId::parse("req-1.a_B").unwrap().as_str(), "req-1.a_B");
        assert_eq!(TraceId::parse(&"a".repeat(MAX_TRACE_LEN)).unwrap().as_str().len(), MAX_TRACE_LEN);
        for bad in ["", "a b", "a\nb", "a\u{7f}", "ä", "a/b", "a\"b"] {
            assert_eq!(TraceId::parse(bad), None, "{bad:?}");
        }
        assert_eq!(TraceId::parse(&"a".repeat(MAX_TRACE_LEN + 1)), None);
    }

    #[test]
    fn wire_form_round_trips_and_refuses_bad_bytes() {
        let mut out = Vec::new();
        TraceId::parse("abc").unwrap().encode(&mut out);
        out.push(9);
        assert_eq!(out, [3, b'a', b'b', b'c', 9]);
        let (trace, rest) = TraceId::decode(&out).unwrap();
        assert_eq!((trace.as_str(), rest), ("abc", &[9u8][..]));
        assert_eq!(TraceId::decode(&[]), Err(Error::Truncated));
        assert_eq!(TraceId::decode(&[2, b'a']), Err(Error::Truncated));
        assert_eq!(TraceId::decode(&[1, b' ']), Err(Error::BadTrace));
        assert_eq!(TraceId::decode(&[65; 66]), Err(Error::BadTrace));
        assert_eq!(TraceId::decode(&[0]).unwrap().0, TraceId::NONE);
    }
}
