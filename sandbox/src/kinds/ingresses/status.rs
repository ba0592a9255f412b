//! `ValidateIngressStatusUpdate`: each `status.loadBalancer.ingress` point has an IP that parses
//! or a hostname that is a DNS-1123 subdomain and not an IP. Ports are also checked (port in
//! 1-65535, protocol TCP/UDP/SCTP), which the apiserver does not do: a controller writing
//! such ports has a bug the sandbox should surface (listed in the crate's known differences).
//! Unlike a Service's status, an Ingress point has no `ipMode`: nothing is defaulted.

use crate::names;
use crate::status::{FieldError, q};
use serde_json::Value;

pub(super) fn validate(ing: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let points = ing.pointer("/status/loadBalancer/ingress").and_then(Value::as_array);
    for (i, point) in points.into_iter().flatten().enumerate() {
        let f = format!("status.loadBalancer.ingress[{i}]");
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
                errs.push(FieldError::invalid(
                    format!("{f}.hostname"),
                    q(host),
                    "must be a DNS name, not an IP address",
                ));
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
                errs.push(FieldError::not_supported(
                    format!("{f}.ports[{j}].protocol"),
                    q(proto),
                    &["SCTP", "TCP", "UDP"],
                ));
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn points() {
        let st = |p: Value| validate(&json!({"status": {"loadBalancer": {"ingress": [p]}}}));
        assert!(st(json!({"ip": "203.0.113.7", "ports": [{"port": 443, "protocol": "TCP"}]})).is_empty());
        assert!(st(json!({"hostname": "lb.example.com"})).is_empty());
        assert_eq!(st(json!({"ip": "nope"}))[0].field, "status.loadBalancer.ingress[0].ip");
        assert_eq!(
            st(json!({"hostname": "1.2.3.4"}))[0].to_string(),
            "status.loadBalancer.ingress[0].hostname: Invalid value: \"1.2.3.4\": must be a DNS name, not an IP address"
        );
        assert_eq!(st(json!({"hostname": "Bad_Host"})).len(), 1);
        let e = st(json!({"ip": "1.2.3.4", "ports": [{"port": 0, "protocol": "HTTP"}, {"port": 80}]}));
        let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "status.loadBalancer.ingress[0].ports[0].port",
                "status.loadBalancer.ingress[0].ports[0].protocol",
                "status.loadBalancer.ingress[0].ports[1].protocol"
            ]
        );
    }
}
