//! httpserver balancing its RPC calls over two real tcpservers (`--backend
//! A,B`), one of them killed with SIGKILL under load and restarted.
//!
//! The load is what a user does: profile reads, nickname changes and
//! sign-ups, each thread one request after another. What must hold: no
//! profile read fails; every write answered 200 or 201 is stored, once;
//! every write answered 503 is not stored, with no exception for those at
//! the dying tcpserver when it died (a sign-up or nickname change in flight
//! there may have been committed before its reply could go out: the
//! balancer sends it again to the survivor, which answers it truly, because
//! tcpserver makes both idempotent: `proto::idempotency`); no write is
//! stored twice; the load goes on through the survivor while the other is
//! down; the restarted one takes calls again with nothing else restarted.
//!
//! That is a claim about every run, not most: the kill falls at a random
//! point of the writes in flight, so the test is run many times over when
//! the resending changes (see `README.md`, "Scaling out").

mod util;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use util::probe::{Outcome, Probe};
use util::{Http, Options, Stack};

const PASSWORD: &str = "correct horse battery";

/// Pause between two requests of one load thread: a steady stream that
/// leaves the two cores room for the four servers and the tests beside.
const PACE: Duration = Duration::from_millis(5);

/// How long each phase of the load runs: before the kill, while one
/// tcpserver is down, after its restart.
const PHASE: Duration = Duration::from_millis(1500);

/// Bound on the restarted tcpserver being taken back (probes come every
/// 250 ms to 1 s).
const TAKEN_BACK_WITHIN: Duration = Duration::from_secs(10);

/// One write and what became of it.
struct Write {
    /// The nickname set, or the username signed up.
    value: String,
    outcome: Outcome,
    /// For a nickname change answered 503: the nickname a read right after
    /// found (the change must not be there).
    read_after: Option<String>,
}

impl Write {
    /// Sent before the kill and answered after it: at the dying tcpserver,
    /// maybe applied, when it died.
    fn straddles(&self, kill: Instant) -> bool {
        self.outcome.started <= kill && self.outcome.ended() >= kill
    }
}

/// `usermgmt_rpc_<name>{backend="<addr>"}` from httpserver's metrics.
fn rpc_metric(stack: &Stack, name: &str, backend: &str) -> i64 {
    let text = Http::new(stack.addr).get("/metrics").text();
    let prefix = format!("usermgmt_rpc_{name}{{backend=\"{backend}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
}

fn nickname_of(stack: &Stack, token: &str) -> Option<String> {
    let outcome = Probe::new(stack.addr).profile(token);
    let reply = outcome.reply.ok().filter(|r| r.status == 200)?;
    reply.json()["data"]["nickname"].as_str().map(str::to_owned)
}

/// Runs `step` until `stop`, a request after another.
fn load<'scope, T: Send + 'scope>(
    scope: &'scope thread::Scope<'scope, '_>,
    stop: &'scope AtomicBool,
    mut step: impl FnMut(u32) -> T + Send + 'scope,
) -> thread::ScopedJoinHandle<'scope, Vec<T>> {
    scope.spawn(move || {
        let mut done = Vec::new();
        let mut k = 0;
        while !stop.load(Ordering::SeqCst) {
            done.push(step(k));
            k += 1;
            thread::sleep(PACE);
        }
        done
    })
}

#[test]
fn a_tcpserver_killed_under_load_fails_no_read_stores_no_write_twice_and_is_taken_back_when_restarted() {
    let mut stack = Stack::start_with(Options::under_load().tcpservers(2));
    let [dying, survivor] = [stack.backend_addrs[0].to_string(), stack.backend_addrs[1].to_string()];
    let readers: Vec<String> = (0..4).map(|i| stack.user_with_token(&format!("r{i}"), PASSWORD).1).collect();
    let writers: Vec<(String, String)> =
        (0..2).map(|i| stack.user_with_token(&format!("w{i}"), PASSWORD)).collect();
    let stop = AtomicBool::new(false);
    let mut victim = stack.take_backend_at(0);
    let stack_ref = &stack;

    let (kill, reads, nicknames, sign_ups, resent) = thread::scope(|scope| {
        let read_threads: Vec<_> = readers
            .iter()
            .map(|token| {
                let mut probe = Probe::new(stack_ref.addr);
                load(scope, &stop, move |_| probe.profile(token))
            })
            .collect();
        let nickname_threads: Vec<_> = writers
            .iter()
            .enumerate()
            .map(|(w, (_, token))| {
                let mut probe = Probe::new(stack_ref.addr);
                load(scope, &stop, move |k| {
                    let value = format!("n{w}-{k}");
                    let outcome = probe.nickname(token, &value);
                    let read_after =
                        (outcome.status() == Some(503)).then(|| nickname_of(stack_ref, token)).flatten();
                    Write { value, outcome, read_after }
                })
            })
            .collect();
        let sign_up_thread = {
            let mut probe = Probe::new(stack_ref.addr);
            load(scope, &stop, move |k| {
                let value = stack_ref.username(&format!("s{k}"));
                let outcome = probe.sign_up(&value, PASSWORD);
                Write { value, outcome, read_after: None }
            })
        };
        thread::sleep(PHASE);
        let kill = Instant::now();
        victim.kill().expect("SIGKILL tcpserver");
        victim.wait().expect("reap tcpserver");
        thread::sleep(PHASE);
        let down = rpc_metric(stack_ref, "backend_up", &dying);
        let resent = rpc_metric(stack_ref, "resent_total", &dying);
        stop.store(true, Ordering::SeqCst);
        let reads: Vec<Outcome> = read_threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
        let nicknames: Vec<Vec<Write>> = nickname_threads.into_iter().map(|t| t.join().unwrap()).collect();
        let sign_ups = sign_up_thread.join().unwrap();
        assert_eq!(down, 0, "the killed tcpserver is out of the rotation");
        (kill, reads, nicknames, sign_ups, resent)
    });

    // The load through the survivor alone.
    let failed: Vec<String> = reads.iter().filter(|r| !r.ok()).map(Outcome::describe).collect();
    assert!(failed.is_empty(), "{} of {} profile reads failed: {failed:?}", failed.len(), reads.len());
    let after_kill = reads.iter().filter(|r| r.started > kill + Duration::from_millis(100)).count();
    assert!(after_kill > 20, "only {after_kill} reads were served after the kill");

    // Every write acknowledged is stored once; none answered 503 is stored.
    let mut mysql = stack.mysql();
    let mut straddling = 0;
    for (writes, (username, _)) in nicknames.iter().zip(&writers) {
        let (nickname, version): (String, u64) = mysql
            .exec_first("SELECT nickname, version FROM users WHERE username = ?", (username,))
            .unwrap()
            .expect("the writer's account");
        let acked = writes.iter().filter(|w| w.outcome.status() == Some(200)).count() as u64;
        for write in writes {
            straddling += usize::from(write.straddles(kill));
            match write.outcome.status() {
                Some(200) => {}
                Some(503) => assert_ne!(
                    write.read_after.as_deref(),
                    Some(write.value.as_str()),
                    "a nickname change answered 503 was stored (straddling the kill: {})",
                    write.straddles(kill)
                ),
                _ => panic!("nickname change: {}", write.outcome.describe()),
            }
        }
        // Each change applied adds one to the version, and every nickname
        // differs from the one before it: a version above the changes
        // acknowledged means one was applied twice, or one answered 503 was
        // applied; below, one acknowledged was not.
        assert_eq!(version, acked, "version {version} after {acked} acknowledged changes of {username}");
        let last_acked = writes.iter().rev().find(|w| w.outcome.status() == Some(200)).map(|w| &w.value);
        assert_eq!(Some(&nickname), last_acked, "the stored nickname is the last acknowledged");
    }
    let stored: HashMap<String, u64> = mysql
        .exec::<(String, u64), _, _>(
            "SELECT username, COUNT(*) FROM users WHERE username LIKE ? GROUP BY username",
            (format!("{}s%", stack.user_prefix.replace('_', "\\_")),),
        )
        .unwrap()
        .into_iter()
        .collect();
    for write in &sign_ups {
        straddling += usize::from(write.straddles(kill));
        let rows = stored.get(&write.value).copied().unwrap_or(0);
        match write.outcome.status() {
            Some(201) => assert_eq!(rows, 1, "acknowledged sign-up {}", write.value),
            Some(503) => assert_eq!(
                rows,
                0,
                "sign-up {} answered 503 was stored (straddling the kill: {})",
                write.value,
                write.straddles(kill)
            ),
            _ => panic!("sign-up {}: {}", write.value, write.outcome.describe()),
        }
    }
    let unanswered =
        nicknames.iter().flatten().chain(&sign_ups).filter(|w| w.outcome.status() == Some(503)).count();
    assert!(straddling <= 3, "{straddling} writes were at the dying tcpserver, more than one per writer");
    let served_after = sign_ups.iter().filter(|w| w.outcome.started > kill && w.outcome.ok()).count();
    assert!(served_after > 0, "sign-ups went on through the survivor");
    // The copies the survivor found already applied: writes the dying one
    // had committed when it died, answered truly instead of 503.
    let found_applied = ["usermgmt_sign_ups_repeated_total", "usermgmt_nickname_changes_unchanged_total"]
        .map(|name| stack.backend_metric(1, name).expect("the survivor's metrics"));
    let slowest_across_kill = reads
        .iter()
        .filter(|r| r.started <= kill + Duration::from_millis(100) && r.ended() >= kill)
        .map(|r| r.latency)
        .max()
        .unwrap_or_default();
    println!(
        "reads {} (0 failed, slowest across the kill {slowest_across_kill:?}); nickname changes {}; sign-ups {}; \
         writes in flight across the kill: {straddling}; writes answered 503 (none stored): {unanswered}; \
         calls sent again after the kill broke their connection: {resent} (sign-ups and nickname changes the \
         survivor found already applied: {} and {})",
        reads.len(),
        nicknames.iter().map(Vec::len).sum::<usize>(),
        sign_ups.len(),
        found_applied[0],
        found_applied[1]
    );

    // Restarted, it is taken back and takes calls again.
    stack.start_backend_at(0);
    let back = Instant::now();
    while rpc_metric(&stack, "backend_up", &dying) != 1 {
        assert!(back.elapsed() < TAKEN_BACK_WITHIN, "not taken back within {TAKEN_BACK_WITHIN:?}");
        thread::sleep(Duration::from_millis(50));
    }
    println!("restarted tcpserver taken back {:?} after it listened", back.elapsed());
    let before = rpc_metric(&stack, "calls_total", &dying);
    let token = &readers[0];
    let mut probe = Probe::new(stack.addr);
    for _ in 0..40 {
        let outcome = probe.profile(token);
        assert!(outcome.ok(), "{}", outcome.describe());
    }
    let taken = rpc_metric(&stack, "calls_total", &dying) - before;
    assert!(taken >= 10, "the restarted tcpserver took {taken} of 40 calls");
    assert!(rpc_metric(&stack, "calls_total", &survivor) > 0);
    assert!(stack.front_is_running(), "httpserver was never restarted");
}

#[test]
fn readyz_is_ready_while_one_tcpserver_is_and_names_each() {
    let mut stack = Stack::start_with(Options::default().tcpservers(2));
    let [first, second] = [stack.backend_addrs[0].to_string(), stack.backend_addrs[1].to_string()];
    let ready = Http::new(stack.addr).api_get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["data"]["backends"], serde_json::json!({ &first: "up", &second: "up" }));
    stack.kill_backend_at(0);
    // Whichever the check goes to first, it is answered.
    for _ in 0..4 {
        let ready = Http::new(stack.addr).api_get("/readyz");
        assert_eq!(ready.status, 200, "{}", ready.text());
    }
    let ready = Http::new(stack.addr).api_get("/readyz");
    assert_eq!(ready.json()["data"]["backends"], serde_json::json!({ &first: "down", &second: "up" }));
    stack.kill_backend_at(1);
    let down = Http::new(stack.addr).api_get("/readyz");
    assert_eq!(down.status, 503, "{}", down.text());
    assert_eq!(down.json()["data"]["not_ready"], serde_json::json!(["backend"]));
    stack.start_backend_at(1);
    let again = Http::new(stack.addr).api_get("/readyz");
    assert_eq!(again.status, 200, "the first call after a restart finds it: {}", again.text());
}
