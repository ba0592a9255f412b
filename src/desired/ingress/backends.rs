//! Backend references into node ports: an Ingress names a Service and a port (number or name);
//! cloudlb sends the traffic to that port's `nodePort` on the nodes.
//!
//! A reference that does not resolve (no such Service, no such port, a ClusterIP Service without
//! node ports) is kept with `node_port: None` and the reason: the load balancer answers 503 for
//! it and a warning tells the user what to change, while every other path keeps working.

use std::collections::{BTreeMap, BTreeSet};

use cloudlb_provider::l7::{Backend, BackendRef, ServicePort};
use cloudlb_provider::{HealthCheck, HealthCheckProtocol, HealthTarget};
use k8s_openapi::api::core::v1::Service;

use super::Inputs;
use crate::desired::health_numbers;
use crate::keys::ingress::HEALTHCHECK_PATH;

pub(super) fn resolve(
    namespace: &str,
    refs: &BTreeSet<BackendRef>,
    ingress_annotations: &BTreeMap<String, String>,
    inputs: &Inputs<'_>,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Vec<Backend> {
    let numbers = health_numbers(ingress_annotations, problems);
    let mut out = Vec::with_capacity(refs.len());
    for id in refs {
        let service = (inputs.services)(namespace, &id.service);
        let node_port = service
            .as_deref()
            .ok_or_else(|| {
                format!(
                    "Service {namespace}/{} does not exist or is not of type NodePort or LoadBalancer \
                     (cloudlb sends traffic to node ports)",
                    id.service
                )
            })
            .and_then(|s| node_port(s, &id.port));
        // A path annotation on the Service wins over the Ingress's: the Service knows its app.
        let on_service = service.as_deref().and_then(|s| s.metadata.annotations.as_ref()?.get(HEALTHCHECK_PATH));
        let path = on_service
            .or_else(|| ingress_annotations.get(HEALTHCHECK_PATH))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty());
        if let Some(p) = &path
            && !p.starts_with('/')
        {
            let on = match on_service {
                Some(_) => format!(" on Service {namespace}/{}", id.service),
                None => String::new(),
            };
            problems.push(format!("annotation {HEALTHCHECK_PATH}{on}: {p:?} must be a path starting with /"));
        }
        let health_check = HealthCheck {
            target: HealthTarget::KubeProxy,
            protocol: if path.is_some() { HealthCheckProtocol::Http } else { HealthCheckProtocol::Tcp },
            port: None,
            path,
            interval_seconds: numbers.0,
            timeout_seconds: numbers.1,
            healthy_threshold: numbers.2,
            unhealthy_threshold: numbers.3,
        };
        let (node_port, problem) = match node_port {
            Ok(p) => (Some(p), None),
            Err(why) => {
                warnings.push(format!("backend {id}: {why}; requests routed to it get 503"));
                (None, Some(why))
            }
        };
        out.push(Backend { id: id.clone(), node_port, problem, health_check });
    }
    out
}

/// The node port of a Service port, or why there is none (in words naming what to change).
fn node_port(svc: &Service, port: &ServicePort) -> Result<u16, String> {
    let name = format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or_default(),
        svc.metadata.name.as_deref().unwrap_or_default()
    );
    let spec = svc.spec.as_ref().ok_or_else(|| format!("Service {name} has no spec"))?;
    let ports = spec.ports.as_deref().unwrap_or_default();
    let found = match port {
        ServicePort::Number(0) => return Err("the backend names no Service port".into()),
        ServicePort::Number(n) => ports.iter().find(|p| p.port == i32::from(*n)),
        ServicePort::Name(n) => ports.iter().find(|p| p.name.as_deref() == Some(n.as_str())),
    };
    let Some(found) = found else {
        let have: Vec<String> = ports
            .iter()
            .map(|p| match &p.name {
                Some(n) => format!("{} ({n})", p.port),
                None => p.port.to_string(),
            })
            .collect();
        return Err(format!(
            "Service {name} has no port {port} (it has: {})",
            if have.is_empty() { "none".into() } else { have.join(", ") }
        ));
    };
    if found.protocol.as_deref().is_some_and(|p| p != "TCP") {
        return Err(format!(
            "Service {name} port {port} is {}, HTTP needs TCP",
            found.protocol.as_deref().unwrap_or_default()
        ));
    }
    match found.node_port.and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0) {
        Some(n) => Ok(n),
        None => Err(format!(
            "Service {name} port {port} has no nodePort (type {}); make the Service type NodePort: cloudlb sends traffic to node ports",
            spec.type_.as_deref().unwrap_or("ClusterIP")
        )),
    }
}
