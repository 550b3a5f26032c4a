//! The messages: one request type per operation, one reply type per operation,
//! and one error reply.
//!
//! Request types are `0x01..=0x7f`, replies `0x81..=0xff`; the handshake's
//! three (see [`crate::handshake`]) sit among them by direction: the client's
//! `Proof` with the requests, the server's `Challenge` and `Accepted` with the
//! replies. Each message's body is
//! a fixed sequence of fields encoded as `wire` describes; the field order
//! is the order of the struct fields below.

use std::fmt;
use std::net::IpAddr;

use crate::error::Error;
use crate::handshake::{Nonce, Proof};
use crate::idempotency::IdempotencyKey;
use crate::qr::QrState;
use crate::wire::{Reader, Writer};

/// Largest profile picture accepted, in bytes. Two MiB holds a good 1024×1024 JPEG
/// or WebP; a larger upload is refused before it costs the back end anything.
pub const MAX_IMAGE_LEN: usize = 2 * 1024 * 1024;

/// The message type byte of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)] // Each variant is documented on the `Message` variant of the same name.
pub enum MessageType {
    SignUp = 0x01,
    Login = 0x02,
    Logout = 0x03,
    GetProfile = 0x04,
    UpdateNickname = 0x05,
    SetAvatar = 0x06,
    Ping = 0x07,
    Proof = 0x08,
    GetAvatar = 0x09,
    CheckReady = 0x30,
    ListSessions = 0x10,
    RevokeSession = 0x11,
    RevokeOtherSessions = 0x12,
    LoginHistory = 0x13,
    ChangePassword = 0x14,
    DeleteAccount = 0x15,
    QrCreate = 0x20,
    QrWait = 0x21,
    QrScan = 0x22,
    QrDecide = 0x23,
    QrCancel = 0x24,
    SignedUp = 0x81,
    LoggedIn = 0x82,
    LoggedOut = 0x83,
    ProfileReply = 0x84,
    NicknameUpdated = 0x85,
    AvatarSet = 0x86,
    Pong = 0x87,
    Challenge = 0x88,
    Accepted = 0x89,
    Avatar = 0x8a,
    Readiness = 0xb0,
    Sessions = 0x90,
    SessionRevoked = 0x91,
    OthersRevoked = 0x92,
    History = 0x93,
    PasswordChanged = 0x94,
    AccountDeleted = 0x95,
    QrCreated = 0xa0,
    QrStatus = 0xa1,
    QrDetails = 0xa2,
    QrDecided = 0xa3,
    QrCancelled = 0xa4,
    Error = 0xff,
}

impl MessageType {
    /// The type for a header byte, or `None` if no message has that number.
    pub fn from_u8(b: u8) -> Option<MessageType> {
        use MessageType::*;
        Some(match b {
            0x01 => SignUp,
            0x02 => Login,
            0x03 => Logout,
            0x04 => GetProfile,
            0x05 => UpdateNickname,
            0x06 => SetAvatar,
            0x07 => Ping,
            0x08 => Proof,
            0x09 => GetAvatar,
            0x30 => CheckReady,
            0xb0 => Readiness,
            0x10 => ListSessions,
            0x11 => RevokeSession,
            0x12 => RevokeOtherSessions,
            0x13 => LoginHistory,
            0x14 => ChangePassword,
            0x15 => DeleteAccount,
            0x20 => QrCreate,
            0x21 => QrWait,
            0x22 => QrScan,
            0x23 => QrDecide,
            0x24 => QrCancel,
            0x81 => SignedUp,
            0x82 => LoggedIn,
            0x83 => LoggedOut,
            0x84 => ProfileReply,
            0x85 => NicknameUpdated,
            0x86 => AvatarSet,
            0x87 => Pong,
            0x88 => Challenge,
            0x89 => Accepted,
            0x8a => Avatar,
            0x90 => Sessions,
            0x91 => SessionRevoked,
            0x92 => OthersRevoked,
            0x93 => History,
            0x94 => PasswordChanged,
            0x95 => AccountDeleted,
            0xa0 => QrCreated,
            0xa1 => QrStatus,
            0xa2 => QrDetails,
            0xa3 => QrDecided,
            0xa4 => QrCancelled,
            0xff => Error,
            _ => return None,
        })
    }

    /// True for the types a client sends; false for replies.
    pub fn is_request(self) -> bool {
        (self as u8) < 0x80
    }

    /// True for the requests that are idempotent by nature: doing one twice
    /// leaves the data as doing it once does, with no help from a key or a
    /// condition ([`crate::idempotency`] tells these from the writes made
    /// safe to resend; a client asks [`MessageType::is_safe_to_resend`]).
    ///
    /// These are the reads (`Ping`, `CheckReady`, `GetProfile`, `GetAvatar`,
    /// `ListSessions`, `LoginHistory`) and `QrWait`. A wait only reads a code,
    /// except when it redeems a confirmed one for a session; that redemption
    /// is a one-shot change in the store (`confirmed -> consumed`), so a wait
    /// sent again after a redemption whose answer was lost opens no second
    /// session: it finds the code used and says so. Replies and handshake
    /// frames are never idempotent requests.
    pub fn is_idempotent(self) -> bool {
        use MessageType::*;
        matches!(self, Ping | CheckReady | GetProfile | GetAvatar | ListSessions | LoginHistory | QrWait)
    }

    /// True for the requests a client may send again, to the same tcpserver
    /// or another, when it cannot tell whether the first one arrived (its
    /// connection broke after the frame was written): the naturally
    /// idempotent ones ([`MessageType::is_idempotent`]) and the writes the
    /// server makes idempotent, `SignUp` (by its [`crate::IdempotencyKey`])
    /// and `UpdateNickname` (applied only where the nickname differs); see
    /// [`crate::idempotency`].
    ///
    /// Every other request changes state (a session, a picture, a
    /// password, a code's state, a throttle's count) and must not be sent
    /// again once any byte of it may have reached a server; the client
    /// reports it interrupted instead (`httpserver`'s `RpcError::Interrupted`).
    /// A request none of whose bytes were written may be sent anywhere,
    /// whatever its type. Which requests are safe is a property of the type
    /// (no flag in the frame says it), and every copy of a request is the
    /// same bytes: a client encodes it once.
    pub fn is_safe_to_resend(self) -> bool {
        self.is_idempotent() || matches!(self, MessageType::SignUp | MessageType::UpdateNickname)
    }

    /// True for the handshake's frames, which are valid only as a
    /// connection's first exchange ([`crate::handshake`]).
    pub fn is_handshake(self) -> bool {
        matches!(self, MessageType::Challenge | MessageType::Proof | MessageType::Accepted)
    }
}

/// A string that must never reach a log: a password or a session token.
///
/// Its `Debug` prints `<redacted>`, so logging a whole message is safe.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the code that has to use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// What a user's profile page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The login name; immutable.
    pub username: String,
    /// Display name: any Unicode text.
    pub nickname: String,
    /// Name of the picture, if one was uploaded: server-chosen and
    /// content-derived (`<sha256 hex>.<ext>`), the key [`Message::GetAvatar`]
    /// fetches it by.
    pub avatar: Option<String>,
}

/// Why a request failed. The numbers are stable: `httpserver` passes them to API
/// clients as the JSON `code`, so never renumber one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The request is malformed in a way no user input explains.
    BadRequest = 1,
    /// The username breaks the username rules.
    InvalidUsername = 2,
    /// The password breaks the password rules.
    InvalidPassword = 3,
    /// The nickname breaks the nickname rules.
    InvalidNickname = 4,
    /// Sign-up with a name that already exists.
    UsernameTaken = 5,
    /// Log-in failed: unknown user or wrong password (deliberately not told apart).
    BadCredentials = 6,
    /// Too many failed attempts or sign-ups; retry after `retry_after_secs`.
    TooManyAttempts = 7,
    /// No session, or the token is unknown, expired or logged out.
    Unauthenticated = 8,
    /// The session is valid but the request names another user.
    Forbidden = 9,
    /// The uploaded bytes are not a PNG, JPEG, GIF or WebP image.
    UnsupportedImage = 10,
    /// The uploaded picture is larger than [`MAX_IMAGE_LEN`].
    ImageTooLarge = 11,
    /// The back end's queue is full; retry after `retry_after_secs`.
    Overloaded = 12,
    /// MySQL or Redis cannot be reached right now; retry shortly.
    Unavailable = 13,
    /// A bug or an unexpected failure; the server log has the details.
    Internal = 14,
    /// The peer sent a reply type where a request was expected.
    UnexpectedMessage = 15,
    /// The picture store (MariaDB) has no room for a new picture (its disk or
    /// table is full) until an operator makes some; retry after `retry_after_secs`.
    InsufficientStorage = 16,
    /// No signed-in session of the account has that id (signed out already, or never).
    UnknownSession = 17,
    /// The new password is the current one.
    PasswordUnchanged = 18,
    /// The typed confirmation is not the account's username.
    ConfirmationMismatch = 19,
    /// The scan-to-log-in code is past its lifetime, or never existed.
    QrExpired = 20,
    /// The scan-to-log-in code was already approved, denied, redeemed, or
    /// scanned by another account.
    QrUsed = 21,
    /// The scan-to-log-in code belongs to another browser: the binding
    /// secret is missing or wrong.
    QrNotYours = 22,
    /// The back end holds as many waiting scan-to-log-in pages as it may;
    /// retry after `retry_after_secs`.
    QrWaitsFull = 23,
    /// No stored picture has the name asked for ([`Message::GetAvatar`]).
    UnknownAvatar = 24,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidUsername,
        ErrorCode::InvalidPassword,
        ErrorCode::InvalidNickname,
        ErrorCode::UsernameTaken,
        ErrorCode::BadCredentials,
        ErrorCode::TooManyAttempts,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::UnsupportedImage,
        ErrorCode::ImageTooLarge,
        ErrorCode::Overloaded,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::UnexpectedMessage,
        ErrorCode::InsufficientStorage,
        ErrorCode::UnknownSession,
        ErrorCode::PasswordUnchanged,
        ErrorCode::ConfirmationMismatch,
        ErrorCode::QrExpired,
        ErrorCode::QrUsed,
        ErrorCode::QrNotYours,
        ErrorCode::QrWaitsFull,
        ErrorCode::UnknownAvatar,
    ];

    /// The code for a wire number, or `None` if it is unknown.
    pub fn from_u16(n: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| *c as u16 == n)
    }
}

/// The body of an error reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// What went wrong, as a stable number.
    pub code: ErrorCode,
    /// A sentence a person can act on ("That username is taken.").
    pub message: String,
    /// For throttling, overload and a full picture store: seconds to wait before
    /// retrying; 0 otherwise.
    pub retry_after_secs: u32,
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Create an account.
    SignUp {
        /// Requested login name.
        username: String,
        /// Password in clear, hashed by the back end.
        password: Secret,
        /// Display name; the username when absent.
        nickname: Option<String>,
        /// The browser's address, for per-address throttling.
        client: Option<IpAddr>,
        /// Made at random by the client for this sign-up and sent with every
        /// copy of it: a copy that finds the username taken by the account
        /// this key created is answered as the first was
        /// ([`crate::idempotency`]).
        key: IdempotencyKey,
    },
    /// Check a password and open a session.
    Login {
        /// Login name.
        username: String,
        /// Password in clear.
        password: Secret,
        /// The browser's address, for per-address throttling and the history.
        client: Option<IpAddr>,
        /// The browser's User-Agent (at most [`crate::MAX_USER_AGENT_LEN`]
        /// bytes), for the device list and the history.
        user_agent: Option<String>,
    },
    /// End a session.
    Logout {
        /// The session token.
        token: Secret,
    },
    /// Read the profile of the session's user.
    GetProfile {
        /// The session token.
        token: Secret,
        /// If given, must be the session's user ([`ErrorCode::Forbidden`] otherwise).
        username: Option<String>,
    },
    /// Change the session user's nickname.
    UpdateNickname {
        /// The session token.
        token: Secret,
        /// If given, must be the session's user.
        username: Option<String>,
        /// The new nickname.
        nickname: String,
    },
    /// Replace the session user's picture.
    SetAvatar {
        /// The session token.
        token: Secret,
        /// If given, must be the session's user.
        username: Option<String>,
        /// The image file's bytes.
        image: Vec<u8>,
    },
    /// Liveness check; answered with [`Message::Pong`] without touching MySQL or Redis.
    Ping,
    /// A stored picture's bytes, by the name a [`Profile::avatar`] holds. Needs
    /// no session: pictures are public, named by their content, and never
    /// change under a name, so the answer may be cached forever. Answered with
    /// [`Message::Avatar`], or [`ErrorCode::UnknownAvatar`] when no account
    /// uses a picture of that name (or the name is not of the form
    /// `<64 lowercase hex digits>.<png|jpg|gif|webp>`). Idempotent: a caller
    /// may send it again after a lost connection.
    GetAvatar {
        /// `<sha256 hex>.<ext>`.
        name: String,
    },
    /// The sessions (devices) of the session's account.
    ListSessions {
        /// The session token.
        token: Secret,
    },
    /// End one session of the session's account, by its public id.
    RevokeSession {
        /// The session token.
        token: Secret,
        /// The [`crate::DeviceSession::id`] to end.
        id: String,
    },
    /// End every session of the account but the asking one.
    RevokeOtherSessions {
        /// The session token.
        token: Secret,
    },
    /// The account's latest log-in attempts, newest first.
    LoginHistory {
        /// The session token.
        token: Secret,
        /// How many (capped at [`crate::security::MAX_HISTORY`]).
        limit: u16,
    },
    /// Change the password; every other session ends.
    ChangePassword {
        /// The session token.
        token: Secret,
        /// The current password.
        password: Secret,
        /// The new password.
        new_password: Secret,
        /// The browser's address, for the per-address throttle.
        client: Option<IpAddr>,
    },
    /// Delete the account, its sessions and its history.
    DeleteAccount {
        /// The session token.
        token: Secret,
        /// The current password.
        password: Secret,
        /// The username, typed by the person as confirmation.
        confirm: String,
        /// The browser's address, for the per-address throttle.
        client: Option<IpAddr>,
    },
    /// The account was created.
    SignedUp(Profile),
    /// The password was right: a new session.
    LoggedIn {
        /// Opaque session token (hex of 32 random bytes).
        token: Secret,
        /// The user's profile.
        profile: Profile,
    },
    /// The session is over.
    LoggedOut,
    /// The profile asked for.
    ProfileReply(Profile),
    /// The nickname was stored; the profile as it is now.
    NicknameUpdated(Profile),
    /// The picture was stored; the profile as it is now.
    AvatarSet(Profile),
    /// Answer to [`Message::Ping`].
    Pong,
    /// Answer to [`Message::GetAvatar`]: the picture. Its body is at most
    /// [`MAX_IMAGE_LEN`] bytes of image plus its content type and the length
    /// prefixes, well inside [`crate::MAX_BODY_LEN`].
    Avatar {
        /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`: the format
        /// tcpserver recognised in the bytes when they were uploaded.
        content_type: String,
        /// The picture's bytes, exactly as uploaded.
        image: Vec<u8>,
    },
    /// The account's sessions, newest first.
    Sessions(Vec<crate::DeviceSession>),
    /// The session was ended.
    SessionRevoked,
    /// Every other session was ended.
    OthersRevoked {
        /// How many were signed in.
        ended: u32,
    },
    /// The account's latest log-in attempts, newest first.
    History(Vec<crate::LoginEntry>),
    /// The password was changed and every other session ended.
    PasswordChanged {
        /// How many other sessions ended.
        ended: u32,
    },
    /// The account is gone.
    AccountDeleted,
    /// The server's first frame on every connection: prove the secret by
    /// answering this nonce ([`crate::handshake`]).
    Challenge(Nonce),
    /// The client's answer to the [`Message::Challenge`]; the first frame it sends.
    Proof(Proof),
    /// The proof was right: requests are read from now on.
    Accepted,
    /// Readiness check: are this server's dependencies answering? Run by a
    /// worker, which sends each of MySQL and Redis one trivial command.
    CheckReady,
    /// Answer to [`Message::CheckReady`]. Body: one byte, bit 0 set when MySQL
    /// answered, bit 1 when Redis did; the other bits are zero.
    Readiness {
        /// MySQL answered `SELECT 1`.
        mysql: bool,
        /// Redis answered `PING`.
        redis: bool,
    },
    /// Make a scan-to-log-in code for a desktop browser.
    QrCreate {
        /// The desktop's `User-Agent`, shown to the phone (cut to a bounded length).
        user_agent: String,
        /// The desktop's address: shown to the phone, and the creation throttle's key.
        client: Option<IpAddr>,
    },
    /// Wait (long poll) until a code leaves the state the caller last saw, or
    /// `wait_ms` passes; a `Confirmed` code is redeemed for a new session when
    /// `binding` is the code's. Parked in tcpserver's reactor, not in a worker.
    QrWait {
        /// The code's key (from the QR image).
        key: Secret,
        /// The second secret, held only by the desktop browser's cookie.
        binding: Secret,
        /// The state the caller knows; an answer comes when the code is in another.
        seen: QrState,
        /// How long to wait at most, in milliseconds (capped by the server).
        wait_ms: u32,
        /// The desktop's address, for the redemption's log-in throttle.
        client: Option<IpAddr>,
    },
    /// A logged-in phone opened a code: mark it scanned and say what it is.
    QrScan {
        /// The phone's session token.
        token: Secret,
        /// The code's key.
        key: Secret,
    },
    /// A logged-in phone approves (or denies) a code.
    QrDecide {
        /// The phone's session token.
        token: Secret,
        /// The code's key.
        key: Secret,
        /// True to approve, false to deny.
        approve: bool,
        /// The phone's address, for the approval throttle.
        client: Option<IpAddr>,
    },
    /// The client of a `QrWait` sent earlier on this connection went away
    /// (the desktop closed its page): end that wait now, not at its deadline,
    /// with whatever it held. Answered [`Message::QrCancelled`] whether or not
    /// the wait was still held (it may have been answered meanwhile); the
    /// wait, if held, is answered too, with its last answer, which its client
    /// no longer reads. A wait on another connection is never touched.
    QrCancel {
        /// The request id of the `QrWait` on this connection.
        wait: u64,
    },
    /// A new code.
    QrCreated {
        /// The key the QR image encodes (hex of 32 random bytes).
        key: Secret,
        /// The binding secret for the desktop's cookie (hex of 32 random bytes).
        binding: Secret,
        /// Seconds the code lives.
        expires_in_secs: u32,
    },
    /// Where a waited-on code stands.
    QrStatus {
        /// The state.
        state: QrState,
        /// Who scanned it (once scanned), to show on the desktop.
        nickname: Option<String>,
        /// That account's picture file, if any.
        avatar: Option<String>,
        /// The new session's token, when this answer redeemed the code.
        token: Option<Secret>,
    },
    /// What the phone is about to approve.
    QrDetails {
        /// The state after the scan.
        state: QrState,
        /// The desktop's `User-Agent` as it was sent.
        user_agent: String,
        /// The desktop's address, as text (empty when unknown).
        ip: String,
        /// When the code was made (Unix seconds).
        created_unix: u64,
    },
    /// The phone's decision was recorded.
    QrDecided {
        /// `Confirmed` or `Denied`.
        state: QrState,
    },
    /// Answer to [`Message::QrCancel`]: that wait is no longer held.
    QrCancelled,
    /// The request failed.
    Error(ErrorReply),
}

impl Message {
    /// The header type byte of this message.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::SignUp { .. } => MessageType::SignUp,
            Message::Login { .. } => MessageType::Login,
            Message::Logout { .. } => MessageType::Logout,
            Message::GetProfile { .. } => MessageType::GetProfile,
            Message::UpdateNickname { .. } => MessageType::UpdateNickname,
            Message::SetAvatar { .. } => MessageType::SetAvatar,
            Message::Ping => MessageType::Ping,
            Message::GetAvatar { .. } => MessageType::GetAvatar,
            Message::Avatar { .. } => MessageType::Avatar,
            Message::ListSessions { .. } => MessageType::ListSessions,
            Message::RevokeSession { .. } => MessageType::RevokeSession,
            Message::RevokeOtherSessions { .. } => MessageType::RevokeOtherSessions,
            Message::LoginHistory { .. } => MessageType::LoginHistory,
            Message::ChangePassword { .. } => MessageType::ChangePassword,
            Message::DeleteAccount { .. } => MessageType::DeleteAccount,
            Message::Sessions(_) => MessageType::Sessions,
            Message::SessionRevoked => MessageType::SessionRevoked,
            Message::OthersRevoked { .. } => MessageType::OthersRevoked,
            Message::History(_) => MessageType::History,
            Message::PasswordChanged { .. } => MessageType::PasswordChanged,
            Message::AccountDeleted => MessageType::AccountDeleted,
            Message::SignedUp(_) => MessageType::SignedUp,
            Message::LoggedIn { .. } => MessageType::LoggedIn,
            Message::LoggedOut => MessageType::LoggedOut,
            Message::ProfileReply(_) => MessageType::ProfileReply,
            Message::NicknameUpdated(_) => MessageType::NicknameUpdated,
            Message::AvatarSet(_) => MessageType::AvatarSet,
            Message::Pong => MessageType::Pong,
            Message::Challenge(_) => MessageType::Challenge,
            Message::Proof(_) => MessageType::Proof,
            Message::Accepted => MessageType::Accepted,
            Message::CheckReady => MessageType::CheckReady,
            Message::Readiness { .. } => MessageType::Readiness,
            Message::QrCreate { .. } => MessageType::QrCreate,
            Message::QrWait { .. } => MessageType::QrWait,
            Message::QrScan { .. } => MessageType::QrScan,
            Message::QrDecide { .. } => MessageType::QrDecide,
            Message::QrCancel { .. } => MessageType::QrCancel,
            Message::QrCancelled => MessageType::QrCancelled,
            Message::QrCreated { .. } => MessageType::QrCreated,
            Message::QrStatus { .. } => MessageType::QrStatus,
            Message::QrDetails { .. } => MessageType::QrDetails,
            Message::QrDecided { .. } => MessageType::QrDecided,
            Message::Error(_) => MessageType::Error,
        }
    }

    /// A convenience for building error replies.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Message {
        Message::Error(ErrorReply { code, message: message.into(), retry_after_secs: 0 })
    }

    /// Appends this message's body fields to `out`.
    pub(crate) fn encode_body(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let mut w = Writer::new(out);
        match self {
            Message::SignUp { username, password, nickname, client, key } => {
                w.text(username)?;
                w.text(password.expose())?;
                w.optional_text(nickname.as_deref())?;
                w.client_addr(*client);
                w.fixed(key.as_bytes());
            }
            Message::Login { username, password, client, user_agent } => {
                w.text(username)?;
                w.text(password.expose())?;
                w.client_addr(*client);
                w.optional_text(user_agent.as_deref())?;
            }
            Message::ListSessions { token } | Message::RevokeOtherSessions { token } => {
                w.text(token.expose())?
            }
            Message::RevokeSession { token, id } => {
                w.text(token.expose())?;
                w.text(id)?;
            }
            Message::LoginHistory { token, limit } => {
                w.text(token.expose())?;
                w.u16(*limit);
            }
            Message::ChangePassword { token, password, new_password, client } => {
                w.text(token.expose())?;
                w.text(password.expose())?;
                w.text(new_password.expose())?;
                w.client_addr(*client);
            }
            Message::DeleteAccount { token, password, confirm, client } => {
                w.text(token.expose())?;
                w.text(password.expose())?;
                w.text(confirm)?;
                w.client_addr(*client);
            }
            Message::Sessions(sessions) => crate::security::encode_sessions(&mut w, sessions)?,
            Message::History(logins) => crate::security::encode_history(&mut w, logins)?,
            Message::OthersRevoked { ended } | Message::PasswordChanged { ended } => w.u32(*ended),
            Message::Logout { token } => w.text(token.expose())?,
            Message::GetProfile { token, username } => {
                w.text(token.expose())?;
                w.optional_text(username.as_deref())?;
            }
            Message::UpdateNickname { token, username, nickname } => {
                w.text(token.expose())?;
                w.optional_text(username.as_deref())?;
                w.text(nickname)?;
            }
            Message::SetAvatar { token, username, image } => {
                w.text(token.expose())?;
                w.optional_text(username.as_deref())?;
                w.bytes(image)?;
            }
            Message::GetAvatar { name } => w.text(name)?,
            Message::Avatar { content_type, image } => {
                w.text(content_type)?;
                w.bytes(image)?;
            }
            Message::Ping
            | Message::LoggedOut
            | Message::Pong
            | Message::Accepted
            | Message::CheckReady
            | Message::SessionRevoked
            | Message::AccountDeleted
            | Message::QrCancelled => {}
            Message::QrCancel { wait } => w.u64(*wait),
            Message::Readiness { mysql, redis } => w.u8(u8::from(*mysql) | u8::from(*redis) << 1),
            Message::Challenge(nonce) => w.fixed(&nonce.0),
            Message::Proof(proof) => w.fixed(&proof.0),
            Message::SignedUp(p)
            | Message::ProfileReply(p)
            | Message::NicknameUpdated(p)
            | Message::AvatarSet(p) => encode_profile(&mut w, p)?,
            Message::LoggedIn { token, profile } => {
                w.text(token.expose())?;
                encode_profile(&mut w, profile)?;
            }
            Message::QrCreate { user_agent, client } => {
                w.text(user_agent)?;
                w.client_addr(*client);
            }
            Message::QrWait { key, binding, seen, wait_ms, client } => {
                w.text(key.expose())?;
                w.text(binding.expose())?;
                w.u8(*seen as u8);
                w.u32(*wait_ms);
                w.client_addr(*client);
            }
            Message::QrScan { token, key } => {
                w.text(token.expose())?;
                w.text(key.expose())?;
            }
            Message::QrDecide { token, key, approve, client } => {
                w.text(token.expose())?;
                w.text(key.expose())?;
                w.u8(u8::from(*approve));
                w.client_addr(*client);
            }
            Message::QrCreated { key, binding, expires_in_secs } => {
                w.text(key.expose())?;
                w.text(binding.expose())?;
                w.u32(*expires_in_secs);
            }
            Message::QrStatus { state, nickname, avatar, token } => {
                w.u8(*state as u8);
                w.optional_text(nickname.as_deref())?;
                w.optional_text(avatar.as_deref())?;
                w.optional_text(token.as_ref().map(Secret::expose))?;
            }
            Message::QrDetails { state, user_agent, ip, created_unix } => {
                w.u8(*state as u8);
                w.text(user_agent)?;
                w.text(ip)?;
                w.u64(*created_unix);
            }
            Message::QrDecided { state } => w.u8(*state as u8),
            Message::Error(e) => {
                w.u16(e.code as u16);
                w.text(&e.message)?;
                w.u32(e.retry_after_secs);
            }
        }
        Ok(())
    }

    /// Decodes a whole body of the given type; every byte must be used.
    pub(crate) fn decode_body(kind: MessageType, body: &[u8]) -> Result<Message, Error> {
        let mut r = Reader::new(body);
        let message = match kind {
            MessageType::SignUp => Message::SignUp {
                username: r.text()?,
                password: Secret(r.text()?),
                nickname: r.optional_text()?,
                client: r.client_addr()?,
                key: IdempotencyKey(r.fixed()?),
            },
            MessageType::Login => Message::Login {
                username: r.text()?,
                password: Secret(r.text()?),
                client: r.client_addr()?,
                user_agent: r.optional_text()?,
            },
            MessageType::ListSessions => Message::ListSessions { token: Secret(r.text()?) },
            MessageType::RevokeSession => Message::RevokeSession { token: Secret(r.text()?), id: r.text()? },
            MessageType::RevokeOtherSessions => Message::RevokeOtherSessions { token: Secret(r.text()?) },
            MessageType::LoginHistory => Message::LoginHistory { token: Secret(r.text()?), limit: r.u16()? },
            MessageType::ChangePassword => Message::ChangePassword {
                token: Secret(r.text()?),
                password: Secret(r.text()?),
                new_password: Secret(r.text()?),
                client: r.client_addr()?,
            },
            MessageType::DeleteAccount => Message::DeleteAccount {
                token: Secret(r.text()?),
                password: Secret(r.text()?),
                confirm: r.text()?,
                client: r.client_addr()?,
            },
            MessageType::Sessions => Message::Sessions(crate::security::decode_sessions(&mut r)?),
            MessageType::SessionRevoked => Message::SessionRevoked,
            MessageType::OthersRevoked => Message::OthersRevoked { ended: r.u32()? },
            MessageType::History => Message::History(crate::security::decode_history(&mut r)?),
            MessageType::PasswordChanged => Message::PasswordChanged { ended: r.u32()? },
            MessageType::AccountDeleted => Message::AccountDeleted,
            MessageType::Logout => Message::Logout { token: Secret(r.text()?) },
            MessageType::GetProfile => {
                Message::GetProfile { token: Secret(r.text()?), username: r.optional_text()? }
            }
            MessageType::UpdateNickname => Message::UpdateNickname {
                token: Secret(r.text()?),
                username: r.optional_text()?,
                nickname: r.text()?,
            },
            MessageType::SetAvatar => Message::SetAvatar {
                token: Secret(r.text()?),
                username: r.optional_text()?,
                image: r.bytes()?,
            },
            MessageType::Ping => Message::Ping,
            MessageType::GetAvatar => Message::GetAvatar { name: r.text()? },
            MessageType::Avatar => Message::Avatar { content_type: r.text()?, image: r.bytes()? },
            MessageType::SignedUp => Message::SignedUp(decode_profile(&mut r)?),
            MessageType::LoggedIn => {
                Message::LoggedIn { token: Secret(r.text()?), profile: decode_profile(&mut r)? }
            }
            MessageType::LoggedOut => Message::LoggedOut,
            MessageType::ProfileReply => Message::ProfileReply(decode_profile(&mut r)?),
            MessageType::NicknameUpdated => Message::NicknameUpdated(decode_profile(&mut r)?),
            MessageType::AvatarSet => Message::AvatarSet(decode_profile(&mut r)?),
            MessageType::Pong => Message::Pong,
            MessageType::Challenge => Message::Challenge(Nonce(r.fixed()?)),
            MessageType::Proof => Message::Proof(Proof(r.fixed()?)),
            MessageType::Accepted => Message::Accepted,
            MessageType::CheckReady => Message::CheckReady,
            MessageType::Readiness => match r.u8()? {
                flags @ 0..=3 => Message::Readiness { mysql: flags & 1 != 0, redis: flags & 2 != 0 },
                other => return Err(Error::InvalidTag(other)),
            },
            MessageType::QrCreate => Message::QrCreate { user_agent: r.text()?, client: r.client_addr()? },
            MessageType::QrWait => Message::QrWait {
                key: Secret(r.text()?),
                binding: Secret(r.text()?),
                seen: r.qr_state()?,
                wait_ms: r.u32()?,
                client: r.client_addr()?,
            },
            MessageType::QrScan => Message::QrScan { token: Secret(r.text()?), key: Secret(r.text()?) },
            MessageType::QrDecide => Message::QrDecide {
                token: Secret(r.text()?),
                key: Secret(r.text()?),
                approve: match r.u8()? {
                    0 => false,
                    1 => true,
                    other => return Err(Error::InvalidTag(other)),
                },
                client: r.client_addr()?,
            },
            MessageType::QrCreated => Message::QrCreated {
                key: Secret(r.text()?),
                binding: Secret(r.text()?),
                expires_in_secs: r.u32()?,
            },
            MessageType::QrStatus => Message::QrStatus {
                state: r.qr_state()?,
                nickname: r.optional_text()?,
                avatar: r.optional_text()?,
                token: r.optional_text()?.map(Secret),
            },
            MessageType::QrDetails => Message::QrDetails {
                state: r.qr_state()?,
                user_agent: r.text()?,
                ip: r.text()?,
                created_unix: r.u64()?,
            },
            MessageType::QrDecided => Message::QrDecided { state: r.qr_state()? },
            MessageType::QrCancel => Message::QrCancel { wait: r.u64()? },
            MessageType::QrCancelled => Message::QrCancelled,
            MessageType::Error => {
                let raw = r.u16()?;
                let code = ErrorCode::from_u16(raw).ok_or(Error::UnknownErrorCode(raw))?;
                Message::Error(ErrorReply { code, message: r.text()?, retry_after_secs: r.u32()? })
            }
        };
        r.finish()?;
        Ok(message)
    }
}

fn encode_profile(w: &mut Writer<'_>, p: &Profile) -> Result<(), Error> {
    w.text(&p.username)?;
    w.text(&p.nickname)?;
    w.optional_text(p.avatar.as_deref())
}

fn decode_profile(r: &mut Reader<'_>) -> Result<Profile, Error> {
    Ok(Profile { username: r.text()?, nickname: r.text()?, avatar: r.optional_text()? })
}
