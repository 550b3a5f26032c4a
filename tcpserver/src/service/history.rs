//! "Your log-in history": the account's latest attempts, from MariaDB.
//!
//! Attempts reach the `logins` table through the drainer ([`crate::history`])
//! within about a second; this reads the newest ones by the
//! `(user_id, time_ms)` index, at most [`proto::security::MAX_HISTORY`].

use proto::{Message, Secret};

use super::Service;
use crate::db::logins;
use crate::error::Error;

impl Service {
    /// The session's account's newest `limit` attempts (at most 100), newest first.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthenticated`] without a live session; [`Error::Unavailable`]
    /// if Redis or MySQL is down.
    pub fn login_history(&mut self, token: &Secret, limit: u16) -> Result<Message, Error> {
        let (session, _) = self.session_and_hash(token)?;
        let limit = usize::from(limit).min(proto::security::MAX_HISTORY);
        let rows = self.mysql.read(|c| logins::latest(c, session.user_id, limit))?;
        Ok(Message::History(rows))
    }
}
