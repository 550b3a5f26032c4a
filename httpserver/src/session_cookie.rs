//! The session credential: the opaque token tcpserver issued at log-in, carried
//! by browsers in an `HttpOnly; SameSite=Lax` cookie and by API clients in
//! `Authorization: Bearer`.
//!
//! The token means nothing here; it is only checked for shape (so junk never
//! reaches tcpserver) and passed on. An `Authorization: Bearer` header, when
//! present, is the only credential considered, so a request that names its
//! token explicitly never also rides on an ambient cookie. An `Authorization`
//! header of any other scheme (HTTP Basic credentials that a proxy in front
//! adds, say) is not this server's: it is ignored, so it neither replaces the
//! cookie nor passes for an explicit credential, which would lift the CSRF
//! checks (see [`crate::csrf`]).

use proto::Secret;

use crate::request::{Head, Request};

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

/// What a request's `Authorization` header says, as far as this server is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization<'a> {
    /// No `Authorization` header.
    Absent,
    /// `Bearer <token>` with a token of the right shape.
    Bearer(&'a str),
    /// `Bearer` with no token, or with one that cannot be a session token.
    MalformedBearer,
    /// Another scheme (`Basic`, say): someone else's credential, not a session.
    OtherScheme,
}

/// Reads the `Authorization` header of `head`.
pub fn authorization(head: &Head) -> Authorization<'_> {
    let Some(value) = head.header("authorization") else {
        return Authorization::Absent;
    };
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Authorization::OtherScheme;
    }
    let token = token.trim();
    if is_token_shaped(token) { Authorization::Bearer(token) } else { Authorization::MalformedBearer }
}

/// The request's credential, if it has a well-formed one: the Bearer token when
/// the request names one (a malformed one is no credential, and the cookie is
/// then not considered), otherwise the session cookie.
pub fn credential(request: &Request) -> Option<Credential> {
    match authorization(&request.head) {
        Authorization::Bearer(token) => Some(Credential::Bearer(Secret::new(token))),
        Authorization::MalformedBearer => None,
        Authorization::Absent | Authorization::OtherScheme => cookie(request, SESSION_COOKIE)
            .filter(|t| is_token_shaped(t))
            .map(|t| Credential::Cookie(Secret::new(t))),
    }
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
    set_cookie_value(SESSION_COOKIE, token.expose(), "", secure)
}

/// `Set-Cookie` value that deletes the session cookie.
pub fn clear_session(secure: bool) -> String {
    set_cookie_value(SESSION_COOKIE, "", "; Max-Age=0", secure)
}

/// A `Set-Cookie` value: `name=value`, then `extra` and this server's
/// [`attributes`], in a string allocated once at its length (every log-in
/// answer sets two cookies).
pub fn set_cookie_value(name: &str, value: &str, extra: &str, secure: bool) -> String {
    let attributes = attributes(secure);
    let mut text = String::with_capacity(name.len() + 1 + value.len() + extra.len() + attributes.len());
    for part in [name, "=", value, extra, attributes] {
        text.push_str(part);
    }
    text
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
        for bad in ["Bearer", "Bearer ", "bearer <script>", "Bearer a b"] {
            let bad_bearer = request(&[("Authorization", bad), ("Cookie", "um_session=fromcookie")]);
            assert_eq!(credential(&bad_bearer), None, "{bad:?} names a token, just not a valid one");
            assert_eq!(authorization(&bad_bearer.head), Authorization::MalformedBearer, "{bad:?}");
        }
        let cookie_only = request(&[("Cookie", "theme=dark; um_session=t0k3n; other=1")]);
        assert_eq!(credential(&cookie_only), Some(Credential::Cookie(Secret::new("t0k3n"))));
    }

    #[test]
    fn another_scheme_is_not_a_session_and_leaves_the_cookie_in_charge() {
        // HTTP Basic added by a proxy in front: the browser's cookie is still its credential.
        let basic = request(&[("Authorization", "Basic dTpw"), ("Cookie", "um_session=fromcookie")]);
        assert_eq!(authorization(&basic.head), Authorization::OtherScheme);
        assert_eq!(credential(&basic), Some(Credential::Cookie(Secret::new("fromcookie"))));
        let basic_alone = request(&[("Authorization", "Basic dTpw")]);
        assert_eq!(credential(&basic_alone), None);
        assert_eq!(
            authorization(&request(&[("Authorization", "Negotiate")]).head),
            Authorization::OtherScheme
        );
        assert_eq!(authorization(&request(&[]).head), Authorization::Absent);
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
