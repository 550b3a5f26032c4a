//! Changing the password and deleting the account against real Redis and
//! MariaDB, at the level where the race lives: a log-in that read the old row
//! just before the change can write the old stamp's log-in record back after
//! the change deleted it. These tests write that stale record by hand (what
//! such a log-in writes) and check that it answers for nothing.

#[macro_use]
mod util;

use mysql::prelude::Queryable;
use proto::{ErrorCode, Message};
use util::{TestServer, error_code};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "an entirely new passphrase";

/// The user's id and the stamp of their stored hash now.
fn id_and_stamp(server: &TestServer, username: &str) -> (u64, String) {
    let (id, hash): (u64, String) = server
        .env
        .mysql()
        .exec_first("SELECT user_id, password_hash FROM credentials WHERE username = ?", (username,))
        .expect("credentials")
        .expect("a row");
    (id, tcpserver::password::stamp(&hash))
}

/// What a log-in in flight during the change writes back: the old record.
fn write_stale_record(server: &TestServer, username: &str, id: u64, stamp: &str) {
    let key = server.keys().login_record(username);
    let mut redis = server.env.redis();
    redis::pipe()
        .cmd("HSET")
        .arg(&key)
        .arg("id")
        .arg(id)
        .arg("s")
        .arg(stamp)
        .cmd("EXPIRE")
        .arg(&key)
        .arg(900)
        .query::<()>(&mut redis)
        .expect("stale record");
}

fn log_in(client: &mut util::Client, username: &str, password: &str) -> Message {
    client.call(Message::Login {
        username: username.into(),
        password: password.into(),
        client: None,
        user_agent: None,
    })
}

on_single_and_cluster! {
fn a_stale_log_in_record_written_back_after_a_password_change_does_not_answer_for_the_old_password(options) {
    let server = TestServer::start_with(options.clone());
    let mut client = server.connect();
    let (username, token) = server.user_with_session(&mut client, "changer", PASSWORD);
    // Now the record, the profile cache and the verified cache all know the old password.
    client.log_in(&username, PASSWORD);
    let (id, old_stamp) = id_and_stamp(&server, &username);

    let changed = client.call(Message::ChangePassword {
        token: token.clone(),
        password: PASSWORD.into(),
        new_password: NEW_PASSWORD.into(),
        client: None,
    });
    assert!(matches!(changed, Message::PasswordChanged { ended: 1 }), "{changed:?}");
    write_stale_record(&server, &username, id, &old_stamp);

    assert_eq!(error_code(&log_in(&mut client, &username, PASSWORD)), ErrorCode::BadCredentials);
    client.log_in(&username, NEW_PASSWORD);
    // And again, now that the new password's record is written (it matches the fence).
    client.log_in(&username, NEW_PASSWORD);
    assert_eq!(error_code(&log_in(&mut client, &username, PASSWORD)), ErrorCode::BadCredentials);
}
}

on_single_and_cluster! {
fn a_stale_log_in_record_written_back_after_a_deletion_opens_no_session(options) {
    let server = TestServer::start_with(options.clone());
    let mut client = server.connect();
    let (username, token) = server.user_with_session(&mut client, "leaver", PASSWORD);
    client.log_in(&username, PASSWORD);
    let (id, stamp) = id_and_stamp(&server, &username);
    let deleted = client.call(Message::DeleteAccount {
        token,
        password: PASSWORD.into(),
        confirm: username.clone(),
        client: None,
    });
    assert_eq!(deleted, Message::AccountDeleted);
    write_stale_record(&server, &username, id, &stamp);
    // The same log-in writes the profile cache back too.
    let mut redis = server.env.redis();
    redis::cmd("HSET")
        .arg(server.keys().profile(&username, id))
        .arg("v")
        .arg(1)
        .arg("u")
        .arg(&username)
        .arg("n")
        .arg(&username)
        .arg("a")
        .arg("")
        .query::<()>(&mut redis)
        .expect("stale profile");
    assert_eq!(error_code(&log_in(&mut client, &username, PASSWORD)), ErrorCode::BadCredentials);
}
}
