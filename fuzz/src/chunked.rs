//! Target `chunked`: the chunked request-body decoder,
//! [`httpserver::chunked::ChunkedDecoder`].
//!
//! The decoder is fed whatever each socket read delivered, so its promise is
//! that a body split anywhere decodes the same. The input is decoded twice:
//! whole, and in pieces cut where the input's first bytes say, and the two
//! results (data, bytes used, done, error) must agree, except the bytes used
//! before an error, which mean nothing once the connection is closed. Neither
//! may exceed its cap or use more bytes than it was given.

use httpserver::chunked::{ChunkError, ChunkedDecoder};

/// Decoded-size cap used by the target: small, so the "too large" paths are
/// reached as often as the others.
const MAX: usize = 64;

/// What one decoding produced.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    data: Vec<u8>,
    used: usize,
    done: bool,
    error: Option<ChunkError>,
}

/// Feeds `input` in `pieces`, stopping at the first error or at the end of the body.
fn decode<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut decoder = ChunkedDecoder::new(MAX);
    let mut outcome = Outcome { data: Vec::new(), used: 0, done: false, error: None };
    for piece in pieces {
        match decoder.feed(piece, &mut outcome.data) {
            Ok(used) => {
                assert!(used <= piece.len(), "feed used {used} of {} bytes", piece.len());
                outcome.used += used;
                if used < piece.len() {
                    assert!(decoder.is_done(), "bytes left over, yet the body is not done");
                }
            }
            Err(e) => {
                // After an error the connection is closed, so how much was
                // used before it means nothing; only the error must agree.
                outcome.error = Some(e);
                outcome.used = 0;
                break;
            }
        }
        if decoder.is_done() {
            break;
        }
    }
    outcome.done = decoder.is_done();
    assert!(outcome.data.len() <= MAX, "decoded {} bytes past the cap of {MAX}", outcome.data.len());
    outcome
}

/// Decodes the input whole and in pieces and compares.
///
/// The first byte chooses how many cuts to make (0 to 7) and the next ones
/// where; the rest is the chunked body.
///
/// # Panics
///
/// When the decoder panics or a property breaks.
pub fn run(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 8).min(rest.len());
    let (cuts, body) = rest.split_at(count);
    let whole = decode([body]);
    let mut points: Vec<usize> = cuts.iter().map(|&c| usize::from(c) % (body.len() + 1)).collect();
    points.sort_unstable();
    let mut pieces = Vec::new();
    let mut start = 0;
    for point in points.into_iter().chain([body.len()]) {
        pieces.push(&body[start..point]);
        start = point;
    }
    let split = decode(pieces);
    assert_eq!(whole, split, "decoding in pieces differs from decoding whole");
}
