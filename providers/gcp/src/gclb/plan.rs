//! What one Ingress's load balancer is made of, from the spec alone (pure): names, backend
//! services and their checks, certificates in the order served, listeners, the URL maps.
//!
//! ```text
//!   per Ingress  k8s7-<ns:10>-<name:16>-<hash:12>   (hash of cluster + uid; <= 45 chars)
//!     -ip  global address        -um  URL map          -rd  redirect URL map
//!     -hp  target HTTP proxy     -sp  target HTTPS proxy
//!     -fh  HTTP forwarding rule  -fs  HTTPS forwarding rule
//!     -fw  firewall: Google's proxies and checkers -> the backends' node ports
//!     -be-<digest:8 of ns/svc:port>  backend service + its health check, one per backend
//!     -none  the fixed-answer backend service (no backends), when an action is 404 or 503
//!     -ct-<digest:10 of Secret + content>  SSL certificate, one per TLS Secret and content
//! ```
//!
//! Every name has the Ingress's prefix, so a list by prefix finds everything an interrupted pass
//! left, even what no record names.

use std::collections::{BTreeMap, BTreeSet};

use cloudlb_provider::l7::{BackendRef, Certificate, L7Protocol, RouteAction};
use cloudlb_provider::naming::{id_hash, sanitize, short_digest};
use cloudlb_provider::{L7Spec, LoadBalancerId};
use google_cloud_compute_v1::model::UrlMap;

use super::options::{L7Options, MAX_CERTIFICATES};
use super::routing::{self, Links, MAX_ROUTE_RULES};
use crate::config::GcpConfig;
use crate::plan::SkippedTarget;
use crate::resources::global::health_check;

/// Where Google's front ends (proxies and health checkers) reach the nodes from.
pub const PROXY_RANGES: &[&str] = &["130.211.0.0/22", "35.191.0.0/16"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub base: String,
    pub address: String,
    pub url_map: String,
    pub redirect_map: String,
    pub http_proxy: String,
    pub https_proxy: String,
    pub http_rule: String,
    pub https_rule: String,
    pub firewall: String,
    pub fixed_backend: String,
}

impl Names {
    pub fn new(id: &LoadBalancerId) -> Self {
        let parts: Vec<String> =
            [sanitize(&id.namespace, 10), sanitize(&id.name, 16)].into_iter().filter(|p| !p.is_empty()).collect();
        let mut base = String::from("k8s7");
        for p in parts {
            base.push('-');
            base.push_str(&p);
        }
        base.push('-');
        base.push_str(&id_hash(id, 12));
        let n = |suffix: &str| format!("{base}-{suffix}");
        Self {
            address: n("ip"),
            url_map: n("um"),
            redirect_map: n("rd"),
            http_proxy: n("hp"),
            https_proxy: n("sp"),
            http_rule: n("fh"),
            https_rule: n("fs"),
            firewall: n("fw"),
            fixed_backend: n("none"),
            base,
        }
    }

    /// The prefix of every backend service and health check of this Ingress.
    pub fn backend_prefix(&self) -> String {
        format!("{}-be-", self.base)
    }

    pub fn backend(&self, b: &BackendRef) -> String {
        format!("{}{}", self.backend_prefix(), short_digest(&b.to_string(), 8))
    }

    /// The prefix of every certificate of this Ingress.
    pub fn certificate_prefix(&self) -> String {
        format!("{}-ct-", self.base)
    }

    pub fn certificate(&self, c: &Certificate) -> String {
        format!("{}{}", self.certificate_prefix(), short_digest(&format!("{}\n{}", c.name, c.fingerprint), 10))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendPlan {
    pub id: BackendRef,
    /// Backend service and health check.
    pub name: String,
    pub node_port: u16,
    pub health: health_check::Desired,
}

#[derive(Clone, Debug, PartialEq)]
pub struct L7Plan {
    pub names: Names,
    /// The resolvable backends (one backend service each).
    pub backends: Vec<BackendPlan>,
    /// Some action answers without a backend (404, 503): the fixed-answer backend service exists.
    pub needs_fixed: bool,
    pub url_map: UrlMap,
    /// The HTTP listener redirects everything to HTTPS (through the redirect map).
    pub redirect: bool,
    pub http_port: Option<u16>,
    pub https_port: Option<u16>,
    /// Certificates from TLS Secrets, in the order the proxy serves them (the first is the default).
    pub certificates: Vec<(String, Certificate)>,
    pub pre_shared: Vec<String>,
    pub static_ip: Option<String>,
    /// Node ports of the backends (the groups' named ports and the firewall's ports).
    pub node_ports: BTreeSet<u16>,
    /// Zone -> instance links.
    pub instances: BTreeMap<String, BTreeSet<String>>,
    pub skipped: Vec<SkippedTarget>,
    pub timeout_sec: i32,
}

/// Problems with the spec only Compute's shape imposes (the capabilities check the rest). Pure.
pub fn problems(spec: &L7Spec, opts: &L7Options) -> Vec<String> {
    let mut out = Vec::new();
    for protocol in [L7Protocol::Http, L7Protocol::Https] {
        let ports: Vec<u16> = spec.listeners.iter().filter(|l| l.protocol == protocol).map(|l| l.port).collect();
        if ports.len() > 1 {
            out.push(format!(
                "{} listeners on ports {ports:?}: a Google Cloud Application Load Balancer built by cloudlb has one \
                 {} listener",
                protocol.as_str(),
                protocol.as_str()
            ));
        }
    }
    for l in &spec.listeners {
        if let Some(port) = l.redirect_to_https
            && port != 443
        {
            out.push(format!(
                "HTTP on port {} redirects to HTTPS port {port}: Compute redirects to port 443 only",
                l.port
            ));
        }
    }
    let https = spec.listeners.iter().any(|l| l.protocol == L7Protocol::Https);
    let certificates = spec.certificates.len() + opts.pre_shared_certs.len();
    if https && certificates == 0 {
        out.push(
            "an HTTPS listener needs a certificate (spec.tls or ingress.gcp.kubernetes.io/pre-shared-cert)".into(),
        );
    }
    if certificates > MAX_CERTIFICATES {
        out.push(format!(
            "{certificates} certificates (spec.tls and pre-shared-cert): a target HTTPS proxy takes at most {MAX_CERTIFICATES}"
        ));
    }
    for (host, n) in routing::route_rule_counts(spec) {
        if n > MAX_ROUTE_RULES {
            out.push(format!(
                "host {host} needs {n} route rules; a URL map path matcher takes at most {MAX_ROUTE_RULES}"
            ));
        }
    }
    out
}

fn uses_fixed(spec: &L7Spec, resolvable: &BTreeSet<&BackendRef>) -> bool {
    let fixed = |a: &RouteAction| match a {
        RouteAction::Fixed { .. } => true,
        RouteAction::Forward(list) => !list.iter().any(|w| resolvable.contains(&w.backend)),
    };
    fixed(&spec.default_action) || spec.virtual_hosts.iter().flat_map(|v| &v.routes).any(|r| fixed(&r.action))
}

pub fn build(id: &LoadBalancerId, spec: &L7Spec, opts: &L7Options, config: &GcpConfig) -> L7Plan {
    let names = Names::new(id);
    let backends: Vec<BackendPlan> = spec
        .backends
        .iter()
        .filter_map(|b| {
            let node_port = b.node_port?;
            let hc = &b.health_check;
            let interval = hc.interval_seconds.clamp(1, 300) as i32;
            Some(BackendPlan {
                id: b.id.clone(),
                name: names.backend(&b.id),
                node_port,
                health: health_check::Desired {
                    name: names.backend(&b.id),
                    port: hc.port.unwrap_or(node_port),
                    path: hc.path.clone().unwrap_or_else(|| "/".into()),
                    interval,
                    timeout: (hc.timeout_seconds.clamp(1, 300) as i32).min(interval),
                    healthy: hc.healthy_threshold.clamp(1, 10) as i32,
                    unhealthy: hc.unhealthy_threshold.clamp(1, 10) as i32,
                },
            })
        })
        .collect();
    let resolvable: BTreeSet<&BackendRef> = backends.iter().map(|b| &b.id).collect();
    let needs_fixed = uses_fixed(spec, &resolvable);
    let link_of = |r: &BackendRef| {
        resolvable.contains(r).then(|| crate::links::global(config, "backendServices", &names.backend(r)))
    };
    let fixed_link = crate::links::global(config, "backendServices", &names.fixed_backend);
    let url_map = routing::url_map(spec, &names.url_map, &Links { backend: &link_of, fixed: &fixed_link });

    let http = spec.listeners.iter().find(|l| l.protocol == L7Protocol::Http);
    let https_port = spec.listeners.iter().find(|l| l.protocol == L7Protocol::Https).map(|l| l.port);
    let mut certificates: Vec<(String, Certificate)> =
        spec.certificates.iter().map(|c| (names.certificate(c), c.clone())).collect();
    // The default certificate (no hosts) first: Compute serves the first to clients it cannot match.
    certificates.sort_by_key(|(_, c)| !c.hosts.is_empty());
    let (instances, skipped) = crate::plan::targets(&spec.targets, config);
    L7Plan {
        node_ports: backends.iter().map(|b| b.node_port).chain(backends.iter().map(|b| b.health.port)).collect(),
        backends,
        needs_fixed,
        url_map,
        redirect: http.is_some_and(|l| l.redirect_to_https.is_some()),
        http_port: http.map(|l| l.port),
        https_port,
        certificates,
        pre_shared: opts.pre_shared_certs.clone(),
        static_ip: opts.static_ip_name.clone(),
        instances,
        skipped,
        timeout_sec: spec.timeouts.request_seconds.max(1) as i32,
        names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::naming::is_valid_gce_name;

    #[test]
    fn names_are_valid_bounded_and_per_ingress() {
        let long = "a-very-long-name-that-goes-on-and-on-and-on-for-ever-and-ever";
        for id in [LoadBalancerId::new("prod", "default", "web", "u1"), LoadBalancerId::new(long, long, long, "u2")] {
            let n = Names::new(&id);
            let b = BackendRef {
                namespace: long.into(),
                service: long.into(),
                port: cloudlb_provider::l7::ServicePort::Number(80),
            };
            let c = Certificate::new("ns/tls".into(), vec![], "chain".into(), "key".into());
            for name in [
                &n.address,
                &n.url_map,
                &n.redirect_map,
                &n.http_proxy,
                &n.https_proxy,
                &n.http_rule,
                &n.https_rule,
                &n.firewall,
                &n.fixed_backend,
                &n.backend(&b),
                &n.certificate(&c),
            ] {
                assert!(is_valid_gce_name(name) && name.len() <= 63, "{name}");
                assert!(name.starts_with(&n.base), "{name}");
            }
            assert!(n.backend(&b).starts_with(&n.backend_prefix()));
            assert!(n.certificate(&c).starts_with(&n.certificate_prefix()));
        }
        let a = Names::new(&LoadBalancerId::new("prod", "ns", "web", "u1"));
        let b = Names::new(&LoadBalancerId::new("prod", "ns", "web", "u2"));
        assert_ne!(a.base, b.base, "another incarnation, other names");
        assert!(!a.base.starts_with(&b.base) && !b.base.starts_with(&a.base), "a prefix list never finds the other's");
    }

    #[test]
    fn a_rotated_secret_is_a_new_certificate_name() {
        let n = Names::new(&LoadBalancerId::new("prod", "ns", "web", "u1"));
        let old = Certificate::new("ns/tls".into(), vec![], "chain-1".into(), "key".into());
        let new = Certificate::new("ns/tls".into(), vec![], "chain-2".into(), "key".into());
        assert_ne!(n.certificate(&old), n.certificate(&new));
    }
}
