//! The request id of each HTTP request: the client's `X-Request-Id` when it
//! is well-formed, else a fresh random one.
//!
//! Well-formed means 1 to [`proto::MAX_TRACE_LEN`] (64) bytes of letters,
//! digits, `-`, `_` and `.` ([`proto::trace`]): safe unquoted in a log line, a JSON string and a
//! header, so a client cannot forge log lines or split headers with it.
//! Anything else (too long, a space, a control character) is replaced, never
//! echoed. The id is returned in every response's `X-Request-Id`, written in
//! every log line about the request, and sent to tcpserver with its RPC.

use proto::TraceId;

/// The response and request header that carries the id.
pub const HEADER: &str = "X-Request-Id";

/// Random bytes of a generated id: 128 bits, shown as 32 hex digits, so ids
/// of different requests never collide in practice.
const GENERATED_BYTES: usize = 16;

/// The id for a request whose `X-Request-Id` header is `given`.
pub fn choose(given: Option<&str>) -> TraceId {
    given.and_then(TraceId::parse).unwrap_or_else(generate)
}

/// A fresh random id.
pub fn generate() -> TraceId {
    let bytes: [u8; GENERATED_BYTES] = rand::random();
    // 32 hex digits are of the alphabet and within the bound.
    TraceId::parse(&hex::encode(bytes)).unwrap_or(TraceId::NONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_id_is_kept_and_anything_else_replaced() {
        assert_eq!(choose(Some("my-req.1_A")).as_str(), "my-req.1_A");
        for bad in [None, Some(""), Some("a b"), Some("x\u{1}y"), Some(&*"a".repeat(65))] {
            let id = choose(bad);
            assert_eq!(id.as_str().len(), 32, "{bad:?}");
            assert_ne!(Some(id.as_str()), bad);
        }
        assert_ne!(generate(), generate());
    }
}
