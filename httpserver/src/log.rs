//! httpserver's log: every line through [`hostsupport::log`] (text or JSON,
//! `--log-format`), with the request id of the request the thread is serving.
//!
//! A connection thread serves one request at a time, so the id lives in a
//! thread-local, set by [`server`](crate::server) when a request's head is
//! read and cleared when its response is written: every line written on that
//! thread meanwhile, the RPC client's included, names the request, and the
//! RPC pool sends the same id to tcpserver ([`current_request_id`]).

use std::cell::Cell;

use hostsupport::log::Event;
pub use hostsupport::log::Level;
use proto::TraceId;

thread_local! {
    static REQUEST_ID: Cell<TraceId> = const { Cell::new(TraceId::NONE) };
}

/// Makes `id` the request id of this thread's lines and RPCs.
pub fn set_request_id(id: TraceId) {
    REQUEST_ID.with(|cell| cell.set(id));
}

/// The request id this thread is serving ([`TraceId::NONE`] between requests).
pub fn current_request_id() -> TraceId {
    REQUEST_ID.with(Cell::get)
}

/// Writes a free-text line about the current request, if any.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line($crate::log::Level::Warn, format_args!($($arg)*))
    };
}

/// Writes one line; use the [`log!`](crate::log!) macro instead.
pub fn line(level: Level, args: std::fmt::Arguments<'_>) {
    let id = current_request_id();
    Event::new(level, "message", id.as_str()).write(args);
}

/// Writes the access line of one request: its route (never the raw path, which
/// a client chooses), method, status and time.
pub fn request(method: &str, route: &str, status: u16, micros: u128) {
    if !hostsupport::log::access_lines() {
        return;
    }
    let id = current_request_id();
    Event::new(Level::Info, "request", id.as_str())
        .field("method", method)
        .field("route", route)
        .field("status", status)
        .field("micros", micros)
        .write(format_args!("{method} {route} {status}"));
}
