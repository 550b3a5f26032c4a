//! At start, removes what earlier runs left in the avatar directory.
//!
//! While the server runs, a replaced picture is deleted as soon as no account
//! uses it ([`crate::avatar_refs`]). A crash, or MySQL failing at the wrong
//! moment, can still leave garbage: the temporary file of an interrupted
//! upload, a picture stored whose transaction never committed, a picture whose
//! last account let go of it just before its release could run. The sweep
//! finds them once per start, on a thread of its own so that serving starts at
//! once, and logs one line: how many files it removed and how many bytes.
//!
//! Only files older than [`MIN_AGE`] are touched, and only names the store
//! writes ([`crate::avatar_store::classify`]); anything else in the directory
//! is left alone. A picture is deleted only through
//! [`avatar_refs::release`], under its row's lock, so the sweep is safe next to
//! uploads of this server or of another one writing into the same directory.
//! Without MySQL at start, only temporary files are removed.

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::io;
use std::thread;
use std::time::{Duration, SystemTime};

use mysql::{Conn, Opts, TxOpts};

use crate::avatar_refs::{self, Released};
use crate::avatar_store::{AvatarStore, Entry, classify};
use crate::db::avatars::{self, MAX_NAMES_PER_LOOKUP};

/// Files younger than this are left alone. Another server writing into the
/// same directory may be between writing a temporary file and renaming it
/// (one write and sync of at most 2 MiB), or between storing a picture and
/// committing the reference to it (one transaction); both take well under a
/// second, so a minute leaves a wide margin and still removes a crash's
/// leftovers at the next start.
pub const MIN_AGE: Duration = Duration::from_secs(60);

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Report {
    /// Temporary files removed.
    pub uploads: u64,
    /// Their bytes.
    pub upload_bytes: u64,
    /// Pictures no account used, removed.
    pub pictures: u64,
    /// Their bytes.
    pub picture_bytes: u64,
    /// Files that should have gone but could not be removed.
    pub failures: u64,
    /// The first cause of a failure, for the log.
    pub first_failure: Option<io::Error>,
    /// Why pictures were not (all) checked: MySQL could not be reached or failed.
    pub mysql_error: Option<mysql::Error>,
}

/// Starts the sweep of `store` on a thread of its own, with a MySQL connection
/// of its own made from `opts`; it logs its [`Report`] when done.
///
/// # Errors
///
/// The I/O error if the thread cannot be started.
pub fn start(store: AvatarStore, opts: Opts) -> io::Result<()> {
    thread::Builder::new().name("avatar-sweep".into()).spawn(move || {
        let started = SystemTime::now();
        let report = match Conn::new(opts) {
            Ok(conn) => sweep(&store, Some(conn), started),
            Err(e) => Report { mysql_error: Some(e), ..sweep(&store, None, started) },
        };
        log_report(&store, &report);
    })?;
    Ok(())
}

/// Removes the temporary files, and the pictures no account uses, that were
/// last changed [`MIN_AGE`] before `now` or earlier. Pictures are checked only
/// with a MySQL connection.
pub fn sweep(store: &AvatarStore, mysql: Option<Conn>, now: SystemTime) -> Report {
    let mut sweeper = Sweeper { store, mysql, report: Report::default(), pictures: Vec::new() };
    let entries = match fs::read_dir(store.dir()) {
        Ok(entries) => entries,
        Err(e) => {
            sweeper.failed(e);
            return sweeper.report;
        }
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                sweeper.failed(e);
                break;
            }
        };
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let Some(kind) = classify(&name) else { continue };
        // `DirEntry::metadata` does not follow symbolic links: only plain files go.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || !is_old(&meta, now) {
            continue;
        }
        match kind {
            Entry::Upload => sweeper.remove_upload(&name),
            Entry::Picture => {
                sweeper.pictures.push(name);
                if sweeper.pictures.len() == MAX_NAMES_PER_LOOKUP {
                    sweeper.check_pictures();
                }
            }
        }
    }
    sweeper.check_pictures();
    sweeper.report
}

/// Whether a file was last changed at least [`MIN_AGE`] before `now` (a time
/// in the future is not).
fn is_old(meta: &Metadata, now: SystemTime) -> bool {
    meta.modified()
        .ok()
        .and_then(|changed| now.duration_since(changed).ok())
        .is_some_and(|age| age >= MIN_AGE)
}

/// One sweep's state.
struct Sweeper<'a> {
    store: &'a AvatarStore,
    /// `None` without MySQL, or after it failed: pictures are then skipped.
    mysql: Option<Conn>,
    report: Report,
    /// Old pictures waiting for [`Sweeper::check_pictures`].
    pictures: Vec<String>,
}

impl Sweeper<'_> {
    fn remove_upload(&mut self, name: &str) {
        match self.store.remove(name) {
            Ok(Some(bytes)) => {
                self.report.uploads += 1;
                self.report.upload_bytes += bytes;
            }
            Ok(None) => {}
            Err(e) => self.failed(e),
        }
    }

    /// Releases the waiting pictures that no row counts as used: one read for
    /// all of them, then one locked transaction for the candidates. After a
    /// MySQL error, pictures are no longer checked.
    fn check_pictures(&mut self) {
        let names = std::mem::take(&mut self.pictures);
        let Some(mut conn) = self.mysql.take() else { return };
        match self.release_unused(&mut conn, &names) {
            Ok(()) => self.mysql = Some(conn),
            Err(e) => self.report.mysql_error = Some(e),
        }
    }

    fn release_unused(&mut self, conn: &mut Conn, names: &[String]) -> mysql::Result<()> {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let used: HashSet<String> = avatars::used(conn, &refs)?.into_iter().collect();
        let candidates: Vec<&str> = refs.into_iter().filter(|name| !used.contains(*name)).collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let mut tx = conn.start_transaction(TxOpts::default())?;
        let released = avatar_refs::release(&mut tx, self.store, &candidates)?;
        tx.commit()?;
        for (_, outcome) in released {
            match outcome {
                Released::Removed { bytes } => {
                    self.report.pictures += 1;
                    self.report.picture_bytes += bytes;
                }
                Released::InUse | Released::Absent => {}
                Released::Failed(e) => self.failed(e),
            }
        }
        Ok(())
    }

    fn failed(&mut self, e: io::Error) {
        self.report.failures += 1;
        self.report.first_failure.get_or_insert(e);
    }
}

fn log_report(store: &AvatarStore, r: &Report) {
    let mut line = format!(
        "avatar sweep of {}: removed {} temporary files ({} bytes) and {} unused pictures ({} bytes)",
        store.dir().display(),
        r.uploads,
        r.upload_bytes,
        r.pictures,
        r.picture_bytes
    );
    if let Some(e) = &r.first_failure {
        line.push_str(&format!("; {} could not be removed ({e})", r.failures));
    }
    if let Some(e) = &r.mysql_error {
        line.push_str(&format!("; pictures not checked, MySQL failed ({e}): the next start tries again"));
    }
    crate::log!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ImageKind, samples};

    #[test]
    fn without_mysql_only_old_temporary_files_go() {
        let dir = std::env::temp_dir().join(format!("avatar-sweep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = AvatarStore::open(&dir, 0).unwrap();
        let picture = store.store(&samples::png(), ImageKind::Png).unwrap().name;
        let upload = ".upload-00112233aabbccdd.tmp";
        fs::write(dir.join(upload), b"half a picture").unwrap();
        fs::write(dir.join("notes.txt"), b"an operator's").unwrap();

        let report = sweep(&store, None, SystemTime::now());
        assert_eq!((report.uploads, report.pictures), (0, 0), "young files stay");
        assert!(dir.join(upload).exists());

        let report = sweep(&store, None, SystemTime::now() + MIN_AGE * 2);
        assert_eq!((report.uploads, report.upload_bytes, report.pictures), (1, 14, 0));
        assert!(!dir.join(upload).exists());
        assert!(dir.join(&picture).exists(), "pictures need MySQL to be judged");
        assert!(dir.join("notes.txt").exists(), "other files are not the store's");
        fs::remove_dir_all(&dir).unwrap();
    }
}
