//! Server-side printing: `meta.k8s.io/v1 Table` responses, which is what `kubectl get` asks
//! for. Columns and cell formats follow the apiserver's printers (`pkg/printers/internalversion`)
//! with `Wide: true` (the server always prints every column; kubectl hides priority-1 ones).

use crate::resources::ResourceDef;
use crate::time;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn col(name: &str, ty: &str, format: &str, priority: u8, desc: &str) -> Value {
    json!({ "name": name, "type": ty, "format": format, "description": desc, "priority": priority })
}

fn age(obj: &Value) -> String {
    time::age(obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str))
}

fn columns(def: &ResourceDef) -> Vec<Value> {
    let name = col("Name", "string", "name", 0, "Name must be unique within a namespace.");
    let age = col(
        "Age",
        "string",
        "",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    match (def.group, def.plural) {
        ("", "services") => vec![
            name,
            col("Type", "string", "", 0, "The type of the service."),
            col("Cluster-IP", "string", "", 0, "The IP address of the service."),
            col("External-IP", "string", "", 0, "The external IP address of the service."),
            col("Port(s)", "string", "", 0, "The ports of the service."),
            age,
            col("Selector", "string", "", 1, "The selector of the service."),
        ],
        ("", "nodes") => vec![
            name,
            col("Status", "string", "", 0, "The status of the node"),
            col("Roles", "string", "", 0, "The roles of the node"),
            age,
            col("Version", "string", "", 0, "Kubelet Version reported by the node."),
            col("Internal-IP", "string", "", 1, "List of internal IPs for the node"),
            col("External-IP", "string", "", 1, "List of external IPs for the node"),
            col("OS-Image", "string", "", 1, "OS image reported by the node."),
            col("Kernel-Version", "string", "", 1, "Kernel version reported by the node."),
            col("Container-Runtime", "string", "", 1, "Container runtime reported by the node."),
        ],
        (_, "events") => vec![
            col("Last Seen", "string", "", 0, "Time when last event occurred"),
            col("Type", "string", "", 0, "Type of this event."),
            col("Reason", "string", "", 0, "Reason is why the action was taken."),
            col("Object", "string", "", 0, "The object that this event is about."),
            col("Subobject", "string", "", 1, "The subobject that this event is about."),
            col("Source", "string", "", 1, "The component reporting this event."),
            col("Message", "string", "", 0, "A human-readable description of the status of this operation."),
            col("First Seen", "string", "", 1, "The time at which the event was first recorded."),
            col("Count", "string", "", 1, "The number of times this event has occurred."),
            col("Name", "string", "name", 1, "Name must be unique within a namespace."),
        ],
        ("", "namespaces") => vec![name, col("Status", "string", "", 0, "The status of the namespace"), age],
        ("coordination.k8s.io", "leases") => {
            vec![name, col("Holder", "string", "", 0, "The holder of the lease."), age]
        }
        ("networking.k8s.io", "ingresses") => vec![
            name,
            col(
                "Class",
                "string",
                "",
                0,
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
            col("Hosts", "string", "", 0, "Hosts that incoming requests are matched against before the ingress rule"),
            col("Address", "string", "", 0, "Address is a list containing ingress points for the load-balancer"),
            col("Ports", "string", "", 0, "Ports of TLS configurations that open"),
            age,
        ],
        ("networking.k8s.io", "ingressclasses") => vec![
            name,
            col("Controller", "string", "", 0, "Controller that is responsible for handling this class"),
            col("Parameters", "string", "", 0, "A reference to a resource with additional parameters"),
            age,
        ],
        ("", "secrets") => vec![
            name,
            col("Type", "string", "", 0, "Used to facilitate programmatic handling of secret data."),
            col("Data", "string", "", 0, "Data contains the secret data."),
            age,
        ],
        _ => vec![name, age],
    }
}

/// kubectl's HOSTS for an Ingress (`formatHosts`): the first three rule hosts, `*` when no rule
/// names one.
pub fn ingress_hosts(ing: &Value) -> String {
    const MAX: usize = 3;
    let rules = ing.pointer("/spec/rules").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut list: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        if list.len() == MAX {
            more = true;
        }
        let host = s(rule, "/host");
        if !more && !host.is_empty() {
            list.push(host);
        }
    }
    if list.is_empty() {
        return "*".into();
    }
    let joined = list.join(",");
    if more { format!("{joined} + {} more...", rules.len() - MAX) } else { joined }
}

/// kubectl's ADDRESS for an Ingress (`ingressLoadBalancerStatusStringer`, wide): the distinct
/// IPs (else hostnames) of the ingress points, sorted; empty while there are none.
pub fn ingress_address(ing: &Value) -> String {
    let mut set = BTreeSet::new();
    for i in ing.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).into_iter().flatten() {
        let (ip, host) = (s(i, "/ip"), s(i, "/hostname"));
        if !ip.is_empty() {
            set.insert(ip);
        } else if !host.is_empty() {
            set.insert(host);
        }
    }
    set.into_iter().collect::<Vec<_>>().join(",")
}

/// kubectl's PORTS for an Ingress (`formatPorts`): `80`, plus `443` when any TLS is configured.
pub fn ingress_ports(ing: &Value) -> &'static str {
    let tls = ing.pointer("/spec/tls").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
    if tls { "80, 443" } else { "80" }
}

/// kubectl's PARAMETERS for an IngressClass: `Kind[.apiGroup]/name` or `<none>`.
fn ingress_class_parameters(class: &Value) -> String {
    match class.pointer("/spec/parameters").filter(|p| !p.is_null()) {
        None => "<none>".into(),
        Some(p) => {
            let group = s(p, "/apiGroup");
            let kind = if group.is_empty() { s(p, "/kind").to_string() } else { format!("{}.{group}", s(p, "/kind")) };
            format!("{kind}/{}", s(p, "/name"))
        }
    }
}

/// kubectl's EXTERNAL-IP for a Service (`getServiceExternalIP`, wide).
pub fn service_external_ip(svc: &Value) -> String {
    let external_ips: Vec<&str> = svc
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match s(svc, "/spec/type") {
        "" | "ClusterIP" | "NodePort" => {
            if external_ips.is_empty() {
                "<none>".into()
            } else {
                external_ips.join(",")
            }
        }
        "LoadBalancer" => {
            let mut set = BTreeSet::new();
            for i in svc.pointer("/status/loadBalancer/ingress").and_then(Value::as_array).into_iter().flatten() {
                let (ip, host) = (s(i, "/ip"), s(i, "/hostname"));
                if !ip.is_empty() {
                    set.insert(ip.to_string());
                } else if !host.is_empty() {
                    set.insert(host.to_string());
                }
            }
            let mut all: Vec<String> = set.into_iter().collect();
            all.extend(external_ips.iter().map(|x| x.to_string()));
            if all.is_empty() { "<pending>".into() } else { all.join(",") }
        }
        "ExternalName" => s(svc, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

pub fn service_ports(svc: &Value) -> String {
    let ports = svc.pointer("/spec/ports").and_then(Value::as_array);
    let pieces: Vec<String> = ports
        .into_iter()
        .flatten()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = s(p, "/protocol");
            match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    if pieces.is_empty() { "<none>".into() } else { pieces.join(",") }
}

fn labels_string(m: Option<&Value>) -> String {
    let Some(Value::Object(m)) = m else { return "<none>".into() };
    if m.is_empty() {
        return "<none>".into();
    }
    let mut kv: Vec<String> = m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
    kv.sort();
    kv.join(",")
}

fn node_status(node: &Value) -> String {
    let mut st = Vec::new();
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().rev().find(|c| s(c, "/type") == "Ready"));
    match ready {
        Some(c) if s(c, "/status") == "True" => st.push("Ready".to_string()),
        Some(_) => st.push("NotReady".to_string()),
        None => st.push("Unknown".to_string()),
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        st.push("SchedulingDisabled".into());
    }
    st.join(",")
}

fn node_roles(node: &Value) -> String {
    let mut roles = BTreeSet::new();
    if let Some(Value::Object(l)) = node.pointer("/metadata/labels") {
        for (k, v) in l {
            if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                if !r.is_empty() {
                    roles.insert(r.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str().filter(|v| !v.is_empty())
            {
                roles.insert(v.to_string());
            }
        }
    }
    if roles.is_empty() { "<none>".into() } else { roles.into_iter().collect::<Vec<_>>().join(",") }
}

fn node_addresses(node: &Value, ty: &str) -> String {
    let v: Vec<&str> = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|a| s(a, "/type") == ty)
        .map(|a| s(a, "/address"))
        .collect();
    if v.is_empty() { "<none>".into() } else { v.join(",") }
}

fn ts_age(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(|t| time::age(Some(t)))
}

fn event_cells(ev: &Value) -> Vec<Value> {
    // `ev` is core/v1 or events.k8s.io/v1: read both spellings
    let pick = |a: &str, b: &str| ev.get(a).filter(|v| !v.is_null()).or_else(|| ev.get(b).filter(|v| !v.is_null()));
    let first = ts_age(pick("firstTimestamp", "deprecatedFirstTimestamp"))
        .or_else(|| ts_age(ev.get("eventTime")))
        .unwrap_or_else(|| "<unknown>".into());
    let mut last = ts_age(pick("lastTimestamp", "deprecatedLastTimestamp")).unwrap_or_else(|| first.clone());
    let mut count = pick("count", "deprecatedCount").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = ev.get("series").filter(|v| !v.is_null()) {
        last = ts_age(series.get("lastObservedTime")).unwrap_or(last);
        count = series.get("count").and_then(Value::as_i64).unwrap_or(count);
    } else if count == 0 {
        count = 1;
    }
    let obj = pick("involvedObject", "regarding").cloned().unwrap_or_else(|| json!({}));
    let kind = s(&obj, "/kind").to_lowercase();
    let target = if s(&obj, "/name").is_empty() { kind } else { format!("{kind}/{}", s(&obj, "/name")) };
    let component = pick("source", "deprecatedSource").map(|src| s(src, "/component").to_string()).unwrap_or_default();
    let host = pick("source", "deprecatedSource").map(|src| s(src, "/host").to_string()).unwrap_or_default();
    let component = if component.is_empty() {
        pick("reportingComponent", "reportingController").and_then(Value::as_str).unwrap_or_default().to_string()
    } else {
        component
    };
    let host = if host.is_empty() { s(ev, "/reportingInstance").to_string() } else { host };
    let source = if host.is_empty() { component } else { format!("{component}, {host}") };
    let message = pick("message", "note").and_then(Value::as_str).unwrap_or_default().trim().to_string();
    vec![
        json!(last),
        json!(s(ev, "/type")),
        json!(s(ev, "/reason")),
        json!(target),
        json!(s(&obj, "/fieldPath")),
        json!(source),
        json!(message),
        json!(first),
        json!(count),
        json!(s(ev, "/metadata/name")),
    ]
}

fn cells(def: &ResourceDef, obj: &Value) -> Vec<Value> {
    let name = json!(s(obj, "/metadata/name"));
    match (def.group, def.plural) {
        ("", "services") => {
            let ty = match s(obj, "/spec/type") {
                "" => "ClusterIP",
                t => t,
            };
            let cip = match s(obj, "/spec/clusterIP") {
                "" => "<none>",
                c => c,
            };
            vec![
                name,
                json!(ty),
                json!(cip),
                json!(service_external_ip(obj)),
                json!(service_ports(obj)),
                json!(age(obj)),
                json!(labels_string(obj.pointer("/spec/selector"))),
            ]
        }
        ("", "nodes") => vec![
            name,
            json!(node_status(obj)),
            json!(node_roles(obj)),
            json!(age(obj)),
            json!(s(obj, "/status/nodeInfo/kubeletVersion")),
            json!(node_addresses(obj, "InternalIP")),
            json!(node_addresses(obj, "ExternalIP")),
            json!(match s(obj, "/status/nodeInfo/osImage") {
                "" => "<unknown>",
                o => o,
            }),
            json!(match s(obj, "/status/nodeInfo/kernelVersion") {
                "" => "<unknown>",
                o => o,
            }),
            json!(match s(obj, "/status/nodeInfo/containerRuntimeVersion") {
                "" => "<unknown>",
                o => o,
            }),
        ],
        (_, "events") => event_cells(obj),
        ("", "namespaces") => vec![name, json!(s(obj, "/status/phase")), json!(age(obj))],
        ("coordination.k8s.io", "leases") => vec![name, json!(s(obj, "/spec/holderIdentity")), json!(age(obj))],
        ("networking.k8s.io", "ingresses") => vec![
            name,
            json!(obj.pointer("/spec/ingressClassName").and_then(Value::as_str).unwrap_or("<none>")),
            json!(ingress_hosts(obj)),
            json!(ingress_address(obj)),
            json!(ingress_ports(obj)),
            json!(age(obj)),
        ],
        ("networking.k8s.io", "ingressclasses") => {
            vec![name, json!(s(obj, "/spec/controller")), json!(ingress_class_parameters(obj)), json!(age(obj))]
        }
        ("", "secrets") => vec![
            name,
            json!(s(obj, "/type")),
            json!(obj.get("data").and_then(Value::as_object).map_or(0, |d| d.len())),
            json!(age(obj)),
        ],
        _ => vec![name, json!(age(obj))],
    }
}

/// A Table for `items` (already in served shape).
pub fn table_for(
    def: &ResourceDef,
    items: &[Arc<Value>],
    include: IncludeObject,
    with_columns: bool,
    rv: Option<u64>,
    continue_token: Option<&str>,
) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row = json!({ "cells": cells(def, o) });
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => row["object"] = partial_metadata(o),
                IncludeObject::Object => row["object"] = (**o).clone(),
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv.to_string());
    }
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    let mut t = json!({ "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "rows": rows });
    if with_columns {
        t["columnDefinitions"] = Value::Array(columns(def));
    } else {
        t["columnDefinitions"] = Value::Null;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_ip_and_ports() {
        let mut svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 31234, "protocol": "TCP"}, {"port": 443, "protocol": "TCP", "nodePort": 30001}]}});
        assert_eq!(service_external_ip(&svc), "<pending>");
        assert_eq!(service_ports(&svc), "80:31234/TCP,443:30001/TCP");
        svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}, {"hostname": "lb.example.com"}, {"ip": "1.2.3.4"}]}});
        assert_eq!(service_external_ip(&svc), "1.2.3.4,5.6.7.8,lb.example.com");
        assert_eq!(service_external_ip(&json!({"spec": {"type": "ClusterIP"}})), "<none>");
    }

    #[test]
    fn ingress_cells() {
        let mut ing = json!({"spec": {"rules": [{"http": {}}]}});
        assert_eq!(
            (ingress_hosts(&ing), ingress_address(&ing), ingress_ports(&ing)),
            ("*".into(), String::new(), "80")
        );
        ing["spec"]["rules"] = json!([{"host": "a.example.com"}, {}, {"host": "b.example.com"}]);
        ing["spec"]["tls"] = json!([{"secretName": "t"}]);
        ing["status"] = json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.2"}, {"hostname": "lb.example.com"}, {"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}]}});
        assert_eq!(ingress_hosts(&ing), "a.example.com,b.example.com");
        assert_eq!(ingress_address(&ing), "10.0.0.1,10.0.0.2,lb.example.com");
        assert_eq!(ingress_ports(&ing), "80, 443");
        ing["spec"]["rules"] = json!([{"host": "a"}, {"host": "b"}, {"host": "c"}, {"host": "d"}, {"host": "e"}]);
        assert_eq!(ingress_hosts(&ing), "a,b,c + 2 more...");
        let class = json!({"spec": {"controller": "x.io/c", "parameters": {"apiGroup": "k8s.example.net", "kind": "IngressParameters", "name": "p"}}});
        assert_eq!(ingress_class_parameters(&class), "IngressParameters.k8s.example.net/p");
        assert_eq!(ingress_class_parameters(&json!({"spec": {}})), "<none>");
    }
}
