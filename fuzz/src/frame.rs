//! Target `frame`: the RPC frame decoder, [`proto::Frame::decode_traced`]
//! (which [`proto::Frame::decode`] calls), trace id included.
//!
//! Both servers call it on whatever a peer sent, so it must never panic, never
//! claim more bytes than it was given, and agree with the encoder: a frame that
//! decodes re-encodes to exactly the bytes it came from (the wire format has one
//! encoding per message) and decodes again to the same frame. Every strict
//! prefix of a frame that decodes must read as "not complete yet", or a reader
//! could act on half a frame.

use proto::Frame;

/// Decodes `data` and checks the properties above.
///
/// # Panics
///
/// When the decoder panics or a property breaks.
pub fn run(data: &[u8]) {
    let Ok(Some((frame, trace, used))) = Frame::decode_traced(data) else {
        return;
    };
    assert!(used <= data.len(), "decode claims {used} bytes of {}", data.len());
    assert!(trace.as_str().bytes().all(proto::trace::is_trace_byte), "trace outside its alphabet");
    let mut again = Vec::new();
    if let Err(e) = frame.encode_traced(trace, &mut again) {
        panic!("a decoded frame does not re-encode: {e}");
    }
    assert_eq!(again, data[..used], "re-encoding differs from the decoded bytes");
    match Frame::decode_traced(&again) {
        Ok(Some((second, trace_again, used_again))) => {
            assert_eq!((second, trace_again), (frame, trace), "decode(encode(frame)) differs");
            assert_eq!(used_again, again.len());
        }
        other => panic!("a re-encoded frame does not decode: {other:?}"),
    }
    // Checking every prefix of a big frame would slow the fuzzer to a crawl;
    // a few cut points catch a decoder that acts early.
    for cut in [0, 1, proto::HEADER_LEN - 1, proto::HEADER_LEN, used / 2, used - 1] {
        if cut < used {
            assert_eq!(Frame::decode(&data[..cut]), Ok(None), "a prefix of {cut} bytes decoded");
        }
    }
}
