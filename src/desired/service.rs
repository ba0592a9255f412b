//! The L4 desired state: a PURE function from a Service, the eligible Nodes and the
//! configuration to a [`LoadBalancerSpec`] (or the list of everything wrong with the Service).
//!
//! ```text
//!  Service ──┐
//!  Nodes ────┼──▶ build() ──▶ LoadBalancerSpec ──▶ Capabilities::check ──▶ provider
//!  Config ───┘        └──────▶ Invalid { problems }  (event + condition, no cloud call)
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudlb_provider::{
    Capabilities, HealthCheck, HealthCheckProtocol, HealthTarget, IpFamily, Listener, LoadBalancerSpec, Protocol,
    Provider, Scheme, SessionAffinity, Target,
};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;

use super::annotations::*;
use super::nodes::{EligibleNode, NodeSnapshot};
use super::{DesiredConfig, Invalid, all_addresses, health_numbers, provider_options};
use crate::keys::*;

/// kube-proxy's health endpoint, checked when the traffic policy is Cluster.
pub const KUBE_PROXY_HEALTH_PORT: u16 = 10256;
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// Builds the spec, collecting every problem instead of stopping at the first.
pub fn build(svc: &Service, nodes: &NodeSnapshot, cfg: &DesiredConfig) -> Result<LoadBalancerSpec, Invalid> {
    let mut problems = Vec::new();
    let empty = BTreeMap::new();
    let ann = svc.metadata.annotations.as_ref().unwrap_or(&empty);
    let Some(spec) = svc.spec.as_ref() else {
        return Err(Invalid { problems: vec!["the Service has no spec".into()] });
    };

    // Listeners.
    let mut listeners = Vec::new();
    for p in spec.ports.iter().flatten() {
        let proto = match p.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => {
                problems.push(format!("port {}: unknown protocol {other:?}", p.port));
                continue;
            }
        };
        let Ok(port) = u16::try_from(p.port) else {
            problems.push(format!("port {} is out of range 1-65535", p.port));
            continue;
        };
        let node_port = p.node_port.and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0);
        let Some(node_port) = node_port else {
            problems.push(format!(
                "port {port}/{proto} has no nodePort (is allocateLoadBalancerNodePorts false?); cloudlb sends traffic to node ports"
            ));
            continue;
        };
        listeners.push(Listener { port, protocol: proto, node_port, name: p.name.clone() });
    }
    listeners.sort();
    for w in listeners.windows(2) {
        if w[0].port == w[1].port && w[0].protocol == w[1].protocol {
            problems.push(format!("port {}/{} is listed twice", w[0].port, w[0].protocol));
        }
    }
    if listeners.is_empty() && problems.is_empty() {
        problems.push("the Service has no ports".into());
    }

    // Source ranges: spec, else annotation, else everything (per family).
    let families = ip_families(svc);
    let mut source_ranges: Vec<IpNet> = Vec::new();
    let spec_ranges: Vec<&String> = spec.load_balancer_source_ranges.iter().flatten().collect();
    if !spec_ranges.is_empty() {
        for r in spec_ranges {
            match parse_cidr("spec.loadBalancerSourceRanges", r) {
                Ok(n) => source_ranges.push(n),
                Err(e) => problems.push(e),
            }
        }
    } else if let Some(v) = ann.get(ANN_SOURCE_RANGES) {
        match parse_cidr_list(&format!("annotation {ANN_SOURCE_RANGES}"), v) {
            Ok(list) => source_ranges = list,
            Err(e) => problems.push(e),
        }
    }
    if source_ranges.is_empty() {
        source_ranges = all_addresses(&families);
    }
    source_ranges.sort();
    source_ranges.dedup();

    let requested_ip = match spec.load_balancer_ip.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(v) => match parse_ip("spec.loadBalancerIP", v) {
            Ok(ip) => Some(ip),
            Err(e) => {
                problems.push(e);
                None
            }
        },
        None => None,
    };

    let scheme = match ann.get(ANN_INTERNAL).map(|v| parse_bool(ANN_INTERNAL, v)) {
        Some(Ok(true)) => Scheme::Internal,
        Some(Ok(false)) | None => Scheme::InternetFacing,
        Some(Err(e)) => {
            problems.push(e);
            Scheme::InternetFacing
        }
    };

    let session_affinity = match spec.session_affinity.as_deref() {
        Some("ClientIP") => SessionAffinity::ClientIp {
            timeout_seconds: spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT),
        },
        _ => SessionAffinity::None,
    };

    let health_check = health_check(svc, ann, &mut problems);

    // The AWS controller's name counts when ours is absent; a malformed value of either is reported.
    let aws_labels = ann.get(ANN_TARGET_NODE_LABELS_AWS).map(|v| parse_labels(ANN_TARGET_NODE_LABELS_AWS, v));
    let labels = match ann.get(ANN_TARGET_NODE_LABELS).map(|v| parse_labels(ANN_TARGET_NODE_LABELS, v)) {
        Some(ours) => {
            if let Some(Err(e)) = aws_labels {
                problems.push(e);
            }
            Some(ours)
        }
        None => aws_labels,
    };
    let targets = match labels {
        Some(Ok(want)) => select(&nodes.nodes, |n| want.iter().all(|(k, v)| n.labels.get(k) == Some(v))),
        Some(Err(e)) => {
            problems.push(e);
            Arc::default()
        }
        None => nodes.all_targets.clone(),
    };

    let options = provider_options(ann, cfg);

    if !problems.is_empty() {
        return Err(Invalid { problems });
    }
    Ok(LoadBalancerSpec {
        listeners,
        targets,
        health_check,
        source_ranges,
        requested_ip,
        scheme,
        session_affinity,
        ip_families: families,
        options,
    })
}

/// `build` followed by the provider's capability check and its own validation of options.
pub fn build_for(
    svc: &Service,
    nodes: &NodeSnapshot,
    cfg: &DesiredConfig,
    caps: &Capabilities,
    provider: &dyn Provider,
) -> Result<LoadBalancerSpec, Invalid> {
    let mut spec = build(svc, nodes, cfg)?;
    prefer_supported_families(svc, &mut spec, caps);
    let mut problems = caps.check(&spec);
    problems.extend(provider.validate(&spec));
    if problems.is_empty() { Ok(spec) } else { Err(Invalid { problems }) }
}

/// `ipFamilyPolicy: PreferDualStack` asks for both families where possible: on a provider that
/// does one, the Service gets that one (as kube-proxy and the apiserver treat a single-stack
/// cluster), and the default source ranges follow. `RequireDualStack` and single-stack
/// Services are checked as written.
fn prefer_supported_families(svc: &Service, spec: &mut LoadBalancerSpec, caps: &Capabilities) {
    let policy = svc.spec.as_ref().and_then(|s| s.ip_family_policy.as_deref());
    if policy != Some("PreferDualStack") || spec.ip_families.iter().all(|f| caps.ip_families.contains(f)) {
        return;
    }
    let supported: Vec<IpFamily> = spec.ip_families.iter().copied().filter(|f| caps.ip_families.contains(f)).collect();
    if supported.is_empty() {
        return;
    }
    if spec.source_ranges == all_addresses(&spec.ip_families) {
        spec.source_ranges = all_addresses(&supported);
    }
    spec.ip_families = supported;
}

fn select(nodes: &[EligibleNode], keep: impl Fn(&EligibleNode) -> bool) -> Arc<Vec<Target>> {
    Arc::new(nodes.iter().filter(|n| keep(n)).map(|n| n.target.clone()).collect())
}

fn ip_families(svc: &Service) -> Vec<IpFamily> {
    let mut out: Vec<IpFamily> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(IpFamily::IPv4),
            "IPv6" => Some(IpFamily::IPv6),
            _ => None,
        })
        .collect();
    if out.is_empty() {
        out.push(IpFamily::IPv4);
    }
    out.sort();
    out.dedup();
    out
}

fn health_check(svc: &Service, ann: &BTreeMap<String, String>, problems: &mut Vec<String>) -> HealthCheck {
    let spec = svc.spec.as_ref();
    let local = spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
    let port = if local {
        match spec.and_then(|s| s.health_check_node_port).and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0) {
            Some(p) => p,
            None => {
                problems.push("externalTrafficPolicy is Local but spec.healthCheckNodePort is not set".into());
                KUBE_PROXY_HEALTH_PORT
            }
        }
    } else {
        KUBE_PROXY_HEALTH_PORT
    };
    let (interval_seconds, timeout_seconds, healthy_threshold, unhealthy_threshold) = health_numbers(ann, problems);
    HealthCheck {
        target: if local { HealthTarget::ServiceHealthCheckNodePort } else { HealthTarget::KubeProxy },
        protocol: HealthCheckProtocol::Http,
        port: Some(port),
        path: Some("/healthz".into()),
        interval_seconds,
        timeout_seconds,
        healthy_threshold,
        unhealthy_threshold,
    }
}

#[cfg(test)]
mod tests;
