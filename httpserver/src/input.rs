//! The fields of a request, whatever encoding they came in.
//!
//! Every endpoint reads its input through [`Fields`], so urlencoded forms,
//! multipart forms, JSON objects, query strings and raw image bodies all obey the
//! same bounds and give the same errors. Fields are only bounded here; what makes
//! a good username or nickname is tcpserver's business.

use proto::MAX_IMAGE_LEN;

use crate::error::{Failure, HttpError};
use crate::request::{Body, Request};
use crate::{form, json, multipart};

/// Longest text field, in bytes. The longest real field is a password (128
/// bytes) or a nickname (64 characters, at most 256 bytes of UTF-8).
pub const MAX_FIELD_LEN: usize = 1024;

/// Most fields in one request. The largest form has four.
pub const MAX_FIELDS: usize = 16;

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Its bytes.
    pub data: Vec<u8>,
}

/// A request's decoded fields.
#[derive(Debug, Default)]
pub struct Fields {
    text: Vec<(String, String)>,
    file: Option<Upload>,
}

impl Fields {
    /// Decodes the body according to its Content-Type.
    ///
    /// # Errors
    ///
    /// 413 for a body over its cap, 415 for a Content-Type this server does not
    /// read, 400 for a body that does not decode or breaks the field bounds.
    pub fn from_body(request: &Request) -> Result<Fields, Failure> {
        let body = match &request.body {
            Body::Complete(body) => body.as_slice(),
            Body::TooLarge => return Err(Failure::http(HttpError::BodyTooLarge)),
        };
        if body.is_empty() {
            return Ok(Fields::default());
        }
        let content_type = request.header("content-type").unwrap_or_default();
        let mime = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        let malformed = |why: String| Failure::http_because(HttpError::MalformedBody, why);
        match mime.as_str() {
            "application/x-www-form-urlencoded" => {
                Fields::from_pairs(form::parse(body).map_err(|e| malformed(format!("Bad form data: {e}.")))?)
            }
            "application/json" => Fields::from_pairs(
                json::parse_fields(body).map_err(|e| malformed(format!("Bad JSON: {e}.")))?,
            ),
            "multipart/form-data" => {
                let bad = |e: multipart::MultipartError| malformed(format!("Bad multipart form data: {e}."));
                let boundary = multipart::boundary(content_type).map_err(bad)?;
                let parts = multipart::parse(body, &boundary).map_err(bad)?;
                Fields::from_parts(parts)
            }
            image if image.starts_with("image/") => Fields::default().with_file(body),
            _ => Err(Failure::http(HttpError::UnsupportedMediaType)),
        }
    }

    /// Decodes the query string.
    ///
    /// # Errors
    ///
    /// 400 for bad percent-encoding or a breach of the field bounds.
    pub fn from_query(request: &Request) -> Result<Fields, Failure> {
        let query = request.query().unwrap_or_default();
        let pairs = form::parse(query.as_bytes()).map_err(|e| {
            Failure::http_because(HttpError::MalformedBody, format!("Bad query string: {e}."))
        })?;
        Fields::from_pairs(pairs)
    }

    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Fields, Failure> {
        let mut fields = Fields::default();
        for (name, value) in pairs {
            fields.add_text(name, value)?;
        }
        Ok(fields)
    }

    fn from_parts(parts: Vec<multipart::Part<'_>>) -> Result<Fields, Failure> {
        let mut fields = Fields::default();
        for part in parts {
            match part.filename {
                // A file input left empty still sends a part, with no name and no bytes.
                Some(filename) if filename.is_empty() && part.data.is_empty() => {}
                Some(_) => fields = fields.with_file(part.data)?,
                None => {
                    let value = String::from_utf8(part.data.to_vec()).map_err(|_| {
                        Failure::http_because(
                            HttpError::MalformedBody,
                            format!("The field {} is not valid UTF-8.", shown(&part.name)),
                        )
                    })?;
                    fields.add_text(part.name, value)?;
                }
            }
        }
        Ok(fields)
    }

    fn add_text(&mut self, name: String, value: String) -> Result<(), Failure> {
        let malformed = |why: String| Err(Failure::http_because(HttpError::MalformedBody, why));
        if value.len() > MAX_FIELD_LEN || name.len() > MAX_FIELD_LEN {
            return malformed(format!("The field {} is too long.", shown(&name)));
        }
        if self.text.iter().any(|(n, _)| *n == name) {
            // Repeated fields invite "which one wins?" bugs between layers.
            return malformed(format!("The field {} is given twice.", shown(&name)));
        }
        if self.text.len() == MAX_FIELDS {
            return malformed("Too many fields.".to_owned());
        }
        self.text.push((name, value));
        Ok(())
    }

    fn with_file(mut self, data: &[u8]) -> Result<Fields, Failure> {
        if self.file.is_some() {
            return Err(Failure::http_because(HttpError::MalformedBody, "Send one file at a time."));
        }
        if data.len() > MAX_IMAGE_LEN {
            return Err(image_too_large());
        }
        self.file = Some(Upload { data: data.to_vec() });
        Ok(self)
    }

    /// The value of a field, or `None` when it is absent or empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.text.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// The value of a field that must be present and non-empty.
    ///
    /// # Errors
    ///
    /// 400 naming the missing field.
    pub fn required(&self, name: &'static str) -> Result<&str, Failure> {
        self.text(name).ok_or_else(|| {
            Failure::http_because(HttpError::MissingField, format!("Please fill in the {name}."))
        })
    }

    /// Takes the uploaded file.
    ///
    /// # Errors
    ///
    /// 400 when no file was sent.
    pub fn take_file(&mut self) -> Result<Upload, Failure> {
        self.file.take().ok_or_else(|| {
            Failure::http_because(HttpError::MissingField, "Please choose a picture to upload.")
        })
    }
}

/// The failure for a picture over [`MAX_IMAGE_LEN`], however it was detected.
pub fn image_too_large() -> Failure {
    Failure::rejected(
        proto::ErrorCode::ImageTooLarge,
        format!("That picture is too large: the limit is {} MiB.", MAX_IMAGE_LEN / (1024 * 1024)),
    )
}

/// A field name as shown in an error message: quoted, and cut short if long.
fn shown(name: &str) -> String {
    let cut: String = name.chars().take(40).collect();
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::request::Head;

    fn request(content_type: &str, body: &[u8]) -> Request {
        let head = Head::for_tests("POST", "/x?username=a%20b", &[("content-type", content_type)]);
        Request::new(head, Body::Complete(body.to_vec()), Ipv4Addr::LOCALHOST.into())
    }

    #[test]
    fn every_encoding_gives_the_same_fields() {
        let bodies: [(&str, &[u8]); 3] = [
            ("application/x-www-form-urlencoded", b"username=bruce&nickname=%E6%9D%8E"),
            ("application/json; charset=utf-8", "{\"username\":\"bruce\",\"nickname\":\"李\"}".as_bytes()),
            (
                "multipart/form-data; boundary=XY",
                "--XY\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nbruce\r\n\
                 --XY\r\nContent-Disposition: form-data; name=\"nickname\"\r\n\r\n李\r\n--XY--\r\n"
                    .as_bytes(),
            ),
        ];
        for (content_type, body) in bodies {
            let fields = Fields::from_body(&request(content_type, body)).unwrap();
            assert_eq!(fields.text("username"), Some("bruce"), "{content_type}");
            assert_eq!(fields.required("nickname").unwrap(), "李");
            assert!(fields.required("password").is_err());
        }
    }

    #[test]
    fn bounds_and_types_are_enforced() {
        let code = |ct: &str, body: &[u8]| Fields::from_body(&request(ct, body)).unwrap_err().code();
        assert_eq!(code("text/plain", b"x"), HttpError::UnsupportedMediaType as u16);
        assert_eq!(code("application/x-www-form-urlencoded", b"a=1&a=2"), HttpError::MalformedBody as u16);
        let long = format!("a={}", "x".repeat(MAX_FIELD_LEN + 1));
        assert_eq!(
            code("application/x-www-form-urlencoded", long.as_bytes()),
            HttpError::MalformedBody as u16
        );
        let many: String = (0..=MAX_FIELDS).map(|i| format!("f{i}=1&")).collect();
        assert_eq!(
            code("application/x-www-form-urlencoded", many.as_bytes()),
            HttpError::MalformedBody as u16
        );
        let big_image = vec![0u8; MAX_IMAGE_LEN + 1];
        assert_eq!(code("image/png", &big_image), proto::ErrorCode::ImageTooLarge as u16);
    }

    #[test]
    fn an_empty_file_input_is_no_file() {
        let body = "--XY\r\nContent-Disposition: form-data; name=\"image\"; filename=\"\"\r\n\
                    Content-Type: application/octet-stream\r\n\r\n\r\n--XY--\r\n";
        let mut fields =
            Fields::from_body(&request("multipart/form-data; boundary=XY", body.as_bytes())).unwrap();
        assert_eq!(fields.take_file().unwrap_err().code(), HttpError::MissingField as u16);
        let mut raw = Fields::from_body(&request("image/png", b"\x89PNG")).unwrap();
        assert_eq!(raw.take_file().unwrap().data, b"\x89PNG");
    }

    #[test]
    fn query_strings_decode_like_forms() {
        let fields = Fields::from_query(&request("", b"")).unwrap();
        assert_eq!(fields.text("username"), Some("a b"));
    }
}
