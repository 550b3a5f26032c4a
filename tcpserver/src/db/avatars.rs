//! The SQL of the `avatars` table: how many accounts use each picture file.
//!
//! Every statement here that changes or locks a row takes an exclusive lock on
//! that one row (by primary key) until the transaction ends; that lock is what
//! [`crate::avatar_refs`] builds its argument on. A row at zero means the same
//! as no row: nobody uses the file. Run these in a transaction.

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
/// counted from now on and its file is not released under it.
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

/// Locks the rows of `names` (at most [`MAX_NAMES_PER_LOOKUP`], sorted, no
/// repeats), creating at 0 those there are none of, so that each lock exists
/// either way, under any isolation level; returns the names whose count is 0.
/// The rows are locked in the order given, so callers that lock several
/// names in sorted order never wait for each other in a cycle.
///
/// # Errors
///
/// The MySQL error.
pub fn lock_unused(q: &mut impl Queryable, names: &[&str]) -> mysql::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    debug_assert!(names.len() <= MAX_NAMES_PER_LOOKUP, "callers split their lists");
    debug_assert!(names.windows(2).all(|w| w[0] < w[1]), "callers sort their lists");
    let rows = vec!["(?, 0)"; names.len()].join(", ");
    q.exec_drop(
        format!("INSERT INTO avatars (name, refs) VALUES {rows} ON DUPLICATE KEY UPDATE refs = refs"),
        names.to_vec(),
    )?;
    let placeholders = vec!["?"; names.len()].join(", ");
    q.exec(
        format!("SELECT name FROM avatars WHERE refs = 0 AND name IN ({placeholders}) FOR UPDATE"),
        names.to_vec(),
    )
}

/// Deletes the rows of `names` whose count is 0 (call it with them locked).
///
/// # Errors
///
/// The MySQL error.
pub fn forget_unused(q: &mut impl Queryable, names: &[&str]) -> mysql::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let placeholders = vec!["?"; names.len()].join(", ");
    q.exec_drop(format!("DELETE FROM avatars WHERE refs = 0 AND name IN ({placeholders})"), names.to_vec())
}

/// Of `names`, the ones some account uses (a row with a count above 0), read
/// without locks in one statement: the start-up sweep's first, cheap filter,
/// which [`lock`] then confirms for each name it would delete. At most
/// [`MAX_NAMES_PER_LOOKUP`] names.
///
/// # Errors
///
/// The MySQL error.
pub fn used(q: &mut impl Queryable, names: &[&str]) -> mysql::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    debug_assert!(names.len() <= MAX_NAMES_PER_LOOKUP, "callers split their lists");
    let placeholders = vec!["?"; names.len()].join(", ");
    q.exec(format!("SELECT name FROM avatars WHERE refs > 0 AND name IN ({placeholders})"), names.to_vec())
}

/// Names one [`used`] or [`lock_unused`] statement takes, at most: the sweep
/// reads the directory in slices of this many pictures, so its memory stays
/// bounded whatever the directory holds, and releases a slice's unused ones
/// in one transaction: one commit and one log flush per slice, where one per
/// file removed about 1,000 files a second and this about 11,000 (20,000
/// unused files, debug build, 2026-12-01, machine shared with other builds).
/// 500 names (about 40 KB of statement) are few round trips per million
/// files, and locking 500 unused names for the time of their unlinks delays
/// no one but an upload of exactly those pictures.
pub const MAX_NAMES_PER_LOOKUP: usize = 500;
