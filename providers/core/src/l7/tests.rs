//! Host and path matching, table-driven: every row of the Kubernetes "Ingress" page's path
//! examples, the ingress-controller-conformance host and path scenarios, and the precedence
//! rules (longest path, Exact on ties, exact host before wildcard before any).

use super::*;
use crate::spec::{HealthCheckProtocol, HealthTarget};

fn hc() -> HealthCheck {
    HealthCheck {
        target: HealthTarget::KubeProxy,
        protocol: HealthCheckProtocol::Tcp,
        port: None,
        path: None,
        interval_seconds: 10,
        timeout_seconds: 5,
        healthy_threshold: 2,
        unhealthy_threshold: 3,
    }
}

fn backend(name: &str) -> BackendRef {
    BackendRef { namespace: "default".into(), service: name.into(), port: ServicePort::Number(80) }
}

fn route(path: PathMatch, to: &str, index: u32) -> Route {
    Route {
        matches: RouteMatch::path(path),
        action: RouteAction::Forward(vec![WeightedBackend { backend: backend(to), weight: 1 }]),
        origin: RouteOrigin { kind: "Ingress".into(), namespace: "default".into(), name: "ing".into(), rule: 0, index },
    }
}

fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.into())
}

fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}

/// A spec with one catch-all virtual host holding `paths` (each to a backend named after its
/// index: b0, b1, ...), default action 404.
fn spec_with(paths: &[PathMatch]) -> L7Spec {
    let routes = paths.iter().enumerate().map(|(i, p)| route(p.clone(), &format!("b{i}"), i as u32)).collect();
    let mut vh = VirtualHost { host: HostMatch::Any, routes };
    vh.sort_routes();
    spec_of(vec![vh], WildcardSemantics::SingleLabel)
}

fn spec_of(mut virtual_hosts: Vec<VirtualHost>, wildcards: WildcardSemantics) -> L7Spec {
    for v in &mut virtual_hosts {
        v.sort_routes();
    }
    let mut backends: Vec<Backend> = virtual_hosts
        .iter()
        .flat_map(|v| v.routes.iter())
        .flat_map(|r| r.action.backends().cloned().collect::<Vec<_>>())
        .map(|id| Backend { id, node_port: Some(30080), problem: None, health_check: hc() })
        .collect();
    backends.sort_by(|a, b| a.id.cmp(&b.id));
    backends.dedup_by(|a, b| a.id == b.id);
    let mut s = L7Spec {
        listeners: vec![L7Listener { port: 80, protocol: L7Protocol::Http, redirect_to_https: None }],
        wildcards,
        virtual_hosts,
        default_action: RouteAction::not_found(),
        backends,
        certificates: vec![],
        targets: Arc::default(),
        source_ranges: vec!["0.0.0.0/0".parse().unwrap()],
        requested_ip: None,
        scheme: Scheme::InternetFacing,
        timeouts: L7Timeouts::default(),
        options: BTreeMap::new(),
    };
    s.sort_virtual_hosts();
    s
}

fn get<'a>(host: &'a str, path: &'a str) -> Request<'a> {
    Request { host, path, method: "GET", headers: &[], query: &[] }
}

/// The backend a request reaches, or "404".
fn outcome(spec: &L7Spec, host: &str, path: &str) -> String {
    match spec.select(&get(host, path)) {
        RouteAction::Forward(b) => b[0].backend.service.clone(),
        RouteAction::Fixed { status } => status.to_string(),
    }
}

#[test]
fn kubernetes_docs_path_examples() {
    // (paths on the Ingress, request path, expected backend: b<index of the path> or 404)
    let rows: &[(&[PathMatch], &str, &str)] = &[
        (&[prefix("/")], "/", "b0"),
        (&[prefix("/")], "/anything/at/all", "b0"),
        (&[exact("/foo")], "/foo", "b0"),
        (&[exact("/foo")], "/bar", "404"),
        (&[exact("/foo")], "/foo/", "404"),
        (&[exact("/foo/")], "/foo", "404"),
        (&[prefix("/foo")], "/foo", "b0"),
        (&[prefix("/foo")], "/foo/", "b0"),
        (&[prefix("/foo/")], "/foo", "b0"),
        (&[prefix("/foo/")], "/foo/", "b0"),
        (&[prefix("/aaa/bb")], "/aaa/bbb", "404"),
        (&[prefix("/aaa/bbb")], "/aaa/bbb", "b0"),
        (&[prefix("/aaa/bbb/")], "/aaa/bbb", "b0"),
        (&[prefix("/aaa/bbb")], "/aaa/bbb/", "b0"),
        (&[prefix("/aaa/bbb")], "/aaa/bbb/ccc", "b0"),
        (&[prefix("/aaa/bbb")], "/aaa/bbbxyz", "404"),
        (&[prefix("/"), prefix("/aaa")], "/aaa/ccc", "b1"),
        (&[prefix("/"), prefix("/aaa"), prefix("/aaa/bbb")], "/aaa/bbb", "b2"),
        (&[prefix("/"), prefix("/aaa"), prefix("/aaa/bbb")], "/ccc", "b0"),
        (&[prefix("/aaa")], "/ccc", "404"),
        (&[prefix("/foo"), exact("/foo")], "/foo", "b1"),
        (&[exact("/foo"), prefix("/foo")], "/foo", "b0"),
    ];
    for (i, (paths, request, want)) in rows.iter().enumerate() {
        let spec = spec_with(paths);
        assert_eq!(outcome(&spec, "any.example", request), *want, "row {i}: {paths:?} with {request}");
    }
}

#[test]
fn conformance_path_scenarios() {
    // ingress-controller-conformance features/path_rules.feature, one Ingress per scenario.
    let rows: &[(&[PathMatch], &str, &str)] = &[
        // Exact
        (&[exact("/foo")], "/foo", "b0"),
        (&[exact("/foo")], "/foo/", "404"),
        (&[exact("/foo")], "/FOO", "404"),
        (&[exact("/foo")], "/foo/bar", "404"),
        // Prefix: element-wise, case-sensitive
        (&[prefix("/aaa")], "/aaa", "b0"),
        (&[prefix("/aaa")], "/aaa/", "b0"),
        (&[prefix("/aaa")], "/aaa/bbb", "b0"),
        (&[prefix("/aaa")], "/aaaccc", "404"),
        (&[prefix("/aaa")], "/AAA", "404"),
        // Mixed: longest match, Exact on a tie
        (&[prefix("/foo"), exact("/foo/bar")], "/foo/bar", "b1"),
        (&[prefix("/foo/bar"), exact("/foo")], "/foo/bar/baz", "b0"),
        (&[exact("/foo"), prefix("/foo/")], "/foo", "b0"),
        (&[prefix("/"), exact("/")], "/", "b1"),
        (&[prefix("/"), exact("/")], "/x", "b0"),
        // Trailing slashes in the rule do not make a longer prefix.
        (&[prefix("/foo/"), prefix("/foo/bar")], "/foo/bar/x", "b1"),
        (&[prefix("/foo/"), prefix("/foo/bar")], "/foo/baz", "b0"),
    ];
    for (i, (paths, request, want)) in rows.iter().enumerate() {
        let spec = spec_with(paths);
        assert_eq!(outcome(&spec, "any.example", request), *want, "row {i}: {paths:?} with {request}");
    }
}

fn host_spec(hosts: &[&str], wildcards: WildcardSemantics) -> L7Spec {
    let vhosts = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| VirtualHost { host: HostMatch::parse(h), routes: vec![route(prefix("/"), &format!("h{i}"), 0)] })
        .collect();
    spec_of(vhosts, wildcards)
}

#[test]
fn conformance_host_scenarios_single_label_wildcards() {
    let spec = host_spec(&["foo.bar.com", "*.foo.com"], WildcardSemantics::SingleLabel);
    let rows = [
        ("foo.bar.com", "h0"),
        ("FOO.bar.com", "h0"),
        ("foo.bar.com:8080", "h0"),
        ("foo.bar.com.", "h0"),
        ("bar.foo.com", "h1"),
        ("baz.bar.foo.com", "404"),
        ("foo.com", "404"),
        (".foo.com", "404"),
        ("other.com", "404"),
    ];
    for (host, want) in rows {
        assert_eq!(outcome(&spec, &normalize_host(host), "/"), want, "host {host}");
    }
}

#[test]
fn gateway_wildcards_match_any_number_of_labels() {
    let spec = host_spec(&["*.example.com"], WildcardSemantics::AnyLabels);
    assert_eq!(outcome(&spec, "foo.example.com", "/"), "h0");
    assert_eq!(outcome(&spec, "foo.test.example.com", "/"), "h0");
    assert_eq!(outcome(&spec, "example.com", "/"), "404");
    assert_eq!(outcome(&spec, "foo..example.com", "/"), "404");
}

#[test]
fn exact_host_beats_wildcard_beats_any_and_longer_wildcards_win() {
    let spec = host_spec(&["", "*.com", "*.foo.com", "a.foo.com"], WildcardSemantics::AnyLabels);
    assert_eq!(spec.virtual_hosts[0].host, HostMatch::Exact("a.foo.com".into()));
    assert_eq!(spec.virtual_hosts[3].host, HostMatch::Any);
    assert_eq!(outcome(&spec, "a.foo.com", "/"), "h3");
    assert_eq!(outcome(&spec, "b.foo.com", "/"), "h2");
    assert_eq!(outcome(&spec, "x.com", "/"), "h1");
    assert_eq!(outcome(&spec, "localhost", "/"), "h0");
}

#[test]
fn a_matching_host_without_a_matching_path_gets_the_default_not_another_host() {
    let mut spec = spec_of(
        vec![
            VirtualHost { host: HostMatch::parse("foo.com"), routes: vec![route(prefix("/a"), "foo-a", 0)] },
            VirtualHost { host: HostMatch::Any, routes: vec![route(prefix("/"), "catch-all", 0)] },
        ],
        WildcardSemantics::SingleLabel,
    );
    assert_eq!(outcome(&spec, "foo.com", "/a/x"), "foo-a");
    assert_eq!(outcome(&spec, "foo.com", "/b"), "404");
    spec.default_action = RouteAction::Forward(vec![WeightedBackend { backend: backend("default"), weight: 1 }]);
    assert_eq!(outcome(&spec, "foo.com", "/b"), "default");
    assert_eq!(outcome(&spec, "bar.com", "/b"), "catch-all");
}

#[test]
fn method_header_and_query_matches() {
    let mut with_header = route(prefix("/"), "canary", 1);
    with_header.matches.headers = vec![ExactMatch { name: "x-canary".into(), value: "1".into() }];
    let mut with_method = route(prefix("/"), "posts", 2);
    with_method.matches.method = Some("POST".into());
    let mut with_query = route(prefix("/"), "debug", 3);
    with_query.matches.query = vec![ExactMatch { name: "debug".into(), value: "on".into() }];
    let spec = spec_of(
        vec![VirtualHost {
            host: HostMatch::Any,
            routes: vec![route(prefix("/"), "plain", 0), with_header, with_method, with_query],
        }],
        WildcardSemantics::AnyLabels,
    );
    let pick = |method: &str, headers: &[(&str, &str)], query: &[(&str, &str)]| match spec.select(&Request {
        host: "h",
        path: "/",
        method,
        headers,
        query,
    }) {
        RouteAction::Forward(b) => b[0].backend.service.clone(),
        RouteAction::Fixed { status } => status.to_string(),
    };
    assert_eq!(pick("GET", &[], &[]), "plain");
    assert_eq!(pick("post", &[], &[]), "posts", "a method match comes before header matches");
    assert_eq!(pick("GET", &[("X-Canary", "1")], &[]), "canary", "header names are case-insensitive");
    assert_eq!(pick("GET", &[("x-canary", "2")], &[]), "plain");
    assert_eq!(pick("GET", &[], &[("debug", "on")]), "debug");
    assert_eq!(pick("GET", &[], &[("Debug", "on")]), "plain", "query names are case-sensitive");
}

#[test]
fn canonical_paths_recognise_duplicates() {
    assert_eq!(prefix("/foo/").canonical(), prefix("/foo").canonical());
    assert_eq!(prefix("/").canonical(), prefix("//").canonical());
    assert_ne!(exact("/foo/").canonical(), exact("/foo").canonical());
    assert_eq!(prefix("/foo/").specificity(), prefix("/foo").specificity());
}

#[test]
fn certificates_by_sni_exact_then_wildcard_then_default() {
    let mut spec = spec_with(&[prefix("/")]);
    spec.certificates = vec![
        Certificate::new("ns/default".into(), vec![], "d".into(), "k".into()),
        Certificate::new("ns/exact".into(), vec!["A.foo.com".into()], "a".into(), "k".into()),
        Certificate::new("ns/wild".into(), vec!["*.foo.com".into()], "w".into(), "k".into()),
    ];
    let name = |sni: Option<&str>| spec.certificate_for(sni).map(|c| c.name.clone()).unwrap_or_default();
    assert_eq!(name(Some("a.foo.com")), "ns/exact");
    assert_eq!(name(Some("b.foo.com")), "ns/wild");
    assert_eq!(name(Some("c.b.foo.com")), "ns/default", "a certificate wildcard covers one label");
    assert_eq!(name(None), "ns/default");
}

#[test]
fn hash_tracks_everything_but_key_text_and_splits_targets() {
    let a = spec_with(&[prefix("/")]);
    assert_eq!(a.hash(), spec_with(&[prefix("/")]).hash());
    let mut b = a.clone();
    b.certificates = vec![Certificate::new("ns/c".into(), vec![], "chain".into(), "key1".into())];
    let mut c = b.clone();
    c.certificates = vec![Certificate::new("ns/c".into(), vec![], "chain".into(), "key2".into())];
    assert_ne!(a.hash(), b.hash());
    assert_ne!(b.hash(), c.hash(), "a rotated key changes the fingerprint");
    let mut d = a.clone();
    Arc::make_mut(&mut d.targets).push(Target { node: "n".into(), provider_id: None, addresses: vec![] });
    assert_eq!(a.frontend_digest(), d.frontend_digest());
    assert_ne!(a.hash(), d.hash());
    assert!(!format!("{:?}", c.certificates[0]).contains("key2"), "keys are never printed");
}
