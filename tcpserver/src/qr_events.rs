//! Hearing of changed scan-to-log-in codes: one thread subscribed to the
//! Redis channel `<p>qr:changed`, feeding the reactor.
//!
//! Whichever tcpserver runs the phone's approval, the script that changes
//! the code publishes its key hash ([`crate::qr_store`]); every tcpserver's
//! subscriber passes it to its reactor through a bounded channel and the
//! reactor's `Waker`, and the reactor re-reads the waits parked on that code
//! ([`crate::qr_waits`]). Pub/sub delivers at most once: a message published
//! while this thread was disconnected is lost. So each (re)subscription is
//! announced as [`QrEvent::Resync`], on which every parked wait re-reads its
//! code; and every parked wait re-reads at its deadline anyway. A lost
//! announcement only delays an answer, never loses it.
//!
//! **On a Redis Cluster** the subscriber connects to one node, any node: a
//! `PUBLISH` (from a script too) reaches the subscribers of every node over
//! the cluster bus. When its node dies or stops answering it moves to the
//! next one it knows (the `--redis-cluster` nodes, and every node the last
//! `CLUSTER NODES` named), resubscribes and resyncs, so a failover costs the
//! waits a re-read, not an answer.
//!
//! Why not Redis 7's sharded pub/sub (`SSUBSCRIBE`, `SPUBLISH`): a shard
//! channel lives in one slot, and a script may publish only to a channel of
//! its own keys' slot, so each code would need a channel of its own and
//! every tcpserver a subscription per waited code at that code's node,
//! moved on every failover. Changes of codes are rare (a few per log-in by
//! phone), so the cluster-wide broadcast of classic pub/sub costs nothing
//! worth that machinery.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;
use std::time::Duration;

use mio::Waker;

use crate::db::redis::{MAX_CLUSTER_NODES, Target};

/// Announcements buffered between the subscriber and the reactor. A full
/// buffer makes the subscriber wait (Redis then buffers for it, up to its
/// pub/sub output limit, past which it drops the subscriber, which
/// reconnects and resyncs): memory stays bounded either way. 65,536 is
/// several seconds of approvals at any rate this system reaches.
pub const MAX_PENDING_EVENTS: usize = 65_536;

/// How long the subscriber waits for a message before it pings Redis, to
/// find a connection that died without closing.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// How long the subscriber waits before reconnecting after a failure.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// How long connecting to a node, and each reply while setting up, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What the subscriber tells the reactor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QrEvent {
    /// The code with this key hash changed.
    Changed(String),
    /// The subscription (re)started: announcements may have been missed.
    Resync,
}

/// Starts the subscriber thread; returns the reactor's end of its channel.
///
/// # Errors
///
/// The I/O error if the thread cannot be spawned.
pub fn start(target: &Target, channel: String, waker: Arc<Waker>) -> std::io::Result<Receiver<QrEvent>> {
    let (tx, rx) = sync_channel(MAX_PENDING_EVENTS);
    let nodes = Nodes { clients: target.node_clients(), next: 0, cluster: target.is_cluster() };
    thread::Builder::new()
        .name("qr-events".into())
        .spawn(move || subscribe_forever(nodes, &channel, &tx, &waker))?;
    Ok(rx)
}

/// The nodes the subscriber may use, in turn.
struct Nodes {
    clients: Vec<redis::Client>,
    next: usize,
    cluster: bool,
}

impl Nodes {
    /// The node to try now; the next failure moves on to the one after.
    fn current(&self) -> Option<&redis::Client> {
        self.clients.get(self.next % self.clients.len().max(1))
    }

    fn advance(&mut self) {
        self.next = self.next.wrapping_add(1);
    }

    /// Adds the nodes a `CLUSTER NODES` reply names (those not failed), up
    /// to [`MAX_CLUSTER_NODES`].
    fn learn(&mut self, cluster_nodes: &str) {
        for address in live_node_addresses(cluster_nodes) {
            if self.clients.len() >= MAX_CLUSTER_NODES {
                return;
            }
            let url = format!("redis://{address}/");
            let known = self.clients.iter().any(|c| c.get_connection_info().addr().to_string() == address);
            if !known && let Ok(client) = redis::Client::open(url.as_str()) {
                self.clients.push(client);
            }
        }
    }
}

/// The `host:port` of every node a `CLUSTER NODES` reply lists that is not
/// failed or without an address.
fn live_node_addresses(reply: &str) -> Vec<String> {
    reply
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            if flags.split(',').any(|f| matches!(f, "fail" | "fail?" | "noaddr" | "handshake")) {
                return None;
            }
            let address = address.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            if host.is_empty() || port.parse::<u16>().is_err() {
                return None;
            }
            Some(if host.contains(':') { format!("[{host}]:{port}") } else { address.to_owned() })
        })
        .collect()
}

/// Subscribes, passes messages on, and on any failure moves to the next
/// node and reconnects after [`RECONNECT_DELAY`]; returns when the reactor
/// is gone.
fn subscribe_forever(mut nodes: Nodes, channel: &str, tx: &SyncSender<QrEvent>, waker: &Waker) {
    let mut failures: u64 = 0;
    loop {
        match listen(&mut nodes, channel, tx, waker) {
            Ok(()) => return,
            Err(e) => {
                // One line per outage, not one per retry.
                if failures == 0 {
                    crate::log!("scan-to-log-in announcements: {e}; reconnecting");
                }
                failures += 1;
                nodes.advance();
            }
        }
        thread::sleep(RECONNECT_DELAY);
    }
}

/// One subscription: `Ok` when the reactor is gone, `Err` when Redis failed.
fn listen(
    nodes: &mut Nodes,
    channel: &str,
    tx: &SyncSender<QrEvent>,
    waker: &Waker,
) -> redis::RedisResult<()> {
    let Some(client) = nodes.current() else {
        return Err(redis::RedisError::from(std::io::Error::other("no Redis node to subscribe to")));
    };
    let mut conn = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    conn.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    conn.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    if nodes.cluster {
        let reply: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn)?;
        nodes.learn(&reply);
    }
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(channel)?;
    pubsub.set_read_timeout(Some(PING_INTERVAL))?;
    if !send(tx, waker, QrEvent::Resync) {
        return Ok(());
    }
    loop {
        match pubsub.get_message() {
            Ok(message) => {
                let Ok(key_hash) = message.get_payload::<String>() else { continue };
                if !send(tx, waker, QrEvent::Changed(key_hash)) {
                    return Ok(());
                }
            }
            Err(e) if e.is_timeout() => {
                pubsub.ping::<redis::Value>()?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Passes one event on and wakes the reactor; false once the reactor is gone.
fn send(tx: &SyncSender<QrEvent>, waker: &Waker, event: QrEvent) -> bool {
    tx.send(event).is_ok() && waker.wake().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_nodes_of_a_cluster_nodes_reply_are_learnt() {
        let reply = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002,node-2 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003 master,fail - 0 1426238318243 3 disconnected 10923-16383
6ec2 ::1:30005@40005 myself,master - 0 0 5 connected 0-5460
9a0b :0@0 noaddr - 0 0 0 disconnected
";
        assert_eq!(live_node_addresses(reply), ["127.0.0.1:30004", "127.0.0.1:30002", "[::1]:30005"]);
    }
}
