//! Reading and changing a profile: nickname, picture, access rules, and the
//! consistency of the Redis cache with MySQL.

#[macro_use]
mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use proto::{ErrorCode, MAX_IMAGE_LEN, Message, Profile, Secret};
use sha2::{Digest, Sha256};
use util::{PNG, TestServer, error_code};

const PASSWORD: &str = "profile-password";

fn nickname_in_mysql(server: &TestServer, username: &str) -> Vec<u8> {
    let nickname: Option<Vec<u8>> = server
        .env
        .mysql()
        .exec_first("SELECT nickname FROM users WHERE username = ?", (username,))
        .expect("query");
    nickname.expect("a users row")
}

fn avatar_in_mysql(server: &TestServer, username: &str) -> Option<String> {
    let avatar: Option<Option<String>> = server
        .env
        .mysql()
        .exec_first("SELECT avatar FROM users WHERE username = ?", (username,))
        .expect("query");
    avatar.expect("a users row")
}

/// Whether bytes with this SHA-256 are stored as a picture, of any format.
fn is_stored(server: &TestServer, bytes: &[u8]) -> bool {
    let pattern = format!("{}.%", hex::encode(Sha256::digest(bytes)));
    let count: Option<u64> = server
        .env
        .mysql()
        .exec_first("SELECT COUNT(*) FROM avatar_bytes WHERE name LIKE ?", (pattern,))
        .expect("query");
    count.unwrap_or(0) > 0
}

on_single_and_cluster! {
fn profile_is_read_with_or_without_the_own_username(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let (username, token) = server.user_with_session(&mut c, "reader", PASSWORD);
    let expected = Message::ProfileReply(Profile {
        username: username.clone(),
        nickname: username.clone(),
        avatar: None,
    });
    assert_eq!(c.call(Message::GetProfile { token: token.clone(), username: None }), expected);
    assert_eq!(
        c.call(Message::GetProfile { token: token.clone(), username: Some(username.clone()) }),
        expected
    );
    assert_eq!(c.call(Message::GetProfile { token, username: Some(username.to_uppercase()) }), expected);
}
}

on_single_and_cluster! {
fn another_users_profile_is_forbidden_for_every_operation(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let (_, token) = server.user_with_session(&mut c, "alice", PASSWORD);
    let bob = server.sign_up(&mut c, "bob", PASSWORD);
    let requests = [
        Message::GetProfile { token: token.clone(), username: Some(bob.clone()) },
        Message::UpdateNickname {
            token: token.clone(),
            username: Some(bob.clone()),
            nickname: "pwned".into(),
        },
        Message::SetAvatar { token: token.clone(), username: Some(bob.clone()), image: PNG.to_vec() },
    ];
    for request in requests {
        assert_eq!(error_code(&c.call(request)), ErrorCode::Forbidden);
    }
    assert_eq!(nickname_in_mysql(&server, &bob), bob.as_bytes());
    assert_eq!(avatar_in_mysql(&server, &bob), None);
}
}

on_single_and_cluster! {
fn every_profile_operation_needs_a_session(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let token = Secret::new("f".repeat(64));
    let requests = [
        Message::GetProfile { token: token.clone(), username: None },
        Message::UpdateNickname { token: token.clone(), username: None, nickname: "x".into() },
        Message::SetAvatar { token, username: None, image: PNG.to_vec() },
    ];
    for request in requests {
        assert_eq!(error_code(&c.call(request)), ErrorCode::Unauthenticated);
    }
}
}

on_single_and_cluster! {
fn a_unicode_nickname_comes_back_byte_for_byte(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let (username, token) = server.user_with_session(&mut c, "dragon", PASSWORD);
    let nickname = "李小龍 🐉";
    let reply =
        c.call(Message::UpdateNickname { token: token.clone(), username: None, nickname: nickname.into() });
    let expected = Profile { username: username.clone(), nickname: nickname.into(), avatar: None };
    assert_eq!(reply, Message::NicknameUpdated(expected.clone()));
    assert_eq!(c.call(Message::GetProfile { token, username: None }), Message::ProfileReply(expected));
    assert_eq!(nickname_in_mysql(&server, &username), nickname.as_bytes());
}
}

on_single_and_cluster! {
fn an_invalid_nickname_changes_nothing(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let (username, token) = server.user_with_session(&mut c, "careful", PASSWORD);
    for bad in ["", "   ", "bell\u{7}", "rtl\u{202E}", &"x".repeat(65)] {
        let reply =
            c.call(Message::UpdateNickname { token: token.clone(), username: None, nickname: bad.into() });
        assert_eq!(error_code(&reply), ErrorCode::InvalidNickname, "{bad:?}");
    }
    assert_eq!(nickname_in_mysql(&server, &username), username.as_bytes());
}
}

on_single_and_cluster! {
fn an_avatar_is_stored_under_its_digest_and_shown_in_the_profile(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let (username, token) = server.user_with_session(&mut c, "painter", PASSWORD);
    let name = format!("{}.png", hex::encode(Sha256::digest(PNG)));
    let reply = c.call(Message::SetAvatar {
        token: token.clone(),
        username: Some(username.clone()),
        image: PNG.to_vec(),
    });
    let expected =
        Profile { username: username.clone(), nickname: username.clone(), avatar: Some(name.clone()) };
    assert_eq!(reply, Message::AvatarSet(expected.clone()));
    let stored: Option<Vec<u8>> =
        server.env.mysql().exec_first("SELECT bytes FROM avatar_bytes WHERE name = ?", (&name,)).unwrap();
    assert_eq!(stored.as_deref(), Some(&PNG[..]));
    assert_eq!(avatar_in_mysql(&server, &username), Some(name));
    assert_eq!(
        c.call(Message::GetProfile { token: token.clone(), username: None }),
        Message::ProfileReply(expected)
    );
    // The same picture again is fine.
    assert!(matches!(
        c.call(Message::SetAvatar { token, username: None, image: PNG.to_vec() }),
        Message::AvatarSet(_)
    ));
}
}

on_single_and_cluster! {
fn refused_pictures_leave_no_trace(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let (username, token) = server.user_with_session(&mut c, "refused", PASSWORD);
    let mut too_large = PNG.to_vec();
    too_large.resize(MAX_IMAGE_LEN + 1, 0);
    let mut truncated = PNG.to_vec();
    truncated.truncate(40);
    let cases = [
        (b"<html>not a picture</html>".to_vec(), ErrorCode::UnsupportedImage),
        (b"GIF89a".to_vec(), ErrorCode::UnsupportedImage),
        (truncated, ErrorCode::UnsupportedImage),
        (Vec::new(), ErrorCode::UnsupportedImage),
        (too_large, ErrorCode::ImageTooLarge),
    ];
    for (image, code) in cases {
        let reply = c.call(Message::SetAvatar { token: token.clone(), username: None, image: image.clone() });
        assert_eq!(error_code(&reply), code);
        assert!(!is_stored(&server, &image));
    }
    assert_eq!(avatar_in_mysql(&server, &username), None);
    let Message::ProfileReply(profile) = c.call(Message::GetProfile { token, username: None }) else {
        panic!("profile unreadable")
    };
    assert_eq!(profile.avatar, None);
}
}

on_single_and_cluster! {
/// Rounds of writers changing the nickname while readers read it. Each round
/// starts with an empty cache, so readers refill it from MySQL while the writes
/// go on, and a refill with an older row races every write. Every read returns a
/// nickname that was written, and after each round's last acknowledged write
/// both the cache and the profile read equal MySQL.
fn concurrent_updates_never_leave_the_cache_stale(options) {
    let server = TestServer::start_with(options.clone().arg("--workers", 8));
    let mut c = server.connect();
    let (username, token) = server.user_with_session(&mut c, "contended", PASSWORD);
    let user_id: u64 = server
        .env
        .mysql()
        .exec_first("SELECT id FROM users WHERE username = ?", (&username,))
        .unwrap()
        .unwrap();
    let cache_key = server.keys().profile(&username, user_id);
    let mut redis = server.env.redis();
    const ROUNDS: usize = 5;
    const WRITERS: usize = 3;
    const UPDATES: usize = 6;
    for round in 0..ROUNDS {
        let _: () = redis::cmd("DEL").arg(&cache_key).query(&mut redis).unwrap();
        let writing = AtomicBool::new(true);
        thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let (server, token) = (&server, token.clone());
                    s.spawn(move || {
                        let mut c = server.connect();
                        for i in 0..UPDATES {
                            let nickname = format!("r{round} w{w} n{i}");
                            let reply = c.call(Message::UpdateNickname {
                                token: token.clone(),
                                username: None,
                                nickname: nickname.clone(),
                            });
                            let Message::NicknameUpdated(p) = reply else {
                                panic!("update failed: {reply:?}")
                            };
                            assert_eq!(p.nickname, nickname);
                        }
                    })
                })
                .collect();
            for _ in 0..3 {
                let (server, token, writing) = (&server, token.clone(), &writing);
                s.spawn(move || {
                    let mut c = server.connect();
                    while writing.load(Ordering::SeqCst) {
                        let reply = c.call(Message::GetProfile { token: token.clone(), username: None });
                        let Message::ProfileReply(p) = reply else { panic!("read failed: {reply:?}") };
                        assert!(p.nickname == p.username || p.nickname.starts_with('r'), "{p:?}");
                    }
                });
            }
            for writer in writers {
                writer.join().unwrap();
            }
            writing.store(false, Ordering::SeqCst);
        });
        let in_mysql = String::from_utf8(nickname_in_mysql(&server, &username)).unwrap();
        let cached: Option<String> = redis::cmd("HGET").arg(&cache_key).arg("n").query(&mut redis).unwrap();
        assert_eq!(cached.as_deref(), Some(in_mysql.as_str()), "round {round}: the cache went back in time");
        let Message::ProfileReply(read) =
            c.call(Message::GetProfile { token: token.clone(), username: None })
        else {
            panic!("read failed")
        };
        assert_eq!(read.nickname, in_mysql, "round {round}");
    }
    let version: u64 =
        server.env.mysql().exec_first("SELECT version FROM users WHERE id = ?", (user_id,)).unwrap().unwrap();
    assert_eq!(version, (ROUNDS * WRITERS * UPDATES) as u64);
}
}

on_single_and_cluster! {
/// The cache script itself: an older version never replaces a newer one.
fn the_cache_refuses_an_older_version(options) {
    let server = TestServer::start_with(options.clone());
    let keys = tcpserver::keys::Keys::new(server.redis_prefix.clone());
    let mut link = tcpserver::db::redis::RedisLink::new(server.env.target(), 0);
    let mut redis = server.env.redis();
    let entry = |version, nickname: &str| tcpserver::profile_cache::Versioned {
        version,
        profile: Profile { username: "u".into(), nickname: nickname.into(), avatar: None },
    };
    let key = keys.profile("u", 7);
    let mut stored = |e| -> String {
        tcpserver::profile_cache::store(&mut link, &keys, 7, &e).unwrap();
        redis::cmd("HGET").arg(&key).arg("n").query(&mut redis).unwrap()
    };
    assert_eq!(stored(entry(2, "new")), "new");
    assert_eq!(stored(entry(1, "old")), "new");
    assert_eq!(stored(entry(2, "same version")), "new");
    assert_eq!(stored(entry(3, "newer")), "newer");
    let ttl: i64 = redis::cmd("TTL").arg(&key).query(&mut server.env.redis()).unwrap();
    assert!(ttl > 0 && ttl as u64 <= tcpserver::profile_cache::TTL_SECS);
}
}

/// A nickname change to send: token, the username it names, the nickname, and
/// the nickname the reply should show or the error it should be.
type Rename = (Secret, Option<String>, String, Result<String, ErrorCode>);

on_single_and_cluster! {
/// Nickname changes sent back to back to one worker, which applies them in
/// batches: each gets its own answer (a bad nickname, someone else's name and
/// an unknown token fail alone), a user changed twice in a row ends with the
/// second, and MySQL, the cache and a later read agree.
fn pipelined_nickname_changes_each_get_their_own_answer(options) {
    let server = TestServer::start_with(options.clone().arg("--workers", 1));
    let mut c = server.connect();
    let users: Vec<(String, Secret)> =
        (0..5).map(|i| server.user_with_session(&mut c, &format!("renamed{i}"), PASSWORD)).collect();
    let (ann, ann_token) = &users[0];

    let mut changes: Vec<Rename> = users
        .iter()
        .enumerate()
        .map(|(i, (_, token))| {
            (token.clone(), None, format!("Première {i} 🦀"), Ok(format!("Première {i} 🦀")))
        })
        .collect();
    changes.push((ann_token.clone(), None, "ann again".into(), Ok("ann again".into())));
    changes.push((users[1].1.clone(), None, "bad\u{0}nul".into(), Err(ErrorCode::InvalidNickname)));
    changes.push((users[2].1.clone(), Some(ann.clone()), "not mine".into(), Err(ErrorCode::Forbidden)));
    changes.push((Secret::new("no-such-token"), None, "nobody".into(), Err(ErrorCode::Unauthenticated)));

    let mut bytes = Vec::new();
    for (i, (token, username, nickname, _)) in changes.iter().enumerate() {
        let message = Message::UpdateNickname {
            token: token.clone(),
            username: username.clone(),
            nickname: nickname.clone(),
        };
        proto::Frame { request_id: i as u64 + 1, message }.encode(&mut bytes).expect("encodable");
    }
    // One write, so the worker finds most of them queued together.
    c.write_raw(&bytes);
    for _ in 0..changes.len() {
        let frame = c.recv();
        let (_, _, nickname, expected) = &changes[frame.request_id as usize - 1];
        match (&frame.message, expected) {
            (Message::NicknameUpdated(profile), Ok(wanted)) => assert_eq!(&profile.nickname, wanted),
            (other, Err(code)) => assert_eq!(error_code(other), *code, "{nickname:?}"),
            (other, Ok(_)) => panic!("{nickname:?}: {other:?}"),
        }
    }

    let finals = ["ann again".to_owned()].into_iter().chain((1..5).map(|i| format!("Première {i} 🦀")));
    for ((username, token), wanted) in users.iter().zip(finals) {
        assert_eq!(String::from_utf8(nickname_in_mysql(&server, username)).unwrap(), wanted);
        let reply = c.call(Message::GetProfile { token: token.clone(), username: None });
        let Message::ProfileReply(profile) = reply else { panic!("read failed: {reply:?}") };
        assert_eq!(profile.nickname, wanted, "{username}");
    }
    let version: u64 = server
        .env
        .mysql()
        .exec_first("SELECT version FROM users WHERE username = ?", (ann,))
        .unwrap()
        .unwrap();
    assert_eq!(version, 2, "both of ann's changes applied, one after the other");
}
}

/// Round trips to Redis of 16 profile reads sent together, and the batches
/// the worker ran them in (usually one; two when it took the first read
/// before the others arrived). The history drainer shares the round-trip
/// counter: a measurement during which one of its rounds ended is taken
/// again (with its queues empty, a round is a single read, ended a few
/// microseconds after it, so one that fell inside is seen).
fn redis_round_trips_of_reads_sent_together(server: &TestServer, tokens: &[Secret]) -> (u64, u64) {
    const ROUND_TRIPS: &str = "usermgmt_dependency_round_trips_total{dependency=\"redis\"}";
    const BATCHES: &str = "usermgmt_batch_size_count";
    const DRAIN_ROUNDS: &str = "usermgmt_history_drain_rounds_total";
    let mut c = server.connect();
    for _ in 0..5 {
        let rounds_before = server.metric(DRAIN_ROUNDS);
        let (trips_before, batches_before) = (server.metric(ROUND_TRIPS), server.metric(BATCHES));
        for token in tokens {
            c.send(Message::GetProfile { token: token.clone(), username: None });
        }
        for _ in tokens {
            let reply = c.recv().message;
            assert!(matches!(reply, Message::ProfileReply(_)), "{reply:?}");
        }
        let measured = (server.metric(ROUND_TRIPS) - trips_before, server.metric(BATCHES) - batches_before);
        if server.metric(DRAIN_ROUNDS) == rounds_before {
            return measured;
        }
    }
    panic!("the history drainer ran a round during each of five measurements");
}

/// Waits until the history drainer has moved every queued log-in record
/// (and trimmed its queues: its rounds are single reads from then on).
fn wait_for_history_drained(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.queued_history() > 0 {
        assert!(Instant::now() < deadline, "log-in records still queued after 20 s");
        thread::sleep(Duration::from_millis(50));
    }
}

/// After Redis lost its scripts (a restart, `SCRIPT FLUSH`), a batch loads
/// each script once and sends the refused commands again together: one more
/// round trip for the batch, not two for each of its requests (which made
/// the first batch after a restart take seconds when Redis was slow).
#[test]
fn a_batch_after_redis_lost_its_scripts_reloads_them_in_one_round_trip() {
    let server = TestServer::start_with(util::Options::default().arg("--workers", 1));
    let mut c = server.connect();
    let tokens: Vec<Secret> =
        (0..16).map(|i| server.user_with_session(&mut c, &format!("flush{i}"), PASSWORD).1).collect();
    wait_for_history_drained(&server);
    // On a Redis that has not run a profile read yet, the first batch loads its script.
    redis_round_trips_of_reads_sent_together(&server, &tokens);
    let (usual, batches) = redis_round_trips_of_reads_sent_together(&server, &tokens);
    assert_eq!(usual, batches, "one round trip per batch of reads");
    redis::cmd("SCRIPT").arg("FLUSH").query::<()>(&mut server.env.redis()).unwrap();
    let (after_flush, batches) = redis_round_trips_of_reads_sent_together(&server, &tokens);
    // The first batch after the flush reloads; any later one finds the scripts.
    assert!(
        after_flush <= batches + 1,
        "{after_flush} round trips for {batches} batches after the scripts were lost"
    );
}
