//! The throttles and the session cap under concurrency, against a real server,
//! MySQL and Redis: limits that hold exactly however many requests arrive at
//! the same moment, with attempts past a limit refused before any hash.

#[macro_use]
mod util;

use std::net::IpAddr;
use std::thread;

use proto::{ErrorCode, Message, Secret};
use util::{TestServer, all_at_once, error_code, new_key, redis_keys};

const PASSWORD: &str = "correct horse battery";

const HASHES: &str = "usermgmt_password_hashes_total";

/// How many replies were each of: logged in, wrong credentials, throttled.
fn tally(replies: &[Message]) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for reply in replies {
        match reply {
            Message::LoggedIn { .. } => counts.0 += 1,
            other => match error_code(other) {
                ErrorCode::BadCredentials => counts.1 += 1,
                ErrorCode::TooManyAttempts => counts.2 += 1,
                code => panic!("unexpected {code:?}: {other:?}"),
            },
        }
    }
    counts
}

fn login(username: &str, password: &str, client: Option<IpAddr>) -> Message {
    Message::Login { username: username.to_owned(), password: password.into(), client, user_agent: None }
}

/// Every log-in limit, on both sides, at one a minute: the tests that call
/// the lookup itself see each place count.
fn log_in_limits_of_one() -> tcpserver::throttle::Limits {
    let one = tcpserver::throttle::Limit { max_attempts: 1, window_secs: 60 };
    tcpserver::throttle::Limits {
        failures_per_user: one,
        failures_per_addr: one,
        logins_per_user: one,
        logins_per_addr: one,
        ..Default::default()
    }
}

/// A distinct documentation address per attempt, so that only the per-user limit applies.
fn address(i: usize) -> Option<IpAddr> {
    Some(IpAddr::from([198, 18, (i / 250) as u8, (i % 250) as u8 + 1]))
}

on_single_and_cluster! {
fn two_hundred_simultaneous_guesses_at_one_account_are_checked_exactly_five_times(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let victim = server.sign_up(&mut c, "victim", PASSWORD);
    let hashes_before = server.metric(HASHES);

    let guesses = (0..200).map(|i| login(&victim, &format!("guess-{i:04}"), address(i))).collect();
    let (ok, checked, throttled) = tally(&all_at_once(&server, guesses));
    assert_eq!((ok, checked, throttled), (0, 5, 195));
    assert_eq!(server.metric(HASHES) - hashes_before, 5, "a refused guess costs no hash");
    // Even the right password waits now.
    assert_eq!(error_code(&c.call(login(&victim, PASSWORD, None))), ErrorCode::TooManyAttempts);
}
}

on_single_and_cluster! {
fn two_hundred_simultaneous_guesses_from_one_address_are_checked_exactly_fifty_times(options) {
    let server = TestServer::start_with(options.clone());
    let attacker: IpAddr = "203.0.113.9".parse().unwrap();
    let hashes_before = server.metric(HASHES);
    // Two hundred different accounts (unknown ones cost a hash like known ones).
    let guesses =
        (0..200).map(|i| login(&server.username(&format!("a{i}")), PASSWORD, Some(attacker))).collect();
    let (ok, checked, throttled) = tally(&all_at_once(&server, guesses));
    assert_eq!((ok, checked, throttled), (0, 50, 150));
    assert_eq!(server.metric(HASHES) - hashes_before, 50);
}
}

on_single_and_cluster! {
/// One worker, so the four log-ins share one batch: the success among them
/// does not wipe the three failures recorded beside it.
fn a_success_in_a_batch_of_failures_does_not_reset_them(options) {
    let server = TestServer::start_with(options.clone().arg("--workers", 1));
    let mut c = server.connect();
    let username = server.sign_up(&mut c, "batched", PASSWORD);
    let mut bytes = Vec::new();
    for (i, password) in ["wrong-one", "wrong-two", "wrong-three", PASSWORD].iter().enumerate() {
        let frame = proto::Frame { request_id: 100 + i as u64, message: login(&username, password, None) };
        frame.encode(&mut bytes).expect("encodable");
    }
    c.write_raw(&bytes);
    let replies: Vec<Message> = (0..4).map(|_| c.recv().message).collect();
    assert_eq!(tally(&replies), (1, 3, 0), "{replies:?}");
    // Three failures stand: two more guesses, and then the account waits.
    for _ in 0..2 {
        assert_eq!(error_code(&c.call(login(&username, "wrong-again", None))), ErrorCode::BadCredentials);
    }
    assert_eq!(error_code(&c.call(login(&username, PASSWORD, None))), ErrorCode::TooManyAttempts);
}
}

on_single_and_cluster! {
fn successful_log_ins_of_one_account_are_throttled_exactly_under_concurrency(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let username = server.sign_up(&mut c, "looping", PASSWORD);
    // The first log-in fills the log-in record and the verified cache, so the
    // rest cost no hash: the case that used to let one account flood Redis.
    c.log_in(&username, PASSWORD);
    let attempts = (0..100).map(|i| login(&username, PASSWORD, address(i))).collect();
    let (ok, checked, throttled) = tally(&all_at_once(&server, attempts));
    assert_eq!((ok, checked, throttled), (29, 0, 71), "30 log-ins per 10 minutes, the first included");
}
}

on_single_and_cluster! {
/// Eight people of one office, five log-ins each at once: at most five per
/// account, so that only the address's limit is reached. (Eight log-ins of
/// one account at once would also reach the account's failure limit, five
/// attempts in flight; with the two counters in two hash slots a log-in
/// refused by one may hold the other's place for a moment, refusing more,
/// never fewer: see `two_limits_reached_at_once_never_let_more_through`.)
fn successful_log_ins_from_one_address_are_throttled_exactly_under_concurrency(options) {
    let server = TestServer::start_with(options.clone().arg("--logins-per-addr", "10/600"));
    let mut c = server.connect();
    let users: Vec<String> =
        (0..8).map(|i| server.sign_up(&mut c, &format!("office{i}"), PASSWORD)).collect();
    let office: IpAddr = "192.0.2.50".parse().unwrap();
    let attempts = (0..40).map(|i| login(&users[i % users.len()], PASSWORD, Some(office))).collect();
    let (ok, _, throttled) = tally(&all_at_once(&server, attempts));
    assert_eq!((ok, throttled), (10, 30));
    // Another address is not held up.
    assert!(matches!(
        c.call(login(&users[0], PASSWORD, "192.0.2.51".parse().ok())),
        Message::LoggedIn { .. }
    ));
}
}

on_single_and_cluster! {
/// Both an address's success limit and the accounts' failure limits
/// reached at the same moment: the account and the address are two hash
/// slots, judged by two scripts, and whatever happens between them no more
/// log-ins succeed than the address allows, and some do.
fn two_limits_reached_at_once_never_let_more_through(options) {
    let server = TestServer::start_with(options.clone().arg("--logins-per-addr", "10/600"));
    let mut c = server.connect();
    let users: Vec<String> =
        (0..5).map(|i| server.sign_up(&mut c, &format!("crowd{i}"), PASSWORD)).collect();
    let office: IpAddr = "192.0.2.60".parse().unwrap();
    let attempts = (0..40).map(|i| login(&users[i % users.len()], PASSWORD, Some(office))).collect();
    let (ok, checked, throttled) = tally(&all_at_once(&server, attempts));
    assert!((1..=10).contains(&ok) && checked == 0 && ok + throttled == 40, "{ok} {checked} {throttled}");
    // Nothing was held past the batches: the address lets exactly the rest through.
    let more = (0..10).map(|i| login(&users[i % users.len()], PASSWORD, Some(office))).collect();
    let (more_ok, _, _) = tally(&all_at_once(&server, more));
    assert_eq!(ok + more_ok, 10);
}
}

on_single_and_cluster! {
/// A sign-up counts for the whole window, whatever its outcome: its place is
/// never left "in flight", where the purge of places abandoned by a killed
/// server would free it after a minute and make the limit one per minute.
fn sign_ups_are_counted_for_the_window_not_held_in_flight(options) {
    let server = TestServer::start_with(options.clone());
    let addr: IpAddr = "198.51.100.23".parse().unwrap();
    let mut client = server.connect();
    for i in 0..3 {
        let reply = client.call(Message::SignUp {
            username: server.username(&format!("w{i}")),
            password: PASSWORD.into(),
            nickname: None,
            client: Some(addr),
            key: new_key(),
        });
        assert!(matches!(reply, Message::SignedUp(_)), "{reply:?}");
    }
    let counter = server.keys().signups_by_addr(addr);
    let places: Vec<(String, f64)> =
        redis::cmd("ZRANGE").arg(&counter).arg(0).arg(-1).arg("WITHSCORES").query(&mut server.env.redis()).unwrap();
    assert_eq!(places.len(), 3, "{places:?}");
    assert!(places.iter().all(|(_, score)| *score > 0.0), "sign-ups held in flight: {places:?}");
}
}

on_single_and_cluster! {
fn simultaneous_sign_ups_from_one_address_stop_exactly_at_the_limit(options) {
    let server = TestServer::start_with(options.clone());
    let addr: IpAddr = "2001:db8:77::1".parse().unwrap();
    let attempts = (0..40)
        .map(|i| Message::SignUp {
            username: server.username(&format!("s{i}")),
            password: PASSWORD.into(),
            nickname: None,
            client: Some(addr),
            key: new_key(),
        })
        .collect();
    let replies = all_at_once(&server, attempts);
    let signed_up = replies.iter().filter(|r| matches!(r, Message::SignedUp(_))).count();
    let throttled =
        replies.iter().filter(|r| matches!(r, Message::Error(e) if e.code == ErrorCode::TooManyAttempts));
    assert_eq!((signed_up, throttled.count()), (20, 20));
}
}

on_single_and_cluster! {
/// Log-ins of one account, twenty at a time, two thousand in all, with the
/// rate limit raised so that only the cap stands in the way: at most 32
/// sessions stay alive, the oldest are ended, and the account's keys in Redis
/// stay small.
fn two_thousand_log_ins_of_one_account_leave_at_most_the_cap_of_sessions(options) {
    const CAP: usize = 32;
    let server = TestServer::start_with(options.clone().arg("--logins-per-user", "100000/600"));
    let mut c = server.connect();
    let username = server.sign_up(&mut c, "many", PASSWORD);
    let first = c.log_in(&username, PASSWORD).0;

    let threads: Vec<_> = (0..20)
        .map(|_| {
            let mut client = server.connect();
            let username = username.clone();
            thread::spawn(move || (0..100).map(|_| client.log_in(&username, PASSWORD).0).last())
        })
        .collect();
    let lasts: Vec<Secret> = threads.into_iter().filter_map(|t| t.join().expect("client thread")).collect();
    let newest = c.log_in(&username, PASSWORD).0;

    let mut redis = server.env.redis();
    let sessions = redis_keys(&mut redis, &format!("{}sess:", server.redis_prefix));
    assert!(sessions.len() <= CAP, "{} sessions alive", sessions.len());
    let profile = |token: &Secret| Message::GetProfile { token: token.clone(), username: None };
    assert_eq!(error_code(&c.call(profile(&first))), ErrorCode::Unauthenticated, "the oldest was ended");
    assert!(matches!(c.call(profile(&newest)), Message::ProfileReply(_)));
    assert_eq!(lasts.len(), 20);
    // The log-in history's queue is not the account's: it is emptied into
    // MariaDB within about a second (and bounded on its own); wait for that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.queued_history() > 0 {
        assert!(std::time::Instant::now() < deadline, "the history queue was not drained");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Everything this server keeps in Redis, byte for byte.
    let used: u64 = redis_keys(&mut redis, &server.redis_prefix)
        .iter()
        .map(|key| {
            redis::cmd("MEMORY").arg("USAGE").arg(key).query::<Option<u64>>(&mut redis).unwrap().unwrap_or(0)
        })
        .sum();
    assert!(used < 64 * 1024, "{used} bytes in Redis for one account's 2,002 log-ins");
    assert!(server.metric("usermgmt_sessions_evicted_total") >= 2002 - CAP as u64);
}
}

on_single_and_cluster! {
/// A batch sent twice (a connection that died after Redis ran it; on a
/// cluster, a pipeline partly refused with NOSCRIPT or MOVED): the second
/// lookup of an attempt finds its own places and is judged as the first,
/// neither refused by them nor counted twice.
fn a_resent_lookup_is_judged_as_the_first_one(options) {
    use tcpserver::login_counters::LoginCounters;
    use tcpserver::login_record::{Lookup, lookup};
    let server = TestServer::start_with(options);
    let mut link = tcpserver::db::redis::RedisLink::new(server.env.target(), 0);
    let keys = server.keys();
    let limits = log_in_limits_of_one();
    let name = server.username("resent");
    let user = LoginCounters::of_user(&keys, &limits, &name);
    let addr = LoginCounters::of_addr(&keys, &limits, "192.0.2.77".parse().unwrap());
    let attempt = |member| Lookup { username: Some(&name), user: Some(&user), addr: Some(&addr), member };
    for _ in 0..2 {
        let found = lookup(&mut link, &keys, &[attempt("first")]).expect("Redis");
        assert!(matches!(&found[..], [Ok(f)] if f.admitted), "{found:?}");
    }
    // Another attempt finds every limit (one) taken.
    let found = lookup(&mut link, &keys, &[attempt("second")]).expect("Redis");
    assert!(matches!(&found[..], [Err(tcpserver::error::Error::TooManyAttempts { .. })]), "{found:?}");
}
}

on_single_and_cluster! {
/// Places left behind (a batch that failed halfway, a tcpserver killed
/// mid-batch) are purged only when their counter looks full: one a minute
/// old refuses no one, on either limit or either side, while one still
/// young holds its place.
fn places_left_behind_refuse_no_one_once_a_minute_old(options) {
    use tcpserver::db::redis::Batch;
    use tcpserver::login_counters::LoginCounters;
    use tcpserver::login_record::{Lookup, lookup};
    use tcpserver::throttle::IN_FLIGHT_MAX_MS;
    let server = TestServer::start_with(options);
    let mut link = tcpserver::db::redis::RedisLink::new(server.env.target(), 0);
    let keys = server.keys();
    let limits = log_in_limits_of_one();
    let now_ms = tcpserver::session::unix_now_ms();
    let stale = now_ms - IN_FLIGHT_MAX_MS - 1_000;
    let name = server.username("left");
    let user = LoginCounters::of_user(&keys, &limits, &name);
    let addr = LoginCounters::of_addr(&keys, &limits, "192.0.2.78".parse().unwrap());
    // Every counter of both sides holds a place left behind a minute ago.
    let leave_places = |sides: [&LoginCounters; 2], at: u64, member: &str| {
        let mut batch = Batch::new();
        for side in sides {
            batch.cmd("ZADD").arg(&side.failures).arg(-(at as i64)).arg(member).ignore();
            batch.cmd("EXPIRE").arg(&side.failures).arg(60).ignore();
            batch.cmd("ZADD").arg(&side.in_flight).arg(at).arg(member).ignore();
        }
        tcpserver::db::redis::RedisLink::new(server.env.target(), 1).run::<()>(&batch).expect("Redis");
    };
    leave_places([&user, &addr], stale, "left-behind");
    let attempt = |member| Lookup { username: Some(&name), user: Some(&user), addr: Some(&addr), member };
    let found = lookup(&mut link, &keys, &[attempt("after-a-minute")]).expect("Redis");
    assert!(matches!(&found[..], [Ok(f)] if f.admitted), "{found:?}");

    // A young place left behind still counts: the next attempt is refused,
    // and takes no place of its own.
    let name = server.username("young");
    let user = LoginCounters::of_user(&keys, &limits, &name);
    let addr = LoginCounters::of_addr(&keys, &limits, "192.0.2.79".parse().unwrap());
    leave_places([&user, &addr], now_ms, "young");
    let attempt = |member| Lookup { username: Some(&name), user: Some(&user), addr: Some(&addr), member };
    let found = lookup(&mut link, &keys, &[attempt("too-soon")]).expect("Redis");
    assert!(matches!(&found[..], [Err(tcpserver::error::Error::TooManyAttempts { .. })]), "{found:?}");
    for side in [&user, &addr] {
        let mut batch = Batch::new();
        batch.cmd("ZSCORE").arg(&side.in_flight).arg("too-soon");
        batch.cmd("ZSCORE").arg(&side.failures).arg("too-soon");
        let held: Vec<Option<f64>> = link.run(&batch).expect("Redis");
        assert_eq!(held, [None, None], "a refused attempt holds no place ({})", side.in_flight);
    }
}
}
