//! The fleet (`./run.sh cluster`'s topology) under failure: a small copy of it,
//! started once for this file by `scripts/cluster/fleet.sh` (see
//! `util::fleet`), with load through its edge while one process is killed
//! with SIGKILL and then started again.
//!
//! Each test that breaks something holds [`Fleet::exclusive`], waits until the
//! fleet is whole, and leaves it whole.

mod util;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use util::fleet::load::{
    Op, Outcome, PASSWORD, Sent, load_across_kill, load_users, mixed_load, sign_up_load, summary,
};
use util::fleet::processes::{Spawned, cmdline, environ, spawn, with_flag};
use util::fleet::{self, Fleet};
use util::random_hex;
use util::services::signal;

/// What the issue asks of a Galera failover: writes resume within this long.
const WRITE_FAILOVER_BOUND: Duration = Duration::from_secs(10);

/// How long a restarted Galera node may take to be Synced again (IST, or a
/// full copy of the small test database on a loaded machine).
const REJOIN_BOUND: Duration = Duration::from_secs(120);

/// SIGKILL of the Galera node taking writes, under a steady load of sign-ups
/// through the edge: HAProxy's check sees it gone and sends new connections to
/// the next node; the survivors wait out Galera's suspect timeout and go on as
/// a cluster of two. Writes resume within ten seconds, requests fail only in
/// that window and never with a 500, every acknowledged sign-up is in the
/// database, and the node, started again (nothing else is), rejoins and holds
/// them too.
#[test]
fn killing_the_galera_write_node_moves_writes_within_ten_seconds_and_it_rejoins() {
    let fleet = Fleet::get();
    let _only_us = fleet.exclusive();
    fleet.make_whole(REJOIN_BOUND);
    let writer = fleet.writer();
    let node = format!("galera/node{writer}/node");
    let victim = fleet.pid(&node);
    let others: Vec<(String, u32)> =
        ["tcpserver1", "tcpserver2", "httpserver1", "httpserver2", "haproxy/haproxy"]
            .iter()
            .map(|s| s.to_string())
            .chain((1..=3).filter(|&n| n != writer).map(|n| format!("galera/node{n}/node")))
            .map(|name| {
                let pid = fleet.pid(&name);
                (name, pid)
            })
            .collect();

    let stop = AtomicBool::new(false);
    let (outcomes, killed_at) = thread::scope(|s| {
        let load = s.spawn(|| sign_up_load(fleet.edge, 2, &stop));
        thread::sleep(Duration::from_secs(2));
        signal(victim, libc::SIGKILL);
        let killed_at = Instant::now();
        thread::sleep(WRITE_FAILOVER_BOUND + Duration::from_secs(5));
        stop.store(true, Ordering::SeqCst);
        (load.join().expect("load"), killed_at)
    });

    let before: Vec<&Outcome> = outcomes.iter().filter(|o| o.done < killed_at).collect();
    assert!(
        !before.is_empty() && before.iter().all(|o| o.status == Some(201)),
        "before the kill: {before:?}"
    );
    let resumed = outcomes
        .iter()
        .filter(|o| o.sent > killed_at && o.status == Some(201))
        .map(|o| o.done - killed_at)
        .min()
        .unwrap_or_else(|| panic!("no write succeeded after the kill:\n{}", fleet.status()));
    let failed: Vec<Option<u16>> = outcomes.iter().map(|o| o.status).filter(|s| *s != Some(201)).collect();
    eprintln!(
        "writes resumed {:.1} s after the kill of node {writer}; {} of {} sign-ups failed: {failed:?}",
        resumed.as_secs_f64(),
        failed.len(),
        outcomes.len()
    );
    assert!(resumed <= WRITE_FAILOVER_BOUND, "writes resumed only after {resumed:?}");
    for o in &outcomes {
        match o.status {
            Some(201) => {}
            // Only in the failover window, and only as "unavailable / timed
            // out": a 500 (an unhandled conflict) or a 409 (a sign-up applied
            // twice) would be bugs at any time.
            Some(502..=504) | None => assert!(
                o.sent < killed_at + WRITE_FAILOVER_BOUND,
                "a request sent {:?} after the kill failed: {o:?}",
                o.sent.saturating_duration_since(killed_at)
            ),
            _ => panic!("unexpected answer: {o:?}"),
        }
    }

    let acknowledged: Vec<String> = {
        let mut names: Vec<String> =
            outcomes.iter().filter(|o| o.status == Some(201)).map(|o| o.username.clone()).collect();
        names.sort();
        names
    };
    assert_eq!(fleet.stored_usernames(fleet.mysql_proxy_port(), &acknowledged), acknowledged);

    let restarted_at = Instant::now();
    fleet.restart_missing();
    fleet.wait_galera_synced(REJOIN_BOUND);
    eprintln!(
        "node {writer} was Synced again {:.1} s after fleet.sh start",
        restarted_at.elapsed().as_secs_f64()
    );
    assert_ne!(fleet.pid(&node), victim, "the killed node was started again");
    for (name, pid) in &others {
        assert_eq!(fleet.pid(name), *pid, "{name} was restarted, but only the killed node should be");
    }
    assert_eq!(
        fleet.stored_usernames(fleet.galera_port(writer), &acknowledged),
        acknowledged,
        "the rejoined node has every acknowledged sign-up"
    );
}

/// A tcpserver whose MySQL is Galera node `node` itself (not HAProxy), and an
/// httpserver in front of it, both with the fleet's settings otherwise.
fn pair_on_node(fleet: &Fleet, node: u32, dir: &Path) -> (Vec<Spawned>, SocketAddr) {
    let (tcp_pid, http_pid) = (fleet.pid("tcpserver1"), fleet.pid("httpserver1"));
    let tcp = cmdline(tcp_pid);
    let tcp = with_flag(tcp, "--listen", Some("127.0.0.1:0"));
    let tcp = with_flag(tcp, "--metrics-listen", Some("off"));
    let tcp = with_flag(
        tcp,
        "--mysql-url",
        Some(&format!("mysql://usermgmt@127.0.0.1:{}/usermgmt", fleet.galera_port(node))),
    );
    let (tcp_child, tcp_addr) = spawn(&tcp, environ(tcp_pid), &dir.join(format!("tcpserver-node{node}.log")));
    let http = cmdline(http_pid);
    let http = with_flag(http, "--listen", Some("127.0.0.1:0"));
    let http = with_flag(http, "--trusted-proxy", None);
    let http = with_flag(http, "--backend", Some(&tcp_addr.to_string()));
    let (http_child, http_addr) =
        spawn(&http, environ(http_pid), &dir.join(format!("httpserver-node{node}.log")));
    (vec![http_child, tcp_child], http_addr)
}

/// The same username signed up at the same moment through two tcpservers
/// whose MySQL connections go to two different Galera nodes: each node's
/// insert succeeds locally, and the conflict shows only at COMMIT, as a
/// certification failure (error 1213) on one of them, which tcpserver runs
/// again as a whole and which then meets the other's row. One 201 and one
/// 409, one account, never two, never a 500.
#[test]
fn one_username_signed_up_at_once_through_two_galera_nodes_is_created_once() {
    let fleet = Fleet::get();
    let _only_us = fleet.exclusive();
    fleet.make_whole(REJOIN_BOUND);
    let dir = fleet.dir.join(format!("race-{}", random_hex(6)));
    fs::create_dir_all(&dir).expect("scratch dir");
    let (_a, front_a) = pair_on_node(fleet, 2, &dir);
    let (_b, front_b) = pair_on_node(fleet, 3, &dir);

    let conflicts_before = fleet.conflicts(2) + fleet.conflicts(3);
    let prefix = format!("r{}", random_hex(6));
    let names: Vec<String> = (0..20).map(|i| format!("{prefix}.{i}")).collect();
    for name in &names {
        let barrier = Arc::new(Barrier::new(2));
        let answers: Vec<Option<u16>> = [front_a, front_b]
            .into_iter()
            .map(|front| {
                let (barrier, name) = (Arc::clone(&barrier), name.clone());
                thread::spawn(move || {
                    barrier.wait();
                    fleet::sign_up(front, &name, PASSWORD)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().expect("sign-up thread"))
            .collect();
        let mut sorted = answers.clone();
        sorted.sort();
        assert_eq!(sorted, [Some(201), Some(409)], "{name}: {answers:?}");
    }
    // Which path each race took is the servers' business; that the conflict
    // path was taken at all is what makes this test mean something.
    let conflicts = fleet.conflicts(2) + fleet.conflicts(3) - conflicts_before;
    eprintln!("{conflicts} Galera conflicts (certification failures, aborts) in {} races", names.len());
    assert!(conflicts > 0, "no race met a conflict: the test did not test the retry");
    let mut conn = fleet.mysql(fleet.mysql_proxy_port()).expect("MySQL");
    let counts: Vec<(String, u64)> = mysql::prelude::Queryable::exec(
        &mut conn,
        "SELECT username, COUNT(*) FROM users WHERE username LIKE ? GROUP BY username",
        (format!("{prefix}.%"),),
    )
    .expect("count");
    assert_eq!(counts.len(), names.len(), "{counts:?}");
    assert!(counts.iter().all(|(_, n)| *n == 1), "{counts:?}");
    let _ = fs::remove_dir_all(&dir);
}

/// The pids of the fleet's processes but `except`, to check that a restart
/// started only the killed one.
fn pids_but(fleet: &Fleet, except: &str) -> Vec<(String, u32)> {
    ["tcpserver1", "tcpserver2", "httpserver1", "httpserver2", "haproxy/haproxy"]
        .into_iter()
        .map(str::to_owned)
        .chain((1..=3).map(|n| format!("galera/node{n}/node")))
        .chain(fleet.redis_ports().map(|port| format!("redis/{port}/redis")))
        .filter(|name| name != except)
        .map(|name| {
            let pid = fleet.pid(&name);
            (name, pid)
        })
        .collect()
}

/// SIGKILL of one tcpserver under the mixed load through the edge: the
/// httpservers notice at once and send everything to the other one. No
/// profile read fails (a read that was in flight is sent again: it is
/// idempotent); every write is either acknowledged and stored once, or
/// answered 503 and not stored; requests sent a second after the kill all
/// succeed. Started again (nothing else is), it takes load again.
#[test]
fn killing_a_tcpserver_fails_no_profile_read_and_no_write_is_lost_or_doubled() {
    let fleet = Fleet::get();
    let _only_us = fleet.exclusive();
    fleet.make_whole(REJOIN_BOUND);
    let users = load_users(fleet.edge, 4);
    let victim = fleet.pid("tcpserver1");
    let others = pids_but(fleet, "tcpserver1");
    let (sent, killed_at, _) =
        load_across_kill(fleet, &users, victim, None, Duration::from_secs(2), Duration::from_secs(5));
    eprintln!("tcpserver1 killed: {}", summary(&sent));

    let failed_reads: Vec<&Sent> =
        sent.iter().filter(|s| s.op == Op::ProfileRead && !s.succeeded()).collect();
    assert!(failed_reads.is_empty(), "profile reads failed: {failed_reads:?}");
    for s in &sent {
        assert!(s.succeeded() || s.status == Some(503), "neither done nor 503: {s:?}");
        assert!(
            s.succeeded() || s.sent < killed_at + Duration::from_secs(1),
            "failed {:?} after the kill: {s:?}",
            s.sent.saturating_duration_since(killed_at)
        );
    }
    let signed_up: Vec<&Sent> = sent.iter().filter(|s| s.op == Op::SignUp).collect();
    let names: Vec<String> = signed_up.iter().map(|s| s.key.clone()).collect();
    let stored = fleet.stored_usernames(fleet.mysql_proxy_port(), &names);
    for s in &signed_up {
        assert_eq!(stored.contains(&s.key), s.succeeded(), "stored exactly when acknowledged: {s:?}");
    }
    // A nickname change bumps its user's version once: the version is the
    // number of changes applied, which must be the number acknowledged.
    let mut conn = fleet.mysql(fleet.mysql_proxy_port()).expect("MySQL");
    for (u, user) in users.iter().enumerate() {
        let acknowledged =
            sent.iter().filter(|s| s.user == u && s.op == Op::NicknameChange && s.succeeded()).count() as u64;
        let version: Option<u64> = mysql::prelude::Queryable::exec_first(
            &mut conn,
            "SELECT version FROM users WHERE username = ?",
            (&user.username,),
        )
        .expect("version");
        assert_eq!(
            version,
            Some(acknowledged),
            "{}: nickname changes applied vs acknowledged",
            user.username
        );
    }

    fleet.restart_missing();
    assert_ne!(fleet.pid("tcpserver1"), victim);
    for (name, pid) in &others {
        assert_eq!(fleet.pid(name), *pid, "{name} was restarted, but only tcpserver1 should be");
    }
    let stop = AtomicBool::new(false);
    let after = thread::scope(|s| {
        let load = s.spawn(|| mixed_load(fleet.edge, &users, &stop));
        thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::SeqCst);
        load.join().expect("load")
    });
    assert!(after.iter().all(Sent::succeeded), "after the restart: {}", summary(&after));
    let sessions = fleet::metric(fleet.tcpserver_metrics(1), "usermgmt_sessions_created_total");
    assert!(sessions.is_some_and(|n| n > 0), "the restarted tcpserver took no log-ins: {sessions:?}");
}

/// SIGKILL of one httpserver under the mixed load: HAProxy retries a refused
/// connection on the other one and its check takes the dead one out, so only
/// the requests in flight on it at that instant may fail. Started again
/// (nothing else is), it is checked back in and takes requests again.
#[test]
fn killing_an_httpserver_fails_only_what_was_in_flight_on_it() {
    let fleet = Fleet::get();
    let _only_us = fleet.exclusive();
    fleet.make_whole(REJOIN_BOUND);
    let users = load_users(fleet.edge, 4);
    let victim = fleet.pid("httpserver1");
    let others = pids_but(fleet, "httpserver1");
    let (sent, killed_at, gone_at) = load_across_kill(
        fleet,
        &users,
        victim,
        Some(fleet.httpserver_addr(1)),
        Duration::from_secs(2),
        Duration::from_secs(4),
    );
    eprintln!(
        "httpserver1 killed: {}; its port refused connections {:?} after the signal",
        summary(&sent),
        gone_at - killed_at
    );
    for s in &sent {
        // Sent before the dead process's sockets were gone, answered after the signal.
        let in_flight = s.sent <= gone_at && s.done >= killed_at;
        assert!(
            s.succeeded() || in_flight,
            "failed, not in flight at the kill (sent {:?} after the signal, its port gone {:?} after it): {s:?}",
            s.sent.saturating_duration_since(killed_at),
            gone_at - killed_at
        );
    }

    let log = fleet.dir.join("logs/httpserver1.log");
    fleet.restart_missing();
    assert_ne!(fleet.pid("httpserver1"), victim);
    for (name, pid) in &others {
        assert_eq!(fleet.pid(name), *pid, "{name} was restarted, but only httpserver1 should be");
    }
    let logged_before = fs::read_to_string(&log).unwrap_or_default().matches("route=/profile").count();
    let stop = AtomicBool::new(false);
    let after = thread::scope(|s| {
        let load = s.spawn(|| mixed_load(fleet.edge, &users, &stop));
        thread::sleep(Duration::from_secs(4));
        stop.store(true, Ordering::SeqCst);
        load.join().expect("load")
    });
    assert!(after.iter().all(Sent::succeeded), "after the restart: {}", summary(&after));
    let logged_after = fs::read_to_string(&log).unwrap_or_default().matches("route=/profile").count();
    assert!(logged_after > logged_before, "the restarted httpserver answered no profile read");
}

/// How long a Redis master's slots may be unserved after it dies: the
/// cluster's node timeout (`scripts/redis-cluster.sh`, 5 s), the replica's
/// election, and the clients' rediscovery of the slot map, with room for a
/// loaded machine.
const REDIS_FAILOVER_BOUND: Duration = Duration::from_secs(15);

/// A request that fails while Redis fails over must say so quickly: within
/// this, not after hanging on the dead node.
const QUICK_FAILURE: Duration = Duration::from_secs(3);

/// SIGKILL of a Redis master under the mixed load: its replica is promoted,
/// requests whose keys are on its slots fail with 503, quickly, only during
/// the failover window (measured, and bounded), and the sessions made before
/// the kill still work afterwards. Started again (nothing else is), the old
/// master rejoins as a replica.
#[test]
fn killing_a_redis_master_fails_requests_quickly_and_only_during_its_failover() {
    let fleet = Fleet::get();
    let _only_us = fleet.exclusive();
    fleet.make_whole(REJOIN_BOUND);
    let users = load_users(fleet.edge, 4);
    let port = fleet.redis_master();
    let node = format!("redis/{port}/redis");
    let victim = fleet.pid(&node);
    let others = pids_but(fleet, "");
    // The sessions of `users` are more than a second old at the kill.
    let (sent, killed_at, _) =
        load_across_kill(fleet, &users, victim, None, Duration::from_secs(2), REDIS_FAILOVER_BOUND);
    eprintln!("Redis master {port} killed: {}", summary(&sent));

    let failed: Vec<&Sent> = sent.iter().filter(|s| !s.succeeded()).collect();
    for s in &failed {
        assert_eq!(s.status, Some(503), "a failure other than 503: {s:?}");
        assert!(s.done - s.sent <= QUICK_FAILURE, "a 503 that took {:?}: {s:?}", s.done - s.sent);
        assert!(s.done >= killed_at, "failed before the kill: {s:?}");
    }
    if let Some(last) = failed.iter().map(|s| s.done).max() {
        let window = last - killed_at;
        eprintln!("requests failed for {:.1} s after the kill", window.as_secs_f64());
        assert!(window < REDIS_FAILOVER_BOUND, "still failing {window:?} after the kill");
    }
    for user in &users {
        let auth = format!("Bearer {}", user.token);
        let status = fleet::request_status(
            fleet.edge,
            "GET",
            "/profile",
            &[("Accept", "application/json"), ("Authorization", &auth)],
            b"",
        );
        assert_eq!(status, Some(200), "the session of {} made before the kill", user.username);
    }

    fleet.restart_missing();
    assert_ne!(fleet.pid(&node), victim);
    for (name, pid) in &others {
        if *name != node {
            assert_eq!(fleet.pid(name), *pid, "{name} was restarted, but only the Redis node should be");
        }
    }
    assert_eq!(fleet.redis_role(port).as_deref(), Some("slave"), "the old master rejoined as a replica");
}
