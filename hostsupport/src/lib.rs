//! What both servers need from the host outside the wire format (which is
//! `proto`'s, and only that): raising the open-file limit and sizing the
//! futex hash for a thread per connection at start-up, and the
//! calendar date of a Unix time for log lines and HTTP `Date` headers, and
//! the log line itself, in text or JSON, and the lock-free metric types
//! both expose to Prometheus.
//! Nothing here knows about MySQL, Redis or HTTP, so either server may use it.

pub mod calendar;
pub mod futex_hash;
pub mod log;
pub mod metrics;
pub mod open_files;
