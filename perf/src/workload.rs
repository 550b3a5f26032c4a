//! What the simulated users ask for: the bytes of each request, and what its
//! answer must show.
//!
//! Requests are written straight into the connection's send buffer. Where a
//! request never changes (a profile read with one session) its bytes are built
//! once; a random login is a couple of hundred bytes formatted in place.

use std::{fmt::Write as _, sync::Arc};

use rand::RngExt;

use crate::check::{Expect, Kind};

/// How seeded account `i` is named: templates in which `{i}` stands for the
/// account number in eight digits (the seeding tool's scheme by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// Username template, `user{i}` by default.
    pub username: String,
    /// Password template, `pass{i}` by default.
    pub password: String,
}

impl Naming {
    /// The username of account `i`.
    pub fn username(&self, i: u64) -> String {
        fill(&self.username, i)
    }

    /// The password of account `i`.
    pub fn password(&self, i: u64) -> String {
        fill(&self.password, i)
    }
}

fn fill(template: &str, i: u64) -> String {
    template.replace("{i}", &format!("{i:08}"))
}

/// A logged-in user whose token the profile and nickname scenarios use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user's name.
    pub username: String,
    /// The bearer token the login returned.
    pub token: String,
}

/// Which accounts log in.
#[derive(Debug, Clone)]
pub enum Users {
    /// Accounts `1..=n`, in turn.
    Fixed(u64),
    /// Uniformly random accounts out of `1..=n`.
    Random(u64),
    /// Exactly these accounts, request `k` logging in `list[k]` (session set-up).
    List(Arc<Vec<u64>>),
}

/// The requests of one run. Each thread of the engine owns one.
#[derive(Debug, Clone)]
pub enum Workload {
    /// Logins; keeps the tokens it receives when `keep_sessions` is set.
    Login {
        /// Who logs in.
        users: Users,
        /// How accounts are named.
        naming: Naming,
        /// `Host` header value.
        host: String,
        /// Sessions collected from successful logins, if wanted.
        sessions: Option<Vec<Session>>,
    },
    /// Profile reads, connection `c` using session `c mod n` (bytes prebuilt).
    Profile {
        /// One prebuilt request per session, with its username.
        requests: Arc<Vec<(Vec<u8>, String)>>,
    },
    /// Nickname changes, connection `c` using session `c mod n`.
    Nickname {
        /// The sessions.
        sessions: Arc<Vec<Session>>,
        /// `Host` header value.
        host: String,
    },
}

impl Workload {
    /// Profile reads over `sessions`.
    pub fn profile(sessions: &[Session], host: &str) -> Workload {
        let requests = sessions
            .iter()
            .map(|s| {
                let bytes = format!(
                    "GET /profile HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\
                     Authorization: Bearer {}\r\n\r\n",
                    s.token
                );
                (bytes.into_bytes(), s.username.clone())
            })
            .collect();
        Workload::Profile { requests: Arc::new(requests) }
    }

    /// Appends request number `seq`, sent on connection `conn`, to `out` and
    /// says what its answer must show.
    pub fn request(&mut self, seq: u64, conn: usize, out: &mut Vec<u8>) -> Expect {
        match self {
            Workload::Login { users, naming, host, .. } => {
                let account = match users {
                    Users::Fixed(n) => seq % (*n).max(1) + 1,
                    Users::Random(n) => rand::rng().random_range(1..=(*n).max(1)),
                    Users::List(list) => list.get(seq as usize).copied().unwrap_or(1),
                };
                let username = naming.username(account);
                let mut body = String::with_capacity(64);
                body.push_str("username=");
                push_form_encoded(&mut body, &username);
                body.push_str("&password=");
                push_form_encoded(&mut body, &naming.password(account));
                let _ = write!(
                    Sink(out),
                    "POST /login HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                Expect { kind: Kind::Login, username, nickname: None }
            }
            Workload::Profile { requests } => match requests.get(conn % requests.len().max(1)) {
                Some((bytes, username)) => {
                    out.extend_from_slice(bytes);
                    Expect { kind: Kind::Profile, username: username.clone(), nickname: None }
                }
                None => Expect { kind: Kind::Profile, username: String::new(), nickname: None },
            },
            Workload::Nickname { sessions, host } => {
                let Some(session) = sessions.get(conn % sessions.len().max(1)) else {
                    return Expect { kind: Kind::Nickname, username: String::new(), nickname: None };
                };
                // Any script and emoji, as users type them; unique per request.
                let nickname = format!("昵称 {seq} ✨");
                let body = format!(r#"{{"nickname":"{nickname}"}}"#);
                let _ = write!(
                    Sink(out),
                    "POST /updateNickName HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n\
                     Authorization: Bearer {}\r\nContent-Type: application/json; charset=utf-8\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    session.token,
                    body.len()
                );
                Expect { kind: Kind::Nickname, username: session.username.clone(), nickname: Some(nickname) }
            }
        }
    }

    /// Takes note of a successful answer (logins keep their token if asked).
    pub fn answered(&mut self, expect: Expect, token: Option<String>) {
        if let (Workload::Login { sessions: Some(sessions), .. }, Some(token)) = (self, token) {
            sessions.push(Session { username: expect.username, token });
        }
    }

    /// The sessions collected by a login workload.
    pub fn into_sessions(self) -> Vec<Session> {
        match self {
            Workload::Login { sessions: Some(sessions), .. } => sessions,
            _ => Vec::new(),
        }
    }
}

/// `fmt::Write` into a byte buffer, so requests are formatted without a
/// temporary string.
struct Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Appends `value` in `application/x-www-form-urlencoded` form.
fn push_form_encoded(out: &mut String, value: &str) {
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming { username: "user{i}".into(), password: "pass{i}".into() }
    }

    fn login(users: Users) -> Workload {
        Workload::Login { users, naming: naming(), host: "h:1".into(), sessions: Some(Vec::new()) }
    }

    #[test]
    fn naming_follows_the_seeder() {
        assert_eq!(naming().username(42), "user00000042");
        assert_eq!(naming().password(10_000_000), "pass10000000");
    }

    #[test]
    fn fixed_logins_cycle_through_the_users() {
        let mut w = login(Users::Fixed(200));
        let mut out = Vec::new();
        let first = w.request(0, 0, &mut out);
        assert_eq!(first.username, "user00000001");
        let text = String::from_utf8(out).unwrap();
        let body = "username=user00000001&password=pass00000001";
        assert!(text.starts_with("POST /login HTTP/1.1\r\nHost: h:1\r\nAccept: application/json\r\n"));
        assert!(text.ends_with(&format!("Content-Length: {}\r\n\r\n{body}", body.len())), "{text}");
        assert_eq!(w.request(199, 5, &mut Vec::new()).username, "user00000200");
        assert_eq!(w.request(200, 5, &mut Vec::new()).username, "user00000001");
    }

    #[test]
    fn random_logins_stay_in_range() {
        let mut w = login(Users::Random(3));
        for seq in 0..50 {
            let name = w.request(seq, 0, &mut Vec::new()).username;
            assert!(["user00000001", "user00000002", "user00000003"].contains(&name.as_str()));
        }
    }

    #[test]
    fn sessions_are_collected_from_logins() {
        let mut w = login(Users::List(Arc::new(vec![5, 9])));
        let e = w.request(1, 0, &mut Vec::new());
        assert_eq!(e.username, "user00000009");
        w.answered(e, Some("tok".into()));
        assert_eq!(w.into_sessions(), vec![Session { username: "user00000009".into(), token: "tok".into() }]);
    }

    #[test]
    fn profile_reads_use_the_connections_session() {
        let sessions = vec![
            Session { username: "a".into(), token: "t1".into() },
            Session { username: "b".into(), token: "t2".into() },
        ];
        let mut w = Workload::profile(&sessions, "h");
        let mut out = Vec::new();
        assert_eq!(w.request(0, 3, &mut out).username, "b");
        assert_eq!(
            out,
            b"GET /profile HTTP/1.1\r\nHost: h\r\nAccept: application/json\r\nAuthorization: Bearer t2\r\n\r\n"
        );
    }

    #[test]
    fn nickname_changes_send_json_with_a_unique_nickname() {
        let sessions = Arc::new(vec![Session { username: "a".into(), token: "t".into() }]);
        let mut w = Workload::Nickname { sessions, host: "h".into() };
        let mut out = Vec::new();
        let e = w.request(7, 0, &mut out);
        assert_eq!(e.nickname.as_deref(), Some("昵称 7 ✨"));
        let text = String::from_utf8(out).unwrap();
        let body = r#"{"nickname":"昵称 7 ✨"}"#;
        assert!(text.ends_with(&format!("Content-Length: {}\r\n\r\n{body}", body.len())), "{text}");
        assert!(text.contains("Authorization: Bearer t\r\n"));
    }

    #[test]
    fn form_values_are_encoded() {
        let mut s = String::new();
        push_form_encoded(&mut s, "a b&c=d/é");
        assert_eq!(s, "a+b%26c%3Dd%2F%C3%A9");
    }
}
