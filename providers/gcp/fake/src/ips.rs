//! IP address pools: where addresses and forwarding rules without an explicit IP get one.
//!
//! Defaults are documentation ranges (RFC 5737) for external addresses, so nothing the fake
//! hands out can be mistaken for, or routed to, a real host: regional external
//! `203.0.113.0/24`, global external `198.51.100.0/24`, internal (ILB addresses and instance
//! `networkIP`s) `10.128.0.0/16`. The lowest free address of the pool is handed out; "free"
//! means not held by any address, forwarding rule or instance, stored or pending.

use ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    ExternalRegional,
    ExternalGlobal,
    Internal,
}

#[derive(Debug, Clone)]
pub struct Pools {
    pub external_regional: Vec<Ipv4Net>,
    pub external_global: Vec<Ipv4Net>,
    pub internal: Vec<Ipv4Net>,
}

impl Pools {
    pub fn ranges(&self, pool: Pool) -> &[Ipv4Net] {
        match pool {
            Pool::ExternalRegional => &self.external_regional,
            Pool::ExternalGlobal => &self.external_global,
            Pool::Internal => &self.internal,
        }
    }

    /// The lowest address of `pool` not in `taken`. The first host of an internal range is
    /// skipped (it is the subnet's gateway in GCE).
    pub fn allocate(&self, pool: Pool, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        for net in self.ranges(pool) {
            let skip = usize::from(pool == Pool::Internal);
            if let Some(ip) = net.hosts().skip(skip).find(|ip| !taken.contains(ip)) {
                return Some(ip);
            }
        }
        None
    }
}

/// Parses a comma-separated list of IPv4 CIDRs.
pub fn parse_cidrs(text: &str) -> Result<Vec<Ipv4Net>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Ipv4Net>().map_err(|e| format!("{s:?}: {e}")))
        .collect()
}

impl Default for Pools {
    fn default() -> Self {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap_or_else(|_| Ipv4Net::default());
        Pools {
            external_regional: vec![net("203.0.113.0/24")],
            external_global: vec![net("198.51.100.0/24")],
            internal: vec![net("10.128.0.0/16")],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_address() {
        let p = Pools::default();
        let mut taken = BTreeSet::new();
        assert_eq!(p.allocate(Pool::ExternalRegional, &taken), Some(Ipv4Addr::new(203, 0, 113, 1)));
        taken.insert(Ipv4Addr::new(203, 0, 113, 1));
        assert_eq!(p.allocate(Pool::ExternalRegional, &taken), Some(Ipv4Addr::new(203, 0, 113, 2)));
        assert_eq!(p.allocate(Pool::Internal, &taken), Some(Ipv4Addr::new(10, 128, 0, 2)));
        assert_eq!(p.allocate(Pool::ExternalGlobal, &taken), Some(Ipv4Addr::new(198, 51, 100, 1)));
    }

    #[test]
    fn exhaustion_and_parsing() {
        let p = Pools { external_regional: parse_cidrs("192.0.2.0/30").unwrap(), ..Pools::default() };
        let taken: BTreeSet<_> = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2)].into();
        assert_eq!(p.allocate(Pool::ExternalRegional, &taken), None);
        assert!(parse_cidrs("nope").is_err());
    }
}
