//! The endpoints, one file per group, and the pieces they share: who is asking
//! ([`Client`]), what a success looks like to each kind of client ([`Success`],
//! [`respond`]), and how a profile is shown as JSON.
//!
//! Every state-changing handler has the same shape: decode the fields, check
//! CSRF, find the credential, make one RPC, and hand the outcome to [`respond`],
//! which answers JSON to API clients and a redirect or a page to browsers.

pub mod account;
pub mod avatar;
pub mod health;
pub mod openapi;
pub mod pages;
pub mod profile;
pub mod qr;
pub mod ready;
pub mod security;

use proto::{ErrorCode, Message, Profile};
use serde_json::{Value, json};

use crate::app::App;
use crate::error::{Failure, HttpError};
use crate::request::{Head, Request};
use crate::response::Response;
use crate::session_cookie::{self, Authorization, Credential};

/// The kind of client, which decides the shape of every answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// Asked for JSON (`Accept: application/json`), sent JSON, or sent
    /// `Authorization: Bearer`: gets the JSON envelope. Another scheme (Basic
    /// credentials a proxy adds) says nothing about the client, which may well
    /// be a browser, and must not pass a browser's form for an API call.
    Api,
    /// Anything else: gets pages and redirects.
    Browser,
}

impl Client {
    /// Classifies a request by its head.
    pub fn of(head: &Head) -> Client {
        let accepts_json = head.header("accept").is_some_and(|a| a.contains("application/json"));
        let sends_json = head.header("content-type").is_some_and(|c| {
            c.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        let bearer = matches!(
            session_cookie::authorization(head),
            Authorization::Bearer(_) | Authorization::MalformedBearer
        );
        if accepts_json || sends_json || bearer { Client::Api } else { Client::Browser }
    }

    /// True for API clients.
    pub fn is_api(self) -> bool {
        self == Client::Api
    }
}

/// A successful operation, as both kinds of client see it.
#[derive(Debug)]
pub struct Success {
    /// Status for API clients.
    pub status: u16,
    /// `data` of the JSON envelope.
    pub data: Value,
    /// Where browsers are sent next (303 See Other).
    pub location: String,
    /// `Set-Cookie` values, for both kinds.
    pub cookies: Vec<String>,
}

/// Answers an operation's outcome: JSON for API clients; for browsers a redirect
/// on success and `on_browser_failure` otherwise.
pub fn respond(
    client: Client,
    outcome: Result<Success, Failure>,
    on_browser_failure: impl FnOnce(Failure) -> Response,
) -> Response {
    match outcome {
        Ok(success) => {
            let response = match client {
                Client::Api => Response::json_ok(success.status, &success.data),
                Client::Browser => Response::redirect(303, success.location),
            };
            success.cookies.into_iter().fold(response, |r, cookie| r.header("Set-Cookie", cookie))
        }
        Err(failure) if client.is_api() => Response::json_problem(&failure.problem()),
        Err(failure) => on_browser_failure(failure),
    }
}

/// A failure answered without a page of its own: JSON for API clients, the
/// error page for browsers.
pub fn failure(app: &App, client: Client, failure: &Failure) -> Response {
    match client {
        Client::Api => Response::json_problem(&failure.problem()),
        Client::Browser => pages::error_page(app, failure),
    }
}

/// The request's credential.
///
/// # Errors
///
/// 401 when there is none.
pub fn credential(request: &Request) -> Result<Credential, Failure> {
    session_cookie::credential(request).ok_or_else(|| Failure::rejected(ErrorCode::Unauthenticated, ""))
}

/// The profile in a reply that must carry one.
///
/// # Errors
///
/// 502 when the reply is of another kind.
pub fn expect_profile(reply: Message) -> Result<Profile, Failure> {
    match reply {
        Message::SignedUp(p)
        | Message::ProfileReply(p)
        | Message::NicknameUpdated(p)
        | Message::AvatarSet(p) => Ok(p),
        _ => Err(unexpected_reply()),
    }
}

/// The failure for a reply of the wrong kind.
pub fn unexpected_reply() -> Failure {
    Failure::http(HttpError::BadBackendReply)
}

/// Where a profile's picture is served, if it has one.
pub fn avatar_url(profile: &Profile) -> Option<String> {
    profile.avatar.as_ref().map(|name| format!("/static/avatars/{name}"))
}

/// A profile as API clients see it.
pub fn profile_json(profile: &Profile) -> Value {
    json!({
        "username": profile.username,
        "nickname": profile.nickname,
        "avatar_url": avatar_url(profile),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(headers: &[(&str, &str)]) -> Client {
        Client::of(&Head::for_tests("POST", "/login", headers))
    }

    #[test]
    fn api_clients_are_told_by_accept_json_body_or_bearer_and_not_by_basic() {
        assert_eq!(client(&[("Accept", "text/html, application/json")]), Client::Api);
        assert_eq!(client(&[("Content-Type", "application/json; charset=utf-8")]), Client::Api);
        assert_eq!(client(&[("Authorization", "Bearer abc")]), Client::Api);
        assert_eq!(client(&[("Authorization", "Bearer")]), Client::Api, "told why in JSON");
        assert_eq!(client(&[("Authorization", "Basic dXNlcjpwYXNz")]), Client::Browser);
        assert_eq!(client(&[("Content-Type", "application/x-www-form-urlencoded")]), Client::Browser);
    }
}
