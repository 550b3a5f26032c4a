//! Scan-to-log-in, the worker's part: make a code, let a logged-in phone scan
//! and approve or deny it, and check a desktop's wait, redeeming an approved
//! code for a new session as a password log-in makes one.
//!
//! Waiting is not done here: a check that finds the code where the desktop
//! last saw it says so ([`Check::unchanged`]) and the reactor parks the wait
//! ([`crate::qr_waits`]) until the code changes or its deadline comes.

use std::net::IpAddr;

use proto::{Message, QrState, Secret};

use super::Service;
use crate::db::redis::Batch;
use crate::device::{self, SessionMeta};
use crate::error::{Dependency, Error};
use crate::history::record::{self, Attempt, Method, Outcome};
use crate::keys::AccountTag;
use crate::login_counters::{self, LoginCounters, Successes};
use crate::login_session;
use crate::qr_store::{self, Actor, Redemption, secret_hash};
use crate::session::{self, Session};
use crate::throttle;
use crate::user_agent;

/// What a check of a waited-on code found.
#[derive(Debug)]
pub struct Check {
    /// The answer to send, now or when the wait ends.
    pub reply: Message,
    /// True when the code is still in the state the desktop last saw: the
    /// reactor parks the wait instead of answering.
    pub unchanged: bool,
    /// Milliseconds the code has left (the latest a parked wait must look again).
    pub ttl_ms: u64,
}

impl Service {
    /// Makes a code for the desktop that `user_agent` and `client` describe.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyAttempts`] past `--qr-codes-per-addr`, [`Error::Unavailable`].
    pub fn qr_create(&mut self, user_agent: &str, client: Option<IpAddr>) -> Result<Message, Error> {
        let keys = &self.shared.keys;
        let counters: Vec<_> = client
            .map(|ip| (keys.qr_codes_by_addr(ip), self.shared.limits.qr_codes_per_addr))
            .into_iter()
            .collect();
        throttle::admit(&mut self.redis, &counters)?;
        let ttl = self.shared.qr_ttl_secs;
        let code = qr_store::create(&mut self.redis, keys, ttl, user_agent, client)?;
        Ok(Message::QrCreated {
            key: Secret::new(code.key),
            binding: Secret::new(code.binding),
            expires_in_secs: ttl,
        })
    }

    /// A logged-in phone opened a code: marks it scanned and returns what the
    /// phone shows before Approve and Deny.
    ///
    /// # Errors
    ///
    /// [`Error::Unauthenticated`], [`Error::QrExpired`], [`Error::QrUsed`],
    /// [`Error::Unavailable`].
    pub fn qr_scan(&mut self, token: &Secret, key: &Secret) -> Result<Message, Error> {
        let key_hash = secret_hash(key.expose()).ok_or(Error::QrExpired)?;
        let (session, profile) = self.session_and_profile(token, None)?;
        let actor = Actor {
            user_id: session.user_id,
            username: &session.username,
            nickname: &profile.nickname,
            avatar: profile.avatar.as_deref(),
        };
        let scanned = qr_store::scan(&mut self.redis, &self.shared.keys, &key_hash, actor)?;
        if scanned.state != QrState::Scanned {
            return Err(Error::QrUsed);
        }
        Ok(Message::QrDetails {
            state: scanned.state,
            user_agent: scanned.user_agent,
            ip: scanned.ip,
            created_unix: scanned.created_unix,
        })
    }

    /// Approves or denies a code from a logged-in phone, counted like a
    /// log-in per account and per address (`--logins-per-user`,
    /// `--logins-per-addr`, on counters of their own).
    ///
    /// # Errors
    ///
    /// [`Error::Unauthenticated`], [`Error::TooManyAttempts`],
    /// [`Error::QrExpired`], [`Error::QrUsed`], [`Error::Unavailable`].
    pub fn qr_decide(
        &mut self,
        token: &Secret,
        key: &Secret,
        approve: bool,
        client: Option<IpAddr>,
    ) -> Result<Message, Error> {
        let key_hash = secret_hash(key.expose()).ok_or(Error::QrExpired)?;
        // The session and its profile in one round trip, then the throttle,
        // then the decision: three in all.
        let (session, profile) = self.session_and_profile(token, None)?;
        let keys = &self.shared.keys;
        let limits = &self.shared.limits;
        let mut counters = vec![(keys.qr_decisions_by_user(session.user_id), limits.logins_per_user)];
        counters.extend(client.map(|ip| (keys.qr_decisions_by_addr(ip), limits.logins_per_addr)));
        throttle::admit(&mut self.redis, &counters)?;
        let actor = Actor {
            user_id: session.user_id,
            username: &session.username,
            nickname: &profile.nickname,
            avatar: profile.avatar.as_deref(),
        };
        let state = qr_store::decide(&mut self.redis, &self.shared.keys, &key_hash, approve, actor)?;
        crate::metrics::QR_DECISIONS.add(1);
        Ok(Message::QrDecided { state })
    }

    /// Looks at a waited-on code: answers at once unless it is still in the
    /// state `seen`; a confirmed code held by this binding secret is redeemed
    /// for a new session on the way.
    ///
    /// # Errors
    ///
    /// [`Error::QrNotYours`] for a wrong binding secret,
    /// [`Error::TooManyAttempts`] when a log-in limit refuses the session,
    /// [`Error::Unavailable`].
    pub fn qr_check(
        &mut self,
        key: &Secret,
        binding: &Secret,
        seen: QrState,
        client: Option<IpAddr>,
    ) -> Result<Check, Error> {
        let expired =
            || Check { reply: status(QrState::Expired, None, None, None), unchanged: false, ttl_ms: 0 };
        let Some(key_hash) = secret_hash(key.expose()) else { return Ok(expired()) };
        let binding_hash = secret_hash(binding.expose()).ok_or(Error::QrNotYours)?;
        let snapshot = qr_store::check(&mut self.redis, &self.shared.keys, &key_hash, &binding_hash)?;
        if snapshot.state == QrState::Expired {
            return Ok(expired());
        }
        if !snapshot.bound {
            return Err(Error::QrNotYours);
        }
        let (nickname, avatar) = (snapshot.nickname, snapshot.avatar);
        if let Some(redemption) = snapshot.redeemed {
            let token = self.open_redemption(&key_hash, redemption, client)?;
            let reply = status(QrState::Confirmed, nickname, avatar, Some(token));
            return Ok(Check { reply, unchanged: false, ttl_ms: 0 });
        }
        let unchanged = snapshot.state == seen;
        Ok(Check {
            reply: status(snapshot.state, nickname, avatar, None),
            unchanged,
            ttl_ms: snapshot.ttl_ms,
        })
    }

    /// Opens the session of a code the check just redeemed, through
    /// [`login_session::OPEN`] (counted against the successful-log-in limits,
    /// capped per account), returning the token. A session the limits refuse
    /// gives the code back (`consumed -> confirmed`), so the desktop may try
    /// again once they open.
    fn open_redemption(
        &mut self,
        key_hash: &str,
        Redemption { user_id, username, user_agent }: Redemption,
        client: Option<IpAddr>,
    ) -> Result<Secret, Error> {
        let keys = &self.shared.keys;
        let limits = self.shared.limits;
        let user = LoginCounters::of_user(keys, &limits, &username);
        let addr = client.map(|ip| LoginCounters::of_addr(keys, &limits, ip));
        let sides: Vec<&LoginCounters> = std::iter::once(&user).chain(&addr).collect();
        let member = throttle::new_member();
        // Places under both success limits first (one round trip, one
        // script per side); the session only once both are held.
        let mut reserve = Batch::new();
        for side in &sides {
            login_counters::reserve_cmd(&mut reserve, side, &[member.as_str()], false);
        }
        let waits: Result<Vec<Vec<u64>>, Error> = self.redis.run(&reserve).map_err(Error::from);
        let wait = match &waits {
            Ok(waits) => waits.iter().flatten().copied().max().unwrap_or(0),
            Err(_) => 0,
        };
        let opened = match waits {
            Err(e) => Err(e),
            Ok(_) if wait > 0 => {
                crate::metrics::THROTTLED.add(1);
                Err(Error::TooManyAttempts { retry_after_secs: u32::try_from(wait).unwrap_or(u32::MAX) })
            }
            Ok(_) => self.open_redeemed(&sides, &member, (user_id, username, &user_agent), client),
        };
        match opened {
            Ok(token) => Ok(token),
            Err(e) => {
                // Give the places and the code back so the desktop can try
                // again; if even that fails, Redis is away, the places are
                // purged in a minute and the code expires unused.
                let mut undo = Batch::new();
                for side in &sides {
                    login_counters::release_in_flight(&mut undo, side, &member);
                }
                qr_store::unredeem_cmd(&mut undo, &self.shared.keys, key_hash);
                if self.redis.run::<()>(&undo).is_err() {
                    return Err(Error::Unavailable(Dependency::Redis));
                }
                Err(e)
            }
        }
    }

    /// Opens the session of a redeemed code whose places are held: the
    /// session, the success counted on both sides, and its history record,
    /// in one round trip ([`login_session::OPEN`]).
    fn open_redeemed(
        &mut self,
        sides: &[&LoginCounters],
        member: &str,
        (user_id, username, user_agent): (u64, String, &str),
        client: Option<IpAddr>,
    ) -> Result<Secret, Error> {
        let keys = &self.shared.keys;
        let tag = AccountTag::of(&username);
        let (token, token_hash) = session::new_token(&tag)?;
        let now = session::unix_now();
        // The session is the desktop's: its browser and address, recorded as a log-in by QR code.
        let device = user_agent::parse(Some(user_agent::bounded(user_agent)));
        let meta = SessionMeta::new(now, client, &device).encode();
        let time_ms = session::unix_now_ms();
        let attempt = Attempt {
            attempt_id: record::new_attempt_id(time_ms),
            time_ms,
            user_id,
            username: username.clone(),
            ip: record::ip_text(client),
            browser: device.browser.to_owned(),
            os: device.os.to_owned(),
            method: Method::Qr,
            outcome: Outcome::Success,
            session: device::public_id(&token_hash),
        };
        let lifetimes = self.shared.lifetimes;
        let session = Session { user_id, username, expires_at: now + lifetimes.max_secs };
        let cap = self.shared.max_sessions_per_user;
        let mut batch = Batch::new();
        login_session::open_cmd(
            &mut batch,
            keys,
            (&tag, &token_hash, &session),
            (lifetimes, cap, &meta),
            None,
        );
        for side in sides {
            // A scan-to-log-in needs no hash, so it took no failure place.
            let successes = Successes {
                counters: side,
                members: &[member],
                holds_failure: false,
                clears_failures_before_us: None,
            };
            login_counters::succeed_cmd(&mut batch, successes);
        }
        let queued = record::queue_cmds(&mut batch, keys, std::slice::from_ref(&attempt));
        let replies: Vec<u64> = self.redis.run(&batch)?;
        login_session::opened(replies.first().copied().unwrap_or(0));
        if let Some(queued) = queued {
            queued.report(replies.get(1).copied().unwrap_or(0));
        }
        self.shared.history_wake.notify();
        Ok(token)
    }
}

/// A status reply.
fn status(
    state: QrState,
    nickname: Option<String>,
    avatar: Option<String>,
    token: Option<Secret>,
) -> Message {
    Message::QrStatus { state, nickname, avatar, token }
}
