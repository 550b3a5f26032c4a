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
//! On Redis Cluster `PUBLISH` reaches the subscribers of every node, so the
//! same subscription works there unchanged.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;
use std::time::Duration;

use mio::Waker;

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
pub fn start(
    client: redis::Client,
    channel: String,
    waker: Arc<Waker>,
) -> std::io::Result<Receiver<QrEvent>> {
    let (tx, rx) = sync_channel(MAX_PENDING_EVENTS);
    thread::Builder::new()
        .name("qr-events".into())
        .spawn(move || subscribe_forever(&client, &channel, &tx, &waker))?;
    Ok(rx)
}

/// Subscribes, passes messages on, and on any failure reconnects after
/// [`RECONNECT_DELAY`]; returns when the reactor is gone.
fn subscribe_forever(client: &redis::Client, channel: &str, tx: &SyncSender<QrEvent>, waker: &Waker) {
    let mut failures: u64 = 0;
    loop {
        match listen(client, channel, tx, waker) {
            Ok(()) => return,
            Err(e) => {
                // One line per outage, not one per retry.
                if failures == 0 {
                    crate::log!("scan-to-log-in announcements: {e}; reconnecting");
                }
                failures += 1;
            }
        }
        thread::sleep(RECONNECT_DELAY);
    }
}

/// One subscription: `Ok` when the reactor is gone, `Err` when Redis failed.
fn listen(
    client: &redis::Client,
    channel: &str,
    tx: &SyncSender<QrEvent>,
    waker: &Waker,
) -> redis::RedisResult<()> {
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
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
