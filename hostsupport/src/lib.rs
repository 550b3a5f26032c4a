//! What both servers need from the host outside the wire format (which is
//! `proto`'s, and only that): raising the open-file limit at start-up, and the
//! calendar date of a Unix time for log lines and HTTP `Date` headers.
//! Nothing here knows about MySQL, Redis or HTTP, so either server may use it.

pub mod calendar;
pub mod open_files;
