//! What this drainer has already learned of accounts' devices, so that a
//! log-in from a device the account keeps using costs MariaDB neither the
//! look-up nor the write of its `known_devices` rows.
//!
//! Most log-ins come from a device their account has used before: without
//! this, every success read two fingerprints and wrote them back, four
//! statements' share per log-in beside the one row of history. The cache
//! holds, per (account, fingerprint), the newest `last_seen_ms` this drainer
//! knows the table to hold. A fingerprint it holds as seen within the
//! window is known without asking; one it does not hold is looked up as
//! before (another drainer, of another tcpserver, may have written it). A
//! fingerprint is written again only when the table's time is more than
//! [`REFRESH_MS`] old, so a device in daily use is written about once a day.
//!
//! Knowing is safe to cache because it only grows: rows leave the table
//! when they pass the 90-day window, which the cached time shows too, or
//! when their account is deleted, whose id is never given out again.

use std::collections::HashMap;

/// Fingerprints held at most: about 64 bytes each with the map's own
/// overhead, so at most about 6.4 MB. When full it starts over empty: the
/// cost is one look-up and one write again for each device still in use.
pub const CAPACITY: usize = 100_000;

/// How stale the table's `last_seen_ms` of a device in use may become
/// before it is written again: a day, so the 90-day window of "seen before"
/// is exact to within a day.
pub const REFRESH_MS: u64 = 24 * 3600 * 1000;

/// One account's use of one fingerprint.
pub type Pair = (u64, [u8; 16]);

/// The cache.
#[derive(Debug, Default)]
pub struct KnownCache {
    /// The newest `last_seen_ms` the table is known to hold for each pair.
    stored: HashMap<Pair, u64>,
}

impl KnownCache {
    /// An empty cache.
    pub fn new() -> KnownCache {
        KnownCache::default()
    }

    /// Whether the table holds `pair` as seen at or after `since_ms`, as far
    /// as this cache knows (`false`: ask the table).
    pub fn known_since(&self, pair: &Pair, since_ms: u64) -> bool {
        self.stored.get(pair).is_some_and(|&seen| seen >= since_ms)
    }

    /// Whether a use of `pair` at `at_ms` needs writing: the table's time,
    /// as far as this cache knows, is more than [`REFRESH_MS`] older.
    pub fn needs_write(&self, pair: &Pair, at_ms: u64) -> bool {
        self.stored.get(pair).is_none_or(|&seen| seen.saturating_add(REFRESH_MS) < at_ms)
    }

    /// Notes that the table holds `pair` as seen at `seen_ms` (after a
    /// COMMIT that wrote it, or a look-up that read it).
    pub fn learn(&mut self, pair: Pair, seen_ms: u64) {
        if self.stored.len() >= CAPACITY && !self.stored.contains_key(&pair) {
            self.stored.clear();
        }
        let entry = self.stored.entry(pair).or_insert(seen_ms);
        *entry = (*entry).max(seen_ms);
    }

    /// Pairs held.
    pub fn len(&self) -> usize {
        self.stored.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;

    #[test]
    fn a_learned_pair_is_known_within_its_window_and_written_again_after_a_day() {
        let mut cache = KnownCache::new();
        let pair = (7, [1; 16]);
        assert!(!cache.known_since(&pair, 0));
        assert!(cache.needs_write(&pair, 100 * DAY));
        cache.learn(pair, 100 * DAY);
        assert!(cache.known_since(&pair, 10 * DAY));
        assert!(!cache.known_since(&pair, 100 * DAY + 1), "seen before the window is not known");
        assert!(!cache.needs_write(&pair, 100 * DAY + DAY / 2));
        assert!(cache.needs_write(&pair, 101 * DAY + 1));
        assert!(!cache.known_since(&(8, [1; 16]), 0), "another account's use is not this one's");
    }

    #[test]
    fn learning_keeps_the_newest_time() {
        let mut cache = KnownCache::new();
        let pair = (7, [1; 16]);
        cache.learn(pair, 50 * DAY);
        cache.learn(pair, 20 * DAY);
        assert!(cache.known_since(&pair, 50 * DAY));
    }

    #[test]
    fn a_full_cache_starts_over_instead_of_growing() {
        let mut cache = KnownCache::new();
        for user in 0..CAPACITY as u64 {
            cache.learn((user, [0; 16]), DAY);
        }
        assert_eq!(cache.len(), CAPACITY);
        cache.learn((CAPACITY as u64, [0; 16]), DAY);
        assert_eq!(cache.len(), 1);
        cache.learn((CAPACITY as u64, [0; 16]), 2 * DAY);
        assert_eq!(cache.len(), 1, "a held pair is updated in place");
    }
}
