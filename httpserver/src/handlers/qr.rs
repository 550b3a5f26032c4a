//! Scan-to-log-in: `POST /qr/new`, `GET /qr/image`, `GET /qr/wait`,
//! `GET /qr/<key>`, `POST /qr/approve`, `POST /qr/deny`.
//!
//! The desktop's log-in page shows a code (made by [`create`]) and holds
//! `GET /qr/wait` open, a long poll over the RPC connections kept for them
//! ([`App::call_parked`]); the binding cookie [`BINDING_COOKIE`], which only
//! that browser holds, is what lets the wait turn an approved code into a
//! session. The phone, logged in, opens `/qr/<key>`, sees what it is about
//! to approve, and posts Approve or Deny (CSRF-checked like every form, or
//! with `Authorization: Bearer` from an app). All the rules are tcpserver's.

use proto::{Message, QrState, Secret};
use serde_json::json;

use super::{Client, Success, credential, failure, respond, unexpected_reply};
use crate::app::{App, Parked};
use crate::csrf;
use crate::error::{Failure, HttpError};
use crate::input::Fields;
use crate::qr_image;
use crate::request::Request;
use crate::response::{Response, with_retry_after};
use crate::session_cookie;
use crate::templates::{AlertKind, Html, Page, alert};

/// The cookie that binds a code to the desktop browser that showed it: the
/// code's second secret. `HttpOnly` (no script reads it), `SameSite=Strict`
/// and `Path=/qr`: only this site's own requests to `/qr/...` carry it.
pub const BINDING_COOKIE: &str = "um_qr";

/// Where the phone's page of a code is.
pub const PHONE_PATH: &str = "/qr/";

/// Length of a code's key (64 hex digits); anything else names no code.
const KEY_LEN: usize = 64;

/// True for a well-formed key (64 lowercase hex digits).
pub fn is_key(key: &str) -> bool {
    key.len() == KEY_LEN && key.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The path of the phone's page for a key, if `path` is one: what a log-in
/// may send the browser back to.
pub fn phone_page_path(path: &str) -> Option<&str> {
    path.strip_prefix(PHONE_PATH).filter(|key| is_key(key)).map(|_| path)
}

/// A new code for this browser: its key, the binding cookie, and its lifetime.
///
/// # Errors
///
/// tcpserver's refusal (a creation throttle) or a transport failure.
pub fn create(app: &App, request: &Request) -> Result<(Secret, String, u32), Failure> {
    let user_agent = request.header("user-agent").unwrap_or_default().to_owned();
    let reply = app.call(Message::QrCreate { user_agent, client: Some(request.peer) })?;
    let Message::QrCreated { key, binding, expires_in_secs } = reply else {
        return Err(unexpected_reply());
    };
    let secure = if app.config.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{BINDING_COOKIE}={}; Max-Age={expires_in_secs}; Path=/qr; HttpOnly; SameSite=Strict{secure}",
        binding.expose()
    );
    Ok((key, cookie, expires_in_secs))
}

fn scheme(app: &App) -> &'static str {
    if app.config.secure_cookies { "https" } else { "http" }
}

/// `POST /qr/new`: a fresh code (the desktop page's script asks for one
/// when its code expired). API data: `key`, `url` (what the image encodes),
/// `expires_in`, `image_url`; sets the binding cookie.
pub fn new_code(app: &App, request: &Request) -> Response {
    let client = Client::of(&request.head);
    let outcome = Fields::from_body(request).and_then(|fields| {
        csrf::check(request, &fields, client.is_api(), false)?;
        let (key, cookie, expires_in) = create(app, request)?;
        let host = request.header("host").unwrap_or_default();
        let url = qr_image::phone_url(scheme(app), host, key.expose());
        Ok(Success {
            status: 201,
            data: json!({
                "key": key.expose(),
                "url": url,
                "expires_in": expires_in,
                "image_url": format!("/qr/image?key={}", key.expose()),
            }),
            location: "/".to_owned(),
            cookies: vec![cookie],
        })
    });
    respond(client, outcome, |f| failure(app, client, &f))
}

/// `GET /qr/image?key=...`: the SVG image of a code, for the site in `Host`.
pub fn image(app: &App, request: &Request) -> Response {
    let query = Fields::from_query(request).unwrap_or_default();
    let host = request.header("host").unwrap_or_default();
    let image = query
        .text("key")
        .filter(|key| is_key(key))
        .and_then(|key| qr_image::phone_url(scheme(app), host, key))
        .and_then(|url| qr_image::svg(&url));
    match image {
        Some(svg) => {
            Response::new(200).header("Cache-Control", "no-store").body("image/svg+xml", svg.into_bytes())
        }
        None => failure(app, Client::of(&request.head), &Failure::http(HttpError::NotFound)),
    }
}

/// The API's name of a state: a consumed code can do nothing more, so it is
/// `expired` to the desktop.
fn state_name(state: QrState) -> &'static str {
    match state {
        QrState::Consumed => QrState::Expired.name(),
        other => other.name(),
    }
}

/// `GET /qr/wait?key=...&seen=pending|scanned`: for API clients (the page's
/// script) a long poll, answered when the code leaves `seen` or after
/// `--qr-wait-ms`, with `state` and, once scanned, the scanner's `nickname`
/// and `avatar_url`. On `confirmed` the session cookie is set (only the
/// browser holding the binding cookie gets there). A browser without script
/// follows the page's link here: the code is checked once, and it goes home
/// or back to the log-in page with the code and a word on where it stands.
pub fn wait(app: &App, request: &Request) -> Response {
    let client = Client::of(&request.head);
    let query = Fields::from_query(request).unwrap_or_default();
    let Some(key) = query.text("key").filter(|key| is_key(key)).map(str::to_owned) else {
        return failure(app, client, &Failure::rejected(proto::ErrorCode::QrExpired, ""));
    };
    let seen = match query.text("seen") {
        Some("scanned") => QrState::Scanned,
        _ => QrState::Pending,
    };
    let binding = session_cookie::cookie(request, BINDING_COOKIE).unwrap_or_default();
    let wait_ms =
        if client.is_api() { u32::try_from(app.config.qr_wait.as_millis()).unwrap_or(u32::MAX) } else { 0 };
    let message = Message::QrWait {
        key: Secret::new(key.as_str()),
        binding: Secret::new(binding),
        seen,
        wait_ms,
        client: Some(request.peer),
    };
    let reply = match app.call_parked(message, request.client_link) {
        Ok(Parked::Answered(Message::QrStatus { state, nickname, avatar, token })) => {
            Ok((state, nickname, avatar, token))
        }
        Ok(Parked::Answered(_)) => Err(unexpected_reply()),
        Ok(Parked::ClientGone) => return Response::client_gone(),
        Err(f) => Err(f),
    };
    let secure = app.config.secure_cookies;
    match (client, reply) {
        (_, Err(f)) if client.is_api() => Response::json_problem(&f.problem()),
        (_, Err(f)) => super::pages::login_with_code(app, request, &key, Some(&f), None),
        (_, Ok((state, nickname, avatar, token))) => {
            let logged_in = token.as_ref().map(|token| {
                [
                    session_cookie::set_session(token, secure),
                    csrf::rotated_cookie(secure),
                    format!("{BINDING_COOKIE}=; Max-Age=0; Path=/qr; HttpOnly; SameSite=Strict"),
                ]
            });
            let response = if client.is_api() {
                let data = json!({
                    "state": state_name(if logged_in.is_some() { QrState::Confirmed } else { state }),
                    "nickname": nickname,
                    "avatar_url": avatar.map(|name| format!("/static/avatars/{name}")),
                });
                Response::json_ok(200, &data)
            } else if logged_in.is_some() {
                Response::redirect(303, "/home")
            } else {
                let word = match state {
                    QrState::Denied => "The log-in was denied on the phone.",
                    QrState::Pending => "The code has not been scanned yet.",
                    QrState::Scanned => "Scanned: approve on your phone, then continue.",
                    _ => "The code has expired. Here is a new one.",
                };
                let notice = alert(AlertKind::Notice, word);
                return match state {
                    QrState::Pending | QrState::Scanned => {
                        super::pages::login_with_code(app, request, &key, None, Some(notice))
                    }
                    _ => super::pages::login_with_notice(app, request, notice),
                };
            };
            logged_in.into_iter().flatten().fold(response, |r, cookie| r.header("Set-Cookie", cookie))
        }
    }
}

/// `GET /qr/<key>`: the phone's page. Without a session, the log-in page,
/// which comes back here after the log-in. With one, the code is marked
/// scanned and the page says what would be approved: the desktop's browser
/// and system, its address, when the code was made, and a warning. API
/// clients (an app, with `Authorization: Bearer`) get the same as JSON.
pub fn phone_page(app: &App, request: &Request) -> Response {
    let client = Client::of(&request.head);
    let key = request.path().strip_prefix(PHONE_PATH).unwrap_or_default();
    if !is_key(key) {
        return failure(app, client, &Failure::http(HttpError::NotFound));
    }
    let Some(credential) = session_cookie::credential(request) else {
        if client.is_api() {
            return failure(app, client, &Failure::rejected(proto::ErrorCode::Unauthenticated, ""));
        }
        return Response::redirect(302, format!("/?next={PHONE_PATH}{key}"));
    };
    // Another site's link must not scan a code in the visitor's name (and
    // show the visitor's nickname to whoever made it): a camera app's or a
    // typed URL has no `Sec-Fetch-Site` of another site.
    if request.header("sec-fetch-site").is_some_and(|site| site.eq_ignore_ascii_case("cross-site")) {
        let refused = Failure::http_because(
            HttpError::CsrfRejected,
            "Open this page by scanning the code with your phone's camera.",
        );
        return result_page(app, request, "Scan the code to continue", &refused);
    }
    let reply = app.call(Message::QrScan { token: credential.token().clone(), key: Secret::new(key) });
    let (user_agent, ip, created) = match reply {
        Ok(Message::QrDetails { user_agent, ip, created_unix, .. }) => (user_agent, ip, created_unix),
        Ok(_) => return failure(app, client, &unexpected_reply()),
        Err(f) if f.is_unauthenticated() && !client.is_api() => {
            return Response::redirect(302, format!("/?next={PHONE_PATH}{key}"))
                .header("Set-Cookie", session_cookie::clear_session(app.config.secure_cookies));
        }
        Err(f) if client.is_api() => return Response::json_problem(&f.problem()),
        Err(f) => return result_page(app, request, "This code cannot be used", &f),
    };
    let (browser, os) = crate::user_agent::describe(&user_agent);
    let created = utc_time(created);
    if client.is_api() {
        let data = json!({
            "browser": browser, "os": os, "user_agent": user_agent, "ip": ip, "created": created,
            "state": QrState::Scanned.name(),
        });
        return Response::json_ok(200, &data);
    }
    let ip = if ip.is_empty() { "unknown".to_owned() } else { ip };
    let values = [
        ("message", &Html::default()),
        ("browser", &Html::text(browser)),
        ("os", &Html::text(os)),
        ("ip", &Html::text(&ip)),
        ("created", &Html::text(&created)),
        ("key", &Html::text(key)),
    ];
    super::pages::csrf_page(app, request, 200, Page::QrApprove, "Approve log-in", &values)
}

/// `POST /qr/approve`: the phone approves the code `key`.
pub fn approve(app: &App, request: &Request) -> Response {
    decide(app, request, true)
}

/// `POST /qr/deny`: the phone refuses the code `key`.
pub fn deny(app: &App, request: &Request) -> Response {
    decide(app, request, false)
}

fn decide(app: &App, request: &Request, approve: bool) -> Response {
    let client = Client::of(&request.head);
    let outcome = Fields::from_body(request).and_then(|fields| {
        csrf::check(request, &fields, client.is_api(), true)?;
        let token = credential(request)?.token().clone();
        let key = Secret::new(fields.required("key")?);
        match app.call(Message::QrDecide { token, key, approve, client: Some(request.peer) })? {
            Message::QrDecided { state } => Ok(state),
            _ => Err(unexpected_reply()),
        }
    });
    match (client, outcome) {
        (Client::Api, Ok(state)) => Response::json_ok(200, &json!({ "state": state.name() })),
        (Client::Api, Err(f)) => Response::json_problem(&f.problem()),
        (Client::Browser, Ok(state)) => {
            let (heading, message) = match state {
                QrState::Confirmed => ("Approved", "You are being logged in on the other screen."),
                _ => ("Denied", "The other screen was not logged in."),
            };
            let values = [("heading", &Html::text(heading)), ("message", &Html::text(message))];
            super::pages::csrf_page(app, request, 200, Page::QrResult, heading, &values)
        }
        (Client::Browser, Err(f)) if f.is_unauthenticated() => Response::redirect(303, "/"),
        (Client::Browser, Err(f)) => result_page(app, request, "This code cannot be used", &f),
    }
}

/// Unix seconds as `2026-12-01 09:41 UTC`.
fn utc_time(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let (year, month, day) = hostsupport::calendar::civil_from_days(days);
    let secs = unix % 86_400;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", secs / 3600, secs / 60 % 60)
}

/// The phone's page about a code it cannot use, with the failure's status.
fn result_page(app: &App, request: &Request, heading: &str, failure: &Failure) -> Response {
    let problem = failure.problem();
    let values = [("heading", &Html::text(heading)), ("message", &Html::text(&problem.message))];
    let response = super::pages::csrf_page(app, request, problem.status, Page::QrResult, heading, &values);
    with_retry_after(response, &problem)
}

/// The login page's panel for a new code, with the cookie to set; a word
/// instead when no code can be made now (the password form works anyway).
pub fn panel(app: &App, request: &Request) -> (Html, Option<String>) {
    match create(app, request) {
        Ok((key, cookie, expires_in)) => (crate::templates::qr_panel(key.expose(), expires_in), Some(cookie)),
        Err(_) => (alert(AlertKind::Notice, "Log-in with a phone is not available right now."), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_shown_in_utc() {
        assert_eq!(utc_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_time(1_796_117_400), "2026-12-01 09:30 UTC");
    }

    #[test]
    fn only_well_formed_keys_name_a_phone_page() {
        let key = "0123456789abcdef".repeat(4);
        assert_eq!(phone_page_path(&format!("/qr/{key}")), Some(format!("/qr/{key}").as_str()));
        for bad in ["/qr/", "/qr/abc", "/home", "//evil.example/qr", &format!("/qr/{}", key.to_uppercase())] {
            assert_eq!(phone_page_path(bad), None, "{bad}");
        }
    }
}
