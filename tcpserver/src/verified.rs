//! A bounded, in-memory cache of recently verified credentials, so that a user
//! who logs in again and again with the right password does not pay the
//! password hash every time.
//!
//! What it holds: for each cached user, one HMAC-SHA256 under a key drawn from
//! the OS generator when the process starts (never stored, never logged) over
//! the user id, the [stamp](crate::password::stamp) of the stored password-hash
//! string and the password. It holds no
//! password and no unkeyed fast hash of one: without the process key an entry
//! cannot be tested against guesses, so a memory dump yields HMACs, not
//! passwords or anything cheaper to attack than the database's PBKDF2 hashes.
//!
//! Why it is safe to trust a hit: an entry only ever comes from a full
//! [`PasswordHasher::verify`](crate::password::PasswordHasher::verify) that
//! succeeded; failures are never cached, so a wrong password always costs the
//! full hash (and the throttle counts it). The stored hash's stamp is part of
//! the HMAC, so when a password (or its hash, after a cost upgrade) changes, the
//! old entry no longer matches anything and is simply overwritten later.
//!
//! Bounded: a fixed array of [`CAPACITY`] slots, each user in the slot its id
//! hashes to (direct-mapped); a newer entry evicts whatever held the slot. The
//! memory is allocated once at start and never grows.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use hmac::{Hmac, KeyInit, Mac};
use rand::TryRng;
use rand::rngs::SysRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::password::PasswordError;

/// Slots in the cache: with 40 bytes per slot, 64 Ki slots take 2.5 MiB, and a
/// working set of a few thousand active users rarely collides.
pub const CAPACITY: usize = 1 << 16;

/// Bytes of the per-process HMAC key.
const KEY_LEN: usize = 32;

/// Bytes of one entry's HMAC.
const MAC_LEN: usize = 32;

/// Independently locked groups of slots, so workers seldom wait for each other.
const SHARDS: usize = 64;

/// One slot: which user, and the HMAC of their last verified credentials.
#[derive(Clone, Copy)]
struct Slot {
    /// `users.id`; 0 marks an empty slot (ids start at 1).
    user_id: u64,
    mac: [u8; MAC_LEN],
}

const EMPTY: Slot = Slot { user_id: 0, mac: [0; MAC_LEN] };

/// Recently verified credentials; see the module documentation.
pub struct VerifiedCache {
    key: [u8; KEY_LEN],
    /// `SHARDS` groups of `capacity / SHARDS` slots.
    shards: Vec<Mutex<Vec<Slot>>>,
    slots_per_shard: usize,
}

impl fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedCache").field("capacity", &self.capacity()).finish_non_exhaustive()
    }
}

impl VerifiedCache {
    /// An empty cache of [`CAPACITY`] slots with a fresh random key.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Random`] if the OS generator fails.
    pub fn new() -> Result<VerifiedCache, PasswordError> {
        VerifiedCache::with_capacity(CAPACITY)
    }

    /// An empty cache of about `capacity` slots (rounded up to a whole number
    /// per shard, at least one each).
    ///
    /// # Errors
    ///
    /// [`PasswordError::Random`] if the OS generator fails.
    pub fn with_capacity(capacity: usize) -> Result<VerifiedCache, PasswordError> {
        let mut key = [0u8; KEY_LEN];
        SysRng.try_fill_bytes(&mut key).map_err(|_| PasswordError::Random)?;
        let slots_per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(vec![EMPTY; slots_per_shard])).collect();
        Ok(VerifiedCache { key, shards, slots_per_shard })
    }

    /// How many entries the cache can hold at most.
    pub fn capacity(&self) -> usize {
        SHARDS * self.slots_per_shard
    }

    /// How many entries it holds now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).iter().filter(|s| s.user_id != 0).count()).sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `password` was verified recently against exactly the stored
    /// hash whose stamp is `stored`, for this user. A `false` says nothing: the caller runs the full check.
    pub fn contains(&self, user_id: u64, stored: &str, password: &str) -> bool {
        let mac = self.mac(user_id, stored, password);
        let (shard, index) = self.place(user_id);
        let slots = lock(&self.shards[shard]);
        let hit =
            slots.get(index).is_some_and(|slot| slot.user_id == user_id && bool::from(slot.mac.ct_eq(&mac)));
        drop(slots);
        let counter = if hit { &crate::metrics::VERIFIED_HITS } else { &crate::metrics::VERIFIED_MISSES };
        counter.add(1);
        hit
    }

    /// Records a successful full verification (and only that: never call it
    /// for a failed one), evicting whatever held the user's slot.
    pub fn remember(&self, user_id: u64, stored: &str, password: &str) {
        if user_id == 0 {
            return;
        }
        let mac = self.mac(user_id, stored, password);
        let (shard, index) = self.place(user_id);
        if let Some(slot) = lock(&self.shards[shard]).get_mut(index) {
            *slot = Slot { user_id, mac };
        }
    }

    /// The entry for one set of credentials. Lengths are included so that no
    /// two different (stored, password) pairs feed the same bytes.
    fn mac(&self, user_id: u64, stored: &str, password: &str) -> [u8; MAC_LEN] {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(&user_id.to_be_bytes());
        mac.update(&(stored.len() as u64).to_be_bytes());
        mac.update(stored.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The shard and the slot within it for a user id (a multiplicative hash,
    /// so that consecutive ids spread over all shards).
    fn place(&self, user_id: u64) -> (usize, usize) {
        let mixed = user_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let high = (mixed >> 32) as usize;
        (high % SHARDS, (high / SHARDS) % self.slots_per_shard)
    }
}

fn lock(shard: &Mutex<Vec<Slot>>) -> std::sync::MutexGuard<'_, Vec<Slot>> {
    // Every update is a single slot assignment; a panic cannot leave a shard torn.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORED: &str = "$pbkdf2-sha256$i=1000$00$11";

    #[test]
    fn a_remembered_login_matches_only_the_same_password_and_stored_hash() {
        let cache = VerifiedCache::with_capacity(1024).unwrap();
        assert!(!cache.contains(7, STORED, "correct horse"));
        cache.remember(7, STORED, "correct horse");
        assert!(cache.contains(7, STORED, "correct horse"));
        assert!(!cache.contains(7, STORED, "correct hors"), "a wrong password is never a hit");
        assert!(!cache.contains(7, STORED, "correct horsE"));
        assert!(!cache.contains(7, "$pbkdf2-sha256$i=1000$00$12", "correct horse"), "a changed hash");
        assert!(!cache.contains(8, STORED, "correct horse"), "another user");
    }

    #[test]
    fn the_field_boundaries_are_unambiguous() {
        let cache = VerifiedCache::with_capacity(64).unwrap();
        cache.remember(3, "ab", "cdefghij");
        assert!(!cache.contains(3, "abc", "defghij"));
        assert!(!cache.contains(3, "a", "bcdefghij"));
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = VerifiedCache::with_capacity(256).unwrap();
        assert_eq!(cache.capacity(), 256);
        assert!(cache.is_empty());
        for id in 1..=10_000u64 {
            cache.remember(id, STORED, "password");
        }
        let len = cache.len();
        assert!(len <= 256 && len > 128, "{len} entries");
        // The most recent entry survives; most early ones were evicted.
        assert!(cache.contains(10_000, STORED, "password"));
        let survivors = (1..=1_000u64).filter(|&id| cache.contains(id, STORED, "password")).count();
        assert!(survivors < 100, "{survivors} of the first 1000 still cached");
    }

    #[test]
    fn two_processes_never_share_entries() {
        let a = VerifiedCache::with_capacity(64).unwrap();
        let b = VerifiedCache::with_capacity(64).unwrap();
        assert_ne!(a.mac(1, STORED, "password"), b.mac(1, STORED, "password"));
    }

    #[test]
    fn debug_shows_no_key() {
        let cache = VerifiedCache::with_capacity(64).unwrap();
        let shown = format!("{cache:?}");
        assert!(shown.contains("capacity") && !shown.contains("key"), "{shown}");
    }
}
