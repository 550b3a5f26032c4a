//! The history drainer against real Redis and MariaDB: records move from the
//! queue into `logins` exactly once, even when a round is repeated after a
//! crash between its COMMIT and its trim, and attempts on names without an
//! account (or on an account deleted meanwhile) leave no row.
//!
//! Each test drains a queue under a prefix of its own, beside the server
//! that made its accounts (whose own drainer never sees that queue).

#[macro_use]
mod util;

use mysql::prelude::Queryable;
use tcpserver::db::redis::RedisLink;
use tcpserver::history::drain::Drainer;
use tcpserver::history::record::{Attempt, Method, Outcome, new_attempt_id};
use tcpserver::keys::{HISTORY_QUEUES, Keys};
use util::{TestEnv, TestRedis, TestServer, random_hex};

const PASSWORD: &str = "correct horse battery";

/// A drainer of its own queues, and their key layout.
fn drainer(env: &TestEnv) -> (Drainer, Keys) {
    let (url, password) = env.split_mysql_url();
    let opts = tcpserver::db::mysql::options(&url, Some(&password)).expect("MySQL options");
    let keys = Keys::new(format!("umtest:hist:{}:", random_hex(8)));
    (Drainer::new(opts, 0, RedisLink::new(env.target(), 0), keys.clone()), keys)
}

/// A server with one account signed up on it, and a drainer of queues of
/// its own beside it.
struct Drained {
    server: TestServer,
    username: String,
    id: u64,
    mysql: mysql::Conn,
    redis: TestRedis,
    drainer: Drainer,
    keys: Keys,
}

impl Drained {
    fn start(server: TestServer, name: &str) -> Drained {
        let mut client = server.connect();
        let username = server.sign_up(&mut client, name, PASSWORD);
        let mut mysql = server.env.mysql();
        let id = user_id(&mut mysql, &username);
        let (drainer, keys) = drainer(&server.env);
        let redis = server.env.redis();
        Drained { server, username, id, mysql, redis, drainer, keys }
    }
}

/// Records left in all the queues.
fn queued(redis: &mut TestRedis, keys: &Keys) -> u64 {
    keys.history_queues()
        .iter()
        .map(|queue| redis::cmd("LLEN").arg(queue).query::<u64>(redis).expect("LLEN"))
        .sum()
}

fn attempt(user_id: u64, username: &str, outcome: Outcome) -> Attempt {
    let time_ms = tcpserver::session::unix_now_ms();
    Attempt {
        attempt_id: new_attempt_id(time_ms),
        time_ms,
        user_id,
        username: username.to_owned(),
        ip: "192.0.2.10".into(),
        browser: "Firefox".into(),
        os: "Linux".into(),
        method: Method::Password,
        outcome,
        session: String::new(),
    }
}

/// Queues the attempts as tcpserver's batches may: each to another queue,
/// in turn from the last, so that a round reads them out of their order.
fn push(redis: &mut TestRedis, keys: &Keys, attempts: &[Attempt]) {
    for (i, attempt) in attempts.iter().enumerate() {
        let queue = keys.history_queue(HISTORY_QUEUES - 1 - i % HISTORY_QUEUES);
        redis::cmd("RPUSH").arg(queue).arg(attempt.encode()).query::<()>(redis).expect("RPUSH");
    }
}

fn rows_of(mysql: &mut mysql::Conn, user_id: u64) -> u64 {
    mysql.exec_first("SELECT COUNT(*) FROM logins WHERE user_id = ?", (user_id,)).expect("count").unwrap_or(0)
}

fn user_id(mysql: &mut mysql::Conn, username: &str) -> u64 {
    mysql.exec_first("SELECT id FROM users WHERE username = ?", (username,)).expect("id").expect("user")
}

on_single_and_cluster! {
fn a_round_repeated_after_a_crash_between_commit_and_trim_inserts_nothing_twice(options) {
    let mut f = Drained::start(TestServer::start_with(options), "drained");
    let attempts = [
        attempt(f.id, &f.username, Outcome::Success),
        attempt(f.id, &f.username, Outcome::WrongPassword),
        // Throttled before any lookup: found by name.
        attempt(0, &f.username, Outcome::Throttled),
    ];
    push(&mut f.redis, &f.keys, &attempts);
    assert_eq!(f.drainer.round().expect("round").moved, 3);
    assert_eq!(rows_of(&mut f.mysql, f.id), 3);

    // What a kill after the COMMIT but before the trim leaves: the same records queued.
    push(&mut f.redis, &f.keys, &attempts);
    assert_eq!(f.drainer.round().expect("round").moved, 3);
    assert_eq!(rows_of(&mut f.mysql, f.id), 3, "the unique attempt id keeps each attempt one row");
    assert_eq!(queued(&mut f.redis, &f.keys), 0, "taken off the queues after the commit");
    assert_eq!(f.drainer.round().expect("round").moved, 0, "empty queues are no work");
}
}

on_single_and_cluster! {
fn attempts_on_unknown_names_and_deleted_accounts_leave_no_row_and_do_not_stall_the_queue(options) {
    let mut f = Drained::start(TestServer::start_with(options), "kept");
    let ghost = f.server.username("ghost");
    push(
        &mut f.redis,
        &f.keys,
        &[
            attempt(0, &ghost, Outcome::Throttled),
            // An id no account has (deleted before the drain): skipped by the foreign key.
            attempt(u64::MAX / 2, &ghost, Outcome::Success),
            attempt(f.id, &f.username, Outcome::Success),
        ],
    );
    // And in the queue of the builds before the queues were spread (an upgrade leaves it).
    let legacy = f.keys.history_queues().pop().expect("the old queue");
    redis::cmd("RPUSH").arg(&legacy).arg("not a record").query::<()>(&mut f.redis).expect("RPUSH");
    // Nor do bytes that are not text.
    redis::cmd("RPUSH").arg(&legacy).arg(&b"success\t1\t\xff\xfe"[..]).query::<()>(&mut f.redis).expect("RPUSH");
    assert_eq!(f.drainer.round().expect("round").moved, 5);
    assert_eq!(rows_of(&mut f.mysql, f.id), 1);
    assert_eq!(rows_of(&mut f.mysql, u64::MAX / 2), 0);
    assert_eq!(queued(&mut f.redis, &f.keys), 0);
}
}

on_single_and_cluster! {
/// A log-in's record is queued in Redis before its reply, and the server's
/// own drainer moves it into MariaDB, in a round its metrics count.
fn an_acknowledged_log_in_is_queued_then_drained_into_the_table(options) {
    let server = TestServer::start_with(options);
    let mut client = server.connect();
    let username = server.sign_up(&mut client, "logged", PASSWORD);
    let rounds_before = server.metric("usermgmt_history_drain_rounds_total");
    let mut mysql = server.env.mysql();
    let id = user_id(&mut mysql, &username);
    client.log_in(&username, PASSWORD);
    let keys = Keys::new(server.redis_prefix.clone());
    let mut redis = server.env.redis();
    // Still queued, or already drained: never neither.
    assert!(queued(&mut redis, &keys) + rows_of(&mut mysql, id) >= 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while rows_of(&mut mysql, id) == 0 {
        assert!(std::time::Instant::now() < deadline, "the log-in never reached the table");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The round takes its records off the queue a moment after its commit.
    while queued(&mut redis, &keys) != 0 {
        assert!(std::time::Instant::now() < deadline, "the drained record stayed queued");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Counted as it ends, a moment after its MySQL commit.
    while server.metric("usermgmt_history_drain_rounds_total") == rounds_before {
        assert!(std::time::Instant::now() < deadline, "the drainer's round was not counted");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
}

/// Rows past the 90 days go, by a range of the key (which leads with the
/// time); younger ones stay, the newest as well as one just inside.
#[test]
fn pruning_deletes_the_rows_older_than_the_window_and_only_those() {
    let mut f = Drained::start(TestServer::start(), "pruned");
    let now = tcpserver::session::unix_now_ms();
    let day = 24 * 3600 * 1000;
    let aged = |days_ago: u64| {
        let time_ms = now - days_ago * day;
        Attempt {
            attempt_id: new_attempt_id(time_ms),
            time_ms,
            ..attempt(f.id, &f.username, Outcome::WrongPassword)
        }
    };
    push(&mut f.redis, &f.keys, &[aged(120), aged(91), aged(89), aged(0)]);
    assert_eq!(f.drainer.round().expect("round").moved, 4);
    let window = tcpserver::history::drain::KNOWN_FOR_MS;
    assert_eq!(tcpserver::db::logins::prune(&mut f.mysql, now - window).expect("prune"), 2);
    let left: Vec<u64> =
        f.mysql.exec("SELECT time_ms FROM logins WHERE user_id = ? ORDER BY time_ms", (f.id,)).unwrap();
    assert_eq!(left, [now - 89 * day, now]);
}

/// A round takes at most its share of each queue and says what it left
/// (the `usermgmt_history_queued` gauge); the next takes the rest.
#[test]
fn a_round_says_how_many_records_it_left_queued() {
    let mut f = Drained::start(TestServer::start(), "backlog");
    let queue = f.keys.history_queue(0);
    let backlog = tcpserver::history::drain::DRAIN_PER_QUEUE + 5;
    for _ in 0..backlog {
        let record = attempt(f.id, &f.username, Outcome::WrongPassword).encode();
        redis::cmd("RPUSH").arg(&queue).arg(record).query::<()>(&mut f.redis).expect("RPUSH");
    }
    let first = f.drainer.round().expect("round");
    assert_eq!((first.moved, first.full, first.left), (backlog - 5, true, 5));
    let second = f.drainer.round().expect("round");
    assert_eq!((second.moved, second.full, second.left), (5, false, 0));
    assert_eq!(rows_of(&mut f.mysql, f.id), backlog as u64);
}

/// The queues' bound holds under simultaneous log-ins: with room for three
/// records, four batches of two queued at once add exactly three, and the
/// five that did not fit are reported dropped.
#[test]
fn simultaneous_batches_never_fill_a_queue_past_its_bound() {
    use tcpserver::db::redis::Batch;
    use tcpserver::history::record::{MAX_QUEUED_PER_QUEUE, queue_on};
    let mut f = Drained::start(TestServer::start(), "bounded");
    let queue = f.keys.history_queue(0);
    let room = 3;
    let filler: Vec<String> = (0..MAX_QUEUED_PER_QUEUE - room).map(|i| i.to_string()).collect();
    for chunk in filler.chunks(10_000) {
        redis::cmd("RPUSH").arg(&queue).arg(chunk).query::<()>(&mut f.redis).expect("RPUSH");
    }
    let dropped: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (queue, env, id, username) = (&queue, &f.server.env, f.id, &f.username);
                s.spawn(move || {
                    let mut link = RedisLink::new(env.target(), 0);
                    let mut batch = Batch::new();
                    let attempts = [(); 2].map(|()| attempt(id, username, Outcome::WrongPassword));
                    let queued = queue_on(&mut batch, queue, &attempts);
                    queued.dropped(link.run::<Vec<u64>>(&batch).expect("QUEUE")[0])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert_eq!(dropped.iter().sum::<u64>(), 5);
    let length: u64 = redis::cmd("LLEN").arg(&queue).query(&mut f.redis).expect("LLEN");
    assert_eq!(length, MAX_QUEUED_PER_QUEUE);
    let _: () = redis::cmd("DEL").arg(&queue).query(&mut f.redis).expect("DEL");
}
