//! Target `multipart`: the upload form parser, [`httpserver::multipart`].
//!
//! The input is a Content-Type value, a newline, and a body, as a browser would
//! send them. The boundary is taken from the Content-Type as the server does,
//! then the body is split into parts. Neither step may panic; the parts must be
//! at most [`MAX_PARTS`], lie inside the body, and never contain the delimiter
//! that should have ended them. Parts whose names and types can be written
//! back are re-encoded into a fresh body, which must parse to the same parts.

use httpserver::multipart::{MAX_PART_HEAD_LEN, MAX_PARTS, Part, boundary, parse};

/// Splits the input at the first newline into Content-Type and body.
///
/// # Panics
///
/// When the parser panics or a property breaks.
pub fn run(data: &[u8]) {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(content_type) = std::str::from_utf8(content_type) else {
        return;
    };
    let Ok(boundary) = boundary(content_type) else {
        return;
    };
    let Ok(parts) = parse(body, &boundary) else {
        return;
    };
    assert!(parts.len() <= MAX_PARTS, "{} parts", parts.len());
    let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
    let body_range = body.as_ptr_range();
    for part in &parts {
        let range = part.data.as_ptr_range();
        assert!(
            body_range.start <= range.start && range.end <= body_range.end,
            "part {:?} lies outside the body",
            part.name
        );
        assert!(
            !part.data.windows(delimiter.len()).any(|w| w == delimiter),
            "part {:?} contains the delimiter",
            part.name
        );
    }
    if parts.iter().all(writable) {
        let again = encode(&parts, &boundary);
        match parse(&again, &boundary) {
            Ok(reparsed) => assert_eq!(reparsed, parts, "re-encoded parts parse differently"),
            Err(e) => panic!("re-encoded parts do not parse: {e}"),
        }
    }
}

/// Room left for the fixed text of a re-encoded part head, so that a head that
/// fitted under [`MAX_PART_HEAD_LEN`] unquoted still fits once quoted.
const MAX_WRITABLE_TEXT: usize = MAX_PART_HEAD_LEN - 256;

/// True when the part's texts survive being written into quoted parameters and
/// header lines: no quotes, backslashes or control characters, no edge
/// whitespace (header values are trimmed), and short enough for a part head.
fn writable(part: &Part<'_>) -> bool {
    let plain = |s: &str| !s.chars().any(|c| c.is_control() || c == '"' || c == '\\');
    let trimmed = |s: &str| s.trim() == s && !s.is_empty();
    let text_len = part.name.len()
        + part.filename.as_ref().map_or(0, String::len)
        + part.content_type.as_ref().map_or(0, String::len);
    text_len <= MAX_WRITABLE_TEXT
        && plain(&part.name)
        && part.filename.as_deref().is_none_or(plain)
        && part.content_type.as_deref().is_none_or(|t| plain(t) && trimmed(t))
}

/// Writes `parts` as a browser would.
fn encode(parts: &[Part<'_>], boundary: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{}\"", part.name).as_bytes());
        if let Some(filename) = &part.filename {
            out.extend_from_slice(format!("; filename=\"{filename}\"").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if let Some(content_type) = &part.content_type {
            out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}
