//! The session credential: the opaque token tcpserver issued at log-in, carried
//! by browsers in an `HttpOnly; SameSite=Lax` cookie and by API clients in
//! `Authorization: Bearer`.
//!
//! The token means nothing here; it is only checked for shape (so junk never
//! reaches tcpserver) and passed on. An `Authorization` header, when present, is
//! the only credential considered, so a request that names its token explicitly
//! never also rides on an ambient cookie.

use proto::Secret;

use crate::request::Request;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "um_session";

/// Longest token accepted. tcpserver's are 64 hex characters; anything much
/// longer is not one of them.
pub const MAX_TOKEN_LEN: usize = 256;

/// Where a request's credential came from, which decides whether it needs a
/// CSRF check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer <token>`: explicit, so no CSRF risk.
    Bearer(Secret),
    /// The session cookie: ambient, so state changes need a CSRF token.
    Cookie(Secret),
}

impl Credential {
    /// The token.
    pub fn token(&self) -> &Secret {
        match self {
            Credential::Bearer(token) | Credential::Cookie(token) => token,
        }
    }
}

/// The request's credential, if it has a well-formed one.
pub fn credential(request: &Request) -> Option<Credential> {
    if let Some(value) = request.header("authorization") {
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        return (scheme.eq_ignore_ascii_case("bearer") && is_token_shaped(token))
            .then(|| Credential::Bearer(Secret::new(token)));
    }
    cookie(request, SESSION_COOKIE).filter(|t| is_token_shaped(t)).map(|t| Credential::Cookie(Secret::new(t)))
}

/// True when the request sends an `Authorization` header (and so uses no cookie).
pub fn has_authorization(request: &Request) -> bool {
    request.header("authorization").is_some()
}

/// The value of cookie `name`, the first if it appears twice.
pub fn cookie<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .header("cookie")?
        .split(';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, value)| value.trim().trim_matches('"'))
}

/// `Set-Cookie` value that stores a new session token.
pub fn set_session(token: &Secret, secure: bool) -> String {
    format!("{SESSION_COOKIE}={}{}", token.expose(), attributes(secure))
}

/// `Set-Cookie` value that deletes the session cookie.
pub fn clear_session(secure: bool) -> String {
    format!("{SESSION_COOKIE}=; Max-Age=0{}", attributes(secure))
}

/// Attributes shared by this server's cookies: not readable by script, not sent
/// on cross-site subrequests or POSTs, valid for the whole site, and `Secure`
/// when the site is served over TLS. No `Max-Age`: the cookie lasts as long as
/// the browser session, and tcpserver expires the session itself.
pub fn attributes(secure: bool) -> &'static str {
    if secure { "; Path=/; HttpOnly; SameSite=Lax; Secure" } else { "; Path=/; HttpOnly; SameSite=Lax" }
}

fn is_token_shaped(token: &str) -> bool {
    (1..=MAX_TOKEN_LEN).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::request::{Body, Head};

    fn request(headers: &[(&str, &str)]) -> Request {
        Request::new(
            Head::for_tests("GET", "/", headers),
            Body::Complete(Vec::new()),
            Ipv4Addr::LOCALHOST.into(),
        )
    }

    #[test]
    fn bearer_wins_and_replaces_the_cookie() {
        let both = request(&[("Authorization", "Bearer abc123"), ("Cookie", "um_session=fromcookie")]);
        assert_eq!(credential(&both), Some(Credential::Bearer(Secret::new("abc123"))));
        let bad_bearer = request(&[("Authorization", "Basic dTpw"), ("Cookie", "um_session=fromcookie")]);
        assert_eq!(credential(&bad_bearer), None);
        let cookie_only = request(&[("Cookie", "theme=dark; um_session=t0k3n; other=1")]);
        assert_eq!(credential(&cookie_only), Some(Credential::Cookie(Secret::new("t0k3n"))));
    }

    #[test]
    fn junk_tokens_are_not_credentials() {
        for junk in ["um_session=", "um_session=a b", "um_session=<script>", "um_session=\u{e9}"] {
            assert_eq!(credential(&request(&[("Cookie", junk)])), None, "{junk}");
        }
        let long = format!("um_session={}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(credential(&request(&[("Cookie", &long)])), None);
    }

    #[test]
    fn cookies_carry_the_safe_attributes() {
        let set = set_session(&Secret::new("tok"), false);
        assert_eq!(set, "um_session=tok; Path=/; HttpOnly; SameSite=Lax");
        assert!(clear_session(true).contains("Max-Age=0") && clear_session(true).ends_with("; Secure"));
    }
}
