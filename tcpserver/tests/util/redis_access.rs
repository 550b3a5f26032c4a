//! Direct access to the tests' Redis, a single one or a cluster, for
//! checking what a server stored and cleaning up after it.

/// A direct connection to the tests' Redis, either kind; commands go through
/// [`redis::ConnectionLike`] as on a plain connection (on a cluster, each is
/// routed by its key).
pub enum TestRedis {
    /// The single Redis.
    Single(redis::Connection),
    /// The cluster, and its nodes (for SCAN, which runs per node).
    Cluster(Box<redis::cluster::ClusterConnection>, Vec<String>),
}

impl redis::ConnectionLike for TestRedis {
    fn req_packed_command(&mut self, cmd: &[u8]) -> redis::RedisResult<redis::Value> {
        match self {
            TestRedis::Single(c) => c.req_packed_command(cmd),
            TestRedis::Cluster(c, _) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            TestRedis::Single(c) => c.req_packed_commands(cmd, offset, count),
            TestRedis::Cluster(c, _) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            TestRedis::Single(c) => c.get_db(),
            TestRedis::Cluster(c, _) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            TestRedis::Single(c) => c.check_connection(),
            TestRedis::Cluster(c, _) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            TestRedis::Single(c) => c.is_open(),
            TestRedis::Cluster(c, _) => c.is_open(),
        }
    }
}

/// Every key under a prefix (SCAN, never KEYS; on a cluster, on every master).
pub fn redis_keys(redis: &mut TestRedis, prefix: &str) -> Vec<String> {
    match redis {
        TestRedis::Single(c) => scan(c, prefix),
        TestRedis::Cluster(_, nodes) => {
            let mut keys = Vec::new();
            for node in nodes.iter() {
                let Ok(mut c) =
                    redis::Client::open(format!("redis://{node}/")).and_then(|c| c.get_connection())
                else {
                    continue;
                };
                // Replicas hold copies of their masters' keys.
                let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).unwrap_or_default();
                if matches!(role.first(), Some(redis::Value::BulkString(r)) if r == b"master") {
                    keys.extend(scan(&mut c, prefix));
                }
            }
            keys
        }
    }
}

/// Deletes every key under a prefix, one at a time (a cluster refuses a
/// `DEL` of keys in several slots).
pub fn delete_keys(redis: &mut TestRedis, prefix: &str) {
    for key in redis_keys(redis, prefix) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(&key).query(redis);
    }
}

fn scan(redis: &mut redis::Connection, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(redis)
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}
