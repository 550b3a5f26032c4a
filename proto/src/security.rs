//! The account-security replies' items: one signed-in device, one log-in attempt.
//!
//! They travel as lists (`u16` count, then the items' fields in struct order).
//! Each list is bounded by what tcpserver sends: at most
//! [`MAX_LISTED_SESSIONS`] sessions and [`MAX_HISTORY`] attempts, so a reply
//! stays far below [`crate::MAX_BODY_LEN`] and a decoder refuses a longer one.

use crate::error::Error;
use crate::wire::{Reader, Writer};

/// Most sessions a device list holds: the per-account session cap
/// (tcpserver's `--max-sessions-per-user`, 32 by default) with room to raise it.
pub const MAX_LISTED_SESSIONS: usize = 256;

/// Most log-in attempts one history reply holds: what `GET /loginHistory`
/// promises (the newest 100).
pub const MAX_HISTORY: usize = 100;

/// Longest User-Agent passed on, in bytes. Real ones are under 200; the parser
/// needs only the product tokens near the front, and the bound keeps a
/// hostile header from filling history rows.
pub const MAX_USER_AGENT_LEN: usize = 512;

/// One signed-in session of an account, as its device list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSession {
    /// The session's public id: a digest that names it but is not its token
    /// and cannot be turned into one.
    pub id: String,
    /// Browser read from the User-Agent it logged in with ("Firefox"), or "Unknown".
    pub browser: String,
    /// Operating system read from that User-Agent ("Linux"), or "Unknown".
    pub os: String,
    /// The address it logged in from ("" if unknown).
    pub ip: String,
    /// When it was opened, Unix seconds.
    pub created: u64,
    /// When it was last used, Unix seconds.
    pub last_used: u64,
    /// Whether it is the session that asked.
    pub current: bool,
}

/// One log-in attempt of an account's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginEntry {
    /// When, Unix seconds.
    pub time: u64,
    /// From which address ("" if unknown).
    pub ip: String,
    /// Browser read from the User-Agent.
    pub browser: String,
    /// Operating system read from the User-Agent.
    pub os: String,
    /// How: "password" (and "qr" once QR log-in records its own).
    pub method: String,
    /// "success", "wrong_password" or "throttled".
    pub outcome: String,
    /// A success from a browser, OS and network the account had not used for 90 days.
    pub new_device: bool,
    /// A new-network success after several failures.
    pub suspicious: bool,
    /// The public id of the session a success opened ("" for failures).
    pub session: String,
}

/// Appends a list of sessions.
pub(crate) fn encode_sessions(w: &mut Writer<'_>, sessions: &[DeviceSession]) -> Result<(), Error> {
    w.u16(list_len(sessions.len(), MAX_LISTED_SESSIONS)?);
    for s in sessions {
        w.text(&s.id)?;
        w.text(&s.browser)?;
        w.text(&s.os)?;
        w.text(&s.ip)?;
        w.u64(s.created);
        w.u64(s.last_used);
        w.u8(u8::from(s.current));
    }
    Ok(())
}

/// Reads a list of sessions.
pub(crate) fn decode_sessions(r: &mut Reader<'_>) -> Result<Vec<DeviceSession>, Error> {
    let n = checked_len(r.u16()?, MAX_LISTED_SESSIONS)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(DeviceSession {
            id: r.text()?,
            browser: r.text()?,
            os: r.text()?,
            ip: r.text()?,
            created: r.u64()?,
            last_used: r.u64()?,
            current: r.flag()?,
        });
    }
    Ok(out)
}

/// Appends a list of log-in attempts.
pub(crate) fn encode_history(w: &mut Writer<'_>, logins: &[LoginEntry]) -> Result<(), Error> {
    w.u16(list_len(logins.len(), MAX_HISTORY)?);
    for l in logins {
        w.u64(l.time);
        w.text(&l.ip)?;
        w.text(&l.browser)?;
        w.text(&l.os)?;
        w.text(&l.method)?;
        w.text(&l.outcome)?;
        w.u8(u8::from(l.new_device));
        w.u8(u8::from(l.suspicious));
        w.text(&l.session)?;
    }
    Ok(())
}

/// Reads a list of log-in attempts.
pub(crate) fn decode_history(r: &mut Reader<'_>) -> Result<Vec<LoginEntry>, Error> {
    let n = checked_len(r.u16()?, MAX_HISTORY)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(LoginEntry {
            time: r.u64()?,
            ip: r.text()?,
            browser: r.text()?,
            os: r.text()?,
            method: r.text()?,
            outcome: r.text()?,
            new_device: r.flag()?,
            suspicious: r.flag()?,
            session: r.text()?,
        });
    }
    Ok(out)
}

fn list_len(len: usize, max: usize) -> Result<u16, Error> {
    match u16::try_from(len) {
        Ok(n) if len <= max => Ok(n),
        _ => Err(Error::ListTooLong { len, max }),
    }
}

fn checked_len(len: u16, max: usize) -> Result<usize, Error> {
    let len = usize::from(len);
    if len > max {
        return Err(Error::ListTooLong { len, max });
    }
    Ok(len)
}
