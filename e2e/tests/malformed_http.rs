//! Malformed HTTP, one table: bad request lines, bad header bytes, bad body
//! lengths, bad chunked encoding, bad percent-encoding, invalid UTF-8, fields
//! out of bounds, control and text-direction characters in nicknames, empty
//! fields. Each row is sent as raw bytes on its own connection, as an API
//! client, and must get the status and JSON `code` that the README's error
//! table gives, a message that says what was wrong, and write nothing: no
//! account appears (checked in MariaDB, since that is where an account would
//! be) and the nickname read back through the API is unchanged. A well-formed
//! control row for each endpoint shows that the same checks see a write.

mod util;

use mysql::prelude::Queryable;
use util::{Stack, TestEnv, raw};

/// A valid password that needs no escaping in a form or in JSON.
const PASSWORD: &str = "correct-horse-battery";

/// The endpoint a row targets, and so what it would write if wrongly accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `POST /signUp`: an account.
    SignUp,
    /// `POST /updateNickName` with a bearer token: the session user's nickname.
    Nickname,
}

/// How a row's request is written. Placeholders: `{path}` the target's path,
/// `{std}` the usual header lines (Host, Accept, a urlencoded Content-Type, and
/// for nicknames the bearer token), `{len}` the body's length, `{form}` a well-formed urlencoded body for
/// the target, `{user}` the row's username, `{pw}` a valid password, `{x:N}` N
/// letters `x`, `{dragons:N}` N percent-encoded 🐉, `{headers:N}` N header lines.
#[derive(Debug, Clone, Copy)]
enum Request {
    /// A well-formed POST with this Content-Type and body.
    Post(&'static str, &'static [u8]),
    /// This head, verbatim (it ends with the blank line), then this body.
    Raw(&'static str, &'static [u8]),
}

/// One malformed request and the answer it must get.
#[derive(Debug, Clone, Copy)]
struct Case {
    what: &'static str,
    target: Target,
    send: Request,
    status: u16,
    code: i64,
    /// A phrase the message must contain (case-insensitive): what was wrong.
    says: &'static str,
}

const fn case(
    what: &'static str,
    target: Target,
    send: Request,
    status: u16,
    code: i64,
    says: &'static str,
) -> Case {
    Case { what, target, send, status, code, says }
}

use Request::{Post, Raw};
use Target::{Nickname, SignUp};

const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";
const MULTIPART: &str = "multipart/form-data; boundary=XY";

/// The table. Statuses and codes are the README's: 400/102 malformed request,
/// 400/113 conflicting lengths, 501/114 transfer coding, 413/104 body too large,
/// 431/103 head too large, 405/101 method, 415/108 media type, 400/107 body
/// that does not decode, 400/106 missing field, 400/2, 3, 4 invalid username,
/// password, nickname.
const CASES: &[Case] = &[
    // The request line.
    case("no HTTP version", SignUp, Raw("POST {path}\r\n{std}Content-Length: {len}\r\n\r\n", b"{form}"), 400, 102, "request line"),
    case("HTTP/2.0 in the request line", SignUp, Raw("POST {path} HTTP/2.0\r\n{std}Content-Length: {len}\r\n\r\n", b"{form}"), 400, 102, "HTTP/1.0 or HTTP/1.1"),
    case("a target without its leading slash", SignUp, Raw("POST signUp HTTP/1.1\r\n{std}Content-Length: {len}\r\n\r\n", b"{form}"), 400, 102, "must start with /"),
    case("an absolute-form target", SignUp, Raw("POST http://x/signUp HTTP/1.1\r\n{std}Content-Length: {len}\r\n\r\n", b"{form}"), 400, 102, "must start with /"),
    case("a lowercase method", SignUp, Raw("post {path} HTTP/1.1\r\n{std}Content-Length: {len}\r\n\r\n", b"{form}"), 405, 101, "method"),
    case("binary instead of a request line", SignUp, Raw("\u{16}\u{3}\u{1}\u{2}\0\u{1}\0\u{1}\r\n\r\n", b"{form}"), 400, 102, "request line"),
    // Header bytes.
    case("a control byte in a header name", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}X-\u{1}: 1\r\nContent-Length: {len}\r\n\r\n", b"{form}"), 400, 102, "header line"),
    case("NUL in a header value", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}X-Note: a\0b\r\nContent-Length: {len}\r\n\r\n", b"{form}"), 400, 102, "control character"),
    case("a space before a header's colon", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Content-Length : {len}\r\n\r\n", b"{form}"), 400, 102, "header line"),
    case("a folded header line", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}X-A: 1\r\n folded\r\nContent-Length: {len}\r\n\r\n", b"{form}"), 400, 102, "header line"),
    case("a header line without a colon", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}X-A\r\nContent-Length: {len}\r\n\r\n", b"{form}"), 400, 102, "header line"),
    case("no Host in HTTP/1.1", SignUp, Raw(concat!("POST {path} HTTP/1.1\r\nAccept: application/json\r\n", "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len}\r\n\r\n"), b"{form}"), 400, 102, "Host"),
    case("two Hosts", SignUp, Raw("POST {path} HTTP/1.1\r\nHost: a\r\n{std}Content-Length: {len}\r\n\r\n", b"{form}"), 400, 102, "Host"),
    case("a head over 16 KiB", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}X-Filler: {x:20000}\r\nContent-Length: {len}\r\n\r\n", b"{form}"), 431, 103, "too large"),
    case("more than 64 headers", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}{headers:70}Content-Length: {len}\r\n\r\n", b"{form}"), 431, 103, "too large"),
    // Body lengths.
    case("a negative Content-Length", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Content-Length: -1\r\n\r\n", b"{form}"), 400, 102, "Content-Length is not a number"),
    case("a Content-Length with a plus sign", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Content-Length: +{len}\r\n\r\n", b"{form}"), 400, 102, "Content-Length is not a number"),
    case("a Content-Length in hex", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Content-Length: 0x40\r\n\r\n", b"{form}"), 400, 102, "Content-Length is not a number"),
    case("a huge Content-Length", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Content-Length: 1000000000000000\r\n\r\n", b"{form}"), 413, 104, "too large"),
    case("a Content-Length past 64 bits", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Content-Length: 99999999999999999999999\r\n\r\n", b"{form}"), 413, 104, "too large"),
    case("two different Content-Lengths", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Content-Length: {len}\r\nContent-Length: 3\r\n\r\n", b"{form}"), 400, 113, "conflicting"),
    case("Content-Length and chunked together", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", b"{form}"), 400, 113, "conflicting"),
    case("a transfer coding other than chunked", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Transfer-Encoding: gzip, chunked\r\n\r\n", b"{form}"), 501, 114, "chunked"),
    case("chunked in HTTP/1.0", SignUp, Raw("POST {path} HTTP/1.0\r\n{std}Transfer-Encoding: chunked\r\n\r\n", b"{form}"), 400, 102, "Transfer-Encoding"),
    // Chunked bodies.
    case("a chunk size that is not hex", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Transfer-Encoding: chunked\r\n\r\n", b"zz\r\n{form}\r\n0\r\n\r\n"), 400, 102, "chunk size"),
    case("a chunk size line ending in a bare LF", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Transfer-Encoding: chunked\r\n\r\n", b"4\nuser\r\n0\r\n\r\n"), 400, 102, "chunk size"),
    case("chunk data not followed by CRLF", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Transfer-Encoding: chunked\r\n\r\n", b"4\r\nusername=\r\n0\r\n\r\n"), 400, 102, "CRLF"),
    case("a chunk larger than the body cap", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Transfer-Encoding: chunked\r\n\r\n", b"100000\r\n{form}"), 413, 104, "too large"),
    case("a chunk size past 64 bits", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Transfer-Encoding: chunked\r\n\r\n", b"fffffffffffffffffffffff\r\n{form}"), 413, 104, "too large"),
    case("a chunk extension over 1 KiB", SignUp, Raw("POST {path} HTTP/1.1\r\n{std}Transfer-Encoding: chunked\r\n\r\n", b"4;{x:2000}\r\nuser\r\n0\r\n\r\n"), 400, 102, "too long"),
    // Body encodings.
    case("'%' followed by non-hex", SignUp, Post(FORM, b"username={user}&password=%zz{pw}"), 400, 107, "two hex digits"),
    case("'%' cut short at the end", SignUp, Post(FORM, b"username={user}&password={pw}%4"), 400, 107, "two hex digits"),
    case("a percent-encoded lone UTF-8 lead byte", SignUp, Post(FORM, b"username={user}&password={pw}&nickname=%C3"), 400, 107, "UTF-8"),
    case("raw invalid UTF-8 in a form", SignUp, Post(FORM, b"username={user}&password={pw}&nickname=\xff\xfe"), 400, 107, "UTF-8"),
    case("invalid UTF-8 in JSON", SignUp, Post(JSON, b"{\"username\":\"{user}\",\"password\":\"{pw}\",\"nickname\":\"\xc3\x28\"}"), 400, 107, "UTF-8"),
    case("a lone surrogate escape in JSON", SignUp, Post(JSON, b"{\"username\":\"{user}\",\"password\":\"{pw}\",\"nickname\":\"\\ud800\"}"), 400, 107, "not valid JSON"),
    case("a JSON field that is a number", SignUp, Post(JSON, b"{\"username\":\"{user}\",\"password\":12345678}"), 400, 107, "must be a string"),
    case("invalid UTF-8 in a multipart field", SignUp, Post(MULTIPART, b"--XY\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n{user}\xff\r\n--XY\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{pw}\r\n--XY--\r\n"), 400, 107, "UTF-8"),
    case("multipart without a boundary", SignUp, Post("multipart/form-data", b"--XY\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\n{user}\r\n--XY--\r\n"), 400, 107, "boundary"),
    case("a body of plain text", SignUp, Post("text/plain", b"username={user}&password={pw}"), 415, 108, "Content-Type"),
    case("a field given twice", SignUp, Post(FORM, b"username={user}&password={pw}&username={user}x"), 400, 107, "twice"),
    case("a field over 1 KiB", SignUp, Post(FORM, b"username={user}&password={pw}&nickname={x:1100}"), 400, 107, "too long"),
    // Field rules: usernames.
    case("a username of 40 characters", SignUp, Post(FORM, b"username={user}{x:27}&password={pw}"), 400, 2, "3 to 32 characters"),
    case("a username with a space", SignUp, Post(FORM, b"username={user}+x&password={pw}"), 400, 2, "may only use"),
    case("a username with a non-ASCII letter", SignUp, Post(FORM, b"username={user}%C3%BC&password={pw}"), 400, 2, "may only use"),
    case("a username with NUL", SignUp, Post(FORM, b"username={user}%00&password={pw}"), 400, 2, "may only use"),
    case("a username with a slash", SignUp, Post(JSON, b"{\"username\":\"{user}/..\",\"password\":\"{pw}\"}"), 400, 2, "may only use"),
    // Passwords.
    case("a password of 129 bytes", SignUp, Post(FORM, b"username={user}&password={x:129}"), 400, 3, "8 to 128 bytes"),
    case("a password of 7 bytes", SignUp, Post(FORM, b"username={user}&password=1234567"), 400, 3, "8 to 128 bytes"),
    case("a password with a newline", SignUp, Post(FORM, b"username={user}&password={pw}%0A"), 400, 3, "control"),
    case("a password with a tab", SignUp, Post(JSON, b"{\"username\":\"{user}\",\"password\":\"{pw}\\t\"}"), 400, 3, "control"),
    // Nicknames at sign-up.
    case("a nickname of 65 characters", SignUp, Post(FORM, b"username={user}&password={pw}&nickname={x:65}"), 400, 4, "1 to 64 characters"),
    case("a nickname with BEL", SignUp, Post(FORM, b"username={user}&password={pw}&nickname=a%07b"), 400, 4, "control"),
    case("a nickname with U+202E RIGHT-TO-LEFT OVERRIDE", SignUp, Post(FORM, b"username={user}&password={pw}&nickname=evil%E2%80%AEgnp.exe"), 400, 4, "text-direction"),
    case("a nickname with U+2066 LEFT-TO-RIGHT ISOLATE", SignUp, Post(JSON, b"{\"username\":\"{user}\",\"password\":\"{pw}\",\"nickname\":\"a\\u2066b\"}"), 400, 4, "text-direction"),
    case("a nickname with C1 control U+0085", SignUp, Post(FORM, b"username={user}&password={pw}&nickname=a%C2%85b"), 400, 4, "control"),
    case("a nickname with DEL", SignUp, Post(FORM, b"username={user}&password={pw}&nickname=a%7Fb"), 400, 4, "control"),
    case("a nickname of spaces only", SignUp, Post(FORM, b"username={user}&password={pw}&nickname=+++"), 400, 4, "1 to 64 characters"),
    // Empty fields.
    case("an empty username", SignUp, Post(FORM, b"username=&password={pw}"), 400, 106, "username"),
    case("an empty password", SignUp, Post(JSON, b"{\"username\":\"{user}\",\"password\":\"\"}"), 400, 106, "password"),
    case("an empty body", SignUp, Post(FORM, b""), 400, 106, "username"),
    // Nickname changes.
    case("U+202E RIGHT-TO-LEFT OVERRIDE", Nickname, Post(FORM, b"nickname=admin%E2%80%AE"), 400, 4, "text-direction"),
    case("U+202C POP DIRECTIONAL FORMATTING", Nickname, Post(FORM, b"nickname=a%E2%80%ACb"), 400, 4, "text-direction"),
    case("U+2068 FIRST STRONG ISOLATE", Nickname, Post(JSON, b"{\"nickname\":\"\\u2068x\"}"), 400, 4, "text-direction"),
    case("a newline", Nickname, Post(JSON, b"{\"nickname\":\"two\\nlines\"}"), 400, 4, "control"),
    case("NUL", Nickname, Post(FORM, b"nickname=a%00b"), 400, 4, "control"),
    case("ESC, as in a terminal escape", Nickname, Post(FORM, b"nickname=%1B%5B31mred"), 400, 4, "control"),
    case("65 emoji", Nickname, Post(FORM, b"nickname={dragons:65}"), 400, 4, "1 to 64 characters"),
    case("empty", Nickname, Post(FORM, b"nickname="), 400, 106, "nickname"),
    case("spaces only", Nickname, Post(JSON, b"{\"nickname\":\"   \"}"), 400, 4, "1 to 64 characters"),
    case("bad percent-encoding", Nickname, Post(FORM, b"nickname=%G1"), 400, 107, "two hex digits"),
    case("invalid UTF-8 in JSON", Nickname, Post(JSON, b"{\"nickname\":\"\xed\xa0\x80\"}"), 400, 107, "UTF-8"),
    case("invalid UTF-8 in multipart", Nickname, Post(MULTIPART, b"--XY\r\nContent-Disposition: form-data; name=\"nickname\"\r\n\r\n\xc0\xaf\r\n--XY--\r\n"), 400, 107, "UTF-8"),
    case("a negative Content-Length", Nickname, Raw("POST {path} HTTP/1.1\r\n{std}Content-Length: -5\r\n\r\n", b"{form}"), 400, 102, "Content-Length is not a number"),
    case("a bad chunk", Nickname, Raw("POST {path} HTTP/1.1\r\n{std}Transfer-Encoding: chunked\r\n\r\n", b"g\r\n{form}\r\n0\r\n\r\n"), 400, 102, "chunk size"),
];

/// Well-formed rows: the checks that find nothing written above must see these writes.
const CONTROLS: &[Case] = &[
    case(
        "a well-formed raw sign-up",
        SignUp,
        Raw("POST {path} HTTP/1.1\r\n{std}Content-Length: {len}\r\n\r\n", b"{form}"),
        201,
        0,
        "ok",
    ),
    case(
        "a well-formed sign-up",
        SignUp,
        Post(FORM, b"username={user}&password={pw}&nickname=%E6%9D%8E%E5%B0%8F%E9%BE%8D+%F0%9F%90%89"),
        201,
        0,
        "ok",
    ),
    case("a well-formed nickname of 64 emoji", Nickname, Post(FORM, b"nickname={dragons:64}"), 200, 0, "ok"),
];

/// Expands the placeholders of [`Request`] in `template`.
fn expand(template: &[u8], vars: &[(&str, String)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len());
    let mut rest = template;
    'scan: while let Some((&first, tail)) = rest.split_first() {
        if first == b'{' {
            for (name, value) in vars {
                if let Some(after) = tail.strip_prefix(name.as_bytes()).and_then(|t| t.strip_prefix(b"}")) {
                    out.extend_from_slice(value.as_bytes());
                    rest = after;
                    continue 'scan;
                }
            }
            for (name, unit) in [("x:", "x"), ("dragons:", "%F0%9F%90%89"), ("headers:", "")] {
                let Some(after) = tail.strip_prefix(name.as_bytes()) else { continue };
                let end = after.iter().position(|&b| b == b'}').expect("closing brace");
                let n: usize = std::str::from_utf8(&after[..end]).unwrap().parse().unwrap();
                for i in 0..n {
                    if unit.is_empty() {
                        out.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
                    } else {
                        out.extend_from_slice(unit.as_bytes());
                    }
                }
                rest = &after[end + 1..];
                continue 'scan;
            }
        }
        out.push(first);
        rest = tail;
    }
    out
}

/// The bytes of a row's request, for `user` (the row's own username) and `token`.
fn request_bytes(case: &Case, user: &str, token: &str) -> Vec<u8> {
    let (path, auth, form) = match case.target {
        SignUp => ("/signUp", String::new(), format!("username={user}&password={PASSWORD}")),
        Nickname => {
            ("/updateNickName", format!("Authorization: Bearer {token}\r\n"), "nickname=Mallory".into())
        }
    };
    let vars = |len: usize| {
        vec![
            ("path", path.to_owned()),
            ("std", format!("Host: x\r\nAccept: application/json\r\nContent-Type: {FORM}\r\n{auth}")),
            ("len", len.to_string()),
            ("form", form.clone()),
            ("user", user.to_owned()),
            ("pw", PASSWORD.to_owned()),
        ]
    };
    let (head, body) = match case.send {
        Request::Raw(head, body) => {
            let body = expand(body, &vars(0));
            (expand(head.as_bytes(), &vars(body.len())), body)
        }
        Request::Post(content_type, body) => {
            let body = expand(body, &vars(0));
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n{auth}\
                 Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            (head.into_bytes(), body)
        }
    };
    [head, body].concat()
}

/// Accounts whose username starts with `prefix`, read from MariaDB.
fn accounts_starting_with(db: &mut mysql::Conn, prefix: &str) -> u64 {
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    db.exec_first("SELECT COUNT(*) FROM users WHERE username LIKE ?", (pattern,))
        .expect("count accounts")
        .unwrap_or(0)
}

/// The session user's nickname, read through the API.
fn nickname_of(stack: &Stack, token: &str) -> String {
    let auth = format!("Bearer {token}");
    let reply = stack.client().request("GET", "/profile", &[("Authorization", &auth)], b"");
    assert_eq!(reply.status, 200, "profile: {}", reply.text());
    reply.json()["data"]["nickname"].as_str().expect("nickname").to_owned()
}

/// What is wrong with `reply` as the answer to `case`, if anything.
fn problems(case: &Case, reply: &util::Reply) -> Vec<String> {
    let mut problems = Vec::new();
    if reply.status != case.status {
        problems.push(format!("status {} instead of {}", reply.status, case.status));
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
        problems.push("the body is not JSON".into());
        return problems;
    };
    if body["code"].as_i64() != Some(case.code) {
        problems.push(format!("code {} instead of {}", body["code"], case.code));
    }
    let message = body["message"].as_str().unwrap_or_default();
    if !message.to_lowercase().contains(&case.says.to_lowercase()) {
        problems.push(format!("message {message:?} does not say {:?}", case.says));
    }
    problems
}

#[test]
fn each_malformed_request_gets_its_documented_error_and_writes_nothing() {
    let stack = Stack::start();
    let (_, token) = stack.user_with_token("nick", PASSWORD);
    let opts = mysql::Opts::from_url(&TestEnv::load().mysql_url).expect("MySQL URL");
    let mut db = mysql::Conn::new(opts).expect("connect to MariaDB");
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().chain(CONTROLS).enumerate() {
        let user = stack.username(&format!("c{i:03}"));
        let nickname_before = nickname_of(&stack, &token);
        let reply = raw(stack.addr, &request_bytes(case, &user, &token));
        let mut found = problems(case, &reply);
        let wrote = match case.target {
            SignUp => accounts_starting_with(&mut db, &user) > 0,
            Nickname => nickname_of(&stack, &token) != nickname_before,
        };
        if wrote != (200..300).contains(&case.status) {
            found.push(if wrote { "it wrote".into() } else { "the control wrote nothing".into() });
        }
        if !found.is_empty() {
            failures.push(format!(
                "{:?}, {}: {}; got {}",
                case.target,
                case.what,
                found.join(", "),
                reply.text()
            ));
        }
    }
    let rows = CASES.len() + CONTROLS.len();
    assert!(failures.is_empty(), "{} of {rows} rows failed:\n{}", failures.len(), failures.join("\n"));
}
