//! A small, bounded `multipart/form-data` parser (RFC 7578), for the picture
//! upload form.
//!
//! The `multipart` crate is unmaintained (RUSTSEC-2023-0050), and a whole-body
//! parser is all this server needs: the body is already in memory and capped, so
//! parts are returned as slices of it, without copying the picture. Part counts,
//! part header sizes and the boundary length are bounded; every malformed shape
//! is an error value, never a panic (a randomized test below feeds it garbage).

use std::fmt;

/// Most parts in one body. The upload form has three (token, username, image).
pub const MAX_PARTS: usize = 16;

/// Most headers per part. Browsers send two (Content-Disposition, Content-Type).
pub const MAX_PART_HEADERS: usize = 8;

/// Largest header block of one part.
pub const MAX_PART_HEAD_LEN: usize = 2 * 1024;

/// Longest boundary RFC 2046 allows.
pub const MAX_BOUNDARY_LEN: usize = 70;

/// Why a multipart body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartError {
    /// The Content-Type has no usable `boundary` parameter.
    NoBoundary,
    /// The body does not start with the boundary, or ends before the closing one.
    Truncated,
    /// A delimiter line is followed by something other than CRLF or `--`.
    BadDelimiter,
    /// A part's headers are malformed or too long.
    BadPartHeaders,
    /// A part has no `Content-Disposition: form-data; name=...`.
    NoFieldName,
    /// More than [`MAX_PARTS`] parts.
    TooManyParts,
}

impl fmt::Display for MultipartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MultipartError::NoBoundary => "multipart Content-Type without a valid boundary",
            MultipartError::Truncated => "multipart body is incomplete",
            MultipartError::BadDelimiter => "malformed multipart delimiter line",
            MultipartError::BadPartHeaders => "malformed or oversized part headers",
            MultipartError::NoFieldName => "part without a form-data field name",
            MultipartError::TooManyParts => "too many parts",
        })
    }
}

impl std::error::Error for MultipartError {}

/// One field of the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The field name.
    pub name: String,
    /// The file name the browser sent, for file fields (may be empty when no
    /// file was chosen).
    pub filename: Option<String>,
    /// The part's Content-Type, if given.
    pub content_type: Option<String>,
    /// The part's content, borrowed from the body.
    pub data: &'a [u8],
}

/// The boundary from a `multipart/form-data; boundary=...` Content-Type value.
///
/// # Errors
///
/// [`MultipartError::NoBoundary`] when it is missing or not a valid boundary.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let (_, params) = content_type.split_once(';').ok_or(MultipartError::NoBoundary)?;
    let value = parameters(params)
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value)
        .ok_or(MultipartError::NoBoundary)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || "'()+_,-./:=? ".contains(c);
    if value.is_empty()
        || value.len() > MAX_BOUNDARY_LEN
        || !value.chars().all(allowed)
        || value.ends_with(' ')
    {
        return Err(MultipartError::NoBoundary);
    }
    Ok(value)
}

/// Splits `body` into its parts.
///
/// # Errors
///
/// A [`MultipartError`] for any malformed or over-limit body.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, MultipartError> {
    let dash_boundary = [b"--", boundary.as_bytes()].concat();
    let delimiter = [b"\r\n", dash_boundary.as_slice()].concat();
    // A preamble before the first boundary is allowed and ignored.
    let mut pos = if body.starts_with(&dash_boundary) {
        dash_boundary.len()
    } else {
        find(body, &delimiter, 0).ok_or(MultipartError::Truncated)? + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = body.get(pos..).ok_or(MultipartError::Truncated)?;
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
        let padding = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        let after_padding = rest.get(padding..).ok_or(MultipartError::Truncated)?;
        if !after_padding.starts_with(b"\r\n") {
            return Err(if after_padding.len() < 2 {
                MultipartError::Truncated
            } else {
                MultipartError::BadDelimiter
            });
        }
        pos += padding + 2;
        if parts.len() == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        let (part, next) = parse_part(body, pos, &delimiter)?;
        parts.push(part);
        pos = next;
    }
}

/// Parses the part starting at `start` (just after its delimiter line); returns it
/// and the position just after the next delimiter.
fn parse_part<'a>(
    body: &'a [u8],
    start: usize,
    delimiter: &[u8],
) -> Result<(Part<'a>, usize), MultipartError> {
    let head_end = body.len().min(start.saturating_add(MAX_PART_HEAD_LEN));
    let head = body.get(start..head_end).ok_or(MultipartError::Truncated)?;
    let mut headers = [httparse::EMPTY_HEADER; MAX_PART_HEADERS];
    let (head_len, headers) = match httparse::parse_headers(head, &mut headers) {
        Ok(httparse::Status::Complete((len, headers))) => (len, headers),
        Ok(httparse::Status::Partial) if head.len() < MAX_PART_HEAD_LEN => {
            return Err(MultipartError::Truncated);
        }
        Ok(httparse::Status::Partial) | Err(_) => return Err(MultipartError::BadPartHeaders),
    };
    let header = |name: &str| {
        headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
    };
    let disposition = header("content-disposition").ok_or(MultipartError::NoFieldName)?;
    let (kind, params) = disposition.split_once(';').ok_or(MultipartError::NoFieldName)?;
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(MultipartError::NoFieldName);
    }
    let params = parameters(params);
    let param =
        |wanted: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(wanted)).map(|(_, v)| v.clone());
    let name = param("name").ok_or(MultipartError::NoFieldName)?;
    let content_start = start + head_len;
    let content_end = find(body, delimiter, content_start).ok_or(MultipartError::Truncated)?;
    let part = Part {
        name,
        filename: param("filename"),
        content_type: header("content-type").map(|v| v.trim().to_owned()),
        data: &body[content_start..content_end],
    };
    Ok((part, content_end + delimiter.len()))
}

/// Parses `; a=b; c="d \"e\""` into name/value pairs. Malformed pieces are
/// skipped; callers then miss the parameter they need and fail on that.
fn parameters(input: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ';' || c.is_whitespace()).is_some() {}
        let name: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ';')).collect();
        if name.is_empty() && chars.peek().is_none() {
            return out;
        }
        if chars.next_if_eq(&'=').is_none() {
            continue;
        }
        let value = if chars.next_if_eq(&'"').is_some() {
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
            value
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ';')).collect::<String>().trim().to_owned()
        };
        out.push((name.trim().to_owned(), value));
    }
}

/// Position of `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = from;
    while let Some(offset) = haystack.get(at..)?.iter().position(|&b| b == first) {
        let candidate = at + offset;
        if haystack.get(candidate..candidate + needle.len())? == needle {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    use super::*;

    const BOUNDARY: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

    fn body(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, filename, data) in parts {
            out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            match filename {
                Some(f) => out.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                         Content-Type: image/png\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        out
    }

    #[test]
    fn parses_a_browser_upload() {
        let png = b"\x89PNG\r\n\x1a\n\r\n--not-the-boundary\r\n";
        let raw = body(&[("csrf", None, b"abc"), ("image", Some("me.png"), png)]);
        let parts = parse(&raw, BOUNDARY).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "csrf");
        assert_eq!(parts[0].data, b"abc");
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[1].name, "image");
        assert_eq!(parts[1].filename.as_deref(), Some("me.png"));
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(parts[1].data, png);
    }

    #[test]
    fn boundary_comes_from_the_content_type() {
        assert_eq!(boundary("multipart/form-data; boundary=abc").unwrap(), "abc");
        assert_eq!(boundary("multipart/form-data; charset=utf-8; BOUNDARY=\"a b:c\"").unwrap(), "a b:c");
        assert_eq!(boundary("multipart/form-data"), Err(MultipartError::NoBoundary));
        assert_eq!(boundary("multipart/form-data; boundary="), Err(MultipartError::NoBoundary));
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            Err(MultipartError::NoBoundary)
        );
        assert_eq!(boundary("multipart/form-data; boundary=a\"b"), Err(MultipartError::NoBoundary));
    }

    #[test]
    fn preamble_padding_and_epilogue_are_tolerated() {
        let raw = format!(
            "preamble\r\n--{BOUNDARY}  \r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--{BOUNDARY}--epilogue"
        );
        let parts = parse(raw.as_bytes(), BOUNDARY).unwrap();
        assert_eq!((parts[0].name.as_str(), parts[0].data), ("a", &b"1"[..]));
    }

    #[test]
    fn refuses_malformed_bodies() {
        let good = body(&[("a", None, b"1")]);
        assert_eq!(parse(&good[..good.len() - 10], BOUNDARY), Err(MultipartError::Truncated));
        assert_eq!(parse(b"no boundary here", BOUNDARY), Err(MultipartError::Truncated));
        let no_name = format!("--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--");
        assert_eq!(parse(no_name.as_bytes(), BOUNDARY), Err(MultipartError::NoFieldName));
        let bad_line = format!("--{BOUNDARY}xx\r\n");
        assert_eq!(parse(bad_line.as_bytes(), BOUNDARY), Err(MultipartError::BadDelimiter));
        let many: Vec<(&str, Option<&str>, &[u8])> = (0..=MAX_PARTS).map(|_| ("a", None, &b""[..])).collect();
        assert_eq!(parse(&body(&many), BOUNDARY), Err(MultipartError::TooManyParts));
        let huge_head = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=a\r\nX: {}\r\n\r\n\r\n--{BOUNDARY}--",
            "y".repeat(MAX_PART_HEAD_LEN)
        );
        assert_eq!(parse(huge_head.as_bytes(), BOUNDARY), Err(MultipartError::BadPartHeaders));
    }

    /// Valid bodies round-trip; mutated and random ones give `Ok` or `Err`, never
    /// a panic, and every part returned lies inside the body.
    #[test]
    fn randomized_bodies_never_panic() {
        let mut rng = StdRng::seed_from_u64(0xf0f0);
        let names = ["a", "image", "csrf", "nick name", "李"];
        for round in 0..20_000 {
            let count = rng.random_range(0..4);
            let datas: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let len = rng.random_range(0..40);
                    let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    if rng.random_bool(0.3) {
                        d.extend_from_slice(b"\r\n--");
                    }
                    d
                })
                .collect();
            let spec: Vec<(&str, Option<&str>, &[u8])> = datas
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    (names[i % names.len()], if i % 2 == 0 { Some("f.png") } else { None }, d.as_slice())
                })
                .collect();
            let mut raw = body(&spec);
            if round % 2 == 0 {
                let parts = parse(&raw, BOUNDARY).unwrap();
                assert_eq!(parts.len(), count);
                for (part, data) in parts.iter().zip(&datas) {
                    assert_eq!(part.data, data.as_slice());
                }
            }
            for _ in 0..rng.random_range(1..5) {
                if raw.is_empty() {
                    break;
                }
                let at = rng.random_range(0..raw.len());
                match rng.random_range(0..4) {
                    0 => raw[at] = rng.random(),
                    1 => raw.truncate(at),
                    2 => raw.insert(at, *b"\r\n-;=\"".get(rng.random_range(0..6)).unwrap_or(&b'x')),
                    _ => {
                        raw.remove(at);
                    }
                }
            }
            if let Ok(parts) = parse(&raw, BOUNDARY) {
                assert!(parts.len() <= MAX_PARTS);
                let total: usize = parts.iter().map(|p| p.data.len()).sum();
                assert!(total <= raw.len());
            }
        }
    }
}
