//! The futex hash a thread-per-connection server needs.
//!
//! A thread blocked on a mutex or a condition variable waits on a futex, and
//! the kernel queues it in one bucket of a hash table; every wake-up (a mutex
//! unlocked with waiters, a condition variable notified) walks that bucket to
//! find its waiter. Since Linux 6.16 a multi-threaded process gets a hash of
//! its own, sized from the CPUs online rather than from its threads: 16
//! buckets on a two-core machine, whatever the number of threads. httpserver
//! runs a thread per connection, and every one of them blocks on a condition
//! variable while its RPC is out: ten thousand parked scan-to-log-in waits put
//! some 600 waiters in each bucket, and each reply's wake-up walked hundreds
//! of them (`perf record -a` under `loadgen --scenario qr`: `futex_wake` 17 %
//! of both cores' samples, the log-ins beside the waits at half their
//! throughput). So the server asks at start-up for about a bucket per thread
//! it may run (`PR_FUTEX_HASH`). A kernel from before 6.16 does not know the
//! request (`EINVAL`); its processes share one global hash of 256 buckets per
//! CPU, as they always did, and nothing is changed there.

use std::io;

/// `prctl` option and command of Linux 6.16 (`include/uapi/linux/prctl.h`),
/// not yet in the `libc` crate.
const PR_FUTEX_HASH: libc::c_int = 78;
const PR_FUTEX_HASH_SET_SLOTS: libc::c_ulong = 1;
#[cfg(test)]
const PR_FUTEX_HASH_GET_SLOTS: libc::c_ulong = 2;
const NO_FLAGS: libc::c_ulong = 0;
const UNUSED: libc::c_ulong = 0;

/// Fewest buckets asked for: the kernel's own smallest private hash.
const MIN_SLOTS: usize = 16;

/// Most buckets asked for: 65,536 of 64 bytes (a lock, a waiter count and a
/// list head, a cache line each) are 4 MiB of kernel memory, for a process
/// that may run as many threads.
pub const MAX_SLOTS: usize = 1 << 16;

/// What became of the request.
#[derive(Debug)]
pub enum HashSize {
    /// The process's hash now has this many buckets.
    Buckets(usize),
    /// The kernel has no private futex hash to size (before Linux 6.16):
    /// the shared global one serves, as before.
    NotSupported,
}

/// Sizes this process's futex hash for `threads` threads at once
/// ([`slots_for`]).
///
/// # Errors
///
/// The kernel's refusal other than "not supported" (`ENOMEM`, say); the
/// caller should log it and carry on with the hash it has.
pub fn size_for(threads: usize) -> io::Result<HashSize> {
    let slots = slots_for(threads);
    // At most MAX_SLOTS, so it fits; a count that did not would be nothing
    // the kernel could take.
    let Ok(slots_arg) = libc::c_ulong::try_from(slots) else { return Ok(HashSize::NotSupported) };
    // SAFETY: PR_FUTEX_HASH_SET_SLOTS reads only its integer arguments (the
    // bucket count and the flags, 0) and touches no memory of the caller's.
    let set = unsafe { libc::prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_SET_SLOTS, slots_arg, NO_FLAGS, UNUSED) };
    if set == 0 {
        return Ok(HashSize::Buckets(slots));
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EINVAL) {
        return Ok(HashSize::NotSupported);
    }
    Err(error)
}

/// The buckets asked for `threads` threads: the next power of two (the
/// kernel takes no other), from 16 up to [`MAX_SLOTS`].
pub fn slots_for(threads: usize) -> usize {
    threads.max(MIN_SLOTS).checked_next_power_of_two().unwrap_or(MAX_SLOTS).min(MAX_SLOTS)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// The buckets of this process's hash, as the kernel counts them.
    fn buckets() -> libc::c_int {
        // SAFETY: PR_FUTEX_HASH_GET_SLOTS reads no argument and writes nothing.
        unsafe { libc::prctl(PR_FUTEX_HASH, PR_FUTEX_HASH_GET_SLOTS, UNUSED, UNUSED, UNUSED) }
    }

    #[test]
    fn buckets_are_a_power_of_two_at_least_the_threads_within_bounds() {
        assert_eq!(slots_for(0), MIN_SLOTS);
        assert_eq!(slots_for(3), MIN_SLOTS);
        assert_eq!(slots_for(10_000), 16_384);
        assert_eq!(slots_for(16_384), 16_384);
        assert_eq!(slots_for(16_385), 32_768);
        assert_eq!(slots_for(usize::MAX), MAX_SLOTS);
    }

    #[test]
    fn the_kernel_is_asked_for_them() {
        match size_for(10_000).unwrap() {
            HashSize::Buckets(n) => {
                assert_eq!(n, 16_384);
                // A hash in use by another thread of this test process is
                // replaced once that use ends.
                let asked = Instant::now();
                while buckets() != 16_384 && asked.elapsed() < Duration::from_secs(5) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert_eq!(buckets(), 16_384);
            }
            // A kernel before 6.16: there is no private hash to ask about.
            HashSize::NotSupported => assert!(buckets() < 0),
        }
    }
}
