//! Desktop waits on scan-to-log-in codes, parked in the reactor.
//!
//! A `QrWait` request is a long poll: it is answered when its code leaves the
//! state the desktop last saw, or at its deadline (at most [`MAX_WAIT`]). No
//! worker and no timer per waiter is held meanwhile: a wait is an entry here
//! (connection token and serial, request id, the request, its deadline and
//! the last answer), indexed by the code's key hash and by connection, with
//! its deadline in one heap. A worker only ever *checks* a code (one Redis
//! read, [`crate::service::Check`]); when the check finds it unchanged, the
//! reactor parks the wait here.
//!
//! A wait is in one of three places: with a worker (`Checking`), parked, or
//! queued for a check. An announcement that its code changed
//! ([`crate::qr_events`]) queues a parked wait for a check, and marks a wait
//! being checked `dirty`, so that a check that read the code just before the
//! change is not trusted to park it: it is checked again. A resync (the
//! subscriber reconnected) treats every code as changed. At its deadline a
//! parked wait is checked once more, and that check is answered whatever it
//! finds; a wait's deadline is never past its code's expiry, so an expired
//! code is answered `expired` on time. A wait whose connection closes is
//! dropped at once, with whatever it held.
//!
//! Memory: a wait is one slab entry (at most 512 bytes, a unit test checks) plus its
//! request's key and binding (64 bytes each), its key hash (64), the last
//! answer (a nickname and a picture name at most), and an index entry in
//! each map and in the heap: well under 1 KiB, so [`MAX_WAITS`] waits take
//! under 16 MiB.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use mio::Token;
use proto::{Message, QrState};
use slab::Slab;

use crate::qr_store::secret_hash;

/// Waits held at once, at most. A wait is one desktop showing the log-in
/// page; 16,384 is more than the 10,000 this is built to hold, with room,
/// and bounds the memory to a few MiB (see the module documentation). Past
/// it a wait is refused at once (`QrWaitsFull`, retry after a second).
pub const MAX_WAITS: usize = 16_384;

/// The longest a wait is held: 25 s, under the 30 s after which proxies
/// and browsers commonly give up on a silent request.
pub const MAX_WAIT: Duration = Duration::from_secs(25);

/// Waits held at least this long end a random part of [`JITTER_SHARE`]
/// early; shorter ones end exactly on time.
const JITTER_FROM: Duration = Duration::from_secs(5);

/// At most this share of a wait's time (a fifth: 20 to 25 s for a 25 s
/// wait) is taken off its end at random, so that pages opened together (ten
/// thousand desktops after a deploy, the load scenario) do not all come back
/// for their next wait in the same second, and stay apart afterwards: one
/// burst of thousands of requests would queue ahead of the approvals and
/// log-ins arriving with it.
const JITTER_SHARE: u32 = 5;

/// Slack added to a code's remaining lifetime before its final check, so
/// that Redis has expired it by then.
const EXPIRY_SLACK: Duration = Duration::from_millis(20);

/// Names one wait; the serial tells it from a later wait in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitRef {
    /// Slab key.
    pub id: usize,
    /// Serial number.
    pub serial: u64,
}

/// Where a wait is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A worker is checking its code; `dirty` when the code changed since.
    Checking { dirty: bool },
    /// Parked until an announcement or its deadline.
    Parked,
    /// In the check queue.
    Queued,
}

/// One wait.
#[derive(Debug)]
struct Wait {
    serial: u64,
    token: Token,
    conn_id: u64,
    request_id: u64,
    /// The `QrWait` request, sent again with each check.
    request: Message,
    key_hash: String,
    deadline: Instant,
    place: Place,
    /// The answer of the last check, sent if the wait ends without a newer one.
    last: Message,
}

/// A reply the reactor must send for a wait that ended.
#[derive(Debug)]
pub struct Ended {
    /// The connection's token.
    pub token: Token,
    /// The connection's serial.
    pub conn_id: u64,
    /// The request answered.
    pub request_id: u64,
    /// The reply.
    pub reply: Message,
}

/// Why a wait was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// [`MAX_WAITS`] are held already.
    Full,
}

/// Every wait of the reactor.
#[derive(Debug, Default)]
pub struct QrWaits {
    waits: Slab<Wait>,
    by_key: HashMap<String, Vec<usize>>,
    by_conn: HashMap<Token, Vec<usize>>,
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    queue: VecDeque<WaitRef>,
    next_serial: u64,
}

impl QrWaits {
    /// No waits.
    pub fn new() -> QrWaits {
        QrWaits::default()
    }

    /// Waits held.
    pub fn len(&self) -> usize {
        self.waits.len()
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.waits.is_empty()
    }

    /// Takes a `QrWait` request, to be checked first (it starts `Checking`).
    ///
    /// # Errors
    ///
    /// [`Refused::Full`] at [`MAX_WAITS`].
    pub fn begin(
        &mut self,
        (token, conn_id, request_id): (Token, u64, u64),
        request: Message,
        now: Instant,
    ) -> Result<WaitRef, Refused> {
        if self.waits.len() >= MAX_WAITS {
            return Err(Refused::Full);
        }
        let (key_hash, seen, wait_ms) = match &request {
            Message::QrWait { key, seen, wait_ms, .. } => {
                (secret_hash(key.expose()).unwrap_or_default(), *seen, *wait_ms)
            }
            _ => (String::new(), QrState::Expired, 0),
        };
        let deadline = now + jittered(Duration::from_millis(u64::from(wait_ms)).min(MAX_WAIT));
        self.next_serial += 1;
        let serial = self.next_serial;
        let last = Message::QrStatus { state: seen, nickname: None, avatar: None, token: None };
        let id = self.waits.insert(Wait {
            serial,
            token,
            conn_id,
            request_id,
            request,
            key_hash: key_hash.clone(),
            deadline,
            place: Place::Checking { dirty: false },
            last,
        });
        self.by_key.entry(key_hash).or_default().push(id);
        self.by_conn.entry(token).or_default().push(id);
        Ok(WaitRef { id, serial })
    }

    fn get(&self, r: WaitRef) -> Option<&Wait> {
        self.waits.get(r.id).filter(|w| w.serial == r.serial)
    }

    fn get_mut(&mut self, r: WaitRef) -> Option<&mut Wait> {
        self.waits.get_mut(r.id).filter(|w| w.serial == r.serial)
    }

    /// The request to hand a worker for a check of `r`, and who it is for.
    pub fn request(&self, r: WaitRef) -> Option<(Token, u64, u64, Message)> {
        self.get(r).map(|w| (w.token, w.conn_id, w.request_id, w.request.clone()))
    }

    /// Ends a wait, returning its last answer.
    pub fn remove(&mut self, r: WaitRef) -> Option<Ended> {
        self.get(r)?;
        let wait = self.waits.remove(r.id);
        unindex(&mut self.by_key, &wait.key_hash, r.id);
        unindex(&mut self.by_conn, &wait.token, r.id);
        Some(Ended {
            token: wait.token,
            conn_id: wait.conn_id,
            request_id: wait.request_id,
            reply: wait.last,
        })
    }

    /// A worker's check of `r` came back with `reply`. Returns the wait's
    /// answer if it ends now (the code changed, or the deadline passed);
    /// `None` when it stays (parked, or queued again because its code
    /// changed during the check) or is gone.
    pub fn checked(
        &mut self,
        r: WaitRef,
        reply: Message,
        unchanged: bool,
        ttl_ms: u64,
        now: Instant,
    ) -> Option<Ended> {
        let wait = self.waits.get_mut(r.id).filter(|w| w.serial == r.serial)?;
        wait.last = reply;
        if !unchanged || now >= wait.deadline {
            return self.remove(r);
        }
        let expiry = now + Duration::from_millis(ttl_ms) + EXPIRY_SLACK;
        wait.deadline = wait.deadline.min(expiry);
        match wait.place {
            Place::Checking { dirty: true } => {
                wait.place = Place::Queued;
                self.queue.push_back(r);
            }
            _ => {
                wait.place = Place::Parked;
                self.deadlines.push(Reverse((wait.deadline, r.id, r.serial)));
            }
        }
        None
    }

    /// The code with `key_hash` changed: its waits look again.
    pub fn announce(&mut self, key_hash: &str) {
        let ids = self.by_key.get(key_hash).cloned().unwrap_or_default();
        for id in ids {
            self.touch(id);
        }
    }

    /// Announcements may have been missed: every wait looks again.
    pub fn resync(&mut self) {
        let ids: Vec<usize> = self.waits.iter().map(|(id, _)| id).collect();
        for id in ids {
            self.touch(id);
        }
    }

    fn touch(&mut self, id: usize) {
        let Some(wait) = self.waits.get_mut(id) else { return };
        match wait.place {
            Place::Parked => {
                wait.place = Place::Queued;
                self.queue.push_back(WaitRef { id, serial: wait.serial });
            }
            Place::Checking { .. } => wait.place = Place::Checking { dirty: true },
            Place::Queued => {}
        }
    }

    /// Queues for their final check the parked waits whose deadline has come.
    pub fn expire_due(&mut self, now: Instant) {
        while let Some(&Reverse((at, id, serial))) = self.deadlines.peek() {
            if at > now {
                return;
            }
            self.deadlines.pop();
            let Some(wait) = self.waits.get_mut(id).filter(|w| w.serial == serial) else { continue };
            if wait.place == Place::Parked && wait.deadline <= now {
                wait.place = Place::Queued;
                self.queue.push_back(WaitRef { id, serial });
            }
        }
    }

    /// The next queued wait still held, marked `Checking`; the caller hands
    /// it to a worker, or gives it back with [`QrWaits::unsent`].
    pub fn next_check(&mut self) -> Option<WaitRef> {
        while let Some(r) = self.queue.pop_front() {
            if let Some(wait) = self.get_mut(r).filter(|w| w.place == Place::Queued) {
                wait.place = Place::Checking { dirty: false };
                return Some(r);
            }
        }
        None
    }

    /// A check from [`QrWaits::next_check`] could not be handed to a worker
    /// (the queue is full). A wait past its deadline ends with its last
    /// answer; any other goes back to the front of the queue.
    pub fn unsent(&mut self, r: WaitRef, now: Instant) -> Option<Ended> {
        let wait = self.get_mut(r)?;
        if now >= wait.deadline {
            return self.remove(r);
        }
        wait.place = Place::Queued;
        self.queue.push_front(r);
        None
    }

    /// True while checks are queued.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The earliest deadline of a parked wait (possibly one already ended,
    /// which only makes the reactor look a little early).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Ends the wait that request `request_id` of connection `conn_id` (at
    /// `token`) began, if it is still held, with its last answer: its client
    /// went away (`QrCancel`). A wait of any other connection is never found.
    pub fn cancel(&mut self, token: Token, conn_id: u64, request_id: u64) -> Option<Ended> {
        let id = *self.by_conn.get(&token)?.iter().find(|&&id| {
            self.waits.get(id).is_some_and(|w| w.conn_id == conn_id && w.request_id == request_id)
        })?;
        let serial = self.waits.get(id)?.serial;
        self.remove(WaitRef { id, serial })
    }

    /// Drops every wait of a closed connection.
    pub fn close_connection(&mut self, token: Token) {
        for id in self.by_conn.remove(&token).unwrap_or_default() {
            if self.waits.contains(id) {
                let wait = self.waits.remove(id);
                unindex(&mut self.by_key, &wait.key_hash, id);
            }
        }
    }

    /// Ends every wait of a connection whose peer stopped sending, each with
    /// its last answer: a peer that closed its side waits for nothing more.
    pub fn end_connection(&mut self, token: Token) -> Vec<Ended> {
        let ids = self.by_conn.get(&token).cloned().unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| {
                let serial = self.waits.get(id)?.serial;
                self.remove(WaitRef { id, serial })
            })
            .collect()
    }

    /// Ends every wait (at shutdown), each with its last answer.
    pub fn end_all(&mut self) -> Vec<Ended> {
        let refs: Vec<WaitRef> = self.waits.iter().map(|(id, w)| WaitRef { id, serial: w.serial }).collect();
        refs.into_iter().filter_map(|r| self.remove(r)).collect()
    }
}

/// How long a wait asked to be held `held` is held: `held` less a random part
/// of its [`JITTER_SHARE`], from [`JITTER_FROM`] on.
fn jittered(held: Duration) -> Duration {
    if held < JITTER_FROM {
        return held;
    }
    let most = held / JITTER_SHARE;
    held - most.mul_f64(rand::random::<f64>())
}

fn unindex<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<usize>>, key: &K, id: usize) {
    if let Some(ids) = map.get_mut(key) {
        ids.retain(|&i| i != id);
        if ids.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::Secret;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn request(wait_ms: u32) -> Message {
        Message::QrWait {
            key: Secret::new(KEY),
            binding: Secret::new(KEY),
            seen: QrState::Pending,
            wait_ms,
            client: None,
        }
    }

    fn status(state: QrState) -> Message {
        Message::QrStatus { state, nickname: None, avatar: None, token: None }
    }

    fn parked(waits: &mut QrWaits, now: Instant) -> WaitRef {
        let r = waits.begin((Token(1), 1, 7), request(25_000), now).unwrap();
        assert!(waits.checked(r, status(QrState::Pending), true, 120_000, now).is_none());
        r
    }

    #[test]
    fn an_announcement_sends_a_parked_wait_to_be_checked_and_a_change_ends_it() {
        let now = Instant::now();
        let mut waits = QrWaits::new();
        let r = parked(&mut waits, now);
        assert_eq!(waits.next_check(), None, "parked, not queued");
        waits.announce(&secret_hash(KEY).unwrap());
        assert_eq!(waits.next_check(), Some(r));
        let ended = waits.checked(r, status(QrState::Scanned), false, 100_000, now).unwrap();
        assert_eq!(ended.request_id, 7);
        assert_eq!(ended.reply, status(QrState::Scanned));
        assert!(waits.is_empty());
    }

    #[test]
    fn a_change_announced_during_a_check_is_checked_again_not_parked() {
        let now = Instant::now();
        let mut waits = QrWaits::new();
        let r = waits.begin((Token(1), 1, 7), request(25_000), now).unwrap();
        waits.announce(&secret_hash(KEY).unwrap());
        // The check read the code before the change: it must not park.
        assert!(waits.checked(r, status(QrState::Pending), true, 100_000, now).is_none());
        assert_eq!(waits.next_check(), Some(r));
    }

    #[test]
    fn a_resync_checks_every_parked_wait() {
        let now = Instant::now();
        let mut waits = QrWaits::new();
        let a = parked(&mut waits, now);
        let b = parked(&mut waits, now);
        waits.resync();
        assert_eq!([waits.next_check(), waits.next_check(), waits.next_check()], [Some(a), Some(b), None]);
    }

    #[test]
    fn the_deadline_is_never_past_the_code_expiry_and_its_check_is_answered() {
        let now = Instant::now();
        let mut waits = QrWaits::new();
        let r = waits.begin((Token(1), 1, 7), request(25_000), now).unwrap();
        waits.checked(r, status(QrState::Pending), true, 1_000, now);
        assert!(waits.next_deadline().unwrap() <= now + Duration::from_millis(1_100));
        let later = now + Duration::from_secs(2);
        waits.expire_due(later);
        assert_eq!(waits.next_check(), Some(r));
        let ended = waits.checked(r, status(QrState::Pending), true, 0, later);
        assert!(ended.is_some(), "a check after the deadline is answered, whatever it found");
    }

    #[test]
    fn a_closed_connection_drops_its_waits_and_their_indexes() {
        let now = Instant::now();
        let mut waits = QrWaits::new();
        let r = parked(&mut waits, now);
        waits.close_connection(Token(1));
        assert!(waits.is_empty());
        assert!(waits.by_key.is_empty() && waits.by_conn.is_empty());
        assert!(waits.checked(r, status(QrState::Scanned), false, 0, now).is_none(), "gone");
    }

    #[test]
    fn a_cancel_ends_only_its_own_wait_with_its_last_answer() {
        let now = Instant::now();
        let mut waits = QrWaits::new();
        let r = parked(&mut waits, now);
        let other = waits.begin((Token(1), 1, 8), request(25_000), now).unwrap();
        assert!(waits.cancel(Token(1), 2, 7).is_none(), "another connection in the same slot");
        assert!(waits.cancel(Token(2), 1, 7).is_none(), "another token");
        let ended = waits.cancel(Token(1), 1, 7).expect("held");
        assert_eq!((ended.token, ended.conn_id, ended.request_id), (Token(1), 1, 7));
        assert!(
            matches!(ended.reply, Message::QrStatus { state: QrState::Pending, .. }),
            "{:?}",
            ended.reply
        );
        assert!(waits.cancel(Token(1), 1, 7).is_none(), "once");
        assert!(waits.checked(r, status(QrState::Scanned), false, 0, now).is_none(), "gone");
        assert_eq!(waits.len(), 1);
        assert!(waits.remove(other).is_some(), "the other wait is still held");
        assert!(waits.by_key.is_empty() && waits.by_conn.is_empty());
    }

    #[test]
    fn long_waits_end_up_to_a_fifth_early_at_random_and_short_ones_on_time() {
        assert_eq!(jittered(Duration::from_millis(500)), Duration::from_millis(500));
        assert_eq!(jittered(Duration::from_millis(4_999)), Duration::from_millis(4_999));
        let held: Vec<Duration> = (0..1000).map(|_| jittered(MAX_WAIT)).collect();
        assert!(held.iter().all(|&h| h <= MAX_WAIT && h >= MAX_WAIT - MAX_WAIT / JITTER_SHARE), "{held:?}");
        let (min, max) = (held.iter().min().unwrap(), held.iter().max().unwrap());
        assert!(*max - *min > Duration::from_secs(4), "spread over the last fifth: {min:?}..{max:?}");
    }

    #[test]
    fn waits_past_the_cap_are_refused() {
        let now = Instant::now();
        let mut waits = QrWaits::new();
        for i in 0..MAX_WAITS {
            waits.begin((Token(i % 300), 1, i as u64), request(25_000), now).unwrap();
        }
        assert_eq!(waits.begin((Token(1), 1, 0), request(1), now), Err(Refused::Full));
    }

    #[test]
    fn a_wait_entry_is_small() {
        // The slab entry; its strings are 64 bytes each on the heap.
        assert!(size_of::<Wait>() <= 512, "{}", size_of::<Wait>());
    }
}
