//! Where traffic may go: only loopback (127.0.0.0/8, ::1) unless the user names the exact
//! address with `--allow-non-loopback`; and which local addresses senders bind (`--sources`).
//!
//! Never: lets a hostname or a range stand in for an explicitly named non-loopback address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

/// Why a target or source range was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    Unresolvable(String),
    NotLoopback(SocketAddr),
    BadCidr(String),
    SourceNotLoopback(String),
    FamilyMismatch,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unresolvable(text) => write!(f, "cannot resolve target \"{text}\" (HOST:PORT)"),
            Self::NotLoopback(addr) => write!(
                f,
                "refusing to send to {addr}: it is not a loopback address (127.0.0.0/8, ::1); \
                 name it with --allow-non-loopback {} if you own it",
                addr.ip()
            ),
            Self::BadCidr(text) => write!(f, "invalid --sources \"{text}\" (e.g. 127.0.0.0/16)"),
            Self::SourceNotLoopback(text) => write!(
                f,
                "refusing --sources {text}: only ranges inside 127.0.0.0/8 or ::1/128 \
                 unless --allow-non-loopback is given"
            ),
            Self::FamilyMismatch => f.write_str("--sources and --target are different IP families"),
        }
    }
}

impl std::error::Error for TargetError {}

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Resolves `HOST:PORT` and checks that it is loopback or one of the `allowed` addresses.
pub fn resolve_target(text: &str, allowed: &[IpAddr]) -> Result<SocketAddr, TargetError> {
    let addr = text
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| TargetError::Unresolvable(text.to_owned()))?;
    if is_loopback(addr.ip()) || allowed.contains(&addr.ip()) {
        Ok(addr)
    } else {
        Err(TargetError::NotLoopback(addr))
    }
}

/// A source range `base/prefix_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRange {
    base: IpAddr,
    prefix_len: u8,
}

impl SourceRange {
    /// Parses `a.b.c.d/len`, `::1/128` or a single address.
    pub fn parse(text: &str) -> Result<Self, TargetError> {
        let bad = || TargetError::BadCidr(text.to_owned());
        let (ip_text, len_text) = text.split_once('/').unwrap_or((text, ""));
        let ip: IpAddr = ip_text.trim().parse().map_err(|_| bad())?;
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        let prefix_len = if len_text.is_empty() {
            bits
        } else {
            len_text.trim().parse::<u8>().map_err(|_| bad())?
        };
        if prefix_len > bits {
            return Err(bad());
        }
        let base = match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(u32::from(32 - prefix_len))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(u32::from(128 - prefix_len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        Ok(Self { base, prefix_len })
    }

    /// Number of addresses in the range.
    pub fn size(&self) -> u128 {
        let bits = if self.base.is_ipv4() { 32 } else { 128 };
        1_u128
            .checked_shl(u32::from(bits - self.prefix_len))
            .unwrap_or(u128::MAX)
    }

    /// True when every address of the range is loopback.
    pub fn is_loopback(&self) -> bool {
        match self.base {
            IpAddr::V4(v4) => self.prefix_len >= 8 && v4.octets()[0] == 127,
            IpAddr::V6(v6) => self.prefix_len == 128 && v6.is_loopback(),
        }
    }

    /// Checks the range against the target and the loopback rule.
    pub fn check(&self, target: SocketAddr, allow_non_loopback: bool) -> Result<(), TargetError> {
        if self.base.is_ipv4() != target.is_ipv4() {
            return Err(TargetError::FamilyMismatch);
        }
        if !self.is_loopback() && !allow_non_loopback {
            return Err(TargetError::SourceNotLoopback(format!(
                "{}/{}",
                self.base, self.prefix_len
            )));
        }
        Ok(())
    }

    /// `count` addresses spread evenly over the range, skipping the network address when the
    /// range has more than two addresses.
    pub fn spread(&self, count: usize) -> Vec<IpAddr> {
        let size = self.size();
        let skip = u128::from(size > 2);
        let usable = size - skip;
        let count = (count.max(1) as u128).min(usable);
        (0..count)
            .map(|index| {
                let offset = skip + index * usable / count;
                match self.base {
                    IpAddr::V4(v4) => {
                        IpAddr::V4(Ipv4Addr::from(u32::from(v4).wrapping_add(offset as u32)))
                    }
                    IpAddr::V6(v6) => {
                        IpAddr::V6(Ipv6Addr::from(u128::from(v6).wrapping_add(offset)))
                    }
                }
            })
            .collect()
    }
}

/// Every usable IPv4 address of a range in turn, for per-datagram source addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceCycle {
    first: u32,
    count: u32,
    next: u32,
}

impl SourceCycle {
    /// The next source address, wrapping around at the end of the range.
    pub fn next_ip(&mut self) -> Ipv4Addr {
        let ip = Ipv4Addr::from(self.first.wrapping_add(self.next));
        self.next = (self.next + 1) % self.count;
        ip
    }

    /// Number of distinct addresses in the cycle.
    pub fn count(&self) -> u32 {
        self.count
    }
}

impl SourceRange {
    /// A cycle over the range's addresses (without the network address when the range has
    /// more than two); `None` for IPv6.
    pub fn cycle(&self) -> Option<SourceCycle> {
        let IpAddr::V4(base) = self.base else {
            return None;
        };
        let size = u32::try_from(self.size()).unwrap_or(u32::MAX);
        let skip = u32::from(size > 2);
        Some(SourceCycle {
            first: u32::from(base) + skip,
            count: size - skip,
            next: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_loopback_accepted() {
        assert!(resolve_target("127.0.0.1:5060", &[]).is_ok());
        assert!(resolve_target("127.45.3.2:5060", &[]).is_ok());
        assert!(resolve_target("[::1]:5060", &[]).is_ok());
        assert!(resolve_target("[::ffff:127.0.0.1]:5060", &[]).is_ok());
    }

    #[test]
    fn target_non_loopback_refused_unless_named() {
        let err = resolve_target("192.0.2.7:5060", &[]).unwrap_err();
        assert!(matches!(err, TargetError::NotLoopback(_)));
        assert!(err.to_string().contains("--allow-non-loopback"));
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        assert!(resolve_target("192.0.2.7:5060", &[other]).is_err());
        let named: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(resolve_target("192.0.2.7:5060", &[named]).is_ok());
        assert!(resolve_target("[2001:db8::1]:5060", &[]).is_err());
        assert!(resolve_target("0.0.0.0:5060", &[]).is_err());
        assert!(matches!(
            resolve_target("nonsense", &[]),
            Err(TargetError::Unresolvable(_))
        ));
    }

    #[test]
    fn source_range_parse_and_spread() {
        let range = SourceRange::parse("127.0.0.0/16").unwrap();
        assert_eq!(range.size(), 65_536);
        assert!(range.is_loopback());
        let ips = range.spread(4);
        let expected: Vec<IpAddr> = ["127.0.0.1", "127.0.64.0", "127.0.128.0", "127.0.192.0"]
            .iter()
            .map(|text| text.parse().unwrap())
            .collect();
        assert_eq!(ips, expected);
        let single = SourceRange::parse("127.0.0.5").unwrap();
        assert_eq!(
            single.spread(10),
            vec!["127.0.0.5".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            SourceRange::parse("127.1.2.3/24")
                .unwrap()
                .spread(300)
                .len(),
            255
        );
    }

    #[test]
    fn source_cycle_wraps_over_the_range() {
        let mut cycle = SourceRange::parse("127.0.7.0/30").unwrap().cycle().unwrap();
        assert_eq!(cycle.count(), 3);
        let ips: Vec<String> = (0..4).map(|_| cycle.next_ip().to_string()).collect();
        assert_eq!(ips, ["127.0.7.1", "127.0.7.2", "127.0.7.3", "127.0.7.1"]);
        let mut single = SourceRange::parse("127.0.0.9").unwrap().cycle().unwrap();
        assert_eq!(
            (single.next_ip(), single.next_ip()),
            ([127, 0, 0, 9].into(), [127, 0, 0, 9].into())
        );
        assert_eq!(
            SourceRange::parse("127.0.0.0/8")
                .unwrap()
                .cycle()
                .unwrap()
                .count(),
            (1 << 24) - 1
        );
        assert_eq!(SourceRange::parse("::1").unwrap().cycle(), None);
    }

    #[test]
    fn source_range_refuses_outside_loopback() {
        let target: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let wide = SourceRange::parse("127.0.0.0/7").unwrap();
        assert!(matches!(
            wide.check(target, false),
            Err(TargetError::SourceNotLoopback(_))
        ));
        let lan = SourceRange::parse("10.0.0.0/24").unwrap();
        assert!(lan.check(target, false).is_err());
        assert!(lan.check(target, true).is_ok());
        let v6 = SourceRange::parse("::1/128").unwrap();
        assert_eq!(v6.check(target, false), Err(TargetError::FamilyMismatch));
        assert!(SourceRange::parse("127.0.0.0/33").is_err());
        assert!(SourceRange::parse("host/8").is_err());
    }
}
