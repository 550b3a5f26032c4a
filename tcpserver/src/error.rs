//! The one error type of the operations, and how each error becomes a reply.
//!
//! Every way a request can fail is a variant here. [`Error::code`] maps it to the
//! stable [`ErrorCode`] of the protocol, and `Display` gives the sentence a person
//! reads. Internal causes (a database error, a full disk) are logged by the
//! worker and never sent to the client, which only learns that something went
//! wrong on the server's side.

use std::fmt;

use proto::{ErrorCode, ErrorReply, Message};

use crate::image::ImageError;
use crate::password::PasswordError as HashError;
use crate::validate::{NicknameError, PasswordError, UsernameError};

/// How long a client should wait after `Unavailable` or `Overloaded`: long enough
/// for a reconnect attempt, short enough that a person barely notices.
pub const RETRY_AFTER_BUSY_SECS: u32 = 1;

/// How long a client should wait after `InsufficientStorage`. Room comes back
/// only when an operator gives MariaDB some, which takes minutes at least: a sooner
/// retry would be refused again, and the hint keeps scripts from retrying in a
/// loop.
pub const RETRY_AFTER_STORAGE_SECS: u32 = 600;

/// A service the back end depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    /// The accounts database.
    Mysql,
    /// Sessions, profile cache and throttling counters.
    Redis,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dependency::Mysql => "MySQL",
            Dependency::Redis => "Redis",
        })
    }
}

/// Why an operation failed.
#[derive(Debug)]
pub enum Error {
    /// The username breaks a rule.
    InvalidUsername(UsernameError),
    /// The password breaks a rule.
    InvalidPassword(PasswordError),
    /// The nickname breaks a rule.
    InvalidNickname(NicknameError),
    /// Sign-up with a name that exists.
    UsernameTaken,
    /// Unknown user or wrong password, deliberately not told apart.
    BadCredentials,
    /// The current password given to change the password or delete the
    /// account is wrong (the user is known: they hold a session).
    WrongPassword,
    /// No session of the account has the public id given.
    UnknownSession,
    /// The new password is the current one.
    PasswordUnchanged,
    /// The typed confirmation is not the account's username.
    ConfirmationMismatch,
    /// A throttle is closed for this many more seconds.
    TooManyAttempts {
        /// Seconds until the throttle opens again.
        retry_after_secs: u32,
    },
    /// No valid session for the token.
    Unauthenticated,
    /// The session's user is not the user the request names.
    Forbidden,
    /// The upload is not an acceptable picture.
    UnsupportedImage(ImageError),
    /// The upload is larger than [`proto::MAX_IMAGE_LEN`].
    ImageTooLarge {
        /// The upload's size in bytes.
        len: usize,
    },
    /// MariaDB has no room for the picture (its disk or table is full), so
    /// it was not stored.
    InsufficientStorage,
    /// No stored picture has the name asked for.
    UnknownAvatar,
    /// The scan-to-log-in code is past its lifetime or unknown.
    QrExpired,
    /// The scan-to-log-in code was already decided, redeemed, or scanned by another account.
    QrUsed,
    /// The binding secret does not match the code's.
    QrNotYours,
    /// The reactor holds [`crate::qr_waits::MAX_WAITS`] waits already.
    QrWaitsFull,
    /// A dependency cannot be reached right now.
    Unavailable(Dependency),
    /// Anything else: a bug or an unexpected failure, logged by the worker.
    Internal(Internal),
}

/// The causes behind [`Error::Internal`], for the log.
#[derive(Debug)]
pub enum Internal {
    /// MySQL refused a statement for a reason other than connectivity.
    Mysql(mysql::Error),
    /// Redis refused a command for a reason other than connectivity.
    Redis(redis::RedisError),
    /// The password hasher failed (OS randomness, or a corrupt stored hash).
    Hash(HashError),
    /// A Redis value the server wrote does not parse (a session or cache entry).
    CorruptEntry(&'static str),
    /// A row the server expects (the user behind a credentials row) is missing.
    MissingRow(&'static str),
    /// The same failure as the first request of the worker's batch (logged with that one).
    SameAsBatch,
}

impl fmt::Display for Internal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Internal::Mysql(e) => write!(f, "MySQL error: {e}"),
            Internal::Redis(e) => write!(f, "Redis error: {e}"),
            Internal::Hash(e) => write!(f, "password hashing: {e}"),
            Internal::CorruptEntry(what) => write!(f, "corrupt Redis entry: {what}"),
            Internal::MissingRow(what) => write!(f, "missing row: {what}"),
            Internal::SameAsBatch => f.write_str("failed with the first request of its batch"),
        }
    }
}

impl Error {
    /// This error for each of `n` requests that shared one failed operation (a
    /// batch's Redis round trip): the first keeps the cause, for the log; the
    /// others get `Unavailable` like it, or an internal error that points to
    /// the first (causes cannot be cloned).
    pub fn shared_by(self, n: usize) -> Vec<Error> {
        let unavailable = match &self {
            Error::Unavailable(dependency) => Some(*dependency),
            _ => None,
        };
        let same = || unavailable.map_or(Error::Internal(Internal::SameAsBatch), Error::Unavailable);
        std::iter::once(self).chain(std::iter::repeat_with(same)).take(n).collect()
    }

    /// The protocol's code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidUsername(_) => ErrorCode::InvalidUsername,
            Error::InvalidPassword(_) => ErrorCode::InvalidPassword,
            Error::InvalidNickname(_) => ErrorCode::InvalidNickname,
            Error::UsernameTaken => ErrorCode::UsernameTaken,
            Error::BadCredentials | Error::WrongPassword => ErrorCode::BadCredentials,
            Error::UnknownSession => ErrorCode::UnknownSession,
            Error::PasswordUnchanged => ErrorCode::PasswordUnchanged,
            Error::ConfirmationMismatch => ErrorCode::ConfirmationMismatch,
            Error::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            Error::Unauthenticated => ErrorCode::Unauthenticated,
            Error::Forbidden => ErrorCode::Forbidden,
            Error::UnsupportedImage(_) => ErrorCode::UnsupportedImage,
            Error::ImageTooLarge { .. } => ErrorCode::ImageTooLarge,
            Error::InsufficientStorage => ErrorCode::InsufficientStorage,
            Error::UnknownAvatar => ErrorCode::UnknownAvatar,
            Error::QrExpired => ErrorCode::QrExpired,
            Error::QrUsed => ErrorCode::QrUsed,
            Error::QrNotYours => ErrorCode::QrNotYours,
            Error::QrWaitsFull => ErrorCode::QrWaitsFull,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Seconds the client should wait before retrying; 0 when retrying will not help.
    pub fn retry_after_secs(&self) -> u32 {
        match self {
            Error::TooManyAttempts { retry_after_secs } => *retry_after_secs,
            Error::Unavailable(_) | Error::QrWaitsFull => RETRY_AFTER_BUSY_SECS,
            Error::InsufficientStorage => RETRY_AFTER_STORAGE_SECS,
            _ => 0,
        }
    }

    /// The error reply sent to the client.
    pub fn to_message(&self) -> Message {
        Message::Error(ErrorReply {
            code: self.code(),
            message: self.to_string(),
            retry_after_secs: self.retry_after_secs(),
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidUsername(e) => e.fmt(f),
            Error::InvalidPassword(e) => e.fmt(f),
            Error::InvalidNickname(e) => e.fmt(f),
            Error::UsernameTaken => f.write_str("That username is taken."),
            Error::BadCredentials => f.write_str("Wrong username or password."),
            Error::WrongPassword => f.write_str("That is not your current password."),
            Error::UnknownSession => f.write_str("That device is not signed in (any more)."),
            Error::PasswordUnchanged => f.write_str("The new password must differ from the current one."),
            Error::ConfirmationMismatch => {
                f.write_str("To delete the account, type its username exactly as shown.")
            }
            Error::TooManyAttempts { retry_after_secs } => {
                write!(f, "Too many attempts. Try again in {retry_after_secs} seconds.")
            }
            Error::Unauthenticated => f.write_str("Please log in."),
            Error::Forbidden => f.write_str("You can only see and change your own profile."),
            Error::UnsupportedImage(e) => e.fmt(f),
            Error::ImageTooLarge { len } => write!(
                f,
                "The picture has {len} bytes; the limit is {} bytes ({} MiB).",
                proto::MAX_IMAGE_LEN,
                proto::MAX_IMAGE_LEN >> 20
            ),
            Error::InsufficientStorage => {
                f.write_str("The server has no room for new pictures right now. Please try again later.")
            }
            Error::UnknownAvatar => f.write_str("There is no such picture."),
            Error::QrExpired => f.write_str("This log-in code has expired. Use the new code on the screen."),
            Error::QrUsed => f.write_str("This log-in code has already been used."),
            Error::QrNotYours => f.write_str("This log-in code belongs to another browser."),
            Error::QrWaitsFull => {
                f.write_str("Too many log-in codes are waiting right now. Please try again.")
            }
            Error::Unavailable(_) => f.write_str("The service is briefly unavailable. Please try again."),
            Error::Internal(_) => f.write_str("Something went wrong on our side. Please try again."),
        }
    }
}

impl std::error::Error for Error {}

impl From<mysql::Error> for Error {
    fn from(e: mysql::Error) -> Error {
        if crate::db::mysql::is_connection_error(&e) {
            Error::Unavailable(Dependency::Mysql)
        } else {
            Error::Internal(Internal::Mysql(e))
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Error {
        // Out of memory (`maxmemory` with `noeviction`): Redis refuses writes
        // until memory is freed; a quick 503 tells the client to come back.
        if crate::db::redis::is_connection_error(&e) || crate::db::redis::is_out_of_memory(&e) {
            Error::Unavailable(Dependency::Redis)
        } else {
            Error::Internal(Internal::Redis(e))
        }
    }
}

impl From<HashError> for Error {
    fn from(e: HashError) -> Error {
        Error::Internal(Internal::Hash(e))
    }
}

impl From<UsernameError> for Error {
    fn from(e: UsernameError) -> Error {
        Error::InvalidUsername(e)
    }
}

impl From<PasswordError> for Error {
    fn from(e: PasswordError) -> Error {
        Error::InvalidPassword(e)
    }
}

impl From<NicknameError> for Error {
    fn from(e: NicknameError) -> Error {
        Error::InvalidNickname(e)
    }
}

impl From<ImageError> for Error {
    fn from(e: ImageError) -> Error {
        Error::UnsupportedImage(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_code_sentence_and_retry_hint() {
        let Message::Error(reply) = Error::TooManyAttempts { retry_after_secs: 42 }.to_message() else {
            panic!("not an error reply");
        };
        assert_eq!(reply.code, ErrorCode::TooManyAttempts);
        assert_eq!(reply.retry_after_secs, 42);
        assert!(reply.message.contains("42"));
        assert_eq!(Error::Unavailable(Dependency::Redis).retry_after_secs(), RETRY_AFTER_BUSY_SECS);
        assert_eq!(Error::BadCredentials.retry_after_secs(), 0);
    }

    #[test]
    fn internal_details_stay_out_of_the_reply() {
        let e = Error::Internal(Internal::CorruptEntry("secret session entry"));
        assert_eq!(e.code(), ErrorCode::Internal);
        assert!(!e.to_string().contains("secret"));
    }
}
