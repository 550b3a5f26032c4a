//! The pictures this httpserver has served lately, kept in memory.
//!
//! Pictures live in MariaDB and come through tcpserver (`GetAvatar`), so
//! every httpserver serves every picture, whichever tcpserver stored it. A
//! picture's name is the SHA-256 of its bytes, so the bytes behind a name
//! never change: an entry never goes stale, and nothing ever has to be
//! invalidated. A picture no account uses any more may stay here until it is
//! evicted; it is only ever served to someone who has its URL, which is what
//! browsers holding it cache forever anyway.
//!
//! The cache is bounded in bytes (`--avatar-cache-mib`): each entry weighs
//! its picture's bytes plus [`ENTRY_OVERHEAD`], and entries are evicted
//! (S3-FIFO, by the `quick_cache` crate) before the total would pass the
//! bound. A miss makes one RPC, and requests for the same missing picture at
//! the same moment wait for that one instead of making their own. What is
//! not a picture (a 404, a failed call) is never kept, so unknown names cost
//! an RPC each: the same as a profile read, and never memory.

use std::sync::Arc;
use std::time::Duration;

use hostsupport::metrics::{Counter, Gauge};
use quick_cache::sync::{Cache, GuardResult};
use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter};

/// What an entry costs beyond its picture's bytes: the name (at most 69
/// bytes), the `String` and `Arc` headers and the table's slot, rounded up.
/// Counting it keeps the bound honest for many small pictures.
pub const ENTRY_OVERHEAD: u64 = 256;

/// Shards of the cache: its lock is taken per shard. Each shard holds at most
/// its share of the bound, and a picture heavier than a shard's share is not
/// kept, so shards are halved until one holds a picture at the 2 MiB cap.
const MAX_SHARDS: u64 = 8;

/// The cache's size, for `GET /metrics`: bytes and entries held now.
pub static CACHE_BYTES: Gauge = Gauge::new();
/// Entries held now.
pub static CACHE_ENTRIES: Gauge = Gauge::new();
/// Pictures served from memory.
pub static CACHE_HITS: Counter = Counter::new();
/// Pictures that had to be asked of tcpserver.
pub static CACHE_MISSES: Counter = Counter::new();

/// A picture as it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    /// One of the four image types tcpserver stores.
    pub content_type: &'static str,
    /// The bytes, shared by every response that sends them.
    pub bytes: Arc<[u8]>,
}

/// An entry's weight: [`ENTRY_OVERHEAD`] plus the bytes.
#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl Weighter<String, Picture> for ByBytes {
    fn weight(&self, _name: &String, picture: &Picture) -> u64 {
        ENTRY_OVERHEAD + picture.bytes.len() as u64
    }
}

/// The cache of one httpserver.
pub struct AvatarCache {
    /// `None` when the bound is too small for any picture to be kept.
    cache: Option<Cache<String, Picture, ByBytes>>,
    capacity: u64,
}

impl std::fmt::Debug for AvatarCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvatarCache").field("capacity", &self.capacity).field("bytes", &self.bytes()).finish()
    }
}

impl AvatarCache {
    /// A cache of at most `capacity` bytes (0: keep nothing).
    pub fn new(capacity: u64) -> AvatarCache {
        let largest = ENTRY_OVERHEAD + proto::MAX_IMAGE_LEN as u64;
        let mut shards = MAX_SHARDS;
        // Each shard keeps what fits its share, less a margin the crate
        // keeps for its cold queue: a full-size picture must fit one.
        while shards > 1 && capacity / shards < largest * 2 {
            shards /= 2;
        }
        let cache = (capacity > 0).then(|| {
            let options = OptionsBuilder::new()
                .estimated_items_capacity((capacity / (64 * 1024)).clamp(16, 1 << 20) as usize)
                .weight_capacity(capacity)
                .shards(shards as usize)
                .build()
                .unwrap_or_else(|_| unreachable!("the weight capacity is set"));
            Cache::with_options(options, ByBytes, DefaultHashBuilder::default(), Default::default())
        });
        AvatarCache { cache, capacity }
    }

    /// The bound, in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes held now: the weights of the entries, never above [`AvatarCache::capacity`].
    pub fn bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, Cache::weight)
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.cache.as_ref().map_or(0, Cache::len)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The picture `name`, from memory or else from `fetch` (which is kept
    /// if it returns a picture). A caller that finds another one fetching the
    /// same name waits for it, at most `wait`, then fetches itself.
    ///
    /// # Errors
    ///
    /// `fetch`'s error, which is not kept.
    pub fn get_or_fetch<E>(
        &self,
        name: &str,
        wait: Duration,
        fetch: impl FnOnce() -> Result<Option<Picture>, E>,
    ) -> Result<Option<Picture>, E> {
        let Some(cache) = &self.cache else { return fetch() };
        match cache.get_value_or_guard(name, Some(wait)) {
            GuardResult::Value(picture) => {
                CACHE_HITS.add(1);
                Ok(Some(picture))
            }
            GuardResult::Guard(guard) => {
                CACHE_MISSES.add(1);
                // On `None` or an error the guard is dropped: the waiters
                // then fetch for themselves, and nothing is kept.
                let fetched = fetch()?;
                if let Some(picture) = &fetched {
                    let _ = guard.insert(picture.clone());
                    self.publish();
                }
                Ok(fetched)
            }
            GuardResult::Timeout => {
                CACHE_MISSES.add(1);
                fetch()
            }
        }
    }

    /// Sets the size gauges to this cache's.
    fn publish(&self) {
        CACHE_BYTES.set(i64::try_from(self.bytes()).unwrap_or(i64::MAX));
        CACHE_ENTRIES.set(i64::try_from(self.len()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn picture(len: usize, fill: u8) -> Picture {
        Picture { content_type: "image/png", bytes: vec![fill; len].into() }
    }

    fn name(i: usize) -> String {
        format!("{:064x}.png", i)
    }

    #[test]
    fn a_picture_is_fetched_once_and_then_served_from_memory() {
        let cache = AvatarCache::new(16 << 20);
        let fetches = AtomicUsize::new(0);
        for _ in 0..3 {
            let got = cache.get_or_fetch(&name(1), Duration::from_secs(1), || {
                fetches.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(Some(picture(1000, 7)))
            });
            assert_eq!(got, Ok(Some(picture(1000, 7))));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!((cache.len(), cache.bytes()), (1, 1000 + ENTRY_OVERHEAD));
    }

    #[test]
    fn unknown_names_and_failures_are_never_kept() {
        let cache = AvatarCache::new(16 << 20);
        for _ in 0..2 {
            assert_eq!(cache.get_or_fetch(&name(2), Duration::from_secs(1), || Ok::<_, ()>(None)), Ok(None));
            assert_eq!(
                cache.get_or_fetch(&name(3), Duration::from_secs(1), || Err::<Option<Picture>, _>(5)),
                Err(5)
            );
        }
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn many_distinct_pictures_never_hold_more_than_the_bound() {
        let capacity = 8 << 20;
        let cache = AvatarCache::new(capacity);
        let mut most = 0;
        for i in 0..2_000 {
            // From 1 KiB to the 2 MiB cap, so that evictions make room for
            // pictures of every size.
            let len = if i % 50 == 0 { proto::MAX_IMAGE_LEN } else { 1024 + (i * 7919) % (96 * 1024) };
            let got =
                cache.get_or_fetch(&name(i), Duration::from_secs(1), || Ok::<_, ()>(Some(picture(len, 1))));
            assert_eq!(got.map(|p| p.map(|p| p.bytes.len())), Ok(Some(len)));
            most = most.max(cache.bytes());
            assert!(cache.bytes() <= capacity, "{} bytes held after {i} pictures", cache.bytes());
        }
        assert!(most > capacity / 2, "the cache is used: at most {most} bytes held");
        assert!(cache.len() < 2_000, "pictures were evicted");
    }

    #[test]
    fn a_full_size_picture_is_kept_even_by_a_small_cache() {
        let cache = AvatarCache::new(5 << 20);
        let fetches = AtomicUsize::new(0);
        for _ in 0..2 {
            let got = cache.get_or_fetch(&name(9), Duration::from_secs(1), || {
                fetches.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(Some(picture(proto::MAX_IMAGE_LEN, 3)))
            });
            assert!(matches!(got, Ok(Some(_))));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(cache.bytes() <= 5 << 20);
    }

    #[test]
    fn a_cache_of_zero_keeps_nothing() {
        let cache = AvatarCache::new(0);
        for _ in 0..2 {
            let got =
                cache.get_or_fetch(&name(4), Duration::from_secs(1), || Ok::<_, ()>(Some(picture(10, 1))));
            assert!(matches!(got, Ok(Some(_))));
        }
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
    }
}
