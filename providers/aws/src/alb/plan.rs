//! The desired ALB for one Ingress, computed purely from (id, L7 spec, options).
//!
//! ```text
//!   L7 listeners | listen-ports  ─▶ listeners (HTTP, HTTPS with certificates; ssl-redirect ones
//!                                    answer every request with a redirect and carry no rules)
//!   virtual hosts × routes       ─▶ listener rules in precedence order (rules.rs numbers them)
//!   backends with a node port    ─▶ one HTTP target group each (instance targets on the node port)
//!   source ranges | inbound-cidrs ─▶ security-group rules on the listener ports
//! ```
//!
//! **Matching the Kubernetes semantics with ALB conditions.** The L7 model is evaluated as "the
//! first virtual host whose host matches, then its first matching route, else the default
//! action". ALB rules are one flat list, so a request for `foo.com` that matches no route of
//! `foo.com` would fall through to the rules of a later wildcard or catch-all host. Where such a
//! later host exists, the host gets a last rule `host + /*` → the default action (a *fallback*),
//! which gives exactly the model's answer. Paths: Exact `/p` → `/p`; Prefix `/p` → `/p` and
//! `/p/*`; Prefix `/` → `/*`. A path containing `*` or `?` cannot be written as an ALB pattern
//! (they are wildcards there) and its route is left out with a warning.
//!
//! Where ALB differs and we cannot correct it: an ALB host wildcard `*.foo.com` also matches
//! `a.b.foo.com` (an Ingress wildcard matches one label only).

use std::collections::{BTreeMap, BTreeSet};

use cloudlb_provider::l7::{BackendRef, HostMatch, L7Protocol, PathMatch, RouteAction, VirtualHost};
use cloudlb_provider::naming::{id_hash, sanitize};
use cloudlb_provider::{L7Spec, LoadBalancerId, Scheme};
use ipnet::IpNet;

use super::options::{AlbOptions, DEFAULT_SUCCESS_CODES};
use crate::health::HealthSettings;
use crate::options::{HcPort, HcProtocol};
use crate::plan::{DesiredTargetGroup, SgRule, SkippedTarget, TgProtocol};

/// Default quota of rules per ALB listener (the default rule not counted).
pub const MAX_RULES: usize = 100;
/// Condition values one rule may evaluate (host, path patterns, method, headers, query).
pub const MAX_CONDITION_VALUES: usize = 5;
/// ALB forward weights are 0..=999.
const MAX_WEIGHT: u32 = 999;
/// ALB's idle timeout attribute.
pub const IDLE_TIMEOUT: &str = "idle_timeout.timeout_seconds";

/// What a rule or a listener's default does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlbAction {
    /// To target groups (by name) with weights.
    Forward(Vec<(String, u32)>),
    Fixed(u16),
    /// HTTP 301 to `https://#{host}:<port>/#{path}?#{query}`.
    Redirect(u16),
}

/// A rule's conditions; also its identity: a rule with the same conditions is the same rule
/// (its action may be changed in place).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Conditions {
    pub host: Option<String>,
    pub paths: Vec<String>,
    pub method: Option<String>,
    /// (lowercase name, value)
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
}

impl Conditions {
    /// Condition values ALB evaluates for this rule (its per-rule limit is 5).
    pub fn values(&self) -> usize {
        usize::from(self.host.is_some())
            + self.paths.len()
            + usize::from(self.method.is_some())
            + self.headers.len()
            + self.query.len()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePlan {
    pub conditions: Conditions,
    pub action: AlbAction,
    /// Where it comes from, for messages.
    pub origin: String,
}

/// The certificate of an HTTPS listener: an ACM ARN from the annotation, or a TLS Secret of the
/// Ingress (by its `namespace/name`), imported into ACM.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CertRef {
    Arn(String),
    Secret(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerPlan {
    pub port: u16,
    pub https: bool,
    pub default_action: AlbAction,
    /// `false` for redirect-only listeners: they carry no rules.
    pub with_rules: bool,
}

#[derive(Clone, Debug)]
pub struct AlbPlan {
    pub lb_name: String,
    pub sg_name: String,
    pub scheme: Scheme,
    pub annotated_subnets: Option<Vec<String>>,
    /// Sorted by port.
    pub listeners: Vec<ListenerPlan>,
    /// In precedence order; the same on every listener that carries rules.
    pub rules: Vec<RulePlan>,
    pub target_groups: Vec<DesiredTargetGroup>,
    /// Target group name by backend.
    pub backend_groups: BTreeMap<BackendRef, String>,
    pub instances: BTreeSet<String>,
    pub skipped: Vec<SkippedTarget>,
    pub sg_rules: BTreeSet<SgRule>,
    pub lb_attributes: BTreeMap<String, String>,
    pub additional_tags: BTreeMap<String, String>,
    pub ip_address_type: crate::options::IpAddressType,
    /// HTTPS listeners' certificates, the default first; empty without HTTPS.
    pub certificates: Vec<CertRef>,
    pub ssl_policy: String,
    /// The `manage-backend-security-group-rules` annotation (`node_security.rs`).
    pub manage_backend: bool,
    pub spec_hash: String,
}

/// `alb-<ns:6>-<name:8>-<hash:10>`: never the name of a Service's NLB, even for the same id.
pub fn load_balancer_name(id: &LoadBalancerId) -> String {
    cloudlb_provider::naming::aws_name("alb", id)
}

pub fn security_group_name(id: &LoadBalancerId) -> String {
    cloudlb_provider::naming::aws_name("albsg", id)
}

/// `k8s-<service>-<hash:10>-<backend:4>-<nodePort>` (<= 32 chars): the `-<hash>-` of the
/// Ingress's id plus a digest of the backend (namespace, Service, port), so that two backends
/// on the same node port (a port by name and by number) stay apart.
pub fn target_group_name(id: &LoadBalancerId, backend: &BackendRef, node_port: u16) -> String {
    let hash = id_hash(id, 10);
    let b = cloudlb_provider::naming::short_digest(&backend.to_string(), 4);
    let suffix = format!("{b}-{node_port}");
    let room = 32usize.saturating_sub(4 + 1 + hash.len() + 1 + suffix.len());
    let readable = sanitize(&backend.service, room);
    if readable.is_empty() { format!("k8s-{hash}-{suffix}") } else { format!("k8s-{readable}-{hash}-{suffix}") }
}

/// ALB path patterns for a path match; `None` when the path has ALB wildcard characters.
pub fn path_patterns(path: &PathMatch) -> Option<Vec<String>> {
    if path.path().contains(['*', '?']) {
        return None;
    }
    Some(match path.canonical() {
        PathMatch::Exact(p) => vec![p],
        PathMatch::Prefix(p) if p == "/" => vec!["/*".into()],
        PathMatch::Prefix(p) => vec![p.clone(), format!("{p}/*")],
    })
}

fn host_value(h: &HostMatch) -> Option<String> {
    match h {
        HostMatch::Exact(h) => Some(h.clone()),
        HostMatch::Wildcard(s) => Some(format!("*.{s}")),
        HostMatch::Any => None,
    }
}

/// Whether an ALB host-header value `later` (None: any host) can take requests meant for `host`.
fn overlaps(host: &HostMatch, later: &HostMatch) -> bool {
    let covered_by = |s: &str, suffix: &str| {
        s.len() > suffix.len() && s.ends_with(suffix) && s[..s.len() - suffix.len()].ends_with('.')
    };
    match (host, later) {
        (_, HostMatch::Any) => true,
        (HostMatch::Exact(h), HostMatch::Wildcard(s)) => covered_by(h, s),
        (HostMatch::Wildcard(a), HostMatch::Wildcard(b)) => a == b || covered_by(a, b),
        _ => false,
    }
}

fn catches_everything(v: &VirtualHost) -> bool {
    v.routes.iter().any(|r| {
        r.matches.path == PathMatch::Prefix("/".into())
            && r.matches.method.is_none()
            && r.matches.headers.is_empty()
            && r.matches.query.is_empty()
    })
}

fn action(a: &RouteAction, groups: &BTreeMap<BackendRef, String>) -> AlbAction {
    match a {
        RouteAction::Fixed { status } => AlbAction::Fixed(*status),
        RouteAction::Forward(list) => {
            let usable: Vec<(String, u32)> =
                list.iter().filter_map(|w| groups.get(&w.backend).map(|tg| (tg.clone(), w.weight))).collect();
            if usable.is_empty() {
                return AlbAction::Fixed(503);
            }
            let max = usable.iter().map(|(_, w)| *w).max().unwrap_or(1).max(1);
            if max <= MAX_WEIGHT {
                return AlbAction::Forward(usable);
            }
            // Scale down keeping proportions (a non-zero weight stays non-zero).
            AlbAction::Forward(
                usable
                    .into_iter()
                    .map(|(tg, w)| {
                        let scaled = (u64::from(w) * u64::from(MAX_WEIGHT) / u64::from(max)) as u32;
                        (tg, if w > 0 { scaled.max(1) } else { 0 })
                    })
                    .collect(),
            )
        }
    }
}

fn health(backend: &cloudlb_provider::l7::Backend, opts: &AlbOptions) -> HealthSettings {
    let o = &opts.health;
    let hc = &backend.health_check;
    let interval = o.interval.unwrap_or(hc.interval_seconds).clamp(5, 300);
    HealthSettings {
        protocol: o.protocol.unwrap_or(HcProtocol::Http),
        port: o.port.map_or(HcPort::TrafficPort, HcPort::Port),
        path: Some(o.path.clone().or_else(|| hc.path.clone()).unwrap_or_else(|| "/".into())),
        interval,
        // ALB wants the timeout below the interval.
        timeout: o.timeout.unwrap_or(hc.timeout_seconds).clamp(2, 120).min(interval - 1),
        healthy_threshold: o.healthy_threshold.unwrap_or(hc.healthy_threshold).clamp(2, 10),
        unhealthy_threshold: o.unhealthy_threshold.unwrap_or(hc.unhealthy_threshold).clamp(2, 10),
        success_codes: Some(o.success_codes.clone().unwrap_or_else(|| DEFAULT_SUCCESS_CODES.into())),
    }
}

/// Listeners as (port, https, redirect to) before actions are attached.
fn listener_ports(spec: &L7Spec, opts: &AlbOptions) -> Vec<(u16, bool, Option<u16>)> {
    let mut out: Vec<(u16, bool, Option<u16>)> = match &opts.listen_ports {
        Some(ports) => ports.iter().map(|p| (p.port, p.https, None)).collect(),
        None => {
            let mut l: Vec<(u16, bool, Option<u16>)> =
                spec.listeners.iter().map(|l| (l.port, l.protocol == L7Protocol::Https, l.redirect_to_https)).collect();
            if !opts.certificate_arns.is_empty() && !l.iter().any(|(_, https, _)| *https) {
                l.push((443, true, None));
            }
            l
        }
    };
    if let Some(to) = opts.ssl_redirect {
        for l in out.iter_mut().filter(|l| !l.1) {
            l.2 = Some(to);
        }
    }
    out.sort();
    out.dedup_by_key(|l| l.0);
    out
}

/// Fatal problems of spec + options (no I/O): what `validate_l7` adds to the option problems.
pub fn problems(id: &LoadBalancerId, spec: &L7Spec, opts: &AlbOptions) -> Vec<String> {
    let mut out = Vec::new();
    let listeners = listener_ports(spec, opts);
    let has_certificates = !spec.certificates.is_empty() || !opts.certificate_arns.is_empty();
    for (port, https, redirect) in &listeners {
        if *https && !has_certificates {
            out.push(format!(
                "HTTPS on port {port} needs a certificate: add a TLS Secret to spec.tls or annotation {}",
                super::options::annotation("certificate-arn")
            ));
        }
        if let Some(to) = redirect
            && !listeners.iter().any(|(p, https, _)| p == to && *https)
        {
            out.push(format!("port {port} redirects to HTTPS port {to}, but there is no HTTPS listener on port {to}"));
        }
    }
    let (plan, _) = build(id, spec, opts);
    if plan.rules.len() > MAX_RULES {
        out.push(format!(
            "the Ingress needs {} listener rules, an ALB listener takes at most {MAX_RULES}; split it into several Ingresses",
            plan.rules.len()
        ));
    }
    out
}

/// The plan, and the parts of the spec it leaves out (warnings).
pub fn build(id: &LoadBalancerId, spec: &L7Spec, opts: &AlbOptions) -> (AlbPlan, Vec<String>) {
    let mut warnings = Vec::new();

    let mut target_groups = Vec::new();
    let mut backend_groups = BTreeMap::new();
    for b in &spec.backends {
        let Some(node_port) = b.node_port else { continue };
        let name = target_group_name(id, &b.id, node_port);
        backend_groups.insert(b.id.clone(), name.clone());
        if target_groups.iter().any(|t: &DesiredTargetGroup| t.name == name) {
            continue;
        }
        target_groups.push(DesiredTargetGroup {
            name,
            listener_port: 0,
            protocol: TgProtocol::Http,
            node_port,
            health: health(b, opts),
            attributes: opts.target_group_attributes.clone(),
        });
    }

    let default_action = action(&spec.default_action, &backend_groups);
    let mut rules: Vec<RulePlan> = Vec::new();
    for (i, v) in spec.virtual_hosts.iter().enumerate() {
        let host = host_value(&v.host);
        for r in &v.routes {
            let Some(paths) = path_patterns(&r.matches.path) else {
                warnings.push(format!(
                    "{}: path {:?} contains * or ?, which an ALB path pattern treats as wildcards; the path is left out",
                    r.origin,
                    r.matches.path.path()
                ));
                continue;
            };
            let conditions = Conditions {
                host: host.clone(),
                paths,
                method: r.matches.method.clone(),
                headers: r.matches.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.clone())).collect(),
                query: r.matches.query.iter().map(|q| (q.name.clone(), q.value.clone())).collect(),
            };
            if conditions.values() > MAX_CONDITION_VALUES {
                warnings.push(format!(
                    "{}: {} match values, an ALB rule evaluates at most {MAX_CONDITION_VALUES}; the path is left out",
                    r.origin,
                    conditions.values()
                ));
                continue;
            }
            if rules.iter().any(|x| x.conditions == conditions) {
                continue;
            }
            rules.push(RulePlan {
                conditions,
                action: action(&r.action, &backend_groups),
                origin: r.origin.to_string(),
            });
        }
        let later_overlaps = spec.virtual_hosts[i + 1..].iter().any(|l| overlaps(&v.host, &l.host));
        if host.is_some() && later_overlaps && !catches_everything(v) {
            rules.push(RulePlan {
                conditions: Conditions { host: host.clone(), paths: vec!["/*".into()], ..Default::default() },
                action: default_action.clone(),
                origin: format!("host {}: requests no path of it matches", v.host),
            });
        }
    }

    let listeners: Vec<ListenerPlan> = listener_ports(spec, opts)
        .into_iter()
        .map(|(port, https, redirect)| match redirect {
            Some(to) => ListenerPlan { port, https, default_action: AlbAction::Redirect(to), with_rules: false },
            None => ListenerPlan { port, https, default_action: default_action.clone(), with_rules: true },
        })
        .collect();

    let mut certificates: Vec<CertRef> = opts.certificate_arns.iter().cloned().map(CertRef::Arn).collect();
    if listeners.iter().any(|l| l.https) {
        // The Secret the spec serves to clients without SNI goes first when no ARN is given.
        if let Some(default) = spec.certificate_for(None) {
            certificates.push(CertRef::Secret(default.name.clone()));
        }
        for c in &spec.certificates {
            let r = CertRef::Secret(c.name.clone());
            if !certificates.contains(&r) {
                certificates.push(r);
            }
        }
    } else {
        certificates.clear();
    }

    let sources: Vec<IpNet> = match &opts.inbound_cidrs {
        Some(c) => c.clone(),
        None if spec.source_ranges.is_empty() => vec![IpNet::V4(ipnet::Ipv4Net::default())],
        None => spec.source_ranges.clone(),
    };
    let sources = crate::plan::with_ip_address_type(sources, opts.ip_address_type);
    let sg_rules = listeners
        .iter()
        .flat_map(|l| sources.iter().map(move |c| SgRule { protocol: "tcp", port: l.port, cidr: c.trunc() }))
        .collect();

    let mut lb_attributes =
        BTreeMap::from([(IDLE_TIMEOUT.to_string(), spec.timeouts.idle_seconds.clamp(1, 4000).to_string())]);
    lb_attributes.extend(opts.lb_attributes.clone());

    let (instances, skipped) = crate::plan::targets(&spec.targets);
    let plan = AlbPlan {
        lb_name: load_balancer_name(id),
        sg_name: security_group_name(id),
        scheme: opts.scheme.unwrap_or(spec.scheme),
        annotated_subnets: opts.subnets.clone(),
        listeners,
        rules,
        target_groups,
        backend_groups,
        instances,
        skipped,
        sg_rules,
        lb_attributes,
        additional_tags: opts.tags.clone(),
        ip_address_type: opts.ip_address_type,
        certificates,
        ssl_policy: opts.ssl_policy.clone(),
        manage_backend: opts.manage_backend_rules.unwrap_or(true),
        spec_hash: spec.hash(),
    };
    (plan, warnings)
}

#[cfg(test)]
mod tests;
