//! Firewall rules: defaults (`direction: INGRESS`, `priority: 1000`, `network: global/networks/default`,
//! `disabled: false`, `logConfig.enable: false`) and shape checks (exactly one of `allowed`/`denied`,
//! protocols, port specs, CIDRs). Firewalls carry no fingerprint: `PUT` and `PATCH` are last-writer-wins.

use super::{Ctx, default, int_in, one_of, str_field};
use crate::errors::{ApiError, ApiResult};
use crate::links;
use serde_json::{Value, json};

pub fn check(ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    default(v, "direction", json!("INGRESS"));
    default(v, "priority", json!(1000));
    default(v, "disabled", json!(false));
    default(v, "logConfig", json!({"enable": false}));
    default(v, "network", json!(links::network_link(ctx.project(), "default")));
    super::normalize_networks(ctx, v);
    one_of(v, "direction", &["INGRESS", "EGRESS"])?;
    int_in(v, "priority", 0, 65535)?;
    let nonempty = |f: &str| v.get(f).and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    match (nonempty("allowed"), nonempty("denied")) {
        (true, true) => {
            return Err(ApiError::invalid(
                "Invalid value for field 'resource': only one of 'allowed' and 'denied' may be set.",
            ));
        }
        (false, false) => return Err(ApiError::required("resource.allowed")),
        _ => {}
    }
    for field in ["allowed", "denied"] {
        for (i, rule) in v.get(field).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let proto = str_field(rule, "IPProtocol")
                .ok_or_else(|| ApiError::required(&format!("resource.{field}[{i}].IPProtocol")))?;
            let known = ["tcp", "udp", "icmp", "esp", "ah", "sctp", "ipip", "all"];
            if !known.contains(&proto.to_ascii_lowercase().as_str()) && proto.parse::<u8>().is_err() {
                return Err(ApiError::invalid_field(
                    &format!("resource.{field}[{i}].IPProtocol"),
                    proto,
                    "Must be a protocol name or number.",
                ));
            }
            for p in rule.get("ports").and_then(Value::as_array).into_iter().flatten() {
                let ok = p.as_str().is_some_and(|s| {
                    let mut parts = s.splitn(2, '-').map(|x| x.parse::<u16>().ok());
                    match (parts.next().flatten(), parts.next()) {
                        (Some(lo), None) => lo > 0,
                        (Some(lo), Some(Some(hi))) => lo > 0 && lo <= hi,
                        _ => false,
                    }
                });
                if !ok {
                    return Err(ApiError::invalid_field(
                        &format!("resource.{field}[{i}].ports"),
                        &p.to_string(),
                        "Must be a port or a port range.",
                    ));
                }
            }
        }
    }
    for field in ["sourceRanges", "destinationRanges"] {
        for r in v.get(field).and_then(Value::as_array).into_iter().flatten() {
            let ok =
                r.as_str().is_some_and(|s| s.parse::<ipnet::IpNet>().is_ok() || s.parse::<std::net::IpAddr>().is_ok());
            if !ok {
                return Err(ApiError::invalid_field(
                    &format!("resource.{field}"),
                    &r.to_string(),
                    "Must be a CIDR range.",
                ));
            }
        }
    }
    Ok(())
}
