//! Every way a request can fail, and the one function, [`Failure::problem`], that
//! turns a failure into what the client sees: HTTP status, JSON `code`, a sentence
//! a person can act on, and how long to wait before retrying.
//!
//! Failures come from three places: a rule that tcpserver enforces (its
//! [`ErrorCode`]s pass through unchanged as the JSON code, so API clients see one
//! numbering whichever server noticed), the transport to tcpserver
//! ([`RpcError`]), and HTTP itself ([`HttpError`], JSON codes 100 and up).

use std::fmt;

use proto::{ErrorCode, ErrorReply};

use crate::rpc_pool::RpcError;

/// Failures this server detects at the HTTP level. Each has a stable JSON code
/// (100 and up, clear of tcpserver's codes); never renumber one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum HttpError {
    /// No such path.
    NotFound = 100,
    /// The path exists but not for this method; the response carries `Allow`.
    MethodNotAllowed = 101,
    /// The request head is not valid HTTP/1.1 (syntax, Host, Content-Length value).
    MalformedRequest = 102,
    /// The request head exceeds `MAX_HEAD_LEN` or has more than `MAX_HEADERS` headers.
    HeadTooLarge = 103,
    /// The body exceeds the cap for its endpoint.
    BodyTooLarge = 104,
    /// The head or the body did not arrive in time.
    RequestTimeout = 105,
    /// A required input field is absent or empty.
    MissingField = 106,
    /// The body does not decode as its Content-Type says (bad percent-encoding,
    /// UTF-8, JSON or multipart), or a field is repeated or too long.
    MalformedBody = 107,
    /// The body's Content-Type is not one this endpoint reads.
    UnsupportedMediaType = 108,
    /// A state-changing request failed the CSRF check.
    CsrfRejected = 109,
    /// tcpserver refused the connection or could not be reached.
    BackendUnreachable = 110,
    /// tcpserver did not answer within the RPC timeout.
    BackendTimeout = 111,
    /// This server is at its connection cap.
    TooManyConnections = 112,
    /// Two different Content-Lengths, or Content-Length with Transfer-Encoding.
    ConflictingLength = 113,
    /// A Transfer-Encoding other than `chunked`.
    UnsupportedTransferEncoding = 114,
    /// The connection to tcpserver broke after a state-changing request was sent,
    /// so it may or may not have been applied; it is not retried automatically.
    BackendInterrupted = 115,
    /// Every RPC connection stayed busy for the whole timeout, or the memory
    /// budget for request bodies in flight is spent.
    Busy = 116,
    /// tcpserver answered something that is not a valid reply to the request.
    BadBackendReply = 117,
}

impl HttpError {
    /// Every variant, for documentation tests.
    pub const ALL: [HttpError; 18] = [
        HttpError::NotFound,
        HttpError::MethodNotAllowed,
        HttpError::MalformedRequest,
        HttpError::HeadTooLarge,
        HttpError::BodyTooLarge,
        HttpError::RequestTimeout,
        HttpError::MissingField,
        HttpError::MalformedBody,
        HttpError::UnsupportedMediaType,
        HttpError::CsrfRejected,
        HttpError::BackendUnreachable,
        HttpError::BackendTimeout,
        HttpError::TooManyConnections,
        HttpError::ConflictingLength,
        HttpError::UnsupportedTransferEncoding,
        HttpError::BackendInterrupted,
        HttpError::Busy,
        HttpError::BadBackendReply,
    ];
}

/// Why a request could not be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A rule was broken: tcpserver said so, or this server saw it first (a
    /// missing session, a picture over the size cap).
    Rejected(ErrorReply),
    /// An HTTP-level problem, with an optional detail for the message (the name
    /// of a missing field, say).
    Http(HttpError, Option<String>),
}

impl Failure {
    /// A failure with one of tcpserver's codes, detected here.
    pub fn rejected(code: ErrorCode, message: impl Into<String>) -> Failure {
        Failure::Rejected(ErrorReply { code, message: message.into(), retry_after_secs: 0 })
    }

    /// An HTTP-level failure with the default message.
    pub fn http(error: HttpError) -> Failure {
        Failure::Http(error, None)
    }

    /// An HTTP-level failure with a specific message.
    pub fn http_because(error: HttpError, detail: impl Into<String>) -> Failure {
        Failure::Http(error, Some(detail.into()))
    }

    /// The JSON code API clients see.
    pub fn code(&self) -> u16 {
        match self {
            Failure::Rejected(reply) => reply.code as u16,
            Failure::Http(error, _) => *error as u16,
        }
    }

    /// True when the client must log in (again).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, Failure::Rejected(ErrorReply { code: ErrorCode::Unauthenticated, .. }))
    }

    /// What the client is told: the single place that maps failures to statuses.
    pub fn problem(&self) -> Problem {
        match self {
            Failure::Rejected(reply) => {
                let (status, retry) = rejected_status(reply.code);
                let message = if reply.message.trim().is_empty() {
                    default_message(reply.code)
                } else {
                    &reply.message
                };
                let retry_after = retry.then_some(reply.retry_after_secs.max(1));
                Problem { status, code: reply.code as u16, message: message.to_owned(), retry_after }
            }
            Failure::Http(error, detail) => {
                let (status, retry_after, message) = http_status(*error);
                let message = detail.clone().unwrap_or_else(|| message.to_owned());
                Problem { status, code: *error as u16, message, retry_after }
            }
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problem = self.problem();
        write!(f, "{} (code {}): {}", problem.status, problem.code, problem.message)
    }
}

impl std::error::Error for Failure {}

impl From<HttpError> for Failure {
    fn from(error: HttpError) -> Failure {
        Failure::http(error)
    }
}

impl From<RpcError> for Failure {
    fn from(error: RpcError) -> Failure {
        let kind = match error {
            RpcError::Unreachable(_) | RpcError::Handshake(_) => HttpError::BackendUnreachable,
            RpcError::Timeout => HttpError::BackendTimeout,
            RpcError::Interrupted => HttpError::BackendInterrupted,
            RpcError::Busy => HttpError::Busy,
            RpcError::Protocol(_) | RpcError::UnexpectedReply => HttpError::BadBackendReply,
            // Only an over-long field gets here, and inputs are bounded before that.
            RpcError::Encode(_) => HttpError::BodyTooLarge,
            // `App::call_parked` answers this itself (status 499); were it to
            // come here, its client has gone and reads no answer anyway.
            RpcError::Abandoned => HttpError::BackendInterrupted,
        };
        Failure::http(kind)
    }
}

/// A failure as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The HTTP status.
    pub status: u16,
    /// The JSON `code`: tcpserver's [`ErrorCode`] or an [`HttpError`].
    pub code: u16,
    /// A sentence for a person.
    pub message: String,
    /// Seconds for the `Retry-After` header, when waiting helps.
    pub retry_after: Option<u32>,
}

/// Status for one of tcpserver's codes, and whether a `Retry-After` belongs with it.
fn rejected_status(code: ErrorCode) -> (u16, bool) {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::InvalidUsername
        | ErrorCode::InvalidPassword
        | ErrorCode::InvalidNickname => (400, false),
        ErrorCode::UsernameTaken => (409, false),
        ErrorCode::BadCredentials | ErrorCode::Unauthenticated => (401, false),
        ErrorCode::TooManyAttempts => (429, true),
        ErrorCode::Forbidden => (403, false),
        ErrorCode::UnsupportedImage => (415, false),
        ErrorCode::ImageTooLarge => (413, false),
        ErrorCode::Overloaded | ErrorCode::Unavailable => (503, true),
        ErrorCode::Internal | ErrorCode::UnexpectedMessage => (500, false),
        ErrorCode::InsufficientStorage => (507, true),
        ErrorCode::UnknownSession | ErrorCode::UnknownAvatar => (404, false),
        ErrorCode::PasswordUnchanged | ErrorCode::ConfirmationMismatch => (400, false),
        ErrorCode::QrExpired => (410, false),
        ErrorCode::QrUsed => (409, false),
        ErrorCode::QrNotYours => (403, false),
        ErrorCode::QrWaitsFull => (503, true),
    }
}

/// Used when tcpserver's reply carries no message of its own.
fn default_message(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest => "The request could not be understood.",
        ErrorCode::InvalidUsername => {
            "Usernames are 3 to 32 characters: letters, digits, dots, dashes and underscores."
        }
        ErrorCode::InvalidPassword => "Passwords are 8 to 128 characters long.",
        ErrorCode::InvalidNickname => "Nicknames are 1 to 64 characters, without control characters.",
        ErrorCode::UsernameTaken => "That username is taken. Please choose another one.",
        ErrorCode::BadCredentials => "Wrong username or password.",
        ErrorCode::TooManyAttempts => "Too many attempts. Please wait a moment and try again.",
        ErrorCode::Unauthenticated => "Please log in first.",
        ErrorCode::Forbidden => "You can only see and change your own profile.",
        ErrorCode::UnsupportedImage => {
            "That file is not a picture we can use: please choose a PNG, JPEG, GIF or WebP image."
        }
        ErrorCode::ImageTooLarge => "That picture is too large: the limit is 2 MiB.",
        ErrorCode::Overloaded => "The service is busy. Please try again in a moment.",
        ErrorCode::Unavailable => "The service is briefly unavailable. Please try again in a moment.",
        ErrorCode::Internal | ErrorCode::UnexpectedMessage => "Something went wrong on our side.",
        ErrorCode::InsufficientStorage => {
            "The server has no room for new pictures right now. Please try again later."
        }
        ErrorCode::UnknownSession => "That device is not signed in (any more).",
        ErrorCode::UnknownAvatar => "There is no such picture.",
        ErrorCode::PasswordUnchanged => "The new password must differ from the current one.",
        ErrorCode::ConfirmationMismatch => "To delete the account, type its username exactly as shown.",
        ErrorCode::QrExpired => "This log-in code has expired. Use the new code on the screen.",
        ErrorCode::QrUsed => "This log-in code has already been used.",
        ErrorCode::QrNotYours => "This log-in code belongs to another browser.",
        ErrorCode::QrWaitsFull => "Too many log-in codes are waiting right now. Please try again.",
    }
}

/// Status, `Retry-After` and default message for an HTTP-level failure.
fn http_status(error: HttpError) -> (u16, Option<u32>, &'static str) {
    match error {
        HttpError::NotFound => (404, None, "There is nothing at this address."),
        HttpError::MethodNotAllowed => (405, None, "This address does not accept that method."),
        HttpError::MalformedRequest => (400, None, "The request is not valid HTTP."),
        HttpError::HeadTooLarge => (431, None, "The request headers are too large."),
        HttpError::BodyTooLarge => (413, None, "The request body is too large."),
        HttpError::RequestTimeout => (408, None, "The request took too long to arrive."),
        HttpError::MissingField => (400, None, "A required field is missing."),
        HttpError::MalformedBody => (400, None, "The request body could not be decoded."),
        HttpError::UnsupportedMediaType => {
            (415, None, "Send form data (urlencoded or multipart) or JSON, as the Content-Type header says.")
        }
        HttpError::CsrfRejected => (
            403,
            None,
            "This form has expired or came from another site. Please reload the page and try again.",
        ),
        HttpError::BackendUnreachable => {
            (503, Some(1), "The service is briefly unavailable. Please try again in a moment.")
        }
        HttpError::BackendTimeout => (504, None, "The service took too long to answer. Please try again."),
        HttpError::TooManyConnections => (503, Some(1), "The server is busy. Please try again in a moment."),
        HttpError::ConflictingLength => (400, None, "The request states its length in conflicting ways."),
        HttpError::UnsupportedTransferEncoding => {
            (501, None, "Only the chunked transfer coding is supported.")
        }
        HttpError::BackendInterrupted => (
            503,
            Some(1),
            "The connection to the service broke; the change may not have been saved. Please check and try again.",
        ),
        HttpError::Busy => (503, Some(1), "The server is busy. Please try again in a moment."),
        HttpError::BadBackendReply => (502, None, "Something went wrong on our side."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_codes_keep_their_numbers_and_get_http_statuses() {
        let expect = [
            (ErrorCode::BadRequest, 400),
            (ErrorCode::InvalidUsername, 400),
            (ErrorCode::UsernameTaken, 409),
            (ErrorCode::BadCredentials, 401),
            (ErrorCode::TooManyAttempts, 429),
            (ErrorCode::Unauthenticated, 401),
            (ErrorCode::Forbidden, 403),
            (ErrorCode::UnsupportedImage, 415),
            (ErrorCode::ImageTooLarge, 413),
            (ErrorCode::Overloaded, 503),
            (ErrorCode::Unavailable, 503),
            (ErrorCode::Internal, 500),
            (ErrorCode::InsufficientStorage, 507),
            (ErrorCode::UnknownSession, 404),
            (ErrorCode::PasswordUnchanged, 400),
            (ErrorCode::ConfirmationMismatch, 400),
            (ErrorCode::QrExpired, 410),
            (ErrorCode::QrUsed, 409),
            (ErrorCode::QrNotYours, 403),
            (ErrorCode::QrWaitsFull, 503),
        ];
        for (code, status) in expect {
            let problem = Failure::rejected(code, "").problem();
            assert_eq!((problem.status, problem.code), (status, code as u16), "{code:?}");
            assert!(!problem.message.is_empty());
        }
    }

    #[test]
    fn waiting_helps_only_where_retry_after_is_sent() {
        let throttled = Failure::Rejected(ErrorReply {
            code: ErrorCode::TooManyAttempts,
            message: "Slow down.".into(),
            retry_after_secs: 30,
        });
        assert_eq!(throttled.problem().retry_after, Some(30));
        assert_eq!(throttled.problem().message, "Slow down.");
        assert_eq!(Failure::rejected(ErrorCode::Overloaded, "").problem().retry_after, Some(1));
        assert_eq!(Failure::rejected(ErrorCode::BadCredentials, "").problem().retry_after, None);
        let full = Failure::Rejected(ErrorReply {
            code: ErrorCode::InsufficientStorage,
            message: String::new(),
            retry_after_secs: 600,
        });
        assert_eq!(full.problem().retry_after, Some(600));
        assert_eq!(Failure::from(RpcError::Busy).problem().retry_after, Some(1));
    }

    #[test]
    fn http_codes_are_distinct_and_clear_of_backend_codes() {
        let mut seen = std::collections::HashSet::new();
        for error in HttpError::ALL {
            let code = error as u16;
            assert!(code >= 100);
            assert!(seen.insert(code), "{error:?} reuses {code}");
            assert!(ErrorCode::from_u16(code).is_none());
        }
    }

    #[test]
    fn transport_failures_map_to_gateway_statuses() {
        let status = |e: RpcError| Failure::from(e).problem().status;
        assert_eq!(status(RpcError::Timeout), 504);
        assert_eq!(status(RpcError::Interrupted), 503);
        assert_eq!(status(RpcError::UnexpectedReply), 502);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(status(RpcError::Unreachable(refused)), 503);
    }
}
