//! Password hashing: PBKDF2-HMAC-SHA256 with a per-user salt and a server-wide
//! pepper, stored as a self-describing string.
//!
//! The stored form is `$pbkdf2-sha256$i=<iterations>$<salt hex>$<hash hex>`. It
//! carries its own cost, so raising the configured cost later leaves old rows
//! verifiable ([`PasswordHasher::needs_rehash`] says which to upgrade).
//!
//! The pepper is a secret kept in a file outside the database. The password is
//! first keyed with it (`HMAC-SHA256(pepper, password)`), and that digest is what
//! PBKDF2 stretches: a stolen database alone cannot be brute-forced offline.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use rand::TryRng;
use rand::rngs::SysRng;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::pbkdf2_sha256;

/// Salt length in bytes: 128 bits, as NIST SP 800-132 asks for at least.
pub const SALT_LEN: usize = 16;

/// Derived key length: one SHA-256 output, so PBKDF2 runs its loop exactly once.
const HASH_LEN: usize = pbkdf2_sha256::OUTPUT_LEN;

/// The lowest accepted iteration count. Below this the hash protects little.
pub const MIN_ITERATIONS: u32 = 1_000;

/// The shortest pepper accepted, in bytes: it is an HMAC key and should carry at
/// least 128 bits of entropy.
pub const MIN_PEPPER_LEN: usize = 16;

const SCHEME: &str = "pbkdf2-sha256";

/// Why a hasher could not be built or a stored hash could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordError {
    /// The configured iteration count is below [`MIN_ITERATIONS`].
    CostTooLow(u32),
    /// The pepper is shorter than [`MIN_PEPPER_LEN`] bytes.
    PepperTooShort(usize),
    /// A stored hash is not in the `$pbkdf2-sha256$i=..$salt$hash` form.
    MalformedHash,
    /// The operating system's random generator failed.
    Random,
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::CostTooLow(n) => {
                write!(f, "hash cost {n} is below the minimum of {MIN_ITERATIONS} iterations")
            }
            PasswordError::PepperTooShort(n) => {
                write!(f, "pepper of {n} bytes is shorter than the minimum of {MIN_PEPPER_LEN}")
            }
            PasswordError::MalformedHash => f.write_str("stored password hash is malformed"),
            PasswordError::Random => f.write_str("the OS random generator failed"),
        }
    }
}

impl std::error::Error for PasswordError {}

/// Hashes and verifies passwords with one pepper and one configured cost.
#[derive(Clone)]
pub struct PasswordHasher {
    pepper: Vec<u8>,
    iterations: u32,
    /// A well-formed stored hash at the configured cost that no password
    /// matches (see [`PasswordHasher::unknown_user_hash`]).
    nobody: String,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher").field("iterations", &self.iterations).finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with the given pepper and PBKDF2 iteration count.
    ///
    /// # Errors
    ///
    /// [`PasswordError::CostTooLow`] or [`PasswordError::PepperTooShort`].
    pub fn new(pepper: Vec<u8>, iterations: u32) -> Result<PasswordHasher, PasswordError> {
        if iterations < MIN_ITERATIONS {
            return Err(PasswordError::CostTooLow(iterations));
        }
        if pepper.len() < MIN_PEPPER_LEN {
            return Err(PasswordError::PepperTooShort(pepper.len()));
        }
        let zeros = |n: usize| "0".repeat(2 * n);
        let nobody = format!("${SCHEME}$i={iterations}${}${}", zeros(SALT_LEN), zeros(HASH_LEN));
        Ok(PasswordHasher { pepper, iterations, nobody })
    }

    /// The configured iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Hashes `password` with a fresh salt from the OS generator.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Random`] if the OS generator fails.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let mut salt = [0u8; SALT_LEN];
        SysRng.try_fill_bytes(&mut salt).map_err(|_| PasswordError::Random)?;
        Ok(self.hash_with_salt(password, &salt))
    }

    /// Hashes `password` with the given salt. For callers that draw salts in bulk
    /// (the seeding tool); everyone else wants [`PasswordHasher::hash`].
    pub fn hash_with_salt(&self, password: &str, salt: &[u8; SALT_LEN]) -> String {
        let key = self.derive(password, salt, self.iterations);
        format!("${SCHEME}$i={}${}${}", self.iterations, hex::encode(salt), hex::encode(key))
    }

    /// Whether `password` matches `stored`, compared in constant time.
    ///
    /// # Errors
    ///
    /// [`PasswordError::MalformedHash`] if `stored` cannot be parsed.
    pub fn verify(&self, password: &str, stored: &str) -> Result<bool, PasswordError> {
        Ok(self.matches(password, &StoredHash::parse(stored)?))
    }

    /// Whether `password` matches a parsed stored hash, in constant time.
    fn matches(&self, password: &str, stored: &StoredHash) -> bool {
        let key = self.derive(password, &stored.salt, stored.iterations);
        bool::from(key.ct_eq(&stored.hash))
    }

    /// [`PasswordHasher::verify`] for several (password, stored hash) pairs,
    /// in order. The hashes of one cost are computed side by side, as many
    /// at a time as pay on this CPU ([`pbkdf2_sha256::derive_many`],
    /// [`crate::pbkdf2_lanes`]; per hash, `cargo run --release -p tcpserver
    /// --example hash_cost`: see the README's performance section).
    pub fn verify_many(&self, checks: &[(&str, &str)]) -> Vec<Result<bool, PasswordError>> {
        let parsed: Vec<Result<StoredHash, PasswordError>> =
            checks.iter().map(|(_, stored)| StoredHash::parse(stored)).collect();
        let mut verdicts: Vec<Result<bool, PasswordError>> =
            parsed.iter().map(|hash| hash.as_ref().map(|_| false).map_err(Clone::clone)).collect();
        // The readable checks by cost, each cost in the order first seen.
        let mut by_cost: Vec<(u32, Vec<(usize, &StoredHash)>)> = Vec::new();
        for (i, hash) in parsed.iter().enumerate() {
            let Ok(hash) = hash else { continue };
            match by_cost.iter_mut().find(|(cost, _)| *cost == hash.iterations) {
                Some((_, group)) => group.push((i, hash)),
                None => by_cost.push((hash.iterations, vec![(i, hash)])),
            }
        }
        for (iterations, group) in by_cost {
            let peppered: Vec<[u8; HASH_LEN]> =
                group.iter().map(|&(i, _)| self.peppered(checks[i].0)).collect();
            let inputs: Vec<(&[u8], &[u8])> =
                group.iter().zip(&peppered).map(|(&(_, hash), key)| (&key[..], &hash.salt[..])).collect();
            let started = std::time::Instant::now();
            let keys = pbkdf2_sha256::derive_many(&inputs, iterations);
            crate::metrics::PASSWORD_HASH_MICROS.add(started.elapsed().as_micros() as u64);
            crate::metrics::PASSWORD_HASHES.add(group.len() as u64);
            for ((i, hash), key) in group.into_iter().zip(keys) {
                verdicts[i] = Ok(bool::from(key.ct_eq(&hash.hash)));
            }
        }
        verdicts
    }

    /// Spends the same time as a [`PasswordHasher::verify`] at the configured cost,
    /// for logins with an unknown username, so that timing does not tell which
    /// usernames exist.
    pub fn verify_nothing(&self, password: &str) {
        std::hint::black_box(self.verify(password, &self.nobody).is_ok());
    }

    /// A stored hash at the configured cost that no password matches (its
    /// derived key is all zeros): checking a log-in for an unknown username
    /// against it in [`PasswordHasher::verify_many`] costs what a known one
    /// costs, paired or not.
    pub fn unknown_user_hash(&self) -> &str {
        &self.nobody
    }

    /// Whether `stored` was made with a lower cost than the configured one and
    /// should be replaced at the next successful login. Only upgrades: two
    /// servers configured with different costs never keep rewriting each
    /// other's hashes, and lowering the setting never weakens stored rows.
    pub fn needs_rehash(&self, stored: &str) -> bool {
        StoredHash::parse(stored).map_or(true, |h| h.iterations < self.iterations)
    }

    fn derive(&self, password: &str, salt: &[u8], iterations: u32) -> [u8; HASH_LEN] {
        let started = std::time::Instant::now();
        let key = pbkdf2_sha256::derive(&self.peppered(password), salt, iterations);
        crate::metrics::PASSWORD_HASH_MICROS.add(started.elapsed().as_micros() as u64);
        crate::metrics::PASSWORD_HASHES.add(1);
        key
    }

    /// The password keyed with the pepper: what PBKDF2 stretches.
    fn peppered(&self, password: &str) -> [u8; HASH_LEN] {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.pepper).expect("HMAC accepts keys of any length");
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// Bytes of a [`stamp`]: 128 bits, so two stored hashes never share one.
const STAMP_LEN: usize = 16;

/// A short name for one stored hash string: hex of the first `STAMP_LEN`
/// bytes of its SHA-256. It changes whenever the stored hash does (new
/// password, new salt, new cost), and tells nothing about the password that
/// the stored hash itself does not, so it may be kept where the hash may not
/// (Redis, see [`crate::login_record`]).
pub fn stamp(stored: &str) -> String {
    use sha2::Digest;
    hex::encode(&Sha256::digest(stored.as_bytes())[..STAMP_LEN])
}

/// The parts of a stored hash string.
struct StoredHash {
    iterations: u32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl StoredHash {
    fn parse(stored: &str) -> Result<StoredHash, PasswordError> {
        let mut parts = stored.split('$');
        let (Some(""), Some(SCHEME), Some(cost), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PasswordError::MalformedHash);
        };
        let iterations = cost
            .strip_prefix("i=")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n >= 1)
            .ok_or(PasswordError::MalformedHash)?;
        let salt = hex::decode(salt).map_err(|_| PasswordError::MalformedHash)?;
        let hash = hex::decode(hash).map_err(|_| PasswordError::MalformedHash)?;
        if salt.is_empty() || hash.len() != HASH_LEN {
            return Err(PasswordError::MalformedHash);
        }
        Ok(StoredHash { iterations, salt, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(b"pepper-pepper-pepper".to_vec(), 1_000).unwrap()
    }

    #[test]
    fn right_password_verifies_and_wrong_one_does_not() {
        let h = hasher();
        let stored = h.hash("correct horse").unwrap();
        assert!(h.verify("correct horse", &stored).unwrap());
        assert!(!h.verify("correct hors", &stored).unwrap());
        assert!(!h.verify("", &stored).unwrap());
    }

    #[test]
    fn stored_form_describes_itself_and_hides_the_password() {
        let stored = hasher().hash("hunter2").unwrap();
        assert!(stored.starts_with("$pbkdf2-sha256$i=1000$"), "{stored}");
        assert!(!stored.contains("hunter2"));
        assert_eq!(stored.split('$').count(), 5);
    }

    #[test]
    fn each_hash_gets_its_own_salt() {
        let h = hasher();
        assert_ne!(h.hash("same").unwrap(), h.hash("same").unwrap());
    }

    #[test]
    fn the_pepper_is_part_of_the_hash() {
        let stored = hasher().hash("pw").unwrap();
        let other = PasswordHasher::new(b"another-pepper-value".to_vec(), 1_000).unwrap();
        assert!(!other.verify("pw", &stored).unwrap());
    }

    #[test]
    fn old_cost_still_verifies_and_is_flagged_for_rehash() {
        let old = hasher().hash("pw").unwrap();
        let raised = PasswordHasher::new(b"pepper-pepper-pepper".to_vec(), 2_000).unwrap();
        assert!(raised.verify("pw", &old).unwrap());
        assert!(raised.needs_rehash(&old));
        assert!(!raised.needs_rehash(&raised.hash("pw").unwrap()));
        let lowered = hasher();
        assert!(!lowered.needs_rehash(&raised.hash("pw").unwrap()), "a lower setting must not downgrade");
    }

    #[test]
    fn verifying_many_at_once_gives_each_its_own_verdict() {
        let h = hasher();
        let raised = PasswordHasher::new(b"pepper-pepper-pepper".to_vec(), 2_000).unwrap();
        let (one, two, three) =
            (h.hash("one").unwrap(), h.hash("two").unwrap(), raised.hash("three").unwrap());
        let base = [
            ("one", one.as_str()),
            ("not two", two.as_str()),
            ("three", three.as_str()),
            ("two", two.as_str()),
            ("one", "$pbkdf2-sha256$i=1000$zz$00"),
            ("one", one.as_str()),
            ("three", three.as_str()),
        ];
        // Enough that one cost's hashes fill more than one round of lanes.
        let checks: Vec<(&str, &str)> =
            base.iter().copied().cycle().take(3 * pbkdf2_sha256::MAX_LANES).collect();
        let expected: Vec<_> = checks.iter().map(|(password, stored)| h.verify(password, stored)).collect();
        let right = base.iter().filter(|(password, stored)| h.verify(password, stored) == Ok(true)).count();
        assert_eq!(right, 5, "the fixture itself");
        assert_eq!(h.verify_many(&checks), expected);
        assert_eq!(h.verify_many(&[]), Vec::new());
    }

    #[test]
    fn the_unknown_user_hash_is_well_formed_at_the_configured_cost_and_matches_nothing() {
        let h = hasher();
        let nobody = h.unknown_user_hash();
        assert!(nobody.starts_with("$pbkdf2-sha256$i=1000$"), "{nobody}");
        assert!(!h.needs_rehash(nobody));
        for password in ["", "pw", "0000"] {
            assert_eq!(h.verify(password, nobody), Ok(false));
        }
    }

    #[test]
    fn malformed_hashes_are_errors_not_panics() {
        let h = hasher();
        for bad in [
            "",
            "$",
            "plain",
            "$pbkdf2-sha256$i=0$00$00",
            "$pbkdf2-sha256$i=x$00$00",
            "$md5$i=1$00$00",
            "$pbkdf2-sha256$i=1000$zz$00",
            "$pbkdf2-sha256$i=1000$00$0011",
            "$pbkdf2-sha256$i=1000$00$00$extra",
        ] {
            assert_eq!(h.verify("pw", bad), Err(PasswordError::MalformedHash), "{bad}");
        }
    }

    #[test]
    fn weak_settings_are_refused() {
        assert_eq!(PasswordHasher::new(vec![1; 32], 999).unwrap_err(), PasswordError::CostTooLow(999));
        assert_eq!(PasswordHasher::new(vec![1; 4], 1_000).unwrap_err(), PasswordError::PepperTooShort(4));
    }
}
