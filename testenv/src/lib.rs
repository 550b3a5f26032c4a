//! Where the tests find the services they share with the running system,
//! and the few helpers every test suite needs to stay out of its way.
//!
//! The MariaDB server and Redis are shared with the running system, so the
//! tests use a database and a MySQL user of their own (`./test.sh` creates
//! both, the user with rights on [`TEST_DATABASE`] only) and keys and names
//! under prefixes of their own ([`random_hex`]). `./test.sh` exports where
//! everything is (`USERMGMT_TEST_MYSQL_URL`, `USERMGMT_TEST_REDIS_URL`,
//! `USERMGMT_TEST_PEPPER_FILE`); run on their own (`cargo test`), the tests
//! find the same from `run/secrets/`. One crate for the test suites of
//! `tcpserver`, `e2e` and `perf` and for test-side tools (the drain
//! benchmark), which had each written this out.

#![deny(missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};

pub mod png;

/// The tests' own MySQL user on the shared server, never the running
/// system's `usermgmt`.
pub const TEST_MYSQL_USER: &str = "usermgmt_test";

/// The tests' own database.
pub const TEST_DATABASE: &str = "usermgmt_test";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("testenv sits in the workspace").to_owned()
}

/// Where the tests find MySQL, Redis and the pepper.
#[derive(Debug, Clone)]
pub struct Services {
    /// The test database's URL, with the tests' own MySQL user and password.
    pub mysql_url: String,
    /// The Redis URL.
    pub redis_url: String,
    /// The pepper file.
    pub pepper_file: PathBuf,
}

impl Services {
    /// From the variables `./test.sh` exports, or else from `run/secrets/`.
    ///
    /// # Panics
    ///
    /// When neither says where the test database is (`./test.sh` has never run).
    pub fn load() -> Services {
        let root = workspace_root();
        let mysql_url = std::env::var("USERMGMT_TEST_MYSQL_URL").unwrap_or_else(|_| {
            let password = fs::read_to_string(root.join("run/secrets/mysql_test_password"))
                .expect("run ./test.sh once to create run/secrets/mysql_test_password");
            format!("mysql://{TEST_MYSQL_USER}:{}@127.0.0.1:3306/{TEST_DATABASE}", password.trim())
        });
        let redis_url = redis_url();
        let pepper_file = std::env::var("USERMGMT_TEST_PEPPER_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| root.join("run/secrets/pepper"));
        Services { mysql_url, redis_url, pepper_file }
    }

    /// The MySQL URL without its password, and the password
    /// ([`split_mysql_url`]).
    pub fn split_mysql_url(&self) -> (String, String) {
        split_mysql_url(&self.mysql_url)
    }
}

/// `url` without its password, and the password: what a server under test
/// takes as `--mysql-url` and in its password file.
///
/// # Panics
///
/// When the URL does not parse.
pub fn split_mysql_url(url: &str) -> (String, String) {
    let opts = mysql::Opts::from_url(url).expect("a valid MySQL URL");
    let bare = format!(
        "mysql://{}@{}:{}/{}",
        opts.get_user().unwrap_or(TEST_MYSQL_USER),
        opts.get_ip_or_hostname(),
        opts.get_tcp_port(),
        opts.get_db_name().unwrap_or(TEST_DATABASE)
    );
    (bare, opts.get_pass().unwrap_or_default().to_owned())
}

/// The tests' Redis: `USERMGMT_TEST_REDIS_URL`, else the local one (for a
/// suite that needs Redis but not the test database).
pub fn redis_url() -> String {
    std::env::var("USERMGMT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A random lowercase hex string of `n` digits: a prefix for a test's
/// names and keys.
pub fn random_hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        s.push_str(&format!("{:016x}", rand::random::<u64>()));
    }
    s.truncate(n);
    s
}

/// A `LIKE` pattern for the names starting with `prefix` (`_`, `%` and `\`
/// taken literally), for deleting a test's accounts.
pub fn like_prefix(prefix: &str) -> String {
    format!("{}%", prefix.replace('\\', "\\\\").replace('_', "\\_").replace('%', "\\%"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefixes_match_only_names_that_start_with_the_prefix_literally() {
        assert_eq!(like_prefix("t_ab"), "t\\_ab%");
        assert_eq!(like_prefix("50%"), "50\\%%");
        assert_eq!(like_prefix("a\\b"), "a\\\\b%");
    }

    #[test]
    fn random_hex_has_the_length_asked_and_only_hex_digits() {
        for n in [0, 1, 16, 17, 40] {
            let s = random_hex(n);
            assert_eq!(s.len(), n);
            assert!(s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{s}");
        }
        assert_ne!(random_hex(32), random_hex(32));
    }

    #[test]
    fn a_url_splits_into_the_bare_url_and_its_password() {
        let services = Services {
            mysql_url: "mysql://usermgmt_test:s3cret@127.0.0.1:3306/usermgmt_test".into(),
            redis_url: String::new(),
            pepper_file: PathBuf::new(),
        };
        assert_eq!(
            services.split_mysql_url(),
            ("mysql://usermgmt_test@127.0.0.1:3306/usermgmt_test".to_owned(), "s3cret".to_owned())
        );
    }
}
