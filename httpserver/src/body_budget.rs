//! The memory that large request bodies may hold at once, in all and per client.
//!
//! A body over [`crate::request::MAX_BODY_LEN`] (in practice, an upload) is
//! buffered whole before its handler runs, so its announced length is reserved
//! here before any of it is read, and given back when the request is dropped.
//! Small bodies need no reservation: the connection cap already bounds them.
//!
//! Two limits apply. [`MAX_BODY_BYTES_IN_FLIGHT`] bounds the server's memory.
//! Each client network (see [`crate::addr_quota::Network`]) may hold only its
//! share of that (`--upload-budget-per-addr-mib`), so one address that opens a
//! hundred uploads and never sends their bodies cannot spend the whole budget:
//! it is refused past its share while other addresses' uploads are served.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::addr_quota::{AddrQuota, QuotaShare};

/// Memory all request bodies larger than [`crate::request::MAX_BODY_LEN`] may
/// hold at once. It caps what concurrent uploads can cost: 256 MiB is about 120
/// full-size pictures in flight; past that, uploads get 503 until some finish.
pub const MAX_BODY_BYTES_IN_FLIGHT: usize = 256 * 1024 * 1024;

/// Default share of [`MAX_BODY_BYTES_IN_FLIGHT`] one client network may hold:
/// 16 MiB, a sixteenth of it (as the default per-address connection limit is a
/// sixteenth of the connection cap). That is seven full-size uploads at once
/// from one address, more than a household or an office behind one NAT sends
/// at the same moment, while it takes sixteen addresses to spend the budget.
pub const DEFAULT_BODY_BYTES_PER_ADDR: usize = 16 * 1024 * 1024;

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetError {
    /// [`MAX_BODY_BYTES_IN_FLIGHT`] is spent.
    Spent,
    /// The client's network holds its whole share already.
    AddressShareSpent,
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetError::Spent => f.write_str("too many large bodies in flight"),
            BudgetError::AddressShareSpent => {
                f.write_str("too many large bodies in flight from this client address")
            }
        }
    }
}

impl std::error::Error for BudgetError {}

/// The shared account of memory held by large bodies.
#[derive(Debug)]
pub struct BodyBudget {
    in_flight: AtomicUsize,
    per_addr: Arc<AddrQuota>,
}

impl Default for BodyBudget {
    /// A budget with the default per-address share, [`DEFAULT_BODY_BYTES_PER_ADDR`].
    fn default() -> BodyBudget {
        BodyBudget::new(DEFAULT_BODY_BYTES_PER_ADDR)
    }
}

impl BodyBudget {
    /// A budget of [`MAX_BODY_BYTES_IN_FLIGHT`] in all, of which one client
    /// network may hold at most `per_addr` bytes.
    pub fn new(per_addr: usize) -> BodyBudget {
        BodyBudget { in_flight: AtomicUsize::new(0), per_addr: Arc::new(AddrQuota::new(per_addr)) }
    }

    /// Reserves `len` bytes for a body from `peer`.
    ///
    /// # Errors
    ///
    /// [`BudgetError::AddressShareSpent`] if `peer`'s network would then hold
    /// more than its share, [`BudgetError::Spent`] if all bodies together would
    /// hold more than [`MAX_BODY_BYTES_IN_FLIGHT`]. Either way nothing is held.
    pub fn reserve(self: &Arc<Self>, peer: IpAddr, len: usize) -> Result<Reservation, BudgetError> {
        // The client's share first: a client past it must not take from the
        // total, even for a moment, what other clients are waiting for.
        let share = self.per_addr.take(peer, len).ok_or(BudgetError::AddressShareSpent)?;
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            // On refusal `share` is dropped here, and the client's share with it.
            let next = current.checked_add(len).filter(|n| *n <= MAX_BODY_BYTES_IN_FLIGHT);
            let next = next.ok_or(BudgetError::Spent)?;
            match self.in_flight.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(Reservation { budget: Arc::clone(self), len, _share: share }),
                Err(seen) => current = seen,
            }
        }
    }

    /// Bytes reserved now, by everyone.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Bytes reserved now by `peer`'s network.
    pub fn held_by(&self, peer: IpAddr) -> usize {
        self.per_addr.held(peer)
    }
}

/// A share of the [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    len: usize,
    /// The same bytes in the client's share; given back after the total.
    _share: QuotaShare,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.in_flight.fetch_sub(self.len, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn body_budget_refuses_past_its_cap_and_refills_on_drop() {
        let budget = Arc::new(BodyBudget::new(MAX_BODY_BYTES_IN_FLIGHT));
        let big = budget.reserve(ip(1), MAX_BODY_BYTES_IN_FLIGHT - 10).unwrap();
        assert_eq!(budget.reserve(ip(2), 11).unwrap_err(), BudgetError::Spent);
        assert_eq!(budget.held_by(ip(2)), 0, "a refusal by the total gives the share back");
        let small = budget.reserve(ip(2), 10).unwrap();
        drop(big);
        drop(small);
        assert_eq!(budget.in_flight(), 0);
        assert!(budget.reserve(ip(3), MAX_BODY_BYTES_IN_FLIGHT).is_ok());
    }

    #[test]
    fn one_address_gets_its_share_and_others_the_rest() {
        let budget = Arc::new(BodyBudget::new(16 * MIB));
        let hog: Vec<Reservation> = (0..8).map(|_| budget.reserve(ip(2), 2 * MIB).unwrap()).collect();
        assert_eq!(budget.reserve(ip(2), 2 * MIB).unwrap_err(), BudgetError::AddressShareSpent);
        assert_eq!(budget.in_flight(), 16 * MIB, "a refused share takes nothing from the total");
        let other = budget.reserve(ip(3), 2 * MIB).unwrap();
        assert_eq!((budget.held_by(ip(2)), budget.held_by(ip(3))), (16 * MIB, 2 * MIB));
        drop(hog);
        drop(other);
        assert_eq!((budget.in_flight(), budget.held_by(ip(2))), (0, 0));
    }
}
