//! Ingress rules into virtual hosts and routes, in the precedence the Kubernetes docs define
//! (longest path first, Exact before Prefix on a tie; exact hosts before wildcards before the
//! rules without a host). `ImplementationSpecific` paths are matched as Prefix, the way most
//! controllers treat a plain path; regular expressions are not supported.
//!
//! A rule or path that cannot be honoured (bad host, regex characters, a duplicate, a resource
//! backend) is skipped with a warning naming it; the rest of the Ingress is unaffected.

use std::collections::{BTreeMap, BTreeSet};

use cloudlb_provider::l7::{
    BackendRef, HostMatch, PathMatch, Route, RouteAction, RouteMatch, RouteOrigin, ServicePort, VirtualHost,
    WeightedBackend,
};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend, IngressServiceBackend, IngressSpec};

/// Characters that make a path a pattern rather than a path: a user who writes them expects a
/// glob or a regex, which Exact and Prefix do not do.
const PATTERN_CHARS: &[char] = &['*', '?', '(', ')', '[', ']', '{', '}', '^', '$', '|', '\\', ' '];

/// Virtual hosts (sorted), the default action, and every backend referenced.
pub(super) fn build(
    ing: &Ingress,
    spec: &IngressSpec,
    warnings: &mut Vec<String>,
) -> (Vec<VirtualHost>, RouteAction, BTreeSet<BackendRef>) {
    let namespace = ing.metadata.namespace.clone().unwrap_or_default();
    let name = ing.metadata.name.clone().unwrap_or_default();
    let mut refs = BTreeSet::new();
    let mut hosts: BTreeMap<HostMatch, Vec<Route>> = BTreeMap::new();
    let mut seen: BTreeSet<(HostMatch, PathMatch)> = BTreeSet::new();

    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let host_text = rule.host.clone().unwrap_or_default();
        let host = match parse_host(&host_text) {
            Ok(h) => h,
            Err(why) => {
                warnings.push(format!("rule {i}: host {host_text:?} {why}; the rule is skipped"));
                continue;
            }
        };
        let routes = hosts.entry(host.clone()).or_default();
        for (j, path) in rule.http.iter().flat_map(|h| h.paths.iter()).enumerate() {
            let at = format!("rule {i} ({}) path {j}", host_label(&host));
            let text = path.path.clone().unwrap_or_default();
            let matcher = match path_match(&path.path_type, &text) {
                Ok(m) => m,
                Err(why) => {
                    warnings.push(format!("{at} {text:?}: {why}; the path is skipped"));
                    continue;
                }
            };
            let Some(backend) = backend_ref(&namespace, &path.backend) else {
                warnings.push(format!(
                    "{at} {text:?}: resource backends are not supported (use a Service); the path is skipped"
                ));
                continue;
            };
            if !seen.insert((host.clone(), matcher.canonical())) {
                warnings.push(format!(
                    "{at}: {matcher} is listed twice for host {}; the later one is skipped",
                    host_label(&host)
                ));
                continue;
            }
            refs.insert(backend.clone());
            routes.push(Route {
                matches: RouteMatch::path(matcher),
                action: RouteAction::Forward(vec![WeightedBackend { backend, weight: 1 }]),
                origin: RouteOrigin {
                    kind: "Ingress".into(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    rule: u32::try_from(i).unwrap_or(u32::MAX),
                    index: u32::try_from(j).unwrap_or(u32::MAX),
                },
            });
        }
    }

    let default_action = match &spec.default_backend {
        Some(b) => match backend_ref(&namespace, b) {
            Some(r) => {
                refs.insert(r.clone());
                RouteAction::Forward(vec![WeightedBackend { backend: r, weight: 1 }])
            }
            None => {
                warnings.push(
                    "defaultBackend: resource backends are not supported (use a Service); unmatched requests get 404"
                        .into(),
                );
                RouteAction::not_found()
            }
        },
        None => RouteAction::not_found(),
    };

    // Routes sorted here; the virtual hosts by `L7Spec::sort_virtual_hosts` once the spec exists.
    let virtual_hosts: Vec<VirtualHost> = hosts
        .into_iter()
        .map(|(host, routes)| {
            let mut v = VirtualHost { host, routes };
            v.sort_routes();
            v
        })
        .collect();
    (virtual_hosts, default_action, refs)
}

fn host_label(h: &HostMatch) -> String {
    match h {
        HostMatch::Any => "any host".into(),
        other => other.to_string(),
    }
}

/// An Ingress host: a DNS name, or `*.` followed by one (the wildcard covers one label).
fn parse_host(host: &str) -> Result<HostMatch, &'static str> {
    let parsed = HostMatch::parse(host);
    let name = match &parsed {
        HostMatch::Any => return Ok(parsed),
        HostMatch::Exact(n) | HostMatch::Wildcard(n) => n,
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.contains('*') {
        return Err("may only have a wildcard as its whole first label (*.example.com)");
    }
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err("is not a valid DNS name");
    }
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Err("is an IP address; Ingress hosts must be DNS names");
    }
    Ok(parsed)
}

fn path_match(path_type: &str, path: &str) -> Result<PathMatch, String> {
    let check = |p: &str| -> Result<(), String> {
        if !p.starts_with('/') {
            return Err("must be an absolute path starting with /".into());
        }
        if let Some(c) = p.chars().find(|c| PATTERN_CHARS.contains(c)) {
            return Err(format!(
                "contains {c:?}: paths are matched literally (Exact) or by whole path elements (Prefix), not as patterns"
            ));
        }
        Ok(())
    };
    match path_type {
        "Exact" => check(path).map(|()| PathMatch::Exact(path.to_string())),
        "Prefix" => check(path).map(|()| PathMatch::Prefix(path.to_string())),
        "ImplementationSpecific" => {
            let p = if path.is_empty() { "/" } else { path };
            check(p)
                .map_err(|e| format!("{e} (ImplementationSpecific paths are matched as Prefix; regular expressions are not supported)"))
                .map(|()| PathMatch::Prefix(p.to_string()))
        }
        other => Err(format!("pathType {other:?} is not Exact, Prefix or ImplementationSpecific")),
    }
}

fn backend_ref(namespace: &str, b: &IngressBackend) -> Option<BackendRef> {
    let svc = b.service.as_ref()?;
    let port = svc.port.as_ref();
    let port = match (port.and_then(|p| p.number), port.and_then(|p| p.name.clone())) {
        (Some(n), _) => ServicePort::Number(u16::try_from(n).unwrap_or(0)),
        (None, Some(name)) => ServicePort::Name(name),
        (None, None) => ServicePort::Number(0),
    };
    Some(BackendRef { namespace: namespace.to_string(), service: svc.name.clone(), port })
}

/// Every Service backend an Ingress names (default backend included).
pub(super) fn service_backends(ing: &Ingress) -> impl Iterator<Item = &IngressServiceBackend> {
    let spec = ing.spec.as_ref();
    let default = spec.and_then(|s| s.default_backend.as_ref()).and_then(|b| b.service.as_ref());
    let paths = spec
        .into_iter()
        .flat_map(|s| s.rules.iter().flatten())
        .flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter()))
        .filter_map(|p| p.backend.service.as_ref());
    default.into_iter().chain(paths)
}
