//! The L7 desired state: a PURE function from an Ingress, the Services and TLS Secrets it
//! references, and the eligible Nodes to an [`L7Spec`].
//!
//! ```text
//!  Ingress ─┬─ rules ─────────▶ routes.rs   virtual hosts + routes in precedence order
//!           ├─ backends ──────▶ backends.rs Service port ─▶ node port (or why not: 503)
//!           ├─ tls ───────────▶ tls.rs      Secrets ─▶ certificates (last good one kept)
//!           └─ annotations ───▶ here        listeners, source ranges, timeouts, options
//!  Nodes ─────────────────────▶ targets (the shared list)
//! ```
//!
//! Two kinds of problems come out. **Fatal** ones ([`Invalid`]: a malformed annotation, an
//! Ingress that would serve nothing) stop the pass before any cloud call, like a bad Service.
//! **Local** ones (a path with regex characters, a duplicate path, a missing backend Service, a
//! broken Secret) only affect their part: the rule is skipped or answers 503, the rest of the
//! Ingress keeps working, and the problem comes back as a warning for an event.

mod backends;
pub mod group;
mod routes;
mod tls;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudlb_provider::l7::{Certificate, L7Listener, L7Protocol, L7Timeouts, WildcardSemantics};
use cloudlb_provider::{Capabilities, IpFamily, L7Spec, Provider, Scheme};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;

use super::annotations::{parse_bool, parse_cidr_list, parse_ip, parse_labels, parse_u32_in};
use super::nodes::NodeSnapshot;
use super::{DesiredConfig, Invalid, all_addresses, provider_options};
use crate::keys::{ANN_INTERNAL, ANN_TARGET_NODE_LABELS, ingress as ann};

/// How Ingresses are turned into load balancers, beyond the annotations.
#[derive(Clone, Debug)]
pub struct IngressConfig {
    /// Port of the plain-HTTP listener (80 unless the provider runs unprivileged).
    pub http_port: u16,
    /// Port of the HTTPS listener, when the Ingress has TLS.
    pub https_port: u16,
    pub desired: DesiredConfig,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self { http_port: 80, https_port: 443, desired: DesiredConfig::default() }
    }
}

/// What the builder reads besides the Ingress: look-ups into the controller's caches (pure
/// functions of a snapshot, so the builder stays pure).
pub struct Inputs<'a> {
    /// A Service by (namespace, name).
    pub services: &'a dyn Fn(&str, &str) -> Option<Arc<Service>>,
    /// A TLS Secret by (namespace, name).
    pub secrets: &'a dyn Fn(&str, &str) -> Option<Arc<Secret>>,
    /// The last certificate that was valid for `namespace/secret`: used while the Secret is
    /// missing or broken, so a typo never replaces a working certificate.
    pub last_good: &'a dyn Fn(&str) -> Option<Certificate>,
    pub nodes: &'a NodeSnapshot,
    pub config: &'a IngressConfig,
}

/// The spec, the problems that only affect a part of it, and the certificates that are valid
/// now (for the controller's last-good cache).
#[derive(Debug)]
pub struct Built {
    pub spec: L7Spec,
    pub warnings: Vec<String>,
    pub valid_certificates: Vec<Certificate>,
}

/// Builds the spec, collecting every problem instead of stopping at the first.
pub fn build(ing: &Ingress, inputs: &Inputs<'_>) -> Result<Built, Invalid> {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let empty = BTreeMap::new();
    let annotations = ing.metadata.annotations.as_ref().unwrap_or(&empty);
    let namespace = ing.metadata.namespace.as_deref().unwrap_or("default");
    let Some(spec) = ing.spec.as_ref() else {
        return Err(Invalid { problems: vec!["the Ingress has no spec".into()] });
    };

    let (virtual_hosts, default_action, refs) = routes::build(ing, spec, &mut warnings);
    let backends = backends::resolve(namespace, &refs, annotations, inputs, &mut problems, &mut warnings);
    let tls = tls::certificates(namespace, spec, inputs, &mut warnings);

    let flag = |key: &str, default: bool, problems: &mut Vec<String>| match annotations.get(key) {
        Some(v) => parse_bool(key, v).unwrap_or_else(|e| {
            problems.push(e);
            default
        }),
        None => default,
    };
    // GKE's name counts when ours is absent; a malformed value of either is reported.
    let gke_allow_http =
        annotations.contains_key(ann::ALLOW_HTTP_GCE).then(|| flag(ann::ALLOW_HTTP_GCE, true, &mut problems));
    let allow_http = match annotations.contains_key(ann::ALLOW_HTTP) {
        true => flag(ann::ALLOW_HTTP, true, &mut problems),
        false => gke_allow_http.unwrap_or(true),
    };
    let ssl_redirect = flag(ann::SSL_REDIRECT, false, &mut problems);
    let internal = flag(ANN_INTERNAL, false, &mut problems);
    let https = !tls.serving.is_empty();
    let mut listeners = Vec::new();
    if allow_http {
        let redirect = match (ssl_redirect, https) {
            (true, true) => Some(inputs.config.https_port),
            (true, false) => {
                warnings.push(format!(
                    "annotation {}: there is no usable TLS certificate, so plain HTTP is served instead of redirected",
                    ann::SSL_REDIRECT
                ));
                None
            }
            (false, _) => None,
        };
        listeners.push(L7Listener {
            port: inputs.config.http_port,
            protocol: L7Protocol::Http,
            redirect_to_https: redirect,
        });
    }
    if https {
        listeners.push(L7Listener {
            port: inputs.config.https_port,
            protocol: L7Protocol::Https,
            redirect_to_https: None,
        });
    }
    if listeners.is_empty() {
        problems.push(format!(
            "annotation {} is \"false\" and there is no usable TLS certificate: the Ingress would serve nothing",
            if annotations.contains_key(ann::ALLOW_HTTP) { ann::ALLOW_HTTP } else { ann::ALLOW_HTTP_GCE }
        ));
    }
    listeners.sort();
    listeners.dedup_by_key(|l| l.port);

    let source_ranges = match annotations.get(ann::SOURCE_RANGES) {
        Some(v) => match parse_cidr_list(&format!("annotation {}", ann::SOURCE_RANGES), v) {
            Ok(list) if !list.is_empty() => list,
            Ok(_) => all_addresses(&[IpFamily::IPv4, IpFamily::IPv6]),
            Err(e) => {
                problems.push(e);
                Vec::new()
            }
        },
        None => all_addresses(&[IpFamily::IPv4, IpFamily::IPv6]),
    };
    let mut source_ranges = source_ranges;
    source_ranges.sort();
    source_ranges.dedup();

    let requested_ip = match annotations.get(ann::LOAD_BALANCER_IP).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        Some(v) => parse_ip(&format!("annotation {}", ann::LOAD_BALANCER_IP), v).map_err(|e| problems.push(e)).ok(),
        None => None,
    };

    let mut seconds = |key: &str, default: u32| match annotations.get(key) {
        Some(v) => parse_u32_in(key, v, 1, 3600).unwrap_or_else(|e| {
            problems.push(e);
            default
        }),
        None => default,
    };
    let defaults = L7Timeouts::default();
    let timeouts = L7Timeouts {
        connect_seconds: seconds(ann::CONNECT_TIMEOUT, defaults.connect_seconds),
        request_seconds: seconds(ann::REQUEST_TIMEOUT, defaults.request_seconds),
        idle_seconds: seconds(ann::IDLE_TIMEOUT, defaults.idle_seconds),
    };

    let targets = match annotations.get(ANN_TARGET_NODE_LABELS).map(|v| parse_labels(ANN_TARGET_NODE_LABELS, v)) {
        Some(Ok(want)) => Arc::new(
            inputs
                .nodes
                .nodes
                .iter()
                .filter(|n| want.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
                .map(|n| n.target.clone())
                .collect(),
        ),
        Some(Err(e)) => {
            problems.push(e);
            Arc::default()
        }
        None => inputs.nodes.all_targets.clone(),
    };

    if !problems.is_empty() {
        return Err(Invalid { problems });
    }
    let mut spec = L7Spec {
        listeners,
        wildcards: WildcardSemantics::SingleLabel,
        virtual_hosts,
        default_action,
        backends,
        certificates: tls.serving,
        targets,
        source_ranges,
        requested_ip,
        scheme: if internal { Scheme::Internal } else { Scheme::InternetFacing },
        timeouts,
        options: provider_options(annotations, &inputs.config.desired),
    };
    spec.sort_virtual_hosts();
    Ok(Built { spec, warnings, valid_certificates: tls.valid })
}

/// `build` followed by the provider's L7 capability check and its own validation.
pub fn build_for(
    ing: &Ingress,
    inputs: &Inputs<'_>,
    caps: &Capabilities,
    provider: &dyn Provider,
) -> Result<Built, Invalid> {
    let Some(l7) = &caps.l7 else {
        return Err(Invalid {
            problems: vec![format!(
                "the {} provider does not build HTTP load balancers for Ingresses (use --provider local or memory)",
                provider.name()
            )],
        });
    };
    let built = build(ing, inputs)?;
    let mut problems = l7.check(&built.spec);
    problems.extend(provider.validate_l7(&built.spec));
    if problems.is_empty() { Ok(built) } else { Err(Invalid { problems }) }
}

/// The Services an Ingress routes to, as (namespace, name): a change of one re-syncs it.
pub fn referenced_services(ing: &Ingress) -> Vec<(String, String)> {
    let namespace = ing.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<(String, String)> =
        routes::service_backends(ing).map(|b| (namespace.clone(), b.name.clone())).collect();
    out.sort();
    out.dedup();
    out
}

/// The TLS Secrets an Ingress uses, as (namespace, name).
pub fn referenced_secrets(ing: &Ingress) -> Vec<(String, String)> {
    let namespace = ing.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<(String, String)> = ing
        .spec
        .iter()
        .flat_map(|s| s.tls.iter().flatten())
        .filter_map(|t| t.secret_name.clone())
        .filter(|n| !n.is_empty())
        .map(|n| (namespace.clone(), n))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The ports an Ingress's status reports (its listeners').
pub fn listener_ports(spec: &L7Spec) -> Vec<u16> {
    spec.listeners.iter().map(|l| l.port).collect()
}
