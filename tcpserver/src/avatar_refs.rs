//! Which picture files accounts use, and when a file may be deleted.
//!
//! Files are named by their content ([`crate::avatar_store`]), so accounts
//! that upload the same bytes share one file, and a replaced picture may be
//! deleted only once no account uses it. The `avatars` table counts the
//! accounts per file name, changed in the same MySQL transaction as the
//! `users.avatar` it follows. What must never happen is an account pointing at
//! a missing file; so the invariant is: **a committed count above zero means
//! the file exists.** It holds by three rules:
//!
//! 1. A transaction that adds an account to a name ([`replace`]) first locks
//!    the name's row (`INSERT ... ON DUPLICATE KEY UPDATE`, an exclusive lock
//!    on the row, which it creates if there is none), then makes sure the file
//!    exists, writing it if not, while it holds that lock, and only then
//!    commits.
//! 2. A file is deleted only by [`release`], which locks the name's row the
//!    same way, reads the count under that lock, and deletes the file (then
//!    the row) only if the count is zero.
//! 3. The transaction that lowers a count never deletes the file; [`release`]
//!    runs after it has committed, in a transaction of its own.
//!
//! The exclusive lock orders any adding transaction against any release of
//! the same name. If the release comes first, it sees zero and deletes the
//! file; the adding transaction then finds the file missing and writes it
//! again before it commits. If the adding transaction comes first, it commits a
//! count above zero, and the release sees it and keeps the file. Rule 3 is
//! what makes a failed commit harmless: had the file been deleted in the
//! transaction that lowered the count, and that transaction's `COMMIT` failed,
//! the count would be back above zero with no file. A release deletes while
//! the committed count is zero and locked, so whatever becomes of its own
//! commit (it only deletes a row at zero), no account used that file.
//!
//! A crash at any point leaves only garbage, never a missing file: a picture
//! written before its transaction, which then did not commit; a count at zero
//! whose release never ran; a temporary file. [`crate::avatar_sweep`] collects
//! them at the next start, through [`release`]. The bytes are written before
//! the transaction, outside any lock ([`crate::avatar_store::AvatarStore::store`],
//! where the time goes: hashing and syncing up to 2 MiB); under the lock,
//! making sure the file exists is normally one `stat`.
//!
//! No deadlock: a transaction that changes a picture locks the user's row
//! first ([`users::lock_avatar`], which also makes two changes of one user's
//! picture take turns), then the rows of the old and the new name in name
//! order; a release locks rows of `avatars` only, also in name order. A name some
//! account uses but no row counts (written by another tool) is never taken
//! for zero here: lowering it changes nothing, and keeping it counts that
//! account from then on. The sweep, which cannot tell, trusts the table, which
//! `sql/schema.sql` fills from `users` when it creates it.

use std::collections::HashSet;
use std::io;

use mysql::Transaction;

use crate::avatar_store::AvatarStore;
use crate::db::{avatars, users};
use crate::profile_cache::Versioned;

/// What [`replace`] did.
#[derive(Debug, Clone)]
pub struct Replaced {
    /// The user's profile as the change left it.
    pub profile: Versioned,
    /// The picture it replaced, if no account uses that one now: for
    /// [`release`], once this transaction has committed.
    pub unused: Option<String>,
}

/// What [`release`] did.
#[derive(Debug)]
pub enum Released {
    /// An account uses the file; it stays.
    InUse,
    /// No account used it, and the file of this many bytes was deleted.
    Removed {
        /// The file's size.
        bytes: u64,
    },
    /// No account used it, and there was no file (any more).
    Absent,
    /// No account used it, but deleting the file failed; its row stays at
    /// zero, and the next start-up sweep tries again.
    Failed(io::Error),
}

/// In a transaction: sets the user's picture to the file `name` (made from
/// `bytes`, normally stored already), counting one more account for it and
/// one fewer for the picture it replaces. `Ok(Ok(None))` if there is no such
/// user. See the module documentation for the order of the steps.
///
/// # Errors
///
/// The MySQL error; `Ok(Err(_))` if the file could not be written, and the
/// transaction must then be rolled back.
pub fn replace(
    tx: &mut Transaction<'_>,
    store: &AvatarStore,
    user_id: u64,
    name: &str,
    bytes: &[u8],
) -> mysql::Result<Result<Option<Replaced>, io::Error>> {
    let Some(old) = users::lock_avatar(tx, user_id)? else { return Ok(Ok(None)) };
    let same = old.as_deref() == Some(name);
    let old = old.filter(|_| !same);
    let mut unused = None;
    // The two rows in name order.
    if let Some(old) = old.as_deref().filter(|old| *old < name) {
        unused = lower(tx, old)?;
    }
    if same {
        avatars::keep(tx, name)?;
    } else {
        avatars::take(tx, name)?;
    }
    if let Err(e) = store.ensure(name, bytes) {
        return Ok(Err(e));
    }
    if let Some(old) = old.as_deref().filter(|old| *old > name) {
        unused = lower(tx, old)?;
    }
    let Some(profile) = users::set_avatar(tx, user_id, name)? else { return Ok(Ok(None)) };
    Ok(Ok(Some(Replaced { profile, unused })))
}

/// Counts one account fewer for `name`; the name if that was the last.
fn lower(tx: &mut Transaction<'_>, name: &str) -> mysql::Result<Option<String>> {
    Ok((avatars::drop_ref(tx, name)? == Some(0)).then(|| name.to_owned()))
}

/// In a transaction of its own: deletes the files of `names` that no account
/// uses, and their rows (rule 2 of the module documentation); returns what
/// became of each name, in name order. Safe to run at any time for any names,
/// and again: a file in use is kept. The rows are locked in name order, one
/// statement for all (see [`avatars::lock_unused`]), so the start-up sweep
/// releases a whole slice of the directory with one commit.
///
/// # Errors
///
/// The MySQL error; a failure to delete a file is [`Released::Failed`].
///
/// # Panics
///
/// In debug builds, with more than [`avatars::MAX_NAMES_PER_LOOKUP`] names.
pub fn release(
    tx: &mut Transaction<'_>,
    store: &AvatarStore,
    names: &[&str],
) -> mysql::Result<Vec<(String, Released)>> {
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let unused: HashSet<String> = avatars::lock_unused(tx, &sorted)?.into_iter().collect();
    let mut released = Vec::with_capacity(sorted.len());
    let mut forget = Vec::new();
    for name in sorted {
        let outcome = match unused.contains(name) {
            false => Released::InUse,
            true => match store.remove(name) {
                Ok(Some(bytes)) => Released::Removed { bytes },
                Ok(None) => Released::Absent,
                Err(e) => Released::Failed(e),
            },
        };
        if matches!(outcome, Released::Removed { .. } | Released::Absent) {
            forget.push(name);
        }
        released.push((name.to_owned(), outcome));
    }
    avatars::forget_unused(tx, &forget)?;
    Ok(released)
}
