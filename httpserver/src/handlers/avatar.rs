//! `GET /static/avatars/<sha256 hex>.<png|jpg|gif|webp>`: a profile picture.
//!
//! The URL is the one pictures have always had; the bytes now come from
//! tcpserver (`GetAvatar`, answered from MariaDB) through the
//! [`crate::avatar_cache`], not from a directory, so every httpserver serves
//! every picture. The name is checked before anything else: anything but a
//! name tcpserver gives (64 lowercase hex digits, a dot, one of the four
//! extensions) is 404 at once, without an RPC. A name no account uses is 404.
//!
//! A picture's name is the hash of its bytes, so its URL never changes
//! meaning: it is served `immutable` for a year, with the digest as its
//! `ETag`, and a revalidation that names it (`If-None-Match`) gets 304.

use proto::{ErrorCode, Message};

use super::{Client, failure, unexpected_reply};
use crate::app::App;
use crate::avatar_cache::Picture;
use crate::error::{Failure, HttpError};
use crate::request::{Head, Request};
use crate::response::Response;

/// Where pictures are served, before their name.
pub const PREFIX: &str = "/static/avatars/";

/// Hex digits of a name's digest: a SHA-256.
const DIGEST_HEX_LEN: usize = 64;

/// A picture's name never changes meaning, so browsers may keep it forever.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Serves `GET` and `HEAD` of [`PREFIX`]`<name>`.
pub fn serve(app: &App, request: &Request) -> Response {
    let client = Client::of(&request.head);
    let name = request.path().strip_prefix(PREFIX).unwrap_or_default();
    let Some((digest, content_type)) = parse_name(name) else {
        return failure(app, client, &Failure::http(HttpError::NotFound));
    };
    let fetched = app.avatars.get_or_fetch(name, app.config.rpc_timeout, || fetch(app, name, content_type));
    match fetched {
        Ok(Some(picture)) => respond(&request.head, digest, picture),
        Ok(None) => failure(app, client, &Failure::http(HttpError::NotFound)),
        Err(e) => failure(app, client, &e),
    }
}

/// The digest and the content type of a well-formed name; `None` otherwise.
fn parse_name(name: &str) -> Option<(&str, &'static str)> {
    let (digest, extension) = name.split_once('.')?;
    let is_digest =
        digest.len() == DIGEST_HEX_LEN && digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let content_type = match extension {
        "png" => "image/png",
        "jpg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        _ => return None,
    };
    is_digest.then_some((digest, content_type))
}

/// The picture from tcpserver; `None` if no account uses it.
fn fetch(app: &App, name: &str, content_type: &'static str) -> Result<Option<Picture>, Failure> {
    match app.call(Message::GetAvatar { name: name.to_owned() }) {
        // The type is the name's: tcpserver names a picture by the format it found.
        Ok(Message::Avatar { content_type: sent, image }) if sent == content_type => {
            Ok(Some(Picture { content_type, bytes: image.into() }))
        }
        Ok(_) => Err(unexpected_reply()),
        Err(Failure::Rejected(reply)) if reply.code == ErrorCode::UnknownAvatar => Ok(None),
        Err(e) => Err(e),
    }
}

/// 200 with the picture, or 304 if the client names it in `If-None-Match`.
fn respond(head: &Head, digest: &str, picture: Picture) -> Response {
    let etag = format!("\"{digest}\"");
    let held = head.header("if-none-match").is_some_and(|tags| matches_etag(tags, &etag));
    let response = Response::new(if held { 304 } else { 200 })
        .shared(picture.content_type, picture.bytes)
        .header("Cache-Control", IMMUTABLE)
        .header("ETag", etag);
    if held { response.without_body() } else { response }
}

/// Whether an `If-None-Match` list (`*`, or entity tags, weak or strong,
/// between commas) names `etag`; weak comparison, as RFC 9110 asks for it.
fn matches_etag(tags: &str, etag: &str) -> bool {
    tags.split(',').map(str::trim).any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_tcpserver_gives_are_looked_up() {
        let digest = "0f".repeat(32);
        assert_eq!(parse_name(&format!("{digest}.png")), Some((digest.as_str(), "image/png")));
        assert_eq!(parse_name(&format!("{digest}.jpg")), Some((digest.as_str(), "image/jpeg")));
        assert_eq!(parse_name(&format!("{digest}.webp")), Some((digest.as_str(), "image/webp")));
        for bad in [
            format!("{digest}.svg"),
            format!("{digest}.PNG"),
            format!("{digest}.png/"),
            format!("{}.png", "0F".repeat(32)),
            format!("{}.png", "0f".repeat(31)),
            format!("{digest}0.png"),
            format!("../{digest}.png"),
            format!("{digest}.png.gif"),
            "x.png".into(),
            ".gitkeep".into(),
            String::new(),
        ] {
            assert_eq!(parse_name(&bad), None, "{bad}");
        }
    }

    #[test]
    fn if_none_match_names_the_etag_weakly_or_by_star() {
        let etag = "\"abc\"";
        for yes in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*", " \"abc\" "] {
            assert!(matches_etag(yes, etag), "{yes}");
        }
        for no in ["\"abcd\"", "abc", "\"ab\", W/\"x\"", ""] {
            assert!(!matches_etag(no, etag), "{no}");
        }
    }

    #[test]
    fn a_revalidation_gets_304_with_no_body_and_a_fetch_the_picture() {
        let picture = Picture { content_type: "image/gif", bytes: b"GIF89a".to_vec().into() };
        let digest = "ab".repeat(32);
        let write = |headers: &[(&str, &str)]| {
            let head = Head::for_tests("GET", "/static/avatars/x.gif", headers);
            let mut out = Vec::new();
            respond(&head, &digest, picture.clone()).write_to(&mut out, false, true, true).unwrap();
            String::from_utf8(out).unwrap()
        };
        let full = write(&[]);
        assert!(full.starts_with("HTTP/1.1 200 OK\r\n"), "{full}");
        assert!(full.contains("Content-Type: image/gif\r\n"));
        assert!(full.contains("Cache-Control: public, max-age=31536000, immutable\r\n"));
        assert!(full.contains(&format!("ETag: \"{digest}\"\r\n")));
        assert!(full.ends_with("\r\n\r\nGIF89a"));
        let tag = format!("\"{digest}\"");
        let again = write(&[("If-None-Match", &tag)]);
        assert!(again.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{again}");
        assert!(again.contains(&format!("ETag: {tag}\r\n")));
        assert!(again.ends_with("\r\n\r\n"), "no body: {again}");
    }
}
