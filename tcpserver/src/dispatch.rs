//! From a decoded request to the code that answers it.
//!
//! [`route`] runs on the reactor thread and decides, without blocking, whether a
//! message can be answered at once (`Ping`, a reply type sent as a request, or
//! a handshake frame once the handshake is over) or needs a worker. [`handle`] runs on a worker and calls the operation.

use proto::{ErrorCode, Message, Secret};

use crate::error::Error;
use crate::service::{LoginRequest, NicknameRequest, Service};

/// Where a request goes.
#[derive(Debug)]
pub enum Route {
    /// Answered by the reactor with this reply.
    Answer(Message),
    /// Needs a worker: it touches MySQL, Redis or a password hash.
    Work(Message),
}

/// Decides where a request goes.
pub fn route(message: Message) -> Route {
    // The reactor takes a connection's proof before any request; another one
    // later is a client out of step, never work.
    if message.message_type().is_handshake() {
        return Route::Answer(Message::error(
            ErrorCode::UnexpectedMessage,
            format!("{:?} belongs to the handshake, which is over.", message.message_type()),
        ));
    }
    if !message.message_type().is_request() {
        return Route::Answer(Message::error(
            ErrorCode::UnexpectedMessage,
            format!("{:?} is a reply, not a request.", message.message_type()),
        ));
    }
    match message {
        Message::Ping => Route::Answer(Message::Pong),
        other => Route::Work(other),
    }
}

/// Runs one request on a worker.
///
/// # Errors
///
/// The operation's [`Error`], which the caller turns into an error reply.
pub fn handle(service: &mut Service, message: Message) -> Result<Message, Error> {
    match message {
        Message::SignUp { username, password, nickname, client, key } => {
            service.sign_up(&username, &password, nickname.as_deref(), client, &key)
        }
        Message::Login { username, password, client, user_agent } => {
            service.log_in(&username, &password, client, user_agent.as_deref())
        }
        Message::Logout { token } => service.log_out(&token),
        Message::GetProfile { token, username } => service.get_profile(&token, username.as_deref()),
        Message::UpdateNickname { token, username, nickname } => {
            service.update_nickname(&token, username.as_deref(), &nickname)
        }
        Message::SetAvatar { token, username, image } => {
            service.set_avatar(&token, username.as_deref(), &image)
        }
        Message::GetAvatar { name } => service.get_avatar(&name),
        Message::CheckReady => Ok(service.check_ready()),
        Message::ListSessions { token } => service.list_sessions(&token),
        Message::RevokeSession { token, id } => service.revoke_session(&token, &id),
        Message::RevokeOtherSessions { token } => service.revoke_other_sessions(&token),
        Message::LoginHistory { token, limit } => service.login_history(&token, limit),
        Message::ChangePassword { token, password, new_password, client } => {
            service.change_password(&token, &password, &new_password, client)
        }
        Message::DeleteAccount { token, password, confirm, client } => {
            service.delete_account(&token, &password, &confirm, client)
        }
        Message::QrCreate { user_agent, client } => service.qr_create(&user_agent, client),
        Message::QrScan { token, key } => service.qr_scan(&token, &key),
        Message::QrDecide { token, key, approve, client } => service.qr_decide(&token, &key, approve, client),
        // The reactor parks waits and sends their checks through
        // `pool::check_wait`; one that comes here is checked once.
        Message::QrWait { key, binding, seen, client, .. } => {
            service.qr_check(&key, &binding, seen, client).map(|check| check.reply)
        }
        // The reactor ends the waits it holds; a worker holds none to end.
        Message::QrCancel { .. } => Ok(Message::QrCancelled),
        // `route` answers these on the reactor; should one arrive here anyway,
        // route it again rather than fail.
        other => match route(other) {
            Route::Answer(reply) | Route::Work(reply) => Ok(reply),
        },
    }
}

/// Runs a worker's batch of requests, replies in order. Profile reads in the
/// batch share one Redis round trip ([`Service::authenticated_profiles`]),
/// log-ins share theirs ([`Service::log_in_batch`]), nickname changes theirs
/// and one MySQL transaction ([`Service::update_nicknames`]); everything else
/// runs one by one, as [`handle`] would.
pub fn handle_batch(service: &mut Service, messages: Vec<Message>) -> Vec<Result<Message, Error>> {
    let reads: Vec<(&Secret, Option<&str>)> = messages
        .iter()
        .filter_map(|message| match message {
            Message::GetProfile { token, username } => Some((token, username.as_deref())),
            _ => None,
        })
        .collect();
    let logins: Vec<LoginRequest<'_>> = messages
        .iter()
        .filter_map(|message| match message {
            Message::Login { username, password, client, user_agent } => {
                Some(LoginRequest { username, password, client: *client, user_agent: user_agent.as_deref() })
            }
            _ => None,
        })
        .collect();
    let nicknames: Vec<NicknameRequest<'_>> = messages
        .iter()
        .filter_map(|message| match message {
            Message::UpdateNickname { token, username, nickname } => {
                Some(NicknameRequest { token, username: username.as_deref(), nickname })
            }
            _ => None,
        })
        .collect();
    let mut profiles = shared_outcomes(reads.len(), || {
        let profiles = service.authenticated_profiles(&reads)?;
        Ok(profiles.into_iter().map(|profile| profile.map(Message::ProfileReply)).collect())
    });
    let mut logged_in = shared_outcomes(logins.len(), || service.log_in_batch(&logins));
    let mut renamed = shared_outcomes(nicknames.len(), || service.update_nicknames(&nicknames));
    drop((reads, logins, nicknames));
    messages
        .into_iter()
        .map(|message| match message {
            Message::GetProfile { .. } => profiles.next().unwrap_or(Err(Error::Unauthenticated)),
            Message::Login { .. } => logged_in.next().unwrap_or(Err(Error::BadCredentials)),
            Message::UpdateNickname { .. } => renamed.next().unwrap_or(Err(Error::Unauthenticated)),
            other => handle(service, other),
        })
        .collect()
}

/// The outcomes of `n` requests run together by `run` (nothing is run for
/// none); a failure of the whole run is every request's failure.
fn shared_outcomes(
    n: usize,
    run: impl FnOnce() -> Result<Vec<Result<Message, Error>>, Error>,
) -> std::vec::IntoIter<Result<Message, Error>> {
    let outcomes = match n {
        0 => Vec::new(),
        _ => run().unwrap_or_else(|e| e.shared_by(n).into_iter().map(Err).collect()),
    };
    outcomes.into_iter()
}

/// A short name of a request type for the log and the metrics: its label in
/// [`crate::metrics::OPERATIONS`] (`other` for types no worker runs), so the
/// log and the metrics name an operation alike.
pub fn operation_label(kind: proto::MessageType) -> &'static str {
    crate::metrics::OPERATIONS[crate::metrics::operation_index(kind)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::Profile;

    #[test]
    fn ping_is_answered_by_the_reactor() {
        assert!(matches!(route(Message::Ping), Route::Answer(Message::Pong)));
    }

    #[test]
    fn replies_sent_as_requests_are_refused() {
        for reply in [Message::Pong, Message::LoggedOut, Message::ProfileReply(profile())] {
            let Route::Answer(Message::Error(e)) = route(reply) else { panic!("not refused") };
            assert_eq!(e.code, ErrorCode::UnexpectedMessage);
        }
    }

    #[test]
    fn handshake_frames_after_the_handshake_are_refused() {
        let proof = Message::Proof(proto::Proof([0; proto::handshake::PROOF_LEN]));
        for late in [proof, Message::Accepted] {
            let Route::Answer(Message::Error(e)) = route(late) else { panic!("not refused") };
            assert_eq!(e.code, ErrorCode::UnexpectedMessage);
        }
    }

    #[test]
    fn operations_go_to_a_worker() {
        assert!(matches!(route(Message::Logout { token: "t".into() }), Route::Work(_)));
    }

    fn profile() -> Profile {
        Profile { username: "u".into(), nickname: "n".into(), avatar: None }
    }
}
