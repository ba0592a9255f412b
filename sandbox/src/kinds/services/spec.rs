//! Reading (and making room in) a Service's spec: the accessors every other Service module
//! shares, so "which type is it, does it need node ports" is answered in one place.

use serde_json::{Value, json};
use std::net::Ipv4Addr;

pub(super) fn svc_key(svc: &Value) -> String {
    format!("{}/{}", str_at(svc, "/metadata/namespace"), str_at(svc, "/metadata/name"))
}

pub(super) fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

pub(super) fn svc_type(svc: &Value) -> &str {
    match str_at(svc, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    }
}

pub(super) fn cluster_ip_u32(svc: &Value) -> Option<u32> {
    str_at(svc, "/spec/clusterIP").parse::<Ipv4Addr>().ok().map(u32::from)
}

pub(super) fn node_ports_of(svc: &Value) -> Vec<u16> {
    ports(svc)
        .iter()
        .filter_map(|p| p.get("nodePort").and_then(Value::as_u64))
        .filter(|p| *p > 0)
        .map(|p| p as u16)
        .collect()
}

pub(super) fn hcnp(svc: &Value) -> Option<u16> {
    svc.pointer("/spec/healthCheckNodePort").and_then(Value::as_u64).filter(|p| *p > 0).map(|p| p as u16)
}

pub(super) fn ports(svc: &Value) -> &[Value] {
    svc.pointer("/spec/ports").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

pub(super) fn needs_cluster_ip(svc: &Value) -> bool {
    svc_type(svc) != "ExternalName"
}

pub(super) fn needs_node_ports(svc: &Value) -> bool {
    match svc_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false),
        _ => false,
    }
}

pub(super) fn needs_hcnp(svc: &Value) -> bool {
    svc_type(svc) == "LoadBalancer" && str_at(svc, "/spec/externalTrafficPolicy") == "Local"
}

pub(super) fn is_external(svc: &Value) -> bool {
    matches!(svc_type(svc), "NodePort" | "LoadBalancer")
}

pub(super) fn spec_mut(svc: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !svc.get("spec").is_some_and(Value::is_object) {
        svc["spec"] = json!({});
    }
    match svc.get_mut("spec") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("spec was just made an object"),
    }
}
