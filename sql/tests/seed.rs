//! The seeding tool against a real MariaDB: a few thousand accounts in a
//! throwaway database, checked the way the load generator and a user would
//! rely on them.

mod util;

use mysql::prelude::Queryable;
use seed::accounts::{self, FIRST_SIGN_UP_ID};
use tcpserver::password::PasswordHasher;
use util::{Pepper, TestDb, hex, seed, text};

const ACCOUNTS: u64 = 3_000;

#[test]
fn seeds_accounts_that_log_in_and_a_second_run_does_nothing() {
    let mut db = TestDb::create();
    let pepper = Pepper::new();

    let first = seed(&db, ACCOUNTS, &pepper);
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("added: 3000"), "{}", text(&first));
    assert_eq!(db.count("users"), ACCOUNTS);
    assert_eq!(db.count("credentials"), ACCOUNTS);

    // Every seeded password verifies with the server's hasher, and only it.
    let hasher = PasswordHasher::new(pepper.bytes.clone(), 1_000).unwrap();
    for id in [1, 2, 1_500, ACCOUNTS] {
        let (name, stored): (String, String) = db
            .conn()
            .exec_first("SELECT username, password_hash FROM credentials WHERE user_id = ?", (id,))
            .unwrap()
            .unwrap();
        assert_eq!(name, accounts::username(id));
        assert!(stored.starts_with("$pbkdf2-sha256$i=1000$"), "{stored}");
        assert!(hasher.verify(&accounts::password(id), &stored).unwrap(), "account {id}");
        assert!(!hasher.verify(&accounts::password(id + 1), &stored).unwrap(), "account {id}");
    }

    // Nicknames, non-ASCII ones included, are stored byte for byte.
    let stored: Vec<(u64, String)> =
        db.conn().query("SELECT id, HEX(nickname) FROM users WHERE id <= 30 ORDER BY id").unwrap();
    assert_eq!(stored.len(), 30);
    for (id, nickname_hex) in &stored {
        assert_eq!(nickname_hex, &hex(accounts::nickname(*id).as_bytes()), "account {id}");
    }
    assert!(stored.iter().filter(|(id, _)| !accounts::nickname(*id).is_ascii()).count() >= 10);

    // Same N again: nothing changes, not even a salt.
    let hash_before: String =
        db.conn().query_first("SELECT password_hash FROM credentials WHERE user_id = 1").unwrap().unwrap();
    let second = seed(&db, ACCOUNTS, &pepper);
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("added: 0"), "{}", text(&second));
    let hash_after: String =
        db.conn().query_first("SELECT password_hash FROM credentials WHERE user_id = 1").unwrap().unwrap();
    assert_eq!(hash_after, hash_before);
    assert_eq!(db.count("users"), ACCOUNTS);
}

#[test]
fn a_larger_run_adds_only_the_missing_accounts_and_sign_ups_stay_out_of_the_way() {
    let mut db = TestDb::create();
    let pepper = Pepper::new();
    let first = seed(&db, 1_000, &pepper);
    assert!(first.status.success(), "{}", text(&first));
    let kept: String =
        db.conn().query_first("SELECT password_hash FROM credentials WHERE user_id = 1000").unwrap().unwrap();

    // A real sign-up after the seed gets an id above the reserved range.
    db.conn().query_drop("INSERT INTO users (username, nickname) VALUES ('alice', 'Alice')").unwrap();
    let alice: u64 = db.conn().query_first("SELECT id FROM users WHERE username = 'alice'").unwrap().unwrap();
    assert!(alice >= FIRST_SIGN_UP_ID, "{alice}");

    // Resuming (as after an interrupted run) adds 1001..=1500 and keeps the rest.
    let more = seed(&db, 1_500, &pepper);
    assert!(more.status.success(), "{}", text(&more));
    assert!(text(&more).contains("already there: 1000, added: 500"), "{}", text(&more));
    let seeded: u64 =
        db.conn().query_first("SELECT COUNT(*) FROM credentials WHERE user_id <= 1500").unwrap().unwrap();
    assert_eq!(seeded, 1_500);
    let still: String =
        db.conn().query_first("SELECT password_hash FROM credentials WHERE user_id = 1000").unwrap().unwrap();
    assert_eq!(still, kept);
    assert_eq!(db.count("users"), 1_501);
}

#[test]
fn a_taken_seed_username_is_refused_not_overwritten() {
    let mut db = TestDb::create();
    let pepper = Pepper::new();
    // Someone signed up as a seeded name before the seed ran.
    db.conn()
        .query_drop(
            "INSERT INTO users (id, username, nickname) VALUES (100000005, 'user00000700', 'Mallory')",
        )
        .unwrap();
    let run = seed(&db, 1_000, &pepper);
    assert!(!run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("are not seeded accounts"), "{}", text(&run));
    assert_eq!(db.count("credentials"), 0);
    let nickname: String =
        db.conn().query_first("SELECT nickname FROM users WHERE username = 'user00000700'").unwrap().unwrap();
    assert_eq!(nickname, "Mallory");
}

#[test]
fn another_pepper_is_refused_before_adding_accounts_no_one_could_use() {
    let mut db = TestDb::create();
    let first = seed(&db, 100, &Pepper::new());
    assert!(first.status.success(), "{}", text(&first));
    let other = seed(&db, 200, &Pepper::new());
    assert!(!other.status.success(), "{}", text(&other));
    assert!(text(&other).contains("another pepper"), "{}", text(&other));
    assert_eq!(db.count("users"), 100);
}

#[test]
fn a_second_seed_at_the_same_time_is_turned_away() {
    let mut db = TestDb::create();
    let pepper = Pepper::new();
    // Hold the lock a running seed would hold, on a connection of our own.
    let name = db.name.clone();
    let held: Option<u8> =
        db.conn().exec_first("SELECT GET_LOCK(CONCAT('usermgmt-seed:', ?), 0)", (name,)).unwrap();
    assert_eq!(held, Some(1));
    let run = seed(&db, 100, &pepper);
    assert!(!run.status.success(), "{}", text(&run));
    assert!(text(&run).contains("another seed is running"), "{}", text(&run));
    assert_eq!(db.count("users"), 0);
}
