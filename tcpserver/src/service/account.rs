//! Sign-up, log-in and log-out.

use std::collections::HashMap;
use std::net::IpAddr;

use proto::{IdempotencyKey, Message, Profile, Secret};

use super::Service;
use crate::db::redis::Batch;
use crate::db::users::{self, ER_DUP_ENTRY, LoginRow};
use crate::device::{self, SessionMeta};
use crate::error::{Dependency, Error};
use crate::history::record::{self, Attempt, Method, Outcome};
use crate::keys::{AccountTag, Keys};
use crate::login_counters::{self, LoginCounters, Success, Successes};
use crate::login_record::{self, Lookup};
use crate::login_session;
use crate::password::{self, PasswordError};
use crate::profile_cache::{self, Versioned};
use crate::session::{self, Session};
use crate::throttle::{self, Limit, Limits};
use crate::user_agent::{self, Device};
use crate::validate;

impl Service {
    /// Creates an account. The username is lowercased; a missing nickname
    /// becomes the username.
    ///
    /// `key` makes the sign-up safe to send again (`proto::idempotency`): it
    /// is stored with the account, and a sign-up that finds its username
    /// taken by the account its own key created is a copy of the request that
    /// created it, answered `SignedUp` as that one was. The key also names
    /// the attempt in the per-address counter, so a copy counts no second
    /// time and is not refused for its first.
    ///
    /// # Errors
    ///
    /// `Invalid*` for input that breaks a rule, [`Error::TooManyAttempts`] past
    /// the per-address sign-up limit, [`Error::UsernameTaken`] when another
    /// sign-up (another key) has the name.
    pub fn sign_up(
        &mut self,
        username: &str,
        password: &Secret,
        nickname: Option<&str>,
        client: Option<IpAddr>,
        key: &IdempotencyKey,
    ) -> Result<Message, Error> {
        let username = validate::username(username)?;
        validate::password(password.expose())?;
        let nickname = match nickname {
            Some(raw) => validate::nickname(raw)?,
            None => username.clone(),
        };
        let counters: Vec<(String, Limit)> = client
            .map(|addr| (self.shared.keys.signups_by_addr(addr), self.shared.limits.signups_per_addr))
            .into_iter()
            .collect();
        // Counted before the hash, atomically: concurrent sign-ups cannot outrun the limit.
        throttle::admit_as(&mut self.redis, &counters, &key.to_hex())?;
        let hash = self.shared.hasher.hash(password.expose())?;
        // The unique key decides: two sign-ups racing for one name get one
        // success and one duplicate-key error, with no check-then-insert gap.
        // A copy racing its own first copy (still in flight on a tcpserver
        // whose connection broke) waits for it at the unique key too, and then
        // finds its account.
        match self.mysql.transaction(|tx| users::insert(tx, &username, &nickname, &hash, key)) {
            Ok(_) => Ok(Message::SignedUp(Profile { username, nickname, avatar: None })),
            Err(mysql::Error::MySqlError(e)) if e.code == ER_DUP_ENTRY => self.taken_or_own(&username, key),
            Err(e) => Err(e.into()),
        }
    }

    /// The answer to a sign-up whose username is taken: the account's
    /// profile if the sign-up that created it carried `key` (this is a copy
    /// of that request), [`Error::UsernameTaken`] otherwise.
    fn taken_or_own(&mut self, username: &str, key: &IdempotencyKey) -> Result<Message, Error> {
        match self.mysql.read(|c| users::signed_up_with(c, username, key))? {
            Some(profile) => {
                crate::metrics::SIGN_UPS_REPEATED.add(1);
                Ok(Message::SignedUp(profile))
            }
            None => Err(Error::UsernameTaken),
        }
    }

    /// Checks a password and opens a new session.
    ///
    /// An unknown username and a wrong password give the same error after the
    /// same amount of hashing, so neither the answer nor its timing tells which
    /// usernames exist. A repeated log-in whose password this process verified
    /// recently is answered from Redis alone (see [`crate::login_record`]);
    /// every other one reads MySQL.
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
        user_agent: Option<&str>,
    ) -> Result<Message, Error> {
        let mut outcomes = self.log_in_batch(&[LoginRequest { username, password, client, user_agent }])?;
        outcomes.pop().unwrap_or(Err(Error::BadCredentials))
    }

    /// [`Service::log_in`] for a worker's batch of log-ins: the counters,
    /// records and cached profiles of all of them come in one Redis round
    /// trip, which also counts the ones without a record on their failure
    /// counters (they will need a hash: see [`crate::throttle`]); log-ins
    /// whose record the verified cache does not vouch for are counted in one
    /// more round trip, only if there are any; the MySQL rows are read in one
    /// query, and all the new sessions, failures and releases go out in one
    /// last round trip.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] for the whole batch if Redis is down before any
    /// password is checked; otherwise one outcome per log-in, in order.
    pub fn log_in_batch(
        &mut self,
        requests: &[LoginRequest<'_>],
    ) -> Result<Vec<Result<Message, Error>>, Error> {
        let started_us = session::unix_now_us();
        let keys = &self.shared.keys;
        let limits = &self.shared.limits;
        let prepared: Vec<Prepared> =
            requests.iter().map(|request| Prepared::new(keys, limits, request)).collect();
        let lookups: Vec<Lookup<'_>> = prepared
            .iter()
            .map(|p| Lookup {
                username: p.username.as_deref(),
                user: p.user.as_ref(),
                addr: p.addr.as_ref(),
                member: &p.member,
            })
            .collect();
        let found = login_record::lookup(&mut self.redis, keys, &lookups)?;
        // Whether each attempt holds a place in its account's failures.
        let mut held: Vec<bool> = found.iter().map(|f| f.as_ref().is_ok_and(|f| f.admitted)).collect();
        // A success clears the account's failures that ended before it
        // began only where the lookup saw some.
        let clears_before: Vec<Option<u64>> =
            found.iter().map(|f| f.as_ref().is_ok_and(|f| f.failures_seen).then_some(started_us)).collect();
        // What Redis alone answers; `Ok(None)` still needs MySQL.
        let mut known: Vec<Result<Option<Login>, Error>> = found
            .into_iter()
            .zip(requests)
            .map(|(found, request)| {
                found.map(|found| {
                    found.record.and_then(|record| self.recently_verified(record, request.password))
                })
            })
            .collect();
        self.admit_for_hashing(&prepared, &mut known, &mut held)?;
        let mut rows = self.find_logins(&prepared, &known);
        let steps: Vec<Result<Step, Error>> = known
            .into_iter()
            .zip(&prepared)
            .map(|(known, prepared)| {
                Ok(match known? {
                    Some(login) => Step::Known(login),
                    None => Step::FromMysql(match prepared.username.as_deref() {
                        Some(name) => rows.take(name)?,
                        None => None,
                    }),
                })
            })
            .collect();
        let mut verdicts = self.hash_checks(&steps, requests).into_iter();

        // The last round trip: sessions, counts, failures, releases, history.
        let mut finish = Batch::new();
        let mut outcomes = Vec::with_capacity(requests.len());
        // The attempts on existing accounts, for the history.
        let mut records: Vec<Attempt> = Vec::new();
        for (i, ((request, prepared), step)) in requests.iter().zip(&prepared).zip(steps).enumerate() {
            let verdict = verdicts.next().flatten();
            let known_user = match &step {
                Ok(Step::FromMysql(Some(row))) => Some(row.user_id),
                _ => None,
            };
            let outcome = step.and_then(|step| {
                let login = match step {
                    Step::Known(login) => login,
                    Step::FromMysql(row) => match self.verify_row(row, request.password, verdict)? {
                        Some(login) => login,
                        None => return Err(Error::BadCredentials),
                    },
                };
                let (token, record) =
                    self.open_session(&mut finish, &login, prepared, (held[i], clears_before[i]))?;
                records.push(record);
                Ok(Message::LoggedIn { token, profile: login.profile.profile })
            });
            let failure = match (&outcome, known_user) {
                (Err(Error::BadCredentials), Some(user_id)) => Some((user_id, Outcome::WrongPassword)),
                (Err(Error::TooManyAttempts { .. }), _) => Some((0, Outcome::Throttled)),
                _ => None,
            };
            if let (Some((user_id, outcome)), Some(username)) = (failure, &prepared.username) {
                records.push(prepared.attempt(user_id, username, outcome, String::new()));
            }
            let failures = prepared.failures();
            match &outcome {
                // The success scripts took the attempt out of its counters.
                Ok(_) => {}
                Err(Error::BadCredentials) => {
                    throttle::mark_failed(&mut finish, &failures, &prepared.member, session::unix_now_us());
                }
                // Refused (on one side: the other's places go back too), or
                // not checked (MySQL down, say): it was no failure.
                Err(_) => throttle::release(&mut finish, &failures, &prepared.member),
            }
            if outcome.is_err() {
                for side in prepared.sides() {
                    login_counters::release_in_flight(&mut finish, side, &prepared.member);
                }
            }
            outcomes.push(outcome);
        }
        count_address_successes(&mut finish, &prepared, &outcomes);
        let queued = record::queue_cmds(&mut finish, &self.shared.keys, &records);
        self.finish_batch(&finish, &mut outcomes, queued);
        Ok(outcomes)
    }

    /// Counts on their account's failures, in one round trip, the log-ins of
    /// a batch that will need a hash although the lookup found their record
    /// (the verified cache did not vouch for the password: a wrong one, or
    /// the first since this process started), before any hash: one past a
    /// limit is refused here ([`Error::TooManyAttempts`] in `known`) and costs
    /// no hash. The log-ins without a record were counted by the lookup, and
    /// every log-in's place in its address's failures was taken there too.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] if Redis is down.
    fn admit_for_hashing(
        &mut self,
        prepared: &[Prepared],
        known: &mut [Result<Option<Login>, Error>],
        held: &mut [bool],
    ) -> Result<(), Error> {
        let wanted: Vec<usize> = (0..prepared.len())
            .filter(|&i| matches!(known[i], Ok(None)) && !held[i] && prepared[i].user.is_some())
            .collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for &i in &wanted {
            let user: Vec<(String, Limit)> =
                prepared[i].user.iter().map(LoginCounters::failure_counter).collect();
            throttle::admit_cmds(&mut batch, &user, &prepared[i].member, throttle::Hold::InFlight);
        }
        let replies: Vec<i64> = self.redis.run(&batch)?;
        for (&i, reply) in wanted.iter().zip(replies) {
            match throttle::admitted(&[reply]) {
                Ok(()) => held[i] = true,
                Err(refused) => known[i] = Err(refused),
            }
        }
        Ok(())
    }

    /// Sends a batch's last pipeline and counts the sessions it opened; if
    /// it fails, none of the batch's log-ins stands (their sessions may
    /// exist, but no token is ever sent for them).
    fn finish_batch(
        &mut self,
        finish: &Batch,
        outcomes: &mut [Result<Message, Error>],
        queued: Option<record::Queued>,
    ) {
        if finish.is_empty() {
            return;
        }
        match self.redis.run::<Vec<u64>>(finish) {
            Ok(replies) => {
                // One reply per opened session, then the history queue's length.
                let opened = replies.len().saturating_sub(usize::from(queued.is_some()));
                for &ended in &replies[..opened] {
                    login_session::opened(ended);
                }
                if let Some(queued) = queued {
                    queued.report(replies.get(opened).copied().unwrap_or(0));
                    self.shared.history_wake.notify();
                }
            }
            Err(e) => {
                let opened = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
                let mut errors = Error::from(e).shared_by(opened).into_iter();
                for outcome in outcomes.iter_mut().filter(|outcome| outcome.is_ok()) {
                    *outcome = Err(errors.next().unwrap_or(Error::Unavailable(Dependency::Redis)));
                }
            }
        }
    }

    /// Adds a new session for `login` to `batch` ([`login_session::open_cmd`]:
    /// stored and capped in one step), the success counted on the account's
    /// counters (the address's are counted for the whole batch:
    /// [`count_address_successes`]), and, after a MySQL read, the log-in record
    /// and a warm profile cache for the log-ins and pages that follow.
    /// `(holds_failure, clears_before_us)` say what the account's counting
    /// takes with it ([`login_counters::Success`]). Returns the token and the
    /// attempt's history record.
    fn open_session(
        &self,
        batch: &mut Batch,
        login: &Login,
        prepared: &Prepared,
        (holds_failure, clears_before_us): (bool, Option<u64>),
    ) -> Result<(Secret, Attempt), Error> {
        let username = login.profile.profile.username.clone();
        let tag = AccountTag::of(&username);
        let (token, token_hash) = session::new_token(&tag)?;
        let lifetimes = self.shared.lifetimes;
        let now = session::unix_now();
        let session = Session { user_id: login.user_id, username, expires_at: now + lifetimes.max_secs };
        let keys = &self.shared.keys;
        let cap = self.shared.max_sessions_per_user;
        let meta = SessionMeta::new(now, prepared.client, &prepared.device).encode();
        let attempt = prepared.attempt(
            login.user_id,
            &session.username,
            Outcome::Success,
            device::public_id(&token_hash),
        );
        // The account's success is counted by the session's own script (one
        // slot); the address's is in another slot, counted for the batch.
        let account_success = prepared.user.as_ref().map(|counters| Success {
            counters,
            member: &prepared.member,
            holds_failure,
            clears_failures_before_us: clears_before_us,
        });
        login_session::open_cmd(
            batch,
            keys,
            (&tag, &token_hash, &session),
            (lifetimes, cap, &meta),
            account_success,
        );
        if login.from_mysql {
            login_record::store(batch, keys, &session.username, login.user_id, &login.stamp);
            profile_cache::store_cmd(batch, keys, login.user_id, &login.profile);
        }
        Ok((token, attempt))
    }

    /// The log-in, if Redis had everything it needs and this process verified
    /// this password for this stored hash recently.
    fn recently_verified(&self, record: login_record::Record, password: &Secret) -> Option<Login> {
        let profile = record.profile?;
        // A profile write still owed to Redis means the cached one is old.
        let owed = self.shared.unsynced().contains_key(&record.user_id);
        let hit = !owed && self.shared.verified.contains(record.user_id, &record.stamp, password.expose());
        hit.then_some(Login { user_id: record.user_id, stamp: record.stamp, profile, from_mysql: false })
    }

    /// The MySQL rows of the log-ins that Redis could not answer, read in
    /// one round trip.
    fn find_logins(&mut self, prepared: &[Prepared], known: &[Result<Option<Login>, Error>]) -> FoundRows {
        let wanted: Vec<&str> = prepared
            .iter()
            .zip(known)
            .filter(|(_, known)| matches!(known, Ok(None)))
            .filter_map(|(prepared, _)| prepared.username.as_deref())
            .collect();
        let mut unique = wanted.clone();
        unique.sort_unstable();
        unique.dedup();
        match unique.is_empty() {
            true => FoundRows::Found(HashMap::new()),
            false => match self.mysql.read(|c| users::find_logins(c, &unique)) {
                Ok(rows) => FoundRows::Found(rows),
                Err(e) => FoundRows::Failed(Error::from(e).shared_by(wanted.len()).into_iter()),
            },
        }
    }

    /// For each log-in, the outcome of its full password hash if it needs one
    /// (a row from MySQL that the verified cache does not vouch for, or an
    /// unknown username, checked against a hash nothing matches so that it
    /// costs the same), computed side by side, up to eight at a time
    /// ([`PasswordHasher::verify_many`]); `None` where no hash is needed.
    ///
    /// [`PasswordHasher::verify_many`]: crate::password::PasswordHasher::verify_many
    fn hash_checks(
        &self,
        steps: &[Result<Step, Error>],
        requests: &[LoginRequest<'_>],
    ) -> Vec<Option<Result<bool, PasswordError>>> {
        let cache = &self.shared.verified;
        let needed: Vec<Option<(&str, &str)>> = steps
            .iter()
            .zip(requests)
            .map(|(step, request)| match step {
                Ok(Step::FromMysql(Some(row)))
                    if !cache.contains(
                        row.user_id,
                        &password::stamp(&row.password_hash),
                        request.password.expose(),
                    ) =>
                {
                    Some((request.password.expose(), row.password_hash.as_str()))
                }
                Ok(Step::FromMysql(None)) => {
                    Some((request.password.expose(), self.shared.hasher.unknown_user_hash()))
                }
                _ => None,
            })
            .collect();
        let checks: Vec<(&str, &str)> = needed.iter().flatten().copied().collect();
        let mut verdicts = self.shared.hasher.verify_many(&checks).into_iter();
        needed.iter().map(|check| check.and_then(|_| verdicts.next())).collect()
    }

    /// The log-in, if MySQL knew the user (`row`) and the password matches;
    /// the full hash (or its `verdict`, computed beforehand) unless the
    /// verified cache spares it. Upgrades a hash made at a lower cost.
    fn verify_row(
        &mut self,
        row: Option<LoginRow>,
        password: &Secret,
        verdict: Option<Result<bool, PasswordError>>,
    ) -> Result<Option<Login>, Error> {
        let hasher = &self.shared.hasher;
        let cache = &self.shared.verified;
        let Some(row) = row else {
            // The hash an unknown username costs, unless `hash_checks` paid it.
            if verdict.is_none() {
                hasher.verify_nothing(password.expose());
            }
            return Ok(None);
        };
        let mut stamp = password::stamp(&row.password_hash);
        // A verdict means `hash_checks` found no cache hit and paid the hash.
        // Otherwise a hit means this exact password was verified against this
        // exact stored hash by this process recently; anything else pays the
        // full cost.
        let hashed = match verdict {
            Some(verdict) => Some(verdict?),
            None if cache.contains(row.user_id, &stamp, password.expose()) => None,
            None => Some(hasher.verify(password.expose(), &row.password_hash)?),
        };
        if let Some(matches) = hashed {
            if !matches {
                return Ok(None);
            }
            cache.remember(row.user_id, &stamp, password.expose());
        }

        if hasher.needs_rehash(&row.password_hash) {
            // The log-in succeeds even if the upgrade fails; it is tried again next time.
            let upgraded = hasher.hash(password.expose()).map_err(Error::from).and_then(|hash| {
                self.mysql.read(|c| users::update_password_hash(c, row.user_id, &hash))?;
                Ok(hash)
            });
            match upgraded {
                Ok(hash) => {
                    stamp = password::stamp(&hash);
                    cache.remember(row.user_id, &stamp, password.expose());
                }
                Err(e) => crate::log!("user {}: password hash upgrade failed: {e:?}", row.user_id),
            }
        }
        Ok(Some(Login { user_id: row.user_id, stamp, profile: row.profile, from_mysql: true }))
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

/// One log-in of a batch, as the request gave it.
#[derive(Debug, Clone, Copy)]
pub struct LoginRequest<'a> {
    /// The username as typed.
    pub username: &'a str,
    /// The password.
    pub password: &'a Secret,
    /// The client's address, for the per-address throttle and the history.
    pub client: Option<IpAddr>,
    /// The browser's User-Agent, for the device list and the history.
    pub user_agent: Option<&'a str>,
}

/// What a log-in request needs before Redis is asked.
struct Prepared {
    /// The lowercased username; `None` for a name that breaks the rules: it
    /// cannot exist, so it is answered like an unknown one, and gets no
    /// counter or record of its own.
    username: Option<String>,
    /// This attempt's member in its counters.
    member: String,
    /// The account's counters (if the username is valid).
    user: Option<LoginCounters>,
    /// The client address's counters (if the address is known).
    addr: Option<LoginCounters>,
    /// The client's address.
    client: Option<IpAddr>,
    /// Browser and OS from the User-Agent.
    device: Device,
}

impl Prepared {
    fn new(keys: &Keys, limits: &Limits, request: &LoginRequest<'_>) -> Prepared {
        let username = validate::username(request.username).ok();
        let user = username.as_deref().map(|name| LoginCounters::of_user(keys, limits, name));
        let addr = request.client.map(|addr| LoginCounters::of_addr(keys, limits, addr));
        let device = user_agent::parse(request.user_agent.map(user_agent::bounded));
        let member = throttle::new_member();
        Prepared { username, member, user, addr, client: request.client, device }
    }

    /// Both sides' counters, the account's first.
    fn sides(&self) -> impl Iterator<Item = &LoginCounters> {
        self.user.iter().chain(&self.addr)
    }

    /// Both sides' failure counters, as [`crate::throttle`] takes them.
    fn failures(&self) -> Vec<(String, Limit)> {
        self.sides().map(LoginCounters::failure_counter).collect()
    }

    /// This attempt's history record.
    fn attempt(&self, user_id: u64, username: &str, outcome: Outcome, session: String) -> Attempt {
        let time_ms = session::unix_now_ms();
        Attempt {
            attempt_id: record::new_attempt_id(time_ms),
            time_ms,
            user_id,
            username: username.to_owned(),
            ip: record::ip_text(self.client),
            browser: self.device.browser.to_owned(),
            os: self.device.os.to_owned(),
            method: Method::Password,
            outcome,
            session,
        }
    }
}

/// Adds to a batch's last pipeline the counting of its successes on their
/// addresses' counters: one script per address for all of its successful
/// log-ins (a NAT's or a proxy's many, a person's one). A password log-in
/// always holds a place in its address's failures, which it leaves.
fn count_address_successes(batch: &mut Batch, prepared: &[Prepared], outcomes: &[Result<Message, Error>]) {
    let succeeded = prepared.iter().zip(outcomes).filter(|(_, outcome)| outcome.is_ok());
    let by_address = login_counters::by_side(
        succeeded.filter_map(|(p, _)| p.addr.as_ref().map(|addr| (addr, p.member.as_str()))),
    );
    for (counters, members) in &by_address {
        let successes = Successes { counters, members, holds_failure: true, clears_failures_before_us: None };
        login_counters::succeed_cmd(batch, successes);
    }
}

/// The answer of [`Service::find_logins`] for a batch.
enum FoundRows {
    /// The rows MySQL has, keyed by username.
    Found(HashMap<String, LoginRow>),
    /// The query failed: one error for each log-in that needed it.
    Failed(std::vec::IntoIter<Error>),
}

impl FoundRows {
    /// The row of `username` (`None` if MySQL does not know it), or the
    /// query's error.
    fn take(&mut self, username: &str) -> Result<Option<LoginRow>, Error> {
        match self {
            // A name asked twice in one batch is found twice: clone, not remove.
            FoundRows::Found(rows) => Ok(rows.get(username).cloned()),
            FoundRows::Failed(errors) => Err(errors.next().unwrap_or(Error::Unavailable(Dependency::Mysql))),
        }
    }
}

/// Where a log-in of a batch stands once Redis and MySQL have answered.
enum Step {
    /// Redis and the verified cache answered it: no MySQL, no hash.
    Known(Login),
    /// It needs its MySQL row (`None`: no such user) checked.
    FromMysql(Option<LoginRow>),
}

/// A checked log-in, on its way to becoming a session.
struct Login {
    user_id: u64,
    /// The stamp of the user's stored password hash, for the log-in record.
    stamp: String,
    profile: Versioned,
    /// Whether it was read from MySQL (then the record and the profile cache
    /// are written back).
    from_mysql: bool,
}
