//! The logged-in user's profile: read it, change the nickname, set the picture.

use proto::{MAX_IMAGE_LEN, Message, Secret};

use super::{NicknameRequest, Pending, Service, into_rounds};
use crate::error::{Error, Internal};
use crate::image;
use crate::throttle;
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

    /// Replaces the session user's picture. Nothing is written unless the
    /// picture is accepted, the disk has room for it, and the account has not
    /// used up its uploads ([`throttle::AVATAR_UPLOADS_PER_USER`]); the picture
    /// it replaces is deleted unless another account uses it.
    ///
    /// # Errors
    ///
    /// As [`Service::get_profile`], and [`Error::ImageTooLarge`],
    /// [`Error::UnsupportedImage`], [`Error::InsufficientStorage`] or
    /// [`Error::TooManyAttempts`].
    pub fn set_avatar(
        &mut self,
        token: &Secret,
        username: Option<&str>,
        image: &[u8],
    ) -> Result<Message, Error> {
        let session = self.authenticate(token, username)?;
        if image.len() > MAX_IMAGE_LEN {
            return Err(Error::ImageTooLarge { len: image.len() });
        }
        let kind = image::inspect(image)?;
        // Refused for want of room before it is counted: the account is not
        // at fault, and may upload it once there is room again.
        if !self.shared.avatars.has_room(image.len()).map_err(|e| Error::Internal(Internal::Storage(e)))? {
            return Err(Error::InsufficientStorage);
        }
        let uploads = self.shared.keys.avatar_uploads_by_user(session.user_id);
        throttle::admit(&mut self.redis, &[(uploads, throttle::AVATAR_UPLOADS_PER_USER)])?;
        Ok(Message::AvatarSet(self.change_avatar(&session, image, kind)?))
    }
}
