//! Sign-up, log-in and log-out.

use std::net::IpAddr;

use proto::{Message, Profile, Secret};

use super::Service;
use crate::db::users::{self, ER_DUP_ENTRY};
use crate::error::Error;
use crate::profile_cache;
use crate::session::{self, Session};
use crate::throttle::{self, LOGIN_FAILURES_PER_ADDR, LOGIN_FAILURES_PER_USER, Limit, SIGNUPS_PER_ADDR};
use crate::validate;

impl Service {
    /// Creates an account. The username is lowercased; a missing nickname
    /// becomes the username.
    ///
    /// # Errors
    ///
    /// `Invalid*` for input that breaks a rule, [`Error::TooManyAttempts`] past
    /// the per-address sign-up limit, [`Error::UsernameTaken`].
    pub fn sign_up(
        &mut self,
        username: &str,
        password: &Secret,
        nickname: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Message, Error> {
        let username = validate::username(username)?;
        validate::password(password.expose())?;
        let nickname = match nickname {
            Some(raw) => validate::nickname(raw)?,
            None => username.clone(),
        };
        let counters: Vec<(String, Limit)> = client
            .map(|addr| (self.shared.keys.signups_by_addr(addr), SIGNUPS_PER_ADDR))
            .into_iter()
            .collect();
        throttle::check(&mut self.redis, &counters)?;
        throttle::record(&mut self.redis, &counters)?;
        let hash = self.shared.hasher.hash(password.expose())?;
        // The unique key decides: two sign-ups racing for one name get one
        // success and one duplicate-key error, with no check-then-insert gap.
        match self.mysql.transaction(|tx| users::insert(tx, &username, &nickname, &hash)) {
            Ok(_) => Ok(Message::SignedUp(Profile { username, nickname, avatar: None })),
            Err(mysql::Error::MySqlError(e)) if e.code == ER_DUP_ENTRY => Err(Error::UsernameTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks a password and opens a new session.
    ///
    /// An unknown username and a wrong password give the same error after the
    /// same amount of hashing, so neither the answer nor its timing tells which
    /// usernames exist.
    ///
    /// # Errors
    ///
    /// [`Error::BadCredentials`], or [`Error::TooManyAttempts`] while the
    /// username or the client address has too many recent failures.
    pub fn log_in(
        &mut self,
        username: &str,
        password: &Secret,
        client: Option<IpAddr>,
    ) -> Result<Message, Error> {
        let keys = &self.shared.keys;
        // A name that breaks the rules cannot exist: it is answered like an
        // unknown one, and gets no counter of its own.
        let username = validate::username(username).ok();
        let user_key = username.as_ref().map(|name| keys.login_failures_by_user(name));
        let counters: Vec<(String, Limit)> = user_key
            .iter()
            .map(|key| (key.clone(), LOGIN_FAILURES_PER_USER))
            .chain(client.map(|addr| (keys.login_failures_by_addr(addr), LOGIN_FAILURES_PER_ADDR)))
            .collect();
        throttle::check(&mut self.redis, &counters)?;

        let row = match &username {
            Some(name) => self.mysql.read(|c| users::find_login(c, name))?,
            None => None,
        };
        let hasher = &self.shared.hasher;
        let cache = &self.shared.verified;
        let verified = match &row {
            // A hit means this exact password was verified against this exact
            // stored hash by this process recently; anything else pays the full cost.
            Some(row) if cache.contains(row.user_id, &row.password_hash, password.expose()) => true,
            Some(row) => {
                let ok = hasher.verify(password.expose(), &row.password_hash)?;
                if ok {
                    cache.remember(row.user_id, &row.password_hash, password.expose());
                }
                ok
            }
            None => {
                hasher.verify_nothing(password.expose());
                false
            }
        };
        let Some(row) = row.filter(|_| verified) else {
            throttle::record(&mut self.redis, &counters)?;
            return Err(Error::BadCredentials);
        };

        if hasher.needs_rehash(&row.password_hash) {
            // The log-in succeeds even if the upgrade fails; it is tried again next time.
            let upgraded = hasher.hash(password.expose()).map_err(Error::from).and_then(|hash| {
                self.mysql.read(|c| users::update_password_hash(c, row.user_id, &hash)).map_err(Error::from)
            });
            if let Err(e) = upgraded {
                crate::log!("user {}: password hash upgrade failed: {e:?}", row.user_id);
            }
        }

        let (token, token_hash) = session::new_token()?;
        let lifetimes = self.shared.lifetimes;
        let session = Session {
            user_id: row.user_id,
            username: row.profile.profile.username.clone(),
            expires_at: session::unix_now() + lifetimes.max_secs,
        };
        // One round trip: the session, the reset of this user's failure
        // counter, and a warm profile cache for the pages that follow.
        let keys = &self.shared.keys;
        let mut pipe = redis::pipe();
        session::store(&mut pipe, keys, &token_hash, &session, lifetimes);
        if let Some(key) = &user_key {
            throttle::clear(&mut pipe, key);
        }
        pipe.add_command(profile_cache::store_cmd(keys, row.user_id, &row.profile)).ignore();
        self.redis.run(|c| pipe.query::<()>(c))?;
        Ok(Message::LoggedIn { token, profile: row.profile.profile })
    }

    /// Ends a session. Logging out with an unknown, expired or malformed token
    /// also answers `LoggedOut`: the outcome the caller wants holds either way.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] if Redis is down.
    pub fn log_out(&mut self, token: &Secret) -> Result<Message, Error> {
        session::end(&mut self.redis, &self.shared.keys, token)?;
        Ok(Message::LoggedOut)
    }
}
