//! Cross-site request forgery defence for every state-changing request.
//!
//! Two independent checks, both of which a forged request fails:
//!
//! 1. Where did it come from? Browsers label cross-site requests with
//!    `Sec-Fetch-Site` and `Origin` (or at least `Referer`); any of them naming
//!    another site is refused.
//! 2. Double-submit token: pages carry a random token in a hidden field that
//!    must equal the `um_csrf` cookie (compared in constant time). Another site
//!    can make a browser send the cookie, but cannot read it to fill in the field.
//!
//! Requests authenticated by a well-formed `Authorization: Bearer` token carry
//! no ambient credential and skip both. No other `Authorization` header does:
//! behind a proxy that adds HTTP Basic credentials, every request a browser
//! sends carries one, a forged cross-site form included. API clients
//! (`Accept: application/json`, a JSON body, or a Bearer header) skip the
//! token, but not the origin check, where no session cookie is in play: on
//! sign-up and log-in, or when they send no cookie at all. Browsers always need
//! the token, log-in included, so another site cannot log a visitor into an
//! account of its own; and a successful log-in sets a fresh token
//! ([`rotated_cookie`]), so a token known before it (planted by someone who
//! can set cookies for the site, say) is worthless after it.

use rand::TryRng;
use rand::rngs::SysRng;
use subtle::ConstantTimeEq;

use crate::error::{Failure, HttpError};
use crate::input::Fields;
use crate::request::Request;
use crate::session_cookie::{self, Authorization, SESSION_COOKIE};

/// Name of the cookie holding the token.
pub const CSRF_COOKIE: &str = "um_csrf";

/// Name of the form field holding the token.
pub const CSRF_FIELD: &str = "csrf";

/// Header an API client with a cookie jar may use instead of the field.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Random bytes per token: 256 bits, beyond guessing.
const TOKEN_BYTES: usize = 32;

/// The token to put in a page's forms: the browser's own if it has a valid one,
/// otherwise a new one together with the `Set-Cookie` value that stores it.
pub fn page_token(request: &Request, secure: bool) -> (String, Option<String>) {
    if let Some(token) = session_cookie::cookie(request, CSRF_COOKIE).filter(|t| is_token(t)) {
        return (token.to_owned(), None);
    }
    let token = new_token();
    let cookie = token_cookie(&token, secure);
    (token, Some(cookie))
}

/// The `Set-Cookie` value of a new token, for a successful log-in: the forms of
/// the pages after it carry the new token, and one held before no longer
/// matches the cookie.
pub fn rotated_cookie(secure: bool) -> String {
    token_cookie(&new_token(), secure)
}

fn token_cookie(token: &str, secure: bool) -> String {
    session_cookie::set_cookie_value(CSRF_COOKIE, token, "", secure)
}

/// Checks a state-changing request. `api` is true when the client asked for
/// JSON; `uses_session` when the endpoint acts on the session cookie's user.
///
/// # Errors
///
/// [`HttpError::CsrfRejected`] (403) when the request may be forged.
pub fn check(request: &Request, fields: &Fields, api: bool, uses_session: bool) -> Result<(), Failure> {
    if matches!(session_cookie::authorization(&request.head), Authorization::Bearer(_)) {
        return Ok(());
    }
    let rejected = Failure::http(HttpError::CsrfRejected);
    if !same_origin(request) {
        return Err(rejected);
    }
    let ambient = uses_session && session_cookie::cookie(request, SESSION_COOKIE).is_some();
    if api && !ambient {
        return Ok(());
    }
    let expected = session_cookie::cookie(request, CSRF_COOKIE).filter(|t| is_token(t));
    let sent = fields.text(CSRF_FIELD).or_else(|| request.header(CSRF_HEADER));
    match (expected, sent) {
        (Some(expected), Some(sent)) if bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) => Ok(()),
        _ => Err(rejected),
    }
}

/// False when the browser says the request comes from another origin.
fn same_origin(request: &Request) -> bool {
    if let Some(site) = request.header("sec-fetch-site") {
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return false;
        }
    }
    let Some(host) = request.header("host") else {
        // HTTP/1.0 without Host: nothing to compare against; the token decides.
        return true;
    };
    let source = request.header("origin").or_else(|| request.header("referer"));
    match source {
        None => true,
        Some(url) => authority(url).is_some_and(|authority| authority.eq_ignore_ascii_case(host)),
    }
}

/// `host[:port]` of an absolute http(s) URL; `None` for `null` or anything else.
fn authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end])
}

fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    if SysRng.try_fill_bytes(&mut bytes).is_err() {
        // The OS generator failing is near impossible; ThreadRng is a CSPRNG
        // seeded from it, so it is a sound fallback.
        rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    }
    hex::encode(bytes)
}

fn is_token(token: &str) -> bool {
    token.len() == 2 * TOKEN_BYTES && token.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::request::{Body, Head};

    const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn post(headers: &[(&str, &str)], body: &str) -> (Request, Fields) {
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        let head = Head::for_tests("POST", "/updateNickName", &all);
        let request =
            Request::new(head, Body::Complete(body.as_bytes().to_vec()), Ipv4Addr::LOCALHOST.into());
        let fields = Fields::from_body(&request).unwrap();
        (request, fields)
    }

    fn cookies() -> String {
        format!("um_session=s355ion; um_csrf={TOKEN}")
    }

    #[test]
    fn a_same_site_form_with_the_token_passes() {
        let (r, f) =
            post(&[("Cookie", &cookies()), ("Origin", "http://localhost:1088")], &format!("csrf={TOKEN}"));
        assert!(check(&r, &f, false, true).is_ok());
        let (r, f) = post(&[("Cookie", &cookies()), ("X-CSRF-Token", TOKEN)], "");
        assert!(check(&r, &f, true, true).is_ok());
    }

    #[test]
    fn forged_requests_are_refused() {
        let field = format!("csrf={TOKEN}");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("Origin", "http://evil.example")], field.as_str()),
            (vec![("Origin", "null")], field.as_str()),
            (vec![("Referer", "http://localhost:1088.evil.example/x")], field.as_str()),
            (vec![("Sec-Fetch-Site", "cross-site")], field.as_str()),
            (vec![], ""),
            (vec![], "csrf=00112233445566778899aabbccddeeff00112233445566778899aabbccddee00"),
        ];
        let jar = cookies();
        for (mut headers, body) in cases {
            headers.push(("Cookie", &jar));
            let (r, f) = post(&headers, body);
            assert_eq!(
                check(&r, &f, false, true),
                Err(Failure::http(HttpError::CsrfRejected)),
                "{headers:?} {body}"
            );
            // Asking for JSON does not help a request that carries the session cookie.
            assert!(check(&r, &f, true, true).is_err());
        }
    }

    #[test]
    fn explicit_credentials_and_cookieless_api_calls_need_no_token() {
        let (r, f) = post(&[("Authorization", "Bearer abc"), ("Cookie", &cookies())], "");
        assert!(check(&r, &f, true, true).is_ok());
        let (r, f) = post(&[], "username=a&password=b");
        assert!(check(&r, &f, true, true).is_ok());
        let (r, f) = post(&[("Cookie", &cookies())], "username=a&password=b");
        assert!(check(&r, &f, true, false).is_ok(), "log-in does not act on the session cookie");
        assert!(check(&r, &f, false, false).is_err(), "but a browser's log-in form needs the token");
        assert!(check(&r, &f, false, true).is_err(), "a browser form always needs the token");
        let (r, f) = post(&[("Origin", "http://evil.example")], "");
        assert!(check(&r, &f, true, true).is_err(), "cross-site API calls from a browser are refused too");
    }

    #[test]
    fn only_a_well_formed_bearer_lifts_the_checks() {
        // A proxy in front adds Basic credentials to every request, a forged form's too.
        let basic = ("Authorization", "Basic dXNlcjpwYXNz");
        let (r, f) = post(&[basic, ("Sec-Fetch-Site", "cross-site")], "username=a&password=b");
        assert_eq!(check(&r, &f, true, false), Err(Failure::http(HttpError::CsrfRejected)));
        assert!(check(&r, &f, false, false).is_err());
        // With no origin headers at all (an old browser), a browser's log-in still needs the token.
        let (r, f) = post(&[basic], "username=a&password=b");
        assert!(check(&r, &f, false, false).is_err());
        let (r, f) = post(&[basic, ("Cookie", &cookies())], &format!("csrf={TOKEN}"));
        assert!(check(&r, &f, false, true).is_ok(), "with the token it is an ordinary form post");
        for not_a_token in ["Bearer", "Bearer <x>", "Bearerabc"] {
            let (r, f) = post(&[("Authorization", not_a_token), ("Cookie", &cookies())], "");
            assert!(check(&r, &f, true, true).is_err(), "{not_a_token:?}");
        }
        let (r, f) = post(&[("Authorization", "Bearer abc"), ("Sec-Fetch-Site", "cross-site")], "");
        assert!(check(&r, &f, true, true).is_ok(), "a Bearer token is no ambient credential");
    }

    #[test]
    fn a_rotated_token_is_new_and_has_the_cookie_attributes() {
        let cookie = rotated_cookie(false);
        let token = cookie.strip_prefix("um_csrf=").and_then(|c| c.split(';').next()).unwrap();
        assert!(is_token(token) && token != TOKEN);
        assert_ne!(rotated_cookie(false), cookie);
        assert!(cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax"));
    }

    #[test]
    fn pages_reuse_a_valid_token_and_replace_junk() {
        let head = Head::for_tests("GET", "/", &[("Cookie", &cookies())]);
        let r = Request::new(head, Body::Complete(Vec::new()), Ipv4Addr::LOCALHOST.into());
        assert_eq!(page_token(&r, false), (TOKEN.to_owned(), None));
        let head = Head::for_tests("GET", "/", &[("Cookie", "um_csrf=junk")]);
        let r = Request::new(head, Body::Complete(Vec::new()), Ipv4Addr::LOCALHOST.into());
        let (token, cookie) = page_token(&r, true);
        assert!(is_token(&token));
        assert!(cookie.unwrap().ends_with("HttpOnly; SameSite=Lax; Secure"));
    }
}
