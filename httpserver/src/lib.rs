//! The usermgmt front end: a thread-per-connection HTTP/1.1 server that shapes
//! input, renders pages, serves static files, and forwards every operation as
//! one RPC to tcpserver over a pool of persistent connections.
//!
//! It holds no business rules (those live in tcpserver) and links no MySQL or
//! Redis client; it only bounds sizes and times. The flow of a request:
//! [`server`] accepts it on a thread of its own ([`thread_cache`]), within
//! the caps per client address of [`addr_quota`], and reads it
//! ([`connection`], [`request`], with large bodies in the [`body_budget`]),
//! [`router`] picks a handler in [`handlers`], which decodes fields ([`input`]), checks [`csrf`] and the
//! [`session_cookie`], calls tcpserver through [`rpc_pool`], and answers with a
//! [`response`] (pictures come from tcpserver too, kept in the [`avatar_cache`]): JSON for API clients, a page ([`templates`]) or a redirect for
//! browsers. [`error`] maps every failure to its status and code.

#![warn(missing_docs, missing_debug_implementations)]

pub mod addr_quota;
pub mod app;
pub mod avatar_cache;
pub mod balancer;
pub mod body_budget;
pub mod chunked;
pub mod config;
pub mod connection;
pub mod csrf;
pub mod error;
pub mod form;
pub mod handlers;
pub mod hangup_watch;
pub mod input;
pub mod json;
pub mod log;
pub mod metrics;
pub mod metrics_allow;
pub mod multipart;
pub mod peer_closed;
pub mod proxy_protocol;
pub mod qr_image;
pub mod request;
pub mod request_id;
pub mod response;
pub mod router;
pub mod rpc_pool;
pub mod server;
pub mod session_cookie;
pub mod static_files;
pub mod templates;
#[cfg(test)]
mod test_sockets;
pub mod thread_cache;
pub mod user_agent;

pub use config::Config;
pub use server::run;
