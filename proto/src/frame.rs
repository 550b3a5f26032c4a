//! A whole frame: header plus decoded message, and the two operations every peer
//! needs, "is there a complete frame at the front of my buffer?" and "append this
//! frame to my write buffer".
//!
//! Outside the handshake, a frame's body starts with its [`TraceId`]
//! ([`crate::trace`]); [`Frame::decode_traced`] and [`Frame::encode_traced`]
//! carry it, [`Frame::decode`] and [`Frame::encode`] are the same for callers
//! that need none (an empty trace is sent).

use crate::error::Error;
use crate::header::{HEADER_LEN, Header, MAX_BODY_LEN};
use crate::message::{Message, MessageType};
use crate::trace::TraceId;

/// One message with the request id that ties a reply to its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Chosen by the client, echoed by the server.
    pub request_id: u64,
    /// The message carried.
    pub message: Message,
}

impl Frame {
    /// Decodes the frame at the start of `buf`, if it is complete.
    ///
    /// Returns `Ok(None)` until the header and the whole body it announces are
    /// buffered, then the frame and the number of bytes it used; the caller drops
    /// that many bytes from the front of its buffer. The header is validated as
    /// soon as it is complete, so a bad frame is reported without waiting for its
    /// body.
    ///
    /// # Errors
    ///
    /// Any [`Error`] but `FieldTooLong`: the bytes are not a valid frame, and the
    /// stream cannot be resynchronised, so the caller should close the connection.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, Error> {
        Ok(Frame::decode_traced(buf)?.map(|(frame, _, used)| (frame, used)))
    }

    /// As [`Frame::decode`], and also returns the frame's trace id
    /// ([`TraceId::NONE`] for a handshake frame, or when the sender gave none).
    ///
    /// # Errors
    ///
    /// As [`Frame::decode`]; [`Error::BadTrace`] for a trace id outside its bounds.
    pub fn decode_traced(buf: &[u8]) -> Result<Option<(Frame, TraceId, usize)>, Error> {
        let Some(header) = Header::decode(buf)? else {
            return Ok(None);
        };
        let total = HEADER_LEN + header.body_len as usize;
        let Some(body) = buf.get(HEADER_LEN..total) else {
            return Ok(None);
        };
        let (trace, fields) = match carries_trace(header.message_type) {
            true => TraceId::decode(body)?,
            false => (TraceId::NONE, body),
        };
        let message = Message::decode_body(header.message_type, fields)?;
        Ok(Some((Frame { request_id: header.request_id, message }, trace, total)))
    }

    /// Appends the encoded frame to `out`.
    ///
    /// # Errors
    ///
    /// [`Error::FieldTooLong`] if a text field exceeds 65,535 bytes, or
    /// [`Error::FrameTooLarge`] if the body would exceed [`MAX_BODY_LEN`]. On error
    /// `out` is left as it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.encode_traced(TraceId::NONE, out)
    }

    /// As [`Frame::encode`], with `trace` in the body (dropped for a handshake
    /// frame, which has no room for one).
    ///
    /// # Errors
    ///
    /// As [`Frame::encode`].
    pub fn encode_traced(&self, trace: TraceId, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        let message_type = self.message.message_type();
        let header = Header { message_type, request_id: self.request_id, body_len: 0 };
        header.encode(out);
        if carries_trace(message_type) {
            trace.encode(out);
        }
        let result = self.message.encode_body(out).and_then(|()| {
            let body_len = out.len() - start - HEADER_LEN;
            if body_len > MAX_BODY_LEN {
                return Err(Error::FrameTooLarge { len: body_len, max: MAX_BODY_LEN });
            }
            // body_len <= MAX_BODY_LEN, which fits in u32.
            out[start + 12..start + HEADER_LEN].copy_from_slice(&(body_len as u32).to_be_bytes());
            Ok(())
        });
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

/// Every frame but the handshake's starts its body with a trace id.
fn carries_trace(message_type: MessageType) -> bool {
    !message_type.is_handshake()
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use rand::{Rng, RngExt, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::handshake::{NONCE_LEN, Nonce, PROOF_LEN, Proof};
    use crate::message::{ErrorCode, ErrorReply, Profile, Secret};
    use crate::{IDEMPOTENCY_KEY_LEN, IdempotencyKey, MAGIC, MAX_IMAGE_LEN, MessageType, QrState, VERSION};

    fn profile(avatar: Option<&str>) -> Profile {
        Profile {
            username: "bruce_lee".into(),
            nickname: "李小龍 🐉".into(),
            avatar: avatar.map(str::to_owned),
        }
    }

    /// One of every message, with fields that exercise each encoding.
    fn every_message() -> Vec<Message> {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let mut all = vec![
            Message::SignUp {
                username: "u".into(),
                password: "p ä".into(),
                nickname: Some("n 🐉".into()),
                client: Some(v4),
                key: IdempotencyKey([0xa5; IDEMPOTENCY_KEY_LEN]),
            },
            Message::SignUp {
                username: "u".into(),
                password: "p".into(),
                nickname: None,
                client: None,
                key: IdempotencyKey([0; IDEMPOTENCY_KEY_LEN]),
            },
            Message::Login {
                username: "u".into(),
                password: "pw".into(),
                client: Some(v6),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0".into()),
            },
            Message::Login { username: "u".into(), password: "pw".into(), client: None, user_agent: None },
            Message::ListSessions { token: "t".into() },
            Message::RevokeSession { token: "t".into(), id: "0123abcd".into() },
            Message::RevokeOtherSessions { token: "t".into() },
            Message::LoginHistory { token: "t".into(), limit: 100 },
            Message::ChangePassword {
                token: "t".into(),
                password: "old ä".into(),
                new_password: "new 🐉".into(),
                client: Some(v4),
            },
            Message::DeleteAccount {
                token: "t".into(),
                password: "pw".into(),
                confirm: "u".into(),
                client: None,
            },
            Message::Sessions(vec![
                crate::DeviceSession {
                    id: "ab".into(),
                    browser: "Firefox".into(),
                    os: "Linux".into(),
                    ip: "192.0.2.7".into(),
                    created: 1_700_000_000,
                    last_used: 1_700_000_060,
                    current: true,
                },
                crate::DeviceSession {
                    id: "cd".into(),
                    browser: "Unknown".into(),
                    os: "Unknown".into(),
                    ip: String::new(),
                    created: 0,
                    last_used: u64::MAX,
                    current: false,
                },
            ]),
            Message::Sessions(Vec::new()),
            Message::SessionRevoked,
            Message::OthersRevoked { ended: 3 },
            Message::History(vec![crate::LoginEntry {
                time: 1_700_000_000,
                ip: "2001:db8::1".into(),
                browser: "Chrome".into(),
                os: "Windows".into(),
                method: "password".into(),
                outcome: "success".into(),
                new_device: true,
                suspicious: false,
                session: "ab".into(),
            }]),
            Message::PasswordChanged { ended: 0 },
            Message::AccountDeleted,
            Message::Logout { token: "t".into() },
            Message::GetProfile { token: "t".into(), username: None },
            Message::GetProfile { token: "t".into(), username: Some("u".into()) },
            Message::UpdateNickname { token: "t".into(), username: None, nickname: "李小龍 🐉".into() },
            Message::SetAvatar {
                token: "t".into(),
                username: Some("u".into()),
                image: vec![0x89, b'P', b'N', b'G'],
            },
            Message::SetAvatar { token: "t".into(), username: None, image: vec![7; MAX_IMAGE_LEN] },
            Message::Ping,
            Message::SignedUp(profile(None)),
            Message::LoggedIn { token: Secret::new("a".repeat(64)), profile: profile(Some("ab.png")) },
            Message::LoggedOut,
            Message::ProfileReply(profile(Some("cd.webp"))),
            Message::NicknameUpdated(profile(None)),
            Message::AvatarSet(profile(Some("ef.gif"))),
            Message::Pong,
            Message::Challenge(Nonce([0xa5; NONCE_LEN])),
            Message::Proof(Proof([0x5a; PROOF_LEN])),
            Message::Accepted,
            Message::CheckReady,
            Message::Readiness { mysql: true, redis: false },
            Message::Readiness { mysql: false, redis: true },
            Message::QrCreate { user_agent: "Mozilla/5.0 (X11; Linux x86_64)".into(), client: Some(v4) },
            Message::QrWait {
                key: "k".into(),
                binding: "b".into(),
                seen: QrState::Scanned,
                wait_ms: 25_000,
                client: Some(v6),
            },
            Message::QrScan { token: "t".into(), key: "k".into() },
            Message::QrDecide { token: "t".into(), key: "k".into(), approve: true, client: None },
            Message::QrDecide { token: "t".into(), key: "k".into(), approve: false, client: Some(v4) },
            Message::QrCreated { key: "k".into(), binding: "b".into(), expires_in_secs: 120 },
            Message::QrStatus { state: QrState::Pending, nickname: None, avatar: None, token: None },
            Message::QrStatus {
                state: QrState::Confirmed,
                nickname: Some("李小龍 🐉".into()),
                avatar: Some("ab.png".into()),
                token: Some(Secret::new("a".repeat(64))),
            },
            Message::QrDetails {
                state: QrState::Scanned,
                user_agent: "UA".into(),
                ip: "192.0.2.7".into(),
                created_unix: u64::MAX - 1,
            },
            Message::QrDecided { state: QrState::Denied },
            Message::QrCancel { wait: u64::MAX },
            Message::QrCancelled,
            Message::GetAvatar { name: format!("{}.png", "ab".repeat(32)) },
            Message::Avatar { content_type: "image/webp".into(), image: vec![0x52, 0x49, 0x46, 0x46] },
        ];
        for code in ErrorCode::ALL {
            all.push(Message::Error(ErrorReply { code, message: "why".into(), retry_after_secs: 3 }));
        }
        all
    }

    fn encoded(message: Message, request_id: u64) -> Vec<u8> {
        let mut out = Vec::new();
        Frame { request_id, message }.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn every_message_round_trips() {
        for (i, message) in every_message().into_iter().enumerate() {
            let id = u64::MAX - i as u64;
            let bytes = encoded(message.clone(), id);
            let (frame, used) = Frame::decode(&bytes).unwrap().unwrap();
            assert_eq!(used, bytes.len());
            assert_eq!(frame, Frame { request_id: id, message });
        }
    }

    #[test]
    fn trace_ids_travel_with_every_frame_but_the_handshake() {
        let trace = TraceId::parse("req-42").unwrap();
        for (i, message) in every_message().into_iter().enumerate() {
            let mut bytes = Vec::new();
            let frame = Frame { request_id: i as u64, message };
            frame.encode_traced(trace, &mut bytes).unwrap();
            let (decoded, got, used) = Frame::decode_traced(&bytes).unwrap().unwrap();
            assert_eq!((decoded, used), (frame.clone(), bytes.len()));
            let expected = if frame.message.message_type().is_handshake() { TraceId::NONE } else { trace };
            assert_eq!(got, expected, "{:?}", frame.message.message_type());
        }
        let mut bad = encoded(Message::Ping, 1);
        bad[HEADER_LEN] = 1;
        bad.push(b'\n');
        bad[15] += 1;
        assert_eq!(Frame::decode(&bad), Err(Error::BadTrace));
    }

    #[test]
    fn every_message_type_is_covered() {
        let covered: Vec<MessageType> = every_message().iter().map(Message::message_type).collect();
        for b in 0..=u8::MAX {
            if let Some(kind) = MessageType::from_u8(b) {
                assert_eq!(kind as u8, b);
                assert!(covered.contains(&kind), "{kind:?} has no round-trip case");
            }
        }
    }

    #[test]
    fn only_reads_and_waits_are_idempotent_and_every_idempotent_type_is_a_request() {
        let idempotent: Vec<MessageType> =
            (0..=u8::MAX).filter_map(MessageType::from_u8).filter(|kind| kind.is_idempotent()).collect();
        use MessageType::*;
        assert_eq!(idempotent, [GetProfile, Ping, GetAvatar, ListSessions, LoginHistory, QrWait, CheckReady]);
        assert!(idempotent.iter().all(|kind| kind.is_request() && !kind.is_handshake()));
        for write in [SignUp, Login, Logout, UpdateNickname, SetAvatar, ChangePassword, DeleteAccount, QrScan]
        {
            assert!(!write.is_idempotent(), "{write:?} changes state");
        }
    }

    #[test]
    fn safe_to_resend_are_the_idempotent_types_and_the_writes_made_idempotent_and_nothing_else() {
        use MessageType::*;
        let safe: Vec<MessageType> =
            (0..=u8::MAX).filter_map(MessageType::from_u8).filter(|kind| kind.is_safe_to_resend()).collect();
        let made_idempotent: Vec<MessageType> =
            safe.iter().copied().filter(|kind| !kind.is_idempotent()).collect();
        assert_eq!(made_idempotent, [SignUp, UpdateNickname]);
        for kind in (0..=u8::MAX).filter_map(MessageType::from_u8).filter(|kind| kind.is_idempotent()) {
            assert!(kind.is_safe_to_resend(), "{kind:?} is idempotent, so safe to resend");
        }
        for write in
            [Login, Logout, SetAvatar, RevokeSession, RevokeOtherSessions, ChangePassword, DeleteAccount]
                .into_iter()
                .chain([QrCreate, QrScan, QrDecide, QrCancel, Proof])
        {
            assert!(!write.is_safe_to_resend(), "{write:?} would be applied twice");
        }
    }

    #[test]
    fn a_sign_up_carries_its_key_whole() {
        let key = IdempotencyKey(std::array::from_fn(|i| i as u8 + 1));
        let sign_up =
            Message::SignUp { username: "u".into(), password: "p".into(), nickname: None, client: None, key };
        let mut bytes = Vec::new();
        Frame { request_id: 1, message: sign_up.clone() }.encode(&mut bytes).unwrap();
        assert!(bytes.ends_with(key.as_bytes()), "the key is the body's last field");
        assert_eq!(Frame::decode(&bytes).unwrap().map(|(f, _)| f.message), Some(sign_up));
        // A body one byte short of the key is refused, not read as a shorter key.
        let short = bytes.len() - 1;
        bytes.truncate(short);
        let body_len = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) - 1;
        bytes[12..16].copy_from_slice(&body_len.to_be_bytes());
        assert!(Frame::decode(&bytes).is_err());
    }

    #[test]
    fn frame_fed_one_byte_at_a_time_decodes_once_at_the_last_byte() {
        for message in every_message()
            .into_iter()
            .filter(|m| !matches!(m, Message::SetAvatar { image, .. } if image.len() > 16))
        {
            let bytes = encoded(message, 42);
            for n in 0..bytes.len() {
                assert_eq!(Frame::decode(&bytes[..n]), Ok(None), "decoded early at {n} of {}", bytes.len());
            }
            assert!(Frame::decode(&bytes).unwrap().is_some());
        }
    }

    #[test]
    fn the_largest_picture_reply_with_the_longest_trace_fits_one_frame() {
        let trace = TraceId::parse(&"t".repeat(crate::MAX_TRACE_LEN)).unwrap();
        let content_type = "image/webp".to_owned();
        let message = Message::Avatar { content_type, image: vec![0xa5; MAX_IMAGE_LEN] };
        let frame = Frame { request_id: 9, message };
        let mut bytes = Vec::new();
        frame.encode_traced(trace, &mut bytes).unwrap();
        assert!(bytes.len() - HEADER_LEN <= crate::MAX_BODY_LEN);
        assert_eq!(Frame::decode_traced(&bytes).unwrap().unwrap(), (frame, trace, bytes.len()));
    }

    #[test]
    fn pipelined_frames_decode_in_order() {
        let mut buf = encoded(Message::Ping, 1);
        buf.extend(encoded(Message::Logout { token: "t".into() }, 2));
        let (first, used) = Frame::decode(&buf).unwrap().unwrap();
        assert_eq!(first.request_id, 1);
        let (second, used2) = Frame::decode(&buf[used..]).unwrap().unwrap();
        assert_eq!(second.request_id, 2);
        assert_eq!(used + used2, buf.len());
    }

    #[test]
    fn header_errors_come_before_the_body_arrives() {
        let mut bytes = encoded(Message::Logout { token: Secret::new("t".repeat(100)) }, 1);
        bytes[0] = b'G';
        assert!(matches!(Frame::decode(&bytes[..HEADER_LEN]), Err(Error::BadMagic(_))));
        let mut bytes = encoded(Message::Ping, 1);
        bytes[2] = VERSION + 1;
        assert_eq!(Frame::decode(&bytes), Err(Error::UnsupportedVersion(VERSION + 1)));
        bytes[2] = VERSION;
        bytes[3] = 0x42;
        assert_eq!(Frame::decode(&bytes), Err(Error::UnknownType(0x42)));
        let mut huge = encoded(Message::Ping, 1);
        huge[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(Frame::decode(&huge), Err(Error::FrameTooLarge { .. })));
    }

    /// A header that claims a body whose fields run past its end.
    fn frame_with_body(kind: MessageType, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.push(VERSION);
        out.push(kind as u8);
        out.extend_from_slice(&9u64.to_be_bytes());
        let traced = !kind.is_handshake();
        out.extend_from_slice(&((body.len() + usize::from(traced)) as u32).to_be_bytes());
        if traced {
            out.push(0);
        }
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn body_errors_each_have_their_own_variant() {
        // A text length of 10 with only 2 bytes behind it.
        let truncated = frame_with_body(MessageType::Logout, &[0, 10, b'a', b'b']);
        assert_eq!(Frame::decode(&truncated), Err(Error::Truncated));
        let trailing = frame_with_body(MessageType::Ping, &[1, 2, 3]);
        assert_eq!(Frame::decode(&trailing), Err(Error::TrailingBytes(3)));
        let bad_utf8 = frame_with_body(MessageType::Logout, &[0, 2, 0xff, 0xfe]);
        assert_eq!(Frame::decode(&bad_utf8), Err(Error::InvalidUtf8));
        let bad_tag = frame_with_body(MessageType::GetProfile, &[0, 1, b't', 9]);
        assert_eq!(Frame::decode(&bad_tag), Err(Error::InvalidTag(9)));
        let bad_code = frame_with_body(MessageType::Error, &[0, 99, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Frame::decode(&bad_code), Err(Error::UnknownErrorCode(99)));
        // An image length prefix far beyond the body.
        let lying_len = frame_with_body(MessageType::SetAvatar, &[0, 1, b't', 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(Frame::decode(&lying_len), Err(Error::Truncated));
    }

    #[test]
    fn handshake_fields_have_exactly_their_length() {
        let short = frame_with_body(MessageType::Proof, &[0; PROOF_LEN - 1]);
        assert_eq!(Frame::decode(&short), Err(Error::Truncated));
        let long = frame_with_body(MessageType::Challenge, &[0; NONCE_LEN + 1]);
        assert_eq!(Frame::decode(&long), Err(Error::TrailingBytes(1)));
        let proof = frame_with_body(MessageType::Proof, &[9; PROOF_LEN]);
        assert_eq!(proof.len(), HEADER_LEN + PROOF_LEN);
        let (frame, _) = Frame::decode(&proof).unwrap().unwrap();
        assert_eq!(frame.message, Message::Proof(Proof([9; PROOF_LEN])));
        assert!(frame.message.message_type().is_handshake() && frame.message.message_type().is_request());
        assert!(!MessageType::Challenge.is_request() && !MessageType::Accepted.is_request());
    }

    #[test]
    fn encoder_refuses_what_the_decoder_would_refuse() {
        let mut out = vec![1, 2, 3];
        let long_name = Message::GetProfile { token: "t".into(), username: Some("x".repeat(70_000)) };
        assert_eq!(
            Frame { request_id: 1, message: long_name }.encode(&mut out),
            Err(Error::FieldTooLong(70_000))
        );
        let huge_image =
            Message::SetAvatar { token: "t".into(), username: None, image: vec![0; MAX_BODY_LEN] };
        assert!(matches!(
            Frame { request_id: 1, message: huge_image }.encode(&mut out),
            Err(Error::FrameTooLarge { .. })
        ));
        assert_eq!(out, vec![1, 2, 3], "a failed encode must leave the buffer as it was");
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let login = Message::Login {
            username: "u".into(),
            password: "hunter2".into(),
            client: None,
            user_agent: None,
        };
        let shown = format!("{login:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn lists_longer_than_their_bound_are_refused_both_ways() {
        let entry = crate::LoginEntry {
            time: 1,
            ip: String::new(),
            browser: String::new(),
            os: String::new(),
            method: "password".into(),
            outcome: "success".into(),
            new_device: false,
            suspicious: false,
            session: String::new(),
        };
        let long = Message::History(vec![entry; crate::security::MAX_HISTORY + 1]);
        let mut out = Vec::new();
        assert!(matches!(
            Frame { request_id: 1, message: long }.encode(&mut out),
            Err(Error::ListTooLong { len: 101, max: 100 })
        ));
        // A hand-made body announcing 101 entries is refused before any is read.
        let mut body = vec![0, 101];
        body.extend_from_slice(&[0; 32]);
        assert!(matches!(
            Message::decode_body(MessageType::History, &body),
            Err(Error::ListTooLong { len: 101, max: 100 })
        ));
    }

    /// Random and mutated bytes must give `Ok` or `Err`, never a panic, and a
    /// successful decode must never claim more bytes than it was given.
    #[test]
    fn decoder_survives_random_and_mutated_input() {
        let mut rng = StdRng::seed_from_u64(0x5eed);
        let valid: Vec<Vec<u8>> = every_message()
            .into_iter()
            .filter(|m| !matches!(m, Message::SetAvatar { image, .. } if image.len() > 16))
            .map(|m| encoded(m, 5))
            .collect();
        for round in 0..200_000 {
            let mut bytes = if round % 4 == 0 {
                let len = rng.random_range(0..64);
                let mut b = vec![0u8; len];
                rng.fill_bytes(&mut b);
                if len >= 3 && rng.random_bool(0.5) {
                    b[..2].copy_from_slice(&MAGIC.to_be_bytes());
                    b[2] = VERSION;
                }
                b
            } else {
                valid[rng.random_range(0..valid.len())].clone()
            };
            for _ in 0..rng.random_range(1..4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes[at] = rng.random(),
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, rng.random()),
                }
            }
            if let Ok(Some((_, used))) = Frame::decode(&bytes) {
                assert!(used <= bytes.len());
            }
        }
    }
}
