//! JSON request bodies: a flat object of string fields, as API clients send
//! `{"username":"bruce","password":"..."}`.
//!
//! `null` counts as absent; numbers, booleans, arrays and nested objects are
//! refused rather than guessed at. Responses are built in [`crate::response`].

use std::fmt;

use serde_json::error::Category;
use serde_json::{Map, Value};

/// Why a JSON body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// The body is not UTF-8, so it cannot be JSON.
    NotUtf8,
    /// Not JSON: a syntax error (or nesting too deep) at this line and column.
    Syntax {
        /// Line of the error, from 1.
        line: usize,
        /// Column of the error, from 1.
        column: usize,
    },
    /// JSON, but not a JSON object.
    NotAnObject,
    /// This field holds something other than a string or null.
    NotAString(String),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::NotUtf8 => f.write_str("the body is not valid UTF-8"),
            JsonError::Syntax { line, column } => {
                write!(f, "the body is not valid JSON (line {line}, column {column})")
            }
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
    let text = std::str::from_utf8(body).map_err(|_| JsonError::NotUtf8)?;
    let object: Map<String, Value> = serde_json::from_str(text).map_err(|e| match e.classify() {
        Category::Data => JsonError::NotAnObject,
        _ => JsonError::Syntax { line: e.line(), column: e.column() },
    })?;
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
        assert_eq!(parse_fields(b"\"text\""), Err(JsonError::NotAnObject));
        assert_eq!(parse_fields(b"{\"a\":"), Err(JsonError::Syntax { line: 1, column: 5 }));
        assert_eq!(parse_fields(b"{\"a\":\"\xff\"}"), Err(JsonError::NotUtf8));
        assert_eq!(parse_fields(br#"{"a":1}"#), Err(JsonError::NotAString("a".into())));
        assert_eq!(parse_fields(br#"{"a":{"b":"c"}}"#), Err(JsonError::NotAString("a".into())));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
        assert!(matches!(parse_fields(deep.as_bytes()), Err(JsonError::Syntax { .. })));
    }
}
