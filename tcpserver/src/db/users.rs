//! The SQL: every statement the server runs, with its parameters bound, never
//! spliced into the text.
//!
//! Each function takes any `Queryable` (a connection or a transaction), so the
//! caller decides what runs inside a transaction.

use std::collections::HashMap;

use mysql::Transaction;
use mysql::prelude::Queryable;

use proto::{IdempotencyKey, Profile};

use crate::profile_cache::Versioned;

/// MySQL's "duplicate entry" error: the username is taken.
pub const ER_DUP_ENTRY: u16 = 1062;

/// What log-in needs about a user, read with [`find_logins`].
#[derive(Debug, Clone)]
pub struct LoginRow {
    /// `users.id`.
    pub user_id: u64,
    /// The stored password hash.
    pub password_hash: String,
    /// The profile, for the reply and to warm the cache.
    pub profile: Versioned,
}

/// Creates a user and their credentials in one transaction (a user never
/// exists without credentials), stamped with the sign-up's idempotency key
/// (`users.signup_key`, for [`signed_up_with`]); returns the new id.
///
/// # Errors
///
/// The MySQL error; [`ER_DUP_ENTRY`] if the username is taken.
pub fn insert(
    tx: &mut Transaction<'_>,
    username: &str,
    nickname: &str,
    password_hash: &str,
    key: &IdempotencyKey,
) -> mysql::Result<u64> {
    tx.exec_drop(
        "INSERT INTO users (username, nickname, signup_key) VALUES (?, ?, ?)",
        (username, nickname, &key.as_bytes()[..]),
    )?;
    let id = match tx.last_insert_id() {
        Some(id) => id,
        // The OK packet of an INSERT into an AUTO_INCREMENT table always has it;
        // ask the server should a proxy have dropped it.
        None => tx.query_first("SELECT LAST_INSERT_ID()")?.unwrap_or(0),
    };
    tx.exec_drop(
        "INSERT INTO credentials (user_id, username, password_hash) VALUES (?, ?, ?)",
        (id, username, password_hash),
    )?;
    Ok(id)
}

/// The profile of `username` if the sign-up that created the account carried
/// `key`: the account is this sign-up's own, made by an earlier copy of it
/// whose answer was lost. `None` when the name belongs to someone else (another
/// key, or a seeded account, which has none) or to nobody (deleted since).
///
/// Asked only after [`insert`] met the unique key, so the row it looks for is
/// committed: the unique check waits for an insert in flight to commit or roll
/// back, and this read, outside that transaction, sees the latest commit.
///
/// # Errors
///
/// The MySQL error.
pub fn signed_up_with(
    q: &mut impl Queryable,
    username: &str,
    key: &IdempotencyKey,
) -> mysql::Result<Option<Profile>> {
    let row: Option<(String, String, Option<String>)> = q.exec_first(
        "SELECT username, nickname, avatar FROM users WHERE username = ? AND signup_key = ?",
        (username, &key.as_bytes()[..]),
    )?;
    Ok(row.map(|(username, nickname, avatar)| Profile { username, nickname, avatar }))
}

/// Users one statement of [`find_logins`] or [`change_nicknames`] reads or
/// changes, at most: a worker's batch ([`crate::queue::MAX_BATCH`] requests).
/// `find_logins` asks for more names in several statements; callers of
/// `change_nicknames` split their changes.
pub const MAX_NAMES_PER_QUERY: usize = 16;

/// The credentials and profiles of several usernames, joined, in one round
/// trip: the rows found, keyed by username (an unknown name has no entry).
///
/// The list is padded to a power of two by repeating its last name, so the
/// connection prepares at most five shapes of the statement (1, 2, 4, 8 and 16
/// names) rather than one per list length.
///
/// # Errors
///
/// The MySQL error.
pub fn find_logins(q: &mut impl Queryable, usernames: &[&str]) -> mysql::Result<HashMap<String, LoginRow>> {
    let mut found = HashMap::with_capacity(usernames.len());
    for chunk in usernames.chunks(MAX_NAMES_PER_QUERY) {
        let Some(last) = chunk.last() else { continue };
        let padded = chunk.len().next_power_of_two();
        let mut names: Vec<&str> = chunk.to_vec();
        names.resize(padded, last);
        let placeholders = vec!["?"; padded].join(", ");
        let sql = format!(
            "SELECT c.user_id, c.username, c.password_hash, u.nickname, u.avatar, u.version \
             FROM credentials c JOIN users u ON u.id = c.user_id WHERE c.username IN ({placeholders})"
        );
        let rows: Vec<(u64, String, String, String, Option<String>, u64)> = q.exec(sql, names)?;
        for (user_id, username, password_hash, nickname, avatar, version) in rows {
            let profile = Profile { username: username.clone(), nickname, avatar };
            found.insert(
                username,
                LoginRow { user_id, password_hash, profile: Versioned { version, profile } },
            );
        }
    }
    Ok(found)
}

/// Replaces a password hash (after a cost change). Idempotent.
///
/// # Errors
///
/// The MySQL error.
pub fn update_password_hash(q: &mut impl Queryable, user_id: u64, password_hash: &str) -> mysql::Result<()> {
    q.exec_drop("UPDATE credentials SET password_hash = ? WHERE user_id = ?", (password_hash, user_id))
}

/// A user's profile and its version, or `None` if the user does not exist.
///
/// # Errors
///
/// The MySQL error.
pub fn profile(q: &mut impl Queryable, user_id: u64) -> mysql::Result<Option<Versioned>> {
    let row: Option<(String, String, Option<String>, u64)> =
        q.exec_first("SELECT username, nickname, avatar, version FROM users WHERE id = ?", (user_id,))?;
    Ok(row.map(|(username, nickname, avatar, version)| Versioned {
        version,
        profile: Profile { username, nickname, avatar },
    }))
}

/// New nicknames for several users (distinct ids, at most
/// [`MAX_NAMES_PER_QUERY`] of them) in two statements: one `UPDATE` that sets
/// each its own nickname and bumps its version, for the rows whose nickname
/// is not that one already, and one `SELECT` of the rows as they now are.
/// Returns the new profiles by user id (an id with no user has none) and how
/// many of the changes found their nickname already stored. Run it in a
/// transaction, so the rows read back are exactly the ones this change
/// produced.
///
/// **Why a change that finds its nickname stored changes nothing.** It is
/// what makes a nickname change safe to send again when the connection it
/// went out on broke (`proto::idempotency`): the copy finds the nickname its
/// first copy stored, bumps no version, and answers the profile as it is,
/// so one request is one change however many copies arrive. No key is
/// needed for that, because of what `users.version` is for: it orders the
/// profile's states for the Redis cache, which replaces an entry only with
/// one of a higher version, so that a slow writer cannot put an old profile
/// back. Setting the nickname the profile already has makes no new state,
/// so there is nothing to order: two different requests that set the same
/// nickname leave the profile as one does, and bumping once is right for
/// both (the second is answered the same profile, stored, as the first).
/// A key per request would tell those two apart only to bump a version for
/// a change that changes nothing, and would cost a column and a field of
/// the protocol. What neither a key kept per row nor this condition can
/// tell: a copy that arrives after *another* change of the same user's
/// nickname (from a request that overlapped this one, since this one was
/// not answered yet) applies again; the nickname is then this request's,
/// which a history in which it came last also gives, with one version more.
///
/// The comparison is of bytes (`BINARY`), not of the column's collation,
/// which ignores trailing spaces: a nickname that differs in any byte is a
/// change.
///
/// Like [`find_logins`], the lists are padded to a power of two by repeating
/// the last pair (the `CASE` takes its first match, so a repeated pair changes
/// nothing), keeping the statement shapes to five.
///
/// # Errors
///
/// The MySQL error.
pub fn change_nicknames(
    q: &mut impl Queryable,
    changes: &[(u64, &str)],
) -> mysql::Result<(HashMap<u64, Versioned>, usize)> {
    let Some(&last) = changes.last() else { return Ok((HashMap::new(), 0)) };
    debug_assert!(changes.len() <= MAX_NAMES_PER_QUERY, "callers split batches");
    let padded = changes.len().next_power_of_two();
    let mut pairs = changes.to_vec();
    pairs.resize(padded, last);

    let whens = vec!["WHEN ? THEN ?"; padded].join(" ");
    let placeholders = vec!["?"; padded].join(", ");
    let cases =
        || pairs.iter().flat_map(|(id, nickname)| [mysql::Value::from(*id), mysql::Value::from(*nickname)]);
    let mut params: Vec<mysql::Value> = Vec::with_capacity(padded * 5);
    params.extend(cases());
    params.extend(pairs.iter().map(|(id, _)| mysql::Value::from(*id)));
    params.extend(cases());
    let changed = q
        .exec_iter(
            format!(
                "UPDATE users SET nickname = CASE id {whens} END, version = version + 1 \
                 WHERE id IN ({placeholders}) AND BINARY nickname <> BINARY (CASE id {whens} END)"
            ),
            params,
        )?
        .affected_rows();
    // Each changed row counts once (the padding repeats a change, not a row);
    // a user who is gone is counted as unchanged.
    let unchanged = changes.len().saturating_sub(usize::try_from(changed).unwrap_or(usize::MAX));
    let ids: Vec<u64> = pairs.iter().map(|(id, _)| *id).collect();
    let rows: Vec<(u64, String, String, Option<String>, u64)> = q.exec(
        format!("SELECT id, username, nickname, avatar, version FROM users WHERE id IN ({placeholders})"),
        ids,
    )?;
    let profiles = rows
        .into_iter()
        .map(|(id, username, nickname, avatar, version)| {
            (id, Versioned { version, profile: Profile { username, nickname, avatar } })
        })
        .collect();
    Ok((profiles, unchanged))
}

/// A user's picture, with the user's row locked until the transaction ends
/// (so that two changes of one user's picture take turns, each seeing the
/// other's result): `None` if the user does not exist, `Some(None)` if they
/// have no picture.
///
/// # Errors
///
/// The MySQL error.
pub fn lock_avatar(q: &mut impl Queryable, user_id: u64) -> mysql::Result<Option<Option<String>>> {
    q.exec_first("SELECT avatar FROM users WHERE id = ? FOR UPDATE", (user_id,))
}

/// Sets a user's picture (a file name), bumps the version, and returns the
/// profile as it now is, or `None` if the user does not exist. Run it in a
/// transaction, so the row read back is exactly the one this change produced.
///
/// # Errors
///
/// The MySQL error.
pub fn set_avatar(q: &mut impl Queryable, user_id: u64, avatar: &str) -> mysql::Result<Option<Versioned>> {
    q.exec_drop("UPDATE users SET avatar = ?, version = version + 1 WHERE id = ?", (avatar, user_id))?;
    profile(q, user_id)
}

/// Deletes a user with everything that hangs off the row: credentials,
/// log-in history and known devices (their foreign keys cascade; the history
/// is deleted first and explicitly, so that a large one is not one hidden
/// cascade). Returns whether there was such a user.
///
/// # Errors
///
/// The MySQL error.
pub fn delete(tx: &mut Transaction<'_>, user_id: u64) -> mysql::Result<bool> {
    tx.exec_drop("DELETE FROM logins WHERE user_id = ?", (user_id,))?;
    tx.exec_drop("DELETE FROM known_devices WHERE user_id = ?", (user_id,))?;
    tx.exec_drop("DELETE FROM users WHERE id = ?", (user_id,))?;
    Ok(tx.affected_rows() > 0)
}
