//! What one password hash costs on this machine: PBKDF2-HMAC-SHA256 at a given
//! iteration count, through `tcpserver::pbkdf2_sha256` and through the generic
//! `pbkdf2` crate, median of several rounds. A benchmark, not a test.
//! Hashes side by side go through `derive_many`, the path log-ins take,
//! compiled once in the library: `derive_lanes` is generic, and an instance
//! of it made here is compiled (and was measured, 2026-12-02) differently.
//!
//!     cargo run --release -p tcpserver --example hash_cost [ITERATIONS] [ROUNDS]

use std::hint::black_box;
use std::time::Instant;

use sha2::Sha256;

/// Derivations per round: enough for a round to take tens of milliseconds.
const DERIVATIONS_PER_ROUND: u32 = 200;

fn main() {
    let mut args = std::env::args().skip(1).map(|arg| arg.parse::<u32>());
    let iterations = args.next().unwrap_or(Ok(1000)).expect("ITERATIONS is a number");
    let rounds = args.next().unwrap_or(Ok(11)).expect("ROUNDS is a number").max(1);
    let password = [0x5au8; 32];
    let salt = [0xa5u8; 16];

    let ours =
        median_micros(rounds, || black_box(tcpserver::pbkdf2_sha256::derive(&password, &salt, iterations)));
    let paired = median_micros(rounds, || {
        let keys = tcpserver::pbkdf2_sha256::derive_many(&[(&password[..], &salt[..]); 2], iterations);
        black_box(&keys);
        keys[0]
    }) / 2.0;
    let eight = median_micros(rounds, || {
        let keys = tcpserver::pbkdf2_sha256::derive_many(&[(&password[..], &salt[..]); 8], iterations);
        black_box(&keys);
        keys[0]
    }) / 8.0;
    // Sixteen, a full worker batch, in each lane count.
    let batch = [(&password[..], &salt[..]); 16];
    let by_lanes: Vec<f64> = (1..=tcpserver::pbkdf2_sha256::MAX_LANES)
        .map(|lanes| {
            median_micros(rounds, || {
                let keys = tcpserver::pbkdf2_sha256::derive_in_lanes(&batch, iterations, lanes);
                black_box(&keys);
                keys[0]
            }) / 16.0
        })
        .collect();
    let generic = median_micros(rounds, || {
        let mut key = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(&password, &salt, iterations, &mut key);
        black_box(key)
    });
    println!("PBKDF2-HMAC-SHA256, {iterations} iterations, median of {rounds} rounds:");
    println!("  tcpserver::pbkdf2_sha256  {ours:>8.1} µs per hash");
    println!("  derive_many, two at once  {paired:>8.1} µs per hash");
    println!("  derive_many, eight at once {eight:>6.1} µs per hash");
    println!("  pbkdf2 crate              {generic:>8.1} µs per hash");
    println!("sixteen at once, by lanes side by side:");
    for (lanes, micros) in by_lanes.iter().enumerate() {
        println!("  {:>2} lanes                  {micros:>8.1} µs per hash", lanes + 1);
    }
    println!("this machine's choice: {}", tcpserver::pbkdf2_lanes::choice());
}

/// The median over `rounds` of the time per call of `derive`, in microseconds.
fn median_micros(rounds: u32, mut derive: impl FnMut() -> [u8; 32]) -> f64 {
    let mut per_call: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..DERIVATIONS_PER_ROUND {
                derive();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(DERIVATIONS_PER_ROUND)
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[per_call.len() / 2]
}
