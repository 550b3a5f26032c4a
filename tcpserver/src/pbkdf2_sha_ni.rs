//! PBKDF2-HMAC-SHA256's iterations on x86-64's SHA extensions (SHA-NI),
//! several derivations side by side.
//!
//! Why by hand: the hash is most of what a log-in costs (`README.md`,
//! *Performance*), and nearly all of the hash is SHA-256's compression
//! function, whose SHA-NI rounds each wait on the one before (a chain of
//! dependent instructions a few cycles long). Called one compression at a
//! time through `sha2`, a core runs one chain and idles between its steps;
//! with the rounds of several independent derivations
//! ([`crate::pbkdf2_lanes`]) written
//! one after the other, it runs the others' rounds in those gaps.
//!
//! The loop also never leaves the SHA instructions' own layout: in every
//! iteration after the first, the block compressed is the last digest (32
//! bytes) and constant padding, and a digest's big-endian bytes read back as
//! big-endian message words are the state's own words, so the state goes
//! from one compression to the next as two vector registers, with no bytes
//! in between. The first iteration (the salt, of any length) and the keyed
//! HMAC states are computed by [`crate::pbkdf2_sha256`] with the `sha2`
//! crate, whose tests check the output against the `pbkdf2` crate and
//! published vectors, on this path and on the portable one.

use std::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_alignr_epi8, _mm_blend_epi16, _mm_extract_epi32, _mm_set_epi32,
    _mm_sha256msg1_epu32, _mm_sha256msg2_epu32, _mm_sha256rnds2_epu32, _mm_shuffle_epi32, _mm_xor_si128,
};

/// Whether this CPU has the instructions (checked once, then cached by std).
pub fn available() -> bool {
    is_x86_feature_detected!("sha") && is_x86_feature_detected!("sse4.1") && is_x86_feature_detected!("ssse3")
}

/// One derivation, as it stands after its first iteration.
#[derive(Debug, Clone, Copy)]
pub struct Lane {
    /// SHA-256's state after the key's ipad block (FIPS 180-4 word order).
    pub inner: [u32; 8],
    /// SHA-256's state after the key's opad block.
    pub outer: [u32; 8],
    /// U1, the first iteration's output.
    pub first: [u8; 32],
}

/// The output of each lane after `iterations` iterations (the first one
/// already done: it is `Lane::first`), or `None` on a CPU without SHA-NI.
pub fn iterate<const N: usize>(lanes: &[Lane; N], iterations: u32) -> Option<[[u8; 32]; N]> {
    if !available() {
        return None;
    }
    // SAFETY: the CPU has every feature the function is compiled for.
    Some(unsafe { iterate_ni(lanes, iterations) })
}

/// SHA-256's state as the SHA instructions hold it: words A, B, E, F in one
/// register (F in the lowest lane) and C, D, G, H in the other.
#[derive(Clone, Copy)]
struct State {
    abef: __m128i,
    cdgh: __m128i,
}

/// A digest (or a message half-block) as words A B C D and E F G H, the
/// lowest lane first: the order of message words.
type Words = [__m128i; 2];

#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn iterate_ni<const N: usize>(lanes: &[Lane; N], iterations: u32) -> [[u8; 32]; N] {
    let mut inner = [state_of(&[0; 8]); N];
    let mut outer = inner;
    let mut u = [[_mm_set_epi32(0, 0, 0, 0); 2]; N];
    for i in 0..N {
        inner[i] = state_of(&lanes[i].inner);
        outer[i] = state_of(&lanes[i].outer);
        u[i] = words_of(&lanes[i].first);
    }
    let mut sum = u;
    for _ in 1..iterations {
        let digest = compress_lanes(&inner, &u);
        u = compress_lanes(&outer, &digest);
        for i in 0..N {
            sum[i] = [_mm_xor_si128(sum[i][0], u[i][0]), _mm_xor_si128(sum[i][1], u[i][1])];
        }
    }
    let mut out = [[0u8; 32]; N];
    for i in 0..N {
        out[i] = bytes_of(&sum[i]);
    }
    out
}

/// Compresses, for each lane, the block "its 32-byte message, then the
/// padding of a 96-byte input" into its keyed state; returns the digests.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn compress_lanes<const N: usize>(keyed: &[State; N], message: &[Words; N]) -> [Words; N] {
    // W8..W15: the 0x80 end marker, zeros, and the length, 768 bits.
    let pad_low = _mm_set_epi32(0, 0, 0, 0x8000_0000_u32 as i32);
    let pad_high = _mm_set_epi32(768, 0, 0, 0);
    let mut state = *keyed;
    let mut w = [[pad_low; 4]; N];
    for i in 0..N {
        w[i] = [message[i][0], message[i][1], pad_low, pad_high];
    }
    // Sixteen groups of four rounds, each lane's in turn, so that the
    // lanes' dependent chains interleave.
    macro_rules! groups {
        ($($g:literal)*) => {$(
            for i in 0..N {
                rounds::<$g>(&mut state[i], &mut w[i]);
            }
        )*};
    }
    groups!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    let mut digests = [[pad_low; 2]; N];
    for i in 0..N {
        let done = State {
            abef: _mm_add_epi32(state[i].abef, keyed[i].abef),
            cdgh: _mm_add_epi32(state[i].cdgh, keyed[i].cdgh),
        };
        digests[i] = words_of_state(done);
    }
    digests
}

/// Rounds 4G to 4G + 3 of one compression, and the message schedule's
/// share of work in them: W[4(G + 1)..] completed (`sha256msg2`, from
/// group 3 to 14) and W[4(G + 3)..] begun (`sha256msg1`, groups 1 to 12).
/// `w[G % 4]` holds this group's four words.
#[inline]
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
fn rounds<const G: usize>(state: &mut State, w: &mut [__m128i; 4]) {
    let this = w[G % 4];
    let k = _mm_add_epi32(this, round_constants(G));
    // Each call makes the next A, B, E, F from C, D, G, H and A, B, E, F,
    // whose old values are the next C, D, G, H: so the first result goes
    // where C, D, G, H were, and after the second the roles are back.
    state.cdgh = _mm_sha256rnds2_epu32(state.cdgh, state.abef, k);
    if (3..15).contains(&G) {
        let next = (G + 1) % 4;
        let carried = _mm_alignr_epi8::<4>(this, w[(G + 3) % 4]);
        w[next] = _mm_sha256msg2_epu32(_mm_add_epi32(w[next], carried), this);
    }
    state.abef = _mm_sha256rnds2_epu32(state.abef, state.cdgh, _mm_shuffle_epi32::<0x0E>(k));
    if (1..13).contains(&G) {
        let later = (G + 3) % 4;
        w[later] = _mm_sha256msg1_epu32(w[later], this);
    }
}

/// K[4G..4G + 4] of FIPS 180-4 (4.2.2), the lowest lane first.
#[inline]
#[target_feature(enable = "sse2")]
fn round_constants(group: usize) -> __m128i {
    let k = &K[group * 4..group * 4 + 4];
    _mm_set_epi32(k[3] as i32, k[2] as i32, k[1] as i32, k[0] as i32)
}

/// A state in FIPS word order, in the instructions' layout.
#[inline]
#[target_feature(enable = "sse2")]
fn state_of(s: &[u32; 8]) -> State {
    let w = s.map(|x| x as i32);
    State { abef: _mm_set_epi32(w[0], w[1], w[4], w[5]), cdgh: _mm_set_epi32(w[2], w[3], w[6], w[7]) }
}

/// A finished state as message words: A B C D, E F G H.
#[inline]
#[target_feature(enable = "sse2,ssse3,sse4.1")]
fn words_of_state(s: State) -> Words {
    let feba = _mm_shuffle_epi32::<0x1B>(s.abef); // lanes A B E F
    let dchg = _mm_shuffle_epi32::<0xB1>(s.cdgh); // lanes G H C D
    [_mm_blend_epi16::<0xF0>(feba, dchg), _mm_alignr_epi8::<8>(dchg, feba)]
}

/// A digest's bytes as message words (big-endian, FIPS 180-4 5.2.1).
#[inline]
#[target_feature(enable = "sse2")]
fn words_of(digest: &[u8; 32]) -> Words {
    let w: [i32; 8] = std::array::from_fn(|i| {
        i32::from_be_bytes([digest[4 * i], digest[4 * i + 1], digest[4 * i + 2], digest[4 * i + 3]])
    });
    [_mm_set_epi32(w[3], w[2], w[1], w[0]), _mm_set_epi32(w[7], w[6], w[5], w[4])]
}

/// Message words back to a digest's bytes.
#[inline]
#[target_feature(enable = "sse2,sse4.1")]
fn bytes_of(words: &Words) -> [u8; 32] {
    let lanes = |v: __m128i| {
        [
            _mm_extract_epi32::<0>(v),
            _mm_extract_epi32::<1>(v),
            _mm_extract_epi32::<2>(v),
            _mm_extract_epi32::<3>(v),
        ]
    };
    let all = [lanes(words[0]), lanes(words[1])].concat();
    let mut out = [0u8; 32];
    for (bytes, word) in out.chunks_exact_mut(4).zip(all) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// SHA-256's round constants (FIPS 180-4, 4.2.2).
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];
