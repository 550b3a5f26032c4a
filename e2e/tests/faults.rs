//! The whole system under faults of its dependencies and of itself, against
//! real servers: Redis and MariaDB crashing and coming back, pooled connections
//! closed by the other side while idle, SIGTERM under load, and a back end
//! slower than its callers.
//!
//! Every fault is done to a private Redis or MariaDB that the test starts on a
//! free port (`util::services`), never to the shared ones. Each test prints the
//! figures it measured (`--nocapture` shows them); the README's "Failure
//! behaviour" table quotes them.

mod util;

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use util::probe::{Outcome, Probe, loopback_source, token_of};
use util::services::{PrivateMariadb, PrivateRedis, is_alive, rss_kib, signal, wait_exit};
use util::{Options, Stack, TestEnv};

const PASSWORD: &str = "correct horse battery";

/// httpserver's default `--rpc-timeout-ms`: no request may wait longer for the back end.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between two requests of one load thread, so that a few threads make
/// steady traffic without taking both cores from the tests running beside.
const PACE: Duration = Duration::from_millis(10);

/// How long a dependency stays down in the restart tests.
const OUTAGE: Duration = Duration::from_secs(3);

/// The generous bound on recovery: from the dependency being back to the first
/// successful request, with no server restarted.
const RECOVERY_BOUND: Duration = Duration::from_secs(15);

/// After this long past the dependency's return, every request must succeed.
const SETTLED_AFTER: Duration = Duration::from_secs(5);

/// Runs `step` over and over on a thread of `scope` until `stop`, collecting outcomes.
fn load<'scope, 'env>(
    scope: &'scope thread::Scope<'scope, 'env>,
    stop: &'env AtomicBool,
    mut step: impl FnMut(&mut Vec<Outcome>) + Send + 'scope,
) -> thread::ScopedJoinHandle<'scope, Vec<Outcome>> {
    scope.spawn(move || {
        let mut outcomes = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            step(&mut outcomes);
            thread::sleep(PACE);
        }
        outcomes
    })
}

/// Neither server's resident memory (KiB, `(tcpserver, httpserver)`) grew by
/// 64 MiB or more under an overload.
fn assert_memory_bounded(before: (u64, u64), after: (u64, u64)) {
    let grown = |before: u64, after: u64| after.saturating_sub(before) / 1024;
    let (back_grew, front_grew) = (grown(before.0, after.0), grown(before.1, after.1));
    assert!(back_grew < 64 && front_grew < 64, "memory grew {back_grew} MiB / {front_grew} MiB");
}

/// Once the load has dropped, a single caller is served again, every time;
/// returns how long the first success took.
fn assert_recovers(stack: &Stack, token: &str) -> Duration {
    let calm = Instant::now();
    let mut probe = Probe::new(stack.addr);
    eventually("a success after the overload", || probe.profile(token).ok());
    let recovered = calm.elapsed();
    for _ in 0..20 {
        let outcome = probe.profile(token);
        assert!(outcome.ok(), "after the overload: {}", outcome.describe());
    }
    recovered
}

/// Joins load threads and merges their outcomes in order of start.
fn collect(handles: Vec<thread::ScopedJoinHandle<'_, Vec<Outcome>>>) -> Vec<Outcome> {
    let mut all: Vec<Outcome> = handles.into_iter().flat_map(|h| h.join().expect("load thread")).collect();
    all.sort_by_key(|o| o.started);
    all
}

/// A sign-up step: each attempt from a new loopback address (so the per-address
/// sign-up throttle does not refuse a test that signs up hundreds), with a
/// username unique to the stack. Records `(username, outcome)`.
fn sign_up_step(stack: &Stack, tag: &str, counter: &AtomicU32, out: &mut Vec<(String, Outcome)>) {
    let n = counter.fetch_add(1, Ordering::SeqCst);
    let username = stack.username(&format!("{tag}{n}"));
    let outcome = Probe::from_source(stack.addr, loopback_source(n)).sign_up(&username, PASSWORD);
    out.push((username, outcome));
}

/// Usernames with the stack's prefix that are in the `users` table of `conn`.
fn stored_usernames(conn: &mut mysql::Conn, stack: &Stack) -> Vec<String> {
    let pattern = format!("{}%", stack.user_prefix.replace('_', "\\_"));
    conn.exec("SELECT username FROM users WHERE username LIKE ?", (pattern,)).expect("read users")
}

/// Checks that every acknowledged sign-up is stored and every answer was a
/// success or a retryable 503; returns (acknowledged, failed but stored).
fn check_sign_ups(sign_ups: &[(String, Outcome)], stored: &[String]) -> (usize, usize) {
    let mut acknowledged = 0;
    let mut unknown_but_stored = 0;
    for (username, outcome) in sign_ups {
        let is_stored = stored.contains(username);
        if outcome.status() == Some(201) {
            acknowledged += 1;
            assert!(is_stored, "acknowledged sign-up of {username} was lost");
        } else {
            assert!(outcome.is_retryable_503(), "sign-up of {username}: {}", outcome.describe());
            unknown_but_stored += usize::from(is_stored);
        }
    }
    (acknowledged, unknown_but_stored)
}

/// The outcomes that started after `from` and ended before `to`.
fn within(outcomes: &[Outcome], from: Instant, to: Instant) -> Vec<&Outcome> {
    outcomes.iter().filter(|o| o.started >= from && o.ended() <= to).collect()
}

fn max_latency<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Duration {
    outcomes.into_iter().map(|o| o.latency).max().unwrap_or_default()
}

/// Time from `from` to the end of the first successful outcome started after it.
fn first_success_after(outcomes: &[Outcome], from: Instant, op: Option<&str>) -> Option<Duration> {
    outcomes
        .iter()
        .filter(|o| o.started >= from && o.ok() && op.is_none_or(|op| o.op == op))
        .map(|o| o.ended() - from)
        .min()
}

/// Time from `from` to the start of the last failed outcome after it: until
/// then some requests still failed (a worker whose reconnection backoff had
/// not run out yet).
fn last_failure_after(outcomes: &[Outcome], from: Instant) -> Duration {
    outcomes
        .iter()
        .filter(|o| o.started >= from && !o.ok())
        .map(|o| o.started - from)
        .max()
        .unwrap_or_default()
}

/// Checks that requests which started `SETTLED_AFTER` past `back` all succeeded.
fn assert_settled(outcomes: &[Outcome], back: Instant) {
    let settled: Vec<&Outcome> = outcomes.iter().filter(|o| o.started >= back + SETTLED_AFTER).collect();
    assert!(!settled.is_empty(), "the load ran on after recovery");
    if let Some(failed) = settled.iter().find(|o| !o.ok()) {
        panic!("{SETTLED_AFTER:?} after recovery a request still failed: {}", failed.describe());
    }
}

#[test]
fn redis_restart_gives_quick_503s_and_service_resumes_by_itself() {
    let mut redis = PrivateRedis::start();
    let stack = Stack::start_with(Options::under_load().back("--redis-url", redis.url()));
    let (back_pid, front_pid) = stack.pids();
    let users: Vec<String> = (0..3).map(|i| stack.sign_up(&format!("r{i}"), PASSWORD)).collect();
    let stop = AtomicBool::new(false);
    // Set just before Redis comes back empty: a session from before is gone then.
    let restarted = AtomicBool::new(false);

    let (killing, down, back, outcomes) = thread::scope(|s| {
        let handles: Vec<_> = users
            .iter()
            .map(|username| {
                let (stack, restarted) = (&stack, &restarted);
                let mut probe = Probe::new(stack.addr);
                load(s, &stop, move |out| {
                    let epoch = restarted.load(Ordering::SeqCst);
                    let login = probe.login(username, PASSWORD);
                    let token = token_of(&login);
                    out.push(login);
                    if let Some(token) = token {
                        let mut profile = probe.profile(&token);
                        if profile.status() == Some(401) && epoch != restarted.load(Ordering::SeqCst) {
                            profile.op = "profile (session lost with Redis)";
                        }
                        out.push(profile);
                    }
                })
            })
            .collect();
        thread::sleep(Duration::from_millis(1500));
        let killing = Instant::now();
        redis.kill();
        // Dead and reaped: whatever starts from now on meets no Redis.
        let down = Instant::now();
        thread::sleep(OUTAGE);
        restarted.store(true, Ordering::SeqCst);
        let back = Instant::now();
        redis.restart();
        eprintln!("redis restart: redis-server answering {:?} after its start", back.elapsed());
        thread::sleep(SETTLED_AFTER + Duration::from_secs(2));
        stop.store(true, Ordering::SeqCst);
        (killing, down, back, collect(handles))
    });

    let before: Vec<&Outcome> = outcomes.iter().filter(|o| o.ended() < killing).collect();
    assert!(before.len() >= 10, "the load ran before the fault");
    if let Some(failed) = before.iter().find(|o| !o.ok()) {
        panic!("before the fault: {}", failed.describe());
    }
    let during = within(&outcomes, down, back);
    assert!(during.len() >= 10, "the load ran during the outage ({} requests)", during.len());
    for outcome in &during {
        assert!(outcome.is_retryable_503(), "during the outage: {}", outcome.describe());
        assert_eq!(outcome.code(), Some(13), "Redis unavailable: {}", outcome.describe());
    }
    let worst = max_latency(during.iter().copied());
    assert!(worst < RPC_TIMEOUT, "a request hung {worst:?} during the outage");
    for outcome in &outcomes {
        let expected = outcome.ok()
            || outcome.is_retryable_503()
            || (outcome.op == "profile (session lost with Redis)" && outcome.status() == Some(401));
        assert!(expected, "{}", outcome.describe());
    }
    let recovery = first_success_after(&outcomes, back, Some("login")).expect("service resumed");
    assert!(recovery < RECOVERY_BOUND, "first log-in only {recovery:?} after Redis came back");
    assert_settled(&outcomes, back);
    assert!(is_alive(back_pid) && is_alive(front_pid), "no server was restarted");
    let failed = outcomes.iter().filter(|o| !o.ok()).count();
    eprintln!(
        "redis restart: {} requests, {} during the {OUTAGE:?} outage (all 503, slowest {worst:?}), \
         {failed} failed in all; first log-in {recovery:?} after Redis was restarted, last failure {:?} after",
        outcomes.len(),
        during.len(),
        last_failure_after(&outcomes, back)
    );
}

#[test]
fn mariadb_crash_gives_quick_503s_loses_no_acknowledged_sign_up_and_service_resumes() {
    let mut db = PrivateMariadb::start();
    let stack = Stack::start_with(
        Options::under_load()
            .back("--mysql-url", db.url())
            .back("--mysql-password-file", db.password_file().display()),
    );
    let (back_pid, front_pid) = stack.pids();
    let (username, token) = stack.user_with_token("reader", PASSWORD);
    let counter = AtomicU32::new(0);
    let stop = AtomicBool::new(false);

    let (down, restart, back, sign_ups, outcomes) = thread::scope(|s| {
        let sign_up_threads: Vec<_> = (0..2)
            .map(|t| {
                let (stack, counter, stop) = (&stack, &counter, &stop);
                s.spawn(move || {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        sign_up_step(stack, &format!("s{t}_"), counter, &mut out);
                        thread::sleep(PACE);
                    }
                    out
                })
            })
            .collect();
        let mut login_probe = Probe::new(stack.addr);
        let mut profile_probe = Probe::new(stack.addr);
        let (username, token) = (&username, &token);
        let handles = vec![
            load(s, &stop, move |out| out.push(login_probe.login(username, PASSWORD))),
            load(s, &stop, move |out| out.push(profile_probe.profile(token))),
        ];
        thread::sleep(Duration::from_millis(1500));
        db.kill();
        // Dead and reaped: whatever starts from now on meets no MariaDB.
        let down = Instant::now();
        thread::sleep(OUTAGE);
        let restart = Instant::now();
        db.restart();
        let back = Instant::now();
        eprintln!("mariadb crash: mariadbd (crash recovery) accepting {:?} after its start", back - restart);
        thread::sleep(SETTLED_AFTER + Duration::from_secs(2));
        stop.store(true, Ordering::SeqCst);
        let mut sign_ups: Vec<(String, Outcome)> =
            sign_up_threads.into_iter().flat_map(|h| h.join().expect("sign-up thread")).collect();
        sign_ups.sort_by_key(|(_, o)| o.started);
        (down, restart, back, sign_ups, collect(handles))
    });

    let stored = stored_usernames(&mut db.root(), &stack);
    let (acknowledged, unknown_but_stored) = check_sign_ups(&sign_ups, &stored);
    let sign_up_outcomes: Vec<Outcome> = sign_ups.into_iter().map(|(_, o)| o).collect();
    for outcome in outcomes.iter().chain(&sign_up_outcomes) {
        assert!(outcome.ok() || outcome.is_retryable_503(), "{}", outcome.describe());
    }
    // The outage ends when the restart begins: mariadbd may take a request a
    // moment before `restart()` sees it accept connections and returns.
    let writes_during = within(&sign_up_outcomes, down, restart);
    let logins_during: Vec<&Outcome> =
        within(&outcomes, down, restart).into_iter().filter(|o| o.op == "login").collect();
    assert!(writes_during.len() >= 5 && logins_during.len() >= 5, "the load ran during the outage");
    for outcome in &writes_during {
        assert!(outcome.is_retryable_503(), "during the outage: {}", outcome.describe());
        assert_eq!(outcome.code(), Some(13), "MariaDB unavailable: {}", outcome.describe());
    }
    // A log-in needs MariaDB unless the back end can check it from what Redis
    // holds; either it succeeds or it says MariaDB is unavailable.
    for outcome in &logins_during {
        let unavailable = outcome.is_retryable_503() && outcome.code() == Some(13);
        assert!(outcome.ok() || unavailable, "during the outage: {}", outcome.describe());
    }
    let logins_refused = logins_during.iter().filter(|o| !o.ok()).count();
    let worst = max_latency(writes_during.iter().chain(&logins_during).copied());
    assert!(worst < RPC_TIMEOUT, "a request hung {worst:?} during the outage");
    // Sessions and the profile cache live in Redis: reading a profile needs no MariaDB.
    for outcome in within(&outcomes, down, restart).into_iter().filter(|o| o.op == "profile") {
        assert!(outcome.ok(), "profile read during the MariaDB outage: {}", outcome.describe());
    }
    let login_back = first_success_after(&outcomes, back, Some("login")).expect("log-ins resumed");
    let sign_up_back = first_success_after(&sign_up_outcomes, back, None).expect("sign-ups resumed");
    assert!(login_back.max(sign_up_back) < RECOVERY_BOUND, "recovery took {login_back:?} / {sign_up_back:?}");
    assert_settled(&outcomes, back);
    assert_settled(&sign_up_outcomes, back);
    assert!(is_alive(back_pid) && is_alive(front_pid), "no server was restarted");
    eprintln!(
        "mariadb crash: {} sign-ups ({acknowledged} acknowledged, all stored; {unknown_but_stored} answered 503 \
         but committed); during the outage {} sign-ups all 503 and {logins_refused} of {} log-ins 503 (slowest \
         {worst:?}); first log-in {login_back:?} and first sign-up {sign_up_back:?} after mariadbd accepted \
         connections again, last failure {:?} after",
        sign_up_outcomes.len(),
        writes_during.len(),
        logins_during.len(),
        last_failure_after(&outcomes, back).max(last_failure_after(&sign_up_outcomes, back))
    );
}

/// One request of each kind, three times over; every one must succeed.
fn burst(stack: &Stack, token: &str, username: &str, counter: &AtomicU32, round: &str) {
    let mut probe = Probe::new(stack.addr);
    for i in 0..3 {
        let mut sign_ups = Vec::new();
        sign_up_step(stack, "i", counter, &mut sign_ups);
        let nickname = format!("{round} {i}");
        for outcome in [
            probe.profile(token),
            probe.login(username, PASSWORD),
            probe.nickname(token, &nickname),
            sign_ups.pop().expect("one sign-up").1,
        ] {
            assert!(outcome.ok(), "after {round}: {}", outcome.describe());
        }
    }
}

/// Polls `done` every 100 ms for up to ten seconds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen within 10 s");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn connections_closed_by_redis_or_mariadb_while_idle_fail_no_request() {
    let redis = PrivateRedis::start();
    let db = PrivateMariadb::start();
    let stack = Stack::start_with(
        Options::under_load()
            .back("--redis-url", redis.url())
            .back("--mysql-url", db.url())
            .back("--mysql-password-file", db.password_file().display()),
    );
    let (username, token) = stack.user_with_token("idle", PASSWORD);
    let counter = AtomicU32::new(0);
    burst(&stack, &token, &username, &counter, "warm-up");
    let mut admin = redis.conn().expect("Redis admin connection");
    let mut root = db.root();
    let app_connections = |root: &mut mysql::Conn| -> Vec<u64> {
        root.query("SELECT id FROM information_schema.processlist WHERE user = 'usermgmt'")
            .expect("processlist")
    };

    // CLIENT KILL closes every client connection but the admin's own.
    let killed: u64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query(&mut admin).unwrap();
    assert!(killed >= 1, "tcpserver had Redis connections to kill");
    burst(&stack, &token, &username, &counter, "CLIENT KILL");

    // KILL of each application connection, as an administrator would.
    let ids = app_connections(&mut root);
    assert!(!ids.is_empty(), "tcpserver had MariaDB connections to kill");
    for id in &ids {
        root.query_drop(format!("KILL {id}")).expect("KILL");
    }
    burst(&stack, &token, &username, &counter, "KILL");

    // Idle timeouts: Redis `timeout`, MariaDB `wait_timeout` (for connections
    // made from now on, so the old ones are killed once more first).
    redis::cmd("CONFIG").arg("SET").arg("timeout").arg(1).query::<()>(&mut admin).unwrap();
    root.query_drop("SET GLOBAL wait_timeout = 1").unwrap();
    for id in app_connections(&mut root) {
        let _ = root.query_drop(format!("KILL {id}"));
    }
    burst(&stack, &token, &username, &counter, "KILL before wait_timeout");
    eventually("MariaDB closing idle connections", || app_connections(&mut db.root()).is_empty());
    // Redis's `timeout` spares pub/sub clients (tcpserver's scan-to-log-in
    // subscriber): only the normal ones are counted, the check's own among them.
    eventually("Redis closing idle connections", || {
        let mut check = redis.conn().expect("Redis check connection");
        let list: String =
            redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("normal").query(&mut check).unwrap();
        list.lines().filter(|l| !l.trim().is_empty()).count() == 1
    });
    burst(&stack, &token, &username, &counter, "idle timeouts");
    let mut root = db.root();
    root.query_drop("SET GLOBAL wait_timeout = 28800").unwrap();

    let logs = stack.logs();
    assert!(logs.contains("idle Redis connection was lost"), "the Redis faults were met:\n{logs}");
    assert!(logs.contains("idle MySQL connection was lost"), "the MariaDB faults were met:\n{logs}");
    eprintln!(
        "idle connections: Redis CLIENT KILL ({killed} killed), MariaDB KILL ({} killed), Redis timeout 1 s \
         and MariaDB wait_timeout 1 s: {} requests after them, none failed",
        ids.len(),
        4 * 3 * 4
    );
}

/// The load of the SIGTERM tests: sign-ups, nickname changes (each thread on
/// its own user, numbered), and profile reads.
struct WriteLoad {
    sign_ups: Vec<(String, Outcome)>,
    /// Per user: its username, and (number, outcome) of each nickname change.
    nicknames: Vec<(String, Vec<(u32, Outcome)>)>,
    reads: Vec<Outcome>,
}

impl WriteLoad {
    fn all(&self) -> impl Iterator<Item = &Outcome> {
        self.sign_ups
            .iter()
            .map(|(_, o)| o)
            .chain(self.nicknames.iter().flat_map(|(_, n)| n.iter().map(|(_, o)| o)))
            .chain(&self.reads)
    }

    /// Every acknowledged sign-up is stored, and each user's stored nickname is
    /// the last acknowledged one or a later attempt (whose outcome the client
    /// could not know). Returns the number of acknowledged writes.
    fn check_nothing_acknowledged_was_lost(&self, stack: &Stack) -> usize {
        let env = TestEnv::load();
        let mut conn = mysql::Conn::new(mysql::Opts::from_url(&env.mysql_url).unwrap()).expect("MySQL");
        let stored = stored_usernames(&mut conn, stack);
        let mut acknowledged = 0;
        for (username, outcome) in &self.sign_ups {
            if outcome.status() == Some(201) {
                acknowledged += 1;
                assert!(stored.contains(username), "acknowledged sign-up of {username} was lost");
            }
        }
        for (username, changes) in &self.nicknames {
            let Some(last_ack) = changes.iter().rev().find(|(_, o)| o.ok()).map(|(n, _)| *n) else {
                continue;
            };
            acknowledged += changes.iter().filter(|(_, o)| o.ok()).count();
            let nickname: String = conn
                .exec_first("SELECT nickname FROM users WHERE username = ?", (username,))
                .unwrap()
                .expect("the user exists");
            let stored: u32 = nickname.trim_start_matches("nick ").parse().expect("a numbered nickname");
            assert!(stored >= last_ack, "{username}: nickname {stored} stored, {last_ack} was acknowledged");
        }
        acknowledged
    }
}

/// Runs the write load, calls `fault` after a second (it returns when the fault
/// is over), keeps the load on for half a second more, and returns what the
/// fault returned and the load's outcomes.
fn under_write_load<T: Send>(stack: &Stack, fault: impl FnOnce() -> T + Send) -> (T, WriteLoad) {
    let users: Vec<(String, String)> =
        (0..2).map(|i| stack.user_with_token(&format!("w{i}"), PASSWORD)).collect();
    let counter = AtomicU32::new(0);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let sign_up_threads: Vec<_> = (0..2)
            .map(|t| {
                let (stack, counter, stop) = (stack, &counter, &stop);
                s.spawn(move || {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        sign_up_step(stack, &format!("s{t}_"), counter, &mut out);
                        thread::sleep(PACE);
                    }
                    out
                })
            })
            .collect();
        let nickname_threads: Vec<_> = users
            .iter()
            .map(|(username, token)| {
                let (stack, stop) = (stack, &stop);
                s.spawn(move || {
                    let mut probe = Probe::new(stack.addr);
                    let mut out = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        out.push((n, probe.nickname(token, &format!("nick {n}"))));
                        thread::sleep(PACE);
                    }
                    (username.clone(), out)
                })
            })
            .collect();
        let mut probe = Probe::new(stack.addr);
        let token = &users[0].1;
        let reader = load(s, &stop, move |out| out.push(probe.profile(token)));
        thread::sleep(Duration::from_secs(1));
        let result = fault();
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let load = WriteLoad {
            sign_ups: sign_up_threads.into_iter().flat_map(|h| h.join().expect("sign-ups")).collect(),
            nicknames: nickname_threads.into_iter().map(|h| h.join().expect("nicknames")).collect(),
            reads: reader.join().expect("reads"),
        };
        (result, load)
    })
}

/// What a SIGTERM test observed.
struct Termination {
    signalled: Instant,
    /// Whether a new connection was refused while the process still ran.
    refused_while_draining: bool,
    status: std::process::ExitStatus,
    took: Duration,
}

/// Makes Redis sleep (so requests pile up in flight; for less than
/// tcpserver's 2 s `MAX_QUEUE_WAIT`, so that they are run, not shed), then sends
/// SIGTERM to `child` after `delay`, checks that new connections to `addr`
/// are refused while it drains, and waits for it to exit.
fn terminate_with_requests_in_flight(
    redis: &PrivateRedis,
    mut child: std::process::Child,
    addr: SocketAddr,
) -> Termination {
    let mut sleeper = redis.conn().expect("Redis connection");
    let hold = thread::spawn(move || redis::cmd("DEBUG").arg("SLEEP").arg(1.4).query::<()>(&mut sleeper));
    thread::sleep(Duration::from_secs(1));
    signal(child.id(), libc::SIGTERM);
    let signalled = Instant::now();
    let mut refused_while_draining = false;
    while signalled.elapsed() < Duration::from_secs(2) {
        let refused = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err();
        if refused {
            refused_while_draining = child.try_wait().expect("try_wait").is_none();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let (status, took) = wait_exit(&mut child, Duration::from_secs(20));
    hold.join().expect("DEBUG SLEEP thread").expect("DEBUG SLEEP");
    Termination { signalled, refused_while_draining, status, took }
}

/// Requests that were sent well before the signal and had no answer yet
/// (`DEBUG SLEEP` holds them) must all be answered with a success.
fn assert_in_flight_finished<'a>(load: &'a WriteLoad, t: &Termination) -> Vec<&'a Outcome> {
    let in_flight: Vec<&Outcome> = load
        .all()
        .filter(|o| o.started + Duration::from_millis(500) < t.signalled && o.ended() > t.signalled)
        .collect();
    assert!(!in_flight.is_empty(), "requests were in flight at SIGTERM");
    for outcome in &in_flight {
        assert!(outcome.ok(), "in flight at SIGTERM: {}", outcome.describe());
    }
    in_flight
}

#[test]
fn sigterm_to_tcpserver_under_load_finishes_in_flight_requests_and_loses_no_acknowledged_write() {
    let redis = PrivateRedis::start();
    let mut stack = Stack::start_with(Options::under_load().back("--redis-url", redis.url()));
    let child = stack.take_backend();
    let addr = stack.backend_addr;
    let (t, load) = under_write_load(&stack, || terminate_with_requests_in_flight(&redis, child, addr));

    assert!(t.status.success(), "tcpserver exited with {}", t.status);
    assert!(t.took < Duration::from_secs(10), "tcpserver took {:?} to stop", t.took);
    assert!(t.refused_while_draining, "tcpserver stopped accepting before it exited");
    let in_flight = assert_in_flight_finished(&load, &t).len();
    // httpserver stays up: every request got an answer, a success or a retryable 503.
    for outcome in load.all() {
        assert!(outcome.ok() || outcome.is_retryable_503(), "{}", outcome.describe());
        assert!(outcome.latency < RPC_TIMEOUT + Duration::from_secs(1), "{}", outcome.describe());
    }
    let acknowledged = load.check_nothing_acknowledged_was_lost(&stack);
    eprintln!(
        "SIGTERM to tcpserver: exit 0 {:?} after the signal; {in_flight} requests in flight all answered; \
         {acknowledged} acknowledged writes all stored",
        t.took
    );
}

#[test]
fn sigterm_to_httpserver_under_load_finishes_in_flight_requests_and_loses_no_acknowledged_write() {
    let redis = PrivateRedis::start();
    let mut stack = Stack::start_with(Options::under_load().back("--redis-url", redis.url()));
    let child = stack.take_front();
    let addr = stack.addr;
    let (t, load) = under_write_load(&stack, || terminate_with_requests_in_flight(&redis, child, addr));

    assert!(t.status.success(), "httpserver exited with {}", t.status);
    assert!(t.took < Duration::from_secs(10), "httpserver took {:?} to stop", t.took);
    assert!(t.refused_while_draining, "httpserver stopped accepting before it exited");
    let in_flight = assert_in_flight_finished(&load, &t);
    for outcome in &in_flight {
        // So that the client does not send another request into the exit.
        let close = outcome.reply.as_ref().ok().and_then(|r| r.header("connection"));
        assert_eq!(close, Some("close"), "in flight at SIGTERM: {}", outcome.describe());
    }
    let in_flight = in_flight.len();
    for outcome in load.all() {
        // After the signal a request may find no server (refused), never a hang.
        let refused = outcome.started > t.signalled && outcome.reply.is_err();
        assert!(outcome.ok() || outcome.is_retryable_503() || refused, "{}", outcome.describe());
        assert!(outcome.latency < RPC_TIMEOUT + Duration::from_secs(1), "{}", outcome.describe());
    }
    let acknowledged = load.check_nothing_acknowledged_was_lost(&stack);
    eprintln!(
        "SIGTERM to httpserver: exit 0 {:?} after the signal; {in_flight} requests in flight all answered; \
         {acknowledged} acknowledged writes all stored",
        t.took
    );
}

#[test]
fn a_back_end_slower_than_its_callers_gives_quick_503s_bounded_memory_and_recovers() {
    let redis = PrivateRedis::start();
    let stack = Stack::start_with(
        Options::under_load()
            .back("--redis-url", redis.url())
            .back("--workers", 1)
            .back("--queue", 4)
            // More RPC connections than callers: what is measured is tcpserver's
            // full queue, not callers waiting for a connection (the next test).
            .front("--rpc-pool", 32),
    );
    let (back_pid, front_pid) = stack.pids();
    let (username, token) = stack.user_with_token("busy", PASSWORD);
    let mut warm = Probe::new(stack.addr);
    for _ in 0..20 {
        assert!(warm.profile(&token).ok());
    }
    let rss_before = (rss_kib(back_pid), rss_kib(front_pid));
    let stop = AtomicBool::new(false);
    let slow = AtomicBool::new(true);

    let (slow_for, outcomes) = thread::scope(|s| {
        // Redis answers only between sleeps of 200 ms: the one worker does about
        // five requests a second, far fewer than sixteen callers ask for
        // (log-ins and profile reads: a worker may take several profile reads
        // at once, but a log-in alone).
        let slow_redis = s.spawn(|| {
            let mut conn = redis.conn().expect("Redis connection");
            let start = Instant::now();
            while slow.load(Ordering::SeqCst) {
                redis::cmd("DEBUG").arg("SLEEP").arg(0.2).query::<()>(&mut conn).expect("DEBUG SLEEP");
            }
            start.elapsed()
        });
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let mut probe = Probe::new(stack.addr);
                let (username, token) = (&username, &token);
                load(s, &stop, move |out| {
                    out.push(probe.login(username, PASSWORD));
                    out.push(probe.profile(token));
                })
            })
            .collect();
        thread::sleep(Duration::from_secs(8));
        stop.store(true, Ordering::SeqCst);
        let outcomes = collect(handles);
        slow.store(false, Ordering::SeqCst);
        (slow_redis.join().expect("slow Redis"), outcomes)
    });
    let rss_after = (rss_kib(back_pid), rss_kib(front_pid));

    let overloaded: Vec<&Outcome> = outcomes.iter().filter(|o| o.code() == Some(12)).collect();
    assert!(overloaded.len() >= 10, "a full queue answered Overloaded ({} times)", overloaded.len());
    for outcome in &outcomes {
        assert!(outcome.ok() || outcome.is_retryable_503(), "{}", outcome.describe());
        assert!(outcome.latency < RPC_TIMEOUT, "a caller waited {:?}", outcome.latency);
    }
    let mut latencies: Vec<Duration> = overloaded.iter().map(|o| o.latency).collect();
    latencies.sort_unstable();
    let median = latencies[latencies.len() / 2];
    assert!(median < Duration::from_secs(1), "Overloaded is answered at once, not after a wait ({median:?})");
    assert_memory_bounded(rss_before, rss_after);

    let recovered = assert_recovers(&stack, &token);
    let ok = outcomes.iter().filter(|o| o.ok()).count();
    eprintln!(
        "overload: {} requests over {slow_for:?} of slow Redis, {ok} served, {} Overloaded (503 + Retry-After; \
         median {median:?}, slowest {:?}), others 503 Unavailable; RSS tcpserver {} -> {} KiB, httpserver \
         {} -> {} KiB; served again {recovered:?} after the load stopped",
        outcomes.len(),
        overloaded.len(),
        latencies.last().copied().unwrap_or_default(),
        rss_before.0,
        rss_after.0,
        rss_before.1,
        rss_after.1
    );
}

/// The other overload: tcpserver's queue has room, but the back end is slower
/// than its callers (one worker, and a Redis that answers only between
/// half-second sleeps, so a batch of up to 16 nickname changes, two Redis
/// round trips, takes the worker about 1 s, while 96 callers keep six
/// batches' worth waiting: the later ones wait well past the limit, on a
/// loaded machine as on an idle one). A request that waited
/// longer than the queue's limit (2 s) is answered 503 with `Retry-After`
/// (code 12, Overloaded) instead of being run, so callers hear within about
/// that time rather than at their 5 s call timeout, and the workers only spend
/// time on requests still worth answering.
#[test]
fn a_back_end_slower_than_its_callers_sheds_requests_that_waited_too_long() {
    /// Longer than the default 5 s, so that a loaded test machine cannot turn a
    /// shed request (2 s in the queue, then up to a worker's run) into a 504.
    const CALL_TIMEOUT: Duration = Duration::from_secs(8);
    let redis = PrivateRedis::start();
    let stack = Stack::start_with(
        Options::under_load()
            .back("--redis-url", redis.url())
            .back("--workers", 1)
            .front("--rpc-timeout-ms", CALL_TIMEOUT.as_millis()),
    );
    let (back_pid, front_pid) = stack.pids();
    let (_, token) = stack.user_with_token("queue", PASSWORD);
    let rss_before = (rss_kib(back_pid), rss_kib(front_pid));
    let stop = AtomicBool::new(false);
    let slow = AtomicBool::new(true);

    let outcomes = thread::scope(|s| {
        let slow_redis = s.spawn(|| {
            let mut conn = redis.conn().expect("Redis connection");
            while slow.load(Ordering::SeqCst) {
                redis::cmd("DEBUG").arg("SLEEP").arg(0.5).query::<()>(&mut conn).expect("DEBUG SLEEP");
            }
        });
        let handles: Vec<_> = (0..96)
            .map(|i| {
                let mut probe = Probe::new(stack.addr);
                let token = &token;
                // Each a real change: one that sets the nickname the
                // profile already has is a no-op, answered without the
                // writes whose slowness this test needs.
                let mut sent = 0u64;
                load(s, &stop, move |out| {
                    sent += 1;
                    out.push(probe.nickname(token, &format!("caller {i} #{sent}")))
                })
            })
            .collect();
        thread::sleep(Duration::from_secs(6));
        stop.store(true, Ordering::SeqCst);
        let outcomes = collect(handles);
        slow.store(false, Ordering::SeqCst);
        slow_redis.join().expect("slow Redis");
        outcomes
    });
    let rss_after = (rss_kib(back_pid), rss_kib(front_pid));

    let shed: Vec<&Outcome> = outcomes.iter().filter(|o| o.code() == Some(12)).collect();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for outcome in &outcomes {
        *seen.entry(format!("{:?}", outcome.code())).or_default() += 1;
    }
    assert!(
        !shed.is_empty(),
        "no request that waited past the queue's limit was turned away (codes: {seen:?})"
    );
    for outcome in &outcomes {
        assert!(outcome.ok() || outcome.is_retryable_503(), "{}", outcome.describe());
        // Before the caller's own timeout: a 503 to act on, never a 504.
        assert!(outcome.latency < CALL_TIMEOUT, "{}", outcome.describe());
    }
    assert_memory_bounded(rss_before, rss_after);

    let recovered = assert_recovers(&stack, &token);
    let ok = outcomes.iter().filter(|o| o.ok()).count();
    eprintln!(
        "back end slower than its callers: {} requests, {ok} served, {} got 503 Overloaded after {:?} to {:?} \
         (call timeout {CALL_TIMEOUT:?}), slowest answer {:?}; RSS tcpserver {} -> {} KiB, httpserver {} -> {} KiB; \
         served again {recovered:?} after the load stopped",
        outcomes.len(),
        shed.len(),
        shed.iter().map(|o| o.latency).min().unwrap_or_default(),
        max_latency(shed.iter().copied()),
        max_latency(&outcomes),
        rss_before.0,
        rss_after.0,
        rss_before.1,
        rss_after.1
    );
}

/// Redis at its `maxmemory` with `noeviction` (as `scripts/services.sh` sets
/// it): writes are refused, so new log-ins get a quick 503 and nothing is
/// evicted; once memory is free, everything works again, the sessions from
/// before included.
#[test]
fn a_full_redis_gives_quick_503s_evicts_nothing_and_recovers() {
    let redis = PrivateRedis::start();
    let mut conn = redis.conn().expect("private Redis");
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory-policy").arg("noeviction").query(&mut conn).unwrap();
    let stack = Stack::start_with(Options::under_load().back("--redis-url", redis.url()));
    let (username, token) = stack.user_with_token("full", PASSWORD);
    let keys_before: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();

    let info: String = redis::cmd("INFO").arg("memory").query(&mut conn).unwrap();
    let used_memory: u64 = info
        .lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO");
    // Full: the limit is below what Redis already holds.
    let _: () =
        redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(used_memory / 2).query(&mut conn).unwrap();
    let mut probe = Probe::new(stack.addr);
    let login = probe.login(&username, PASSWORD);
    assert!(login.is_retryable_503(), "log-in with Redis full: {}", login.describe());
    assert_eq!(login.code(), Some(13), "{}", login.describe());
    assert!(login.latency < Duration::from_secs(1), "{}", login.describe());
    let keys_full: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(keys_full, keys_before, "nothing evicted, nothing added");
    let read = probe.profile(&token);
    assert!(read.ok(), "profile reads go on while Redis is full: {}", read.describe());

    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).query(&mut conn).unwrap();
    assert!(probe.profile(&token).ok(), "the session from before the fault still works");
    assert!(probe.login(&username, PASSWORD).ok(), "log-ins work again");
}
