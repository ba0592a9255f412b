//! Address allocation from configured pools, shared by the providers that hand out their own
//! addresses (memory, local).
//!
//! Addresses are stable per Service: a provider returns the address in its [`Record`], and an
//! `ensure` that brings a record back gets the same address when it is still free and still
//! inside a pool. That is how a restarted controller (state in the process:
//! `StateLocation::InProcess`) keeps every `EXTERNAL-IP` unchanged. An address is never handed to
//! two load balancers: a recorded address taken meanwhile by another one is replaced by a fresh
//! one, a *requested* address taken by another one is a `Conflict`.
//!
//! [`Record`]: crate::Record

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::error::{ProviderError, Result};
use crate::spec::IpFamily;

pub struct AddressPool {
    pools: Vec<IpNet>,
    /// Who owns the pool, for messages ("local provider", "memory provider").
    owner: &'static str,
    used: HashSet<IpAddr>,
    /// Per pool, where the next search starts, so that a freed address is not handed out again
    /// at once (a client still talking to the old load balancer would reach the new one).
    cursors: Vec<u128>,
}

impl AddressPool {
    pub fn new(pools: Vec<IpNet>, owner: &'static str) -> Result<Self> {
        if pools.is_empty() {
            return Err(ProviderError::Invalid {
                call: "address_pool.new",
                message: format!("the {owner} has no address pool configured"),
            });
        }
        let cursors = vec![0; pools.len()];
        Ok(Self { pools, owner, used: HashSet::new(), cursors })
    }

    pub fn families(&self) -> Vec<IpFamily> {
        let mut f: Vec<IpFamily> = self
            .pools
            .iter()
            .map(|p| match p {
                IpNet::V4(_) => IpFamily::IPv4,
                IpNet::V6(_) => IpFamily::IPv6,
            })
            .collect();
        f.sort();
        f.dedup();
        f
    }

    pub fn in_pool(&self, ip: IpAddr) -> bool {
        self.pools.iter().any(|p| p.contains(&ip))
    }

    pub fn is_free(&self, ip: IpAddr) -> bool {
        !self.used.contains(&ip)
    }

    pub fn take(&mut self, ip: IpAddr) {
        self.used.insert(ip);
    }

    pub fn release(&mut self, ip: IpAddr) {
        self.used.remove(&ip);
    }

    fn pools_text(&self) -> String {
        self.pools.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
    }

    /// The address a load balancer should have: the requested one (which must be in a pool and
    /// not used by another load balancer), else the one it has now, else the recorded one when
    /// free and in a pool, else the next free one. Does not mark it used (see [`Self::take`]).
    pub fn choose(
        &mut self,
        requested: Option<IpAddr>,
        current: Option<IpAddr>,
        recorded: Option<IpAddr>,
    ) -> Result<IpAddr> {
        if let Some(ip) = requested {
            if Some(ip) == current {
                return Ok(ip);
            }
            if !self.in_pool(ip) {
                return Err(ProviderError::Invalid {
                    call: "address_pool.allocate",
                    message: format!(
                        "loadBalancerIP {ip} is outside the {}'s address pools ({}); request an address inside them or leave it unset",
                        self.owner,
                        self.pools_text()
                    ),
                });
            }
            if !self.is_free(ip) {
                return Err(ProviderError::Conflict {
                    call: "address_pool.allocate",
                    resource: ip.to_string(),
                    message: "the requested loadBalancerIP is already used by another load balancer".into(),
                });
            }
            return Ok(ip);
        }
        if let Some(ip) = current {
            return Ok(ip);
        }
        if let Some(ip) = recorded.filter(|ip| self.in_pool(*ip) && self.is_free(*ip)) {
            return Ok(ip);
        }
        self.next_free().ok_or_else(|| ProviderError::Quota {
            call: "address_pool.allocate",
            message: format!(
                "address pools {} are exhausted ({} addresses in use)",
                self.pools_text(),
                self.used.len()
            ),
        })
    }

    fn next_free(&mut self) -> Option<IpAddr> {
        for i in 0..self.pools.len() {
            let pool = self.pools[i];
            let (base, size): (u128, u128) = match pool {
                IpNet::V4(n) => (u32::from(n.network()) as u128, 1u128 << (32 - n.prefix_len())),
                IpNet::V6(n) => {
                    (u128::from(n.network()), 1u128.checked_shl(128 - n.prefix_len() as u32).unwrap_or(u128::MAX))
                }
            };
            // Skip the network and broadcast addresses of IPv4 pools larger than a /31, and the
            // subnet-router anycast address of IPv6 pools larger than a /127.
            let (first, last) = match pool {
                IpNet::V4(_) if size > 2 => (1, size - 2),
                IpNet::V6(_) if size > 2 => (1, size - 1),
                _ => (0, size - 1),
            };
            let span = last - first + 1;
            // At most used+1 candidates can be taken in a row, so this stays O(used).
            let tries = span.min(self.used.len() as u128 + 1);
            for step in 0..tries {
                let offset = first + (self.cursors[i] + step) % span;
                let ip = match pool {
                    IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from((base + offset) as u32)),
                    IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(base + offset)),
                };
                if self.is_free(ip) {
                    self.cursors[i] = (self.cursors[i] + step + 1) % span;
                    return Some(ip);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(pools: &[&str]) -> AddressPool {
        AddressPool::new(pools.iter().map(|p| p.parse().unwrap()).collect(), "test provider").unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_in_order_skipping_network_and_broadcast_then_quota() {
        let mut a = alloc(&["192.0.2.0/30"]);
        let x = a.choose(None, None, None).unwrap();
        a.take(x);
        let y = a.choose(None, None, None).unwrap();
        a.take(y);
        assert_eq!((x, y), (ip("192.0.2.1"), ip("192.0.2.2")));
        let err = a.choose(None, None, None).unwrap_err();
        assert!(matches!(err, ProviderError::Quota { .. }), "{err}");
        assert!(err.to_string().contains("192.0.2.0/30"), "{err}");
    }

    #[test]
    fn falls_over_to_the_next_pool() {
        let mut a = alloc(&["192.0.2.0/31", "198.51.100.0/24"]);
        for expected in ["192.0.2.0", "192.0.2.1", "198.51.100.1"] {
            let x = a.choose(None, None, None).unwrap();
            a.take(x);
            assert_eq!(x, ip(expected));
        }
        assert_eq!(a.families(), vec![IpFamily::IPv4]);
    }

    #[test]
    fn recorded_address_is_reused_only_when_free_and_in_pool() {
        let mut a = alloc(&["192.0.2.0/24"]);
        assert_eq!(a.choose(None, None, Some(ip("192.0.2.77"))).unwrap(), ip("192.0.2.77"));
        a.take(ip("192.0.2.77"));
        assert_ne!(a.choose(None, None, Some(ip("192.0.2.77"))).unwrap(), ip("192.0.2.77"));
        assert_ne!(a.choose(None, None, Some(ip("10.0.0.1"))).unwrap(), ip("10.0.0.1"));
    }

    #[test]
    fn requested_address_rules() {
        let mut a = alloc(&["192.0.2.0/24"]);
        let err = a.choose(Some(ip("203.0.113.1")), None, None).unwrap_err();
        assert!(matches!(err, ProviderError::Invalid { .. }) && err.to_string().contains("203.0.113.1"), "{err}");
        a.take(ip("192.0.2.9"));
        let err = a.choose(Some(ip("192.0.2.9")), None, None).unwrap_err();
        assert!(matches!(err, ProviderError::Conflict { .. }), "{err}");
        // Its own address is fine.
        assert_eq!(a.choose(Some(ip("192.0.2.9")), Some(ip("192.0.2.9")), None).unwrap(), ip("192.0.2.9"));
        // A move to a free address.
        assert_eq!(a.choose(Some(ip("192.0.2.10")), Some(ip("192.0.2.9")), None).unwrap(), ip("192.0.2.10"));
    }

    #[test]
    fn freed_address_is_not_reused_at_once_and_ipv6_pools_work() {
        let mut a = alloc(&["2001:db8::/126"]);
        assert_eq!(a.families(), vec![IpFamily::IPv6]);
        let x = a.choose(None, None, None).unwrap();
        a.take(x);
        a.release(x);
        let y = a.choose(None, None, None).unwrap();
        assert_ne!(x, y);
    }
}
