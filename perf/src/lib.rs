//! The usermgmt load generator: simulated users over keep-alive HTTP/1.1,
//! every answer checked by its content.
//!
//! Four scenarios, as the benchmark asks: logins of a fixed set of 200 users,
//! logins of random users out of ten million, profile reads with valid
//! sessions, and nickname changes. One `mio` event loop per thread drives all
//! connections (see [`engine`]), so the generator stays a small part of the
//! two cores it shares with the servers. The report is one line in the
//! original documents' form plus latency percentiles and errors by kind.

pub mod check;
pub mod config;
pub mod engine;
pub mod error;
pub mod histogram;
pub mod qr;
pub mod report;
pub mod response;
pub mod runner;
pub mod workload;
