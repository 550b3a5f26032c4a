//! The logged-in user's profile: read it, change the nickname (the picture
//! is `avatar`'s).

use proto::{Message, Secret};

use super::{NicknameRequest, Pending, Service, into_rounds};
use crate::error::Error;
use crate::validate;

impl Service {
    /// The profile of the session's user.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthenticated`] without a valid session, [`Error::Forbidden`]
    /// if `username` names someone else.
    pub fn get_profile(&mut self, token: &Secret, username: Option<&str>) -> Result<Message, Error> {
        Ok(Message::ProfileReply(self.authenticated_profile(token, username)?))
    }

    /// Changes the session user's nickname.
    ///
    /// # Errors
    ///
    /// As [`Service::get_profile`], and [`Error::InvalidNickname`].
    pub fn update_nickname(
        &mut self,
        token: &Secret,
        username: Option<&str>,
        nickname: &str,
    ) -> Result<Message, Error> {
        let mut outcomes = self.update_nicknames(&[NicknameRequest { token, username, nickname }])?;
        outcomes.pop().unwrap_or(Err(Error::Unauthenticated))
    }

    /// [`Service::update_nickname`] for a worker's batch: the sessions come in
    /// one Redis round trip, the changes go to MySQL in one transaction of two
    /// statements, and the new profiles to the cache in one more round trip. A
    /// user named twice in a batch has the changes applied one after the other,
    /// two more statements each, in the same transaction.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] for the whole batch if Redis is down at the
    /// first round trip; otherwise one outcome per request, in order.
    pub fn update_nicknames(
        &mut self,
        requests: &[NicknameRequest<'_>],
    ) -> Result<Vec<Result<Message, Error>>, Error> {
        let pairs: Vec<(&Secret, Option<&str>)> = requests.iter().map(|r| (r.token, r.username)).collect();
        let sessions = self.authenticated_sessions(&pairs)?;
        let mut outcomes: Vec<Result<Message, Error>> = Vec::with_capacity(requests.len());
        let mut pending: Vec<Pending> = Vec::new();
        for (i, (session, request)) in sessions.into_iter().zip(requests).enumerate() {
            match session
                .and_then(|(session, _)| Ok((session.user_id, validate::nickname(request.nickname)?)))
            {
                Ok((user_id, nickname)) => {
                    pending.push((i, user_id, nickname));
                    // Replaced below by the change's own outcome.
                    outcomes.push(Err(Error::Unauthenticated));
                }
                Err(e) => outcomes.push(Err(e)),
            }
        }
        for (i, outcome) in self.change_nicknames(into_rounds(pending)) {
            outcomes[i] = outcome.map(Message::NicknameUpdated);
        }
        Ok(outcomes)
    }
}
