//! The cache of recently verified credentials, seen from outside: a log-in it
//! spares the hash still refuses a wrong password, and a password change (a new
//! stored hash, and its log-in record dropped as README says) makes the old
//! password fail at once.

mod util;

use mysql::prelude::Queryable;
use proto::{ErrorCode, Message};
use util::{TestServer, error_code};

const PASSWORD: &str = "correct horse battery";
const OTHER_PASSWORD: &str = "tr0ub4dor & 3, but longer";

fn log_in(c: &mut util::Client, username: &str, password: &str) -> Message {
    c.call(Message::Login {
        username: username.into(),
        password: password.into(),
        client: None,
        user_agent: None,
    })
}

#[test]
fn a_cached_login_still_refuses_a_wrong_password() {
    let server = TestServer::start();
    let mut c = server.connect();
    let username = server.sign_up(&mut c, "cached", PASSWORD);
    // The first log-in verifies in full and fills the cache; the next ones may hit it.
    for _ in 0..3 {
        c.log_in(&username, PASSWORD);
    }
    for wrong in ["correct horse batter", "correct horse battery ", "Correct horse battery", ""] {
        let reply = log_in(&mut c, &username, wrong);
        assert_eq!(error_code(&reply), ErrorCode::BadCredentials, "{wrong:?}");
    }
    // The failures were counted, and the right password still works.
    c.log_in(&username, PASSWORD);
}

#[test]
fn a_changed_password_hash_drops_the_cached_login() {
    let server = TestServer::start();
    let mut c = server.connect();
    let alice = server.sign_up(&mut c, "alice", PASSWORD);
    let bob = server.sign_up(&mut c, "bob", OTHER_PASSWORD);
    c.log_in(&alice, PASSWORD);
    c.log_in(&alice, PASSWORD);

    // Give alice bob's password (the stored hash of another password).
    let mut mysql = server.env.mysql();
    let bobs_hash: String = mysql
        .exec_first("SELECT password_hash FROM credentials WHERE username = ?", (&bob,))
        .expect("query")
        .expect("bob's row");
    mysql
        .exec_drop("UPDATE credentials SET password_hash = ? WHERE username = ?", (&bobs_hash, &alice))
        .expect("update");
    // A change made behind the server's back also drops the user's log-in
    // record, as the README's operator note says (without that, the record's
    // 15-minute lifetime bounds it).
    let mut redis = server.env.redis();
    let record = server.keys().login_record(&alice);
    let dropped: i64 = redis::cmd("DEL").arg(&record).query(&mut redis).expect("DEL");
    assert_eq!(dropped, 1, "the repeated log-ins left a record at {record}");

    let reply = log_in(&mut c, &alice, PASSWORD);
    assert_eq!(error_code(&reply), ErrorCode::BadCredentials, "the old password after the change");
    c.log_in(&alice, OTHER_PASSWORD);
}
