//! One point of `status.loadBalancer.ingress`, as Services and Ingresses both have them:
//! an IP that parses or a hostname that is a DNS-1123 subdomain and not an IP
//! (`ValidateLoadBalancerStatus` / `ValidateIngressLoadBalancerStatus`), and ports (port in
//! 1-65535, protocol TCP/UDP/SCTP). A Service's `ipMode` is checked by the Service kind.

use crate::names;
use crate::status::{FieldError, q};
use serde_json::Value;

/// Appends to `errs` what is wrong with `point`, whose field path is `f`.
pub(crate) fn validate(point: &Value, f: &str, errs: &mut Vec<FieldError>) {
    let s = |k: &str| point.get(k).and_then(Value::as_str).unwrap_or_default();
    let ip = s("ip");
    if !ip.is_empty() && !names::is_ip_sloppy(ip) {
        errs.push(FieldError::invalid(
            format!("{f}.ip"),
            q(ip),
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        ));
    }
    let host = s("hostname");
    if !host.is_empty() {
        for msg in names::dns1123_subdomain_errors(host) {
            errs.push(FieldError::invalid(format!("{f}.hostname"), q(host), msg));
        }
        if names::is_ip_sloppy(host) {
            errs.push(FieldError::invalid(format!("{f}.hostname"), q(host), "must be a DNS name, not an IP address"));
        }
    }
    let ports = point.get("ports").and_then(Value::as_array);
    for (j, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid(
                format!("{f}.ports[{j}].port"),
                port,
                "must be between 1 and 65535, inclusive",
            ));
        }
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or_default();
        if proto.is_empty() {
            errs.push(FieldError::required(format!("{f}.ports[{j}].protocol"), ""));
        } else if !matches!(proto, "TCP" | "UDP" | "SCTP") {
            errs.push(FieldError::not_supported(format!("{f}.ports[{j}].protocol"), q(proto), &["SCTP", "TCP", "UDP"]));
        }
    }
}
