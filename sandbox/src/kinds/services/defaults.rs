//! What the apiserver does to a Service before validating it: defaulting (`SetDefaults_Service`)
//! and, on update, carrying over allocated values the client omitted and dropping fields that
//! only made sense for the old type. Kept apart from validation because the order matters:
//! a PUT without `nodePort`s must validate (and keep its ports) like the stored object.

use super::spec::{
    hcnp, is_external, needs_cluster_ip, needs_hcnp, needs_node_ports, node_ports_of, ports, spec_mut, str_at, svc_type,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// Defaulting (`SetDefaults_Service` and friends).
pub(super) fn default(svc: &mut Value) {
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
pub(super) fn patch_allocated(old: &Value, new: &mut Value) {
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
pub(super) fn drop_type_dependent(old: &Value, new: &mut Value) {
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
