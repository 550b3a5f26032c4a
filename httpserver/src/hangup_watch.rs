//! One thread that notices when the client of a parked call hangs up.
//!
//! A scan-to-log-in wait holds its connection's thread for up to 25 s while
//! tcpserver parks the RPC. When the desktop closes its page, the call should
//! be given up at once (tcpserver told to let the wait go, the thread and the
//! call's place on its RPC connection freed), not at its deadline. Asking
//! each parked thread to wake every second and look cost ten thousand
//! wake-ups a second with ten thousand waits held, an eighth of the log-ins
//! running beside them (`loadgen --scenario qr`, perf/README.md). Instead,
//! every parked call's client socket is registered here, with one `epoll`
//! (through `mio`) for all of them: the kernel reports the close, and this
//! thread gives the call up ([`GiveUp::now`]), which wakes its thread.
//!
//! Bound: one registration per parked call, and parked calls are bounded by
//! the waits' RPC lane (`--qr-rpc-pool` connections of
//! [`crate::rpc_pool::MAX_CALLS_PER_CONNECTION`] calls per tcpserver), so
//! the registry holds at most that many entries (an `Arc` and a key each,
//! and the kernel's epoll entry of about 160 bytes).

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::peer_closed::ClientLink;
use crate::rpc_pool::GiveUp;

/// Readiness events taken from the kernel at a time.
const EVENTS_PER_POLL: usize = 256;

/// Stack of the watcher thread: it only walks an event list and a map.
const STACK_SIZE: usize = 128 * 1024;

/// The watcher: where parked calls register their clients' sockets.
#[derive(Debug)]
pub struct HangupWatch {
    registry: Registry,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// The calls being watched, by their token. Tokens are never reused, so
    /// an event read just before its watch ended finds nothing here.
    watched: Mutex<HashMap<usize, Arc<GiveUp>>>,
    next_token: AtomicUsize,
}

impl Shared {
    fn watched(&self) -> MutexGuard<'_, HashMap<usize, Arc<GiveUp>>> {
        self.watched.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One client socket being watched; the watch ends when this is dropped,
/// which must be before the socket is closed (the request that holds the
/// [`ClientLink`] never outlives its connection).
#[derive(Debug)]
pub struct Watching<'a> {
    watch: &'a HangupWatch,
    fd: RawFd,
    token: usize,
}

impl HangupWatch {
    /// Starts the watcher thread.
    ///
    /// # Errors
    ///
    /// The `epoll` instance or the thread could not be made.
    pub fn start() -> io::Result<HangupWatch> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let shared = Arc::new(Shared::default());
        let watcher = Arc::clone(&shared);
        thread::Builder::new()
            .name("hangup-watch".into())
            .stack_size(STACK_SIZE)
            .spawn(move || watch_loop(poll, &watcher))?;
        Ok(HangupWatch { registry, shared })
    }

    /// Gives the call up through `give_up` as soon as the client on `link`
    /// closes its connection or it breaks, for as long as the returned
    /// [`Watching`] lives. A client that has closed already is noticed at
    /// once; one that sends more bytes (a pipelined request) is not a close.
    ///
    /// # Errors
    ///
    /// The kernel refused the registration (out of memory, or past
    /// `max_user_watches`); the call then runs to its deadline.
    pub fn watch(&self, link: ClientLink, give_up: &Arc<GiveUp>) -> io::Result<Watching<'_>> {
        let token = self.shared.next_token.fetch_add(1, Ordering::Relaxed);
        self.shared.watched().insert(token, Arc::clone(give_up));
        let fd = link.fd();
        if let Err(e) = self.registry.register(&mut SourceFd(&fd), Token(token), Interest::READABLE) {
            self.shared.watched().remove(&token);
            return Err(e);
        }
        Ok(Watching { watch: self, fd, token })
    }

    /// Calls being watched now.
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.shared.watched().len()
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        // The socket is still open (see the type's doc), so this cannot
        // fail on a reused descriptor; an error leaves nothing to undo.
        let _ = self.watch.registry.deregister(&mut SourceFd(&self.fd));
        self.watch.shared.watched().remove(&self.token);
    }
}

/// The watcher thread: gives up the call of every socket the kernel reports
/// closed or broken. Readiness for reading alone (bytes of a pipelined
/// request) is not a close and is let pass; the registration is
/// edge-triggered, so a close after it is reported again.
fn watch_loop(mut poll: Poll, shared: &Shared) {
    let mut events = Events::with_capacity(EVENTS_PER_POLL);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            crate::log!(
                "httpserver: the hang-up watcher stopped: {e}; parked calls now end at their deadlines"
            );
            return;
        }
        for event in &events {
            if !(event.is_read_closed() || event.is_error()) {
                continue;
            }
            let give_up = shared.watched().remove(&event.token().0);
            if let Some(give_up) = give_up {
                give_up.now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::*;
    use crate::test_sockets::{eventually, pair};

    fn until_given_up(give_up: &GiveUp) -> bool {
        eventually(|| give_up.is_given_up())
    }

    #[test]
    fn a_client_that_closes_gives_its_call_up_and_one_that_sends_more_does_not() {
        let watch = HangupWatch::start().unwrap();
        let (mut stays, stays_server) = pair();
        let (leaves, leaves_server) = pair();
        let stays_call = Arc::new(GiveUp::default());
        let leaves_call = Arc::new(GiveUp::default());
        let _stays_watch = watch.watch(ClientLink::of(&stays_server), &stays_call).unwrap();
        let leaves_watch = watch.watch(ClientLink::of(&leaves_server), &leaves_call).unwrap();
        assert_eq!(watch.watched(), 2);
        stays.write_all(b"GET /next HTTP/1.1\r\n\r\n").unwrap();
        drop(leaves);
        assert!(until_given_up(&leaves_call), "the closed client's call was not given up");
        assert!(!stays_call.is_given_up(), "bytes from a client are not a close");
        drop(leaves_watch);
        assert_eq!(watch.watched(), 1, "a watch that ended is forgotten");
        drop(stays);
        assert!(until_given_up(&stays_call), "a close after bytes is still a close");
    }

    #[test]
    fn a_client_gone_before_its_watch_began_is_noticed_at_once() {
        let watch = HangupWatch::start().unwrap();
        let (client, server) = pair();
        drop(client);
        thread::sleep(Duration::from_millis(20));
        let call = Arc::new(GiveUp::default());
        let _watching = watch.watch(ClientLink::of(&server), &call).unwrap();
        assert!(until_given_up(&call));
    }

    #[test]
    fn a_watch_that_ended_gives_nothing_up() {
        let watch = HangupWatch::start().unwrap();
        let (client, server) = pair();
        let call = Arc::new(GiveUp::default());
        drop(watch.watch(ClientLink::of(&server), &call).unwrap());
        assert_eq!(watch.watched(), 0);
        drop(client);
        thread::sleep(Duration::from_millis(100));
        assert!(!call.is_given_up(), "a call answered before its client left is not given up");
    }
}
