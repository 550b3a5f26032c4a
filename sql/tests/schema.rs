//! `sql/schema.sql` applied over a database made by an earlier version of it:
//! every statement is idempotent, and migrations keep the rows they move.

mod util;

use mysql::prelude::Queryable;
use util::TestDb;

/// The `logins` table as the schema made it before `attempt_id` was its
/// primary key.
const LOGINS_BEFORE: &str = "CREATE TABLE logins (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    attempt_id  CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_id     BIGINT UNSIGNED NOT NULL,
    time_ms     BIGINT UNSIGNED NOT NULL,
    ip          VARCHAR(45) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    browser     VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    os          VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    method      VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    outcome     VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    new_device  BOOLEAN NOT NULL DEFAULT FALSE,
    suspicious  BOOLEAN NOT NULL DEFAULT FALSE,
    session_id  CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
    PRIMARY KEY (id),
    UNIQUE KEY uk_logins_attempt (attempt_id),
    KEY ix_logins_user_time (user_id, time_ms),
    KEY ix_logins_time (time_ms),
    CONSTRAINT fk_logins_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin";

/// The indexes of `logins`, by name, each with its columns in order.
fn logins_indexes(db: &mut TestDb) -> Vec<(String, String)> {
    db.conn()
        .query(
            "SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'logins' GROUP BY INDEX_NAME ORDER BY INDEX_NAME",
        )
        .unwrap()
}

#[test]
fn a_history_table_of_the_earlier_layout_gets_time_led_attempt_ids_as_its_key_and_keeps_its_rows() {
    let mut db = TestDb::create();
    let fresh = logins_indexes(&mut db);
    let schema = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.sql")).unwrap();
    let conn = db.conn();
    conn.query_drop("DROP TABLE logins").unwrap();
    conn.query_drop(LOGINS_BEFORE).unwrap();
    conn.query_drop("INSERT INTO users (id, username, nickname) VALUES (7, 'bruce_lee', 'Bruce')").unwrap();
    conn.query_drop(
        "INSERT INTO logins (attempt_id, user_id, time_ms, ip, browser, os, method, outcome) VALUES \
         ('9f0c1d2e3f405162738495a6b7c8d9e0', 7, 1700000000000, '192.0.2.1', 'Firefox', 'Linux', 'password', 'success'), \
         ('0a1b2c3d4e5f60718293a4b5c6d7e8f9', 7, 1700000001000, '192.0.2.1', 'Firefox', 'Linux', 'password', 'wrong_password')",
    )
    .unwrap();

    // Twice: the second application finds nothing left to do.
    for _ in 0..2 {
        db.conn().query_drop(&schema).unwrap();
        assert_eq!(logins_indexes(&mut db), fresh, "the migrated table has the fresh table's keys");
    }
    // Each old id now leads with its row's time (1700000000000 ms is
    // 0x018bcfe56800), and keeps its last 80 bits.
    let rows: Vec<(String, String)> =
        db.conn().query("SELECT attempt_id, outcome FROM logins ORDER BY time_ms").unwrap();
    assert_eq!(
        rows,
        [
            ("018bcfe568005162738495a6b7c8d9e0".to_owned(), "success".to_owned()),
            ("018bcfe56be860718293a4b5c6d7e8f9".to_owned(), "wrong_password".to_owned()),
        ]
    );
    let primary: Vec<String> =
        fresh.iter().filter(|(name, _)| name == "PRIMARY").map(|(_, c)| c.clone()).collect();
    assert_eq!(primary, ["attempt_id"]);
}
