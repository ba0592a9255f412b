//! ClusterIP and NodePort allocation, owned by the store.
//!
//! Allocation is two-phase: everything is validated first, and only a request that passes
//! claims ports/IPs, so a rejected write never leaks an allocation.

use super::spec::{
    cluster_ip_u32, hcnp, needs_cluster_ip, needs_hcnp, needs_node_ports, node_ports_of, ports, spec_mut, str_at,
    svc_key,
};
use crate::status::{ApiError, ApiResult, FieldError, q};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// ClusterIP and NodePort allocator state, owned by the store.
#[derive(Debug)]
pub struct Allocator {
    ip_base: u32,
    ip_size: u32,
    ip_next: u32,
    used_ips: HashSet<u32>,
    pub(super) np_range: (u16, u16),
    np_next: u16,
    /// nodePort -> owning service key `ns/name`
    node_ports: HashMap<u16, String>,
}

pub fn parse_cidr_v4(cidr: &str) -> Option<(u32, u32)> {
    let (ip, bits) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    if bits > 30 {
        return None;
    }
    let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
    Some((u32::from(ip) & mask, 1u32 << (32 - bits)))
}

impl Allocator {
    pub fn new(service_cidr: &str, np_range: (u16, u16)) -> Option<Self> {
        let (ip_base, ip_size) = parse_cidr_v4(service_cidr)?;
        let mut used_ips = HashSet::new();
        // .1 is the `kubernetes` Service's address on a real cluster.
        used_ips.insert(ip_base + 1);
        Some(Allocator {
            ip_base,
            ip_size,
            ip_next: 2,
            used_ips,
            np_range,
            np_next: np_range.0,
            node_ports: HashMap::new(),
        })
    }

    fn ip_in_range(&self, ip: u32) -> bool {
        ip > self.ip_base && ip < self.ip_base + self.ip_size - 1
    }

    fn alloc_ip(&mut self) -> Option<u32> {
        let usable = self.ip_size - 2;
        for _ in 0..usable {
            let off = self.ip_next;
            self.ip_next = if self.ip_next + 1 >= self.ip_size - 1 { 1 } else { self.ip_next + 1 };
            let ip = self.ip_base + off;
            if self.used_ips.insert(ip) {
                return Some(ip);
            }
        }
        None
    }

    fn free_node_port(&mut self, taken: &HashSet<u16>) -> Option<u16> {
        let (lo, hi) = self.np_range;
        let n = (hi - lo) as u32 + 1;
        for _ in 0..n {
            let p = self.np_next;
            self.np_next = if self.np_next >= hi { lo } else { self.np_next + 1 };
            if !self.node_ports.contains_key(&p) && !taken.contains(&p) {
                return Some(p);
            }
        }
        None
    }

    /// Releases everything a (deleted) Service holds.
    pub fn release(&mut self, svc: &Value) {
        let key = svc_key(svc);
        for p in node_ports_of(svc).into_iter().chain(hcnp(svc)) {
            if self.node_ports.get(&p) == Some(&key) {
                self.node_ports.remove(&p);
            }
        }
        if let Some(ip) = cluster_ip_u32(svc) {
            self.used_ips.remove(&ip);
        }
    }
    /// Claims what a validated Service asks for and allocates what it lacks, in three phases:
    /// check every explicit claim against other owners (nothing changes on failure), allocate
    /// the missing values, then commit and release what the old object held and the new one
    /// does not. `old` is `None` on create.
    pub fn allocate(&mut self, old: Option<&Value>, new: &mut Value) -> ApiResult<()> {
        let name = str_at(new, "/metadata/name").to_string();
        let invalid = |errs: &[FieldError]| ApiError::invalid("", "Service", &name, errs);
        let key = svc_key(new);
        // ---- phase 1: check claims against other owners
        let mut errs = Vec::new();
        let old_ip = old.and_then(cluster_ip_u32);
        let want_ip = str_at(new, "/spec/clusterIP").to_string();
        let mut new_ip: Option<u32> = None;
        let mut allocate_ip = false;
        if needs_cluster_ip(new) {
            if want_ip.is_empty() {
                allocate_ip = true;
            } else if want_ip != "None" {
                match want_ip.parse::<Ipv4Addr>() {
                    Err(_) => errs.push(FieldError::invalid(
                        "spec.clusterIPs[0]",
                        q(&want_ip),
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    )),
                    Ok(ip) => {
                        let ip = u32::from(ip);
                        if Some(ip) != old_ip {
                            if !self.ip_in_range(ip) {
                                errs.push(FieldError::invalid(
                                    "spec.clusterIPs",
                                    format!("[]string{{{}}}", q(&want_ip)),
                                    "failed to allocate IP: the provided IP is not in the valid range",
                                ));
                            } else if self.used_ips.contains(&ip) {
                                errs.push(FieldError::invalid(
                                    "spec.clusterIPs",
                                    format!("[]string{{{}}}", q(&want_ip)),
                                    "failed to allocate IP: provided IP is already allocated",
                                ));
                            }
                        }
                        new_ip = Some(ip);
                    }
                }
            }
        }
        let mut claimed: HashSet<u16> = HashSet::new();
        for (i, p) in ports(new).iter().enumerate() {
            if let Some(np) = p.get("nodePort").and_then(Value::as_u64).filter(|n| *n > 0) {
                let np = np as u16;
                if self.node_ports.get(&np).is_some_and(|o| *o != key) {
                    errs.push(FieldError::invalid(
                        format!("spec.ports[{i}].nodePort"),
                        np,
                        "provided port is already allocated",
                    ));
                }
                claimed.insert(np);
            }
        }
        if let Some(h) = hcnp(new) {
            if self.node_ports.get(&h).is_some_and(|o| *o != key) || claimed.contains(&h) {
                errs.push(FieldError::invalid("spec.healthCheckNodePort", h, "provided port is already allocated"));
            }
            claimed.insert(h);
        }
        if !errs.is_empty() {
            return Err(invalid(&errs));
        }
        // ---- phase 2: allocate missing values
        if allocate_ip {
            let ip =
                self.alloc_ip().ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?;
            new_ip = Some(ip);
            let ip_s = Ipv4Addr::from(ip).to_string();
            let spec = spec_mut(new);
            spec.insert("clusterIP".into(), json!(ip_s));
            spec.insert("clusterIPs".into(), json!([ip_s]));
        }
        if needs_cluster_ip(new) {
            let cip = str_at(new, "/spec/clusterIP").to_string();
            let spec = spec_mut(new);
            spec.entry("clusterIPs").or_insert_with(|| json!([cip]));
            spec.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
            spec.entry("ipFamilyPolicy").or_insert_with(|| json!("SingleStack"));
        }
        let mut fresh_ports = Vec::new();
        if needs_node_ports(new) {
            let count =
                ports(new).iter().filter(|p| p.get("nodePort").and_then(Value::as_u64).unwrap_or(0) == 0).count();
            for _ in 0..count {
                let p = self
                    .free_node_port(&claimed)
                    .ok_or_else(|| ApiError::internal("failed to allocate a nodePort: range is full"))?;
                claimed.insert(p);
                fresh_ports.push(p);
            }
            let mut fresh = fresh_ports.iter();
            if let Some(Value::Array(ps)) = spec_mut(new).get_mut("ports") {
                for p in ps.iter_mut() {
                    if p.get("nodePort").and_then(Value::as_u64).unwrap_or(0) == 0
                        && let Some(np) = fresh.next()
                    {
                        p["nodePort"] = json!(np);
                    }
                }
            }
        }
        if needs_hcnp(new) && hcnp(new).is_none() {
            let p = self
                .free_node_port(&claimed)
                .ok_or_else(|| ApiError::internal("failed to allocate a nodePort: range is full"))?;
            claimed.insert(p);
            spec_mut(new).insert("healthCheckNodePort".into(), json!(p));
        }
        // ---- phase 3: commit claims, release what the old object held and the new one doesn't
        if let Some(old) = old {
            for p in node_ports_of(old).into_iter().chain(hcnp(old)) {
                if !claimed.contains(&p) && self.node_ports.get(&p) == Some(&key) {
                    self.node_ports.remove(&p);
                }
            }
            if let Some(ip) = old_ip
                && Some(ip) != new_ip
            {
                self.used_ips.remove(&ip);
            }
        }
        for p in claimed {
            self.node_ports.insert(p, key.clone());
        }
        if let Some(ip) = new_ip {
            self.used_ips.insert(ip);
        }
        Ok(())
    }
}
