//! Which handler serves which request: one `match` on the path, then the method.
//!
//! An unknown path is 404; a known path with the wrong method is 405 with an
//! `Allow` header. Pages and reads answer GET and HEAD; operations answer POST.

use crate::app::App;
use crate::error::{Failure, HttpError};
use crate::handlers::{self, Client, account, avatar, health, openapi, pages, profile, qr, ready, security};
use crate::input::image_too_large;
use crate::request::{MAX_BODY_LEN, MAX_UPLOAD_BODY_LEN, Method, Request};
use crate::response::Response;

type Handler = fn(&App, &Request) -> Response;

/// The methods a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    GetHead,
    Post,
}

impl Allowed {
    fn permits(self, method: Method) -> bool {
        match self {
            Allowed::GetHead => matches!(method, Method::Get | Method::Head),
            Allowed::Post => method == Method::Post,
        }
    }

    fn header(self) -> &'static str {
        match self {
            Allowed::GetHead => "GET, HEAD",
            Allowed::Post => "POST",
        }
    }
}

/// The path of the one endpoint that takes a large body.
pub const UPLOAD_PATH: &str = "/uploadProfilePic";

/// The body cap for a path: the upload's is large enough for a picture.
pub fn body_limit(path: &str) -> usize {
    if path == UPLOAD_PATH { MAX_UPLOAD_BODY_LEN } else { MAX_BODY_LEN }
}

/// What a body over [`body_limit`] is called at this path.
pub fn too_large(path: &str) -> Failure {
    if path == UPLOAD_PATH { image_too_large() } else { Failure::http(HttpError::BodyTooLarge) }
}

/// The endpoint a path is served by, as the metrics and the access log name
/// it: one of [`crate::metrics::ENDPOINTS`], never the raw path.
pub fn endpoint(path: &str) -> &'static str {
    if path.starts_with(avatar::PREFIX) {
        return avatar::PREFIX;
    }
    if path.starts_with("/static/") {
        return "/static/";
    }
    // The routes are the names that are paths; `unmatched` and `unread` are
    // not, and `/qr/{key}` is the pattern of the phone pages, never a path.
    let exact = crate::metrics::ENDPOINTS
        .iter()
        .find(|e| e.starts_with('/') && !e.contains('{') && **e == path)
        .copied();
    match exact {
        Some(route) => route,
        // Every other `/qr/...` is served by the phone page (a 404 when it is no key).
        None if path.starts_with(qr::PHONE_PATH) => PHONE_PAGE_ENDPOINT,
        None => "unmatched",
    }
}

/// The one endpoint label of every phone page `/qr/<key>`.
const PHONE_PAGE_ENDPOINT: &str = "/qr/{key}";

/// Serves one request.
pub fn route(app: &App, request: &Request) -> Response {
    let (allowed, handler): (Allowed, Handler) = match request.path() {
        "/" => (Allowed::GetHead, pages::login),
        "/signup" => (Allowed::GetHead, pages::signup),
        "/home" => (Allowed::GetHead, pages::home),
        "/healthz" => (Allowed::GetHead, health::healthz),
        "/metrics" => (Allowed::GetHead, health::metrics),
        "/readyz" => (Allowed::GetHead, ready::readyz),
        "/openapi.json" => (Allowed::GetHead, openapi::document),
        "/profile" => (Allowed::GetHead, profile::get),
        "/signUp" => (Allowed::Post, account::sign_up),
        "/login" => (Allowed::Post, account::login),
        "/logout" => (Allowed::Post, account::logout),
        "/updateNickName" => (Allowed::Post, profile::update_nickname),
        UPLOAD_PATH => (Allowed::Post, profile::upload_picture),
        "/sessions" => (Allowed::GetHead, security::list),
        "/sessions/revoke" => (Allowed::Post, security::revoke),
        "/sessions/revokeOthers" => (Allowed::Post, security::revoke_others),
        "/loginHistory" => (Allowed::GetHead, security::history),
        "/changePassword" => (Allowed::Post, security::change_password),
        "/deleteAccount" => (Allowed::Post, security::delete_account),
        "/qr/new" => (Allowed::Post, qr::new_code),
        "/qr/image" => (Allowed::GetHead, qr::image),
        "/qr/wait" => (Allowed::GetHead, qr::wait),
        "/qr/approve" => (Allowed::Post, qr::approve),
        "/qr/deny" => (Allowed::Post, qr::deny),
        path if path.starts_with(qr::PHONE_PATH) => (Allowed::GetHead, qr::phone_page),
        path if path.starts_with(avatar::PREFIX) => (Allowed::GetHead, avatar::serve),
        path if path.starts_with("/static/") => (Allowed::GetHead, static_file),
        _ => return handlers::failure(app, Client::of(&request.head), &Failure::http(HttpError::NotFound)),
    };
    if !allowed.permits(request.head.method) {
        let failure = Failure::http(HttpError::MethodNotAllowed);
        return handlers::failure(app, Client::of(&request.head), &failure).header("Allow", allowed.header());
    }
    handler(app, request)
}

fn static_file(app: &App, request: &Request) -> Response {
    let relative = request.path().strip_prefix("/static/").unwrap_or_default();
    app.statics
        .serve(relative)
        .unwrap_or_else(|failure| handlers::failure(app, Client::of(&request.head), &failure))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_routes_never_raw_paths() {
        assert_eq!(endpoint("/login"), "/login");
        assert_eq!(endpoint("/readyz"), "/readyz");
        assert_eq!(endpoint("/static/avatars/ab.png"), "/static/avatars/");
        assert_eq!(endpoint("/static/style.css"), "/static/");
        for other in ["/login/", "/LOGIN", "/a/b/c", "unread", "unmatched", "", "/qr", "/sessions/"] {
            assert_eq!(endpoint(other), "unmatched", "{other}");
        }
    }

    #[test]
    fn account_security_and_qr_routes_are_named_and_phone_pages_share_one_label() {
        for route in [
            "/sessions",
            "/sessions/revoke",
            "/sessions/revokeOthers",
            "/loginHistory",
            "/changePassword",
            "/deleteAccount",
            "/qr/new",
            "/qr/image",
            "/qr/wait",
            "/qr/approve",
            "/qr/deny",
        ] {
            assert_eq!(endpoint(route), route);
        }
        let key = "0123456789abcdef".repeat(4);
        for phone in
            [format!("/qr/{key}"), "/qr/not-a-key".to_owned(), "/qr/{key}".to_owned(), "/qr/".to_owned()]
        {
            assert_eq!(endpoint(&phone), "/qr/{key}", "{phone}");
        }
        assert!(crate::metrics::ENDPOINTS.contains(&PHONE_PAGE_ENDPOINT));
    }
}
