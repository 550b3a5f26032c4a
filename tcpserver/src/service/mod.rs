//! The operations, run by the workers.
//!
//! A [`Service`] belongs to one worker thread: it owns that worker's MySQL and
//! Redis links and shares the read-only parts ([`Shared`]: hasher, key layout,
//! session lifetimes, picture store) with the other workers. `account` holds
//! sign-up, log-in and log-out; `profile` the operations on a logged-in user's
//! profile. Both use the helpers here for sessions and the profile cache.

mod account;
mod profile;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use proto::{Profile, Secret};

use crate::avatar_store::AvatarStore;
use crate::db::mysql::MysqlLink;
use crate::db::redis::RedisLink;
use crate::db::users::{self, Change};
use crate::error::Error;
use crate::keys::Keys;
use crate::password::PasswordHasher;
use crate::profile_cache::{self, Versioned};
use crate::session::{self, Lifetimes, Session};

/// Users whose cache entry may be stale, remembered at most: beyond this an
/// outage has lasted long enough that the log says so, and entries fall back on
/// the cache TTL to expire.
pub const MAX_STALE_ENTRIES: usize = 100_000;

/// What all workers share.
#[derive(Debug)]
pub struct Shared {
    /// Hashes and verifies passwords.
    pub hasher: PasswordHasher,
    /// The Redis key layout.
    pub keys: Keys,
    /// Session lifetimes.
    pub lifetimes: Lifetimes,
    /// Where pictures go.
    pub avatars: AvatarStore,
    /// Users whose profile changed in MySQL while their cache entry could not be
    /// updated (Redis failed between the commit and the cache write). Their
    /// entry is deleted before it is read again.
    stale: Mutex<HashSet<u64>>,
}

impl Shared {
    /// The shared state of a server.
    pub fn new(hasher: PasswordHasher, keys: Keys, lifetimes: Lifetimes, avatars: AvatarStore) -> Shared {
        Shared { hasher, keys, lifetimes, avatars, stale: Mutex::new(HashSet::new()) }
    }

    fn stale(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.stale.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One worker's view of the service.
#[derive(Debug)]
pub struct Service {
    shared: Arc<Shared>,
    mysql: MysqlLink,
    redis: RedisLink,
}

impl Service {
    /// A service over the given links.
    pub fn new(shared: Arc<Shared>, mysql: MysqlLink, redis: RedisLink) -> Service {
        Service { shared, mysql, redis }
    }

    /// Opens both connections ahead of the first request.
    pub fn warm_up(&mut self) {
        self.mysql.warm_up();
        self.redis.warm_up();
    }

    /// The session a token names, checked against the username a request names.
    fn authenticate(&mut self, token: &Secret, username: Option<&str>) -> Result<Session, Error> {
        let session = session::resume(&mut self.redis, &self.shared.keys, token, self.shared.lifetimes)?;
        match username {
            Some(name) if !name.eq_ignore_ascii_case(&session.username) => Err(Error::Forbidden),
            _ => Ok(session),
        }
    }

    /// A user's profile: from the cache, or from MySQL (filling the cache).
    fn read_profile(&mut self, session: &Session) -> Result<Profile, Error> {
        let keys = &self.shared.keys;
        if self.shared.stale().contains(&session.user_id) {
            profile_cache::forget(&mut self.redis, keys, session.user_id)?;
            self.shared.stale().remove(&session.user_id);
        }
        if let Some(cached) = profile_cache::load(&mut self.redis, keys, session.user_id)? {
            return Ok(cached.profile);
        }
        let fresh = self.mysql.read(|c| users::profile(c, session.user_id))?.ok_or(Error::Unauthenticated)?;
        profile_cache::store(&mut self.redis, keys, session.user_id, &fresh)?;
        Ok(fresh.profile)
    }

    /// Applies a change in MySQL, then updates the cache before returning, so that
    /// once the caller acknowledges, no reader can see the old profile.
    fn change_profile(&mut self, session: &Session, change: Change<'_>) -> Result<Profile, Error> {
        let user_id = session.user_id;
        let updated: Versioned =
            self.mysql.transaction(|tx| users::change(tx, user_id, change))?.ok_or(Error::Unauthenticated)?;
        if let Err(e) = profile_cache::store(&mut self.redis, &self.shared.keys, user_id, &updated) {
            self.remember_stale(user_id);
            return Err(e);
        }
        Ok(updated.profile)
    }

    fn remember_stale(&self, user_id: u64) {
        let mut stale = self.shared.stale();
        if stale.len() < MAX_STALE_ENTRIES {
            stale.insert(user_id);
        } else {
            crate::log!(
                "profile cache: too many entries to invalidate; user {user_id} may read stale data for up to {} s",
                profile_cache::TTL_SECS
            );
        }
    }
}
