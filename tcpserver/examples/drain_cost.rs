//! What moving one log-in record from Redis into MariaDB costs, per record:
//! the drainer's own CPU time, mariadbd's and Redis's, measured around the
//! drain of a queue filled beforehand as fixed log-ins fill it (a few
//! accounts, each always from the same device, so every device is known
//! and only the rows are written). A benchmark, not a test: it isolates the
//! history's work from the log-ins' that `perf/cost.sh history` measures
//! together with it, where the machine's noise is larger than the cost.
//!
//!     cargo run --release -p tcpserver --example drain_cost [RECORDS] [ACCOUNTS] [PASSES]
//!
//! Against the tests' database and MySQL user, found as the tests find them
//! ([`testenv::Services::load`]; `./test.sh` creates them), with accounts
//! and Redis keys of its own, deleted at the end.
//! Run as a user that may read mariadbd's and Redis's `/proc` entries.

use std::fs;
use std::path::Path;
use std::time::Instant;

use mysql::prelude::Queryable;
use tcpserver::db::redis::{Batch, RedisLink, Target};
use tcpserver::history::drain::Drainer;
use tcpserver::history::record::{self, Attempt, Method, Outcome, new_attempt_id};
use tcpserver::keys::{HISTORY_QUEUES, Keys};

/// Records a worker's batch queues at most (as [`tcpserver::queue::MAX_BATCH`]).
const BATCH: usize = tcpserver::queue::MAX_BATCH;

fn main() {
    let mut args = std::env::args().skip(1).map(|arg| arg.parse::<usize>().expect("a number"));
    let records = args.next().unwrap_or(100_000);
    let accounts = args.next().unwrap_or(200).max(1);
    let passes = args.next().unwrap_or(3).max(1);
    let testenv::Services { mysql_url, redis_url, .. } = testenv::Services::load();
    let mysql_opts = mysql::Opts::from_url(&mysql_url).expect("a MySQL URL");
    let mut mysql = mysql::Conn::new(mysql_opts.clone()).expect("MySQL is up");
    let tag = hex::encode(rand::random::<[u8; 4]>());
    let keys = Keys::new(format!("umbench:drain:{tag}:"));
    let target = Target::single(&redis_url).expect("a Redis URL");
    let mut redis = RedisLink::new(target.clone(), 0);
    let ids = make_accounts(&mut mysql, &tag, accounts);
    let mut drainer = Drainer::new(
        tcpserver::db::mysql::options(&mysql_url, None).expect("options"),
        0,
        RedisLink::new(target, 1),
        keys.clone(),
    );
    let mariadbd = pid_of_mariadbd(&mut mysql);
    let redis_server = pid_of_redis(&mut redis);

    // The accounts' devices first, so that every pass writes only rows.
    queue(&mut redis, &keys, &ids, accounts);
    drain(&mut drainer);
    println!("{records} records of {accounts} accounts, {passes} passes; per record:");
    for pass in 1..=passes {
        queue(&mut redis, &keys, &ids, records);
        let before = (thread_cpu_ns(), process_cpu_ns(mariadbd), process_cpu_ns(redis_server));
        let started = Instant::now();
        let rounds = drain(&mut drainer);
        let wall = started.elapsed();
        let after = (thread_cpu_ns(), process_cpu_ns(mariadbd), process_cpu_ns(redis_server));
        let per_record = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 1_000.0 / records as f64;
        println!(
            "  pass {pass}: drainer {:.2} µs, mariadbd {:.2} µs, redis {:.2} µs; {rounds} rounds, {:.0} ms",
            per_record(before.0, after.0),
            per_record(before.1, after.1),
            per_record(before.2, after.2),
            wall.as_secs_f64() * 1e3
        );
    }
    let rows: u64 = mysql
        .exec_first("SELECT COUNT(*) FROM logins WHERE user_id BETWEEN ? AND ?", (ids[0], ids[ids.len() - 1]))
        .expect("count")
        .unwrap_or(0);
    println!("rows written: {rows} (expected {})", accounts + records * passes);
    for id in &ids {
        mysql.exec_drop("DELETE FROM users WHERE id = ?", (id,)).expect("delete an account");
    }
    let mut cleanup = Batch::new();
    for queue in keys.history_queues() {
        cleanup.cmd("DEL").arg(queue);
    }
    redis.run::<()>(&cleanup).expect("delete the queues");
}

/// Accounts named after `tag`, their ids in order.
fn make_accounts(mysql: &mut mysql::Conn, tag: &str, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            mysql
                .exec_drop(
                    "INSERT INTO users (username, nickname) VALUES (?, 'drain bench')",
                    (format!("drainbench_{tag}_{i}"),),
                )
                .expect("an account");
            mysql.last_insert_id()
        })
        .collect()
}

/// Queues `n` successful password log-ins, `BATCH` per queue in turn as
/// workers do, the accounts in turn, each from its own fixed device.
fn queue(redis: &mut RedisLink, keys: &Keys, ids: &[u64], n: usize) {
    let attempts: Vec<Attempt> = (0..n)
        .map(|i| {
            let time_ms = tcpserver::session::unix_now_ms();
            Attempt {
                attempt_id: new_attempt_id(time_ms),
                time_ms,
                user_id: ids[i % ids.len()],
                username: String::new(),
                ip: "127.0.0.1".into(),
                browser: "Other".into(),
                os: "Other".into(),
                method: Method::Password,
                outcome: Outcome::Success,
                session: hex::encode(rand::random::<[u8; 16]>()),
            }
        })
        .collect();
    for (i, chunk) in attempts.chunks(BATCH * HISTORY_QUEUES).enumerate() {
        let mut batch = Batch::new();
        for (q, records) in chunk.chunks(BATCH).enumerate() {
            record::queue_on(&mut batch, &keys.history_queue((i + q) % HISTORY_QUEUES), records);
        }
        redis.run::<Vec<u64>>(&batch).expect("queue the records");
    }
}

/// Drains until a round moves nothing; returns the rounds that moved records.
fn drain(drainer: &mut Drainer) -> usize {
    let mut rounds = 0;
    while drainer.round().expect("a round").moved > 0 {
        rounds += 1;
    }
    rounds
}

fn pid_of_mariadbd(mysql: &mut mysql::Conn) -> u32 {
    let file: String = mysql.query_first("SELECT @@pid_file").expect("pid_file").expect("a pid file");
    fs::read_to_string(&file).expect("mariadbd's pid file is readable").trim().parse().expect("a pid")
}

fn pid_of_redis(redis: &mut RedisLink) -> u32 {
    let mut info = Batch::new();
    info.cmd("INFO").arg("server");
    let text: String = redis.run::<Vec<String>>(&info).expect("INFO").concat();
    text.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("process_id")
        .trim()
        .parse()
        .expect("a pid")
}

/// CPU time of this thread, in ns (the drainer runs on it).
fn thread_cpu_ns() -> u64 {
    schedstat_ns(Path::new("/proc/thread-self/schedstat"))
}

/// CPU time of every thread of `pid` so far, in ns.
fn process_cpu_ns(pid: u32) -> u64 {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads are readable");
    tasks.filter_map(Result::ok).map(|task| schedstat_ns(&task.path().join("schedstat"))).sum()
}

/// The first field of a `schedstat` file: time on a CPU, in ns (0 for a
/// thread that ended meanwhile).
fn schedstat_ns(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(0)
}
