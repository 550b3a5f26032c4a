//! At start, copies into MariaDB the pictures that earlier versions stored as
//! files, once.
//!
//! Versions before pictures moved into the database wrote each one to
//! `<avatar dir>/<name>` (`--avatar-dir`, `static/avatars` by default) and
//! counted it in `avatars`. Such a picture has a count above zero and no row in
//! `avatar_bytes`; this module finds those names
//! ([`avatars::missing_bytes`]), reads each file, checks it is the picture its
//! name says (the SHA-256 of the bytes, a picture of the name's format, at
//! most [`proto::MAX_IMAGE_LEN`]), and stores it in a transaction of its own
//! under the name's row lock, so that it is never stored for a name no account
//! uses any more. It runs on a thread of its own so that serving starts at
//! once; until it is done, such a picture answers 404, as a missing file did.
//! It logs one line when it found anything to do.
//!
//! Once a start has logged that every picture was copied, the directory is not
//! read again (a picture stored since has its bytes in MariaDB), and an
//! operator may delete it. Several tcpservers starting at once each try the
//! same names; storing bytes that are stored already changes nothing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use mysql::{Conn, Opts, TxOpts};

use crate::avatar_name;
use crate::db::avatars;
use crate::image;

/// Names read per query: a picture at a time is read and stored, so this only
/// bounds the list held in memory (80 bytes a name).
const NAMES_PER_QUERY: usize = 500;

/// What an import did.
#[derive(Debug, Default)]
pub struct Report {
    /// Pictures copied into MariaDB.
    pub copied: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Names in use whose file is not in the directory (their pictures answer 404).
    pub missing: u64,
    /// Files that are not the picture their name says, left alone.
    pub refused: u64,
    /// Why the import stopped early: MySQL could not be reached or failed.
    pub mysql_error: Option<mysql::Error>,
}

impl Report {
    fn found_anything(&self) -> bool {
        self.copied + self.missing + self.refused > 0 || self.mysql_error.is_some()
    }
}

/// Starts the import from `dir` on a thread of its own, with a MySQL
/// connection of its own made from `opts`; it logs its [`Report`] when done,
/// if there was anything to import.
///
/// # Errors
///
/// The I/O error if the thread cannot be started.
pub fn start(dir: PathBuf, opts: Opts) -> io::Result<()> {
    thread::Builder::new().name("avatar-import".into()).spawn(move || {
        let report = match Conn::new(opts) {
            Ok(mut conn) => import(&dir, &mut conn),
            Err(e) => Report { mysql_error: Some(e), ..Report::default() },
        };
        if report.found_anything() {
            log_report(&dir, &report);
        }
    })?;
    Ok(())
}

/// Copies every picture that accounts use, that MariaDB lacks and that `dir`
/// holds; see the module documentation.
pub fn import(dir: &Path, conn: &mut Conn) -> Report {
    let mut report = Report::default();
    let mut after = String::new();
    loop {
        let names = match avatars::missing_bytes(conn, &after, NAMES_PER_QUERY) {
            Ok(names) => names,
            Err(e) => {
                report.mysql_error = Some(e);
                return report;
            }
        };
        let Some(last) = names.last() else { return report };
        after = last.clone();
        for name in &names {
            let Some(bytes) = read_picture(dir, name, &mut report) else { continue };
            match store(conn, name, &bytes) {
                Ok(true) => {
                    report.copied += 1;
                    report.bytes += bytes.len() as u64;
                }
                Ok(false) => {}
                Err(e) => {
                    report.mysql_error = Some(e);
                    return report;
                }
            }
        }
    }
}

/// The file of `name`, if it is the picture the name says; counts why not.
fn read_picture(dir: &Path, name: &str, report: &mut Report) -> Option<Vec<u8>> {
    let Some(kind) = avatar_name::kind(name) else {
        report.refused += 1;
        return None;
    };
    // Only plain files: a symbolic link placed in the directory is not followed.
    let path = dir.join(name);
    let is_file = fs::symlink_metadata(&path).is_ok_and(|meta| meta.is_file());
    let Some(bytes) = is_file.then(|| fs::read(&path).ok()).flatten() else {
        report.missing += 1;
        return None;
    };
    let genuine = bytes.len() <= proto::MAX_IMAGE_LEN
        && image::inspect(&bytes).is_ok_and(|found| found == kind)
        && avatar_name::of(&bytes, kind) == name;
    if !genuine {
        report.refused += 1;
        return None;
    }
    Some(bytes)
}

/// Stores the bytes of `name` if an account still uses it; whether it did.
fn store(conn: &mut Conn, name: &str, bytes: &[u8]) -> mysql::Result<bool> {
    let mut tx = conn.start_transaction(TxOpts::default())?;
    let used = avatars::lock_used(&mut tx, name)?;
    if used {
        avatars::store_bytes(&mut tx, name, bytes)?;
    }
    tx.commit()?;
    Ok(used)
}

fn log_report(dir: &Path, r: &Report) {
    let mut line = format!(
        "avatar import from {}: copied {} pictures ({} bytes) into MariaDB",
        dir.display(),
        r.copied,
        r.bytes
    );
    if r.missing > 0 {
        line.push_str(&format!("; {} in use have no file there (they answer 404)", r.missing));
    }
    if r.refused > 0 {
        line.push_str(&format!("; {} files are not the picture their name says, left alone", r.refused));
    }
    match &r.mysql_error {
        Some(e) => line.push_str(&format!("; stopped, MySQL failed ({e}): the next start goes on")),
        None if r.missing + r.refused == 0 => line.push_str("; the directory is no longer needed"),
        None => {}
    }
    crate::log!("{line}");
}
