//! Redis Cluster's hash slots, computed here as every cluster node computes them.
//!
//! A key's slot is CRC16 (XMODEM) of its hash tag (what stands between the
//! first `{` and the first `}` after it, if that is not empty), else of the
//! whole key, modulo 16384. The key layout ([`crate::keys`]) leans on this:
//! keys that one script touches share a tag. The server needs the number
//! itself in two places: to group a throttle's counters by slot
//! ([`crate::throttle::admit`]) and to spread the history queues evenly over
//! the slot space ([`crate::keys::Keys::history_queues`]).

/// Hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// CRC16 with the XMODEM parameters (polynomial 0x1021, initial value 0), as
/// Redis Cluster uses it.
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The part of `key` that decides its slot: its hash tag, or the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else { return key };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(0) | None => key,
        Some(len) => &key[open + 1..open + 1 + len],
    }
}

/// The hash slot of `key`.
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_the_xmodem_variant_redis_uses() {
        // The check value of CRC-16/XMODEM, and Redis Cluster's own example.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot(b"123456789"), 12_739);
    }

    #[test]
    fn keys_with_one_tag_share_a_slot() {
        assert_eq!(slot(b"um:sess:{ab12}ffff"), slot(b"um:prof:{ab12}7"));
        assert_eq!(hash_tag(b"a{b}c{d}"), b"b");
        // An empty tag or no closing brace: the whole key counts.
        assert_eq!(hash_tag(b"a{}b"), b"a{}b");
        assert_eq!(hash_tag(b"a{b"), b"a{b");
        // Values Redis itself gives (CLUSTER KEYSLOT).
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
    }
}
