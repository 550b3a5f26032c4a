//! Who may read `/metrics`: a list of addresses and CIDR blocks
//! (`--metrics-allow`), loopback only by default, because the metrics tell an
//! outsider the request and error rates of the service.

use std::net::IpAddr;

/// Most entries in the list: a handful of scrapers is the normal case, and a
/// bound keeps the check per scrape a few comparisons.
pub const MAX_ENTRIES: usize = 32;

/// The parsed `--metrics-allow` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsAllow {
    any: bool,
    loopback: bool,
    blocks: Vec<(IpAddr, u8)>,
}

impl MetricsAllow {
    /// Parses `any`, or a comma-separated list of `loopback`, addresses and
    /// CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`); `None` for anything else.
    pub fn parse(list: &str) -> Option<MetricsAllow> {
        let mut allow = MetricsAllow { any: false, loopback: false, blocks: Vec::new() };
        let entries: Vec<&str> = list.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        if entries.is_empty() || entries.len() > MAX_ENTRIES {
            return None;
        }
        for entry in entries {
            match entry {
                "any" => allow.any = true,
                "loopback" => allow.loopback = true,
                block => {
                    let (addr, bits) = match block.split_once('/') {
                        Some((addr, bits)) => (addr.parse::<IpAddr>().ok()?, bits.parse::<u8>().ok()?),
                        None => {
                            let addr = block.parse::<IpAddr>().ok()?;
                            (addr, if addr.is_ipv4() { 32 } else { 128 })
                        }
                    };
                    if bits > if addr.is_ipv4() { 32 } else { 128 } {
                        return None;
                    }
                    allow.blocks.push((addr, bits));
                }
            }
        }
        Some(allow)
    }

    /// Whether a client at `peer` may read the metrics.
    pub fn permits(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.any
            || (self.loopback && peer.is_loopback())
            || self.blocks.iter().any(|&(net, bits)| within(peer, net, bits))
    }
}

fn within(peer: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (peer, net) {
        (IpAddr::V4(p), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(p) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(p), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(p) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_by_default_and_blocks_as_listed() {
        let default = MetricsAllow::parse("loopback").unwrap();
        assert!(default.permits(ip("127.0.0.1")) && default.permits(ip("::1")));
        assert!(!default.permits(ip("192.0.2.1")));
        let listed = MetricsAllow::parse("10.0.0.0/8, 2001:db8::/32,192.0.2.7").unwrap();
        assert!(listed.permits(ip("10.9.8.7")) && listed.permits(ip("2001:db8::1")));
        assert!(listed.permits(ip("192.0.2.7")) && !listed.permits(ip("192.0.2.8")));
        assert!(!listed.permits(ip("127.0.0.1")), "loopback only when listed");
        assert!(MetricsAllow::parse("any").unwrap().permits(ip("203.0.113.5")));
        assert!(MetricsAllow::parse("0.0.0.0/0").unwrap().permits(ip("203.0.113.5")));
        for bad in ["", "nobody", "10.0.0.0/33", "::/129", "1.2.3"] {
            assert_eq!(MetricsAllow::parse(bad), None, "{bad}");
        }
    }
}
