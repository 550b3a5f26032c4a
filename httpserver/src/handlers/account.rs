//! `POST /signUp`, `POST /login`, `POST /logout`: creating an account and opening
//! and closing sessions.

use proto::{IdempotencyKey, Message, Secret};
use serde_json::{Value, json};

use super::{Client, Success, credential, expect_profile, pages, profile_json, respond, unexpected_reply};
use crate::app::App;
use crate::csrf;
use crate::form;
use crate::input::Fields;
use crate::request::Request;
use crate::response::Response;
use crate::session_cookie;

/// `POST /signUp`: username, password, optional nickname. API clients get 201
/// and the new profile; browsers go to the log-in page with the name filled in.
///
/// The call carries a fresh random [`IdempotencyKey`], so that the balancer
/// may send it again when the tcpserver it went to dies with it in flight:
/// the copy that finds the account its first copy created is answered 201 as
/// the first would have been (`proto::idempotency`). A person who submits the
/// form twice makes two HTTP requests, two keys: the second is told the name
/// is taken.
pub fn sign_up(app: &App, request: &Request) -> Response {
    let client = Client::of(&request.head);
    let fields = Fields::from_body(request);
    let outcome = fields.as_ref().map_err(Clone::clone).and_then(|fields| {
        csrf::check(request, fields, client.is_api(), false)?;
        let reply = app.call(Message::SignUp {
            username: fields.required("username")?.to_owned(),
            password: Secret::new(fields.required("password")?),
            nickname: fields.text("nickname").map(str::to_owned),
            client: Some(request.peer),
            // ThreadRng: a CSPRNG seeded from the OS, 128 bits per request.
            key: IdempotencyKey(rand::random()),
        })?;
        let profile = expect_profile(reply)?;
        Ok(Success {
            status: 201,
            data: profile_json(&profile),
            location: format!("/?created={}", form::encode(&profile.username)),
            cookies: Vec::new(),
        })
    });
    respond(client, outcome, |failure| {
        let field = |name| fields.as_ref().ok().and_then(|f| f.text(name)).unwrap_or_default();
        pages::signup_form(app, request, &failure, field("username"), field("nickname"))
    })
}

/// `POST /login`: username and password. Sets the session cookie and a new
/// CSRF token; API clients also get the session token in the body, browsers
/// go to their home page.
pub fn login(app: &App, request: &Request) -> Response {
    let client = Client::of(&request.head);
    let fields = Fields::from_body(request);
    let outcome = fields.as_ref().map_err(Clone::clone).and_then(|fields| {
        csrf::check(request, fields, client.is_api(), false)?;
        let reply = app.call(Message::Login {
            username: fields.required("username")?.to_owned(),
            password: Secret::new(fields.required("password")?),
            client: Some(request.peer),
            user_agent: user_agent(request),
        })?;
        let Message::LoggedIn { token, profile } = reply else {
            return Err(unexpected_reply());
        };
        let mut data = profile_json(&profile);
        if let Value::Object(map) = &mut data {
            map.insert("token".to_owned(), json!(token.expose()));
        }
        let secure = app.config.secure_cookies;
        // A phone sent to log in before approving a code goes back to it.
        let location = fields.text("next").and_then(super::qr::phone_page_path).unwrap_or("/home");
        Ok(Success {
            status: 200,
            data,
            location: location.to_owned(),
            // A fresh CSRF token with the new session: one known before the
            // log-in (planted by another site, say) matches nothing after it.
            cookies: vec![session_cookie::set_session(&token, secure), csrf::rotated_cookie(secure)],
        })
    });
    respond(client, outcome, |failure| {
        let username = fields.as_ref().ok().and_then(|f| f.text("username")).unwrap_or_default();
        pages::login_form(app, request, Some(&failure), None, username)
    })
}

/// `POST /logout`: ends the session in tcpserver and deletes the cookie. A
/// browser whose session had already ended is simply sent to the log-in page.
pub fn logout(app: &App, request: &Request) -> Response {
    let client = Client::of(&request.head);
    let clear = session_cookie::clear_session(app.config.secure_cookies);
    let outcome = Fields::from_body(request).and_then(|fields| {
        csrf::check(request, &fields, client.is_api(), true)?;
        let token = credential(request)?.token().clone();
        match app.call(Message::Logout { token })? {
            Message::LoggedOut => Ok(Success {
                status: 200,
                data: json!({}),
                location: "/".to_owned(),
                cookies: vec![clear.clone()],
            }),
            _ => Err(unexpected_reply()),
        }
    });
    respond(client, outcome, |failure| {
        if failure.is_unauthenticated() {
            Response::redirect(303, "/").header("Set-Cookie", clear.clone())
        } else {
            pages::error_page(app, &failure)
        }
    })
}

/// The request's User-Agent, cut to [`proto::MAX_USER_AGENT_LEN`] bytes on a
/// character boundary (tcpserver reads only the product names from it).
pub fn user_agent(request: &Request) -> Option<String> {
    let value = request.head.header("user-agent")?;
    let mut end = value.len().min(proto::MAX_USER_AGENT_LEN);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Some(value[..end].to_owned())
}
