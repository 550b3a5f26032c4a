//! The SQL of the pictures: `avatars` (how many accounts use each picture)
//! and `avatar_bytes` (each picture's bytes).
//!
//! Every statement here that changes or locks a row of `avatars` takes an
//! exclusive lock on that one row (by primary key) until the transaction
//! ends; that lock is what [`crate::avatar_refs`] builds its argument on. A
//! row at zero means the same as no row: nobody uses the picture. Run the
//! writes in a transaction.

use mysql::Transaction;
use mysql::prelude::Queryable;

/// Counts one more account using `name` (creating the row at 1), and holds
/// the row's lock.
///
/// # Errors
///
/// The MySQL error.
pub fn take(q: &mut impl Queryable, name: &str) -> mysql::Result<()> {
    q.exec_drop(
        "INSERT INTO avatars (name, refs) VALUES (?, 1) ON DUPLICATE KEY UPDATE refs = refs + 1",
        (name,),
    )
}

/// Locks the row of a name an account already uses and keeps, without
/// changing its count; a count of 0 or no row (the account was counted
/// nowhere: the table was changed by hand) becomes 1, so that this account is
/// counted from now on and its picture is not deleted under it.
///
/// # Errors
///
/// The MySQL error.
pub fn keep(q: &mut impl Queryable, name: &str) -> mysql::Result<()> {
    q.exec_drop(
        "INSERT INTO avatars (name, refs) VALUES (?, 1) ON DUPLICATE KEY UPDATE refs = GREATEST(refs, 1)",
        (name,),
    )
}

/// Counts one account fewer using `name`, holds the row's lock, and returns
/// the count now, or `None` if the name has no row (it was never counted:
/// nothing is changed, and the caller must not take that for zero).
///
/// # Errors
///
/// The MySQL error.
pub fn drop_ref(q: &mut impl Queryable, name: &str) -> mysql::Result<Option<u32>> {
    q.exec_drop("UPDATE avatars SET refs = refs - 1 WHERE name = ? AND refs > 0", (name,))?;
    q.exec_first("SELECT refs FROM avatars WHERE name = ? FOR UPDATE", (name,))
}

/// Stores a picture's bytes under `name`, unless they are stored already
/// (then nothing changes: the bytes behind a name never differ). Call it
/// holding the lock of `name`'s row of `avatars`.
///
/// The bytes are sent even when they are stored already: "already" could
/// only be read reliably with a locking read of `avatar_bytes`, whose gap
/// lock, for a picture not stored yet, would let two uploads of different new
/// pictures deadlock on each other's inserts. Sending them twice happens only
/// when two accounts upload the very same picture.
///
/// # Errors
///
/// The MySQL error.
pub fn store_bytes(q: &mut impl Queryable, name: &str, bytes: &[u8]) -> mysql::Result<()> {
    q.exec_drop(
        "INSERT INTO avatar_bytes (name, bytes) VALUES (?, ?) ON DUPLICATE KEY UPDATE name = name",
        (name, bytes),
    )
}

/// Deletes the count of `name` and its bytes, if the count is zero (call it
/// holding the row's lock, after [`drop_ref`] returned `Some(0)`); returns
/// whether they were deleted.
///
/// # Errors
///
/// The MySQL error.
pub fn delete_unused(tx: &mut Transaction<'_>, name: &str) -> mysql::Result<bool> {
    tx.exec_drop("DELETE FROM avatars WHERE name = ? AND refs = 0", (name,))?;
    if tx.affected_rows() == 0 {
        return Ok(false);
    }
    tx.exec_drop("DELETE FROM avatar_bytes WHERE name = ?", (name,))?;
    Ok(true)
}

/// The bytes stored under `name`, if any: one primary-key read, no lock.
///
/// # Errors
///
/// The MySQL error.
pub fn bytes(q: &mut impl Queryable, name: &str) -> mysql::Result<Option<Vec<u8>>> {
    q.exec_first("SELECT bytes FROM avatar_bytes WHERE name = ?", (name,))
}

/// Up to `limit` names, in order and after `after`, that accounts use (a
/// count above zero) but whose bytes are not stored: pictures stored as
/// files by an earlier version, waiting for [`crate::avatar_import`].
///
/// # Errors
///
/// The MySQL error.
pub fn missing_bytes(q: &mut impl Queryable, after: &str, limit: usize) -> mysql::Result<Vec<String>> {
    q.exec(
        "SELECT a.name FROM avatars a LEFT JOIN avatar_bytes b ON b.name = a.name \
         WHERE a.refs > 0 AND b.name IS NULL AND a.name > ? ORDER BY a.name LIMIT ?",
        (after, limit as u64),
    )
}

/// Whether `name` is counted as used now, with its row locked (so that a
/// release cannot delete it before the caller's transaction ends).
///
/// # Errors
///
/// The MySQL error.
pub fn lock_used(q: &mut impl Queryable, name: &str) -> mysql::Result<bool> {
    let refs: Option<u32> = q.exec_first("SELECT refs FROM avatars WHERE name = ? FOR UPDATE", (name,))?;
    Ok(refs.is_some_and(|n| n > 0))
}
