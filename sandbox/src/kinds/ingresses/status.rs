//! `ValidateIngressStatusUpdate`: each `status.loadBalancer.ingress` point has an IP that parses
//! or a hostname that is a DNS-1123 subdomain and not an IP. Ports are also checked (port in
//! 1-65535, protocol TCP/UDP/SCTP), which the apiserver does not do: a controller writing
//! such ports has a bug the sandbox should surface (listed in the crate's known differences).
//! Unlike a Service's status, an Ingress point has no `ipMode`: nothing is defaulted.

use crate::kinds::load_balancer_point;
use crate::status::FieldError;
use serde_json::Value;

pub(super) fn validate(ing: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let points = ing.pointer("/status/loadBalancer/ingress").and_then(Value::as_array);
    for (i, point) in points.into_iter().flatten().enumerate() {
        load_balancer_point::validate(point, &format!("status.loadBalancer.ingress[{i}]"), &mut errs);
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
