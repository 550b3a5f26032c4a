//! The MariaDB side of a seed: what is there already, where the seeded
//! accounts may go, and the bulk load itself.
//!
//! A batch is one transaction holding a `LOAD DATA LOCAL INFILE` into `users`
//! and one into `credentials`, with explicit ids. Either both tables get the
//! whole batch or neither does, so the database always holds the seeded
//! accounts `1..=M` for some `M`, and an interrupted run resumes after `M`.
//! The session turns off unique and foreign-key checks for the load: the tool
//! has made sure beforehand that the ids and usernames are free, and loads each
//! `users` row before the `credentials` row that points to it.

use std::sync::Arc;

use mysql::{Conn, Opts, prelude::Queryable};

use crate::{
    accounts::{FIRST_SIGN_UP_ID, MAX_ACCOUNTS, USERNAME_LEN, username},
    error::Error,
    infile::InfileSlot,
    rows,
};

/// The load statements. They use MariaDB's default field and line format
/// (tab-separated, backslash escapes; see `rows`), which is not spelled out
/// here so that it cannot be bent by an `sql_mode` with NO_BACKSLASH_ESCAPES.
const LOAD_USERS: &str =
    "LOAD DATA LOCAL INFILE 'users' INTO TABLE users CHARACTER SET utf8mb4 (id, username, nickname)";
const LOAD_CREDENTIALS: &str = "LOAD DATA LOCAL INFILE 'credentials' INTO TABLE credentials \
     CHARACTER SET utf8mb4 (user_id, username, password_hash)";

/// One connection, set up for bulk loading.
#[derive(Debug)]
pub struct Database {
    conn: Conn,
    infile: InfileSlot,
}

impl Database {
    /// Connects to `url` and prepares the session for bulk loading.
    ///
    /// # Errors
    ///
    /// [`Error::Mysql`] if the server cannot be reached or refuses the login;
    /// [`Error::LocalInfileDisabled`] if it does not allow local infile;
    /// [`Error::AlreadyRunning`] if another seed is filling the same database.
    pub fn connect(url: &str) -> Result<Database, Error> {
        let opts = Opts::from_url(url).map_err(|e| Error::Mysql(e.into()))?;
        let mut conn = Conn::new(opts)?;
        let infile = InfileSlot::default();
        conn.set_local_infile_handler(Some(infile.handler()));
        let allowed: Option<bool> = conn.query_first("SELECT @@GLOBAL.local_infile")?;
        if allowed != Some(true) {
            return Err(Error::LocalInfileDisabled);
        }
        // One seed per database at a time: a second one would hash the same
        // batch in vain and then collide with the first one's rows. The lock
        // goes with the connection, so a killed run never leaves it behind.
        let locked: Option<Option<u8>> =
            conn.query_first("SELECT GET_LOCK(CONCAT('usermgmt-seed:', DATABASE()), 0)")?;
        if locked.flatten() != Some(1) {
            return Err(Error::AlreadyRunning);
        }
        conn.query_drop("SET SESSION unique_checks = 0, foreign_key_checks = 0")?;
        Ok(Database { conn, infile })
    }

    /// `M`: the highest id up to which the seeded accounts are complete (0 if
    /// none). Batches commit both tables at once, so the highest seeded id in
    /// `credentials` is that bound.
    ///
    /// # Errors
    ///
    /// [`Error::Mysql`].
    pub fn seeded_up_to(&mut self) -> Result<u64, Error> {
        let max: Option<Option<u64>> = self
            .conn
            .exec_first("SELECT MAX(user_id) FROM credentials WHERE user_id <= ?", (MAX_ACCOUNTS,))?;
        Ok(max.flatten().unwrap_or(0))
    }

    /// The stored password hash of account `id`, if it exists.
    ///
    /// # Errors
    ///
    /// [`Error::Mysql`].
    pub fn password_hash(&mut self, id: u64) -> Result<Option<String>, Error> {
        Ok(self.conn.exec_first("SELECT password_hash FROM credentials WHERE user_id = ?", (id,))?)
    }

    /// Makes sure accounts `first..=last` can be loaded: no row has one of
    /// their ids or one of their usernames (a real sign-up made before the
    /// first seed could have either).
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] with the number of rows in the way; [`Error::Mysql`].
    pub fn check_free(&mut self, first: u64, last: u64) -> Result<(), Error> {
        let mut rows = 0;
        for sql in [
            "SELECT COUNT(*) FROM users WHERE id BETWEEN ? AND ?",
            "SELECT COUNT(*) FROM credentials WHERE user_id BETWEEN ? AND ?",
        ] {
            rows += self.conn.exec_first::<u64, _, _>(sql, (first, last))?.unwrap_or(0);
        }
        // Only names of exactly the seeded form: `user00000005x` is no conflict.
        let names = (username(first), username(last), USERNAME_LEN as u64);
        for sql in [
            "SELECT COUNT(*) FROM users WHERE username BETWEEN ? AND ? AND LENGTH(username) = ?",
            "SELECT COUNT(*) FROM credentials WHERE username BETWEEN ? AND ? AND LENGTH(username) = ?",
        ] {
            rows += self.conn.exec_first::<u64, _, _>(sql, names.clone())?.unwrap_or(0);
        }
        if rows > 0 {
            return Err(Error::Conflict { first, last, rows });
        }
        Ok(())
    }

    /// Moves the `AUTO_INCREMENT` of `users` to [`FIRST_SIGN_UP_ID`] if it is
    /// lower, so real sign-ups never take ids of the seeded range. InnoDB keeps
    /// the counter when explicit lower ids are inserted later.
    ///
    /// # Errors
    ///
    /// [`Error::Mysql`], for instance without the ALTER privilege.
    pub fn reserve_seed_ids(&mut self) -> Result<(), Error> {
        let next: Option<Option<u64>> = self.conn.query_first(
            "SELECT AUTO_INCREMENT FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'users'",
        )?;
        if next.flatten().unwrap_or(0) < FIRST_SIGN_UP_ID {
            self.conn.query_drop(format!("ALTER TABLE users AUTO_INCREMENT = {FIRST_SIGN_UP_ID}"))?;
        }
        Ok(())
    }

    /// Loads accounts `first..first + hashes.len()` (profile and credentials)
    /// in one transaction.
    ///
    /// # Errors
    ///
    /// [`Error::ShortLoad`] (after a rollback) if the server skipped rows;
    /// [`Error::Mysql`].
    pub fn load_batch(&mut self, first: u64, hashes: Arc<Vec<String>>) -> Result<(), Error> {
        let count = hashes.len() as u64;
        self.conn.query_drop("START TRANSACTION")?;
        self.infile.stage("users", Box::new(move |out| rows::write_users(out, first, count)));
        self.load(LOAD_USERS, "users", count)?;
        self.infile.stage("credentials", Box::new(move |out| rows::write_credentials(out, first, &hashes)));
        self.load(LOAD_CREDENTIALS, "credentials", count)?;
        self.conn.query_drop("COMMIT")?;
        Ok(())
    }

    fn load(&mut self, sql: &str, table: &'static str, sent: u64) -> Result<(), Error> {
        self.conn.query_drop(sql)?;
        let stored = self.conn.affected_rows();
        if stored != sent {
            // The server skipped rows with a warning each; the first says why.
            let warning: Option<(String, u32, String)> = self.conn.query_first("SHOW WARNINGS LIMIT 1")?;
            self.conn.query_drop("ROLLBACK")?;
            let first_warning = warning.map(|(_, _, message)| message).unwrap_or_default();
            return Err(Error::ShortLoad { table, sent, stored, first_warning });
        }
        Ok(())
    }

    /// Rows with the ids of seeded accounts `1..=last` in `users` and in
    /// `credentials` (the range is reserved for them).
    ///
    /// # Errors
    ///
    /// [`Error::Mysql`].
    pub fn count_seeded(&mut self, last: u64) -> Result<(u64, u64), Error> {
        let users = self.conn.exec_first("SELECT COUNT(*) FROM users WHERE id BETWEEN 1 AND ?", (last,))?;
        let credentials = self
            .conn
            .exec_first("SELECT COUNT(*) FROM credentials WHERE user_id BETWEEN 1 AND ?", (last,))?;
        Ok((users.unwrap_or(0), credentials.unwrap_or(0)))
    }
}
