//! `GET /profile`, `POST /updateNickName`, `POST /uploadProfilePic`: reading and
//! changing the session user's profile. Each takes an optional `username` that
//! tcpserver checks against the session (403 when it names someone else).

use proto::{Message, Secret};

use super::{Client, Success, credential, expect_profile, pages, profile_json, respond};
use crate::app::App;
use crate::csrf;
use crate::error::{Failure, HttpError};
use crate::input::{Fields, image_too_large};
use crate::request::Request;
use crate::response::Response;

/// `GET /profile[?username=...]`: the profile as JSON; browsers are sent to `/home`.
pub fn get(app: &App, request: &Request) -> Response {
    let client = Client::of(&request.head);
    let outcome = Fields::from_query(request).and_then(|fields| {
        let token = credential(request)?.token().clone();
        let username = fields.text("username").map(str::to_owned);
        let profile = expect_profile(app.call(Message::GetProfile { token, username })?)?;
        Ok(Success {
            status: 200,
            data: profile_json(&profile),
            location: "/home".to_owned(),
            cookies: Vec::new(),
        })
    });
    respond(client, outcome, |failure| pages::home_failure(app, request, failure))
}

/// `POST /updateNickName`: field `nickname`.
pub fn update_nickname(app: &App, request: &Request) -> Response {
    change(app, request, Fields::from_body, "nickname", |token, username, fields| {
        Ok(Message::UpdateNickname { token, username, nickname: fields.required("nickname")?.to_owned() })
    })
}

/// `POST /uploadProfilePic`: a multipart file field (`image`), or a raw body
/// with an `image/*` Content-Type. tcpserver checks that it really is a picture.
pub fn upload_picture(app: &App, request: &Request) -> Response {
    change(app, request, upload_fields, "picture", |token, username, fields| {
        Ok(Message::SetAvatar { token, username, image: fields.take_file()?.data })
    })
}

/// Decodes an upload; a body over the cap means the picture is too large.
fn upload_fields(request: &Request) -> Result<Fields, Failure> {
    Fields::from_body(request).map_err(|failure| match failure {
        Failure::Http(HttpError::BodyTooLarge, _) => image_too_large(),
        other => other,
    })
}

/// The shared flow of a profile change: decode, CSRF, credential, one RPC, answer.
/// Browsers return to `/home?saved=<what>` or see the home page with the error.
fn change(
    app: &App,
    request: &Request,
    decode: fn(&Request) -> Result<Fields, Failure>,
    what: &str,
    build: impl FnOnce(Secret, Option<String>, &mut Fields) -> Result<Message, Failure>,
) -> Response {
    let client = Client::of(&request.head);
    let outcome = decode(request).and_then(|mut fields| {
        csrf::check(request, &fields, client.is_api(), true)?;
        let token = credential(request)?.token().clone();
        let username = fields.text("username").map(str::to_owned);
        let message = build(token, username, &mut fields)?;
        let profile = expect_profile(app.call(message)?)?;
        Ok(Success {
            status: 200,
            data: profile_json(&profile),
            location: format!("/home?saved={what}"),
            cookies: Vec::new(),
        })
    });
    respond(client, outcome, |failure| pages::home_failure(app, request, failure))
}
