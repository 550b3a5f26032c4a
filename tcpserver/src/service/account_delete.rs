//! Deleting an account.
//!
//! The typed confirmation must be the username and the password must be
//! right ([`super::reauth`], throttled like a log-in). Then, in one MySQL
//! transaction, the account's picture reference is given back the way a
//! replaced picture's is ([`crate::avatar_refs`]: the user's row locked, the
//! count lowered, the picture's bytes deleted unless another account uses the
//! same) and the rows are deleted: history, known devices, credentials, the
//! user. After the commit Redis forgets every
//! session, the session index, the log-in record and the cached profile. The
//! username is free from the commit on. History records still queued for
//! the account are dropped by the drainer's `INSERT IGNORE` (no such user).

use std::net::IpAddr;

use proto::{Message, Secret};

use super::Service;
use crate::avatar_refs;
use crate::db::redis::Batch;
use crate::error::Error;
use crate::keys::AccountTag;
use crate::login_record;

impl Service {
    /// Deletes the session user's account, with every session it holds.
    ///
    /// # Errors
    ///
    /// [`Error::ConfirmationMismatch`] unless `confirm` is the username, and
    /// those of re-authentication (`reauth`: wrong password, throttled).
    pub fn delete_account(
        &mut self,
        token: &Secret,
        password: &Secret,
        confirm: &str,
        client: Option<IpAddr>,
    ) -> Result<Message, Error> {
        let (session, hash) = self.session_and_hash(token)?;
        if !confirm.trim().eq_ignore_ascii_case(&session.username) {
            return Err(Error::ConfirmationMismatch);
        }
        let row = self.check_current_password(&session, password, client)?;
        let user_id = row.user_id;
        self.mysql.transaction(|tx| avatar_refs::delete_user(tx, user_id).map(drop))?;
        self.end_other_sessions(&session, &hash)?;
        let keys = &self.shared.keys;
        let tag = AccountTag::of(&session.username);
        let mut batch = Batch::new();
        // All the account's keys share its hash slot: one DEL.
        batch
            .cmd("DEL")
            .arg(keys.session(&tag, &hash))
            .arg(keys.session_meta(&tag, &hash))
            .arg(keys.user_sessions(&session.username, user_id))
            .arg(keys.profile(&session.username, user_id))
            .ignore();
        // A log-in in flight may write the record back: the fence makes it unusable.
        login_record::fence_cmd(&mut batch, keys, &session.username, login_record::DELETED);
        self.redis.run::<()>(&batch)?;
        Ok(Message::AccountDeleted)
    }
}
