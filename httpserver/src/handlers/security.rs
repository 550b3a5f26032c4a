//! Account security: `GET /sessions`, `POST /sessions/revoke`,
//! `POST /sessions/revokeOthers`, `GET /loginHistory`, `POST /changePassword`,
//! `POST /deleteAccount`. Each is one RPC; tcpserver decides everything.
//! Browsers go back to `/home` with a notice, or see it again with the error.

use proto::{DeviceSession, LoginEntry, Message, Secret};
use serde_json::{Value, json};

use super::{Client, Success, credential, pages, respond, unexpected_reply};
use crate::app::App;
use crate::csrf;
use crate::error::Failure;
use crate::input::Fields;
use crate::request::Request;
use crate::response::Response;
use crate::session_cookie;

/// Attempts `GET /loginHistory` returns: the newest hundred.
pub const HISTORY_LEN: u16 = 100;

/// `GET /sessions`: `data.sessions`.
pub fn list(app: &App, request: &Request) -> Response {
    read(
        app,
        request,
        |token| Message::ListSessions { token },
        |reply| match reply {
            Message::Sessions(sessions) => {
                Ok(json!({ "sessions": sessions.iter().map(session_json).collect::<Vec<_>>() }))
            }
            _ => Err(unexpected_reply()),
        },
    )
}

/// `GET /loginHistory`: `data.logins`, newest first.
pub fn history(app: &App, request: &Request) -> Response {
    read(
        app,
        request,
        |token| Message::LoginHistory { token, limit: HISTORY_LEN },
        |reply| match reply {
            Message::History(logins) => {
                Ok(json!({ "logins": logins.iter().map(login_json).collect::<Vec<_>>() }))
            }
            _ => Err(unexpected_reply()),
        },
    )
}

/// `POST /sessions/revoke`: field `id`.
pub fn revoke(app: &App, request: &Request) -> Response {
    change(app, request, "revoked", |token, fields| {
        Ok(Message::RevokeSession { token, id: fields.required("id")?.to_owned() })
    })
}

/// `POST /sessions/revokeOthers`.
pub fn revoke_others(app: &App, request: &Request) -> Response {
    change(app, request, "others", |token, _| Ok(Message::RevokeOtherSessions { token }))
}

/// `POST /changePassword`: fields `password` (the current one) and `new_password`.
pub fn change_password(app: &App, request: &Request) -> Response {
    change(app, request, "password", |token, fields| {
        Ok(Message::ChangePassword {
            token,
            password: Secret::new(fields.required("password")?),
            new_password: Secret::new(fields.required("new_password")?),
            client: Some(request.peer),
        })
    })
}

/// `POST /deleteAccount`: fields `password` and `confirm` (the username, typed).
/// Browsers go to the log-in page without their session cookie.
pub fn delete_account(app: &App, request: &Request) -> Response {
    let client = Client::of(&request.head);
    let clear = session_cookie::clear_session(app.config.secure_cookies);
    let outcome = Fields::from_body(request).and_then(|fields| {
        csrf::check(request, &fields, client.is_api(), true)?;
        let token = credential(request)?.token().clone();
        let message = Message::DeleteAccount {
            token,
            password: Secret::new(fields.required("password")?),
            confirm: fields.required("confirm")?.to_owned(),
            client: Some(request.peer),
        };
        match app.call(message)? {
            Message::AccountDeleted => Ok(Success {
                status: 200,
                data: json!({}),
                location: "/".to_owned(),
                cookies: vec![clear.clone()],
            }),
            _ => Err(unexpected_reply()),
        }
    });
    respond(client, outcome, |failure| pages::home_failure(app, request, failure))
}

/// A read: credential, one RPC, its data; browsers see `/home`.
fn read(
    app: &App,
    request: &Request,
    build: impl FnOnce(Secret) -> Message,
    shape: impl FnOnce(Message) -> Result<Value, Failure>,
) -> Response {
    let client = Client::of(&request.head);
    let outcome = credential(request).and_then(|credential| {
        let data = shape(app.call(build(credential.token().clone()))?)?;
        Ok(Success { status: 200, data, location: "/home".to_owned(), cookies: Vec::new() })
    });
    respond(client, outcome, |failure| pages::home_failure(app, request, failure))
}

/// A change: fields, CSRF, credential, one RPC; browsers return to
/// `/home?saved=<what>` or see home with the error.
fn change(
    app: &App,
    request: &Request,
    what: &str,
    build: impl FnOnce(Secret, &Fields) -> Result<Message, Failure>,
) -> Response {
    let client = Client::of(&request.head);
    let outcome = Fields::from_body(request).and_then(|fields| {
        csrf::check(request, &fields, client.is_api(), true)?;
        let token = credential(request)?.token().clone();
        let data = match app.call(build(token, &fields)?)? {
            Message::SessionRevoked => json!({}),
            Message::OthersRevoked { ended } | Message::PasswordChanged { ended } => {
                json!({ "ended": ended })
            }
            _ => return Err(unexpected_reply()),
        };
        Ok(Success { status: 200, data, location: format!("/home?saved={what}"), cookies: Vec::new() })
    });
    respond(client, outcome, |failure| pages::home_failure(app, request, failure))
}

/// A device as API clients see it.
pub fn session_json(s: &DeviceSession) -> Value {
    json!({
        "id": s.id,
        "browser": s.browser,
        "os": s.os,
        "ip": s.ip,
        "created": s.created,
        "last_used": s.last_used,
        "current": s.current,
    })
}

/// A log-in attempt as API clients see it.
pub fn login_json(l: &LoginEntry) -> Value {
    json!({
        "time": l.time,
        "ip": l.ip,
        "browser": l.browser,
        "os": l.os,
        "method": l.method,
        "outcome": l.outcome,
        "new_device": l.new_device,
        "suspicious": l.suspicious,
    })
}
