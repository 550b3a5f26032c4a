//! The `qr` scenario at a small scale: a few hundred desktops waiting at
//! once on scan-to-log-in codes, from many loopback addresses, approved by
//! phones at a steady rate beside log-ins; every approval must reach its
//! desktop exactly once. (The full 10,000-wait run is the benchmark's:
//! `perf/README.md` has the command.)

mod util;

use util::{System, text};

const WAITS: u64 = 300;

#[test]
fn every_approval_reaches_its_waiting_desktop_exactly_once() {
    // Phones log in as accounts 1001 on; log-ins beside use 1 to 200.
    let system = System::start(1_000 + WAITS);
    let (tcp, http) = system.pids();
    let run = system.loadgen(&[
        "--scenario",
        "qr",
        "--waits",
        &WAITS.to_string(),
        "--approve-rate",
        "150",
        "--concurrency",
        "20",
        "--tcpserver-pid",
        &tcp.to_string(),
        "--httpserver-pid",
        &http.to_string(),
        "--json",
    ]);
    let out = text(&run);
    assert!(run.status.success(), "{out}\n{}", system.logs());
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON report");
    println!("{report:#}");
    assert_eq!(report["waits"], WAITS, "{out}");
    assert_eq!(report["approved"], WAITS, "{out}");
    assert_eq!(report["answered"], WAITS, "{out}");
    assert_eq!((report["lost"].as_u64(), report["doubled"].as_u64()), (Some(0), Some(0)), "{out}");
    let p99 = report["approval_to_answer_ms"]["p99"].as_f64().unwrap_or(f64::MAX);
    assert!(p99 > 0.0 && p99 < 5_000.0, "{out}");
    assert_eq!(report["login_errors"]["beside"], 0, "{out}");
    assert_eq!(report["memory_kib"].as_array().map(Vec::len), Some(2), "{out}");
}
