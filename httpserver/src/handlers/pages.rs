//! The pages a person uses: log-in at `/`, sign-up at `/signup`, home at `/home`,
//! and the error page. Each form carries the CSRF token; every value shown goes
//! through [`Html::text`]. A failed form post shows the same page again with the
//! error in words and the HTTP status of the failure.

use proto::{Message, Secret};

use super::{avatar_url, expect_profile, qr};
use crate::app::App;
use crate::csrf;
use crate::error::{Failure, HttpError};
use crate::input::Fields;
use crate::request::Request;
use crate::response::{Response, with_retry_after};
use crate::session_cookie::{self, Credential};
use crate::templates::{AlertKind, Html, Page, alert, avatar, security};

/// Log-in attempts the home page shows: the last ten.
pub const HOME_HISTORY_LEN: u16 = 10;

/// `GET /`: the log-in form with a scan-to-log-in code beside it, or home
/// for a browser that has a session cookie. After sign-up
/// (`/?created=<name>`) it greets the new user with the name filled in; with
/// `?next=/qr/<key>` (a phone sent to log in first) it goes back there after
/// the log-in, and shows no code of its own.
pub fn login(app: &App, request: &Request) -> Response {
    let query = Fields::from_query(request).unwrap_or_default();
    let next = query.text("next").and_then(qr::phone_page_path);
    if matches!(session_cookie::credential(request), Some(Credential::Cookie(_))) {
        // If the session has ended, /home clears the cookie and sends the browser back.
        return Response::redirect(302, next.unwrap_or("/home").to_owned());
    }
    let created = query.text("created");
    let notice = created.map(|_| alert(AlertKind::Notice, "Your account is ready. Log in to continue."));
    let (panel, cookie) = match next {
        Some(_) => (Html::default(), None),
        None => qr::panel(app, request),
    };
    let form = LoginForm { failure: None, notice, username: created.unwrap_or_default(), next, qr: panel };
    let response = render_login(app, request, form);
    match cookie {
        Some(cookie) => response.header("Set-Cookie", cookie),
        None => response,
    }
}

/// The log-in page with a fresh code and `notice` (the desktop after its
/// code was denied or expired, without script).
pub fn login_with_notice(app: &App, request: &Request, notice: Html) -> Response {
    let (panel, cookie) = qr::panel(app, request);
    let form = LoginForm { failure: None, notice: Some(notice), username: "", next: None, qr: panel };
    let response = render_login(app, request, form);
    match cookie {
        Some(cookie) => response.header("Set-Cookie", cookie),
        None => response,
    }
}

/// The log-in page showing the code `key` again (its binding cookie is
/// already set), with a failure or a notice.
pub fn login_with_code(
    app: &App,
    request: &Request,
    key: &str,
    failure: Option<&Failure>,
    notice: Option<Html>,
) -> Response {
    let qr = crate::templates::qr_panel(key, 0);
    render_login(app, request, LoginForm { failure, notice, username: "", next: None, qr })
}

/// `GET /signup`: the sign-up form.
pub fn signup(app: &App, request: &Request) -> Response {
    page(app, request, 200, Page::Signup, "Sign up", &[("message", &Html::default())])
}

/// `GET /home`: the session user's profile and forms; without a session, back to `/`.
pub fn home(app: &App, request: &Request) -> Response {
    let Some(Credential::Cookie(token)) = session_cookie::credential(request) else {
        return Response::redirect(302, "/");
    };
    let query = Fields::from_query(request).unwrap_or_default();
    let notice = match query.text("saved") {
        Some("nickname") => Some(alert(AlertKind::Notice, "Your nickname is saved.")),
        Some("picture") => Some(alert(AlertKind::Notice, "Your new picture is saved.")),
        Some("revoked") => Some(alert(AlertKind::Notice, "That device is signed out.")),
        Some("others") => Some(alert(AlertKind::Notice, "Every other device is signed out.")),
        Some("password") => {
            Some(alert(AlertKind::Notice, "Your password is changed; every other device is signed out."))
        }
        _ => None,
    };
    render_home(app, request, &token, 200, notice)
}

/// The log-in form with an optional failure or notice and the username to
/// refill (after a failed log-in: no new code; the `next` page is kept).
pub fn login_form(
    app: &App,
    request: &Request,
    failure: Option<&Failure>,
    notice: Option<Html>,
    username: &str,
) -> Response {
    let fields = Fields::from_body(request).unwrap_or_default();
    let next = fields.text("next").and_then(qr::phone_page_path);
    render_login(app, request, LoginForm { failure, notice, username, next, qr: Html::default() })
}

/// What the log-in page shows besides the form.
struct LoginForm<'a> {
    failure: Option<&'a Failure>,
    notice: Option<Html>,
    username: &'a str,
    /// Where a successful log-in goes instead of home (a phone's code page).
    next: Option<&'a str>,
    /// The scan-to-log-in panel, or nothing.
    qr: Html,
}

fn render_login(app: &App, request: &Request, form: LoginForm<'_>) -> Response {
    let problem = form.failure.map(Failure::problem);
    let message = match &problem {
        Some(problem) => alert(AlertKind::Error, &problem.message),
        None => form.notice.unwrap_or_default(),
    };
    let status = problem.as_ref().map_or(200, |p| p.status);
    let response = page(
        app,
        request,
        status,
        Page::Login,
        "Log in",
        &[
            ("message", &message),
            ("username", &Html::text(form.username)),
            ("next", &Html::text(form.next.unwrap_or_default())),
            ("qr", &form.qr),
        ],
    );
    match &problem {
        Some(problem) => with_retry_after(response, problem),
        None => response,
    }
}

/// The sign-up form again, with the failure and the fields to refill (never the password).
pub fn signup_form(
    app: &App,
    request: &Request,
    failure: &Failure,
    username: &str,
    nickname: &str,
) -> Response {
    let problem = failure.problem();
    let values = [
        ("message", &alert(AlertKind::Error, &problem.message)),
        ("username", &Html::text(username)),
        ("nickname", &Html::text(nickname)),
    ];
    with_retry_after(page(app, request, problem.status, Page::Signup, "Sign up", &values), &problem)
}

/// After a failed profile change or read: log-in page when the session is gone,
/// the error page for a forged request, otherwise home with the error shown.
pub fn home_failure(app: &App, request: &Request, failure: Failure) -> Response {
    if failure.is_unauthenticated() {
        return Response::redirect(303, "/")
            .header("Set-Cookie", session_cookie::clear_session(app.config.secure_cookies));
    }
    let Some(Credential::Cookie(token)) = session_cookie::credential(request) else {
        return error_page(app, &failure);
    };
    if matches!(failure, Failure::Http(HttpError::CsrfRejected, _)) {
        return error_page(app, &failure);
    }
    let problem = failure.problem();
    let response =
        render_home(app, request, &token, problem.status, Some(alert(AlertKind::Error, &problem.message)));
    with_retry_after(response, &problem)
}

/// The home page for `token`'s user, with `status` and an optional message.
fn render_home(app: &App, request: &Request, token: &Secret, status: u16, message: Option<Html>) -> Response {
    let reply = app.call(Message::GetProfile { token: token.clone(), username: None });
    let profile = match reply.and_then(expect_profile) {
        Ok(profile) => profile,
        Err(failure) if failure.is_unauthenticated() => {
            return Response::redirect(302, "/")
                .header("Set-Cookie", session_cookie::clear_session(app.config.secure_cookies));
        }
        Err(failure) => return error_page(app, &failure),
    };
    // The device list and history are shown when they can be read; the page
    // does not fail for them (MySQL away leaves the profile readable).
    let sessions = match app.call(Message::ListSessions { token: token.clone() }) {
        Ok(Message::Sessions(sessions)) => sessions,
        _ => Vec::new(),
    };
    let logins = match app.call(Message::LoginHistory { token: token.clone(), limit: HOME_HISTORY_LEN }) {
        Ok(Message::History(logins)) => logins,
        _ => Vec::new(),
    };
    let csrf = csrf::page_token(request, app.config.secure_cookies);
    let csrf_token = csrf.0.clone();
    let values = [
        ("message", &message.unwrap_or_default()),
        ("username", &Html::text(&profile.username)),
        ("nickname", &Html::text(&profile.nickname)),
        ("avatar", &avatar(avatar_url(&profile).as_deref(), &profile.nickname)),
        ("notices", &security::new_sign_ins(&logins, &sessions, &csrf_token)),
        ("devices", &security::devices(&sessions, &csrf_token)),
        ("history", &security::history(&logins)),
    ];
    page_with_token(app, csrf, status, Page::Home, &profile.nickname, &values)
}

/// A page about a failure that has no form to go back to.
pub fn error_page(app: &App, failure: &Failure) -> Response {
    let problem = failure.problem();
    let heading = match problem.status {
        404 => "Page not found",
        405 => "Not allowed here",
        403 => "Request refused",
        401 => "Please log in",
        500..=599 => "Service unavailable",
        _ => "Something is not right",
    };
    let values = [("heading", &Html::text(heading)), ("message", &Html::text(&problem.message))];
    let html = app.templates.page(Page::Error, heading, &values);
    with_retry_after(Response::html(problem.status, html), &problem)
}

/// Renders `template` in the layout with the CSRF token filled in, setting the
/// token cookie when the browser has none yet.
pub fn csrf_page(
    app: &App,
    request: &Request,
    status: u16,
    template: Page,
    title: &str,
    values: &[(&str, &Html)],
) -> Response {
    page(app, request, status, template, title, values)
}

fn page(
    app: &App,
    request: &Request,
    status: u16,
    template: Page,
    title: &str,
    values: &[(&str, &Html)],
) -> Response {
    page_with_token(
        app,
        csrf::page_token(request, app.config.secure_cookies),
        status,
        template,
        title,
        values,
    )
}

/// [`page`] with the CSRF token (and the cookie that sets it, if new) chosen
/// already, for a page whose fragments carry it too.
fn page_with_token(
    app: &App,
    (token, set_cookie): (String, Option<String>),
    status: u16,
    template: Page,
    title: &str,
    values: &[(&str, &Html)],
) -> Response {
    let csrf_value = Html::text(&token);
    let mut all: Vec<(&str, &Html)> = values.to_vec();
    all.push(("csrf", &csrf_value));
    let response = Response::html(status, app.templates.page(template, title, &all));
    match set_cookie {
        Some(cookie) => response.header("Set-Cookie", cookie),
        None => response,
    }
}
