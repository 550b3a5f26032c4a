//! Fuzz targets for every parser that reads bytes from a peer.
//!
//! Each module holds one target as a plain function `run(&[u8])` that feeds the
//! input to the code under test and panics when a property breaks (a panic in
//! the code under test counts too). The same functions serve twice: the
//! `src/bin/*` harnesses hand them to AFL++ through the `afl` crate for
//! coverage-guided runs (`./run.sh`), and `tests/replay.rs` runs the committed
//! seed corpus and every saved crash through them as an ordinary `cargo test`
//! (`./smoke.sh`), so a fixed bug stays fixed without a fuzzer installed.
//!
//! [`seeds`] builds the seed corpus: small valid inputs of every kind, so the
//! fuzzer starts from deep inside each format rather than at its magic bytes.

#![deny(missing_docs, missing_debug_implementations)]

pub mod chunked;
pub mod frame;
pub mod http;
pub mod image;
pub mod multipart;
pub mod proxy;
pub mod seeds;

/// One fuzz target: its name (also its binary, corpus and regression folder)
/// and its entry point.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The name used by `run.sh`, `corpus/<name>/` and `regressions/<name>/`.
    pub name: &'static str,
    /// Feeds one input; panics when a property breaks.
    pub run: fn(&[u8]),
}

/// Every target, in the order `smoke.sh` reports them.
pub const TARGETS: [Target; 6] = [
    Target { name: "frame", run: frame::run },
    Target { name: "image", run: image::run },
    Target { name: "http", run: http::run },
    Target { name: "multipart", run: multipart::run },
    Target { name: "chunked", run: chunked::run },
    Target { name: "proxy", run: proxy::run },
];
