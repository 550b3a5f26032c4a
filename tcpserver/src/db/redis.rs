//! One worker's Redis connection: to a single Redis or to a Redis Cluster.
//!
//! Like [`super::mysql`], the connection is made on first use and replaced
//! when it breaks. The services send every command as a [`Batch`] through
//! [`RedisLink::run`] and never see which kind of Redis is behind it
//! ([`Target`]): a single node (`--redis-url`) gets one pipeline, a cluster
//! (`--redis-cluster`) one pipeline per node, written to all nodes before any
//! reply is read, so a batch costs one round trip on either. The key layout
//! ([`crate::keys`]) is the same for both: every script and every
//! multi-key command touches keys of one hash slot.
//!
//! **The cluster client's settings** (the `redis` crate's defaults are 16
//! retries with waits up to 655 s and no response timeout, which would hang
//! a worker on a dead master): connections time out after
//! [`CONNECT_TIMEOUT`], replies after [`CLUSTER_RESPONSE_TIMEOUT`], and a
//! redirected or refused command is tried at most [`CLUSTER_RETRIES`] more
//! times, [`CLUSTER_MIN_RETRY_WAIT_MS`]..[`CLUSTER_MAX_RETRY_WAIT_MS`] apart.
//! While a dead master's replica is being promoted its slots answer with an
//! error within about a second at worst (at once when the process is gone and
//! its port refuses), the request gets 503, and the other masters' slots go
//! on serving (`cluster-require-full-coverage no`, scripts/redis-cluster.sh).
//!
//! **After an error the cluster connection is thrown away whole.** The
//! crate's cluster pipeline writes each node's part before reading any
//! reply; if one node fails, the replies of the others may be left unread on
//! their sockets, and a later batch would read them as its own. So any error
//! that is not a plain refusal of one command drops every node connection,
//! and the next batch connects again (a `CLUSTER SLOTS` and one connection
//! per node: about a millisecond here), learning the new topology.
//!
//! **What a batch that failed halfway leaves behind.** On a cluster one node
//! may fail after the others ran their part of a batch; the worker then
//! answers the batch's requests 503. Per operation, what stays and why it is
//! harmless:
//!
//! | operation | left behind | why it does no harm |
//! |---|---|---|
//! | log-in lookup ([`crate::login_record::lookup`]) | the attempt's in-flight places in the counters of the slots that answered | an in-flight place only ever refuses more, and is purged after [`crate::throttle::IN_FLIGHT_MAX_MS`] |
//! | session opening ([`crate::login_session`]) | a session, its metadata and index entry, counted as a log-in | the token was never sent, so nobody can use it; it expires, and the cap treats it as any other |
//! | history queueing | a record of a log-in answered 503 | shows as an attempt in the history; the drainer inserts each attempt id once |
//! | counters marked failed / released | a failure not marked (stays in flight until purged) or a place not released | only ever refuses more, for a bounded time |
//! | profile cache writes | the entry not written | the change is not acknowledged and the owed write is kept (`unsynced`) |
//! | session resume, reads | a refreshed idle timer | none |
//!
//! **When a whole batch is sent twice.** When a connection that was idle
//! turns out to be dead (a restart, an idle timeout), the batch is sent once
//! more on a new one; it may have run before the connection died. On a
//! cluster, also when a node refused part of a pipeline without running it
//! (`NOSCRIPT`, `MOVED`, ...): the other nodes ran theirs. Every operation
//! here survives that: counters count unique members, and a resent
//! reservation finds its own places and is judged as the first time (the
//! success counts add only when their in-flight member leaves), sessions,
//! records and fences are sets of fixed values, cache writes are
//! version-guarded, history records carry a unique attempt id, and the
//! drainer's trim checks what it trims. The one visible effect: a repeated
//! scan-to-log-in decision or redemption finds its own first run and answers
//! "already used" (no second session is opened).

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection, cluster_pipe};
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo, SingleNodeRoutingInfo};
use redis::{Client, ConnectionLike, RedisResult, ServerErrorKind, Value};

pub use super::redis_batch::{Batch, LuaScript};
use super::redis_batch::{compose, is_redoable};
use super::{CONNECT_TIMEOUT, IO_TIMEOUT, Reconnecting};
use crate::metrics::Dependency;

/// How long a cluster node may take to answer. Every command here is a
/// point operation or a small script that Redis runs in microseconds; a
/// second of silence means the node is gone or cut off, and the batch fails
/// (503) rather than hold the worker while the cluster fails over.
pub const CLUSTER_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Further tries of a redirected (`MOVED`, `ASK`) or refused (`TRYAGAIN`,
/// `CLUSTERDOWN`) command: enough to follow a failover that completed, few
/// enough that one that has not costs well under a second.
pub const CLUSTER_RETRIES: u32 = 3;

/// Shortest wait between two tries of one command, in milliseconds.
pub const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 10;

/// Longest wait between two tries of one command, in milliseconds: three
/// tries wait at most 300 ms together.
pub const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 100;

/// Most nodes `--redis-cluster` may list (a cluster finds the rest itself).
pub const MAX_CLUSTER_NODES: usize = 64;

/// Where Redis is: one server, or the nodes of a cluster.
#[derive(Clone)]
pub enum Target {
    /// A single Redis (`--redis-url`).
    Single(Client),
    /// A Redis Cluster (`--redis-cluster`): the client, and the node URLs it was given.
    Cluster(ClusterClient, Vec<String>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Single(client) => write!(f, "Target::Single({:?})", client.get_connection_info().addr()),
            Target::Cluster(_, nodes) => write!(f, "Target::Cluster({nodes:?})"),
        }
    }
}

impl Target {
    /// A single Redis at `url`.
    ///
    /// # Errors
    ///
    /// The parse error if the URL is not one.
    pub fn single(url: &str) -> RedisResult<Target> {
        Ok(Target::Single(Client::open(url)?))
    }

    /// A cluster reached through any of `nodes` (`host:port` each), with
    /// bounded timeouts and retries (see the module documentation).
    ///
    /// # Errors
    ///
    /// The error if an address does not parse.
    pub fn cluster(nodes: &[String]) -> RedisResult<Target> {
        let urls: Vec<String> = nodes.iter().map(|node| format!("redis://{node}/")).collect();
        let client = ClusterClient::builder(urls.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(CLUSTER_RESPONSE_TIMEOUT)
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
            .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
            .build()?;
        Ok(Target::Cluster(client, urls))
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(..))
    }

    /// A client for each node given (the one for a single Redis), for
    /// connections of one's own such as the pub/sub subscriber
    /// ([`crate::qr_events`]).
    pub fn node_clients(&self) -> Vec<Client> {
        match self {
            Target::Single(client) => vec![client.clone()],
            Target::Cluster(_, urls) => {
                urls.iter().filter_map(|url| Client::open(url.as_str()).ok()).collect()
            }
        }
    }

    fn connect(&self) -> RedisResult<Conn> {
        match self {
            Target::Single(client) => {
                let conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
                conn.set_read_timeout(Some(IO_TIMEOUT))?;
                conn.set_write_timeout(Some(IO_TIMEOUT))?;
                Ok(Conn::Single(conn))
            }
            Target::Cluster(client, _) => {
                let conn = client.get_connection()?;
                conn.set_write_timeout(Some(CLUSTER_RESPONSE_TIMEOUT))?;
                Ok(Conn::Cluster(Box::new(conn)))
            }
        }
    }
}

/// An open connection of either kind.
enum Conn {
    Single(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn as_dyn(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }

    /// `batch`'s replies in one round trip.
    ///
    /// On a single Redis each reply is looked at on its own, and a command
    /// refused with `NOSCRIPT` (so it did not run) gets its script loaded and
    /// is sent again, alone. On a cluster the crate's pipeline gives no reply
    /// at all once one command is refused; when every refusal is one that
    /// means "did not run" (`NOSCRIPT`, `MOVED`, `ASK`, `TRYAGAIN`,
    /// `CLUSTERDOWN`, `MASTERDOWN`, `READONLY`, `LOADING`) the missing
    /// scripts are loaded on every master and the whole batch is sent once
    /// more on a fresh connection (fresh slot map); every batch is safe to
    /// send twice (see the module documentation).
    fn execute<T: redis::FromRedisValue>(&mut self, batch: &Batch, target: &Target) -> RedisResult<T> {
        match self {
            Conn::Single(c) => execute_single(c, batch),
            Conn::Cluster(c) => match execute_cluster(c, batch) {
                Err(e) if redoable_refusals(&e) => {
                    crate::metrics::ROUND_TRIPS[Dependency::Redis as usize].add(1);
                    load_missing_scripts(c, batch, &e)?;
                    let Conn::Cluster(fresh) = target.connect()? else { return Err(not_connected()) };
                    *c = fresh;
                    execute_cluster(c, batch)
                }
                other => other,
            },
        }
    }
}

/// A batch on a single Redis: one pipeline, each refused-but-not-run
/// command sent again once its script is loaded.
fn execute_single<T: redis::FromRedisValue>(c: &mut redis::Connection, batch: &Batch) -> RedisResult<T> {
    compose(batch, outcomes_single(c, batch)?)
}

/// Each command's own outcome, on a single Redis: one round trip, and one
/// more when Redis lost scripts (a restart empties its cache): that one
/// loads each lost script once and sends the refused commands (which did
/// not run) again, all in one pipeline. (One load and one resend per
/// refused command, as first written, made the first batch after a restart
/// cost two round trips per command: seconds, when Redis is slow.)
fn outcomes_single(c: &mut redis::Connection, batch: &Batch) -> RedisResult<Vec<RedisResult<Value>>> {
    let commands = batch.commands();
    let mut packed = Vec::new();
    for command in commands {
        command.cmd.write_packed_command(&mut packed);
    }
    let values = c.req_packed_commands(&packed, 0, commands.len())?;
    let mut outcomes: Vec<RedisResult<Value>> = Vec::with_capacity(values.len());
    let mut refused = Vec::new();
    let mut lost: Vec<&LuaScript> = Vec::new();
    for (i, (command, value)) in commands.iter().zip(values).enumerate() {
        match (&value, command.script) {
            (Value::ServerError(e), Some(script)) if is_redoable(e.kind(), false) => {
                refused.push(i);
                if !lost.iter().any(|known| known.hash() == script.hash()) {
                    lost.push(script);
                }
            }
            _ => {}
        }
        outcomes.push(Ok(value));
    }
    if refused.is_empty() {
        return Ok(outcomes);
    }
    crate::metrics::ROUND_TRIPS[Dependency::Redis as usize].add(1);
    let mut packed = Vec::new();
    for script in &lost {
        script.load_cmd().write_packed_command(&mut packed);
    }
    for &i in &refused {
        commands[i].cmd.write_packed_command(&mut packed);
    }
    // A load that failed leaves its commands refused again: their outcome.
    let again = c.req_packed_commands(&packed, lost.len(), refused.len())?;
    for (&i, value) in refused.iter().zip(again) {
        outcomes[i] = Ok(value);
    }
    Ok(outcomes)
}

/// Each command's own outcome, on a cluster: the pipeline when every node
/// answers; when one fails (a master dead, its slots not yet taken over), a
/// fresh connection and then each command alone, so that the commands for
/// the other nodes still get their answers. Only for batches whose commands
/// may all run twice (the pipeline's parts on the live nodes ran already).
fn outcomes_cluster(
    c: &mut Box<ClusterConnection>,
    batch: &Batch,
    target: &Target,
) -> RedisResult<Vec<RedisResult<Value>>> {
    let mut pipe = cluster_pipe();
    for command in batch.commands() {
        pipe.add_command(command.cmd.clone());
    }
    let failed = match pipe.query::<Vec<Value>>(c) {
        Ok(values) => return Ok(values.into_iter().map(Ok).collect()),
        Err(e) => e,
    };
    if is_client_side(&failed) || redoable_refusals(&failed) {
        let Conn::Cluster(fresh) = target.connect()? else { return Err(not_connected()) };
        *c = fresh;
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for command in batch.commands() {
        crate::metrics::ROUND_TRIPS[Dependency::Redis as usize].add(1);
        let mut outcome = c.req_command(&command.cmd).and_then(Value::extract_error);
        if let (Err(e), Some(script)) = (&outcome, command.script)
            && e.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript)
        {
            let all_masters = RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllMasters,
                Some(redis::cluster_routing::ResponsePolicy::AllSucceeded),
            ));
            outcome = c
                .route_command(&script.load_cmd(), all_masters)
                .and_then(|_| c.req_command(&command.cmd))
                .and_then(Value::extract_error);
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// A batch on a cluster: one pipeline per node, all written before any
/// reply is read.
fn execute_cluster<T: redis::FromRedisValue>(c: &mut ClusterConnection, batch: &Batch) -> RedisResult<T> {
    let mut pipe = cluster_pipe();
    for command in batch.commands() {
        pipe.add_command(command.cmd.clone());
        if command.ignored {
            pipe.ignore();
        }
    }
    pipe.query(c)
}

/// Whether a cluster pipeline failed only by refusals of commands that did
/// not run, and may be sent again once they are mended.
fn redoable_refusals(e: &redis::RedisError) -> bool {
    e.clone()
        .into_server_errors()
        .is_some_and(|errors| !errors.is_empty() && errors.iter().all(|(_, e)| is_redoable(e.kind(), true)))
}

/// Loads, on every master, the scripts of the commands a cluster refused
/// with `NOSCRIPT`.
fn load_missing_scripts(c: &mut ClusterConnection, batch: &Batch, e: &redis::RedisError) -> RedisResult<()> {
    let Some(errors) = e.clone().into_server_errors() else { return Ok(()) };
    let mut loaded: Vec<&str> = Vec::new();
    for (index, error) in errors.iter() {
        if error.kind() != Some(ServerErrorKind::NoScript) {
            continue;
        }
        let Some(script) = batch.commands().get(*index).and_then(|command| command.script) else { continue };
        if loaded.contains(&script.hash()) {
            continue;
        }
        let all_masters = RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(redis::cluster_routing::ResponsePolicy::AllSucceeded),
        ));
        c.route_command(&script.load_cmd(), all_masters)?;
        loaded.push(script.hash());
    }
    Ok(())
}

/// Whether an error means the connection is unusable or Redis (or the part
/// of the cluster that holds a key) unreachable for now, as opposed to a
/// command Redis refused: the request then gets 503, not 500.
pub fn is_connection_error(e: &redis::RedisError) -> bool {
    use redis::ErrorKind;
    e.is_io_error()
        || e.is_unrecoverable_error()
        || e.is_cluster_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading | ServerErrorKind::MasterDown | ServerErrorKind::ReadOnly
            ) | ErrorKind::ClusterConnectionNotFound
        )
        // The cluster client's word for a slot no node it knows serves.
        || (e.kind() == ErrorKind::Client && e.to_string().contains("slot coverage"))
}

/// Whether the error came from the connection rather than from Redis
/// refusing a command: on a cluster, the whole connection must then go.
fn is_client_side(e: &redis::RedisError) -> bool {
    !matches!(e.kind(), redis::ErrorKind::Server(_)) || e.is_unrecoverable_error()
}

/// What is wrong with Redis's memory settings for this server, if anything.
///
/// Everything the server keeps in Redis has a TTL, so every `volatile-*`
/// and `allkeys-*` policy may evict a throttle counter, which would hand a
/// guesser fresh attempts, or a session index, which would lift the cap.
/// Only `noeviction` loses nothing: at the limit Redis refuses writes and
/// the server answers 503 until memory is free. The limit itself bounds
/// what a flood could take from the machine (the throttles and the session
/// cap bound what one account or address can store).
///
/// The scripts that add to Redis start with `#!lua`, which makes Redis refuse
/// such a script as a whole while it is at its limit, never half of it; the
/// read-only log-in lookup says `flags=no-writes` and runs anyway. The session
/// resume script is left without the line on purpose: its only write is
/// `GETEX`'s new TTL, which takes no memory, so profile reads go on while
/// Redis is full.
pub fn memory_warning(maxmemory: u64, policy: &str) -> Option<String> {
    if policy != "noeviction" {
        return Some(format!(
            "maxmemory-policy is {policy:?}: it may evict throttle counters and session indexes; \
             set it to noeviction"
        ));
    }
    (maxmemory == 0).then(|| {
        "maxmemory is 0 (unbounded): a flood of writes could take all the machine's memory; \
         set a limit (scripts/services.sh does)"
            .to_owned()
    })
}

/// Whether Redis refused a write for want of memory (`OOM`: at `maxmemory`
/// with `noeviction`), alone or as one command of a pipeline.
pub fn is_out_of_memory(e: &redis::RedisError) -> bool {
    e.code() == Some("OOM")
        || e.clone().into_server_errors().is_some_and(|errors| errors.iter().any(|(_, e)| e.code() == "OOM"))
}

/// Whether running the operation again on a new connection may help.
fn is_retryable(e: &redis::RedisError) -> bool {
    is_connection_error(e) && !e.is_timeout() && !e.is_cluster_error()
}

fn not_connected() -> redis::RedisError {
    redis::RedisError::from(io::Error::new(io::ErrorKind::NotConnected, "Redis is unreachable"))
}

/// A lazily made, self-repairing Redis connection.
pub struct RedisLink {
    target: Target,
    link: Reconnecting<Conn>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("target", &self.target)
            .field("connected", &self.link.is_open())
            .field("down", &self.link.down)
            .field("worker", &self.link.worker)
            .finish_non_exhaustive()
    }
}

impl RedisLink {
    /// A link that connects on first use.
    pub fn new(target: Target, worker: usize) -> RedisLink {
        RedisLink { target, link: Reconnecting::new("Redis", worker) }
    }

    /// Connects now; a failure is logged and left for the next use to retry.
    /// The first worker also checks how Redis (every node of a cluster) is
    /// set to handle running out of memory ([`memory_warning`]) and logs
    /// what is wrong with it.
    pub fn warm_up(&mut self) {
        let first = self.link.worker == 0;
        let Ok(conn) = self.conn() else { return };
        if !first {
            return;
        }
        let mut config = redis::cmd("CONFIG");
        config.arg("GET").arg("maxmemory*");
        let settings: RedisResult<Vec<(String, Vec<String>)>> = match conn {
            Conn::Single(c) => config.query::<Vec<String>>(c).map(|s| vec![("Redis".to_owned(), s)]),
            // One reply per node, keyed by its address.
            Conn::Cluster(c) => c
                .route_command(&config, RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllNodes, None)))
                .and_then(|v| Ok(redis::from_redis_value::<HashMap<String, Vec<String>>>(v)?))
                .map(|nodes| nodes.into_iter().collect()),
        };
        let setting = |settings: &[String], name: &str| {
            settings.chunks_exact(2).find(|pair| pair[0] == name).map(|pair| pair[1].clone())
        };
        match settings {
            Ok(nodes) => {
                for (node, settings) in nodes {
                    let maxmemory = setting(&settings, "maxmemory").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let policy = setting(&settings, "maxmemory-policy").unwrap_or_default();
                    if let Some(warning) = memory_warning(maxmemory, &policy) {
                        crate::log!("Redis ({node}): {warning}");
                    }
                }
            }
            // Managed Redis services often rename CONFIG: nothing to check then.
            Err(e) if !is_connection_error(&e) => {
                crate::log!("Redis: cannot read its memory settings ({e}); make sure of them by hand")
            }
            Err(e) => {
                self.discard_if_broken(&e, false);
            }
        }
    }

    fn conn(&mut self) -> RedisResult<&mut Conn> {
        let target = &self.target;
        self.link.get(|| target.connect()).ok_or_else(not_connected)
    }

    /// Forgets the connection after an error that leaves it unusable (on a
    /// cluster: any error not a plain refusal of a command); says whether the
    /// operation may be sent again on a new one.
    fn discard_if_broken(&mut self, e: &redis::RedisError, reused: bool) -> bool {
        let cluster = self.target.is_cluster();
        if !(is_connection_error(e) || cluster && is_client_side(e)) {
            return false;
        }
        crate::metrics::DEPENDENCY_ERRORS[Dependency::Redis as usize].add(1);
        self.link.forget();
        let retry = reused && is_retryable(e);
        if retry {
            crate::log!("worker {}: idle Redis connection was lost ({e}); reconnecting", self.link.worker);
        }
        retry
    }

    /// Sends a batch in one round trip and returns its replies (the ignored
    /// ones left out); once more on a new connection if the reused one
    /// turns out to be dead (see the module documentation).
    ///
    /// # Errors
    ///
    /// The first command's error, or a connectivity error if Redis cannot be reached.
    pub fn run<T: redis::FromRedisValue>(&mut self, batch: &Batch) -> RedisResult<T> {
        if batch.is_empty() {
            return redis::from_redis_value(Value::Array(Vec::new())).map_err(Into::into);
        }
        let reused = self.link.is_open();
        crate::metrics::ROUND_TRIPS[Dependency::Redis as usize].add(1);
        let result = self.execute(batch);
        match result {
            Err(e) if self.discard_if_broken(&e, reused) => {
                let result = self.execute(batch);
                if let Err(e) = &result {
                    self.discard_if_broken(e, false);
                }
                result
            }
            Err(e) => {
                self.discard_if_broken(&e, false);
                Err(e)
            }
            ok => ok,
        }
    }

    /// Sends a batch whose commands may each run twice and returns each
    /// command's own outcome, so that on a cluster a dead master fails only
    /// the commands for its slots (the others are answered, one at a time on
    /// a fresh connection, while it is being replaced).
    ///
    /// # Errors
    ///
    /// A connectivity error if Redis cannot be reached at all.
    pub fn run_each(&mut self, batch: &Batch) -> RedisResult<Vec<RedisResult<Value>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        crate::metrics::ROUND_TRIPS[Dependency::Redis as usize].add(1);
        let reused = self.link.is_open();
        let mut result = self.outcomes(batch);
        if let Err(e) = &result
            && self.discard_if_broken(e, reused)
        {
            result = self.outcomes(batch);
        }
        match result {
            Ok(outcomes) => {
                // A command that found its connection broken: the next batch connects afresh.
                if let Some(Err(e)) = outcomes.iter().find(|o| o.as_ref().is_err_and(is_client_side)) {
                    self.discard_if_broken(&e.clone(), false);
                }
                Ok(outcomes)
            }
            Err(e) => {
                self.discard_if_broken(&e, false);
                Err(e)
            }
        }
    }

    fn outcomes(&mut self, batch: &Batch) -> RedisResult<Vec<RedisResult<Value>>> {
        let RedisLink { target, link } = self;
        match link.get(|| target.connect()).ok_or_else(not_connected)? {
            Conn::Single(c) => outcomes_single(c, batch),
            Conn::Cluster(c) => outcomes_cluster(c, batch, target),
        }
    }

    fn execute<T: redis::FromRedisValue>(&mut self, batch: &Batch) -> RedisResult<T> {
        let RedisLink { target, link } = self;
        let conn = link.get(|| target.connect()).ok_or_else(not_connected)?;
        conn.execute(batch, target)
    }

    /// Whether Redis answers a `PING` now (a cluster: any master), for `/readyz`.
    pub fn ping(&mut self) -> bool {
        let reused = self.link.is_open();
        let Ok(conn) = self.conn() else { return false };
        let ping = redis::cmd("PING");
        let result = match conn {
            Conn::Single(c) => ping.query::<String>(c).map(drop),
            Conn::Cluster(c) => c
                .route_command(&ping, RoutingInfo::SingleNode(SingleNodeRoutingInfo::RandomPrimary))
                .map(drop),
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                if self.discard_if_broken(&e, reused) {
                    return self.conn().is_ok_and(|c| redis::cmd("PING").exec(c.as_dyn()).is_ok());
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::memory_warning;

    #[test]
    fn only_a_bounded_noeviction_redis_is_left_alone() {
        assert_eq!(memory_warning(4 << 30, "noeviction"), None);
        assert!(memory_warning(0, "noeviction").unwrap().contains("unbounded"));
        for evicting in ["allkeys-lru", "volatile-lru", "volatile-ttl", "allkeys-random"] {
            assert!(memory_warning(4 << 30, evicting).unwrap().contains("noeviction"), "{evicting}");
        }
    }
}
