//! The seeded accounts: who account number `i` is, reproducibly.
//!
//! Account `i` (1 ≤ i ≤ [`MAX_ACCOUNTS`]) has the row id `i`, the username
//! `user{i:08}` and the password `pass{i:08}`, so that the load generator can
//! log in as any of them without a list. Every third account gets a nickname in
//! another script or with emoji, so that the non-ASCII path is exercised at
//! scale; the others get `User {i}`.
//!
//! The ids `1..=MAX_ACCOUNTS` are reserved for seeded accounts: the seeding tool
//! moves the `AUTO_INCREMENT` of `users` past [`FIRST_SIGN_UP_ID`], so a real
//! sign-up never takes an id that a later, larger seed would need.

use std::fmt::Write as _;

/// The most accounts the scheme can name: usernames carry eight digits.
pub const MAX_ACCOUNTS: u64 = 99_999_999;

/// The lowest id a real sign-up may get. Everything below it is the seed's.
pub const FIRST_SIGN_UP_ID: u64 = MAX_ACCOUNTS + 1;

/// The prefix of every seeded username.
pub const USERNAME_PREFIX: &str = "user";

/// The prefix of every seeded password.
pub const PASSWORD_PREFIX: &str = "pass";

/// The length of a seeded username: the prefix and eight digits.
pub const USERNAME_LEN: usize = USERNAME_PREFIX.len() + 8;

/// Nickname patterns for every third account, each followed by the account
/// number. Scripts of several widths (2-, 3- and 4-byte UTF-8) and an emoji;
/// none has a control or bidi character, so all pass tcpserver's checks.
const NON_ASCII_NICKNAMES: [&str; 6] =
    ["用户", "ユーザー", "사용자 ", "Пользователь ", "🦀 Rustacean ", "Ünïcødé "];

/// The username of account `i`.
pub fn username(i: u64) -> String {
    format!("{USERNAME_PREFIX}{i:08}")
}

/// The password of account `i`.
pub fn password(i: u64) -> String {
    format!("{PASSWORD_PREFIX}{i:08}")
}

/// The nickname of account `i`: non-ASCII for every third account.
pub fn nickname(i: u64) -> String {
    let mut nick = String::with_capacity(32);
    push_nickname(&mut nick, i);
    nick
}

/// Appends the nickname of account `i` to `out` (the loader's allocation-free path).
pub fn push_nickname(out: &mut String, i: u64) {
    if i.is_multiple_of(3) {
        let pattern = NON_ASCII_NICKNAMES[((i / 3) % NON_ASCII_NICKNAMES.len() as u64) as usize];
        let _ = write!(out, "{pattern}{i}");
    } else {
        let _ = write!(out, "User {i}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_fixed_width_and_reproducible() {
        assert_eq!(username(1), "user00000001");
        assert_eq!(username(MAX_ACCOUNTS), "user99999999");
        assert_eq!(username(42).len(), USERNAME_LEN);
        assert_eq!(password(42), "pass00000042");
        assert_eq!(nickname(1), "User 1");
        assert_eq!(nickname(3), "ユーザー3");
        assert_eq!(nickname(3), nickname(3));
    }

    #[test]
    fn every_third_nickname_is_non_ascii_and_all_are_valid() {
        for i in 1..=60 {
            let nick = nickname(i);
            assert_eq!(!nick.is_ascii(), i % 3 == 0, "{i}: {nick}");
            let chars = nick.chars().count();
            assert!((1..=64).contains(&chars), "{nick}");
            assert!(!nick.chars().any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)));
            assert_eq!(nick.trim(), nick);
        }
        let longest = (MAX_ACCOUNTS - 5..=MAX_ACCOUNTS).map(|i| nickname(i).chars().count()).max();
        assert!(longest <= Some(64));
    }

    #[test]
    fn passwords_meet_the_length_rule() {
        assert!((8..=128).contains(&password(1).len()));
    }
}
