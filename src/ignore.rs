//! The operator's allowlist (`--ignore-ip`): networks whose sources are never reported — the
//! operator's SIP trunk providers, upstream routers and resolvers, whose addresses anyone can
//! forge in a UDP datagram. Parses CIDRs and answers whether an address is in one.
//!
//! Pure: no I/O, no clock. Never: allocates or locks in [`IgnoreList::contains`] (the shards call
//! it for every message and every accepted connection).

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};

/// Parses one entry: `ADDR/PREFIX`, or a bare address (`/32` or `/128`). Host bits are cleared
/// (`10.1.2.3/8` is `10.0.0.0/8`), and an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is
/// taken as the IPv4 one it maps. Surrounding spaces are ignored.
pub fn parse_cidr(text: &str) -> Option<IpNet> {
    let text = text.trim();
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(text.parse::<IpAddr>().ok()?),
    };
    Some(canonical_net(net).trunc())
}

/// An IPv4-mapped IPv6 network with a prefix of at least 96 as its IPv4 network; others as given.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(mapped) = Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(mapped);
    }
    net
}

/// The networks whose sources are ignored; empty by default. Cheap to clone (shared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreList {
    nets: Arc<[IpNet]>,
}

impl IgnoreList {
    /// The list of `nets`, duplicates removed, in their first order.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut unique: Vec<IpNet> = Vec::new();
        for net in nets {
            if !unique.contains(&net) {
                unique.push(net);
            }
        }
        Self {
            nets: unique.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` is in one of the networks; an IPv4-mapped IPv6 address (a dual-stack
    /// socket's IPv4 peer) is matched as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.nets.is_empty() {
            return false;
        }
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }
}

#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    fn list(entries: &[&str]) -> IgnoreList {
        IgnoreList::new(entries.iter().map(|text| parse_cidr(text).unwrap()))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ignore_parse_forms() {
        let parsed = |text: &str| parse_cidr(text).map(|net| net.to_string());
        assert_eq!(parsed("10.0.0.0/8").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(parsed(" 10.1.2.3/8 ").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(parsed("192.0.2.7").as_deref(), Some("192.0.2.7/32"));
        assert_eq!(parsed("2001:db8::1").as_deref(), Some("2001:db8::1/128"));
        assert_eq!(parsed("2001:db8::/32").as_deref(), Some("2001:db8::/32"));
        assert_eq!(parsed("::ffff:10.0.0.0/104").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(parsed("::ffff:10.0.0.1").as_deref(), Some("10.0.0.1/32"));
        assert_eq!(parsed("0.0.0.0/0").as_deref(), Some("0.0.0.0/0"));
        for bad in [
            "",
            "x",
            "10.0.0.0/33",
            "10.0.0.0/",
            "/8",
            "10.0.0/8",
            "::/129",
            "10.0.0.0/8/8",
            "10.0.0.0 /8",
            "10.0.0.0/-1",
            "host.example",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ignore_contains_v4_v6_and_mapped() {
        let ignore = list(&["127.0.0.77", "10.0.0.0/8", "2001:db8::/32"]);
        assert!(ignore.contains(ip("127.0.0.77")));
        assert!(!ignore.contains(ip("127.0.0.78")));
        assert!(ignore.contains(ip("10.255.0.1")));
        assert!(!ignore.contains(ip("11.0.0.1")));
        assert!(ignore.contains(ip("2001:db8:1::5")));
        assert!(!ignore.contains(ip("2001:db9::5")));
        // A dual-stack socket's IPv4 peer.
        assert!(ignore.contains(ip("::ffff:127.0.0.77")));
        assert!(ignore.contains(ip("::ffff:10.1.1.1")));
        assert!(!ignore.contains(ip("::ffff:11.1.1.1")));
        // An IPv4 entry never matches a native IPv6 address, nor the reverse.
        assert!(!list(&["0.0.0.0/0"]).contains(ip("::1")));
        assert!(!list(&["::/0"]).contains(ip("127.0.0.1")));
        assert!(!IgnoreList::default().contains(ip("127.0.0.1")));
    }

    #[test]
    fn ignore_new_removes_duplicates() {
        let ignore = list(&["10.0.0.1", "10.0.0.1/32", "10.0.0.0/8"]);
        assert_eq!(ignore.nets().len(), 2);
    }

    proptest! {
        /// Every address in a parsed network is contained, and an address outside it is not.
        #[test]
        fn ignore_v4_matches_prefix_arithmetic(addr: u32, prefix in 0u8..=32, probe: u32) {
            let text = format!("{}/{prefix}", Ipv4Addr::from(addr));
            let ignore = IgnoreList::new([parse_cidr(&text).unwrap()]);
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
            let expected = (probe & mask) == (addr & mask);
            prop_assert_eq!(ignore.contains(IpAddr::V4(Ipv4Addr::from(probe))), expected);
            let mapped = IpAddr::V6(Ipv4Addr::from(probe).to_ipv6_mapped());
            prop_assert_eq!(ignore.contains(mapped), expected);
        }

        #[test]
        fn ignore_v6_matches_prefix_arithmetic(addr: u128, prefix in 0u8..=128, probe: u128) {
            prop_assume!(Ipv6Addr::from(addr).to_ipv4_mapped().is_none());
            prop_assume!(Ipv6Addr::from(probe).to_ipv4_mapped().is_none());
            let text = format!("{}/{prefix}", Ipv6Addr::from(addr));
            let ignore = IgnoreList::new([parse_cidr(&text).unwrap()]);
            let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(prefix)) };
            let expected = (probe & mask) == (addr & mask);
            prop_assert_eq!(ignore.contains(IpAddr::V6(Ipv6Addr::from(probe))), expected);
        }

        /// Any text: parse never panics, and what it accepts prints back to an equal network.
        #[test]
        fn ignore_parse_any_text(text in "\\PC{0,48}") {
            if let Some(net) = parse_cidr(&text) {
                prop_assert_eq!(parse_cidr(&net.to_string()), Some(net));
            }
        }
    }
}
