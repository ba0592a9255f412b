//! The URL map built from the L7 model routes every request of a table as the model does
//! ([`L7Spec::select`]), evaluated with Compute's documented matching (`evaluate.rs`).

use cloudlb_provider::conformance;
use cloudlb_provider::l7::{
    Backend, BackendRef, Certificate, ExactMatch, HostMatch, L7Listener, L7Protocol, PathMatch, Request, Route,
    RouteAction, RouteMatch, RouteOrigin, ServicePort, VirtualHost, WeightedBackend, WildcardSemantics,
};
use cloudlb_provider::{L7Spec, LoadBalancerId};

use super::evaluate::{self, Outcome};
use super::{options, plan, routing};
use crate::GcpConfig;

fn backend_ref(svc: &str) -> BackendRef {
    BackendRef { namespace: "ns".into(), service: svc.into(), port: ServicePort::Number(80) }
}

fn route(m: RouteMatch, svc: &str, index: u32) -> Route {
    Route {
        matches: m,
        action: RouteAction::Forward(vec![WeightedBackend { backend: backend_ref(svc), weight: 1 }]),
        origin: RouteOrigin { kind: "Ingress".into(), namespace: "ns".into(), name: "web".into(), rule: 0, index },
    }
}

fn prefix(p: &str) -> RouteMatch {
    RouteMatch::path(PathMatch::Prefix(p.into()))
}

fn exact(p: &str) -> RouteMatch {
    RouteMatch::path(PathMatch::Exact(p.into()))
}

/// Two exact hosts, a wildcard, a catch-all host; Exact and Prefix paths of several lengths; a
/// header match; a backend that cannot be resolved; no default backend (404).
fn spec() -> L7Spec {
    let mut with_header = prefix("/api");
    with_header.headers.push(ExactMatch { name: "x-canary".into(), value: "1".into() });
    let mut hosts = vec![
        VirtualHost {
            host: HostMatch::parse("foo.com"),
            routes: vec![
                route(prefix("/"), "root", 0),
                route(prefix("/api"), "api", 1),
                route(with_header, "canary", 2),
                route(exact("/exact"), "exact", 3),
                route(prefix("/exact"), "exact-prefix", 4),
                route(prefix("/broken"), "missing", 5),
            ],
        },
        VirtualHost { host: HostMatch::parse("bar.com"), routes: vec![route(prefix("/a"), "bar-a", 0)] },
        VirtualHost { host: HostMatch::parse("*.wild.com"), routes: vec![route(prefix("/"), "wild", 0)] },
        VirtualHost { host: HostMatch::Any, routes: vec![route(prefix("/any"), "any", 0)] },
    ];
    hosts.iter_mut().for_each(VirtualHost::sort_routes);
    let mut backends: Vec<Backend> =
        ["root", "api", "canary", "exact", "exact-prefix", "bar-a", "wild", "any", "missing"]
            .iter()
            .enumerate()
            .map(|(i, s)| Backend {
                id: backend_ref(s),
                node_port: (*s != "missing").then_some(30000 + i as u16),
                problem: (*s == "missing").then(|| "no such Service".into()),
                health_check: conformance::spec(&[80]).health_check,
            })
            .collect();
    backends.sort_by(|a, b| a.id.cmp(&b.id));
    let mut s = conformance::l7_spec(80);
    s.listeners = vec![
        L7Listener { port: 80, protocol: L7Protocol::Http, redirect_to_https: None },
        L7Listener { port: 443, protocol: L7Protocol::Https, redirect_to_https: None },
    ];
    s.virtual_hosts = hosts;
    s.sort_virtual_hosts();
    s.backends = backends;
    s.certificates = vec![Certificate::new("ns/tls".into(), vec![], "chain".into(), "key".into())];
    s
}

fn config() -> GcpConfig {
    GcpConfig::new("p", "us-central1", "default")
}

fn id() -> LoadBalancerId {
    LoadBalancerId::new("prod", "ns", "web", "u1")
}

/// What the model's action is, in the evaluator's terms.
fn expected(spec: &L7Spec, names: &plan::Names, a: &RouteAction) -> Outcome {
    match a {
        RouteAction::Fixed { status } => Outcome::Abort(u32::from(*status)),
        RouteAction::Forward(list) => match spec.backend(&list[0].backend).and_then(|b| b.node_port) {
            Some(_) => {
                Outcome::Service(format!("projects/p/global/backendServices/{}", names.backend(&list[0].backend)))
            }
            None => Outcome::Abort(503),
        },
    }
}

#[test]
fn the_url_map_routes_every_request_as_the_model_does() {
    let spec = spec();
    let (opts, _) = options::parse(&spec.options);
    let p = plan::build(&id(), &spec, &opts, &config());
    assert!(plan::problems(&spec, &opts).is_empty(), "{:?}", plan::problems(&spec, &opts));
    assert!(p.needs_fixed, "404 default and an unresolvable backend need the fixed-answer service");
    let hosts = ["foo.com", "FOO.com:8080", "bar.com", "a.wild.com", "x.y.wild.com", "wild.com", "other.org"];
    let paths = [
        "/",
        "/a",
        "/a/",
        "/a/b",
        "/ab",
        "/api",
        "/api/",
        "/api/v1",
        "/apix",
        "/exact",
        "/exact/",
        "/exact/x",
        "/any",
        "/any/z",
        "/broken/1",
    ];
    let header_sets: [&[(&str, &str)]; 2] = [&[], &[("X-Canary", "1")]];
    let mut checked = 0;
    for host in hosts {
        for path in paths {
            for headers in header_sets {
                let normalized = cloudlb_provider::l7::normalize_host(host);
                let model_req = Request { host: &normalized, path, method: "GET", headers, query: &[] };
                let want = expected(&spec, &p.names, spec.select(&model_req));
                let req = evaluate::Request { authority: host, path, method: "GET", headers, query: &[] };
                let got = evaluate::evaluate(&p.url_map, &req);
                assert_eq!(got, want, "{host}{path} {headers:?}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 210);
}

#[test]
fn an_exact_host_beats_the_catch_all_and_a_multi_label_host_is_not_the_wildcards() {
    let spec = spec();
    let p = plan::build(&id(), &spec, &Default::default(), &config());
    let go = |authority: &str, path: &str| {
        evaluate::evaluate(&p.url_map, &evaluate::Request { authority, path, method: "GET", headers: &[], query: &[] })
    };
    let svc =
        |s: &str| Outcome::Service(format!("projects/p/global/backendServices/{}", p.names.backend(&backend_ref(s))));
    assert_eq!(go("a.wild.com", "/x"), svc("wild"));
    assert_eq!(go("x.y.wild.com", "/any/1"), svc("any"), "two labels: the catch-all host's route");
    assert_eq!(go("x.y.wild.com", "/x"), Outcome::Abort(404), "two labels: the default");
    assert_eq!(go("foo.com", "/any"), svc("root"), "an exact host never falls to the catch-all's routes");
}

#[test]
fn redirect_and_weights_and_gateway_wildcards() {
    let map = routing::redirect_map("rd");
    let req = evaluate::Request { authority: "foo.com", path: "/x", method: "GET", headers: &[], query: &[] };
    assert_eq!(evaluate::evaluate(&map, &req), Outcome::HttpsRedirect);

    let mut s = spec();
    s.wildcards = WildcardSemantics::AnyLabels;
    let foo = s.virtual_hosts.iter_mut().find(|v| v.host == HostMatch::parse("foo.com")).expect("foo.com");
    let root = foo.routes.iter_mut().find(|r| r.origin.index == 0).expect("the / route");
    root.action = RouteAction::Forward(vec![
        WeightedBackend { backend: backend_ref("api"), weight: 3000 },
        WeightedBackend { backend: backend_ref("root"), weight: 1000 },
    ]);
    let p = plan::build(&id(), &s, &Default::default(), &config());
    let routed = evaluate::evaluate(&p.url_map, &evaluate::Request { path: "/zzz", ..req });
    match routed {
        Outcome::Weighted(w) => {
            assert_eq!(w.iter().map(|(_, w)| *w).collect::<Vec<_>>(), [1000, 333], "scaled to <= 1000")
        }
        other => panic!("{other:?}"),
    }
    // Gateway semantics: Compute's wildcard already takes any number of labels, no guard rules.
    let many = evaluate::Request { authority: "x.y.wild.com", path: "/", ..req };
    let wild = format!("projects/p/global/backendServices/{}", p.names.backend(&backend_ref("wild")));
    assert_eq!(evaluate::evaluate(&p.url_map, &many), Outcome::Service(wild));
}

#[test]
fn what_compute_cannot_build_is_a_problem_before_any_call() {
    let mut s = spec();
    s.listeners.push(L7Listener { port: 8443, protocol: L7Protocol::Https, redirect_to_https: None });
    s.listeners[0].redirect_to_https = Some(8443);
    let opts =
        options::L7Options { pre_shared_certs: (0..15).map(|i| format!("c{i}")).collect(), ..Default::default() };
    let problems = plan::problems(&s, &opts);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("one HTTPS listener")));
    assert!(problems.iter().any(|p| p.contains("port 443 only")));
    assert!(problems.iter().any(|p| p.contains("16 certificates")));
    let mut no_cert = spec();
    no_cert.certificates.clear();
    assert!(plan::problems(&no_cert, &Default::default())[0].contains("needs a certificate"));
}

#[test]
fn the_same_map_read_back_with_absolute_links_and_defaults_is_the_same_routing() {
    let spec = spec();
    let p = plan::build(&id(), &spec, &Default::default(), &config());
    // What Compute answers: absolute links already, plus fields it fills in.
    let mut back = p.url_map.clone().set_self_link("https://x/compute/v1/projects/p/global/urlMaps/um");
    back.kind = Some("compute#urlMap".into());
    assert!(routing::same_routing(&p.url_map, &back));
    let mut changed = spec.clone();
    changed.virtual_hosts[1].routes[0].matches = prefix("/b");
    let q = plan::build(&id(), &changed, &Default::default(), &config());
    assert!(!routing::same_routing(&p.url_map, &q.url_map));
}
