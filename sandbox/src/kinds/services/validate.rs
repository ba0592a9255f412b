//! Static validation of a Service (`ValidateService` / `ValidateServiceUpdate`): everything
//! that can be decided from the object alone, without the allocator's state.

use super::spec::{is_external, needs_cluster_ip, needs_hcnp, ports, str_at, svc_type};
use crate::names::{is_dns1035_label, is_dns1123_label};
use crate::status::{FieldError, q};
use serde_json::Value;
use std::collections::HashSet;
use std::net::IpAddr;

pub const SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// Go's `net.ParseCIDR`, IPv4 or IPv6.
fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else { return false };
    let Ok(ip) = ip.parse::<IpAddr>() else { return false };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !bits.is_empty() && bits.chars().all(|c| c.is_ascii_digit()) && bits.parse::<u32>().is_ok_and(|b| b <= max)
}

/// Static validation of a Service (no allocator state).
pub(super) fn validate(svc: &Value, old: Option<&Value>, np_range: (u16, u16)) -> Vec<FieldError> {
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
