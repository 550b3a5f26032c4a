//! The operations, run by the workers.
//!
//! A [`Service`] belongs to one worker thread: it owns that worker's MySQL and
//! Redis links and shares the read-only parts ([`Shared`]: hasher, key layout,
//! session lifetimes, limits) with the other workers. `account` holds
//! sign-up, log-in and log-out; `profile` the operations on a logged-in user's
//! profile; `avatar` storing and fetching pictures. Both use the helpers here for sessions and the profile cache.
//! Account security has rooms of its own: `devices` (the sessions of an
//! account), `history` (its log-in attempts), `reauth` (the current password
//! asked again, throttled like a log-in), `password_change` and
//! `account_delete`.

mod account;
mod account_delete;
mod avatar;
mod devices;
mod history;
mod password_change;
mod profile;
mod qr;
mod reauth;

pub use account::LoginRequest;
pub use qr::Check;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use proto::{Profile, Secret};

use crate::db::mysql::MysqlLink;
use crate::db::redis::RedisLink;
use crate::db::users;
use crate::error::{Dependency, Error};
use crate::keys::Keys;
use crate::password::PasswordHasher;
use crate::profile_cache::{self, Versioned};
use crate::session::{self, Lifetimes, Session};
use crate::throttle::Limits;
use crate::verified::VerifiedCache;

/// Cache writes remembered for later when Redis failed after a MySQL commit.
/// Beyond this an outage has lasted long enough that the log says so, and
/// further entries rely on the cache TTL to expire.
pub const MAX_UNSYNCED: usize = 100_000;

/// What all workers share.
#[derive(Debug)]
pub struct Shared {
    /// Hashes and verifies passwords.
    pub hasher: PasswordHasher,
    /// Credentials this process verified recently, to spare repeated log-ins the hash.
    pub verified: VerifiedCache,
    /// The Redis key layout.
    pub keys: Keys,
    /// Session lifetimes.
    pub lifetimes: Lifetimes,
    /// The throttles' limits.
    pub limits: Limits,
    /// Sessions one account may hold; past it the oldest end.
    pub max_sessions_per_user: u64,
    /// Tells the history drainer that records are queued.
    pub history_wake: Arc<crate::history::wake::Wake>,
    /// Lifetime of a scan-to-log-in code (`--qr-ttl-secs`).
    pub qr_ttl_secs: u32,
    /// Profiles that changed in MySQL while their cache entry could not be
    /// updated (Redis failed between the commit and the cache write), by user.
    /// The entry is written (version-guarded, like any other) before that
    /// user's profile is read from the cache again.
    unsynced: Mutex<HashMap<u64, Versioned>>,
}

impl Shared {
    /// The shared state of a server.
    pub fn new(
        hasher: PasswordHasher,
        verified: VerifiedCache,
        keys: Keys,
        lifetimes: Lifetimes,
        (limits, max_sessions_per_user, qr_ttl_secs): (Limits, u64, u32),
    ) -> Shared {
        let unsynced = Mutex::new(HashMap::new());
        let history_wake = Arc::default();
        Shared {
            hasher,
            verified,
            keys,
            lifetimes,
            limits,
            max_sessions_per_user,
            history_wake,
            qr_ttl_secs,
            unsynced,
        }
    }

    fn unsynced(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Versioned>> {
        self.unsynced.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Whether this worker's MySQL and Redis answer a trivial command now
    /// (`SELECT 1`, `PING`), for httpserver's `/readyz`. A dependency that is
    /// down answers within the connect timeout or at once during the backoff.
    pub fn check_ready(&mut self) -> proto::Message {
        let mysql = self.mysql.read(|c| mysql::prelude::Queryable::query_drop(c, "SELECT 1")).is_ok();
        let redis = self.redis.ping();
        proto::Message::Readiness { mysql, redis }
    }

    /// The session a token names, checked against the username a request names.
    fn authenticate(&mut self, token: &Secret, username: Option<&str>) -> Result<Session, Error> {
        let session = session::resume(&mut self.redis, &self.shared.keys, token, self.shared.lifetimes)?;
        allowed(session, username)
    }

    /// The profile of the session a token names, checked against the username a
    /// request names; see [`Service::authenticated_profiles`].
    fn authenticated_profile(&mut self, token: &Secret, username: Option<&str>) -> Result<Profile, Error> {
        Ok(self.session_and_profile(token, username)?.1)
    }

    /// For each (token, username) pair, the profile of the session the token
    /// names, checked against the username. The sessions and their cached
    /// profiles come in one round trip for the whole batch; a cache miss (or a
    /// cache write still owed after a Redis failure) takes the
    /// `Service::read_profile` path for that one.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] for the whole batch if Redis is down; otherwise
    /// one outcome per pair, in order.
    pub fn authenticated_profiles(
        &mut self,
        requests: &[(&Secret, Option<&str>)],
    ) -> Result<Vec<Result<Profile, Error>>, Error> {
        let sessions = self.authenticated_sessions(requests)?;
        let mut profiles = Vec::with_capacity(requests.len());
        for outcome in sessions {
            profiles.push(outcome.and_then(|(session, cached)| self.profile_of(&session, cached)));
        }
        Ok(profiles)
    }

    /// The session a token names, checked against the username a request
    /// names, and its user's profile: one round trip when the cache holds
    /// the profile (as for [`Service::authenticated_profiles`]).
    fn session_and_profile(
        &mut self,
        token: &Secret,
        username: Option<&str>,
    ) -> Result<(Session, Profile), Error> {
        let mut resumed = self.authenticated_sessions(&[(token, username)])?;
        let (session, cached) = resumed.pop().unwrap_or(Err(Error::Unauthenticated))?;
        let profile = self.profile_of(&session, cached)?;
        Ok((session, profile))
    }

    /// A session's profile: the cached one read with it, unless there is none
    /// or a cache write for this user is still owed (then MySQL's, through
    /// `Service::read_profile`).
    fn profile_of(&mut self, session: &Session, cached: Option<Versioned>) -> Result<Profile, Error> {
        let owed = self.shared.unsynced().contains_key(&session.user_id);
        match cached {
            Some(entry) if !owed => Ok(entry.profile),
            _ => self.read_profile(session),
        }
    }

    /// For each (token, username) pair, the session the token names, checked
    /// against the username, with its user's cached profile if the cache holds
    /// one; all in one round trip.
    fn authenticated_sessions(
        &mut self,
        requests: &[(&Secret, Option<&str>)],
    ) -> Result<Vec<session::Resumed>, Error> {
        let tokens: Vec<&Secret> = requests.iter().map(|(token, _)| *token).collect();
        let resumed = session::resume_with_profiles(
            &mut self.redis,
            &self.shared.keys,
            &tokens,
            self.shared.lifetimes,
        )?;
        Ok(resumed
            .into_iter()
            .zip(requests)
            .map(|(outcome, (_, username))| {
                outcome.and_then(|(session, cached)| Ok((allowed(session, *username)?, cached)))
            })
            .collect())
    }

    /// A user's profile: from the cache, or from MySQL (filling the cache).
    fn read_profile(&mut self, session: &Session) -> Result<Profile, Error> {
        let keys = &self.shared.keys;
        let unsynced = self.shared.unsynced().get(&session.user_id).cloned();
        if let Some(entry) = unsynced {
            profile_cache::store(&mut self.redis, keys, session.user_id, &entry)?;
            let mut map = self.shared.unsynced();
            if map.get(&session.user_id).is_some_and(|e| e.version <= entry.version) {
                map.remove(&session.user_id);
            }
        }
        if let Some(cached) = profile_cache::load(&mut self.redis, keys, &session.username, session.user_id)?
        {
            return Ok(cached.profile);
        }
        let fresh = self.mysql.read(|c| users::profile(c, session.user_id))?.ok_or(Error::Unauthenticated)?;
        profile_cache::store(&mut self.redis, keys, session.user_id, &fresh)?;
        Ok(fresh.profile)
    }

    /// Makes nickname changes, in rounds of distinct users (see
    /// [`into_rounds`]), all in one MySQL transaction (a change that finds its
    /// nickname already stored changes nothing: [`users::change_nicknames`]
    /// says why, and why that makes it safe to send again), then updates the cache
    /// with each user's newest profile in one round trip before returning (as
    /// `Service::change_avatar` does for one change). Returns each change's
    /// request index with its outcome: the profile as that change left it.
    fn change_nicknames(&mut self, rounds: Vec<Vec<Pending>>) -> Vec<(usize, Result<Profile, Error>)> {
        // Per change: (request index, user id, the row after it, `None` if the user is gone).
        let mut found_stored = 0;
        let applied = self.mysql.transaction(|tx| {
            // The body may run again (a broken connection before COMMIT).
            found_stored = 0;
            let mut applied: Vec<(usize, u64, Option<Versioned>)> = Vec::new();
            for round in &rounds {
                let changes: Vec<(u64, &str)> =
                    round.iter().map(|(_, id, nickname)| (*id, nickname.as_str())).collect();
                let (mut updated, unchanged) = users::change_nicknames(tx, &changes)?;
                applied.extend(round.iter().map(|(i, id, _)| (*i, *id, updated.remove(id))));
                found_stored += unchanged;
            }
            Ok(applied)
        });
        let applied = match applied {
            Ok(applied) => {
                crate::metrics::NICKNAMES_UNCHANGED.add(found_stored as u64);
                applied
            }
            Err(e) => {
                let indices: Vec<usize> = rounds.iter().flatten().map(|(i, _, _)| *i).collect();
                let errors = Error::from(e).shared_by(indices.len());
                return indices.into_iter().zip(errors.into_iter().map(Err)).collect();
            }
        };
        // The cache keeps only a user's newest profile, so only that is sent.
        let mut newest: HashMap<u64, &Versioned> = HashMap::new();
        for (_, user_id, entry) in &applied {
            if let Some(entry) = entry {
                newest.entry(*user_id).and_modify(|e| *e = max_version(e, entry)).or_insert(entry);
            }
        }
        let mut batch = crate::db::redis::Batch::new();
        for (user_id, entry) in &newest {
            profile_cache::store_cmd(&mut batch, &self.shared.keys, *user_id, entry);
        }
        let cached = self.redis.run::<()>(&batch).map_err(Error::from);
        // If the cache missed the new profiles, the changes stand in MySQL but
        // are not acknowledged; readers are steered around the old entries.
        let mut cache_errors = match cached {
            Ok(()) => None,
            Err(e) => {
                for (user_id, entry) in &newest {
                    self.remember_unsynced(*user_id, (*entry).clone());
                }
                let failed = applied.iter().filter(|(_, _, entry)| entry.is_some()).count();
                Some(e.shared_by(failed).into_iter())
            }
        };
        applied
            .into_iter()
            .map(|(i, _, entry)| {
                let outcome = match (entry, &mut cache_errors) {
                    // The user is gone: the session outlived its account.
                    (None, _) => Err(Error::Unauthenticated),
                    (Some(_), Some(errors)) => {
                        Err(errors.next().unwrap_or(Error::Unavailable(Dependency::Redis)))
                    }
                    (Some(entry), None) => Ok(entry.profile),
                };
                (i, outcome)
            })
            .collect()
    }

    fn remember_unsynced(&self, user_id: u64, entry: Versioned) {
        let mut map = self.shared.unsynced();
        if map.len() >= MAX_UNSYNCED && !map.contains_key(&user_id) {
            crate::log!(
                "profile cache: {MAX_UNSYNCED} writes await Redis; user {user_id} may read an old profile for up to {} s",
                profile_cache::TTL_SECS
            );
            return;
        }
        if map.get(&user_id).is_none_or(|e| e.version < entry.version) {
            map.insert(user_id, entry);
        }
    }
}

/// One nickname change of a batch, as the request gave it.
#[derive(Debug, Clone, Copy)]
pub struct NicknameRequest<'a> {
    /// The session token.
    pub token: &'a Secret,
    /// The username the request names, if any.
    pub username: Option<&'a str>,
    /// The new nickname, unchecked.
    pub nickname: &'a str,
}

/// A nickname change waiting to be made: (request index, user id, checked nickname).
type Pending = (usize, u64, String);

/// Splits changes into rounds that one statement each can make: at most
/// [`users::MAX_NAMES_PER_QUERY`] changes, each for a different user, first
/// come first. A later change for a user already in a round goes to a later
/// round, so a user's changes apply in the order they came.
fn into_rounds(pending: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut rounds: Vec<Vec<Pending>> = Vec::new();
    for change in pending {
        // After the last round that holds this user, the first with room.
        let after = rounds
            .iter()
            .rposition(|round| round.iter().any(|(_, id, _)| *id == change.1))
            .map_or(0, |r| r + 1);
        match rounds.iter().skip(after).position(|round| round.len() < users::MAX_NAMES_PER_QUERY) {
            Some(r) => rounds[after + r].push(change),
            None => rounds.push(vec![change]),
        }
    }
    rounds
}

/// The newer of two versions of a profile.
fn max_version<'a>(a: &'a Versioned, b: &'a Versioned) -> &'a Versioned {
    if b.version > a.version { b } else { a }
}

/// The session, unless the request names another user than its own.
fn allowed(session: Session, username: Option<&str>) -> Result<Session, Error> {
    match username {
        Some(name) if !name.eq_ignore_ascii_case(&session.username) => Err(Error::Forbidden),
        _ => Ok(session),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(index: usize, user_id: u64) -> Pending {
        (index, user_id, format!("nickname {index}"))
    }

    fn shape(rounds: &[Vec<Pending>]) -> Vec<Vec<usize>> {
        rounds.iter().map(|round| round.iter().map(|(i, _, _)| *i).collect()).collect()
    }

    #[test]
    fn distinct_users_share_one_round() {
        let rounds = into_rounds((0..5).map(|i| change(i, 100 + i as u64)).collect());
        assert_eq!(shape(&rounds), [vec![0, 1, 2, 3, 4]]);
    }

    #[test]
    fn one_users_changes_go_to_successive_rounds_in_order() {
        let rounds = into_rounds(vec![change(0, 7), change(1, 8), change(2, 7), change(3, 9), change(4, 7)]);
        assert_eq!(shape(&rounds), [vec![0, 1, 3], vec![2], vec![4]]);
    }

    #[test]
    fn a_round_holds_at_most_one_statements_worth() {
        let rounds = into_rounds((0..20).map(|i| change(i, i as u64)).collect());
        assert_eq!(rounds.iter().map(Vec::len).collect::<Vec<_>>(), [users::MAX_NAMES_PER_QUERY, 4]);
    }
}
