//! The usermgmt wire format: how `httpserver`, `tcpserver` and the load generator
//! talk to each other.
//!
//! Every message travels in one [`Frame`]: a fixed 16-byte [`Header`] followed by a
//! body whose layout depends on the message type. The crate does no I/O: callers
//! read bytes into their own buffers, ask [`Frame::decode`] whether a whole frame is
//! there yet, and append replies to their write buffers with [`Frame::encode`].
//!
//! Requests and replies share one numbering: a reply carries the `request_id` of
//! the request it answers, so a connection can pipeline many requests and match
//! answers that come back in any order.
//!
//! A connection begins with a [`handshake`]: the client proves it knows the
//! secret shared with tcpserver before the server reads any request. That
//! authenticates the caller; it does not encrypt anything.
//!
//! A request whose connection breaks after it was written may be sent again
//! only if it is safe to ([`idempotency`]): the reads by nature, a sign-up by
//! its idempotency key, a nickname change by the server's condition.
//!
//! Every other frame's body starts with a [`TraceId`] (the HTTP request id),
//! so one request can be followed through both servers' logs ([`trace`]).

#![deny(missing_docs, missing_debug_implementations)]

mod error;
mod frame;
pub mod handshake;
mod header;
pub mod idempotency;
mod message;
mod qr;
pub mod security;
pub mod trace;
mod wire;

pub use error::Error;
pub use frame::Frame;
pub use handshake::{Nonce, Proof, RpcSecret};
pub use header::{HEADER_LEN, Header, MAGIC, MAX_BODY_LEN, VERSION};
pub use idempotency::{IDEMPOTENCY_KEY_LEN, IdempotencyKey};
pub use message::{ErrorCode, ErrorReply, MAX_IMAGE_LEN, Message, MessageType, Profile, Secret};
pub use qr::QrState;
pub use security::{DeviceSession, LoginEntry, MAX_USER_AGENT_LEN};
pub use trace::{MAX_TRACE_LEN, TraceId};
