//! Routing: which action a request gets, decided exactly as [`L7Spec::select`] decides it.
//!
//! ```text
//!  Host ─▶ normalize ─▶ exact hosts (hash map: first virtual host with that name)
//!                       └─ min with the first wildcard / any-host virtual host that matches
//!          ─▶ that virtual host's routes, in order: first RouteMatch::matches wins
//!          ─▶ the compiled action (or the default action when either step finds nothing)
//! ```
//!
//! The spec already holds virtual hosts and routes in precedence order (the core crate sorts
//! them once), so the router only has to find the *first* match, as `select` does. It reuses
//! the core's own matchers (`HostMatch::matches`, `RouteMatch::matches`) instead of a second
//! implementation, so the two cannot drift apart; what it adds is speed where it is free: exact
//! hosts are found by hashing instead of scanning, and the request's headers and query are
//! only collected when some route matches on them. A unit test compares it with `select` over
//! a table of requests.
//!
//! Actions are compiled once per spec: a route's backends are resolved to their shared
//! [`BackendPool`]s (with their nodes, health and keep-alive connections), weights to a
//! cumulative table.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cloudlb_provider::L7Spec;
use cloudlb_provider::l7::{BackendRef, HostMatch, Request, RouteAction};
use http::StatusCode;

use super::upstream::BackendPool;

/// What happens to a request, with everything it needs resolved.
#[derive(Debug)]
pub(crate) enum Action {
    /// Answer with this status and a short body.
    Fixed(StatusCode),
    /// Forward to one backend.
    Forward(Arc<BackendPool>),
    /// Forward to one of several backends, by weight (`cumulative` ends at `total`).
    Split { backends: Vec<(Arc<BackendPool>, u64)>, total: u64, next: AtomicU64 },
    /// A route names a backend that is not in the spec's backend list: 503 naming it.
    Missing(BackendRef),
}

impl Action {
    fn compile(action: &RouteAction, pools: &HashMap<BackendRef, Arc<BackendPool>>) -> Action {
        let forward = match action {
            RouteAction::Fixed { status } => {
                return Action::Fixed(StatusCode::from_u16(*status).unwrap_or(StatusCode::NOT_FOUND));
            }
            RouteAction::Forward(list) => list,
        };
        let mut backends = Vec::with_capacity(forward.len());
        let mut total = 0u64;
        for w in forward {
            let Some(pool) = pools.get(&w.backend) else {
                return Action::Missing(w.backend.clone());
            };
            if w.weight > 0 {
                total += u64::from(w.weight);
                backends.push((Arc::clone(pool), total));
            }
        }
        match backends.len() {
            // Every weight is 0: Gateway API says no traffic reaches them; answer 503.
            0 => Action::Fixed(StatusCode::SERVICE_UNAVAILABLE),
            1 => Action::Forward(backends.swap_remove(0).0),
            _ => Action::Split { backends, total, next: AtomicU64::new(0) },
        }
    }

    /// The backend for one request (weighted choice for a split), or `None` for a fixed answer.
    pub(crate) fn backend(&self) -> Option<&Arc<BackendPool>> {
        match self {
            Action::Forward(b) => Some(b),
            Action::Split { backends, total, next } => {
                // A well-mixed counter: deterministic, lock-free, and spreads by weight exactly
                // over every `total` consecutive requests on average.
                let x = mix(next.fetch_add(1, Ordering::Relaxed)) % *total;
                backends.iter().find(|(_, cum)| x < *cum).map(|(b, _)| b)
            }
            Action::Fixed(_) | Action::Missing(_) => None,
        }
    }
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The compiled routing table of one load balancer.
#[derive(Debug)]
pub(crate) struct Router {
    spec: Arc<L7Spec>,
    /// Exact host -> index of the first virtual host with that exact name.
    exact: HashMap<String, usize>,
    /// Indices of the other (wildcard, any-host) virtual hosts, in order.
    others: Vec<usize>,
    /// Compiled actions, `actions[vhost][route]`.
    actions: Vec<Vec<Action>>,
    default: Action,
    /// Every backend of the spec, by id (for stats).
    pools: HashMap<BackendRef, Arc<BackendPool>>,
    pub(crate) needs_headers: bool,
    pub(crate) needs_query: bool,
}

impl Router {
    pub(crate) fn new(spec: Arc<L7Spec>, pools: &HashMap<BackendRef, Arc<BackendPool>>) -> Self {
        let mut exact = HashMap::new();
        let mut others = Vec::new();
        for (i, v) in spec.virtual_hosts.iter().enumerate() {
            match &v.host {
                HostMatch::Exact(h) => {
                    exact.entry(h.clone()).or_insert(i);
                }
                HostMatch::Wildcard(_) | HostMatch::Any => others.push(i),
            }
        }
        let actions = spec
            .virtual_hosts
            .iter()
            .map(|v| v.routes.iter().map(|r| Action::compile(&r.action, pools)).collect())
            .collect();
        let routes = || spec.virtual_hosts.iter().flat_map(|v| v.routes.iter());
        let needs_headers = routes().any(|r| !r.matches.headers.is_empty());
        let needs_query = routes().any(|r| !r.matches.query.is_empty());
        let default = Action::compile(&spec.default_action, pools);
        Self { exact, others, actions, default, pools: pools.clone(), needs_headers, needs_query, spec }
    }

    pub(crate) fn pool(&self, id: &BackendRef) -> Option<&Arc<BackendPool>> {
        self.pools.get(id)
    }

    /// The action for `req` (whose host is normalized with `normalize_host`): the same decision
    /// as `L7Spec::select`.
    pub(crate) fn route(&self, req: &Request<'_>) -> &Action {
        let mut best = self.exact.get(req.host).copied();
        for &i in &self.others {
            if best.is_some_and(|b| b < i) {
                break;
            }
            if self.spec.virtual_hosts[i].host.matches(req.host, self.spec.wildcards) {
                best = Some(i);
                break;
            }
        }
        let Some(v) = best else {
            return &self.default;
        };
        match self.spec.virtual_hosts[v].routes.iter().position(|r| r.matches.matches(req)) {
            Some(r) => &self.actions[v][r],
            None => &self.default,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cloudlb_provider::l7::{
        Backend, ExactMatch, L7Listener, L7Protocol, L7Timeouts, PathMatch, Route, RouteMatch, RouteOrigin,
        ServicePort, VirtualHost, WeightedBackend, WildcardSemantics, normalize_host,
    };
    use cloudlb_provider::{HealthCheck, HealthCheckProtocol, HealthTarget, Scheme};

    use super::*;

    fn backend_ref(name: &str) -> BackendRef {
        BackendRef { namespace: "ns".into(), service: name.into(), port: ServicePort::Number(80) }
    }

    fn route(m: RouteMatch, to: &str, index: u32) -> Route {
        Route {
            matches: m,
            action: RouteAction::Forward(vec![WeightedBackend { backend: backend_ref(to), weight: 1 }]),
            origin: RouteOrigin { kind: "Ingress".into(), namespace: "ns".into(), name: "i".into(), rule: 0, index },
        }
    }

    pub(crate) fn sample(wildcards: WildcardSemantics) -> L7Spec {
        let p = |s: &str| RouteMatch::path(PathMatch::Prefix(s.into()));
        let e = |s: &str| RouteMatch::path(PathMatch::Exact(s.into()));
        let mut hosts = vec![
            VirtualHost {
                host: HostMatch::parse("foo.com"),
                routes: vec![
                    route(p("/"), "root", 0),
                    route(p("/aaa"), "aaa", 1),
                    route(e("/aaa"), "aaa-exact", 2),
                    route(p("/aaa/bbb/"), "bbb", 3),
                    route(
                        RouteMatch {
                            method: Some("POST".into()),
                            headers: vec![ExactMatch { name: "x-canary".into(), value: "1".into() }],
                            query: vec![ExactMatch { name: "v".into(), value: "2".into() }],
                            ..p("/api")
                        },
                        "canary",
                        4,
                    ),
                    route(p("/api"), "api", 5),
                ],
            },
            VirtualHost { host: HostMatch::parse("*.foo.com"), routes: vec![route(p("/"), "wild", 0)] },
            VirtualHost { host: HostMatch::parse("*.bar.foo.com"), routes: vec![route(e("/x"), "wild2", 0)] },
            VirtualHost { host: HostMatch::parse(""), routes: vec![route(p("/any"), "any", 0)] },
        ];
        for v in &mut hosts {
            v.sort_routes();
        }
        let mut spec = L7Spec {
            listeners: vec![L7Listener { port: 80, protocol: L7Protocol::Http, redirect_to_https: None }],
            wildcards,
            virtual_hosts: hosts,
            default_action: RouteAction::Forward(vec![WeightedBackend { backend: backend_ref("default"), weight: 1 }]),
            backends: ["aaa", "aaa-exact", "any", "api", "bbb", "canary", "default", "root", "wild", "wild2"]
                .iter()
                .map(|n| Backend {
                    id: backend_ref(n),
                    node_port: Some(30000),
                    problem: None,
                    health_check: HealthCheck {
                        target: HealthTarget::KubeProxy,
                        protocol: HealthCheckProtocol::Tcp,
                        port: None,
                        path: None,
                        interval_seconds: 10,
                        timeout_seconds: 5,
                        healthy_threshold: 1,
                        unhealthy_threshold: 1,
                    },
                })
                .collect(),
            certificates: Vec::new(),
            targets: Arc::default(),
            source_ranges: Vec::new(),
            requested_ip: None,
            scheme: Scheme::InternetFacing,
            timeouts: L7Timeouts::default(),
            options: BTreeMap::new(),
        };
        spec.sort_virtual_hosts();
        spec
    }

    fn pools(spec: &L7Spec) -> HashMap<BackendRef, Arc<BackendPool>> {
        spec.backends.iter().map(|b| (b.id.clone(), Arc::new(BackendPool::unresolved_for_test(b)))).collect()
    }

    /// `ns/<service>:80` -> `<service>`.
    fn service(b: &BackendPool) -> String {
        b.name.trim_start_matches("ns/").trim_end_matches(":80").to_string()
    }

    fn name(a: &Action) -> String {
        match a {
            Action::Forward(b) => service(b),
            Action::Fixed(s) => s.as_u16().to_string(),
            other => format!("{other:?}"),
        }
    }

    fn reference(a: &RouteAction) -> String {
        match a {
            RouteAction::Forward(b) => b[0].backend.service.clone(),
            RouteAction::Fixed { status } => status.to_string(),
        }
    }

    #[test]
    fn routes_exactly_like_select() {
        for semantics in [WildcardSemantics::SingleLabel, WildcardSemantics::AnyLabels] {
            let spec = Arc::new(sample(semantics));
            let router = Router::new(Arc::clone(&spec), &pools(&spec));
            assert!(router.needs_headers && router.needs_query);
            let hosts =
                ["foo.com", "FOO.com:8080", "a.foo.com", "a.b.foo.com", "x.bar.foo.com", "foo.co", "", "bar.com"];
            let paths = [
                "/",
                "/aaa",
                "/aaa/",
                "/aaaccc",
                "/aaa/bbb",
                "/aaa/bbbxyz",
                "/aaa/bbb/ccc",
                "/api",
                "/api/v",
                "/x",
                "/any/1",
            ];
            let mut checked = 0;
            for host in hosts {
                for path in paths {
                    for (method, headers, query) in [
                        ("GET", vec![], vec![]),
                        ("POST", vec![("X-Canary", "1")], vec![("v", "2")]),
                        ("POST", vec![("x-canary", "1")], vec![("v", "3")]),
                    ] {
                        let host = normalize_host(host);
                        let req = Request { host: &host, path, method, headers: &headers, query: &query };
                        assert_eq!(
                            name(router.route(&req)),
                            reference(spec.select(&req)),
                            "{semantics:?} {method} {host}{path} {headers:?} {query:?}"
                        );
                        checked += 1;
                    }
                }
            }
            assert_eq!(checked, 8 * 11 * 3);
        }
    }

    #[test]
    fn weights_split_traffic_and_zero_weights_get_nothing() {
        let spec = sample(WildcardSemantics::SingleLabel);
        let pools = pools(&spec);
        let split = RouteAction::Forward(vec![
            WeightedBackend { backend: backend_ref("aaa"), weight: 3 },
            WeightedBackend { backend: backend_ref("bbb"), weight: 1 },
            WeightedBackend { backend: backend_ref("api"), weight: 0 },
        ]);
        let a = Action::compile(&split, &pools);
        let mut counts = HashMap::new();
        for _ in 0..4000 {
            *counts.entry(service(a.backend().unwrap())).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 2, "{counts:?}");
        assert!((2700..3300).contains(&counts["aaa"]), "{counts:?}");
        let none = RouteAction::Forward(vec![WeightedBackend { backend: backend_ref("aaa"), weight: 0 }; 2]);
        assert!(matches!(Action::compile(&none, &pools), Action::Fixed(StatusCode::SERVICE_UNAVAILABLE)));
        let missing = RouteAction::Forward(vec![WeightedBackend { backend: backend_ref("nope"), weight: 1 }]);
        assert!(matches!(Action::compile(&missing, &pools), Action::Missing(_)));
    }
}
