//! Logging: one timestamped line per event on standard error, as text or JSON
//! (`--log-format`), written by [`hostsupport::log`], which httpserver shares.
//!
//! The server logs little: start, stop, dependency outages, broken peers,
//! internal errors, and one line per request a worker answers (event
//! `request`, with the request id httpserver sent, [`proto::TraceId`]).
//! Callers must never pass a password, a token or the pepper: messages carry
//! identifiers (token numbers, peers, request ids) and causes only.

pub use hostsupport::log::{Event, Format, Level, set_format};

/// Writes a free-text line: `[<UTC time>] <message>` (or its JSON object).
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}

/// Writes one line; use the [`log!`](crate::log!) macro instead.
pub fn line(args: std::fmt::Arguments<'_>) {
    hostsupport::log::line(args);
}
