//! The seed corpus: small valid inputs of every kind for each target.
//!
//! `cargo run --bin make-corpus` writes them to `corpus/<target>/`. The image
//! seeds are real files made by ImageMagick and cwebp (see the README) and are
//! committed as they are; the others are built here from the same types the
//! servers use, so they stay valid when a format changes and the corpus is
//! regenerated.

use std::net::IpAddr;

use proto::handshake::{NONCE_LEN, PROOF_LEN};
use proto::{
    ErrorCode, ErrorReply, Frame, IDEMPOTENCY_KEY_LEN, IdempotencyKey, Message, Nonce, Profile, Proof,
    QrState, Secret, TraceId,
};

/// A named seed: file name and bytes.
pub type Seed = (String, Vec<u8>);

/// One frame of every message type (both shapes of each optional field, the
/// handshake's frames included), and two pipelined frames.
pub fn frames() -> Vec<Seed> {
    let v4: IpAddr = IpAddr::from([192, 0, 2, 7]);
    let v6: IpAddr = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
    let profile = |avatar: Option<&str>| Profile {
        username: "bruce_lee".into(),
        nickname: "李小龍 🐉".into(),
        avatar: avatar.map(str::to_owned),
    };
    let token = || Secret::new("a".repeat(43));
    let mut messages = vec![
        (
            "signup",
            Message::SignUp {
                username: "alice".into(),
                password: "correct horse".into(),
                nickname: Some("Alice ä".into()),
                client: Some(v4),
                key: IdempotencyKey([0x5a; IDEMPOTENCY_KEY_LEN]),
            },
        ),
        (
            "signup-bare",
            Message::SignUp {
                username: "bob".into(),
                password: "hunter22".into(),
                nickname: None,
                client: None,
                key: IdempotencyKey(std::array::from_fn(|i| i as u8)),
            },
        ),
        (
            "login",
            Message::Login {
                username: "alice".into(),
                password: "correct horse".into(),
                client: Some(v6),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0".into()),
            },
        ),
        ("logout", Message::Logout { token: token() }),
        ("get-profile", Message::GetProfile { token: token(), username: None }),
        ("get-profile-of", Message::GetProfile { token: token(), username: Some("bob".into()) }),
        (
            "update-nickname",
            Message::UpdateNickname { token: token(), username: None, nickname: "Ali 🐉".into() },
        ),
        (
            "set-avatar",
            Message::SetAvatar {
                token: token(),
                username: Some("alice".into()),
                image: b"\x89PNG\r\n\x1a\n".to_vec(),
            },
        ),
        ("ping", Message::Ping),
        ("signed-up", Message::SignedUp(profile(None))),
        ("logged-in", Message::LoggedIn { token: token(), profile: profile(Some("ab.png")) }),
        ("logged-out", Message::LoggedOut),
        ("profile", Message::ProfileReply(profile(Some("cd.webp")))),
        ("nickname-updated", Message::NicknameUpdated(profile(None))),
        ("avatar-set", Message::AvatarSet(profile(Some("ef.gif")))),
        ("pong", Message::Pong),
    ];
    for code in [ErrorCode::BadRequest, ErrorCode::TooManyAttempts, ErrorCode::UnexpectedMessage] {
        let reply = ErrorReply { code, message: "why".into(), retry_after_secs: 3 };
        messages.push(("error", Message::Error(reply)));
    }
    // The handshake's frames, last so that the other seeds keep their names.
    messages.push(("challenge", Message::Challenge(Nonce([0x5c; NONCE_LEN]))));
    messages.push(("proof", Message::Proof(Proof([0xa3; PROOF_LEN]))));
    messages.push(("accepted", Message::Accepted));
    // Readiness (protocol 3), after the handshake's for the same reason.
    messages.push(("check-ready", Message::CheckReady));
    messages.push(("readiness", Message::Readiness { mysql: true, redis: false }));
    // Account security (0x10-0x15, 0x90-0x95), after the handshake's for the same reason.
    messages.push(("list-sessions", Message::ListSessions { token: token() }));
    messages.push(("revoke-session", Message::RevokeSession { token: token(), id: "0f".repeat(16) }));
    messages.push(("revoke-others", Message::RevokeOtherSessions { token: token() }));
    messages.push(("login-history", Message::LoginHistory { token: token(), limit: 100 }));
    messages.push((
        "change-password",
        Message::ChangePassword {
            token: token(),
            password: "correct horse".into(),
            new_password: "battery staple".into(),
            client: Some(v4),
        },
    ));
    messages.push((
        "delete-account",
        Message::DeleteAccount {
            token: token(),
            password: "correct horse".into(),
            confirm: "alice".into(),
            client: Some(v6),
        },
    ));
    messages.push((
        "sessions",
        Message::Sessions(vec![proto::DeviceSession {
            id: "0f".repeat(16),
            browser: "Firefox".into(),
            os: "Linux".into(),
            ip: "192.0.2.7".into(),
            created: 1_700_000_000,
            last_used: 1_700_000_060,
            current: true,
        }]),
    ));
    messages.push((
        "history",
        Message::History(vec![proto::LoginEntry {
            time: 1_700_000_000,
            ip: "2001:db8::1".into(),
            browser: "Chrome".into(),
            os: "Windows".into(),
            method: "password".into(),
            outcome: "success".into(),
            new_device: true,
            suspicious: false,
            session: "0f".repeat(16),
        }]),
    ));
    messages.push(("password-changed", Message::PasswordChanged { ended: 2 }));
    // Scan-to-log-in, after those for the same reason.
    let key = || Secret::new("0123456789abcdef".repeat(4));
    messages.push((
        "qr-create",
        Message::QrCreate { user_agent: "Mozilla/5.0 (X11; Linux x86_64)".into(), client: Some(v4) },
    ));
    messages.push((
        "qr-wait",
        Message::QrWait {
            key: key(),
            binding: key(),
            seen: QrState::Scanned,
            wait_ms: 25_000,
            client: Some(v6),
        },
    ));
    messages.push(("qr-scan", Message::QrScan { token: token(), key: key() }));
    messages
        .push(("qr-decide", Message::QrDecide { token: token(), key: key(), approve: true, client: None }));
    messages.push(("qr-created", Message::QrCreated { key: key(), binding: key(), expires_in_secs: 120 }));
    messages.push((
        "qr-status",
        Message::QrStatus {
            state: QrState::Confirmed,
            nickname: Some("李小龍 🐉".into()),
            avatar: Some("ab.png".into()),
            token: Some(token()),
        },
    ));
    messages.push((
        "qr-details",
        Message::QrDetails {
            state: QrState::Scanned,
            user_agent: "UA".into(),
            ip: "192.0.2.7".into(),
            created_unix: 1_796_117_400,
        },
    ));
    messages.push(("qr-decided", Message::QrDecided { state: QrState::Denied }));
    // Pictures through the RPC (protocol 4), after those for the same reason.
    let picture = format!("{}.png", "0f".repeat(32));
    messages.push(("get-avatar", Message::GetAvatar { name: picture }));
    messages.push((
        "avatar",
        Message::Avatar { content_type: "image/png".into(), image: b"\x89PNG\r\n\x1a\n".to_vec() },
    ));
    // A wait's client gone (protocol 6), last for the same reason.
    messages.push(("qr-cancel", Message::QrCancel { wait: 7 }));
    messages.push(("qr-cancelled", Message::QrCancelled));
    let mut seeds: Vec<Seed> = messages
        .into_iter()
        .enumerate()
        .map(|(i, (name, message))| (format!("{i:02}-{name}.bin"), encode(i as u64 + 1, message)))
        .collect();
    let mut pipelined = encode(1, Message::Ping);
    pipelined.extend(encode(2, Message::Logout { token: token() }));
    seeds.push(("pipelined.bin".into(), pipelined));
    let mut traced = Vec::new();
    let login = Message::Login {
        username: "alice".into(),
        password: "correct horse".into(),
        client: Some(v4),
        user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0".into()),
    };
    let trace = TraceId::parse("0af7651916cd43dd8448eb211c80319c").unwrap_or_default();
    match (Frame { request_id: 7, message: login }).encode_traced(trace, &mut traced) {
        Ok(()) => seeds.push(("traced-login.bin".into(), traced)),
        Err(e) => panic!("seed frame does not encode: {e}"),
    }
    seeds
}

fn encode(request_id: u64, message: Message) -> Vec<u8> {
    let mut out = Vec::new();
    match (Frame { request_id, message }).encode(&mut out) {
        Ok(()) => out,
        Err(e) => panic!("seed frame does not encode: {e}"),
    }
}

const BOUNDARY: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";

/// A browser's upload form body: CSRF token, username and a picture.
fn upload_body(image: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nq1w2e3r4t5\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"me.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Content-Type line, newline, body: the `multipart` target's input format.
pub fn multipart() -> Vec<Seed> {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\r\n--not-the-boundary\r\n";
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let with = |content_type: &str, body: &[u8]| [content_type.as_bytes(), b"\n", body].concat();
    vec![
        ("upload.txt".into(), with(&content_type, &upload_body(png))),
        (
            "quoted-boundary.txt".into(),
            with(
                "multipart/form-data; charset=utf-8; boundary=\"a b:c\"",
                b"preamble\r\n--a b:c  \r\nContent-Disposition: form-data; name=nick\r\n\r\n\
                  \xe6\x9d\x8e\r\n--a b:c--epilogue",
            ),
        ),
        (
            "empty-file.txt".into(),
            with(
                "multipart/form-data; boundary=x",
                b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"\"\r\n\
                  Content-Type: application/octet-stream\r\n\r\n\r\n--x--\r\n",
            ),
        ),
        ("no-parts.txt".into(), with("multipart/form-data; boundary=x", b"--x--\r\n")),
    ]
}

/// Raw requests as browsers, curl and the API clients send them, some pipelined.
pub fn http() -> Vec<Seed> {
    let form = "username=alice&password=correct+horse&nickname=Ali%20%F0%9F%90%89&csrf=q1w2e3r4t5";
    let json = r#"{"username":"alice","password":"correct horse","nickname":null}"#;
    let upload = upload_body(b"\x89PNG\r\n\x1a\n");
    let mut upload_request = format!(
        "POST /uploadProfilePic HTTP/1.1\r\nHost: localhost:1088\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\n\
         Cookie: um_session={}; um_csrf=q1w2e3r4t5\r\nOrigin: http://localhost:1088\r\n\r\n",
        upload.len(),
        "a".repeat(43)
    )
    .into_bytes();
    upload_request.extend_from_slice(&upload);
    let text = |s: String| s.into_bytes();
    vec![
        ("get.txt".into(), text("GET /login HTTP/1.1\r\nHost: localhost:1088\r\nAccept: text/html\r\n\r\n".into())),
        (
            "get-query.txt".into(),
            text("GET /profile?username=bob%2E&x=%E2%9C%93 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".into()),
        ),
        (
            "post-form.txt".into(),
            text(format!(
                "POST /signup HTTP/1.1\r\nHost: localhost:1088\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
                 Cookie: um_csrf=q1w2e3r4t5\r\nSec-Fetch-Site: same-origin\r\n\r\n{form}",
                form.len()
            )),
        ),
        (
            "post-json.txt".into(),
            text(format!(
                "POST /api/login HTTP/1.1\r\nHost: localhost:1088\r\nAccept: application/json\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            )),
        ),
        (
            "post-chunked.txt".into(),
            text(
                "POST /api/nickname HTTP/1.1\r\nHost: localhost:1088\r\nAuthorization: Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5;ext=1\r\nnickn\r\n9\r\name=Ali+B\r\n0\r\nX-Trailer: y\r\n\r\n"
                    .into(),
            ),
        ),
        ("upload.txt".into(), upload_request),
        (
            "raw-image.txt".into(),
            text(
                "POST /uploadProfilePic HTTP/1.1\r\nHost: a\r\nContent-Type: image/gif\r\n\
                 Expect: 100-continue\r\nContent-Length: 6\r\n\r\nGIF89a"
                    .into(),
            ),
        ),
        (
            "pipelined.txt".into(),
            text(
                "GET / HTTP/1.1\r\nHost: a\r\n\r\nHEAD /static/app.css HTTP/1.1\r\nHost: a\r\n\r\n\
                 POST /logout HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .into(),
            ),
        ),
        (
            "too-large.txt".into(),
            text(format!("POST /login HTTP/1.1\r\nHost: a\r\nContent-Length: 17000\r\n\r\n{}", "x".repeat(17000))),
        ),
    ]
}

/// Chunked bodies for the `chunked` target: a cut-count byte, the cut points,
/// then the body (see [`crate::chunked::run`]).
pub fn chunked() -> Vec<Seed> {
    let with_cuts = |cuts: &[u8], body: &[u8]| [&[cuts.len() as u8], cuts, body].concat();
    vec![
        (
            "wiki.txt".into(),
            with_cuts(&[3, 9, 17], b"4\r\nWiki\r\n7;ext=1\r\npedia i\r\nB\r\nn \r\nchunks.\r\n0\r\n\r\nNEXT"),
        ),
        ("trailers.txt".into(), with_cuts(&[1], b"1\r\na\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n")),
        ("empty.txt".into(), with_cuts(&[], b"0\r\n\r\n")),
        (
            "uppercase-hex.txt".into(),
            with_cuts(&[2, 2, 5], b"1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n"),
        ),
    ]
}

/// PROXY protocol v2 headers as HAProxy's `send-proxy-v2` writes them (TCP
/// over IPv4 and IPv6, a health check's `LOCAL`, one with TLVs after the
/// addresses, one from a Unix socket), each followed by the start of the
/// request behind it, which the parser must leave alone.
pub fn proxy() -> Vec<Seed> {
    const SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
    let header = |command_family: [u8; 2], payload: &[u8]| {
        let mut bytes = SIGNATURE.to_vec();
        bytes.extend_from_slice(&command_family);
        bytes.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        bytes
    };
    let v4 = [203, 0, 113, 9, 192, 0, 2, 1, 0x9c, 0x40, 0x04, 0x40];
    let mut v6 = Vec::new();
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
    v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend_from_slice(&[0x01, 0xbb, 0x04, 0x40]);
    let mut tlvs = v4.to_vec();
    tlvs.extend_from_slice(&[0x05, 0, 8]); // PP2_TYPE_UNIQUE_ID
    tlvs.extend_from_slice(b"req-0001");
    tlvs.extend_from_slice(&[0x04, 0, 2, 0, 0]); // PP2_TYPE_NOOP
    let mut unix = vec![0u8; 216];
    unix[..9].copy_from_slice(b"/run/a.sk");
    unix[108..117].copy_from_slice(b"/run/b.sk");
    vec![
        ("tcp4.bin".into(), header([0x21, 0x11], &v4)),
        ("tcp6.bin".into(), header([0x21, 0x21], &v6)),
        ("local.bin".into(), header([0x20, 0x00], &[])),
        ("tcp4-tlvs.bin".into(), header([0x21, 0x11], &tlvs)),
        ("unix.bin".into(), header([0x21, 0x31], &unix)),
    ]
}
