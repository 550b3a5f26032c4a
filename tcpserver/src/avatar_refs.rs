//! Which pictures accounts use, and when a picture's bytes are deleted.
//!
//! Pictures are named by their content ([`crate::avatar_name`]), so accounts
//! that upload the same bytes share one stored copy, and a replaced picture
//! may be deleted only once no account uses it. The `avatars` table counts the
//! accounts per name and `avatar_bytes` holds the bytes (`sql/schema.sql`).
//! What must never happen is an account pointing at a picture whose bytes are
//! gone; so the invariant is: **a committed count above zero means the bytes
//! are stored.**
//!
//! Bytes, counts and `users.avatar` live in one database, so one transaction
//! changes them together, and the invariant holds by two rules:
//!
//! 1. The transaction that adds an account to a name ([`replace`]) locks the
//!    name's row of `avatars` (`INSERT ... ON DUPLICATE KEY UPDATE`, an
//!    exclusive lock on the row, which it creates if there is none) and then
//!    stores the bytes if they are not stored, before it commits.
//! 2. The transaction that takes the last account away from a name
//!    ([`release`], from [`replace`] or an account's deletion) lowers the
//!    count under the same lock, and, when it reaches zero, deletes the row
//!    and the bytes before it commits.
//!
//! The row lock orders every two transactions that touch one name, and each
//! leaves the invariant true at its commit; a transaction that fails, at any
//! statement or at `COMMIT`, leaves nothing, whatever a crash interrupts. So
//! there is nothing to collect after a crash (what the file store of earlier
//! versions needed a start-up sweep for). On a Galera cluster, two
//! transactions on different nodes that touch one name both write its row of
//! `avatars`, so certification lets only the first commit and refuses the
//! other (error 1213, to be run again): the same order, found at commit.
//!
//! No deadlock: a transaction that changes a picture locks the user's row
//! first ([`users::lock_avatar`], which also makes two changes of one user's
//! picture take turns), then the rows of `avatars` of the old and the new name
//! in name order, and only then writes `avatar_bytes`, in name order too. A
//! name some account uses but no row counts (written by another tool) is never
//! taken for zero here: lowering it changes nothing, and keeping it counts
//! that account from then on.

use mysql::Transaction;

use crate::db::{avatars, users};
use crate::profile_cache::Versioned;

/// In a transaction: sets the user's picture to `name` (the name of
/// `bytes`), storing the bytes if no account used them yet, counting one more
/// account for it and one fewer for the picture it replaces, whose bytes are
/// deleted if that was its last account. `Ok(None)` if there is no such user.
/// See the module documentation for the order of the steps.
///
/// # Errors
///
/// The MySQL error; the caller rolls the transaction back.
pub fn replace(
    tx: &mut Transaction<'_>,
    user_id: u64,
    name: &str,
    bytes: &[u8],
) -> mysql::Result<Option<Versioned>> {
    let Some(old) = users::lock_avatar(tx, user_id)? else { return Ok(None) };
    let same = old.as_deref() == Some(name);
    let old = old.filter(|_| !same);
    let mut unused = None;
    // The two rows of `avatars` in name order ...
    if let Some(old) = old.as_deref().filter(|old| *old < name) {
        unused = lower(tx, old)?;
    }
    if same {
        avatars::keep(tx, name)?;
    } else {
        avatars::take(tx, name)?;
    }
    if let Some(old) = old.as_deref().filter(|old| *old > name) {
        unused = lower(tx, old)?;
    }
    // ... then `avatar_bytes`, in name order too.
    match unused.as_deref() {
        Some(gone) if gone < name => {
            avatars::delete_unused(tx, gone)?;
            avatars::store_bytes(tx, name, bytes)?;
        }
        Some(gone) => {
            avatars::store_bytes(tx, name, bytes)?;
            avatars::delete_unused(tx, gone)?;
        }
        None => avatars::store_bytes(tx, name, bytes)?,
    }
    users::set_avatar(tx, user_id, name)
}

/// In a transaction: counts one account fewer for `name`, and deletes its
/// count and bytes if that was the last (rule 2 of the module
/// documentation). Used when an account goes.
///
/// # Errors
///
/// The MySQL error.
pub fn release(tx: &mut Transaction<'_>, name: &str) -> mysql::Result<()> {
    if lower(tx, name)?.is_some() {
        avatars::delete_unused(tx, name)?;
    }
    Ok(())
}

/// In a transaction: deletes an account's rows (its user row, and with it
/// its credentials, history and known devices) and releases its picture,
/// the user's row locked first. Returns whether there was such a user. The
/// whole of an account deletion in MySQL: [`crate::service::Service`]'s,
/// and the tests' cleanup, which must keep the pictures' counts true for
/// the other tests sharing the database.
///
/// # Errors
///
/// The MySQL error.
pub fn delete_user(tx: &mut Transaction<'_>, user_id: u64) -> mysql::Result<bool> {
    let Some(avatar) = users::lock_avatar(tx, user_id)? else { return Ok(false) };
    if let Some(name) = &avatar {
        release(tx, name)?;
    }
    users::delete(tx, user_id)
}

/// Counts one account fewer for `name`; the name if that was the last.
fn lower(tx: &mut Transaction<'_>, name: &str) -> mysql::Result<Option<String>> {
    Ok((avatars::drop_ref(tx, name)? == Some(0)).then(|| name.to_owned()))
}
