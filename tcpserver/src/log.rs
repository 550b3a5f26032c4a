//! Logging: one timestamped line per event on standard error.
//!
//! There is no log crate: the server logs little (start, stop, dependency
//! outages, broken peers, internal errors), and a line written with one
//! `write_all` on a locked stderr never interleaves with another thread's.
//! Callers must never pass a password, a token or the pepper: messages carry
//! identifiers (token numbers, peers, request ids) and causes only.

use std::fmt;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use hostsupport::calendar::civil_from_days;

/// Writes `[<UTC time>] <message>` to standard error.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}

/// Writes one line; use the [`log!`](crate::log!) macro instead.
pub fn line(args: fmt::Arguments<'_>) {
    let text = format!("[{}] {}\n", Timestamp::now(), args);
    // Nothing sensible can be done if stderr is gone.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A UTC wall-clock time printed as `2024-05-01T12:34:56.789Z`.
struct Timestamp {
    secs: u64,
    millis: u32,
}

impl Timestamp {
    fn now() -> Timestamp {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp { secs: since.as_secs(), millis: since.subsec_millis() }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = (self.secs / 86_400) as i64;
        let rem = self.secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60,
            self.millis
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601_utc() {
        assert_eq!(Timestamp { secs: 0, millis: 0 }.to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp { secs: 951_782_400, millis: 5 }.to_string(), "2000-02-29T00:00:00.005Z");
        assert_eq!(Timestamp { secs: 1_714_566_896, millis: 789 }.to_string(), "2024-05-01T12:34:56.789Z");
    }
}
