//! The logged-in user's profile: read it, change the nickname, set the picture.

use proto::{MAX_IMAGE_LEN, Message, Secret};

use super::Service;
use crate::db::users::Change;
use crate::error::{Error, Internal};
use crate::image;
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
        let session = self.authenticate(token, username)?;
        let nickname = validate::nickname(nickname)?;
        Ok(Message::NicknameUpdated(self.change_profile(&session, Change::Nickname(&nickname))?))
    }

    /// Replaces the session user's picture. Nothing is written unless the
    /// picture is accepted.
    ///
    /// # Errors
    ///
    /// As [`Service::get_profile`], and [`Error::ImageTooLarge`] or
    /// [`Error::UnsupportedImage`].
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
        let name =
            self.shared.avatars.store(image, kind).map_err(|e| Error::Internal(Internal::Storage(e)))?;
        Ok(Message::AvatarSet(self.change_profile(&session, Change::Avatar(&name))?))
    }
}
