//! The load the fleet tests put on the edge while they kill a process: one
//! thread per user, each sending one request at a time on a connection of its
//! own ([`super::request`], never retried), recording when each was sent and
//! answered and how.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::Fleet;
use crate::util::random_hex;
use crate::util::services::signal;

/// The password of every account the load signs up.
pub const PASSWORD: &str = "correct horse battery";

/// Pause between two sign-ups of one load thread: steady traffic that leaves
/// the two cores to the fleet.
pub const PACE: Duration = Duration::from_millis(20);

/// One request of the load: when it was sent and answered, and how.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The name signed up.
    pub username: String,
    /// When the request was sent.
    pub sent: Instant,
    /// When its answer (or the failure) came.
    pub done: Instant,
    /// The status, or `None` if no answer came.
    pub status: Option<u16>,
}

/// Sign-ups of fresh names through `edge` on `threads` threads until `stop`.
pub fn sign_up_load(edge: SocketAddr, threads: usize, stop: &AtomicBool) -> Vec<Outcome> {
    let prefix = format!("f{}", random_hex(6));
    thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let prefix = &prefix;
                s.spawn(move || {
                    let mut outcomes = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let username = format!("{prefix}.{t}.{i}");
                        let sent = Instant::now();
                        let status = super::sign_up(edge, &username, PASSWORD);
                        outcomes.push(Outcome { username, sent, done: Instant::now(), status });
                        i += 1;
                        thread::sleep(PACE);
                    }
                    outcomes
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("load thread")).collect()
    })
}

/// The kinds of request of the mixed load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    ProfileRead,
    NicknameChange,
    LogIn,
    SignUp,
}

/// What each load thread sends, in turn: mostly profile reads, as a site's
/// traffic is, and one of each write.
pub const MIX: [Op; 6] =
    [Op::ProfileRead, Op::NicknameChange, Op::ProfileRead, Op::LogIn, Op::ProfileRead, Op::SignUp];

/// One request of the mixed load.
#[derive(Debug, Clone)]
pub struct Sent {
    /// What it was.
    pub op: Op,
    /// The load user it was sent for.
    pub user: usize,
    /// The username signed up, or the nickname set.
    pub key: String,
    /// When it was sent.
    pub sent: Instant,
    /// When its answer (or the failure) came.
    pub done: Instant,
    /// The status, or `None` if no answer came.
    pub status: Option<u16>,
}

impl Sent {
    /// Whether it was answered 200 or 201.
    pub fn succeeded(&self) -> bool {
        matches!(self.status, Some(200 | 201))
    }
}

/// A user of the mixed load, signed up and logged in through the edge.
#[derive(Debug, Clone)]
pub struct LoadUser {
    /// Its name.
    pub username: String,
    /// Its session token, sent as `Authorization: Bearer`.
    pub token: String,
}

/// `count` new users, signed up and logged in through `edge`.
pub fn load_users(edge: SocketAddr, count: usize) -> Vec<LoadUser> {
    let prefix = format!("m{}", random_hex(6));
    (0..count)
        .map(|i| {
            let username = format!("{prefix}.{i}");
            assert_eq!(super::sign_up(edge, &username, PASSWORD), Some(201), "sign-up of {username}");
            let token = super::log_in(edge, &username, PASSWORD).expect("log-in of a new user");
            LoadUser { username, token }
        })
        .collect()
}

/// One thread per user sending [`MIX`] through `edge` until `stop`.
pub fn mixed_load(edge: SocketAddr, users: &[LoadUser], stop: &AtomicBool) -> Vec<Sent> {
    let signups = format!("s{}", random_hex(6));
    thread::scope(|s| {
        let threads: Vec<_> = users
            .iter()
            .enumerate()
            .map(|(u, user)| {
                let signups = &signups;
                s.spawn(move || {
                    let auth = format!("Bearer {}", user.token);
                    let mut sent = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let op = MIX[i % MIX.len()];
                        let start = Instant::now();
                        let (key, status) = match op {
                            Op::ProfileRead => (
                                String::new(),
                                super::request_status(
                                    edge,
                                    "GET",
                                    "/profile",
                                    &[("Accept", "application/json"), ("Authorization", &auth)],
                                    b"",
                                ),
                            ),
                            Op::NicknameChange => {
                                let nickname = format!("n{u}x{i}");
                                let form = format!("nickname={nickname}");
                                let status = super::api_post(
                                    edge,
                                    "/updateNickName",
                                    &form,
                                    &[("Authorization", &auth)],
                                );
                                (nickname, status.map(|(s, _)| s))
                            }
                            Op::LogIn => {
                                // A seeded account's, so that the load user's
                                // session is never the oldest one evicted by
                                // the per-account cap.
                                let seeded = 1 + (u * 97 + i) % super::SEED_ACCOUNTS as usize;
                                let form = format!("username=user{seeded:08}&password=pass{seeded:08}");
                                (String::new(), super::api_post(edge, "/login", &form, &[]).map(|(s, _)| s))
                            }
                            Op::SignUp => {
                                let username = format!("{signups}.{u}.{i}");
                                let status = super::sign_up(edge, &username, PASSWORD);
                                (username, status)
                            }
                        };
                        sent.push(Sent { op, user: u, key, sent: start, done: Instant::now(), status });
                        i += 1;
                        thread::sleep(PACE);
                    }
                    sent
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().expect("load thread")).collect()
    })
}

/// Runs the mixed load, kills `pid` with SIGKILL after `before`, and stops
/// the load `after` the kill.
///
/// Returns what was sent, when the signal was sent, and, for a process
/// `listening` on an address, when that address began to refuse
/// connections (else the signal's time again): until then the kernel is
/// still tearing the killed process down and its listening socket still
/// completes handshakes into its backlog, so what HAProxy connects to it in
/// that time is lost like a request in flight on it (measured: a sign-up the
/// load sent after the signal, answered 502).
pub fn load_across_kill(
    fleet: &Fleet,
    users: &[LoadUser],
    pid: u32,
    listening: Option<SocketAddr>,
    before: Duration,
    after: Duration,
) -> (Vec<Sent>, Instant, Instant) {
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let load = s.spawn(|| mixed_load(fleet.edge, users, &stop));
        thread::sleep(before);
        signal(pid, libc::SIGKILL);
        let killed_at = Instant::now();
        let gone_at = listening.map_or(killed_at, |addr| refusing_since(addr, Duration::from_secs(2)));
        thread::sleep(after.saturating_sub(killed_at.elapsed()));
        stop.store(true, Ordering::SeqCst);
        (load.join().expect("load"), killed_at, gone_at)
    })
}

/// When `addr` first refused a connection, trying every millisecond for at
/// most `limit`.
fn refusing_since(addr: SocketAddr, limit: Duration) -> Instant {
    let started = Instant::now();
    while started.elapsed() < limit {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(50)) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Instant::now(),
            _ => thread::sleep(Duration::from_millis(1)),
        }
    }
    panic!("{addr} still took connections {limit:?} after its process was killed");
}

/// What failed, for the test output.
pub fn summary(sent: &[Sent]) -> String {
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for s in sent.iter().filter(|s| !s.succeeded()) {
        *failed.entry(format!("{:?} {:?}", s.op, s.status)).or_default() += 1;
    }
    let count: usize = failed.values().sum();
    format!("{count} of {} requests failed, by operation and status: {failed:?}", sent.len())
}
