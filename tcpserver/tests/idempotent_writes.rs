//! The writes a client may send again after a lost connection
//! (`proto::idempotency`): a sign-up with its idempotency key, and a nickname
//! change. Each copy of one request is answered as the first was and
//! changes nothing the first did not; another request is still another.
//! Copies are sent as httpserver's balancer sends them: the same message
//! again, on another connection, after the first was applied or while it is.

#[macro_use]
mod util;

use std::net::IpAddr;

use mysql::prelude::Queryable;
use proto::{ErrorCode, IdempotencyKey, Message, Profile, Secret};
use util::{Options, TestServer, all_at_once, error_code, new_key};

const PASSWORD: &str = "correct horse battery";

fn sign_up(username: &str, nickname: Option<&str>, client: Option<IpAddr>, key: IdempotencyKey) -> Message {
    Message::SignUp {
        username: username.to_owned(),
        password: PASSWORD.into(),
        nickname: nickname.map(str::to_owned),
        client,
        key,
    }
}

/// How many `users` and `credentials` rows the username has.
fn rows_of(server: &TestServer, username: &str) -> (u64, u64) {
    let mut mysql = server.env.mysql();
    let mut count = |table: &str| -> u64 {
        mysql
            .exec_first(format!("SELECT COUNT(*) FROM {table} WHERE username = ?"), (username,))
            .expect("count")
            .unwrap_or(0)
    };
    (count("users"), count("credentials"))
}

/// The stored nickname and version of a user.
fn stored(server: &TestServer, username: &str) -> (String, u64) {
    server
        .env
        .mysql()
        .exec_first("SELECT nickname, version FROM users WHERE username = ?", (username,))
        .expect("query")
        .expect("a users row")
}

fn rename(token: &Secret, nickname: &str) -> Message {
    Message::UpdateNickname { token: token.clone(), username: None, nickname: nickname.to_owned() }
}

#[test]
fn a_sign_up_sent_again_with_its_key_is_answered_as_the_first_and_stores_one_account() {
    let server = TestServer::start();
    let username = server.username("again");
    let request = sign_up(&username, Some("Première 🦀"), None, new_key());
    let first = server.connect().call(request.clone());
    let created = Profile { username: username.clone(), nickname: "Première 🦀".into(), avatar: None };
    assert_eq!(first, Message::SignedUp(created.clone()));
    // The copy, on another connection as after a lost one: the same answer.
    let copy = server.connect().call(request.clone());
    assert_eq!(copy, Message::SignedUp(created));
    assert_eq!(rows_of(&server, &username), (1, 1), "one account");
    assert_eq!(server.metric("usermgmt_sign_ups_repeated_total"), 1);
    // It is a real account, with the password of the request.
    server.connect().log_in(&username, PASSWORD);
}

#[test]
fn a_sign_up_with_another_key_on_a_taken_name_is_refused() {
    let server = TestServer::start();
    let username = server.username("taken");
    let mut c = server.connect();
    let key = new_key();
    assert!(matches!(c.call(sign_up(&username, None, None, key)), Message::SignedUp(_)));
    // Another request (another key), even for the same name, nickname and password.
    assert_eq!(error_code(&c.call(sign_up(&username, None, None, new_key()))), ErrorCode::UsernameTaken);
    // Another case of the name with the account's own key is a copy: names are lowercased.
    let copy = c.call(sign_up(&username.to_uppercase(), None, None, key));
    assert!(matches!(copy, Message::SignedUp(ref p) if p.username == username), "{copy:?}");
    // An account with no key (seeded, or made before keys were stored) is
    // nobody's copy.
    server
        .env
        .mysql()
        .exec_drop("UPDATE users SET signup_key = NULL WHERE username = ?", (&username,))
        .expect("clear the key");
    assert_eq!(error_code(&c.call(sign_up(&username, None, None, key))), ErrorCode::UsernameTaken);
    assert_eq!(rows_of(&server, &username), (1, 1));
    assert_eq!(server.metric("usermgmt_sign_ups_repeated_total"), 1);
}

on_single_and_cluster! {
/// A copy may arrive while its first copy is still in flight (the first's
/// connection broke, not its tcpserver): they meet at the unique key, and
/// every copy is answered with the one account. They count once on the
/// per-address limit, which a limit of one shows: the copies all pass it,
/// and the next sign-up from that address is refused.
fn copies_of_one_sign_up_at_the_same_moment_all_get_the_one_account_and_count_once(options) {
    let server = TestServer::start_with(options.clone().arg("--workers", 4).arg("--signups-per-addr", "1/600"));
    let username = server.username("copies");
    let addr: IpAddr = "198.51.100.9".parse().unwrap();
    let request = sign_up(&username, None, Some(addr), new_key());
    let replies = all_at_once(&server, vec![request; 6]);
    let created = Profile { username: username.clone(), nickname: username.clone(), avatar: None };
    for reply in &replies {
        assert_eq!(reply, &Message::SignedUp(created.clone()));
    }
    assert_eq!(rows_of(&server, &username), (1, 1));
    let other = server.username("other");
    let refused = server.connect().call(sign_up(&other, None, Some(addr), new_key()));
    assert_eq!(error_code(&refused), ErrorCode::TooManyAttempts, "the copies counted once");
    assert_eq!(rows_of(&server, &other), (0, 0));
}
}

on_single_and_cluster! {
fn a_nickname_change_sent_twice_is_one_change(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let (username, token) = server.user_with_session(&mut c, "renamed", PASSWORD);
    assert_eq!(stored(&server, &username).1, 0);
    let request = rename(&token, "Zoë 🦀");
    let first = c.call(request.clone());
    let Message::NicknameUpdated(profile) = &first else { panic!("{first:?}") };
    assert_eq!(profile.nickname, "Zoë 🦀");
    assert_eq!(stored(&server, &username), ("Zoë 🦀".to_owned(), 1));
    // The copy, on another connection: the same answer, no second change.
    assert_eq!(server.connect().call(request), first);
    assert_eq!(stored(&server, &username), ("Zoë 🦀".to_owned(), 1), "the version was bumped once");
    assert_eq!(server.metric("usermgmt_nickname_changes_unchanged_total"), 1);
    let read = c.call(Message::GetProfile { token: token.clone(), username: None });
    assert_eq!(read, Message::ProfileReply(profile.clone()));
    // A nickname that differs in any way is a change: case, or the same
    // letter composed otherwise (e + U+0301 for ë).
    for (nickname, version) in [("zoë 🦀", 2), ("Zoe\u{308} 🦀", 3)] {
        assert!(matches!(c.call(rename(&token, nickname)), Message::NicknameUpdated(_)));
        assert_eq!(stored(&server, &username), (nickname.to_owned(), version), "{nickname:?}");
    }
}
}

/// The batched path: copies queued together reach one worker's batch, where
/// one user's changes go to successive statements of one transaction. Each
/// user's change is applied once however many copies of it the batch holds.
#[test]
fn copies_of_nickname_changes_in_one_batch_change_each_user_once() {
    let server = TestServer::start_with(Options::default().arg("--workers", 1));
    let mut c = server.connect();
    let users: Vec<(String, Secret)> =
        (0..3).map(|i| server.user_with_session(&mut c, &format!("batched{i}"), PASSWORD)).collect();
    let mut bytes = Vec::new();
    let mut sent = 0u64;
    for _copy in 0..3 {
        for (i, (_, token)) in users.iter().enumerate() {
            sent += 1;
            let message = rename(token, &format!("Nom {i}"));
            proto::Frame { request_id: sent, message }.encode(&mut bytes).expect("encodable");
        }
    }
    // One write, so the worker finds them queued together.
    c.write_raw(&bytes);
    for _ in 0..sent {
        let frame = c.recv();
        let i = (frame.request_id as usize - 1) % users.len();
        let Message::NicknameUpdated(profile) = &frame.message else { panic!("{:?}", frame.message) };
        assert_eq!(profile.nickname, format!("Nom {i}"));
    }
    for (i, (username, _)) in users.iter().enumerate() {
        assert_eq!(stored(&server, username), (format!("Nom {i}"), 1), "{username}");
    }
    assert_eq!(server.metric("usermgmt_nickname_changes_unchanged_total"), 6);
}
