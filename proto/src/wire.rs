//! Field encoding inside a frame body.
//!
//! A body is a sequence of fields in the order its message defines, with no
//! names and no padding:
//!
//! | field            | encoding                                                |
//! |------------------|---------------------------------------------------------|
//! | `u16`, `u32`, `u64` | big-endian                                           |
//! | flag             | `u8` 0 (false) or 1 (true)                              |
//! | text             | `u16` byte length, then that many bytes of UTF-8        |
//! | optional text    | `u8` 0 (absent) or 1 (present, then text)               |
//! | bytes            | `u32` byte length, then the bytes                       |
//! | client address   | `u8` 0 (unknown), 4 (then 4 bytes) or 6 (then 16 bytes) |
//! | fixed bytes      | exactly as many as the field's type holds, no prefix    |
//!
//! Lengths are checked against what is left of the body before anything is
//! copied, so a lying length prefix gives [`Error::Truncated`], never a panic or
//! an allocation.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::error::Error;

/// Reads fields from one frame body, front to back.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.rest.len() < n {
            return Err(Error::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Error> {
        let b = self.take(8)?;
        let mut eight = [0u8; 8];
        eight.copy_from_slice(b);
        Ok(u64::from_be_bytes(eight))
    }

    pub(crate) fn flag(&mut self) -> Result<bool, Error> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(Error::InvalidTag(tag)),
        }
    }

    pub(crate) fn qr_state(&mut self) -> Result<crate::QrState, Error> {
        let b = self.u8()?;
        crate::QrState::from_u8(b).ok_or(Error::UnknownQrState(b))
    }

    pub(crate) fn text(&mut self) -> Result<String, Error> {
        let len = self.u16()? as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| Error::InvalidUtf8)
    }

    pub(crate) fn optional_text(&mut self) -> Result<Option<String>, Error> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.text().map(Some),
            tag => Err(Error::InvalidTag(tag)),
        }
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, Error> {
        let len = self.u32()? as usize;
        Ok(self.take(len)?.to_vec())
    }

    /// Exactly `N` bytes (a nonce, a proof).
    pub(crate) fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn client_addr(&mut self) -> Result<Option<IpAddr>, Error> {
        match self.u8()? {
            0 => Ok(None),
            4 => {
                let b = self.take(4)?;
                Ok(Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))))
            }
            6 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(self.take(16)?);
                Ok(Some(IpAddr::V6(Ipv6Addr::from(octets))))
            }
            tag => Err(Error::InvalidTag(tag)),
        }
    }

    /// Succeeds only if every byte of the body was consumed: trailing bytes mean the
    /// peer and this build disagree about the layout.
    pub(crate) fn finish(self) -> Result<(), Error> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(Error::TrailingBytes(n)),
        }
    }
}

/// Appends fields to a body under construction.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn text(&mut self, s: &str) -> Result<(), Error> {
        let len = u16::try_from(s.len()).map_err(|_| Error::FieldTooLong(s.len()))?;
        self.u16(len);
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    pub(crate) fn optional_text(&mut self, s: Option<&str>) -> Result<(), Error> {
        match s {
            None => {
                self.u8(0);
                Ok(())
            }
            Some(s) => {
                self.u8(1);
                self.text(s)
            }
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> Result<(), Error> {
        let len = u32::try_from(b.len())
            .map_err(|_| Error::FrameTooLarge { len: b.len(), max: crate::MAX_BODY_LEN })?;
        self.u32(len);
        self.out.extend_from_slice(b);
        Ok(())
    }

    pub(crate) fn fixed(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    pub(crate) fn client_addr(&mut self, addr: Option<IpAddr>) {
        match addr {
            None => self.u8(0),
            Some(IpAddr::V4(v4)) => {
                self.u8(4);
                self.out.extend_from_slice(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                self.u8(6);
                self.out.extend_from_slice(&v6.octets());
            }
        }
    }
}
