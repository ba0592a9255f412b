//! What a provider can do, so that the controller rejects an impossible spec *before* any
//! cloud call (with a Warning event and a condition) instead of failing half-way in the cloud.

use serde::Serialize;

use crate::l7::{L7Protocol, L7Spec, RouteAction};
use crate::spec::{IpFamily, LoadBalancerSpec, Protocol, Scheme, SessionAffinity};
use crate::status::IpMode;

/// Where a provider keeps the state of its load balancers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum StateLocation {
    /// In a cloud (or a file): survives a controller restart, so an unchanged Service needs no
    /// mutating call at start.
    Durable,
    /// In this process (memory, local): lost on restart, so the controller re-ensures every
    /// Service at start, handing the provider the recorded address to keep.
    InProcess,
}

#[derive(Clone, Debug, Serialize)]
pub struct Capabilities {
    pub protocols: Vec<Protocol>,
    /// TCP and UDP on one load balancer (`MixedProtocolLBService`).
    pub mixed_protocols: bool,
    /// The same port number with two protocols (e.g. DNS on 53/TCP and 53/UDP).
    pub same_port_multiple_protocols: bool,
    pub source_ranges: bool,
    pub requested_ip: bool,
    pub internal: bool,
    pub client_ip_affinity: bool,
    pub ip_families: Vec<IpFamily>,
    pub max_listeners: usize,
    pub ip_mode: IpMode,
    pub state: StateLocation,
    /// What the provider can do with HTTP load balancers; `None` when it builds none.
    pub l7: Option<L7Capabilities>,
    /// How the controller's drift check asks whether the cloud still implements a spec.
    pub drift_check: DriftCheck,
}

/// How the controller's drift check (once per `--resync-period` per load balancer) asks whether
/// the cloud still implements a spec.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum DriftCheck {
    /// `get`, comparing the spec hash the provider keeps with the load balancer: a few reads,
    /// but a change made behind the provider's back below the load balancer goes unseen.
    #[default]
    SpecHash,
    /// `plan` (the ensure's own reads, changing nothing): any change it would make is drift, so
    /// a deleted listener, a deregistered target or a revoked rule is found and repaired. Costs
    /// what an unchanged ensure reads.
    Plan,
}

impl Capabilities {
    /// Every reason the spec cannot be built by this provider, in a readable form; empty when
    /// the spec is supported.
    pub fn check(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        let mut problems = Vec::new();
        for p in spec.protocols() {
            if !self.protocols.contains(&p) {
                problems.push(format!(
                    "protocol {p} is not supported by this provider (supported: {})",
                    join(&self.protocols)
                ));
            }
        }
        if spec.protocols().len() > 1 && !self.mixed_protocols {
            problems.push("mixing protocols on one load balancer is not supported by this provider".into());
        }
        if !self.same_port_multiple_protocols {
            let mut ports: Vec<u16> = spec.listeners.iter().map(|l| l.port).collect();
            ports.sort();
            if ports.windows(2).any(|w| w[0] == w[1]) {
                problems.push("one port with several protocols is not supported by this provider".into());
            }
        }
        if spec.listeners.len() > self.max_listeners {
            problems.push(format!(
                "{} ports requested, this provider supports at most {}",
                spec.listeners.len(),
                self.max_listeners
            ));
        }
        if spec.restricts_sources() && !self.source_ranges {
            problems.push("loadBalancerSourceRanges cannot be enforced by this provider".into());
        }
        if spec.requested_ip.is_some() && !self.requested_ip {
            problems.push("loadBalancerIP cannot be honoured by this provider".into());
        }
        if spec.scheme == Scheme::Internal && !self.internal {
            problems.push("internal load balancers are not supported by this provider".into());
        }
        if matches!(spec.session_affinity, SessionAffinity::ClientIp { .. }) && !self.client_ip_affinity {
            problems.push("sessionAffinity ClientIP is not supported by this provider".into());
        }
        for f in &spec.ip_families {
            if !self.ip_families.contains(f) {
                problems.push(format!("spec.ipFamilies: IP family {f:?} is not supported by this provider"));
            }
        }
        problems
    }
}

fn join(protocols: &[Protocol]) -> String {
    protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
}

/// What a provider can build of an [`L7Spec`].
#[derive(Clone, Debug, Serialize)]
pub struct L7Capabilities {
    /// HTTPS listeners with certificates.
    pub https: bool,
    /// Listener ports other than 80 and 443.
    pub any_port: bool,
    pub redirect_to_https: bool,
    pub method_matches: bool,
    pub header_matches: bool,
    pub query_matches: bool,
    /// More than one backend per route, by weight.
    pub weighted_backends: bool,
    pub source_ranges: bool,
    pub requested_ip: bool,
    pub internal: bool,
    pub max_routes: usize,
    pub ip_mode: IpMode,
}

impl L7Capabilities {
    /// Every reason the spec cannot be built, readable; empty when it can.
    pub fn check(&self, spec: &L7Spec) -> Vec<String> {
        let mut problems = Vec::new();
        for l in &spec.listeners {
            if l.protocol == L7Protocol::Https && !self.https {
                problems.push(format!("port {}: HTTPS listeners are not supported by this provider", l.port));
            }
            if !self.any_port && l.port != 80 && l.port != 443 {
                problems.push(format!("port {}: this provider listens on ports 80 and 443 only", l.port));
            }
            if l.redirect_to_https.is_some() && !self.redirect_to_https {
                problems.push("redirecting HTTP to HTTPS is not supported by this provider".into());
            }
        }
        let routes = || spec.virtual_hosts.iter().flat_map(|v| v.routes.iter());
        if !self.method_matches && routes().any(|r| r.matches.method.is_some()) {
            problems.push("matching on the request method is not supported by this provider".into());
        }
        if !self.header_matches && routes().any(|r| !r.matches.headers.is_empty()) {
            problems.push("matching on headers is not supported by this provider".into());
        }
        if !self.query_matches && routes().any(|r| !r.matches.query.is_empty()) {
            problems.push("matching on query parameters is not supported by this provider".into());
        }
        let weighted = |a: &RouteAction| matches!(a, RouteAction::Forward(b) if b.len() > 1);
        if !self.weighted_backends && (routes().any(|r| weighted(&r.action)) || weighted(&spec.default_action)) {
            problems.push("splitting a route over several backends is not supported by this provider".into());
        }
        if spec.route_count() > self.max_routes {
            problems.push(format!(
                "{} routes requested, this provider supports at most {}",
                spec.route_count(),
                self.max_routes
            ));
        }
        if spec.restricts_sources() && !self.source_ranges {
            problems.push("source ranges cannot be enforced by this provider".into());
        }
        if spec.requested_ip.is_some() && !self.requested_ip {
            problems.push("a requested IP cannot be honoured by this provider".into());
        }
        if spec.scheme == Scheme::Internal && !self.internal {
            problems.push("internal load balancers are not supported by this provider".into());
        }
        problems
    }
}
