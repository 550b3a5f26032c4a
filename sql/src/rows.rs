//! The text that `LOAD DATA LOCAL INFILE` reads: one line per row, fields
//! separated by tabs, in MariaDB's default format (`FIELDS TERMINATED BY '\t'
//! ESCAPED BY '\\' LINES TERMINATED BY '\n'`).
//!
//! Rows are formatted straight into a reusable buffer that is handed to the
//! connection in large pieces, so ten million rows cost no allocation each.

use std::io::{self, Write};

use crate::accounts::{self, USERNAME_PREFIX};

/// Bytes gathered before each hand-off to the connection: large enough that the
/// per-write overhead vanishes, small enough to stay in the CPU cache.
const FEED_BUFFER: usize = 64 * 1024;

/// Writes the `users` rows `(id, username, nickname)` of accounts
/// `first..first + count`.
///
/// # Errors
///
/// Whatever `out` returns.
pub fn write_users(out: &mut dyn Write, first: u64, count: u64) -> io::Result<()> {
    let mut buf = Vec::with_capacity(FEED_BUFFER + 256);
    let mut nickname = String::with_capacity(64);
    for id in first..first + count {
        nickname.clear();
        accounts::push_nickname(&mut nickname, id);
        write!(buf, "{id}\t{USERNAME_PREFIX}{id:08}\t")?;
        push_escaped(&mut buf, nickname.as_bytes());
        buf.push(b'\n');
        if buf.len() >= FEED_BUFFER {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}

/// Writes the `credentials` rows `(user_id, username, password_hash)` of
/// accounts `first..`, one per stored hash in `hashes`.
///
/// # Errors
///
/// Whatever `out` returns.
pub fn write_credentials(out: &mut dyn Write, first: u64, hashes: &[String]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(FEED_BUFFER + 256);
    for (id, hash) in (first..).zip(hashes) {
        write!(buf, "{id}\t{USERNAME_PREFIX}{id:08}\t")?;
        push_escaped(&mut buf, hash.as_bytes());
        buf.push(b'\n');
        if buf.len() >= FEED_BUFFER {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)
}

/// Appends `field` with the bytes that the default format gives a meaning
/// (tab, newline, backslash, NUL) escaped, so any text arrives as it was.
fn push_escaped(buf: &mut Vec<u8>, field: &[u8]) {
    for &b in field {
        match b {
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            0 => buf.extend_from_slice(b"\\0"),
            _ => buf.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_rows_are_tab_separated_lines_in_id_order() {
        let mut out = Vec::new();
        write_users(&mut out, 2, 2).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "2\tuser00000002\tUser 2\n3\tuser00000003\tユーザー3\n");
    }

    #[test]
    fn credential_rows_pair_each_hash_with_its_account() {
        let mut out = Vec::new();
        write_credentials(&mut out, 9, &["$h1".to_owned(), "$h2".to_owned()]).unwrap();
        assert_eq!(out, b"9\tuser00000009\t$h1\n10\tuser00000010\t$h2\n");
    }

    #[test]
    fn special_bytes_are_escaped() {
        let mut buf = Vec::new();
        push_escaped(&mut buf, b"a\tb\nc\\d\0e");
        assert_eq!(buf, b"a\\tb\\nc\\\\d\\0e");
    }

    #[test]
    fn large_batches_arrive_whole() {
        let mut out = Vec::new();
        write_users(&mut out, 1, 20_000).unwrap();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 20_000);
        assert!(out.ends_with("\tUser 20000\n".as_bytes()));
    }
}
