//! The usermgmt back end as a library, so that the binary, the integration tests
//! and the seeding tool share one implementation.
//!
//! A single reactor thread ([`reactor`]) owns every client socket and decodes
//! the binary RPC frames of [`proto`]; requests that need MySQL, Redis
//! or a password hash go through a bounded queue to a pool of worker threads
//! ([`pool`]), each with its own database connections, and their replies come
//! back through a channel and a waker. [`run`] puts it together.

#![deny(missing_docs, missing_debug_implementations)]

pub mod avatar_import;
pub mod avatar_name;
pub mod avatar_refs;
pub mod config;
pub mod conn;
pub mod db;
pub mod device;
pub mod dispatch;
pub mod error;
pub mod gate;
pub mod history;
pub mod image;
pub mod keys;
pub mod log;
pub mod login_counters;
pub mod login_record;
pub mod login_session;
pub mod metrics;
pub mod metrics_http;
pub mod password;
pub mod pbkdf2_lanes;
pub mod pbkdf2_sha256;
#[cfg(target_arch = "x86_64")]
pub mod pbkdf2_sha_ni;
pub mod pool;
pub mod profile_cache;
pub mod qr_events;
pub mod qr_store;
pub mod qr_waits;
pub mod queue;
pub mod reactor;
pub mod server;
pub mod service;
pub mod session;
pub mod shutdown;
pub mod throttle;
pub mod user_agent;
pub mod validate;
pub mod verified;

pub use config::Config;
pub use server::{Server, ServerError, run};
pub use shutdown::{Shutdown, ShutdownHandle};
