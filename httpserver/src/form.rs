//! `application/x-www-form-urlencoded` decoding, for form bodies and query strings.
//!
//! Strict where it matters: `%` must be followed by two hex digits, and every
//! decoded name and value must be valid UTF-8. A lenient decoder would let
//! `%zz` or a lone `%C3` through as something the user never typed.

use std::fmt;

/// Why a urlencoded string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormError {
    /// A `%` not followed by two hex digits.
    BadPercent,
    /// A name or value that decodes to bytes that are not UTF-8.
    NotUtf8,
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FormError::BadPercent => "'%' must be followed by two hex digits",
            FormError::NotUtf8 => "a field is not valid UTF-8",
        })
    }
}

impl std::error::Error for FormError {}

/// Decodes `a=1&b=two+words` into `[("a","1"), ("b","two words")]`. Empty pairs
/// (`a=1&&b=2`) are skipped; a pair without `=` has an empty value.
///
/// # Errors
///
/// A [`FormError`] for bad percent-encoding or non-UTF-8 results.
pub fn parse(input: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    input
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &[][..]),
            };
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

/// Percent-decodes one component, `+` meaning space.
///
/// # Errors
///
/// A [`FormError`] for bad percent-encoding or non-UTF-8 results.
pub fn decode(input: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = input.get(i + 1..i + 3).ok_or(FormError::BadPercent)?;
                let high = hex_value(hex[0]).ok_or(FormError::BadPercent)?;
                let low = hex_value(hex[1]).ok_or(FormError::BadPercent)?;
                out.push(high << 4 | low);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8)
}

/// Percent-encodes `text` for use in a query string (everything but unreserved
/// characters is encoded).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_unicode() {
        let pairs = parse(b"username=bruce&nickname=%E6%9D%8E+%F0%9F%90%89&flag&&x=a%3Db").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("username".into(), "bruce".into()),
                ("nickname".into(), "李 🐉".into()),
                ("flag".into(), String::new()),
                ("x".into(), "a=b".into()),
            ]
        );
    }

    #[test]
    fn refuses_bad_percent_and_bad_utf8() {
        assert_eq!(parse(b"a=%zz"), Err(FormError::BadPercent));
        assert_eq!(parse(b"a=%4"), Err(FormError::BadPercent));
        assert_eq!(parse(b"a=%"), Err(FormError::BadPercent));
        assert_eq!(parse(b"a=%C3"), Err(FormError::NotUtf8));
        assert_eq!(parse(b"a=%FF%FE"), Err(FormError::NotUtf8));
        assert_eq!(parse(&[b'a', b'=', 0xE6]), Err(FormError::NotUtf8));
    }

    #[test]
    fn encode_round_trips_through_decode() {
        for text in ["", "plain", "a b&c=d/e?f", "李小龍 🐉", "100%"] {
            assert_eq!(decode(encode(text).as_bytes()).unwrap(), text);
        }
    }
}
