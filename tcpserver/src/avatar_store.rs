//! Profile pictures on disk, named by their content.
//!
//! A picture's file name is the SHA-256 of its bytes in hex plus the extension
//! of its format, so the name is chosen by the server, never by the uploader,
//! and two uploads of the same picture share one file. A file appears
//! atomically: it is written under a temporary name in the same directory,
//! synced, then renamed, so `httpserver` never serves half a picture, even after
//! a crash. Storing bytes whose file already exists does nothing.
//!
//! This module only handles files. Which files are still used, and so when one
//! may be removed, is decided by [`crate::avatar_refs`] under a MySQL row lock;
//! what a crash leaves behind is removed by [`crate::avatar_sweep`], which
//! recognises the two kinds of file written here with [`classify`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::TryRng;
use rand::rngs::SysRng;
use sha2::{Digest, Sha256};

use crate::free_space;
use crate::image::ImageKind;

/// Temporary files start with this (a dot, so that a directory listing and a
/// static file server pass over them) ...
const UPLOAD_PREFIX: &str = ".upload-";

/// ... and end with this.
const UPLOAD_SUFFIX: &str = ".tmp";

/// Hex digits of a picture name's digest: a SHA-256.
const DIGEST_HEX_LEN: usize = 64;

/// The extensions [`AvatarStore::file_name`] gives, one per [`ImageKind`].
const EXTENSIONS: [&str; 4] = ["png", "jpg", "gif", "webp"];

/// At most one log line a minute says that uploads are refused for want of
/// room: enough for an operator to see it, and a client retrying in a loop
/// cannot fill the (probably same) disk with log lines.
const FULL_LOG_INTERVAL_SECS: u64 = 60;

/// What kind of file of the avatar directory a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A picture: `<sha256 hex>.<extension>`.
    Picture,
    /// An upload being written, or one a crash interrupted: `.upload-<hex>.tmp`.
    Upload,
}

/// The kind of a file name of the avatar directory, or `None` for a name this
/// store never writes (an operator's file, which is left alone).
pub fn classify(file_name: &str) -> Option<Entry> {
    if let Some(middle) =
        file_name.strip_prefix(UPLOAD_PREFIX).and_then(|rest| rest.strip_suffix(UPLOAD_SUFFIX))
    {
        return (!middle.is_empty() && middle.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(Entry::Upload);
    }
    let (digest, extension) = file_name.split_once('.')?;
    let is_digest =
        digest.len() == DIGEST_HEX_LEN && digest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    (is_digest && EXTENSIONS.contains(&extension)).then_some(Entry::Picture)
}

/// A picture that [`AvatarStore::store`] made sure is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Its file name.
    pub name: String,
    /// Whether this call wrote the file (it was not there before).
    pub created: bool,
}

/// The directory pictures are stored in.
#[derive(Debug, Clone)]
pub struct AvatarStore {
    dir: PathBuf,
    /// Free bytes the file system keeps: no picture is stored below it.
    min_free_bytes: u64,
    /// When the last "no room" line was logged (seconds since the epoch).
    full_logged_at: Arc<AtomicU64>,
}

impl AvatarStore {
    /// A store over `dir`, created (with its parents) if missing, that stores
    /// nothing once its file system has less than `min_free_bytes` free.
    ///
    /// # Errors
    ///
    /// The I/O error if the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>, min_free_bytes: u64) -> io::Result<AvatarStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(AvatarStore { dir, min_free_bytes, full_logged_at: Arc::new(AtomicU64::new(0)) })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name a picture gets: `<sha256 hex>.<extension>`.
    pub fn file_name(bytes: &[u8], kind: ImageKind) -> String {
        format!("{}.{}", hex::encode(Sha256::digest(bytes)), kind.extension())
    }

    /// Whether a picture of `len` bytes may be stored: the file system would
    /// still have the configured free space after it.
    ///
    /// # Errors
    ///
    /// The I/O error if the free space cannot be read.
    pub fn has_room(&self, len: usize) -> io::Result<bool> {
        let available = match free_space::available_bytes(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The directory was removed since start; make it again.
                fs::create_dir_all(&self.dir)?;
                free_space::available_bytes(&self.dir)?
            }
            other => other?,
        };
        let needed = self.min_free_bytes.saturating_add(len as u64);
        if available >= needed {
            return Ok(true);
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.full_logged_at.load(Ordering::Relaxed);
        if now >= last.saturating_add(FULL_LOG_INTERVAL_SECS)
            && self.full_logged_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            crate::log!(
                "avatar store: {} MiB free in {}, below the floor of {} MiB: refusing new pictures",
                available >> 20,
                self.dir.display(),
                self.min_free_bytes >> 20
            );
        }
        Ok(false)
    }

    /// Stores a picture that has already been checked, and returns its file
    /// name and whether it was written now.
    ///
    /// # Errors
    ///
    /// The I/O error from creating, writing, syncing or renaming the file; no
    /// partial file is left under the final name.
    pub fn store(&self, bytes: &[u8], kind: ImageKind) -> io::Result<Stored> {
        let name = AvatarStore::file_name(bytes, kind);
        let created = self.ensure(&name, bytes)?;
        Ok(Stored { name, created })
    }

    /// Makes sure the file `name` exists, writing `bytes` to it if it does not;
    /// returns whether it wrote them. `name` must be
    /// [`AvatarStore::file_name`] of `bytes` (callers have it from
    /// [`AvatarStore::store`]).
    ///
    /// # Errors
    ///
    /// As [`AvatarStore::store`].
    pub fn ensure(&self, name: &str, bytes: &[u8]) -> io::Result<bool> {
        let path = self.dir.join(name);
        if path.exists() {
            return Ok(false);
        }
        // The directory may have been removed since start; make it again.
        fs::create_dir_all(&self.dir)?;
        let temp = self.dir.join(format!("{UPLOAD_PREFIX}{}{UPLOAD_SUFFIX}", random_suffix()?));
        let result = write_synced(&temp, bytes).and_then(|()| fs::rename(&temp, &path));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result?;
        // Make the rename itself durable.
        File::open(&self.dir)?.sync_all()?;
        Ok(true)
    }

    /// Removes a file of the directory (a picture or a temporary file) and
    /// returns its size, or `None` if it was not there.
    ///
    /// # Errors
    ///
    /// The I/O error other than "not found".
    pub fn remove(&self, name: &str) -> io::Result<Option<u64>> {
        let path = self.dir.join(name);
        let len = match fs::symlink_metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(Some(len)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// 64 random bits in hex, so that concurrent uploads never share a temp file.
fn random_suffix() -> io::Result<String> {
    let mut bytes = [0u8; 8];
    SysRng.try_fill_bytes(&mut bytes).map_err(|_| io::Error::other("the OS random generator failed"))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::samples;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("avatar-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn pictures_are_stored_under_their_digest_once() {
        let dir = temp_dir("digest");
        let store = AvatarStore::open(dir.join("nested"), 0).unwrap();
        let png = samples::png();
        let stored = store.store(&png, ImageKind::Png).unwrap();
        assert_eq!(stored.name, format!("{}.png", hex::encode(Sha256::digest(&png))));
        assert!(stored.created);
        assert_eq!(fs::read(store.dir().join(&stored.name)).unwrap(), png);
        assert_eq!(store.store(&png, ImageKind::Png).unwrap(), Stored { created: false, ..stored.clone() });
        let entries: Vec<_> = fs::read_dir(store.dir()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temp file may be left behind");
        assert_eq!(store.remove(&stored.name).unwrap(), Some(png.len() as u64));
        assert_eq!(store.remove(&stored.name).unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_removed_directory_is_made_again() {
        let dir = temp_dir("removed");
        let store = AvatarStore::open(&dir, 0).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert!(store.has_room(10).unwrap());
        fs::remove_dir_all(&dir).unwrap();
        let stored = store.store(&samples::gif(), ImageKind::Gif).unwrap();
        assert!(dir.join(stored.name).is_file());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_floor_above_the_free_space_leaves_no_room() {
        let dir = temp_dir("floor");
        let free = free_space::available_bytes(&std::env::temp_dir()).unwrap();
        assert!(!AvatarStore::open(&dir, free.saturating_add(1 << 40)).unwrap().has_room(1).unwrap());
        assert!(AvatarStore::open(&dir, 0).unwrap().has_room(1).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_names_this_store_writes_are_classified() {
        let digest = "ab".repeat(32);
        assert_eq!(classify(&format!("{digest}.png")), Some(Entry::Picture));
        assert_eq!(classify(&format!("{digest}.webp")), Some(Entry::Picture));
        assert_eq!(classify(".upload-0123456789abcdef.tmp"), Some(Entry::Upload));
        for other in [
            format!("{digest}.exe"),
            format!("{}.png", "AB".repeat(32)),
            format!("{}.png", "ab".repeat(31)),
            format!("{digest}.png.bak"),
            ".upload-.tmp".into(),
            ".upload-../x.tmp".into(),
            "README".into(),
            ".gitkeep".into(),
        ] {
            assert_eq!(classify(&other), None, "{other}");
        }
    }
}
