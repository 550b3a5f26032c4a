//! Which handler serves which request: the path in one table of exact routes
//! ([`EXACT_ROUTES`], which also names the metrics' endpoints), else by
//! prefix; then the method.
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

/// A route served at one exact path.
#[derive(Debug)]
pub struct Route {
    /// The path, which is also the route's endpoint label.
    pub path: &'static str,
    allowed: Allowed,
    handler: Handler,
}

const fn exact(path: &'static str, allowed: Allowed, handler: Handler) -> Route {
    Route { path, allowed, handler }
}

/// Every route with an exact path. The metrics' endpoints are these paths and
/// [`PREFIX_ENDPOINTS`] ([`crate::metrics::ENDPOINTS`]), so a route added here
/// is counted under its own name.
pub const EXACT_ROUTES: [Route; 24] = [
    exact("/", Allowed::GetHead, pages::login),
    exact("/signup", Allowed::GetHead, pages::signup),
    exact("/home", Allowed::GetHead, pages::home),
    exact("/healthz", Allowed::GetHead, health::healthz),
    exact("/readyz", Allowed::GetHead, ready::readyz),
    exact("/metrics", Allowed::GetHead, health::metrics),
    exact("/openapi.json", Allowed::GetHead, openapi::document),
    exact("/profile", Allowed::GetHead, profile::get),
    exact("/signUp", Allowed::Post, account::sign_up),
    exact("/login", Allowed::Post, account::login),
    exact("/logout", Allowed::Post, account::logout),
    exact("/updateNickName", Allowed::Post, profile::update_nickname),
    exact(UPLOAD_PATH, Allowed::Post, profile::upload_picture),
    exact("/sessions", Allowed::GetHead, security::list),
    exact("/sessions/revoke", Allowed::Post, security::revoke),
    exact("/sessions/revokeOthers", Allowed::Post, security::revoke_others),
    exact("/loginHistory", Allowed::GetHead, security::history),
    exact("/changePassword", Allowed::Post, security::change_password),
    exact("/deleteAccount", Allowed::Post, security::delete_account),
    exact("/qr/new", Allowed::Post, qr::new_code),
    exact("/qr/image", Allowed::GetHead, qr::image),
    exact("/qr/wait", Allowed::GetHead, qr::wait),
    exact("/qr/approve", Allowed::Post, qr::approve),
    exact("/qr/deny", Allowed::Post, qr::deny),
];

/// The one endpoint label of every phone page `/qr/<key>` (the key is a
/// secret and a path anyone may choose: never a label).
const PHONE_PAGE_ENDPOINT: &str = "/qr/{key}";

/// The prefix of every other static file.
const STATIC_PREFIX: &str = "/static/";

/// The endpoint labels of the routes served by prefix: every phone page,
/// every picture, every other static file.
pub const PREFIX_ENDPOINTS: [&str; 3] = [PHONE_PAGE_ENDPOINT, avatar::PREFIX, STATIC_PREFIX];

fn exact_route(path: &str) -> Option<&'static Route> {
    static ROUTES: [Route; EXACT_ROUTES.len()] = EXACT_ROUTES;
    ROUTES.iter().find(|route| route.path == path)
}

/// The endpoint a path is served by, as the metrics and the access log name
/// it: one of [`crate::metrics::ENDPOINTS`], never the raw path.
pub fn endpoint(path: &str) -> &'static str {
    if let Some(route) = exact_route(path) {
        return route.path;
    }
    if path.starts_with(avatar::PREFIX) {
        avatar::PREFIX
    } else if path.starts_with(STATIC_PREFIX) {
        STATIC_PREFIX
    } else if path.starts_with(qr::PHONE_PATH) {
        // Every other `/qr/...` is served by the phone page (a 404 when it is no key).
        PHONE_PAGE_ENDPOINT
    } else {
        "unmatched"
    }
}

/// Serves one request.
pub fn route(app: &App, request: &Request) -> Response {
    let path = request.path();
    let (allowed, handler): (Allowed, Handler) = match exact_route(path) {
        Some(route) => (route.allowed, route.handler),
        None if path.starts_with(qr::PHONE_PATH) => (Allowed::GetHead, qr::phone_page),
        None if path.starts_with(avatar::PREFIX) => (Allowed::GetHead, avatar::serve),
        None if path.starts_with(STATIC_PREFIX) => (Allowed::GetHead, static_file),
        None => {
            return handlers::failure(app, Client::of(&request.head), &Failure::http(HttpError::NotFound));
        }
    };
    if !allowed.permits(request.head.method) {
        let failure = Failure::http(HttpError::MethodNotAllowed);
        return handlers::failure(app, Client::of(&request.head), &failure).header("Allow", allowed.header());
    }
    handler(app, request)
}

fn static_file(app: &App, request: &Request) -> Response {
    let relative = request.path().strip_prefix(STATIC_PREFIX).unwrap_or_default();
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
