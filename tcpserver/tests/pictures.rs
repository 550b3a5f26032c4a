//! Pictures over their life, stored in MariaDB: counted per account, deleted
//! when no account uses them, throttled per account, served by name, copied in
//! from the files of earlier versions at start, and never missing for an
//! account that points at one, however the uploads interleave.
//!
//! Every picture here is [`png_with_text`] of a text holding the server's
//! username prefix, so its name (and its rows in the shared `avatars` and
//! `avatar_bytes` tables) is this test's alone.

mod util;

use std::collections::HashMap;
use std::fs;
use std::sync::{Barrier, mpsc};
use std::thread;
use std::time::Duration;

use mysql::prelude::Queryable;
use proto::{ErrorCode, MAX_IMAGE_LEN, Message, Secret};
use tcpserver::avatar_refs;
use tcpserver::throttle::AVATAR_UPLOADS_PER_USER;
use util::{Client, Options, TestServer, png_name, png_with_text, redis_keys};

const PASSWORD: &str = "pictures-password";

/// Uploads `image` as the session's picture; the reply.
fn upload(c: &mut Client, token: &Secret, image: &[u8]) -> Message {
    c.call(Message::SetAvatar { token: token.clone(), username: None, image: image.to_vec() })
}

/// Uploads `image` and panics unless it is accepted; the picture's name.
fn set_picture(c: &mut Client, token: &Secret, image: &[u8]) -> String {
    match upload(c, token, image) {
        Message::AvatarSet(profile) => profile.avatar.expect("a picture in the profile"),
        other => panic!("upload refused: {other:?}"),
    }
}

/// The count of accounts using `name` in the `avatars` table (`None`: no row).
fn refs(server: &TestServer, name: &str) -> Option<u32> {
    server.env.mysql().exec_first("SELECT refs FROM avatars WHERE name = ?", (name,)).expect("query avatars")
}

/// The bytes stored under `name` in `avatar_bytes`, if any.
fn stored(server: &TestServer, name: &str) -> Option<Vec<u8>> {
    server
        .env
        .mysql()
        .exec_first("SELECT bytes FROM avatar_bytes WHERE name = ?", (name,))
        .expect("query avatar_bytes")
}

/// Of `pictures`, the names whose bytes are stored, sorted.
fn stored_names<'a>(server: &TestServer, pictures: impl IntoIterator<Item = &'a Vec<u8>>) -> Vec<String> {
    let mut names: Vec<String> =
        pictures.into_iter().map(|p| png_name(p)).filter(|name| stored(server, name).is_some()).collect();
    names.sort();
    names.dedup();
    names
}

/// Forgets every account's upload count, so a test can upload more than the
/// hourly limit allows.
fn reset_upload_throttle(server: &TestServer) {
    let mut redis = server.env.redis();
    let keys = redis_keys(&mut redis, &format!("{}thr:avatar:", server.redis_prefix));
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query(&mut redis).expect("DEL");
    }
}

#[test]
fn an_account_uploading_too_often_is_throttled_and_keeps_only_its_last_picture() {
    let server = TestServer::start();
    let mut c = server.connect();
    let (_, token) = server.user_with_session(&mut c, "often", PASSWORD);
    let limit = AVATAR_UPLOADS_PER_USER.max_attempts as usize;
    let pictures: Vec<Vec<u8>> =
        (0..=limit).map(|i| png_with_text(&format!("{} often {i}", server.user_prefix))).collect();
    for picture in &pictures[..limit] {
        assert_eq!(set_picture(&mut c, &token, picture), png_name(picture));
    }
    let Message::Error(refused) = upload(&mut c, &token, &pictures[limit]) else {
        panic!("upload {} was accepted", limit + 1)
    };
    assert_eq!(refused.code, ErrorCode::TooManyAttempts);
    let window = AVATAR_UPLOADS_PER_USER.window_secs as u32;
    assert!((1..=window).contains(&refused.retry_after_secs), "{refused:?}");

    let last = png_name(&pictures[limit - 1]);
    assert_eq!(stored_names(&server, &pictures), vec![last.clone()], "replaced pictures are deleted");
    assert_eq!(refs(&server, &last), Some(1));
    for picture in pictures.iter().take(limit - 1).chain([&pictures[limit]]) {
        assert_eq!(refs(&server, &png_name(picture)), None, "no count is left for a deleted picture");
    }
}

/// Twenty uploads of one account at the same moment, over twenty
/// connections: exactly the hourly limit is accepted (counted atomically
/// before the picture is stored), and the account's one picture is stored.
#[test]
fn simultaneous_uploads_of_one_account_stop_exactly_at_the_limit() {
    let server = TestServer::start();
    let mut c = server.connect();
    let (_, token) = server.user_with_session(&mut c, "rush", PASSWORD);
    let limit = AVATAR_UPLOADS_PER_USER.max_attempts as usize;
    let pictures: Vec<Vec<u8>> =
        (0..2 * limit).map(|i| png_with_text(&format!("{} rush {i}", server.user_prefix))).collect();
    let barrier = Barrier::new(2 * limit);
    let replies: Vec<Message> = thread::scope(|s| {
        let threads: Vec<_> = pictures
            .iter()
            .map(|picture| {
                let (mut client, token, barrier) = (server.connect(), token.clone(), &barrier);
                s.spawn(move || {
                    barrier.wait();
                    upload(&mut client, &token, picture)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().expect("upload thread")).collect()
    });
    let accepted = replies.iter().filter(|r| matches!(r, Message::AvatarSet(_))).count();
    let throttled = replies
        .iter()
        .filter(|r| matches!(r, Message::Error(e) if e.code == ErrorCode::TooManyAttempts))
        .count();
    assert_eq!((accepted, throttled), (limit, limit), "{replies:?}");
    assert_eq!(stored_names(&server, &pictures).len(), 1, "only the account's current picture stays");
}

#[test]
fn a_shared_picture_stays_while_any_account_uses_it_and_is_served_by_name() {
    let server = TestServer::start();
    let mut c = server.connect();
    let (_, ann) = server.user_with_session(&mut c, "ann", PASSWORD);
    let (_, bob) = server.user_with_session(&mut c, "bob", PASSWORD);
    let shared = png_with_text(&format!("{} shared", server.user_prefix));
    let anns = png_with_text(&format!("{} ann's own", server.user_prefix));
    let bobs = png_with_text(&format!("{} bob's own", server.user_prefix));
    let name = png_name(&shared);

    assert_eq!(set_picture(&mut c, &ann, &shared), name);
    assert_eq!(set_picture(&mut c, &bob, &shared), name);
    assert_eq!(refs(&server, &name), Some(2));
    // The same picture again changes no count.
    assert_eq!(set_picture(&mut c, &bob, &shared), name);
    assert_eq!(refs(&server, &name), Some(2));
    let served = c.call(Message::GetAvatar { name: name.clone() });
    assert_eq!(served, Message::Avatar { content_type: "image/png".into(), image: shared.clone() });

    set_picture(&mut c, &ann, &anns);
    assert_eq!(refs(&server, &name), Some(1));
    assert_eq!(stored(&server, &name), Some(shared.clone()), "bob still uses it");

    set_picture(&mut c, &bob, &bobs);
    assert_eq!(refs(&server, &name), None);
    assert_eq!(stored(&server, &name), None, "deleted once neither uses it");
    let Message::Error(gone) = c.call(Message::GetAvatar { name }) else {
        panic!("a deleted picture served")
    };
    assert_eq!(gone.code, ErrorCode::UnknownAvatar);
    let mut expected = vec![png_name(&anns), png_name(&bobs)];
    expected.sort();
    assert_eq!(stored_names(&server, [&shared, &anns, &bobs]), expected);
}

/// A picture of exactly [`MAX_IMAGE_LEN`] bytes: one statement and one row
/// of that size, and a reply frame at its largest.
#[test]
fn a_picture_at_the_size_cap_is_stored_and_served_whole() {
    let server = TestServer::start();
    let mut c = server.connect();
    let (_, token) = server.user_with_session(&mut c, "large", PASSWORD);
    let stamp = format!("{} large ", server.user_prefix);
    let unpadded = png_with_text(&stamp).len();
    let picture = png_with_text(&format!("{stamp}{}", "x".repeat(MAX_IMAGE_LEN - unpadded)));
    assert_eq!(picture.len(), MAX_IMAGE_LEN);
    let name = set_picture(&mut c, &token, &picture);
    assert_eq!(stored(&server, &name).as_ref(), Some(&picture));
    let served = c.call(Message::GetAvatar { name });
    assert_eq!(served, Message::Avatar { content_type: "image/png".into(), image: picture });
}

#[test]
fn unknown_and_malformed_picture_names_are_unknown() {
    let server = TestServer::start();
    let mut c = server.connect();
    let never_stored = png_name(&png_with_text(&format!("{} never", server.user_prefix)));
    for name in [
        never_stored.clone(),
        never_stored.replace(".png", ".gif"),
        never_stored.to_uppercase(),
        format!("../{never_stored}"),
        "x.png".into(),
        String::new(),
        "' OR 1=1 --".into(),
    ] {
        let Message::Error(e) = c.call(Message::GetAvatar { name: name.clone() }) else {
            panic!("{name:?} was served")
        };
        assert_eq!(e.code, ErrorCode::UnknownAvatar, "{name:?}");
    }
}

#[test]
fn deleting_an_account_releases_its_picture() {
    let server = TestServer::start();
    let mut c = server.connect();
    let (gone_user, gone) = server.user_with_session(&mut c, "leaver", PASSWORD);
    let (_, stays) = server.user_with_session(&mut c, "stayer", PASSWORD);
    let own = png_with_text(&format!("{} leaver's own", server.user_prefix));
    let shared = png_with_text(&format!("{} both", server.user_prefix));
    set_picture(&mut c, &gone, &own);
    set_picture(&mut c, &stays, &shared);
    let delete = |c: &mut Client, token: &Secret, username: &str| {
        c.call(Message::DeleteAccount {
            token: token.clone(),
            password: PASSWORD.into(),
            confirm: username.to_owned(),
            client: None,
        })
    };
    assert_eq!(delete(&mut c, &gone, &gone_user), Message::AccountDeleted);
    assert_eq!((refs(&server, &png_name(&own)), stored(&server, &png_name(&own))), (None, None));

    // A picture another account still uses stays when one of its accounts goes.
    let (second_user, second) = server.user_with_session(&mut c, "second", PASSWORD);
    set_picture(&mut c, &second, &shared);
    assert_eq!(refs(&server, &png_name(&shared)), Some(2));
    assert_eq!(delete(&mut c, &second, &second_user), Message::AccountDeleted);
    assert_eq!(refs(&server, &png_name(&shared)), Some(1));
    assert_eq!(stored(&server, &png_name(&shared)), Some(shared));
}

/// A system upgraded from the file store: an account points at a picture
/// counted in `avatars` whose bytes are a file in the avatar directory. At
/// start they are copied into MariaDB and served; a picture whose file is
/// gone, or whose file is not the picture its name says, is left alone.
#[test]
fn pictures_left_as_files_by_an_earlier_version_are_copied_in_at_start() {
    let mut server = TestServer::start();
    let mut c = server.connect();
    let pictures: Vec<(String, Vec<u8>)> = ["kept", "nofile", "forged"]
        .into_iter()
        .map(|what| {
            let username = server.sign_up(&mut c, what, PASSWORD);
            (username, png_with_text(&format!("{} old {what}", server.user_prefix)))
        })
        .collect();
    let mut mysql = server.env.mysql();
    for (username, picture) in &pictures {
        let name = png_name(picture);
        mysql.exec_drop("UPDATE users SET avatar = ? WHERE username = ?", (&name, username)).unwrap();
        mysql.exec_drop("INSERT INTO avatars (name, refs) VALUES (?, 1)", (&name,)).unwrap();
    }
    fs::create_dir_all(&server.avatar_dir).unwrap();
    let [(_, kept), (_, _), (_, forged)] = &pictures[..] else { unreachable!() };
    fs::write(server.avatar_dir.join(png_name(kept)), kept).unwrap();
    fs::write(server.avatar_dir.join(png_name(forged)), png_with_text("someone else's")).unwrap();

    server.restart();
    let line = server.wait_for_log("avatar import from", 1).remove(0);
    assert!(line.contains("copied 1 pictures"), "{line}");
    assert!(line.contains("1 in use have no file there"), "{line}");
    assert!(line.contains("1 files are not the picture their name says"), "{line}");

    let mut c = server.connect();
    let served = c.call(Message::GetAvatar { name: png_name(kept) });
    assert_eq!(served, Message::Avatar { content_type: "image/png".into(), image: kept.clone() });
    for (_, absent) in &pictures[1..] {
        assert_eq!(stored(&server, &png_name(absent)), None);
        assert!(matches!(c.call(Message::GetAvatar { name: png_name(absent) }), Message::Error(_)));
    }
}

/// Accounts switch to one picture at the same moment as the one account
/// holding it switches away (so its count falls to zero and its bytes are
/// deleted while others take it), then back, round after round. After every
/// round each account's picture is stored with its bytes, the counts equal
/// the accounts using each picture, and no other picture is left.
#[test]
fn concurrent_uploads_of_one_picture_never_leave_an_account_without_its_bytes() {
    const ACCOUNTS: usize = 6;
    const ROUNDS: usize = 12;
    let server = TestServer::start_with(Options::default().arg("--workers", ACCOUNTS));
    let mut c = server.connect();
    let tokens: Vec<Secret> =
        (0..ACCOUNTS).map(|i| server.user_with_session(&mut c, &format!("racer{i}"), PASSWORD).1).collect();
    let shared = png_with_text(&format!("{} shared", server.user_prefix));
    let own = |i: usize, step: usize| png_with_text(&format!("{} racer {i} step {step}", server.user_prefix));
    set_picture(&mut c, &tokens[0], &shared);
    let mut every_picture = vec![shared.clone()];

    for step in 0..2 * ROUNDS {
        // Even steps: the others take the shared picture while account 0 lets
        // go of it; odd steps: account 0 takes it back while the others let go.
        let takes_shared = |i: usize| (i == 0) == (step % 2 == 1);
        let pictures: Vec<Vec<u8>> =
            (0..ACCOUNTS).map(|i| if takes_shared(i) { shared.clone() } else { own(i, step) }).collect();
        every_picture.extend(pictures.iter().cloned());
        let start = Barrier::new(ACCOUNTS);
        thread::scope(|s| {
            for (token, picture) in tokens.iter().zip(&pictures) {
                let (server, start) = (&server, &start);
                s.spawn(move || {
                    let mut c = server.connect();
                    start.wait();
                    assert_eq!(set_picture(&mut c, token, picture), png_name(picture));
                });
            }
        });

        let mut users: HashMap<String, u32> = HashMap::new();
        for (token, picture) in tokens.iter().zip(&pictures) {
            let Message::ProfileReply(profile) =
                c.call(Message::GetProfile { token: token.clone(), username: None })
            else {
                panic!("profile unreadable")
            };
            let name = profile.avatar.expect("a picture");
            assert_eq!(name, png_name(picture), "step {step}");
            assert_eq!(stored(&server, &name).as_ref(), Some(picture), "step {step}: {name} is missing");
            *users.entry(name).or_default() += 1;
        }
        for (name, count) in &users {
            assert_eq!(refs(&server, name), Some(*count), "step {step}: count of {name}");
        }
        let mut in_use: Vec<String> = users.into_keys().collect();
        in_use.sort();
        assert_eq!(stored_names(&server, &every_picture), in_use, "step {step}");
        reset_upload_throttle(&server);
    }
}

/// A picture that an account's upload is about to use, and that another
/// account's release of its last reference wants to delete: the two orderings
/// of the row lock, one test each, made deterministic by holding one
/// transaction open while the other waits. `replace` and `release` are called
/// directly, on connections of the test's own.
struct LockRace {
    server: TestServer,
    /// The account that takes the picture.
    taker: u64,
    picture: Vec<u8>,
    name: String,
}

impl LockRace {
    /// Two accounts: one using the picture (count 1, bytes stored), about to
    /// let go of it, and one about to take it.
    fn new(suffix: &str) -> LockRace {
        let server = TestServer::start();
        let mut c = server.connect();
        let (_, holder) = server.user_with_session(&mut c, &format!("{suffix}h"), PASSWORD);
        let taker_name = server.sign_up(&mut c, &format!("{suffix}t"), PASSWORD);
        let picture = png_with_text(&format!("{} race", server.user_prefix));
        let name = set_picture(&mut c, &holder, &picture);
        let taker: u64 = server
            .env
            .mysql()
            .exec_first("SELECT id FROM users WHERE username = ?", (&taker_name,))
            .unwrap()
            .unwrap();
        LockRace { server, taker, picture, name }
    }
}

/// How long a step must stay blocked to count as waiting for the lock.
const BLOCKED: Duration = Duration::from_millis(500);

#[test]
fn a_release_waits_for_a_reference_being_taken_and_then_keeps_the_bytes() {
    let race = LockRace::new("taker");
    let mut conn = race.server.env.mysql();
    let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
    let replaced = avatar_refs::replace(&mut tx, race.taker, &race.name, &race.picture);
    assert!(matches!(replaced, Ok(Some(_))), "{replaced:?}");
    let (done, released) = mpsc::channel();
    thread::scope(|s| {
        s.spawn(|| {
            let mut conn = race.server.env.mysql();
            let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
            avatar_refs::release(&mut tx, &race.name).unwrap();
            tx.commit().unwrap();
            done.send(()).unwrap();
        });
        assert!(released.recv_timeout(BLOCKED).is_err(), "the release did not wait for the lock");
        tx.commit().unwrap();
        released.recv_timeout(util::REPLY_TIMEOUT).unwrap();
    });
    assert_eq!(stored(&race.server, &race.name), Some(race.picture.clone()));
    assert_eq!(refs(&race.server, &race.name), Some(1));
}

#[test]
fn a_reference_taken_after_a_release_stores_the_bytes_again() {
    let race = LockRace::new("late");
    let mut conn = race.server.env.mysql();
    let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
    avatar_refs::release(&mut tx, &race.name).unwrap();
    let left: Option<u64> =
        tx.exec_first("SELECT COUNT(*) FROM avatar_bytes WHERE name = ?", (&race.name,)).unwrap();
    assert_eq!(left, Some(0), "the release deletes the bytes");
    let (done, replaced) = mpsc::channel();
    thread::scope(|s| {
        s.spawn(|| {
            let mut conn = race.server.env.mysql();
            let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
            let replaced = avatar_refs::replace(&mut tx, race.taker, &race.name, &race.picture);
            let ok = matches!(replaced, Ok(Some(_)));
            tx.commit().unwrap();
            done.send(ok).unwrap();
        });
        assert!(replaced.recv_timeout(BLOCKED).is_err(), "the reference did not wait for the lock");
        tx.commit().unwrap();
        assert!(replaced.recv_timeout(util::REPLY_TIMEOUT).unwrap(), "replace failed");
    });
    assert_eq!(stored(&race.server, &race.name), Some(race.picture.clone()));
    assert_eq!(refs(&race.server, &race.name), Some(1));
}
