//! A bounded, incremental decoder for `Transfer-Encoding: chunked` request bodies.
//!
//! Browsers never chunk form posts, but HTTP/1.1 clients may (`curl -T -`), and
//! RFC 9112 asks every server to understand chunked. The decoder is a byte-level
//! state machine fed whatever the socket delivered, so a body split anywhere
//! decodes the same, and nothing is re-scanned. Every line (chunk size with
//! extensions, trailer fields) and the decoded total are capped, so a hostile
//! sender can cost at most `max` bytes of memory and bounded work per byte.

use std::fmt;

/// Longest chunk-size line, extensions included. Real clients send a few hex
/// digits; extensions are allowed by the grammar but unused in practice.
pub const MAX_CHUNK_LINE_LEN: usize = 1024;

/// Most bytes of trailer fields after the last chunk. They are read and ignored.
pub const MAX_TRAILER_LEN: usize = 8 * 1024;

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// The chunk-size line is not hex digits (with optional extensions) and CRLF.
    BadSize,
    /// A chunk's data is not followed by CRLF.
    MissingCrlf,
    /// A chunk-size line or the trailer section is longer than its cap.
    LineTooLong,
    /// The decoded body would exceed the cap.
    TooLarge,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::BadSize => "a chunk size is not a hexadecimal number ending in CRLF",
            ChunkError::MissingCrlf => "a chunk's data is not followed by CRLF",
            ChunkError::LineTooLong => "a chunk-size line or the trailers are too long",
            ChunkError::TooLarge => "chunked body exceeds the size cap",
        })
    }
}

impl std::error::Error for ChunkError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `digits` seen so far.
    Size { size: usize, digits: usize },
    /// After the digits: skipping extensions until CR.
    Extension { size: usize },
    /// Expecting the LF that ends a chunk-size line.
    SizeLf { size: usize },
    /// Copying chunk data.
    Data { left: usize },
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// In the trailer section: at the start of a line (`true`) or inside one.
    Trailer { line_start: bool },
    /// Expecting the LF that ends a trailer line (or the whole body).
    TrailerLf { empty_line: bool },
    /// The body is complete.
    Done,
}

/// Decodes one chunked body, piece by piece.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    max: usize,
    /// Bytes of the current size line or of the trailer section, against their caps.
    line_len: usize,
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies longer than `max` decoded bytes.
    pub fn new(max: usize) -> ChunkedDecoder {
        ChunkedDecoder { state: State::Size { size: 0, digits: 0 }, max, line_len: 0 }
    }

    /// True once the last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds `input`, appending decoded data to `out`. Returns how many bytes of
    /// `input` were used: all of them unless the body ended inside `input`, in
    /// which case the rest belongs to the next request.
    ///
    /// # Errors
    ///
    /// A [`ChunkError`]; the connection should then be closed, since the end of
    /// the body cannot be found.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if let State::Data { left } = self.state {
                let take = left.min(input.len() - i);
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                self.state = if take == left { State::DataCr } else { State::Data { left: left - take } };
                continue;
            }
            self.step(input[i], out.len())?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, byte: u8, decoded: usize) -> Result<(), ChunkError> {
        self.state = match self.state {
            State::Size { size, digits } => {
                self.count_line_byte(MAX_CHUNK_LINE_LEN)?;
                match (byte as char).to_digit(16) {
                    Some(d) => {
                        let size = size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(d as usize))
                            .ok_or(ChunkError::TooLarge)?;
                        State::Size { size, digits: digits + 1 }
                    }
                    None if digits == 0 => return Err(ChunkError::BadSize),
                    None if byte == b'\r' => State::SizeLf { size },
                    None if byte == b';' || byte == b' ' || byte == b'\t' => State::Extension { size },
                    None => return Err(ChunkError::BadSize),
                }
            }
            State::Extension { size } => {
                self.count_line_byte(MAX_CHUNK_LINE_LEN)?;
                match byte {
                    b'\r' => State::SizeLf { size },
                    b'\n' => return Err(ChunkError::BadSize),
                    _ => State::Extension { size },
                }
            }
            State::SizeLf { size } => {
                if byte != b'\n' {
                    return Err(ChunkError::BadSize);
                }
                self.line_len = 0;
                if size == 0 {
                    State::Trailer { line_start: true }
                } else if size > self.max.saturating_sub(decoded) {
                    return Err(ChunkError::TooLarge);
                } else {
                    State::Data { left: size }
                }
            }
            State::Data { .. } | State::Done => self.state,
            State::DataCr if byte == b'\r' => State::DataLf,
            State::DataLf if byte == b'\n' => State::Size { size: 0, digits: 0 },
            State::DataCr | State::DataLf => return Err(ChunkError::MissingCrlf),
            State::Trailer { line_start } => {
                self.count_line_byte(MAX_TRAILER_LEN)?;
                match byte {
                    b'\r' => State::TrailerLf { empty_line: line_start },
                    b'\n' => return Err(ChunkError::MissingCrlf),
                    _ => State::Trailer { line_start: false },
                }
            }
            State::TrailerLf { empty_line } => match byte {
                b'\n' if empty_line => State::Done,
                b'\n' => State::Trailer { line_start: true },
                _ => return Err(ChunkError::MissingCrlf),
            },
        };
        Ok(())
    }

    fn count_line_byte(&mut self, cap: usize) -> Result<(), ChunkError> {
        self.line_len += 1;
        if self.line_len > cap {
            return Err(ChunkError::LineTooLong);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    use super::*;

    fn decode(input: &[u8], max: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new(max);
        let mut out = Vec::new();
        let used = d.feed(input, &mut out)?;
        Ok((out, used, d.is_done()))
    }

    const WIKI: &[u8] =
        b"4\r\nWiki\r\n7;ext=1\r\npedia i\r\nB\r\nn \r\nchunks.\r\n0\r\nX-Trailer: y\r\n\r\nNEXT";

    #[test]
    fn decodes_a_body_with_extensions_and_trailers_and_leaves_the_rest() {
        let (out, used, done) = decode(WIKI, 1000).unwrap();
        assert_eq!(out, b"Wikipedia in \r\nchunks.");
        assert!(done);
        assert_eq!(&WIKI[used..], b"NEXT");
    }

    #[test]
    fn any_split_decodes_the_same() {
        for split in 0..WIKI.len() {
            let mut d = ChunkedDecoder::new(1000);
            let mut out = Vec::new();
            let a = d.feed(&WIKI[..split], &mut out).unwrap();
            let end = if d.is_done() {
                a
            } else {
                assert_eq!(a, split, "all of a partial body is used");
                split + d.feed(&WIKI[split..], &mut out).unwrap()
            };
            assert!(d.is_done());
            assert_eq!(out, b"Wikipedia in \r\nchunks.");
            assert_eq!(&WIKI[end..], b"NEXT");
        }
    }

    #[test]
    fn refuses_what_it_must() {
        assert_eq!(decode(b"zz\r\n", 10), Err(ChunkError::BadSize));
        assert_eq!(decode(b"\r\n", 10), Err(ChunkError::BadSize));
        assert_eq!(decode(b"3\nabc", 10), Err(ChunkError::BadSize));
        assert_eq!(decode(b"3\r\nabcX", 10), Err(ChunkError::MissingCrlf));
        assert_eq!(decode(b"b\r\n", 10), Err(ChunkError::TooLarge));
        assert_eq!(decode(b"6\r\nabcdef\r\n6\r\n", 10), Err(ChunkError::TooLarge));
        assert_eq!(decode(b"ffffffffffffffffffffffff\r\n", 10), Err(ChunkError::TooLarge));
        let long_ext = [b"1;".as_slice(), &[b'x'; MAX_CHUNK_LINE_LEN]].concat();
        assert_eq!(decode(&long_ext, 10), Err(ChunkError::LineTooLong));
        let long_trailer = [b"0\r\n".as_slice(), &[b'x'; MAX_TRAILER_LEN + 1]].concat();
        assert_eq!(decode(&long_trailer, 10), Err(ChunkError::LineTooLong));
    }

    #[test]
    fn random_input_never_panics_or_overshoots() {
        let mut rng = StdRng::seed_from_u64(7);
        let alphabet = b"0123456789abcdefABCDEFxyz;= \t\r\n";
        for _ in 0..50_000 {
            let len = rng.random_range(0..64);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.random_bool(0.8) {
                        alphabet[rng.random_range(0..alphabet.len())]
                    } else {
                        rng.random()
                    }
                })
                .collect();
            let mut d = ChunkedDecoder::new(16);
            let mut out = Vec::new();
            if let Ok(used) = d.feed(&bytes, &mut out) {
                assert!(used <= bytes.len());
                assert!(out.len() <= 16);
            }
        }
    }
}
