//! Forwarding rules (regional and global): defaults, ports, IPs, and what `PATCH` may change.
//!
//! * `portRange: "80"` is stored as `"80-80"`; `ports` (≤ 5 single ports), `portRange` and
//!   `allPorts: true` are mutually exclusive; none of them means all ports.
//! * Without `IPAddress` the rule gets an ephemeral IP from the pool of its kind (regional
//!   external, global external, internal for `INTERNAL*` schemes). With an IP (or an address
//!   URL) it uses it: a reserved address of the same scope may be shared by several rules whose
//!   protocol or ports differ (400 "Forwarding rule's port range is conflicting with forwarding
//!   rule …" otherwise; internal sharing needs purpose `SHARED_LOADBALANCER_VIP`); an IP another
//!   rule holds ephemerally answers 400 "Specified IP address is in-use and would result in a
//!   conflict." (external) or fails the operation with 409 `IP_IN_USE_BY_ANOTHER_RESOURCE`
//!   (internal); an unreserved external IP answers 400. The address's `networkTier` must match.
//! * `PATCH` may only change `networkTier`, `allowGlobalAccess`, `allowPscGlobalAccess` and
//!   `sourceIpRanges` (real GCE documents "only network_tier", and ingress-gce patches
//!   `allowGlobalAccess`); any other changed field is a 400.

use super::{Ctx, Mode, default, one_of, str_field};
use crate::collections::Coll;
use crate::errors::{ApiError, ApiResult};
use crate::ips::Pool;
use crate::links::{self, Key};
use crate::ops::Prepared;
use crate::store::State;
use serde_json::{Value, json};
use std::net::Ipv4Addr;

const PATCHABLE: &[&str] =
    &["networkTier", "allowGlobalAccess", "allowPscGlobalAccess", "sourceIpRanges", "description"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "ESP", "AH", "SCTP", "ICMP", "L3_DEFAULT"];
const SCHEMES: &[&str] = &["EXTERNAL", "EXTERNAL_MANAGED", "INTERNAL", "INTERNAL_MANAGED", "INTERNAL_SELF_MANAGED"];

pub fn check(ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    normalize(ctx, v)?;
    match ctx.mode {
        Mode::Insert => check_insert(ctx, v),
        Mode::Update | Mode::Patch => check_patch(ctx, v),
    }
}

fn normalize(ctx: &Ctx, v: &mut Value) -> ApiResult<()> {
    default(v, "IPProtocol", json!("TCP"));
    default(v, "loadBalancingScheme", json!("EXTERNAL"));
    default(v, "networkTier", json!("PREMIUM"));
    one_of(v, "IPProtocol", PROTOCOLS)?;
    one_of(v, "loadBalancingScheme", SCHEMES)?;
    one_of(v, "networkTier", &["PREMIUM", "STANDARD"])?;
    if let Some(pr) = str_field(v, "portRange").map(str::to_string) {
        let (lo, hi) = parse_range(&pr).ok_or_else(|| {
            ApiError::invalid_field("resource.portRange", &pr, "Must be a port or a range 'low-high'.")
        })?;
        v["portRange"] = json!(format!("{lo}-{hi}"));
    }
    if let Some(ports) = v.get("ports").and_then(Value::as_array) {
        if ports.len() > 5 {
            return Err(ApiError::invalid_field(
                "resource.ports",
                &Value::Array(ports.clone()).to_string(),
                "At most 5 ports may be specified; use portRange or allPorts.",
            ));
        }
        for p in ports {
            if p.as_str().and_then(|s| s.parse::<u16>().ok()).is_none_or(|n| n == 0) {
                return Err(ApiError::invalid_field("resource.ports", &p.to_string(), "Must be a port number."));
            }
        }
    }
    let all_ports = v.get("allPorts").and_then(Value::as_bool) == Some(true);
    let has_range = v.get("portRange").is_some();
    let has_ports = v.get("ports").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if usize::from(all_ports) + usize::from(has_range) + usize::from(has_ports) > 1 {
        return Err(ApiError::invalid(
            "Invalid value for field 'resource': only one of 'portRange', 'ports' and 'allPorts' may be specified.",
        ));
    }
    super::normalize_networks(ctx, v);
    Ok(())
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
        None => {
            let p = s.trim().parse::<u16>().ok()?;
            (p, p)
        }
    };
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

/// The port ranges a rule covers.
fn port_ranges(v: &Value) -> Vec<(u16, u16)> {
    if v.get("allPorts").and_then(Value::as_bool) == Some(true) {
        return vec![(1, 65535)];
    }
    if let Some(r) = str_field(v, "portRange").and_then(parse_range) {
        return vec![r];
    }
    match v.get("ports").and_then(Value::as_array) {
        Some(ps) if !ps.is_empty() => {
            ps.iter().filter_map(|p| p.as_str().and_then(|s| s.parse::<u16>().ok())).map(|p| (p, p)).collect()
        }
        _ => vec![(1, 65535)],
    }
}

fn overlap(a: &[(u16, u16)], b: &[(u16, u16)]) -> bool {
    a.iter().any(|(l1, h1)| b.iter().any(|(l2, h2)| l1 <= h2 && l2 <= h1))
}

fn is_internal(v: &Value) -> bool {
    str_field(v, "loadBalancingScheme").is_some_and(|s| s.starts_with("INTERNAL"))
}

fn check_insert(ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    let has_target = v.get("target").is_some();
    let has_bs = v.get("backendService").is_some();
    if ctx.global() {
        if !has_target {
            return Err(ApiError::required("resource.target"));
        }
    } else if has_target && has_bs {
        return Err(ApiError::invalid_field(
            "resource.target",
            str_field(v, "target").unwrap_or(""),
            "A forwarding rule cannot have both a target and a backend service.",
        ));
    } else if !has_target && !has_bs {
        return Err(ApiError::required("resource.target"));
    }
    let internal = is_internal(v);
    let ip = match str_field(v, "IPAddress").map(str::to_string) {
        None => {
            let pool = match (internal, ctx.global()) {
                (true, _) => Pool::Internal,
                (false, true) => Pool::ExternalGlobal,
                (false, false) => Pool::ExternalRegional,
            };
            let ip = ctx
                .st
                .pools
                .allocate(pool, &ctx.st.taken_ips())
                .ok_or_else(|| ApiError::quota("IN_USE_ADDRESSES", &ctx.st.region))?;
            v["IPAddress"] = json!(ip.to_string());
            return Ok(());
        }
        Some(text) if text.contains('/') => {
            let want = if ctx.global() { Coll::GlobalAddress } else { Coll::Address };
            let r = links::parse_ref(&text, ctx.project())
                .filter(|r| r.key.coll == want && (ctx.global() || r.key.loc == ctx.key.loc))
                .ok_or_else(|| ApiError::invalid_field("resource.IPAddress", &text, "The URL is malformed."))?;
            let addr = ctx.st.resources.get(&r.key).ok_or_else(|| ApiError::not_found(&r.key.path(ctx.project())))?;
            str_field(addr, "address").unwrap_or_default().to_string()
        }
        Some(text) => text
            .parse::<Ipv4Addr>()
            .map_err(|_| {
                ApiError::invalid_field("resource.IPAddress", &text, "Must be a valid IPv4 address or an address URL.")
            })?
            .to_string(),
    };
    v["IPAddress"] = json!(ip);
    check_explicit_ip(ctx, v, &ip, internal)
}

fn check_explicit_ip(ctx: &mut Ctx, v: &Value, ip: &str, internal: bool) -> ApiResult<()> {
    let st = ctx.st;
    let reserved = super::address::reserved(st, ctx.key, ip);
    if let Some((_, addr)) = &reserved
        && !internal
        && str_field(addr, "networkTier").is_some_and(|t| Some(t) != str_field(v, "networkTier"))
    {
        return Err(ApiError::invalid_field(
            "resource.networkTier",
            str_field(v, "networkTier").unwrap_or(""),
            "The network tier of the forwarding rule must match the network tier of its IP address.",
        ));
    }
    let others: Vec<(Key, Value)> = st
        .resources
        .iter()
        .chain(st.pending_puts())
        .filter(|(k, o)| {
            matches!(k.coll, Coll::ForwardingRule | Coll::GlobalForwardingRule) && str_field(o, "IPAddress") == Some(ip)
        })
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    if others.is_empty() {
        if reserved.is_some() {
            return Ok(());
        }
        if internal {
            let on_instance = st.resources.iter().any(|(k, o)| {
                k.coll == Coll::Instance
                    && o.pointer("/networkInterfaces/0/networkIP").and_then(Value::as_str) == Some(ip)
            });
            if on_instance {
                ctx.deferred = Some(ApiError::internal_ip_in_use(ip));
            }
            return Ok(());
        }
        return Err(ApiError::invalid_field(
            "resource.IPAddress",
            ip,
            "Specified IP address is not reserved in this project; reserve it as an address first.",
        ));
    }
    let shareable =
        reserved.as_ref().is_some_and(|(_, a)| !internal || str_field(a, "purpose") == Some("SHARED_LOADBALANCER_VIP"));
    if !shareable {
        if internal {
            ctx.deferred = Some(ApiError::internal_ip_in_use(ip));
            return Ok(());
        }
        return Err(ApiError::invalid_field(
            "resource.IPAddress",
            ip,
            "Specified IP address is in-use and would result in a conflict.",
        ));
    }
    let mine = port_ranges(v);
    for (k, o) in &others {
        if str_field(o, "IPProtocol") == str_field(v, "IPProtocol") && overlap(&mine, &port_ranges(o)) {
            return Err(ApiError::invalid_field(
                "resource.portRange",
                str_field(v, "portRange").unwrap_or(""),
                &format!(
                    "Forwarding rule's port range is conflicting with forwarding rule '{}'.",
                    k.path(ctx.project())
                ),
            ));
        }
    }
    Ok(())
}

fn check_patch(ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    let Some(old) = ctx.old else { return Ok(()) };
    let skip = |f: &str| PATCHABLE.contains(&f) || super::OUTPUT_ONLY.contains(&f) || f == "labels" || f == "name";
    let mut fields: Vec<&String> = v.as_object().map(|m| m.keys().collect()).unwrap_or_default();
    if let Some(m) = old.as_object() {
        fields.extend(m.keys());
    }
    for f in fields {
        if skip(f) {
            continue;
        }
        if v.get(f) != old.get(f) {
            return Err(ApiError::invalid_field(
                &format!("resource.{f}"),
                &v.get(f).map(|x| x.to_string()).unwrap_or_default(),
                "Field cannot be patched.",
            ));
        }
    }
    Ok(())
}

/// `setTarget`: point the rule at another target pool or proxy.
pub fn set_target(st: &mut State, key: &Key, body: Option<Value>) -> ApiResult<Prepared> {
    let old = st.resources.get(key).cloned().ok_or_else(|| ApiError::not_found(&key.path(&st.project)))?;
    let target =
        body.as_ref().and_then(|b| str_field(b, "target")).ok_or_else(|| ApiError::required("target"))?.to_string();
    if old.get("backendService").is_some() {
        return Err(ApiError::invalid_field(
            "target",
            &target,
            "A forwarding rule with a backend service cannot be given a target.",
        ));
    }
    let mut v = old;
    v["target"] = json!(target);
    super::replace_with(st, key, v, "setTarget", true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_overlap() {
        assert_eq!(parse_range("80"), Some((80, 80)));
        assert_eq!(parse_range("80-90"), Some((80, 90)));
        assert_eq!(parse_range("90-80"), None);
        assert_eq!(parse_range("0"), None);
        assert_eq!(parse_range("x"), None);
        let a = port_ranges(&json!({"portRange": "80-80"}));
        let b = port_ranges(&json!({"ports": ["443", "80"]}));
        let c = port_ranges(&json!({"ports": ["443"]}));
        assert!(overlap(&a, &b));
        assert!(!overlap(&a, &c));
        assert!(overlap(&port_ranges(&json!({})), &c));
    }
}
