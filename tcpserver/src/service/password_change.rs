//! Changing the password.
//!
//! The current password is checked again ([`super::reauth`]); the new one
//! follows the password rules and differs from the current one; it is hashed
//! at the configured cost and stored. Then, before the reply, every other
//! session of the account ends and the log-in record `login:{t}<username>` is
//! deleted and fenced to the new hash's stamp ([`login_record::fence_cmd`]):
//! the next log-in reads MySQL and finds the new hash, whose stamp differs,
//! so neither an old record (even one written back by a log-in in flight
//! during the change) nor the verified cache (keyed by the stamp,
//! [`crate::verified`]) can answer for the old password. The asking session
//! stays.
//!
//! What is left: a log-in whose MySQL read and check came before the change
//! but whose session script runs after it still opens its session (it was
//! checked when the old password was right). The window is one worker batch
//! (milliseconds); that session shows in the device list and can be ended.

use std::net::IpAddr;

use proto::{Message, Secret};

use super::Service;
use crate::db::users;
use crate::error::Error;
use crate::login_record;
use crate::password;
use crate::validate;

impl Service {
    /// Changes the session user's password and ends their other sessions.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPassword`] for a new password that breaks the rules,
    /// [`Error::PasswordUnchanged`], and those of re-authentication (`reauth`: wrong
    /// password, throttled).
    pub fn change_password(
        &mut self,
        token: &Secret,
        password: &Secret,
        new_password: &Secret,
        client: Option<IpAddr>,
    ) -> Result<Message, Error> {
        let (session, hash) = self.session_and_hash(token)?;
        validate::password(new_password.expose())?;
        if new_password.expose() == password.expose() {
            return Err(Error::PasswordUnchanged);
        }
        let row = self.check_current_password(&session, password, client)?;
        let new_hash = self.shared.hasher.hash(new_password.expose())?;
        self.mysql.read(|c| users::update_password_hash(c, row.user_id, &new_hash))?;
        let mut fence = crate::db::redis::Batch::new();
        login_record::fence_cmd(
            &mut fence,
            &self.shared.keys,
            &session.username,
            &password::stamp(&new_hash),
        );
        self.redis.run::<()>(&fence)?;
        let ended = self.end_other_sessions(&session, &hash)?;
        Ok(Message::PasswordChanged { ended })
    }
}
