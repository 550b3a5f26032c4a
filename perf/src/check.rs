//! Judging each answer by what it says, not only by its status: a login must
//! come back with code 0, a token and the very user that logged in; a nickname
//! change must return the nickname that was sent.

use std::{borrow::Cow, fmt};

use serde::Deserialize;

/// What kind of request an answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /login`: the answer must carry a session token.
    Login,
    /// `GET /profile`.
    Profile,
    /// `POST /updateNickName`.
    Nickname,
}

/// What a correct answer to one request shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// The kind of request.
    pub kind: Kind,
    /// The username the answer's `data.username` must equal.
    pub username: String,
    /// For nickname changes: the nickname the answer must show.
    pub nickname: Option<String>,
}

/// Why a request counts as failed. Ordered for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// The connection could not be opened.
    Connect,
    /// The TCP handshake did not finish within the request timeout (a full
    /// listen queue drops SYNs, and the client retries after 1, 3, 7 s...).
    ConnectTimeout,
    /// No complete answer within the request timeout.
    Timeout,
    /// The server closed or reset the connection before a complete answer.
    Closed,
    /// The bytes were not a usable HTTP response.
    BadResponse,
    /// An HTTP status other than 200.
    Status(u16),
    /// Status 200, but a non-zero API `code`.
    Code(i64),
    /// The body is not the JSON envelope with the expected fields.
    BadBody,
    /// The answer is about another user than the one asked for.
    WrongUser,
    /// The nickname change answered with another nickname.
    WrongNickname,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect => f.write_str("connect"),
            Failure::ConnectTimeout => f.write_str("connect timeout"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Closed => f.write_str("closed"),
            Failure::BadResponse => f.write_str("bad response"),
            Failure::Status(n) => write!(f, "status {n}"),
            Failure::Code(n) => {
                let name = u16::try_from(*n).ok().and_then(proto::ErrorCode::from_u16);
                match name {
                    Some(code) => write!(f, "code {n} ({code:?})"),
                    None => write!(f, "code {n}"),
                }
            }
            Failure::BadBody => f.write_str("bad body"),
            Failure::WrongUser => f.write_str("mismatched user"),
            Failure::WrongNickname => f.write_str("mismatched nickname"),
        }
    }
}

/// The JSON envelope every API answer has: `{"code", "message", "data"}`.
#[derive(Deserialize)]
struct Envelope<'a> {
    code: i64,
    #[serde(borrow, default)]
    data: Option<Data<'a>>,
}

/// The fields of `data` that are checked; others are ignored.
#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow)]
    username: Cow<'a, str>,
    #[serde(borrow, default)]
    nickname: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
}

/// Checks one answer. On success returns the session token for logins.
///
/// # Errors
///
/// The [`Failure`] that makes the answer wrong.
pub fn check(status: u16, body: &[u8], expect: &Expect) -> Result<Option<String>, Failure> {
    if status != 200 {
        return Err(Failure::Status(status));
    }
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|_| Failure::BadBody)?;
    if envelope.code != 0 {
        return Err(Failure::Code(envelope.code));
    }
    let data = envelope.data.ok_or(Failure::BadBody)?;
    if data.username != expect.username {
        return Err(Failure::WrongUser);
    }
    if let Some(wanted) = &expect.nickname {
        if data.nickname.as_deref() != Some(wanted.as_str()) {
            return Err(Failure::WrongNickname);
        }
    }
    match expect.kind {
        Kind::Login => match data.token {
            Some(token) if !token.is_empty() => Ok(Some(token.into_owned())),
            _ => Err(Failure::BadBody),
        },
        Kind::Profile | Kind::Nickname => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect(kind: Kind, nickname: Option<&str>) -> Expect {
        Expect { kind, username: "user00000007".into(), nickname: nickname.map(str::to_owned) }
    }

    const LOGIN: &[u8] = br#"{"code":0,"message":"ok","data":{"token":"abc","username":"user00000007","nickname":"User 7","avatar_url":null}}"#;

    #[test]
    fn a_good_login_yields_its_token() {
        assert_eq!(check(200, LOGIN, &expect(Kind::Login, None)), Ok(Some("abc".into())));
    }

    #[test]
    fn another_user_is_a_mismatch() {
        let body =
            br#"{"code":0,"message":"ok","data":{"token":"abc","username":"user00000008","nickname":"x"}}"#;
        assert_eq!(check(200, body, &expect(Kind::Login, None)), Err(Failure::WrongUser));
    }

    #[test]
    fn status_code_and_body_failures_are_told_apart() {
        assert_eq!(check(503, LOGIN, &expect(Kind::Login, None)), Err(Failure::Status(503)));
        let refused = br#"{"code":6,"message":"wrong username or password","data":null}"#;
        assert_eq!(check(200, refused, &expect(Kind::Login, None)), Err(Failure::Code(6)));
        assert_eq!(check(200, b"<html>", &expect(Kind::Login, None)), Err(Failure::BadBody));
        let no_token = br#"{"code":0,"message":"ok","data":{"username":"user00000007"}}"#;
        assert_eq!(check(200, no_token, &expect(Kind::Login, None)), Err(Failure::BadBody));
        assert_eq!(check(200, no_token, &expect(Kind::Profile, None)), Ok(None));
    }

    #[test]
    fn nickname_must_come_back_as_sent_escapes_included() {
        let body = r#"{"code":0,"message":"ok","data":{"username":"user00000007","nickname":"\u6635\u79f0 \"1\" ✨"}}"#;
        assert_eq!(check(200, body.as_bytes(), &expect(Kind::Nickname, Some("昵称 \"1\" ✨"))), Ok(None));
        assert_eq!(
            check(200, body.as_bytes(), &expect(Kind::Nickname, Some("昵称 2"))),
            Err(Failure::WrongNickname)
        );
    }

    #[test]
    fn failures_read_well_in_the_report() {
        assert_eq!(Failure::Status(429).to_string(), "status 429");
        assert_eq!(Failure::Code(7).to_string(), "code 7 (TooManyAttempts)");
        assert_eq!(Failure::Code(99).to_string(), "code 99");
        assert_eq!(Failure::WrongUser.to_string(), "mismatched user");
    }
}
