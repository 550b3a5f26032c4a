//! PBKDF2-HMAC-SHA256 (RFC 8018) for one 32-byte output block, the shape every
//! stored password hash here has.
//!
//! Why not the `pbkdf2` crate: it is generic over the PRF, and each of its
//! iterations goes through `Mac::finalize` twice (buffer handling, padding and
//! state copies of the general digest API). Profiled under random log-ins
//! (`perf record -a`, 2026-11-23), that bookkeeping cost 0.6 of the time the
//! SHA-256 compression itself took. An iteration needs exactly two compressions
//! of a block whose padding never changes, so this loop keeps the two keyed
//! HMAC states and the padded blocks and calls the compression function
//! (`sha2`'s SHA-NI code where the CPU has it) directly. The output is
//! byte-for-byte PBKDF2: the tests compare it with the `pbkdf2` crate and with
//! published test vectors, so stored hashes are unchanged.

use hmac::{Hmac, KeyInit, Mac};
use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

/// SHA-256's block size in bytes, which is also HMAC's key block size.
const BLOCK_LEN: usize = 64;

/// SHA-256's output size in bytes: the derived key's length here.
pub const OUTPUT_LEN: usize = 32;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const INITIAL_STATE: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// Derivations computed side by side at most ([`derive_lanes`]): on SHA-NI,
/// independent chains fill the gaps between one chain's dependent rounds.
/// How many pay on this machine is chosen by timing ([`crate::pbkdf2_lanes`]);
/// a worker's batch holds up to 16 log-ins.
pub const MAX_LANES: usize = 8;

/// Derives 32 bytes from `password` and `salt` with `iterations` rounds of
/// HMAC-SHA256: `PBKDF2(password, salt, iterations, dkLen = 32)`. An iteration
/// count of zero is treated as one, as the first round always runs.
pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> [u8; OUTPUT_LEN] {
    let [key] = derive_lanes([(password, salt)], iterations);
    key
}

/// [`derive()`] for any number of (password, salt) pairs with the same
/// iteration count, as many side by side as pays on this CPU
/// ([`crate::pbkdf2_lanes::lanes`]); the keys in the same order.
pub fn derive_many(inputs: &[(&[u8], &[u8])], iterations: u32) -> Vec<[u8; OUTPUT_LEN]> {
    derive_in_lanes(inputs, iterations, crate::pbkdf2_lanes::lanes())
}

/// [`derive_many`] with `lanes` derivations side by side (1 to
/// [`MAX_LANES`]; outside that, the nearest).
pub fn derive_in_lanes(inputs: &[(&[u8], &[u8])], iterations: u32, lanes: usize) -> Vec<[u8; OUTPUT_LEN]> {
    let mut keys = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(lanes.clamp(1, MAX_LANES)) {
        match chunk.len() {
            8 => lanes_of::<8>(chunk, iterations, &mut keys),
            7 => lanes_of::<7>(chunk, iterations, &mut keys),
            6 => lanes_of::<6>(chunk, iterations, &mut keys),
            5 => lanes_of::<5>(chunk, iterations, &mut keys),
            4 => lanes_of::<4>(chunk, iterations, &mut keys),
            3 => lanes_of::<3>(chunk, iterations, &mut keys),
            2 => lanes_of::<2>(chunk, iterations, &mut keys),
            _ => lanes_of::<1>(chunk, iterations, &mut keys),
        }
    }
    keys
}

/// [`derive_lanes`] for a chunk of exactly `N` inputs, onto `keys`.
fn lanes_of<const N: usize>(chunk: &[(&[u8], &[u8])], iterations: u32, keys: &mut Vec<[u8; OUTPUT_LEN]>) {
    match <[(&[u8], &[u8]); N]>::try_from(chunk) {
        Ok(inputs) => keys.extend(derive_lanes(inputs, iterations)),
        // Not N long: one at a time, still in order.
        Err(_) => keys.extend(chunk.iter().map(|&(password, salt)| derive(password, salt, iterations))),
    }
}

/// `N` derivations with the same iteration count, side by side: on a CPU
/// with SHA-NI, by [`crate::pbkdf2_sha_ni`], the lanes' rounds interleaved
/// instruction by instruction; elsewhere they alternate compression by
/// compression through `sha2`, which lets the CPU overlap them less.
pub fn derive_lanes<const N: usize>(inputs: [(&[u8], &[u8]); N], iterations: u32) -> [[u8; OUTPUT_LEN]; N] {
    let mut derivations = inputs.map(|(password, salt)| Derivation::start(password, salt));
    #[cfg(target_arch = "x86_64")]
    if let Some(keys) =
        crate::pbkdf2_sha_ni::iterate(&derivations.each_ref().map(Derivation::lane), iterations)
    {
        return keys;
    }
    for _ in 1..iterations {
        for derivation in &mut derivations {
            derivation.inner();
        }
        for derivation in &mut derivations {
            derivation.outer();
        }
    }
    derivations.map(|derivation| derivation.result)
}

/// The portable loop alone, whatever the CPU: what the SHA-NI path is
/// checked against.
#[cfg(test)]
fn derive_portable(password: &[u8], salt: &[u8], iterations: u32) -> [u8; OUTPUT_LEN] {
    let mut derivation = Derivation::start(password, salt);
    for _ in 1..iterations {
        derivation.inner();
        derivation.outer();
    }
    derivation.result
}

/// One PBKDF2 computation in progress.
struct Derivation {
    keyed: KeyedStates,
    /// The block being compressed: the message part is rewritten each time,
    /// the padding never changes.
    block: [u8; BLOCK_LEN],
    /// The XOR of the U values so far: the result once all are in.
    result: [u8; OUTPUT_LEN],
}

impl Derivation {
    /// Computes U1 = HMAC(password, salt || INT(1)) (the salt has any length,
    /// so the general HMAC computes it) and gets ready for the later ones.
    fn start(password: &[u8], salt: &[u8]) -> Derivation {
        let mut first =
            <Hmac<Sha256> as KeyInit>::new_from_slice(password).expect("HMAC takes keys of any length");
        first.update(salt);
        first.update(&1u32.to_be_bytes());
        let u: [u8; OUTPUT_LEN] = first.finalize().into_bytes().into();
        let mut block = padded_block();
        block[..OUTPUT_LEN].copy_from_slice(&u);
        Derivation { keyed: KeyedStates::new(password), block, result: u }
    }

    /// Where the SHA-NI loop takes over: the keyed states and U1.
    #[cfg(target_arch = "x86_64")]
    fn lane(&self) -> crate::pbkdf2_sha_ni::Lane {
        crate::pbkdf2_sha_ni::Lane { inner: self.keyed.inner, outer: self.keyed.outer, first: self.result }
    }

    /// The inner hash of the next U: the ipad state, then one block (the
    /// previous U and padding for 64 + 32 bytes); its digest goes in the block.
    #[inline(always)]
    fn inner(&mut self) {
        let inner = finish(self.keyed.inner, &self.block);
        self.block[..OUTPUT_LEN].copy_from_slice(&inner);
    }

    /// The outer hash, over the inner digest with the same padding: the next
    /// U, which goes into the result and into the block for the next inner.
    #[inline(always)]
    fn outer(&mut self) {
        let u = finish(self.keyed.outer, &self.block);
        self.block[..OUTPUT_LEN].copy_from_slice(&u);
        for (r, x) in self.result.iter_mut().zip(u) {
            *r ^= x;
        }
    }
}

/// The SHA-256 states after the key's ipad and opad blocks: HMAC's fixed
/// prefix, compressed once per derivation instead of once per iteration.
struct KeyedStates {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl KeyedStates {
    fn new(password: &[u8]) -> KeyedStates {
        // HMAC (RFC 2104): a key longer than a block is hashed first, a shorter
        // one is padded with zeros.
        let mut key = [0u8; BLOCK_LEN];
        if password.len() > BLOCK_LEN {
            key[..OUTPUT_LEN].copy_from_slice(&Sha256::digest(password));
        } else {
            key[..password.len()].copy_from_slice(password);
        }
        let keyed_state = |pad: u8| {
            let block: [u8; BLOCK_LEN] = key.map(|byte| byte ^ pad);
            let mut state = INITIAL_STATE;
            compress256(&mut state, &[block]);
            state
        };
        KeyedStates { inner: keyed_state(0x36), outer: keyed_state(0x5c) }
    }
}

/// Compresses the last block into `state` and returns the digest bytes.
fn finish(mut state: [u32; 8], block: &[u8; BLOCK_LEN]) -> [u8; OUTPUT_LEN] {
    compress256(&mut state, std::slice::from_ref(block));
    let mut digest = [0u8; OUTPUT_LEN];
    for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

/// A block for a 32-byte message that follows one 64-byte block: 32 bytes of
/// message (filled in per use), the `0x80` end marker, zeros, and the total
/// length in bits (96 bytes = 768 bits) big-endian in the last 8 bytes.
fn padded_block() -> [u8; BLOCK_LEN] {
    let mut block = [0u8; BLOCK_LEN];
    block[OUTPUT_LEN] = 0x80;
    let total_bits = ((BLOCK_LEN + OUTPUT_LEN) * 8) as u64;
    block[BLOCK_LEN - 8..].copy_from_slice(&total_bits.to_be_bytes());
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PBKDF2-HMAC-SHA256 vectors with dkLen = 32, as published with RFC 7914
    /// (section 11) and widely reproduced from RFC 6070's inputs.
    #[test]
    fn published_test_vectors() {
        let cases: [(&[u8], &[u8], u32, &str); 3] = [
            (b"password", b"salt", 1, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"),
            (b"password", b"salt", 2, "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"),
            (b"password", b"salt", 4096, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"),
        ];
        for (password, salt, iterations, expected) in cases {
            assert_eq!(hex::encode(derive(password, salt, iterations)), expected, "c = {iterations}");
        }
    }

    #[test]
    fn every_number_of_lanes_derives_what_the_portable_loop_does() {
        let salts: [&[u8]; 6] = [b"", b"s", &[1u8; 16], &[2u8; 55], &[3u8; 64], &[4u8; 130]];
        let passwords: Vec<Vec<u8>> = (0..19).map(|n| vec![n as u8 + 0x30; n * 5]).collect();
        let inputs: Vec<(&[u8], &[u8])> =
            passwords.iter().map(Vec::as_slice).zip(salts.iter().copied().cycle()).collect();
        for iterations in [1, 2, 3, 1000] {
            let expected: Vec<[u8; OUTPUT_LEN]> =
                inputs.iter().map(|&(p, s)| derive_portable(p, s, iterations)).collect();
            for n in 1..=inputs.len() {
                for lanes in 1..=MAX_LANES {
                    assert_eq!(
                        derive_in_lanes(&inputs[..n], iterations, lanes),
                        expected[..n],
                        "{n} inputs, {lanes} lanes, c = {iterations}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_pair_derives_what_each_alone_does() {
        for iterations in [1, 2, 1000] {
            let [a, b] =
                derive_lanes([(b"first password", b"salt one"), (b"second", &[9u8; 16])], iterations);
            assert_eq!(a, derive(b"first password", b"salt one", iterations), "c = {iterations}");
            assert_eq!(b, derive(b"second", &[9u8; 16], iterations), "c = {iterations}");
        }
    }

    #[test]
    fn matches_the_pbkdf2_crate_for_every_key_and_salt_length_class() {
        let long_key = [0xabu8; 200];
        let passwords: [&[u8]; 6] = [b"", b"p", &[7u8; 32], &[9u8; 64], &[1u8; 65], &long_key];
        let salts: [&[u8]; 4] = [b"", &[3u8; 16], &[5u8; 55], &[6u8; 120]];
        for password in passwords {
            for salt in salts {
                for iterations in [1, 2, 3, 1000] {
                    let mut expected = [0u8; OUTPUT_LEN];
                    pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut expected);
                    assert_eq!(
                        derive(password, salt, iterations),
                        expected,
                        "password {} bytes, salt {} bytes, c = {iterations}",
                        password.len(),
                        salt.len()
                    );
                }
            }
        }
    }
}
