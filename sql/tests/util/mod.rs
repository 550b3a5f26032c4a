//! Helpers for the seeding tool's integration tests: a throwaway database
//! with the real schema, a throwaway pepper, and a way to run the binary.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use mysql::{Conn, Opts, prelude::Queryable};
use rand::RngExt;

/// MariaDB's root over the unix socket, as `./test.sh` sets the machine up.
const ROOT_URL: &str = "mysql://root@localhost/?socket=/run/mysqld/mysqld.sock";

/// A database of its own for one test, created from `sql/schema.sql` and
/// dropped when the value goes out of scope (also when the test fails).
pub struct TestDb {
    pub name: String,
    pub url: String,
    conn: Conn,
}

impl TestDb {
    pub fn create() -> TestDb {
        let suffix: u64 = rand::rng().random();
        let name = format!("usermgmt_seedtest_{suffix:016x}");
        let mut conn = Conn::new(Opts::from_url(ROOT_URL).unwrap())
            .expect("MariaDB root over /run/mysqld/mysqld.sock (run ./test.sh once to set it up)");
        conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"))
            .unwrap();
        let schema = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.sql")).unwrap();
        conn.select_db(&name).unwrap();
        conn.query_drop(schema).unwrap();
        let url = format!("mysql://root@localhost/{name}?socket=/run/mysqld/mysqld.sock");
        TestDb { name, url, conn }
    }

    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    pub fn count(&mut self, table: &str) -> u64 {
        self.conn.query_first(format!("SELECT COUNT(*) FROM {table}")).unwrap().unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = self.conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name));
    }
}

/// A pepper file of 32 random bytes, removed when dropped.
pub struct Pepper {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
}

impl Pepper {
    pub fn new() -> Pepper {
        let bytes: Vec<u8> = (0..32).map(|_| rand::rng().random()).collect();
        let suffix: u64 = rand::rng().random();
        let path = std::env::temp_dir().join(format!("usermgmt-seedtest-pepper-{suffix:016x}"));
        fs::write(&path, &bytes).unwrap();
        Pepper { path, bytes }
    }
}

impl Drop for Pepper {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Runs the `seed` binary against `db` with `accounts` accounts and `pepper`.
pub fn seed(db: &TestDb, accounts: u64, pepper: &Pepper) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seed"))
        .args(["--accounts", &accounts.to_string(), "--mysql-url", &db.url, "--pepper-file"])
        .arg(&pepper.path)
        .env_remove("SEED_ACCOUNTS")
        .env_remove("HASH_COST")
        .env_remove("SEED_THREADS")
        .output()
        .unwrap()
}

/// The output of a run as text, for assertions and failure messages.
pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Upper-case hex, as MariaDB's HEX() writes it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}
