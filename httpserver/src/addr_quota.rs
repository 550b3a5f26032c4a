//! Per-client-address shares of a limited resource: connection slots, or bytes
//! of the upload budget.
//!
//! Global caps alone let one client take everything: 4,096 kept-alive
//! connections from one address, or a hundred uploads that announce 2 MiB and
//! never send it, lock everyone else out. An [`AddrQuota`] counts what each
//! client network holds and refuses past its limit, so one address gets its
//! share while the others are still served. The count is exact under
//! concurrency (one mutex around the map; each change is a few instructions
//! under it), and what a client holds is given back when its [`QuotaShare`] is
//! dropped, however the connection or request ends.
//!
//! A client is counted by its [`Network`]: the IPv4 address, or the /64 of an
//! IPv6 address (one subscriber usually holds a whole /64, so counting single
//! IPv6 addresses would give each subscriber 2^64 shares), an IPv4-mapped IPv6
//! address as the IPv4 address, the same units as tcpserver's throttles
//! (`tcpserver/src/keys.rs`). The map holds only networks that hold something:
//! an entry is removed when its count falls to zero, so it never has more
//! entries than there are shares alive (at most one per connection).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The unit a client address is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// An IPv4 address (IPv4-mapped IPv6 addresses included).
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address: its /64 network.
    V6(u64),
}

impl Network {
    /// The network `addr` is counted in.
    pub fn of(addr: IpAddr) -> Network {
        match addr.to_canonical() {
            IpAddr::V4(v4) => Network::V4(v4),
            // The shift leaves the top 64 bits, so the cast keeps all of them.
            IpAddr::V6(v6) => Network::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// How much each client network may hold of one resource at once.
#[derive(Debug)]
pub struct AddrQuota {
    limit: usize,
    held: Mutex<HashMap<Network, usize>>,
}

impl AddrQuota {
    /// A quota of `limit` units per network.
    pub fn new(limit: usize) -> AddrQuota {
        AddrQuota { limit, held: Mutex::new(HashMap::new()) }
    }

    /// The most one network may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes `amount` units for `addr`'s network, or `None` if it would then
    /// hold more than the limit. The units come back when the share is dropped.
    pub fn take(self: &Arc<Self>, addr: IpAddr, amount: usize) -> Option<QuotaShare> {
        let network = Network::of(addr);
        let mut held = self.lock();
        let count = held.entry(network).or_insert(0);
        match count.checked_add(amount).filter(|n| *n <= self.limit) {
            Some(next) => *count = next,
            None => {
                if *count == 0 {
                    // Inserted just now by `entry`: leave no empty entry behind.
                    held.remove(&network);
                }
                return None;
            }
        }
        Some(QuotaShare { quota: Arc::clone(self), network, amount })
    }

    /// What `addr`'s network holds now.
    pub fn held(&self, addr: IpAddr) -> usize {
        self.lock().get(&Network::of(addr)).copied().unwrap_or(0)
    }

    /// How many networks hold anything now (the size of the map).
    pub fn networks(&self) -> usize {
        self.lock().len()
    }

    /// The map, even if a thread panicked while holding it: every change under
    /// the lock is a single arithmetic step, so the counts are never half-updated.
    fn lock(&self) -> MutexGuard<'_, HashMap<Network, usize>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Units of an [`AddrQuota`] held by one network, given back on drop.
#[derive(Debug)]
pub struct QuotaShare {
    quota: Arc<AddrQuota>,
    network: Network,
    amount: usize,
}

impl Drop for QuotaShare {
    fn drop(&mut self) {
        let mut held = self.quota.lock();
        if let Some(count) = held.get_mut(&self.network) {
            *count = count.saturating_sub(self.amount);
            if *count == 0 {
                held.remove(&self.network);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;
    use std::thread;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(Network::of(ip("2001:db8:1:2:aaaa::1")), Network::of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(Network::of(ip("2001:db8:1:2::1")), Network::of(ip("2001:db8:1:3::1")));
        assert_eq!(Network::of(ip("::ffff:192.0.2.7")), Network::V4(Ipv4Addr::new(192, 0, 2, 7)));
        assert_eq!(Network::of(IpAddr::V6(Ipv6Addr::LOCALHOST)), Network::V6(0));
    }

    #[test]
    fn a_network_gets_its_limit_and_others_are_untouched() {
        let quota = Arc::new(AddrQuota::new(3));
        let a = ip("127.0.0.2");
        let held: Vec<QuotaShare> = (0..3).map(|_| quota.take(a, 1).unwrap()).collect();
        assert!(quota.take(a, 1).is_none(), "past its limit");
        assert!(quota.take(ip("::ffff:127.0.0.2"), 1).is_none(), "the same address, mapped");
        let other = quota.take(ip("127.0.0.3"), 3).unwrap();
        assert!(quota.take(ip("127.0.0.3"), 1).is_none());
        drop(held);
        assert_eq!(quota.held(a), 0);
        assert!(quota.take(a, 3).is_some(), "given back on drop");
        drop(other);
    }

    #[test]
    fn refusals_and_drops_leave_no_empty_entries() {
        let quota = Arc::new(AddrQuota::new(10));
        assert!(quota.take(ip("10.0.0.1"), 11).is_none());
        assert_eq!(quota.networks(), 0, "a refused first take leaves nothing");
        let shares: Vec<QuotaShare> =
            (0..100u8).map(|i| quota.take(IpAddr::from([10, 0, 1, i]), 2).unwrap()).collect();
        assert_eq!(quota.networks(), 100);
        drop(shares);
        assert_eq!(quota.networks(), 0, "entries go when their count reaches zero");
    }

    #[test]
    fn counts_are_exact_under_concurrency() {
        let quota = Arc::new(AddrQuota::new(64));
        let addr = ip("2001:db8::1");
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let quota = Arc::clone(&quota);
                thread::spawn(move || {
                    let mut mine = Vec::new();
                    for round in 0..2_000 {
                        if round % 3 == 2 {
                            mine.pop();
                        } else if let Some(share) = quota.take(addr, 1) {
                            mine.push(share);
                        }
                        assert!(quota.held(addr) <= 64, "never past the limit");
                    }
                    mine
                })
            })
            .collect();
        let kept: Vec<Vec<QuotaShare>> = workers.into_iter().map(|t| t.join().unwrap()).collect();
        let alive: usize = kept.iter().map(Vec::len).sum();
        assert_eq!(quota.held(addr), alive, "the count is the shares alive, no more, no less");
        drop(kept);
        assert_eq!((quota.held(addr), quota.networks()), (0, 0));
    }
}
