//! A small version of the benchmark in the test command: a few thousand seeded
//! accounts, every scenario for a couple of thousand requests against the real
//! servers, and every single answer must have been right. This keeps the
//! seeding tool, the load generator and the servers' API agreeing.

mod util;

use util::{System, text};

/// Seeded accounts: enough for random logins to spread, quick to hash.
const ACCOUNTS: u64 = 2_000;

#[test]
fn every_scenario_runs_without_a_single_wrong_answer() {
    let system = System::start(ACCOUNTS);
    for scenario in ["login-fixed", "login-random", "profile", "nickname"] {
        let run = system.loadgen(&[
            "--scenario",
            scenario,
            "--accounts",
            &ACCOUNTS.to_string(),
            "--concurrency",
            "50",
            "--requests",
            "2000",
            "--json",
        ]);
        let out = text(&run);
        assert!(run.status.success(), "{scenario}: {out}\n{}", system.logs());
        let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON report");
        assert_eq!(report["scenario"], scenario);
        assert_eq!(report["requests"], 2000, "{out}");
        assert_eq!(report["ok"], 2000, "{out}");
        assert_eq!(report["errors"], 0, "{out}");
        assert!(report["qps"].as_f64().unwrap_or(0.0) > 0.0, "{out}");
    }
}

#[test]
fn wrong_passwords_are_reported_by_kind_not_counted_as_throughput() {
    let system = System::start(300);
    let run =
        system.loadgen(&["--password-of", "wrong{i}", "--concurrency", "4", "--requests", "40", "--json"]);
    assert!(!run.status.success(), "{}", text(&run));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON report");
    assert_eq!(report["ok"], 0, "{}", text(&run));
    assert_eq!(report["errors"], 40, "{}", text(&run));
    let kinds = report["errors_by_kind"].as_object().expect("errors by kind");
    assert!(kinds.keys().all(|k| k.starts_with("status 401") || k.starts_with("status 429")), "{kinds:?}");
}
