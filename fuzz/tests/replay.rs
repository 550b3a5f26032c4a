//! The short pass of every fuzz target, for the test command: replays the seed
//! corpus and every saved crash input through the same functions the fuzzer
//! drives, with no fuzzer needed, and checks that the seeds are still the valid
//! inputs they are meant to be (a seed the code refuses teaches the fuzzer
//! nothing about the paths behind the check).

use std::fs;
use std::path::{Path, PathBuf};

use usermgmt_fuzz::{TARGETS, http, seeds};

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(kind).join(target)
}

/// The files of `corpus/<target>` or `regressions/<target>`, sorted; none if
/// the folder does not exist.
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir(kind, target)) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

#[test]
fn every_target_replays_its_corpus_and_regressions() {
    for target in TARGETS {
        let corpus = inputs("corpus", target.name);
        assert!(!corpus.is_empty(), "corpus/{} is empty", target.name);
        for (path, bytes) in corpus.iter().chain(&inputs("regressions", target.name)) {
            eprintln!("{}: {}", target.name, path.display());
            (target.run)(bytes);
        }
    }
}

#[test]
fn committed_generated_seeds_match_the_generator() {
    let sets = [
        ("frame", seeds::frames()),
        ("http", seeds::http()),
        ("multipart", seeds::multipart()),
        ("chunked", seeds::chunked()),
        ("proxy", seeds::proxy()),
    ];
    for (target, seeds) in sets {
        for (name, bytes) in seeds {
            let path = dir("corpus", target).join(&name);
            let committed = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(committed == bytes, "{} is stale: run `cargo run --bin make-corpus`", path.display());
        }
    }
}

#[test]
fn frame_seeds_decode_whole() {
    for (path, bytes) in inputs("corpus", "frame") {
        let mut at = 0;
        while at < bytes.len() {
            match proto::Frame::decode(&bytes[at..]) {
                Ok(Some((_, used))) => at += used,
                other => panic!("{}: {other:?} at byte {at}", path.display()),
            }
        }
    }
}

#[test]
fn image_seeds_are_accepted_as_their_kind() {
    for (path, bytes) in inputs("corpus", "image") {
        let kind = tcpserver::image::inspect(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        assert_eq!(kind.extension(), extension, "{}", path.display());
    }
}

#[test]
fn multipart_seeds_parse() {
    for (path, bytes) in inputs("corpus", "multipart") {
        let text = String::from_utf8_lossy(&bytes);
        let (content_type, _) = text.split_once('\n').unwrap_or_default();
        let boundary = httpserver::multipart::boundary(content_type);
        let body = &bytes[content_type.len() + 1..];
        let parsed = boundary.and_then(|b| httpserver::multipart::parse(body, &b));
        assert!(parsed.is_ok(), "{}: {parsed:?}", path.display());
    }
}

#[test]
fn http_seeds_are_read_as_requests() {
    for (path, bytes) in inputs("corpus", "http") {
        let expected = if path.ends_with("pipelined.txt") { 3 } else { 1 };
        assert_eq!(http::requests_read(&bytes), expected, "{}", path.display());
    }
}

#[test]
fn chunked_seeds_decode_to_the_end() {
    for (path, bytes) in inputs("corpus", "chunked") {
        let cuts = usize::from(bytes[0]);
        let body = &bytes[1 + cuts..];
        let mut decoder = httpserver::chunked::ChunkedDecoder::new(1024);
        let result = decoder.feed(body, &mut Vec::new());
        assert!(result.is_ok() && decoder.is_done(), "{}: {result:?}", path.display());
    }
}

#[test]
fn proxy_seeds_are_whole_headers() {
    let proxy: std::net::SocketAddr = "127.0.0.3:40000".parse().unwrap();
    for (path, bytes) in inputs("corpus", "proxy") {
        let parsed = httpserver::proxy_protocol::parse(&bytes, proxy);
        assert!(matches!(parsed, Ok(Some(_))), "{}: {parsed:?}", path.display());
    }
}
