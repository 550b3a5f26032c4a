//! Sign-up, log-in, log-out and sessions, against a real server, MySQL and Redis.

#[macro_use]
mod util;

use std::net::IpAddr;
use std::thread;
use std::time::Duration;

use mysql::prelude::Queryable;
use proto::{ErrorCode, Message, Profile};
use util::{Options, TestServer, error_code, new_key, redis_keys};

const PASSWORD: &str = "correct horse battery";

fn stored_hash(server: &TestServer, username: &str) -> String {
    server
        .env
        .mysql()
        .exec_first("SELECT password_hash FROM credentials WHERE username = ?", (username,))
        .expect("query")
        .expect("a credentials row")
}

#[test]
fn sign_up_lowercases_the_name_and_stores_only_a_hash() {
    let server = TestServer::start();
    let mut c = server.connect();
    let wanted = server.username("MixedCase");
    let reply = c.call(Message::SignUp {
        username: wanted.clone(),
        password: PASSWORD.into(),
        nickname: None,
        client: None,
        key: new_key(),
    });
    let username = wanted.to_lowercase();
    assert_eq!(
        reply,
        Message::SignedUp(Profile { username: username.clone(), nickname: username.clone(), avatar: None })
    );
    let hash = stored_hash(&server, &username);
    assert!(hash.starts_with("$pbkdf2-sha256$i=1000$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    // The name logs in whatever its case.
    c.log_in(&wanted.to_uppercase(), PASSWORD);
    assert!(!server.stderr().contains(PASSWORD));
}

#[test]
fn sign_up_keeps_a_given_nickname() {
    let server = TestServer::start();
    let mut c = server.connect();
    let username = server.username("nick");
    let reply = c.call(Message::SignUp {
        username: username.clone(),
        password: PASSWORD.into(),
        nickname: Some("  李小龍 🐉 ".into()),
        client: None,
        key: new_key(),
    });
    assert_eq!(reply, Message::SignedUp(Profile { username, nickname: "李小龍 🐉".into(), avatar: None }));
}

#[test]
fn sign_up_refuses_each_broken_rule_and_stores_nothing() {
    let server = TestServer::start();
    let mut c = server.connect();
    let cases = [
        ("ab", PASSWORD, None, ErrorCode::InvalidUsername),
        ("bad name!", PASSWORD, None, ErrorCode::InvalidUsername),
        ("toolong", "short", None, ErrorCode::InvalidPassword),
        ("control", "tab\there-ok", None, ErrorCode::InvalidPassword),
        ("bidi", PASSWORD, Some("evil\u{202E}txt"), ErrorCode::InvalidNickname),
        ("blank", PASSWORD, Some("   "), ErrorCode::InvalidNickname),
    ];
    for (suffix, password, nickname, code) in cases {
        let username = if suffix == "ab" { suffix.to_owned() } else { server.username(suffix) };
        let reply = c.call(Message::SignUp {
            username,
            password: password.into(),
            nickname: nickname.map(str::to_owned),
            client: None,
            key: new_key(),
        });
        assert_eq!(error_code(&reply), code, "{suffix}");
    }
    let count: Option<u64> = server
        .env
        .mysql()
        .exec_first("SELECT COUNT(*) FROM users WHERE username LIKE ?", (format!("{}%", server.user_prefix),))
        .unwrap();
    assert_eq!(count, Some(0));
}

#[test]
fn a_taken_name_is_refused_even_when_sign_ups_race() {
    let server = TestServer::start();
    let username = server.username("racer");
    let replies: Vec<Message> = thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    server.connect().call(Message::SignUp {
                        username: username.clone(),
                        password: PASSWORD.into(),
                        nickname: None,
                        client: None,
                        key: new_key(),
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = replies.iter().filter(|r| matches!(r, Message::SignedUp(_))).count();
    assert_eq!(created, 1, "{replies:?}");
    for reply in replies.iter().filter(|r| !matches!(r, Message::SignedUp(_))) {
        assert_eq!(error_code(reply), ErrorCode::UsernameTaken);
    }
    // Another case of the same name is the same name.
    let reply = server.connect().call(Message::SignUp {
        username: username.to_uppercase(),
        password: PASSWORD.into(),
        nickname: None,
        client: None,
        key: new_key(),
    });
    assert_eq!(error_code(&reply), ErrorCode::UsernameTaken);
}

on_single_and_cluster! {
fn a_session_works_until_logout_and_is_stored_only_as_a_hash(options) {
    session_until_logout("text", options);
}
}

/// The same in the JSON log format: every line is one JSON object, and none
/// holds the password or a token either.
#[test]
fn json_log_lines_parse_and_hold_no_password_or_token() {
    let log = session_until_logout("json", Options::default());
    assert!(log.lines().count() >= 4, "start-up and one line per request:\n{log}");
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["time"].is_string() && value["event"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }
    assert!(log.contains("\"operation\":\"log_out\""), "{log}");
}

/// Signs up, logs in twice, reads, logs out, with tcpserver logging in
/// `format`; checks that the log holds no secret, and returns it.
fn session_until_logout(format: &str, options: Options) -> String {
    let server = TestServer::start_with(options.arg("--log-format", format));
    let mut c = server.connect();
    let username = server.sign_up(&mut c, "session", PASSWORD);
    let (token, profile) = c.log_in(&username, PASSWORD);
    assert_eq!(profile.username, username);
    assert_eq!(token.expose().len(), 64);
    assert!(token.expose().bytes().all(|b| b.is_ascii_hexdigit()));

    let (second, _) = c.log_in(&username, PASSWORD);
    assert_ne!(token, second, "every log-in gets a new token");

    let get = |c: &mut util::Client, token: &proto::Secret| {
        c.call(Message::GetProfile { token: token.clone(), username: None })
    };
    assert_eq!(get(&mut c, &token), Message::ProfileReply(profile.clone()));

    let mut redis = server.env.redis();
    let session_key = tcpserver::session::storage_key(&server.keys(), token.expose()).expect("a token");
    let keys = redis_keys(&mut redis, &server.redis_prefix);
    assert!(keys.contains(&session_key), "{keys:?}");
    for key in &keys {
        assert!(!key.contains(token.expose()));
    }
    let value: String = redis::cmd("GET").arg(&session_key).query(&mut redis).unwrap();
    assert!(value.contains(&username) && !value.contains(token.expose()), "{value}");

    assert_eq!(c.call(Message::Logout { token: token.clone() }), Message::LoggedOut);
    assert_eq!(error_code(&get(&mut c, &token)), ErrorCode::Unauthenticated);
    // Logging out twice, or with nonsense, is still a logged-out state.
    assert_eq!(c.call(Message::Logout { token: token.clone() }), Message::LoggedOut);
    assert_eq!(c.call(Message::Logout { token: "nonsense".into() }), Message::LoggedOut);
    // The other session is untouched.
    assert!(matches!(get(&mut c, &second), Message::ProfileReply(_)));

    let log = server.stderr();
    assert!(!log.contains(PASSWORD) && !log.contains(token.expose()) && !log.contains(second.expose()));
    log
}

#[test]
fn unknown_tokens_are_unauthenticated() {
    let server = TestServer::start();
    let mut c = server.connect();
    for token in ["", "abc", &"0".repeat(64), &"Z".repeat(64)] {
        let reply = c.call(Message::GetProfile { token: token.into(), username: None });
        assert_eq!(error_code(&reply), ErrorCode::Unauthenticated, "{token:?}");
    }
}

#[test]
fn wrong_password_and_unknown_user_get_one_same_error() {
    let server = TestServer::start();
    let mut c = server.connect();
    let username = server.sign_up(&mut c, "known", PASSWORD);
    let wrong = c.call(Message::Login {
        username,
        password: "not the password".into(),
        client: None,
        user_agent: None,
    });
    let unknown = c.call(Message::Login {
        username: server.username("nobody"),
        password: PASSWORD.into(),
        client: None,
        user_agent: None,
    });
    let invalid = c.call(Message::Login {
        username: "x!".into(),
        password: PASSWORD.into(),
        client: None,
        user_agent: None,
    });
    assert_eq!(error_code(&wrong), ErrorCode::BadCredentials);
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, invalid);
}

on_single_and_cluster! {
fn failed_logins_are_throttled_per_user_without_slowing_others(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let victim = server.sign_up(&mut c, "victim", PASSWORD);
    let bystander = server.sign_up(&mut c, "bystander", PASSWORD);
    for _ in 0..5 {
        let reply = c.call(Message::Login {
            username: victim.clone(),
            password: "guess1234".into(),
            client: None,
            user_agent: None,
        });
        assert_eq!(error_code(&reply), ErrorCode::BadCredentials);
    }
    // Even the right password waits now.
    let reply = c.call(Message::Login {
        username: victim.clone(),
        password: PASSWORD.into(),
        client: None,
        user_agent: None,
    });
    let Message::Error(e) = reply else { panic!("not throttled: {reply:?}") };
    assert_eq!(e.code, ErrorCode::TooManyAttempts);
    assert!((1..=300).contains(&e.retry_after_secs), "{}", e.retry_after_secs);
    c.log_in(&bystander, PASSWORD);
}
}

on_single_and_cluster! {
fn a_successful_login_resets_the_users_failure_count(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let username = server.sign_up(&mut c, "forgetful", PASSWORD);
    for round in 0..3 {
        for _ in 0..4 {
            let reply = c.call(Message::Login {
                username: username.clone(),
                password: "typo-typo".into(),
                client: None,
                user_agent: None,
            });
            assert_eq!(error_code(&reply), ErrorCode::BadCredentials, "round {round}");
        }
        c.log_in(&username, PASSWORD);
    }
}
}

on_single_and_cluster! {
fn failed_logins_are_throttled_per_client_address(options) {
    let server = TestServer::start_with(options.clone());
    let mut c = server.connect();
    let username = server.sign_up(&mut c, "shared-ip", PASSWORD);
    let attacker: IpAddr = "198.51.100.7".parse().unwrap();
    let neighbour: IpAddr = "198.51.100.8".parse().unwrap();
    for i in 0..50 {
        let reply = c.call(Message::Login {
            username: server.username(&format!("n{i}")),
            password: PASSWORD.into(),
            client: Some(attacker),
            user_agent: None,
        });
        assert_eq!(error_code(&reply), ErrorCode::BadCredentials, "attempt {i}");
    }
    let from = |client| Message::Login {
        username: username.clone(),
        password: PASSWORD.into(),
        client: Some(client),
        user_agent: None,
    };
    assert_eq!(error_code(&c.call(from(attacker))), ErrorCode::TooManyAttempts);
    assert!(matches!(c.call(from(neighbour)), Message::LoggedIn { .. }));
}
}

#[test]
fn sign_ups_are_throttled_per_client_address() {
    let server = TestServer::start();
    let mut c = server.connect();
    let addr: IpAddr = "2001:db8:5::1".parse().unwrap();
    let sign_up = |i: usize, client: IpAddr| Message::SignUp {
        username: server.username(&format!("s{i}")),
        password: PASSWORD.into(),
        nickname: None,
        client: Some(client),
        key: new_key(),
    };
    for i in 0..20 {
        assert!(matches!(c.call(sign_up(i, addr)), Message::SignedUp(_)), "sign-up {i}");
    }
    // Same /64 network, different host.
    let reply = c.call(sign_up(20, "2001:db8:5::2".parse().unwrap()));
    let Message::Error(e) = reply else { panic!("not throttled: {reply:?}") };
    assert_eq!(e.code, ErrorCode::TooManyAttempts);
    assert!((1..=600).contains(&e.retry_after_secs));
    assert!(matches!(c.call(sign_up(21, "2001:db8:6::1".parse().unwrap())), Message::SignedUp(_)));
}

#[test]
fn an_idle_session_expires() {
    let server = TestServer::start_with(Options::default().arg("--session-idle-secs", 1));
    let mut c = server.connect();
    let (_, token) = server.user_with_session(&mut c, "idle", PASSWORD);
    thread::sleep(Duration::from_millis(2500));
    let reply = c.call(Message::GetProfile { token, username: None });
    assert_eq!(error_code(&reply), ErrorCode::Unauthenticated);
}

on_single_and_cluster! {
fn use_never_extends_a_session_past_its_absolute_lifetime(options) {
    let server =
        TestServer::start_with(options.clone().arg("--session-idle-secs", 3).arg("--session-max-secs", 5));
    let mut c = server.connect();
    let (_, token) = server.user_with_session(&mut c, "busy", PASSWORD);
    let get = |c: &mut util::Client| c.call(Message::GetProfile { token: token.clone(), username: None });
    thread::sleep(Duration::from_millis(2000));
    assert!(matches!(get(&mut c), Message::ProfileReply(_)));
    thread::sleep(Duration::from_millis(1500));
    assert!(matches!(get(&mut c), Message::ProfileReply(_)));
    // The idle timer alone would keep the session until 6.5 s.
    let mut redis = server.env.redis();
    let key = tcpserver::session::storage_key(&server.keys(), token.expose()).expect("a token");
    let ttl: i64 = redis::cmd("TTL").arg(key).query(&mut redis).unwrap();
    // Under 3 s (what the idle timer would give); 0 on a machine slow enough
    // that the key has under a second left.
    assert!((0..=2).contains(&ttl), "TTL {ttl} reaches past the absolute expiry");
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(error_code(&get(&mut c)), ErrorCode::Unauthenticated);
}
}

#[test]
fn a_raised_hash_cost_upgrades_the_stored_hash_at_login() {
    let old = TestServer::start();
    let mut c = old.connect();
    let username = old.sign_up(&mut c, "upgrade", PASSWORD);
    assert!(stored_hash(&old, &username).starts_with("$pbkdf2-sha256$i=1000$"));

    let raised = TestServer::start_with(Options::default().arg("--hash-cost", 1500));
    raised.connect().log_in(&username, PASSWORD);
    assert!(stored_hash(&old, &username).starts_with("$pbkdf2-sha256$i=1500$"));
    // The old server still verifies the new hash: the cost travels with it.
    old.connect().log_in(&username, PASSWORD);
}

#[test]
fn a_corrupt_session_entry_is_an_internal_error_not_a_crash() {
    let server = TestServer::start();
    let mut c = server.connect();
    let (_, token) = server.user_with_session(&mut c, "corrupt", PASSWORD);
    let mut redis = server.env.redis();
    let _: () = redis::cmd("SET")
        .arg(tcpserver::session::storage_key(&server.keys(), token.expose()).expect("a token"))
        .arg("not a session")
        .query(&mut redis)
        .unwrap();
    let reply = c.call(Message::GetProfile { token: token.clone(), username: None });
    let Message::Error(e) = reply else { panic!("{reply:?}") };
    assert_eq!(e.code, ErrorCode::Internal);
    assert!(!e.message.contains("session"), "internal details stay in the log: {}", e.message);
    assert!(server.stderr().contains("corrupt Redis entry: session"));
    assert_eq!(c.call(Message::Ping), Message::Pong);
}

on_single_and_cluster! {
/// Log-ins and profile reads sent all at once are answered in worker batches
/// (one worker here, so batches are as large as they get): each reply still
/// answers its own request, a wrong password in a batch fails alone, and every
/// session a batch opened works.
fn pipelined_logins_and_profile_reads_each_get_their_own_answer(options) {
    let server = TestServer::start_with(options.clone().arg("--workers", 1));
    let mut c = server.connect();
    let users: Vec<String> =
        ["ann", "bob", "cat"].iter().map(|name| server.sign_up(&mut c, name, PASSWORD)).collect();
    // Logged in once, so that the right passwords below need no hash: only
    // the wrong ones are counted on the failure counters while in flight.
    for user in &users {
        c.log_in(user, PASSWORD);
    }

    let mut expected = Vec::new();
    for round in 0..10 {
        for user in &users {
            // Every fourth one with a wrong password (at most 3 per user: under the throttle).
            let wrong = (round * users.len() + expected.len()) % 4 == 3 && round < 4;
            let password = if wrong { "not the password" } else { PASSWORD };
            let id = c.send(Message::Login {
                username: user.clone(),
                password: password.into(),
                client: None,
                user_agent: None,
            });
            expected.push((id, user.clone(), wrong));
        }
    }
    let mut tokens = Vec::new();
    for _ in 0..expected.len() {
        let frame = c.recv();
        let (_, user, wrong) =
            expected.iter().find(|(id, _, _)| *id == frame.request_id).expect("a known id");
        match frame.message {
            Message::LoggedIn { token, profile } if !wrong => {
                assert_eq!(&profile.username, user);
                tokens.push((token, user.clone()));
            }
            other if *wrong => assert_eq!(error_code(&other), ErrorCode::BadCredentials, "{user}"),
            other => panic!("{user}: {other:?}"),
        }
    }
    assert!(tokens.len() >= 20, "{} sessions", tokens.len());

    let reads: Vec<(u64, &String)> = tokens
        .iter()
        .map(|(token, user)| (c.send(Message::GetProfile { token: token.clone(), username: None }), user))
        .collect();
    for _ in 0..reads.len() {
        let frame = c.recv();
        let (_, user) = reads.iter().find(|(id, _)| *id == frame.request_id).expect("a known id");
        assert!(matches!(&frame.message, Message::ProfileReply(p) if &&p.username == user), "{frame:?}");
    }
}
}

on_single_and_cluster! {
/// First log-ins, which need MySQL, sent back to back to one worker: the batch
/// reads all their rows in one query, and still each one gets its own answer:
/// known users in, a wrong password, an unknown name and a malformed name out,
/// and a name asked twice in one batch logged in twice.
fn a_batch_of_first_logins_each_get_their_own_answer(options) {
    let server = TestServer::start_with(options.clone().arg("--workers", 1));
    let mut c = server.connect();
    let users: Vec<String> = (0..6).map(|i| server.sign_up(&mut c, &format!("first{i}"), PASSWORD)).collect();
    let unknown = server.username("nobody");

    let mut attempts: Vec<(&str, &str, bool)> =
        users.iter().map(|user| (user.as_str(), PASSWORD, true)).collect();
    attempts.push((&users[0], PASSWORD, true));
    attempts.push((&users[1], "not the password", false));
    attempts.push((&unknown, PASSWORD, false));
    attempts.push(("no spaces allowed", PASSWORD, false));
    attempts.push((&users[2], PASSWORD, true));

    let mut bytes = Vec::new();
    for (i, (username, password, _)) in attempts.iter().enumerate() {
        let message = Message::Login {
            username: username.to_string(),
            password: (*password).into(),
            client: None,
            user_agent: None,
        };
        proto::Frame { request_id: i as u64 + 1, message }.encode(&mut bytes).expect("encodable");
    }
    // One write, so the worker finds most of them queued together.
    c.write_raw(&bytes);
    let mut tokens = Vec::new();
    for _ in 0..attempts.len() {
        let frame = c.recv();
        let (username, _, should_succeed) = attempts[frame.request_id as usize - 1];
        match frame.message {
            Message::LoggedIn { token, profile } if should_succeed => {
                assert_eq!(profile.username, username);
                tokens.push((token, username));
            }
            other if !should_succeed => {
                assert_eq!(error_code(&other), ErrorCode::BadCredentials, "{username}")
            }
            other => panic!("{username}: {other:?}"),
        }
    }
    assert_eq!(tokens.len(), 8);
    for (token, username) in tokens {
        let reply = c.call(Message::GetProfile { token, username: None });
        assert!(matches!(&reply, Message::ProfileReply(p) if p.username == username), "{reply:?}");
    }
}
}
