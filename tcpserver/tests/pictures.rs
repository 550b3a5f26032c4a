//! Picture files over their life: counted per account, deleted when no account
//! uses them, throttled per account, swept at start, refused when the disk is
//! low, and never missing for an account that points at one, however the
//! uploads interleave.
//!
//! Every picture here is [`png_with_text`] of a text holding the server's
//! username prefix, so its file name (and its row in the shared `avatars`
//! table) is this test's alone.

mod util;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::sync::{Barrier, mpsc};
use std::thread;
use std::time::Duration;

use mysql::prelude::Queryable;
use proto::{ErrorCode, Message, Secret};
use tcpserver::avatar_refs::{self, Released};
use tcpserver::avatar_store::AvatarStore;
use tcpserver::image::ImageKind;
use tcpserver::throttle::AVATAR_UPLOADS_PER_USER;
use util::{Client, Options, TestServer, backdate, files_in, png_name, png_with_text, redis_keys};

const PASSWORD: &str = "pictures-password";

/// Uploads `image` as the session's picture; the reply.
fn upload(c: &mut Client, token: &Secret, image: &[u8]) -> Message {
    c.call(Message::SetAvatar { token: token.clone(), username: None, image: image.to_vec() })
}

/// Uploads `image` and panics unless it is accepted; the file name.
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
    assert_eq!(files_in(&server.avatar_dir), vec![last.clone()], "replaced pictures are deleted");
    assert_eq!(refs(&server, &last), Some(1));
    for picture in pictures.iter().take(limit - 1).chain([&pictures[limit]]) {
        assert_eq!(refs(&server, &png_name(picture)), None, "no count is left for a deleted file");
    }
}

/// Twenty uploads of one account at the same moment, over twenty
/// connections: exactly the hourly limit is accepted (counted atomically
/// before the picture is stored), and the account's one picture is on disk.
#[test]
fn simultaneous_uploads_of_one_account_stop_exactly_at_the_limit() {
    let server = TestServer::start();
    let mut c = server.connect();
    let (_, token) = server.user_with_session(&mut c, "rush", PASSWORD);
    let limit = AVATAR_UPLOADS_PER_USER.max_attempts as usize;
    let barrier = Barrier::new(2 * limit);
    let replies: Vec<Message> = thread::scope(|s| {
        let threads: Vec<_> = (0..2 * limit)
            .map(|i| {
                let (mut client, token, barrier) = (server.connect(), token.clone(), &barrier);
                let picture = png_with_text(&format!("{} rush {i}", server.user_prefix));
                s.spawn(move || {
                    barrier.wait();
                    upload(&mut client, &token, &picture)
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
    assert_eq!(files_in(&server.avatar_dir).len(), 1, "only the account's current picture stays");
}

#[test]
fn a_shared_picture_stays_while_any_account_uses_it() {
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

    set_picture(&mut c, &ann, &anns);
    assert_eq!(refs(&server, &name), Some(1));
    assert_eq!(fs::read(server.avatar_dir.join(&name)).unwrap(), shared, "bob still uses it");

    set_picture(&mut c, &bob, &bobs);
    assert_eq!(refs(&server, &name), None);
    assert!(!server.avatar_dir.join(&name).exists(), "deleted once neither uses it");
    let mut expected = vec![png_name(&anns), png_name(&bobs)];
    expected.sort();
    assert_eq!(files_in(&server.avatar_dir), expected);
}

#[test]
fn a_restart_removes_old_temporary_files_and_unused_pictures_only() {
    let mut server = TestServer::start();
    server.wait_for_log("avatar sweep of", 1);
    let mut c = server.connect();
    let (_, token) = server.user_with_session(&mut c, "kept", PASSWORD);
    let used = set_picture(&mut c, &token, &png_with_text(&format!("{} used", server.user_prefix)));

    let dir = server.avatar_dir.clone();
    let write = |name: &str, bytes: &[u8], age_secs: u64| {
        fs::write(dir.join(name), bytes).unwrap();
        if age_secs > 0 {
            backdate(&dir.join(name), age_secs);
        }
    };
    let old = 2 * 3600;
    let stale_upload = ".upload-0123456789abcdef.tmp";
    write(stale_upload, b"half an upload", old);
    let fresh_upload = ".upload-fedcba9876543210.tmp";
    write(fresh_upload, b"an upload being written", 0);
    let orphan = png_with_text(&format!("{} orphan", server.user_prefix));
    write(&png_name(&orphan), &orphan, old);
    // A count left at zero: a release that never ran.
    let zero = png_with_text(&format!("{} zero", server.user_prefix));
    write(&png_name(&zero), &zero, old);
    server
        .env
        .mysql()
        .exec_drop("INSERT INTO avatars (name, refs) VALUES (?, 0)", (png_name(&zero),))
        .unwrap();
    let young = png_with_text(&format!("{} young", server.user_prefix));
    write(&png_name(&young), &young, 0);
    write("notes.txt", b"an operator's file", old);
    backdate(&dir.join(&used), old);

    server.restart();
    let lines = server.wait_for_log("avatar sweep of", 2);
    let removed = format!(
        "removed 1 temporary files (14 bytes) and 2 unused pictures ({} bytes)",
        orphan.len() + zero.len()
    );
    assert!(lines[1].contains(&removed), "{}", lines[1]);

    let mut expected = vec![used.clone(), fresh_upload.into(), png_name(&young), "notes.txt".into()];
    expected.sort();
    assert_eq!(files_in(&dir), expected);
    assert_eq!(refs(&server, &png_name(&zero)), None);
    assert_eq!(refs(&server, &used), Some(1));
    let mut c = server.connect();
    let Message::ProfileReply(profile) = c.call(Message::GetProfile { token, username: None }) else {
        panic!("profile unreadable")
    };
    assert_eq!(profile.avatar, Some(used));
}

#[test]
fn an_upload_below_the_free_space_floor_is_refused_and_stores_nothing() {
    let free_mb = tcpserver::free_space::available_bytes(&std::env::temp_dir()).unwrap() >> 20;
    let server = TestServer::start_with(Options::default().arg("--avatar-min-free-mb", free_mb + (1 << 20)));
    let mut c = server.connect();
    let (username, token) = server.user_with_session(&mut c, "full", PASSWORD);
    let picture = png_with_text(&format!("{} no room", server.user_prefix));
    let Message::Error(refused) = upload(&mut c, &token, &picture) else { panic!("stored without room") };
    assert_eq!(refused.code, ErrorCode::InsufficientStorage);
    assert_eq!(refused.retry_after_secs, tcpserver::error::RETRY_AFTER_STORAGE_SECS);
    assert!(files_in(&server.avatar_dir).is_empty());
    assert_eq!(refs(&server, &png_name(&picture)), None);
    let avatar: Option<Option<String>> =
        server.env.mysql().exec_first("SELECT avatar FROM users WHERE username = ?", (&username,)).unwrap();
    assert_eq!(avatar, Some(None));
    let throttled = redis_keys(&mut server.env.redis(), &format!("{}thr:avatar:", server.redis_prefix));
    assert!(throttled.is_empty(), "a refused upload is not counted against the account");
    server.wait_for_log("refusing new pictures", 1);
}

/// Accounts switch to one picture at the same moment as the one account
/// holding it switches away (so its count falls to zero and its file is
/// deleted while others take it), then back, round after round. After every
/// round each account's file is on disk with its bytes, the counts equal the
/// accounts using each file, and no other file is left.
#[test]
fn concurrent_uploads_of_one_picture_never_leave_an_account_without_its_file() {
    const ACCOUNTS: usize = 6;
    const ROUNDS: usize = 12;
    let server = TestServer::start_with(Options::default().arg("--workers", ACCOUNTS));
    let mut c = server.connect();
    let tokens: Vec<Secret> =
        (0..ACCOUNTS).map(|i| server.user_with_session(&mut c, &format!("racer{i}"), PASSWORD).1).collect();
    let shared = png_with_text(&format!("{} shared", server.user_prefix));
    let own = |i: usize, step: usize| png_with_text(&format!("{} racer {i} step {step}", server.user_prefix));
    set_picture(&mut c, &tokens[0], &shared);

    for step in 0..2 * ROUNDS {
        // Even steps: the others take the shared picture while account 0 lets
        // go of it; odd steps: account 0 takes it back while the others let go.
        let takes_shared = |i: usize| (i == 0) == (step % 2 == 1);
        let pictures: Vec<Vec<u8>> =
            (0..ACCOUNTS).map(|i| if takes_shared(i) { shared.clone() } else { own(i, step) }).collect();
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
            let on_disk = fs::read(server.avatar_dir.join(&name));
            assert_eq!(on_disk.ok().as_ref(), Some(picture), "step {step}: {name} is missing");
            *users.entry(name).or_default() += 1;
        }
        for (name, count) in &users {
            assert_eq!(refs(&server, name), Some(*count), "step {step}: count of {name}");
        }
        let in_use: BTreeSet<String> = users.into_keys().collect();
        assert_eq!(files_in(&server.avatar_dir), in_use.into_iter().collect::<Vec<_>>(), "step {step}");
        reset_upload_throttle(&server);
    }
    assert!(!server.stderr().contains("] picture "), "no release failed:\n{}", server.stderr());
}

/// A picture that an account's upload is about to use, and that a release
/// (of another account's last reference) wants to delete: the two
/// orderings of the row lock, one test each, made deterministic by holding
/// one transaction open while the other waits. `replace` and `release` are
/// called directly, on connections of the test's own.
struct LockRace {
    server: TestServer,
    store: AvatarStore,
    user_id: u64,
    picture: Vec<u8>,
    name: String,
}

impl LockRace {
    /// An account, and a picture on disk whose count is at zero: another
    /// account has just let go of it, and its release is due.
    fn new(suffix: &str) -> LockRace {
        let server = TestServer::start();
        let mut c = server.connect();
        let username = server.sign_up(&mut c, suffix, PASSWORD);
        let user_id: u64 = server
            .env
            .mysql()
            .exec_first("SELECT id FROM users WHERE username = ?", (&username,))
            .unwrap()
            .unwrap();
        let store = AvatarStore::open(server.dir.join("direct"), 0).unwrap();
        let picture = png_with_text(&format!("{} race", server.user_prefix));
        let name = store.store(&picture, ImageKind::Png).unwrap().name;
        server.env.mysql().exec_drop("INSERT INTO avatars (name, refs) VALUES (?, 0)", (&name,)).unwrap();
        LockRace { server, store, user_id, picture, name }
    }

    /// Releases the picture, in a transaction of its own, and says what became of it.
    fn release(&self, tx: &mut mysql::Transaction<'_>) -> Released {
        let mut released = avatar_refs::release(tx, &self.store, &[self.name.as_str()]).unwrap();
        assert_eq!(released.len(), 1);
        released.remove(0).1
    }
}

/// How long a step must stay blocked to count as waiting for the lock.
const BLOCKED: Duration = Duration::from_millis(500);

#[test]
fn a_release_waits_for_a_reference_being_taken_and_then_keeps_the_file() {
    let race = LockRace::new("taker");
    let mut conn = race.server.env.mysql();
    let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
    let replaced = avatar_refs::replace(&mut tx, &race.store, race.user_id, &race.name, &race.picture);
    assert!(matches!(replaced, Ok(Ok(Some(_)))), "{replaced:?}");
    let (done, released) = mpsc::channel();
    thread::scope(|s| {
        s.spawn(|| {
            let mut conn = race.server.env.mysql();
            let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
            let released = race.release(&mut tx);
            tx.commit().unwrap();
            done.send(released).unwrap();
        });
        assert!(released.recv_timeout(BLOCKED).is_err(), "the release did not wait for the lock");
        tx.commit().unwrap();
        let released = released.recv_timeout(util::REPLY_TIMEOUT).unwrap();
        assert!(matches!(released, Released::InUse), "{released:?}");
    });
    assert_eq!(fs::read(race.store.dir().join(&race.name)).unwrap(), race.picture);
    assert_eq!(refs(&race.server, &race.name), Some(1));
}

#[test]
fn a_reference_taken_after_a_release_writes_the_file_again() {
    let race = LockRace::new("late");
    let mut conn = race.server.env.mysql();
    let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
    let released = race.release(&mut tx);
    assert!(matches!(released, Released::Removed { .. }), "{released:?}");
    let (done, replaced) = mpsc::channel();
    thread::scope(|s| {
        s.spawn(|| {
            let mut conn = race.server.env.mysql();
            let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
            let replaced =
                avatar_refs::replace(&mut tx, &race.store, race.user_id, &race.name, &race.picture);
            let ok = matches!(replaced, Ok(Ok(Some(_))));
            tx.commit().unwrap();
            done.send(ok).unwrap();
        });
        assert!(replaced.recv_timeout(BLOCKED).is_err(), "the reference did not wait for the lock");
        assert!(!race.store.dir().join(&race.name).exists());
        tx.commit().unwrap();
        assert!(replaced.recv_timeout(util::REPLY_TIMEOUT).unwrap(), "replace failed");
    });
    assert_eq!(fs::read(race.store.dir().join(&race.name)).unwrap(), race.picture);
    assert_eq!(refs(&race.server, &race.name), Some(1));
}
