//! The log line both servers write: one event per line on standard error, as
//! text (`[<time>] <message> key=value ... request_id=<id>`) or, with
//! `--log-format json`, one JSON object a line:
//!
//! ```text
//! {"time":"2026-12-01T09:30:00.123Z","level":"info","request_id":"abc","event":"request","message":"log-in ok","fields":{"op":"log-in","status":"ok"}}
//! ```
//!
//! `request_id` is `null` for events that belong to no request. There is no log
//! crate: the servers log little per request, and a line written with one
//! `write_all` on a locked stderr never interleaves with another thread's.
//! Callers must never pass a password, a token or a secret: messages and fields
//! carry identifiers and causes only. Every string is escaped, so no value can
//! start a line or an object of its own.

use std::fmt::{self, Display, Write as _};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::calendar::civil_from_days;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `[<time>] <message> key=value ...`, for people.
    Text,
    /// One JSON object a line, for log shippers.
    Json,
}

impl Format {
    /// `text` or `json`.
    pub fn parse(value: &str) -> Option<Format> {
        match value {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Normal operation: start, stop, one line per request.
    Info,
    /// Something failed and the server carries on.
    Warn,
    /// Something failed that an operator should look at.
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// The format chosen at start (0 text, 1 json); set once by [`set_format`].
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Whether a line is written for every request answered (`--access-log`).
/// On by default, so that one request can be followed through both servers'
/// logs by its id; off spares the busiest servers one formatted line and one
/// `write` per request (warnings and errors are written either way).
static ACCESS_LINES: AtomicBool = AtomicBool::new(true);

/// Turns the per-request lines on or off.
pub fn set_access_lines(on: bool) {
    ACCESS_LINES.store(on, Ordering::Relaxed);
}

/// Whether the per-request lines are on.
pub fn access_lines() -> bool {
    ACCESS_LINES.load(Ordering::Relaxed)
}

/// Chooses the format of every later line.
pub fn set_format(format: Format) {
    FORMAT.store(u8::from(format == Format::Json), Ordering::Relaxed);
}

fn format() -> Format {
    if FORMAT.load(Ordering::Relaxed) == 1 { Format::Json } else { Format::Text }
}

/// One event: what to write about it. Build with [`Event::new`], add fields,
/// then [`Event::write`].
#[derive(Debug)]
pub struct Event<'a> {
    level: Level,
    name: &'a str,
    request_id: &'a str,
    fields: Vec<(&'a str, String)>,
}

impl<'a> Event<'a> {
    /// An event named `name` (a short fixed word: `request`, `start`,
    /// `connection`, ...), for the request `request_id` (empty for none).
    pub fn new(level: Level, name: &'a str, request_id: &'a str) -> Event<'a> {
        Event { level, name, request_id, fields: Vec::new() }
    }

    /// Adds a field. Its value must not be a secret.
    pub fn field(mut self, key: &'a str, value: impl Display) -> Event<'a> {
        self.fields.push((key, value.to_string()));
        self
    }

    /// Writes the line with `message` as its human text.
    pub fn write(self, message: fmt::Arguments<'_>) {
        let line = self.render(format(), &Timestamp::now().to_string(), &message.to_string());
        // Nothing sensible can be done if stderr is gone.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn render(&self, format: Format, time: &str, message: &str) -> String {
        let mut out = String::with_capacity(128 + message.len());
        // Writing to a String cannot fail.
        match format {
            Format::Text => {
                let _ = write!(out, "[{time}] {}", Printable(message));
                for (key, value) in &self.fields {
                    let _ = write!(out, " {key}={}", Printable(value));
                }
                if !self.request_id.is_empty() {
                    let _ = write!(out, " request_id={}", Printable(self.request_id));
                }
            }
            Format::Json => {
                let _ =
                    write!(out, "{{\"time\":\"{time}\",\"level\":\"{}\",\"request_id\":", self.level.name());
                match self.request_id {
                    "" => out.push_str("null"),
                    id => json_string(&mut out, id),
                }
                out.push_str(",\"event\":");
                json_string(&mut out, self.name);
                out.push_str(",\"message\":");
                json_string(&mut out, message);
                out.push_str(",\"fields\":{");
                for (i, (key, value)) in self.fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_string(&mut out, key);
                    out.push(':');
                    json_string(&mut out, value);
                }
                out.push('}');
                out.push('}');
            }
        }
        out.push('\n');
        out
    }
}

/// Writes a free-text line (an event named `message`, at level info).
pub fn line(args: fmt::Arguments<'_>) {
    Event::new(Level::Info, "message", "").write(args);
}

/// Text with control characters shown as `\u{..}`, so a value cannot break
/// its line in the text format.
struct Printable<'a>(&'a str);

impl Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() { write!(f, "{}", c.escape_unicode())? } else { f.write_char(c)? }
        }
        Ok(())
    }
}

/// Appends `text` as a JSON string literal (RFC 8259 escaping).
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
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

impl Display for Timestamp {
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

    #[test]
    fn both_formats_hold_the_request_id_and_escape_every_value() {
        let event =
            Event::new(Level::Warn, "request", "abc-1").field("route", "/login").field("why", "a\"b\nc");
        let text = event.render(Format::Text, "T", "log-in\nfailed");
        assert_eq!(text, "[T] log-in\\u{a}failed route=/login why=a\"b\\u{a}c request_id=abc-1\n");
        let json = event.render(Format::Json, "T", "log-in");
        assert_eq!(
            json,
            "{\"time\":\"T\",\"level\":\"warn\",\"request_id\":\"abc-1\",\"event\":\"request\",\
             \"message\":\"log-in\",\"fields\":{\"route\":\"/login\",\"why\":\"a\\\"b\\nc\"}}\n"
        );
        let none = Event::new(Level::Info, "start", "").render(Format::Json, "T", "\u{1}");
        assert!(none.contains("\"request_id\":null") && none.contains("\"message\":\"\\u0001\""), "{none}");
    }
}
