//! Losing a Redis Cluster master under load: profile reads of sessions made
//! before the loss fail only while the master's replica is promoted, fail
//! quickly (503, within the client's timeouts), and every one of those
//! sessions works again afterwards, on the promoted replica. And losing the
//! node the scan-to-log-in subscriber listens on costs a parked wait nothing:
//! the subscriber moves to another node.
//!
//! Each test has a cluster of its own (it kills a node), started by
//! `scripts/redis-cluster.sh` with its default node timeout, so the window
//! printed (`-- --nocapture`) is the one the README states.

mod util;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use proto::{ErrorCode, Message, Secret};
use util::cluster::TestCluster;
use util::{Options, TestServer};

const PASSWORD: &str = "correct horse battery";

/// Reading threads, each with its own connection.
const READERS: usize = 4;

/// The longest a read may take during the failover: the cluster client's
/// response timeout (1 s) and a reconnection, with room for a loaded machine.
const MAX_FAILED_READ: Duration = Duration::from_millis(3_500);

/// One profile read: when it was sent, how long it took, how it ended.
#[derive(Debug, Clone)]
struct Read {
    at: Instant,
    took: Duration,
    token: usize,
    outcome: Result<(), ErrorCode>,
}

#[test]
fn a_killed_master_fails_reads_only_while_its_replica_takes_over() {
    let cluster = TestCluster::private();
    let server = TestServer::start_with(Options::on_nodes(cluster.nodes()));
    let mut setup = server.connect();
    // Accounts enough that their sessions sit on every master.
    let tokens: Vec<Secret> =
        (0..24).map(|i| server.user_with_session(&mut setup, &format!("fo{i}"), PASSWORD).1).collect();
    let keys = server.keys();
    let victim = cluster.master_of(&tcpserver::session::storage_key(&keys, tokens[0].expose()).unwrap());
    let on_victim: Vec<usize> = (0..tokens.len())
        .filter(|&i| {
            cluster.master_of(&tcpserver::session::storage_key(&keys, tokens[i].expose()).unwrap()) == victim
        })
        .collect();
    // Replication is asynchronous: what is a second old is on the replica.
    thread::sleep(Duration::from_millis(1_500));

    let tokens = Arc::new(tokens);
    let reads: Arc<Mutex<Vec<Read>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (tokens, reads, stop) = (Arc::clone(&tokens), Arc::clone(&reads), Arc::clone(&stop));
            let mut client = server.connect();
            thread::spawn(move || {
                let mut i = r;
                while !stop.load(Ordering::SeqCst) {
                    let token = i % tokens.len();
                    let at = Instant::now();
                    let reply =
                        client.call(Message::GetProfile { token: tokens[token].clone(), username: None });
                    let outcome = match reply {
                        Message::ProfileReply(_) => Ok(()),
                        Message::Error(e) => Err(e.code),
                        other => panic!("unexpected reply {other:?}"),
                    };
                    reads.lock().unwrap().push(Read { at, took: at.elapsed(), token, outcome });
                    i += READERS;
                    thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();

    thread::sleep(Duration::from_secs(2));
    let pid = cluster.pid(victim).expect("the master's pid");
    let killed_at = Instant::now();
    // SAFETY: kill(2) on the pid the test cluster's node wrote.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);

    // Until every session on the victim has been read again, then 2 s more.
    let deadline = killed_at + Duration::from_secs(60);
    let recovered_at = loop {
        assert!(
            Instant::now() < deadline,
            "reads of the killed master's sessions (on {victim}) never came back:\n{}",
            cluster.describe()
        );
        thread::sleep(Duration::from_millis(100));
        let reads = reads.lock().unwrap();
        let last_failure = reads.iter().filter(|r| r.outcome.is_err()).map(|r| r.at).max();
        let since = last_failure.unwrap_or(killed_at).max(killed_at);
        let all_read_since = on_victim
            .iter()
            .all(|t| reads.iter().any(|r| r.token == *t && r.at > since && r.outcome.is_ok()));
        if last_failure.is_some() && all_read_since {
            break since;
        }
    };
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.join().expect("reader thread");
    }
    let reads = reads.lock().unwrap().clone();

    let before: Vec<&Read> = reads.iter().filter(|r| r.at + r.took < killed_at).collect();
    assert!(!before.is_empty() && before.iter().all(|r| r.outcome.is_ok()), "reads failed before the kill");
    let failed: Vec<&Read> = reads.iter().filter(|r| r.outcome.is_err()).collect();
    for read in &failed {
        assert_eq!(read.outcome, Err(ErrorCode::Unavailable), "a failed read is a 503: {read:?}");
        assert!(read.took < MAX_FAILED_READ, "a failed read took {:?}", read.took);
        assert!(read.at + read.took >= killed_at, "failed before the kill: {read:?}");
    }
    let after: Vec<&Read> = reads.iter().filter(|r| r.at > recovered_at).collect();
    assert!(after.iter().all(|r| r.outcome.is_ok()), "reads failed after the failover");
    let window = recovered_at.duration_since(killed_at);
    let other_failures = failed.iter().filter(|r| !on_victim.contains(&r.token)).count();
    println!(
        "Redis failover window: {:.1} s from SIGKILL of the master to the last failed read; \
         {} of {} reads failed ({} of sessions on other masters), the slowest failure took {:?}",
        window.as_secs_f64(),
        failed.len(),
        reads.len(),
        other_failures,
        failed.iter().map(|r| r.took).max().unwrap_or_default(),
    );
    assert!(cluster.masters().len() == 3, "the replica is a master now: {:?}", cluster.masters());

    // Every session made before the kill works, on the promoted replica.
    let mut check = server.connect();
    for token in tokens.iter() {
        let reply = check.call(Message::GetProfile { token: token.clone(), username: None });
        assert!(matches!(reply, Message::ProfileReply(_)), "a session from before the kill: {reply:?}");
    }
    // The killed node comes back as a replica; the sessions still work.
    cluster.restart_down_nodes();
    for token in tokens.iter() {
        assert!(matches!(
            check.call(Message::GetProfile { token: token.clone(), username: None }),
            Message::ProfileReply(_)
        ));
    }
}

/// The scan-to-log-in subscriber's node dies: the subscriber moves to
/// another node, and an approval made after that still reaches a wait
/// parked before it, through the new subscription (long before the wait's
/// own deadline).
#[test]
fn a_qr_wait_is_answered_after_the_subscribers_node_dies() {
    let cluster = TestCluster::private();
    let masters = cluster.masters();
    let replica = cluster
        .nodes()
        .iter()
        .filter_map(|n| n.rsplit(':').next()?.parse::<u16>().ok())
        .find(|port| !masters.contains(port))
        .expect("a replica");
    // The subscriber takes the first node listed: a replica, so that
    // killing it costs the cluster no slot.
    let mut nodes = vec![format!("127.0.0.1:{replica}")];
    nodes.extend(cluster.nodes().into_iter().filter(|n| !n.ends_with(&format!(":{replica}"))));
    let server = TestServer::start_with(Options::on_nodes(nodes));
    let mut phone = server.connect();
    let (_, token) = server.user_with_session(&mut phone, "qrsub", PASSWORD);
    let mut desktop = server.connect();
    let (key, binding) = match desktop.call(Message::QrCreate { user_agent: "test".into(), client: None }) {
        Message::QrCreated { key, binding, .. } => (key, binding),
        other => panic!("no code: {other:?}"),
    };
    let id = desktop.send(Message::QrWait {
        key: key.clone(),
        binding,
        seen: proto::QrState::Pending,
        wait_ms: 25_000,
        client: None,
    });
    // Parked (the wait is not answered), then the subscriber's node goes.
    thread::sleep(Duration::from_millis(500));
    let pid = cluster.pid(replica).expect("the replica's pid");
    // SAFETY: kill(2) on the pid the test cluster's node wrote.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    // Time to notice and subscribe elsewhere (a reconnection takes 250 ms).
    thread::sleep(Duration::from_secs(2));
    let approved_at = Instant::now();
    let decided = phone.call(Message::QrDecide { token, key, approve: true, client: None });
    assert_eq!(decided, Message::QrDecided { state: proto::QrState::Confirmed });
    let frame = desktop.recv();
    assert_eq!(frame.request_id, id);
    assert!(
        matches!(frame.message, Message::QrStatus { state: proto::QrState::Confirmed, token: Some(_), .. }),
        "{:?}",
        frame.message
    );
    assert!(approved_at.elapsed() < Duration::from_secs(5), "answered after {:?}", approved_at.elapsed());
    assert!(server.stderr().contains("scan-to-log-in announcements"), "the subscriber noticed its node go");
}
