//! Profile pictures: setting the session user's, and fetching any by name.
//!
//! The bytes live in MariaDB with the accounts (`avatar_bytes`, counted in
//! `avatars`: [`crate::avatar_refs`]), so every tcpserver of a fleet stores
//! and serves the same pictures, and a picture survives the loss of any one
//! machine as the accounts do.
//!
//! What bounds the store: each account points at one picture, and a picture no
//! account points at is deleted in the transaction that lets go of it, so the
//! store holds at most one picture of at most [`MAX_IMAGE_LEN`] per account
//! (fewer where accounts share one), whatever the uploads; and each account
//! may upload [`throttle::AVATAR_UPLOADS_PER_USER`] pictures an hour, which
//! bounds how fast it is rewritten. Should MariaDB's disk or table fill all
//! the same, the upload is refused with `InsufficientStorage` and nothing is
//! stored.

use proto::{MAX_IMAGE_LEN, Message, Profile, Secret};

use super::Service;
use crate::avatar_name;
use crate::avatar_refs;
use crate::db::avatars;
use crate::error::Error;
use crate::image::{self, ImageKind};
use crate::profile_cache;
use crate::session::Session;
use crate::throttle;

/// MariaDB errors that mean it has no room: 1021 the disk is full
/// (`ER_DISK_FULL`), 1114 the table is full (`ER_RECORD_FILE_FULL`).
const NO_ROOM: [u16; 2] = [1021, 1114];

impl Service {
    /// Replaces the session user's picture. Nothing is written unless the
    /// picture is accepted and the account has not used up its uploads
    /// ([`throttle::AVATAR_UPLOADS_PER_USER`]); the picture it replaces is
    /// deleted unless another account uses it.
    ///
    /// # Errors
    ///
    /// As [`Service::get_profile`], and [`Error::ImageTooLarge`],
    /// [`Error::UnsupportedImage`], [`Error::TooManyAttempts`] or
    /// [`Error::InsufficientStorage`].
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
        let uploads = self.shared.keys.avatar_uploads_by_user(session.user_id);
        throttle::admit(&mut self.redis, &[(uploads, throttle::AVATAR_UPLOADS_PER_USER)])?;
        Ok(Message::AvatarSet(self.change_avatar(&session, image, kind)?))
    }

    /// A stored picture, by name.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownAvatar`] when no account uses a picture of that name
    /// (or the name is malformed); [`Error::Unavailable`] without MySQL.
    pub fn get_avatar(&mut self, name: &str) -> Result<Message, Error> {
        let kind = avatar_name::kind(name).ok_or(Error::UnknownAvatar)?;
        let image = self.mysql.read(|c| avatars::bytes(c, name))?.ok_or(Error::UnknownAvatar)?;
        Ok(Message::Avatar { content_type: kind.content_type().to_owned(), image })
    }

    /// Sets the picture: the bytes (hashed here, outside any lock), the user's
    /// row and the counts in one MySQL transaction ([`avatar_refs::replace`]),
    /// then the cache before returning, so that once the caller acknowledges,
    /// no reader can see the old profile.
    fn change_avatar(&mut self, session: &Session, image: &[u8], kind: ImageKind) -> Result<Profile, Error> {
        let user_id = session.user_id;
        let name = avatar_name::of(image, kind);
        let updated = self
            .mysql
            .transaction(|tx| avatar_refs::replace(tx, user_id, &name, image))
            .map_err(|e| match &e {
                mysql::Error::MySqlError(server) if NO_ROOM.contains(&server.code) => {
                    crate::log!("picture store: MariaDB has no room ({e}): refusing the upload");
                    Error::InsufficientStorage
                }
                _ => Error::from(e),
            })?
            .ok_or(Error::Unauthenticated)?;
        if let Err(e) = profile_cache::store(&mut self.redis, &self.shared.keys, user_id, &updated) {
            self.remember_unsynced(user_id, updated);
            return Err(e);
        }
        Ok(updated.profile)
    }
}
