//! The OpenAPI description checked by a real fuzzer: schemathesis (from PyPI,
//! in the virtual environment `e2e/tests/prometheus/setup.sh` makes under
//! target/) generates thousands of requests from `/openapi.json` of a running
//! stack, with a session for the authenticated endpoints, and checks that
//! every response conforms to the description (status, content type,
//! headers, JSON shape and error codes) and that none is a 5xx or a hang.
//!
//! The stack has MariaDB and Redis of its own: the fuzzer signs up accounts
//! under names it chooses, which must not stay behind in the shared test
//! database.

mod util;

use std::process::Command;
use std::time::Instant;

use util::services::{PrivateMariadb, PrivateRedis};
use util::{Options, Stack, workspace_root};

const PASSWORD: &str = "correct horse battery";

/// Generated cases per operation in the fuzzing phase: with the examples and
/// coverage phases, a few thousand cases in all over the 27 operations, in
/// about two minutes here.
const MAX_EXAMPLES: &str = "250";

/// How long httpserver holds a `/qr/wait` long poll in this stack: short, so
/// the fuzzer's waits on codes that never change cost it milliseconds, not
/// the 25 s of the default.
const QR_WAIT_MS: &str = "100";

/// The operations that end sessions or the account itself when they succeed:
/// they run with an account of their own, so no generated case of theirs can
/// end the session the other operations use.
const ACCOUNT_ENDING: [&str; 3] = ["/deleteAccount", "/sessions/revokeOthers", "/changePassword"];

/// Longest a single request may take before schemathesis calls it a hang:
/// far above any answer of a healthy server (the RPC timeout is 5 s).
const REQUEST_TIMEOUT_SECS: &str = "10";

/// The checks: conformance to the description, and no server error.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// CPython 3.11's spurious `SystemError` when two threads build ASTs at once
/// (python/cpython#106905; hypothesis describes its filters by parsing their
/// source): an error of the fuzzer's own interpreter, not a finding about the
/// server. It came from schemathesis's workers running in two threads, and
/// struck three runs in a row once (CI, 2026-12-01), so schemathesis now runs
/// one worker ([`WORKERS`]); the rerun stays for any other thread that might.
const INTERPRETER_FLAKE: &str = "AST constructor recursion depth mismatch";

/// Schemathesis's workers: one, so no two threads of its interpreter build
/// ASTs at once ([`INTERPRETER_FLAKE`]).
const WORKERS: &str = "1";

/// Runs of one schemathesis command at most, when they fail by [`INTERPRETER_FLAKE`]
/// only.
const FLAKE_ATTEMPTS: usize = 3;

/// Runs schemathesis against the stack; returns its output and the number of
/// generated cases it reports. Panics when it finds a failure. A run that
/// failed only by [`INTERPRETER_FLAKE`] (no failure reported) runs again, up
/// to [`FLAKE_ATTEMPTS`] runs in all.
fn schemathesis(stack: &Stack, token: &str, filter: &[&str]) -> (String, u64) {
    let (mut ok, mut text) = schemathesis_once(stack, token, filter);
    for _ in 1..FLAKE_ATTEMPTS {
        if ok || !text.contains(INTERPRETER_FLAKE) || text.contains("FAILURES") {
            break;
        }
        println!("schemathesis hit {INTERPRETER_FLAKE:?} (its interpreter's bug), running it again");
        (ok, text) = schemathesis_once(stack, token, filter);
    }
    assert!(ok, "schemathesis found failures:\n{text}");
    let cases = generated_cases(&text).unwrap_or_else(|| panic!("no case count in:\n{text}"));
    (text, cases)
}

/// One run of schemathesis: whether it passed, and its output.
fn schemathesis_once(stack: &Stack, token: &str, filter: &[&str]) -> (bool, String) {
    let binary = workspace_root().join("target/venv-schemathesis/bin/schemathesis");
    assert!(
        binary.exists(),
        "{} is missing: run e2e/tests/prometheus/setup.sh (./test.sh does)",
        binary.display()
    );
    let output = Command::new(&binary)
        .arg("run")
        .arg(stack.url("/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--header", "Accept: application/json"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--request-timeout", REQUEST_TIMEOUT_SECS])
        .args(["--workers", WORKERS, "--seed", "14", "--generation-database", "none", "--no-color"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(filter)
        .current_dir(&stack.dir)
        .output()
        .expect("run schemathesis");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The count of schemathesis's summary, `Test cases:` then `N generated, ...`.
fn generated_cases(output: &str) -> Option<u64> {
    let mut lines = output.lines().skip_while(|l| !l.contains("Test cases:")).skip(1);
    let line = lines.find(|l| l.contains("generated"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[test]
fn schemathesis_finds_every_response_conforming_and_no_server_error() {
    let redis = PrivateRedis::start();
    let db = PrivateMariadb::start();
    let stack = Stack::start_with(
        Options::under_load()
            .back("--redis-url", redis.url())
            .back("--mysql-url", db.url())
            .back("--mysql-password-file", db.password_file().display())
            .back("--login-failures-per-user", "1000000/300")
            .back("--login-failures-per-addr", "1000000/300")
            .back("--qr-codes-per-addr", "1000000/600")
            .front("--qr-wait-ms", QR_WAIT_MS),
    );
    let served = stack.client().get("/openapi.json");
    assert_eq!(served.status, 200);
    let committed =
        std::fs::read(workspace_root().join("httpserver/openapi.json")).expect("httpserver/openapi.json");
    assert_eq!(served.body, committed, "/openapi.json serves the committed description");

    let (_, token) = stack.user_with_token("fuzzed", PASSWORD);
    let (_, own_token) = stack.user_with_token("fuzzed_own", PASSWORD);
    let started = Instant::now();
    let mut excluded = vec!["--exclude-path", "/logout"];
    let mut account_ending = Vec::new();
    for path in ACCOUNT_ENDING {
        excluded.extend(["--exclude-path", path]);
        account_ending.extend(["--include-path", path]);
    }
    let (main, cases) = schemathesis(&stack, &token, &excluded);
    let (_, ending_cases) = schemathesis(&stack, &own_token, &account_ending);
    // Log-out last and alone: it ends the session the other operations use.
    let (_, logout_cases) = schemathesis(&stack, &token, &["--include-path", "/logout"]);
    let total = cases + ending_cases + logout_cases;
    println!(
        "schemathesis: {total} generated cases ({cases} + {ending_cases} for {} + {logout_cases} for /logout) in {:.0?}",
        ACCOUNT_ENDING.join(", "),
        started.elapsed()
    );
    println!(
        "{}",
        main.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(total >= 2_000, "only {total} cases generated");
}
