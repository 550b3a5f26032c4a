//! Asking a logged-in person for their password again, before a change that
//! a stolen session must not be able to make (a new password, deleting the
//! account).
//!
//! Throttled exactly like a log-in: the attempt is counted on the username's
//! and the address's failed-log-in counters ([`crate::throttle`]) before the
//! hash, atomically, so simultaneous guesses through a stolen session stop at
//! the same limit as guesses at the log-in form, and share it with them. A
//! wrong password stays counted; a right one is taken out again. The full
//! hash is always paid: the verified cache is for repeated log-ins, not for
//! this.

use std::net::IpAddr;

use proto::Secret;

use super::Service;
use crate::db::redis::Batch;
use crate::db::users::{self, LoginRow};
use crate::error::Error;
use crate::session::{self, Session};
use crate::throttle::{self, Limit};

impl Service {
    /// The account's credentials row, if `password` is its current password.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyAttempts`] past a failed-log-in limit (no hash is
    /// computed), [`Error::WrongPassword`], [`Error::Unauthenticated`] if the
    /// account is gone, [`Error::Unavailable`].
    pub(super) fn check_current_password(
        &mut self,
        session: &Session,
        password: &Secret,
        client: Option<IpAddr>,
    ) -> Result<LoginRow, Error> {
        let keys = &self.shared.keys;
        let limits = &self.shared.limits;
        let mut counters: Vec<(String, Limit)> =
            vec![(keys.login_failures_by_user(&session.username), limits.failures_per_user)];
        if let Some(addr) = client {
            counters.push((keys.login_failures_by_addr(addr), limits.failures_per_addr));
        }
        let member = throttle::new_member();
        // One script per hash slot (the account's, the address's), one round trip.
        let mut admit = Batch::new();
        throttle::admit_cmds(&mut admit, &counters, &member, throttle::Hold::InFlight);
        let replies: Vec<i64> = self.redis.run(&admit)?;
        let verdict = throttle::admitted(&replies);
        let checked = verdict.and_then(|()| self.verify_current(session, password));
        let mut finish = Batch::new();
        match &checked {
            Err(Error::WrongPassword) => {
                throttle::mark_failed(&mut finish, &counters, &member, session::unix_now_us());
            }
            // A success, a refusal (one slot's place goes back if the other
            // refused), or a check that could not be made: no failure.
            _ => throttle::release(&mut finish, &counters, &member),
        }
        self.redis.run::<()>(&finish)?;
        checked
    }

    fn verify_current(&mut self, session: &Session, password: &Secret) -> Result<LoginRow, Error> {
        let name = session.username.as_str();
        let mut rows = self.mysql.read(|c| users::find_logins(c, &[name]))?;
        let row =
            rows.remove(name).filter(|row| row.user_id == session.user_id).ok_or(Error::Unauthenticated)?;
        match self.shared.hasher.verify(password.expose(), &row.password_hash)? {
            true => Ok(row),
            false => Err(Error::WrongPassword),
        }
    }
}
