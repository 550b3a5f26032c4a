//! The fixed-size frame header.
//!
//! ```text
//!  0        2     3     4                         12              16
//!  +--------+-----+-----+-------------------------+---------------+----------------+
//!  | magic  | ver | type|       request_id        |   body_len    | body ...       |
//!  |  u16   | u8  | u8  |          u64            |     u32       | body_len bytes |
//!  +--------+-----+-----+-------------------------+---------------+----------------+
//! ```
//!
//! All integers are big-endian. The header is checked completely (magic, version,
//! type and length) as soon as its 16 bytes are buffered, before any body byte is
//! waited for or any memory reserved, so a hostile length costs the reader nothing.

use crate::error::Error;
use crate::message::MessageType;

/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 16;

/// "UM": the first two bytes of every frame. Catches peers that speak something else
/// (an HTTP client pointed at the wrong port, say) at the first read.
pub const MAGIC: u16 = 0x554D;

/// The protocol version this build speaks. A peer with another version is refused
/// rather than misread.
///
/// - 6: `QrCancel` (0x24) ends a parked `QrWait` whose client went away,
///   answered `QrCancelled` (0xa4); the messages are otherwise those of 5.
///   A version-5 tcpserver would refuse the new type mid-connection (and
///   fail the calls sharing it), so the handshake refuses it instead.
/// - 5: `SignUp` ends with a 16-byte idempotency key
///   ([`crate::IdempotencyKey`]), and a client sends `SignUp` and
///   `UpdateNickname` again after a lost connection ([`crate::idempotency`]);
///   the messages are otherwise those of 4. A version-4 tcpserver would
///   refuse the longer sign-up, and a version-4 client would count on a
///   nickname change never being applied twice by its resends, so the
///   handshake refuses a version-4 peer instead.
/// - 4: pictures are fetched through the RPC: `GetAvatar` (0x09) and its
///   reply `Avatar` (0x8a), and the error code `UnknownAvatar` (24); the
///   messages are otherwise those of 3. A version-3 peer would refuse these
///   types mid-connection, so the handshake refuses it instead.
/// - 3: the body of every frame outside the handshake starts with a trace
///   id ([`crate::trace`]); the messages are otherwise those of 2.
/// - 2: every connection begins with the handshake of [`crate::handshake`]
///   (`Challenge`, `Proof`, `Accepted`); the messages are otherwise those of 1.
/// - 1: no handshake; the first frame was a request.
pub const VERSION: u8 = 6;

/// Largest body a frame may carry: one profile picture at its cap
/// ([`crate::MAX_IMAGE_LEN`]) plus room for a token and the length prefixes.
/// It bounds every per-connection read buffer on both sides of the RPC.
pub const MAX_BODY_LEN: usize = crate::message::MAX_IMAGE_LEN + 4 * 1024;

/// A decoded, validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the body holds.
    pub message_type: MessageType,
    /// Chosen by the caller; a reply carries the id of the request it answers.
    pub request_id: u64,
    /// Length of the body that follows, at most [`MAX_BODY_LEN`].
    pub body_len: u32,
}

impl Header {
    /// Decodes and validates a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` while fewer than [`HEADER_LEN`] bytes are available.
    ///
    /// # Errors
    ///
    /// [`Error::BadMagic`], [`Error::UnsupportedVersion`], [`Error::UnknownType`] or
    /// [`Error::FrameTooLarge`] when the header cannot start a valid frame.
    pub fn decode(buf: &[u8]) -> Result<Option<Header>, Error> {
        let Some(bytes) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let magic = u16::from_be_bytes([bytes[0], bytes[1]]);
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        if bytes[2] != VERSION {
            return Err(Error::UnsupportedVersion(bytes[2]));
        }
        let message_type = MessageType::from_u8(bytes[3]).ok_or(Error::UnknownType(bytes[3]))?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[4..12]);
        let body_len = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        if body_len as usize > MAX_BODY_LEN {
            return Err(Error::FrameTooLarge { len: body_len as usize, max: MAX_BODY_LEN });
        }
        Ok(Some(Header { message_type, request_id: u64::from_be_bytes(id), body_len }))
    }

    /// Appends the 16 header bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.push(VERSION);
        out.push(self.message_type as u8);
        out.extend_from_slice(&self.request_id.to_be_bytes());
        out.extend_from_slice(&self.body_len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(magic: u16, version: u8, kind: u8, len: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&magic.to_be_bytes());
        b.push(version);
        b.push(kind);
        b.extend_from_slice(&7u64.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        b
    }

    #[test]
    fn short_input_is_not_yet_a_header() {
        let bytes = header_bytes(MAGIC, VERSION, MessageType::Ping as u8, 0);
        for n in 0..HEADER_LEN {
            assert_eq!(Header::decode(&bytes[..n]), Ok(None));
        }
        assert!(Header::decode(&bytes).unwrap().is_some());
    }

    #[test]
    fn each_bad_field_has_its_own_error() {
        let ping = MessageType::Ping as u8;
        assert_eq!(Header::decode(&header_bytes(0x4745, VERSION, ping, 0)), Err(Error::BadMagic(0x4745)));
        assert_eq!(Header::decode(&header_bytes(MAGIC, 9, ping, 0)), Err(Error::UnsupportedVersion(9)));
        assert_eq!(Header::decode(&header_bytes(MAGIC, VERSION, 0x60, 0)), Err(Error::UnknownType(0x60)));
        let too_long = MAX_BODY_LEN as u32 + 1;
        assert_eq!(
            Header::decode(&header_bytes(MAGIC, VERSION, ping, too_long)),
            Err(Error::FrameTooLarge { len: too_long as usize, max: MAX_BODY_LEN })
        );
        assert_eq!(
            Header::decode(&header_bytes(MAGIC, VERSION, ping, u32::MAX)),
            Err(Error::FrameTooLarge { len: u32::MAX as usize, max: MAX_BODY_LEN })
        );
    }
}
