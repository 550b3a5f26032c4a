//! The rules for usernames, passwords and nicknames, in one place.
//!
//! `httpserver` only bounds sizes; these functions decide what is acceptable,
//! and each refusal is a value whose `Display` is the sentence shown to the person.

use std::fmt;

/// Shortest username, in characters.
pub const USERNAME_MIN: usize = 3;
/// Longest username: the width of the `username` columns.
pub const USERNAME_MAX: usize = 32;
/// Shortest password, in bytes: below eight, guessing online is too easy.
pub const PASSWORD_MIN: usize = 8;
/// Longest password, in bytes: enough for any passphrase, and it bounds the work
/// a single request can ask of the HMAC.
pub const PASSWORD_MAX: usize = 128;
/// Longest nickname, in Unicode scalar values: the width of `users.nickname`.
pub const NICKNAME_MAX: usize = 64;

/// Why a username was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsernameError {
    /// Fewer than [`USERNAME_MIN`] or more than [`USERNAME_MAX`] characters.
    Length,
    /// A character outside `a-z 0-9 _ . -` (after lowercasing).
    Character,
}

impl fmt::Display for UsernameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsernameError::Length => {
                write!(f, "A username has {USERNAME_MIN} to {USERNAME_MAX} characters.")
            }
            UsernameError::Character => {
                f.write_str("A username may only use letters a-z, digits, '_', '.' and '-'.")
            }
        }
    }
}

/// Why a password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordError {
    /// Fewer than [`PASSWORD_MIN`] or more than [`PASSWORD_MAX`] bytes.
    Length,
    /// A control character (tab, newline, NUL...).
    ControlCharacter,
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::Length => {
                write!(f, "A password has {PASSWORD_MIN} to {PASSWORD_MAX} bytes.")
            }
            PasswordError::ControlCharacter => f.write_str("A password may not contain control characters."),
        }
    }
}

/// Why a nickname was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicknameError {
    /// Empty after trimming, or longer than [`NICKNAME_MAX`] characters.
    Length,
    /// A control character, or a bidirectional override/isolate that could make
    /// the name display as something else.
    ForbiddenCharacter,
}

impl fmt::Display for NicknameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NicknameError::Length => write!(f, "A nickname has 1 to {NICKNAME_MAX} characters."),
            NicknameError::ForbiddenCharacter => {
                f.write_str("A nickname may not contain control or text-direction characters.")
            }
        }
    }
}

/// The canonical (lowercase) form of a username, if it follows the rules.
///
/// # Errors
///
/// [`UsernameError`] naming the broken rule.
pub fn username(raw: &str) -> Result<String, UsernameError> {
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&raw.chars().count()) {
        return Err(UsernameError::Length);
    }
    let lower = raw.to_ascii_lowercase();
    if !lower.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)) {
        return Err(UsernameError::Character);
    }
    Ok(lower)
}

/// Checks a password. It is used exactly as given (no trimming or normalising).
///
/// # Errors
///
/// [`PasswordError`] naming the broken rule.
pub fn password(raw: &str) -> Result<(), PasswordError> {
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&raw.len()) {
        return Err(PasswordError::Length);
    }
    if raw.chars().any(char::is_control) {
        return Err(PasswordError::ControlCharacter);
    }
    Ok(())
}

/// The nickname to store: `raw` with surrounding whitespace trimmed, otherwise
/// byte for byte as given.
///
/// # Errors
///
/// [`NicknameError`] naming the broken rule.
pub fn nickname(raw: &str) -> Result<String, NicknameError> {
    let trimmed = raw.trim();
    if !(1..=NICKNAME_MAX).contains(&trimmed.chars().count()) {
        return Err(NicknameError::Length);
    }
    if trimmed.chars().any(|c| c.is_control() || is_bidi_control(c) || is_line_break(c)) {
        return Err(NicknameError::ForbiddenCharacter);
    }
    Ok(trimmed.to_owned())
}

/// The line and paragraph separators (U+2028, U+2029): not `is_control`, but
/// they break a displayed name across lines like a newline does. (The
/// direction marks U+200E, U+200F and U+061C stay allowed: names that mix
/// right-to-left text with digits need them, and they cannot reorder text
/// beyond their own run the way overrides can.)
fn is_line_break(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// The embedding/override (U+202A–U+202E) and isolate (U+2066–U+2069) controls.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_checked() {
        assert_eq!(username("Bruce_Lee.42-x").unwrap(), "bruce_lee.42-x");
        assert_eq!(username("abc").unwrap(), "abc");
        assert_eq!(username(&"a".repeat(32)).unwrap(), "a".repeat(32));
        assert_eq!(username("ab"), Err(UsernameError::Length));
        assert_eq!(username(&"a".repeat(33)), Err(UsernameError::Length));
        for bad in ["with space", "semi;colon", "ünï", "tab\tx", "a/b", "quote'"] {
            assert_eq!(username(bad), Err(UsernameError::Character), "{bad}");
        }
    }

    #[test]
    fn passwords_are_bounded_in_bytes_and_free_of_controls() {
        assert!(password("12345678").is_ok());
        assert!(password("pässwörd 🐉").is_ok());
        assert_eq!(password("1234567"), Err(PasswordError::Length));
        assert_eq!(password(&"x".repeat(129)), Err(PasswordError::Length));
        assert!(password(&"x".repeat(128)).is_ok());
        assert_eq!(password("12345678\n"), Err(PasswordError::ControlCharacter));
        assert_eq!(password("1234\u{0}5678"), Err(PasswordError::ControlCharacter));
    }

    #[test]
    fn nicknames_keep_their_bytes_but_lose_surrounding_space() {
        assert_eq!(nickname("李小龍 🐉").unwrap(), "李小龍 🐉");
        assert_eq!(nickname("  Bruce  ").unwrap(), "Bruce");
        assert_eq!(nickname(&"龍".repeat(64)).unwrap(), "龍".repeat(64));
        assert_eq!(
            nickname("\u{5E9}\u{5DC}\u{5D5}\u{5DD}\u{200F} 42").unwrap(),
            "\u{5E9}\u{5DC}\u{5D5}\u{5DD}\u{200F} 42"
        );
        assert_eq!(nickname(&"龍".repeat(65)), Err(NicknameError::Length));
        assert_eq!(nickname("   "), Err(NicknameError::Length));
        assert_eq!(nickname(""), Err(NicknameError::Length));
        for bad in ["a\u{7}b", "a\nb", "evil\u{202E}gnp.exe", "x\u{2066}y", "two\u{2028}lines", "p\u{2029}q"]
        {
            assert_eq!(nickname(bad), Err(NicknameError::ForbiddenCharacter), "{bad:?}");
        }
    }
}
