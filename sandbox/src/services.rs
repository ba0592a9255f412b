//! Service semantics the apiserver adds on top of storage: ClusterIP and NodePort allocation,
//! defaulting, type-dependent field clean-up and validation — the parts a LoadBalancer
//! controller observes (it reads `nodePort`/`healthCheckNodePort`, and writes status, which is
//! validated and defaulted: `ipMode` becomes `VIP` when unset, see DESIGN §8).
//!
//! Allocation is two-phase: everything is validated first, and only a request that passes
//! claims ports/IPs, so a rejected write never leaks an allocation.

use crate::status::{ApiError, ApiResult, FieldError, q};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};

pub const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// ClusterIP and NodePort allocator state, owned by the store.
#[derive(Debug)]
pub struct Allocator {
    ip_base: u32,
    ip_size: u32,
    ip_next: u32,
    used_ips: HashSet<u32>,
    np_range: (u16, u16),
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

/// Go's `net.ParseCIDR`, IPv4 or IPv6.
fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else { return false };
    let Ok(ip) = ip.parse::<IpAddr>() else { return false };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !bits.is_empty() && bits.chars().all(|c| c.is_ascii_digit()) && bits.parse::<u32>().is_ok_and(|b| b <= max)
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
}

fn svc_key(svc: &Value) -> String {
    format!("{}/{}", str_at(svc, "/metadata/namespace"), str_at(svc, "/metadata/name"))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn svc_type(svc: &Value) -> &str {
    match str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    }
}

fn cluster_ip_u32(svc: &Value) -> Option<u32> {
    str_at(svc, "/spec/clusterIP").parse::<Ipv4Addr>().ok().map(u32::from)
}

fn node_ports_of(svc: &Value) -> Vec<u16> {
    ports(svc)
        .iter()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter(|p| *p > 0)
        .map(|p| p as u16)
        .collect()
}

fn hcnp(svc: &Value) -> Option<u16> {
    svc.pointer("/spec/healthCheckNodePort").and_then(Value::as_u64).filter(|p| *p > 0).map(|p| p as u16)
}

fn ports(svc: &Value) -> &[Value] {
    svc.pointer("/spec/ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

fn needs_cluster_ip(svc: &Value) -> bool {
    svc_type(svc) != "ExternalName"
}

fn needs_node_ports(svc: &Value) -> bool {
    match svc_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false),
        _ => false,
    }
}

fn needs_hcnp(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer" && str_at(svc, "/spec/externalTrafficPolicy") == "Local"
}

fn is_external(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

fn spec_mut(svc: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !svc.get("spec").is_some_and(Value::is_object) {
        svc["spec"] = json!({});
    }
    match svc.get_mut("spec") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("spec was just made an object"),
    }
}

/// Defaulting (`SetDefaults_Service` and friends).
fn default(svc: &mut Value) {
    let external = is_external(svc);
    let ty = svc_type(svc).to_string();
    let spec = spec_mut(svc);
    spec.entry("type").or_insert_with(|| json!("ClusterIP"));
    spec.entry("sessionAffinity").or_insert_with(|| json!("None"));
    if ty != "ExternalName" {
        spec.entry("internalTrafficPolicy").or_insert_with(|| json!("Cluster"));
    }
    if external {
        spec.entry("externalTrafficPolicy").or_insert_with(|| json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        spec.entry("allocateLoadBalancerNodePorts").or_insert_with(|| json!(true));
    }
    if let Some(Value::Array(ps)) = spec.get_mut("ports") {
        for p in ps.iter_mut() {
            if let Value::Object(m) = p {
                m.entry("protocol").or_insert_with(|| json!("TCP"));
                if !m.contains_key("targetPort")
                    && let Some(port) = m.get("port").cloned()
                {
                    m.insert("targetPort".into(), port);
                }
            }
        }
    }
}

/// `patchAllocatedValues`: a PUT/apply that omits allocated fields keeps them.
fn patch_allocated(old: &Value, new: &mut Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        let spec = spec_mut(new);
        if spec.get("clusterIP").and_then(Value::as_str).unwrap_or_default().is_empty() {
            for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                if let Some(v) = old.pointer(&format!("/spec/{k}")) {
                    spec.insert(k.into(), v.clone());
                }
            }
        }
        for k in ["clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if !spec.contains_key(k)
                && let Some(v) = old.pointer(&format!("/spec/{k}"))
            {
                spec.insert(k.into(), v.clone());
            }
        }
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        let old_used: HashSet<u16> = node_ports_of(old).into_iter().collect();
        let new_used: HashSet<u16> = node_ports_of(new).into_iter().collect();
        let used: HashSet<u16> = old_used.intersection(&new_used).copied().collect();
        let by_name: HashMap<String, u64> = ports(old)
            .iter()
            .map(|p| (str_at(p, "/name").to_string(), p.get("nodePort").and_then(Value::as_u64).unwrap_or(0)))
            .collect();
        if let Some(Value::Array(ps)) = spec_mut(new).get_mut("ports") {
            for p in ps.iter_mut() {
                let cur = p.get("nodePort").and_then(Value::as_u64).unwrap_or(0);
                if cur == 0 {
                    let name = str_at(p, "/name").to_string();
                    if let Some(&v) = by_name.get(&name)
                        && v > 0
                        && !used.contains(&(v as u16))
                    {
                        p["nodePort"] = json!(v);
                    }
                }
            }
        }
    }
    if needs_hcnp(old)
        && needs_hcnp(new)
        && hcnp(new).is_none()
        && let Some(v) = hcnp(old)
    {
        spec_mut(new).insert("healthCheckNodePort".into(), json!(v));
    }
}

/// `dropTypeDependentFields`: fields that only make sense for the old type are cleared when
/// the user left them unchanged.
fn drop_type_dependent(old: &Value, new: &mut Value) {
    let old_np: Vec<Option<u64>> = ports(old).iter().map(|p| p.get("nodePort").and_then(Value::as_u64)).collect();
    if !needs_node_ports(new)
        && needs_node_ports(old)
        && let Some(Value::Array(ps)) = spec_mut(new).get_mut("ports")
    {
        for p in ps.iter_mut() {
            let np = p.get("nodePort").and_then(Value::as_u64);
            if np.is_some()
                && old_np.contains(&np)
                && let Value::Object(m) = p
            {
                m.remove("nodePort");
            }
        }
    }
    if !needs_hcnp(new) && hcnp(new).is_some() && hcnp(new) == hcnp(old) {
        spec_mut(new).remove("healthCheckNodePort");
    }
    if svc_type(new) != "LoadBalancer" && svc_type(old) == "LoadBalancer" {
        let spec_old = old.get("spec");
        for k in ["allocateLoadBalancerNodePorts", "loadBalancerClass"] {
            let ov = spec_old.and_then(|s| s.get(k));
            if new.pointer(&format!("/spec/{k}")) == ov {
                spec_mut(new).remove(k);
            }
        }
    }
    if !is_external(new) && is_external(old) {
        let ov = old.pointer("/spec/externalTrafficPolicy").cloned();
        if new.pointer("/spec/externalTrafficPolicy").cloned() == ov {
            spec_mut(new).remove("externalTrafficPolicy");
        }
    }
    if svc_type(new) == "ExternalName" && svc_type(old) != "ExternalName" {
        let spec = spec_mut(new);
        for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if old.pointer(&format!("/spec/{k}")) == spec.get(k) {
                spec.remove(k);
            }
        }
    }
}

fn is_dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && !s.is_empty() && s.split('.').all(is_dns1123_label)
}

/// Static validation of a Service (no allocator state).
fn validate(svc: &Value, old: Option<&Value>, np_range: (u16, u16)) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = str_at(svc, "/metadata/name");
    if old.is_none() && !is_dns1035_label(name) {
        errs.push(FieldError::invalid(
            "metadata.name",
            q(name),
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ));
    }
    let ty = svc_type(svc);
    if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
        errs.push(FieldError::not_supported(
            "spec.type",
            q(ty),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let headless = str_at(svc, "/spec/clusterIP") == "None";
    let ps = ports(svc);
    if ps.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    if ty == "ExternalName" && str_at(svc, "/spec/externalName").is_empty() {
        errs.push(FieldError::required("spec.externalName", ""));
    }
    let mut names = HashSet::new();
    let mut port_proto = HashSet::new();
    let mut np_proto = HashSet::new();
    for (i, p) in ps.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        let pname = str_at(p, "/name");
        if ps.len() > 1 && pname.is_empty() {
            errs.push(FieldError::required(format!("{f}.name"), ""));
        } else if !pname.is_empty() {
            if !is_dns1123_label(pname) {
                errs.push(FieldError::invalid(format!("{f}.name"), q(pname), "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"));
            }
            if !names.insert(pname.to_string()) {
                errs.push(FieldError::duplicate(format!("{f}.name"), q(pname)));
            }
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid(format!("{f}.port"), port, "must be between 1 and 65535, inclusive"));
        }
        let proto = str_at(p, "/protocol");
        if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            errs.push(FieldError::not_supported(format!("{f}.protocol"), q(proto), &["SCTP", "TCP", "UDP"]));
        }
        if !port_proto.insert((port, proto.to_string())) {
            errs.push(FieldError::duplicate(
                format!("spec.ports[{i}]"),
                format!("core.ServicePort{{Name:{}, Protocol:{}, Port:{port}}}", q(pname), q(proto)),
            ));
        }
        if let Some(tp) = p.get("targetPort") {
            match tp {
                Value::Number(n) if !(1..=65535).contains(&n.as_i64().unwrap_or(0)) => errs.push(FieldError::invalid(
                    format!("{f}.targetPort"),
                    n,
                    "must be between 1 and 65535, inclusive",
                )),
                _ => {}
            }
        }
        let np = p.get("nodePort").and_then(Value::as_i64).unwrap_or(0);
        if np != 0 {
            if ty == "ClusterIP" || ty == "ExternalName" {
                errs.push(FieldError::forbidden(
                    format!("{f}.nodePort"),
                    format!("may not be used when `type` is '{ty}'"),
                ));
            } else if np < np_range.0 as i64 || np > np_range.1 as i64 {
                errs.push(FieldError::invalid(
                    format!("{f}.nodePort"),
                    np,
                    format!(
                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                        np_range.0, np_range.1
                    ),
                ));
            } else if !np_proto.insert((np, proto.to_string())) {
                errs.push(FieldError::duplicate(format!("{f}.nodePort"), np));
            }
        }
    }
    let etp = str_at(svc, "/spec/externalTrafficPolicy");
    if !etp.is_empty() {
        if !is_external(svc) {
            errs.push(FieldError::invalid(
                "spec.externalTrafficPolicy",
                q(etp),
                "may only be set for externally-accessible services",
            ));
        } else if !matches!(etp, "Cluster" | "Local") {
            errs.push(FieldError::not_supported("spec.externalTrafficPolicy", q(etp), &["Cluster", "Local"]));
        }
    }
    let itp = str_at(svc, "/spec/internalTrafficPolicy");
    if !itp.is_empty() && !matches!(itp, "Cluster" | "Local") {
        errs.push(FieldError::not_supported("spec.internalTrafficPolicy", q(itp), &["Cluster", "Local"]));
    }
    let sa = str_at(svc, "/spec/sessionAffinity");
    if !matches!(sa, "None" | "ClientIP") {
        errs.push(FieldError::not_supported("spec.sessionAffinity", q(sa), &["ClientIP", "None"]));
    }
    if let Some(h) = svc.pointer("/spec/healthCheckNodePort").and_then(Value::as_i64).filter(|h| *h != 0) {
        if !needs_hcnp(svc) {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                h,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        } else if h < np_range.0 as i64 || h > np_range.1 as i64 {
            errs.push(FieldError::invalid(
                "spec.healthCheckNodePort",
                h,
                format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    np_range.0, np_range.1
                ),
            ));
        }
    }
    // loadBalancerSourceRanges (and the annotation), exactly as ValidateService does.
    let ranges: Vec<String> = svc
        .pointer("/spec/loadBalancerSourceRanges")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect())
        .unwrap_or_default();
    let annotation =
        svc.pointer("/metadata/annotations").and_then(|a| a.get(SOURCE_RANGES_ANNOTATION)).and_then(Value::as_str);
    if !ranges.is_empty() || annotation.is_some() {
        let (field, val, ok) = if !ranges.is_empty() {
            let ok = ranges.iter().all(|r| is_cidr(r.trim()));
            ("spec.LoadBalancerSourceRanges".to_string(), format!("[{}]", ranges.join(" ")), ok)
        } else {
            let a = annotation.unwrap_or_default();
            let t = a.trim();
            let ok = t.is_empty() || t.split(',').all(is_cidr);
            (format!("metadata.annotations[{SOURCE_RANGES_ANNOTATION}]"), a.to_string(), ok)
        };
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(&field, "may only be used when `type` is 'LoadBalancer'"));
        }
        if !ok {
            errs.push(FieldError::invalid(
                &field,
                q(&val),
                "must be a list of IP ranges. For example, 10.240.0.0/24,10.250.0.0/24 ",
            ));
        }
    }
    if svc.pointer("/spec/loadBalancerClass").is_some_and(|v| !v.is_null()) && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"));
    }
    if let Some(old) = old {
        if svc_type(old) == "LoadBalancer" && ty == "LoadBalancer" {
            let (o, n) = (old.pointer("/spec/loadBalancerClass"), svc.pointer("/spec/loadBalancerClass"));
            if o != n {
                errs.push(FieldError::invalid(
                    "spec.loadBalancerClass",
                    n.map(|v| v.to_string()).unwrap_or_else(|| "null".into()),
                    "may not change once set",
                ));
            }
        }
        let (o, n) = (str_at(old, "/spec/clusterIP"), str_at(svc, "/spec/clusterIP"));
        if needs_cluster_ip(old) && needs_cluster_ip(svc) && !o.is_empty() && o != n {
            errs.push(FieldError::invalid(
                "spec.clusterIPs[0]",
                format!("[]string{{{}}}", q(n)),
                "may not change once set",
            ));
        }
    }
    errs
}

/// Create/update hook: default, validate, then allocate. `old` is `None` on create.
pub fn prepare(alloc: &mut Allocator, old: Option<&Value>, new: &mut Value) -> ApiResult<()> {
    if let Some(old) = old {
        patch_allocated(old, new);
        drop_type_dependent(old, new);
    }
    default(new);
    let name = str_at(new, "/metadata/name").to_string();
    let invalid = |errs: &[FieldError]| ApiError::invalid("", "Service", &name, errs);
    let errs = validate(new, old, alloc.np_range);
    if !errs.is_empty() {
        return Err(invalid(&errs));
    }
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
                        if !alloc.ip_in_range(ip) {
                            errs.push(FieldError::invalid(
                                "spec.clusterIPs",
                                format!("[]string{{{}}}", q(&want_ip)),
                                "failed to allocate IP: the provided IP is not in the valid range",
                            ));
                        } else if alloc.used_ips.contains(&ip) {
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
            if alloc.node_ports.get(&np).is_some_and(|o| *o != key) {
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
        if alloc.node_ports.get(&h).is_some_and(|o| *o != key) || claimed.contains(&h) {
            errs.push(FieldError::invalid("spec.healthCheckNodePort", h, "provided port is already allocated"));
        }
        claimed.insert(h);
    }
    if !errs.is_empty() {
        return Err(invalid(&errs));
    }
    // ---- phase 2: allocate missing values
    if allocate_ip {
        let ip = alloc.alloc_ip().ok_or_else(|| ApiError::internal("failed to allocate a serviceIP: range is full"))?;
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
        let count = ports(new).iter().filter(|p| p.get("nodePort").and_then(Value::as_u64).unwrap_or(0) == 0).count();
        for _ in 0..count {
            let p = alloc
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
        let p = alloc
            .free_node_port(&claimed)
            .ok_or_else(|| ApiError::internal("failed to allocate a nodePort: range is full"))?;
        claimed.insert(p);
        spec_mut(new).insert("healthCheckNodePort".into(), json!(p));
    }
    // ---- phase 3: commit claims, release what the old object held and the new one doesn't
    if let Some(old) = old {
        for p in node_ports_of(old).into_iter().chain(hcnp(old)) {
            if !claimed.contains(&p) && alloc.node_ports.get(&p) == Some(&key) {
                alloc.node_ports.remove(&p);
            }
        }
        if let Some(ip) = old_ip
            && Some(ip) != new_ip
        {
            alloc.used_ips.remove(&ip);
        }
    }
    for p in claimed {
        alloc.node_ports.insert(p, key.clone());
    }
    if let Some(ip) = new_ip {
        alloc.used_ips.insert(ip);
    }
    Ok(())
}

/// Restores what a PUT/PATCH on the main resource may not change about a Service's status and
/// clears status on create (the real `PrepareForCreate`).
pub fn reset_status_on_create(svc: &mut Value) {
    svc["status"] = json!({ "loadBalancer": {} });
}

/// Status-subresource hook: defaulting (`ipMode: VIP`) and validation.
pub fn prepare_status(svc: &mut Value) -> ApiResult<()> {
    let name = str_at(svc, "/metadata/name").to_string();
    let mut errs = Vec::new();
    if let Some(Value::Array(ing)) = svc.pointer_mut("/status/loadBalancer/ingress") {
        for (i, e) in ing.iter_mut().enumerate() {
            let f = format!("status.loadBalancer.ingress[{i}]");
            let ip = str_at(e, "/ip").to_string();
            let host = str_at(e, "/hostname").to_string();
            if !ip.is_empty() && e.get("ipMode").is_none_or(Value::is_null) {
                e["ipMode"] = json!("VIP");
            }
            if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
                errs.push(FieldError::invalid(format!("{f}.ip"), q(&ip), "must be a valid IP address"));
            }
            if !host.is_empty() {
                if host.parse::<IpAddr>().is_ok() {
                    errs.push(FieldError::invalid(
                        format!("{f}.hostname"),
                        q(&host),
                        "must be a DNS name, not an IP address",
                    ));
                } else if !is_dns1123_subdomain(&host) {
                    errs.push(FieldError::invalid(
                        format!("{f}.hostname"),
                        q(&host),
                        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                    ));
                }
            }
            match e.get("ipMode").and_then(Value::as_str) {
                None => {}
                Some(_) if ip.is_empty() => {
                    errs.push(FieldError::forbidden(format!("{f}.ipMode"), "may not be specified when `ip` is not set"))
                }
                Some("VIP" | "Proxy") => {}
                Some(m) => errs.push(FieldError::not_supported(format!("{f}.ipMode"), q(m), &["Proxy", "VIP"])),
            }
            if let Some(Value::Array(ps)) = e.get("ports") {
                for (j, p) in ps.iter().enumerate() {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    if !(1..=65535).contains(&port) {
                        errs.push(FieldError::invalid(
                            format!("{f}.ports[{j}].port"),
                            port,
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                    let proto = str_at(p, "/protocol");
                    if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                        errs.push(FieldError::not_supported(
                            format!("{f}.ports[{j}].protocol"),
                            q(proto),
                            &["SCTP", "TCP", "UDP"],
                        ));
                    }
                }
            }
        }
    }
    if let Some(Value::Array(conds)) = svc.pointer("/status/conditions") {
        validate_conditions(conds, "status.conditions", &mut errs);
    }
    if errs.is_empty() { Ok(()) } else { Err(ApiError::invalid("", "Service", &name, &errs)) }
}

fn is_reason(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':'))
        && (b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'_')
}

fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let b = name.as_bytes();
    prefix.is_none_or(is_dns1123_subdomain)
        && !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `metav1validation.ValidateConditions`.
pub fn validate_conditions(conds: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (i, c) in conds.iter().enumerate() {
        let f = format!("{path}[{i}]");
        let t = str_at(c, "/type");
        if t.is_empty() {
            errs.push(FieldError::required(format!("{f}.type"), "must be set"));
        } else if !is_qualified_name(t) {
            errs.push(FieldError::invalid(format!("{f}.type"), q(t), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        } else if !seen.insert(t.to_string()) {
            errs.push(FieldError::duplicate(format!("{f}.type"), q(t)));
        }
        let st = str_at(c, "/status");
        if !matches!(st, "True" | "False" | "Unknown") {
            errs.push(FieldError::not_supported(format!("{f}.status"), q(st), &["False", "True", "Unknown"]));
        }
        if c.get("observedGeneration").and_then(Value::as_i64).unwrap_or(0) < 0 {
            errs.push(FieldError::invalid(
                format!("{f}.observedGeneration"),
                c["observedGeneration"].clone(),
                "must be greater than or equal to zero",
            ));
        }
        if str_at(c, "/lastTransitionTime").is_empty() {
            errs.push(FieldError::required(format!("{f}.lastTransitionTime"), "must be set"));
        }
        let r = str_at(c, "/reason");
        if r.is_empty() {
            errs.push(FieldError::required(format!("{f}.reason"), "must be set"));
        } else if !is_reason(r) {
            errs.push(FieldError::invalid(format!("{f}.reason"), q(r), "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName',  or 'ReasonA,ReasonB',  or 'ReasonA:ReasonB', regex used for validation is '[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?')"));
        } else if r.len() > 1024 {
            errs.push(FieldError::too_long(format!("{f}.reason"), 1024));
        }
        if str_at(c, "/message").len() > 32768 {
            errs.push(FieldError::too_long(format!("{f}.message"), 32768));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn allocates_and_keeps() {
        let mut a = Allocator::new("10.96.0.0/16", (30000, 32767)).unwrap();
        let mut s = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}, {"port": 443, "name": "b"}]}),
        );
        // two ports need names
        assert!(prepare(&mut a, None, &mut s).is_err());
        s["spec"]["ports"][0]["name"] = json!("a");
        prepare(&mut a, None, &mut s).unwrap();
        assert_eq!(s["spec"]["clusterIP"], "10.96.0.2");
        assert_eq!(s["spec"]["ports"][0]["nodePort"], 30000);
        assert_eq!(s["spec"]["ports"][1]["targetPort"], 443);
        assert_eq!(s["spec"]["healthCheckNodePort"], 30002);
        // an update without the allocated values keeps them
        let mut upd = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80, "name": "a"}, {"port": 443, "name": "b"}]}),
        );
        prepare(&mut a, Some(&s), &mut upd).unwrap();
        assert_eq!(upd, s);
        // a second service cannot take a used port
        let mut s2 = json!({"metadata": {"name": "t", "namespace": "default"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30000}]}});
        let e = prepare(&mut a, None, &mut s2).unwrap_err();
        assert_eq!(e.code, 422, "{}", e.message);
        // switching to ClusterIP releases the ports
        let mut c = s.clone();
        c["spec"]["type"] = json!("ClusterIP");
        prepare(&mut a, Some(&s), &mut c).unwrap();
        assert!(c["spec"]["ports"][0].get("nodePort").is_none());
        assert!(c["spec"].get("healthCheckNodePort").is_none());
        assert!(c["spec"].get("externalTrafficPolicy").is_none());
        prepare(&mut a, None, &mut s2).unwrap();
    }

    #[test]
    fn source_ranges_and_status() {
        let mut a = Allocator::new("10.96.0.0/16", (30000, 32767)).unwrap();
        let mut s = svc(
            json!({"type": "LoadBalancer", "ports": [{"port": 80}], "loadBalancerSourceRanges": ["10.0.0.0/8", "bogus"]}),
        );
        let e = prepare(&mut a, None, &mut s).unwrap_err();
        assert!(e.message.contains("must be a list of IP ranges"), "{}", e.message);
        let mut st = json!({"metadata": {"name": "s"}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}, {"hostname": "a.example.com"}]}}});
        prepare_status(&mut st).unwrap();
        assert_eq!(st["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
        assert!(st["status"]["loadBalancer"]["ingress"][1].get("ipMode").is_none());
        let mut bad = json!({"metadata": {"name": "s"}, "status": {"loadBalancer": {"ingress": [{"hostname": "a.example.com", "ipMode": "Proxy"}]}}});
        assert!(prepare_status(&mut bad).is_err());
    }
}
