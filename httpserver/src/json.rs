//! JSON request bodies: a flat object of string fields, as API clients send
//! `{"username":"bruce","password":"..."}`.
//!
//! `null` counts as absent; numbers, booleans, arrays and nested objects are
//! refused rather than guessed at. Responses are built in [`crate::response`].

use std::fmt;

use serde_json::{Map, Value};

/// Why a JSON body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON, or not a JSON object.
    NotAnObject,
    /// This field holds something other than a string or null.
    NotAString(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::NotAnObject => f.write_str("the body must be a JSON object"),
            JsonError::NotAString(name) => write!(f, "field {name:?} must be a string"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Decodes a JSON object into (name, value) pairs, skipping `null`s.
///
/// # Errors
///
/// A [`JsonError`] when the body is not an object of strings.
pub fn parse_fields(body: &[u8]) -> Result<Vec<(String, String)>, JsonError> {
    let object: Map<String, Value> = serde_json::from_slice(body).map_err(|_| JsonError::NotAnObject)?;
    let mut fields = Vec::with_capacity(object.len());
    for (name, value) in object {
        match value {
            Value::String(text) => fields.push((name, text)),
            Value::Null => {}
            _ => return Err(JsonError::NotAString(name)),
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_strings_and_skips_nulls() {
        let fields =
            parse_fields(br#"{"username":"bruce","nickname":null,"x":"\u674e \ud83d\udc09"}"#).unwrap();
        assert_eq!(fields, vec![("username".into(), "bruce".into()), ("x".into(), "李 🐉".into())]);
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(parse_fields(b"[1]"), Err(JsonError::NotAnObject));
        assert_eq!(parse_fields(b"{\"a\":"), Err(JsonError::NotAnObject));
        assert_eq!(parse_fields(b"\xff"), Err(JsonError::NotAnObject));
        assert_eq!(parse_fields(br#"{"a":1}"#), Err(JsonError::NotAString("a".into())));
        assert_eq!(parse_fields(br#"{"a":{"b":"c"}}"#), Err(JsonError::NotAString("a".into())));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(parse_fields(deep.as_bytes()), Err(JsonError::NotAnObject));
    }
}
