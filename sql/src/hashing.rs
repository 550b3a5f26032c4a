//! Hashing the passwords of a batch of accounts on every core.
//!
//! PBKDF2 at the server's cost is by far the largest part of a seed (tens of
//! microseconds per account, against about one for loading the row), so the
//! batch is cut into one contiguous piece per thread and the pieces are joined
//! in id order. Each account gets its own salt from the thread's CSPRNG
//! (ChaCha, seeded from the operating system), as a sign-up would.

use std::ops::Range;

use rand::Rng;
use tcpserver::password::{PasswordHasher, SALT_LEN};

use crate::{accounts, progress::Progress};

/// Accounts a thread hashes between two progress updates: often enough for a
/// smooth bar, rarely enough that the shared counter costs nothing.
const PROGRESS_STEP: u64 = 1_000;

/// The stored hashes (`$pbkdf2-sha256$i=..`) of the passwords of accounts
/// `ids`, in id order, computed on `threads` threads.
pub fn hash_batch(
    hasher: &PasswordHasher,
    ids: Range<u64>,
    threads: usize,
    progress: &Progress,
) -> Vec<String> {
    let count = ids.end.saturating_sub(ids.start);
    let threads = (threads.max(1) as u64).min(count.max(1));
    let per_thread = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let start = ids.start + t * per_thread;
                let piece = start..(start + per_thread).min(ids.end);
                scope.spawn(move || hash_piece(hasher, piece, progress))
            })
            .collect();
        let mut hashes = Vec::with_capacity(count as usize);
        for worker in workers {
            match worker.join() {
                Ok(piece) => hashes.extend(piece),
                // A panic in PBKDF2 is a bug; carry it to the caller unchanged.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        hashes
    })
}

fn hash_piece(hasher: &PasswordHasher, ids: Range<u64>, progress: &Progress) -> Vec<String> {
    let mut rng = rand::rng();
    let mut salt = [0u8; SALT_LEN];
    let mut hashes = Vec::with_capacity(ids.end.saturating_sub(ids.start) as usize);
    let mut unreported = 0;
    for id in ids {
        rng.fill_bytes(&mut salt);
        hashes.push(hasher.hash_with_salt(&accounts::password(id), &salt));
        unreported += 1;
        if unreported == PROGRESS_STEP {
            progress.advance(unreported);
            unreported = 0;
        }
    }
    progress.advance(unreported);
    hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_account_gets_a_verifying_hash_with_its_own_salt() {
        let hasher = PasswordHasher::new(vec![7; 32], 1_000).unwrap();
        let progress = Progress::hidden();
        let hashes = hash_batch(&hasher, 11..18, 3, &progress);
        assert_eq!(hashes.len(), 7);
        for (id, hash) in (11..).zip(&hashes) {
            assert!(hasher.verify(&accounts::password(id), hash).unwrap(), "{id}");
            assert!(!hasher.verify(&accounts::password(id + 1), hash).unwrap(), "{id}");
        }
        let salts: std::collections::HashSet<_> = hashes.iter().map(|h| h.split('$').nth(3)).collect();
        assert_eq!(salts.len(), hashes.len());
        assert_eq!(progress.position(), 7);
    }

    #[test]
    fn empty_batch_is_empty() {
        let hasher = PasswordHasher::new(vec![7; 32], 1_000).unwrap();
        assert!(hash_batch(&hasher, 5..5, 2, &Progress::hidden()).is_empty());
    }
}
