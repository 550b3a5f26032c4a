//! The memory that large request bodies may hold at once.
//!
//! A body over [`crate::request::MAX_BODY_LEN`] (in practice, an upload) is
//! buffered whole before its handler runs, so its announced length is reserved
//! here before any of it is read, and given back when the request is dropped.
//! Small bodies need no reservation: the connection cap already bounds them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Memory all request bodies larger than [`crate::request::MAX_BODY_LEN`] may
/// hold at once. It caps what concurrent uploads can cost: 256 MiB is about 120
/// full-size pictures in flight; past that, uploads get 503 until some finish.
pub const MAX_BODY_BYTES_IN_FLIGHT: usize = 256 * 1024 * 1024;

/// The shared account of memory held by large bodies.
#[derive(Debug, Default)]
pub struct BodyBudget {
    in_flight: AtomicUsize,
}

impl BodyBudget {
    /// Reserves `len` bytes, or `None` if that would pass [`MAX_BODY_BYTES_IN_FLIGHT`].
    pub fn reserve(self: &Arc<Self>, len: usize) -> Option<Reservation> {
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            let next = current.checked_add(len).filter(|n| *n <= MAX_BODY_BYTES_IN_FLIGHT)?;
            match self.in_flight.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Reservation { budget: Arc::clone(self), len }),
                Err(seen) => current = seen,
            }
        }
    }
}

/// A share of the [`BodyBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<BodyBudget>,
    len: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.in_flight.fetch_sub(self.len, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_budget_refuses_past_its_cap_and_refills_on_drop() {
        let budget = Arc::new(BodyBudget::default());
        let big = budget.reserve(MAX_BODY_BYTES_IN_FLIGHT - 10).unwrap();
        assert!(budget.reserve(11).is_none());
        let small = budget.reserve(10).unwrap();
        drop(big);
        drop(small);
        assert!(budget.reserve(MAX_BODY_BYTES_IN_FLIGHT).is_some());
    }
}
