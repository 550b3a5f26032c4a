//! The history drainer against real Redis and MariaDB: records move from the
//! queue into `logins` exactly once, even when a round is repeated after a
//! crash between its COMMIT and its trim, and attempts on names without an
//! account (or on an account deleted meanwhile) leave no row.
//!
//! Each test drains a queue under a prefix of its own, beside the server
//! that made its accounts (whose own drainer never sees that queue).

mod util;

use mysql::prelude::Queryable;
use tcpserver::db::mysql::MysqlLink;
use tcpserver::db::redis::RedisLink;
use tcpserver::history::drain::Drainer;
use tcpserver::history::record::{Attempt, Method, Outcome, new_attempt_id};
use tcpserver::keys::Keys;
use util::{TestEnv, TestServer, random_hex};

const PASSWORD: &str = "correct horse battery";

/// A drainer of its own queue, and that queue's key.
fn drainer(env: &TestEnv) -> (Drainer, String) {
    let (url, password) = env.split_mysql_url();
    let opts = tcpserver::db::mysql::options(&url, Some(&password)).expect("MySQL options");
    let client = redis::Client::open(env.redis_url.as_str()).expect("Redis client");
    let keys = Keys::new(format!("umtest:hist:{}:", random_hex(8)));
    let queue = keys.history_queue();
    (Drainer::new(MysqlLink::new(opts, 0), RedisLink::new(client, 0), keys), queue)
}

fn attempt(user_id: u64, username: &str, outcome: Outcome) -> Attempt {
    Attempt {
        attempt_id: new_attempt_id(),
        time_ms: tcpserver::session::unix_now_ms(),
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

fn push(redis: &mut redis::Connection, queue: &str, attempts: &[Attempt]) {
    let records: Vec<String> = attempts.iter().map(Attempt::encode).collect();
    redis::cmd("RPUSH").arg(queue).arg(records).query::<()>(redis).expect("RPUSH");
}

fn rows_of(mysql: &mut mysql::Conn, user_id: u64) -> u64 {
    mysql.exec_first("SELECT COUNT(*) FROM logins WHERE user_id = ?", (user_id,)).expect("count").unwrap_or(0)
}

fn user_id(mysql: &mut mysql::Conn, username: &str) -> u64 {
    mysql.exec_first("SELECT id FROM users WHERE username = ?", (username,)).expect("id").expect("user")
}

#[test]
fn a_round_repeated_after_a_crash_between_commit_and_trim_inserts_nothing_twice() {
    let server = TestServer::start();
    let mut client = server.connect();
    let username = server.sign_up(&mut client, "drained", PASSWORD);
    let mut mysql = server.env.mysql();
    let id = user_id(&mut mysql, &username);
    let (mut drainer, queue) = drainer(&server.env);
    let mut redis = server.env.redis();
    let attempts = [
        attempt(id, &username, Outcome::Success),
        attempt(id, &username, Outcome::WrongPassword),
        // Throttled before any lookup: found by name.
        attempt(0, &username, Outcome::Throttled),
    ];
    push(&mut redis, &queue, &attempts);
    assert_eq!(drainer.round().expect("round"), 3);
    assert_eq!(rows_of(&mut mysql, id), 3);

    // What a kill after the COMMIT but before the trim leaves: the same records queued.
    push(&mut redis, &queue, &attempts);
    assert_eq!(drainer.round().expect("round"), 3);
    assert_eq!(rows_of(&mut mysql, id), 3, "the unique attempt id keeps each attempt one row");
    let left: u64 = redis::cmd("LLEN").arg(&queue).query(&mut redis).expect("LLEN");
    assert_eq!(left, 0, "taken off the queue after the commit");
    assert_eq!(drainer.round().expect("round"), 0, "an empty queue is no work");
}

#[test]
fn attempts_on_unknown_names_and_deleted_accounts_leave_no_row_and_do_not_stall_the_queue() {
    let server = TestServer::start();
    let mut client = server.connect();
    let username = server.sign_up(&mut client, "kept", PASSWORD);
    let mut mysql = server.env.mysql();
    let id = user_id(&mut mysql, &username);
    let (mut drainer, queue) = drainer(&server.env);
    let mut redis = server.env.redis();
    let ghost = server.username("ghost");
    push(
        &mut redis,
        &queue,
        &[
            attempt(0, &ghost, Outcome::Throttled),
            // An id no account has (deleted before the drain): skipped by the foreign key.
            attempt(u64::MAX / 2, &ghost, Outcome::Success),
            attempt(id, &username, Outcome::Success),
        ],
    );
    redis::cmd("RPUSH").arg(&queue).arg("not a record").query::<()>(&mut redis).expect("RPUSH");
    assert_eq!(drainer.round().expect("round"), 4);
    assert_eq!(rows_of(&mut mysql, id), 1);
    assert_eq!(rows_of(&mut mysql, u64::MAX / 2), 0);
    let left: u64 = redis::cmd("LLEN").arg(&queue).query(&mut redis).expect("LLEN");
    assert_eq!(left, 0);
}
