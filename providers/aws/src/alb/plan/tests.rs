//! The ALB rules built from an L7 spec route like the spec's reference evaluation
//! ([`L7Spec::select`]): an ALB evaluator (first rule by priority whose host-header and
//! path-pattern globs match, else the listener's default) is run over a table of requests.

use super::*;
use cloudlb_provider::conformance;
use cloudlb_provider::l7::{Request, Route, RouteMatch, RouteOrigin, ServicePort, WeightedBackend, WildcardSemantics};

fn id() -> LoadBalancerId {
    LoadBalancerId::new("c", "default", "web", "uid-1")
}

fn backend(svc: &str) -> BackendRef {
    BackendRef { namespace: "default".into(), service: svc.into(), port: ServicePort::Number(80) }
}

fn route(path: PathMatch, to: &str, index: u32) -> Route {
    Route {
        matches: RouteMatch::path(path),
        action: RouteAction::Forward(vec![WeightedBackend { backend: backend(to), weight: 1 }]),
        origin: RouteOrigin { kind: "Ingress".into(), namespace: "default".into(), name: "web".into(), rule: 0, index },
    }
}

fn spec(vhosts: Vec<(&str, Vec<Route>)>) -> L7Spec {
    let mut s = conformance::l7_spec(80);
    s.virtual_hosts = vhosts
        .into_iter()
        .map(|(h, routes)| {
            let mut v = VirtualHost { host: HostMatch::parse(h), routes };
            v.sort_routes();
            v
        })
        .collect();
    s.sort_virtual_hosts();
    let mut refs: Vec<BackendRef> =
        s.virtual_hosts.iter().flat_map(|v| v.routes.iter()).flat_map(|r| r.action.backends().cloned()).collect();
    refs.sort();
    refs.dedup();
    let hc = s.backends[0].health_check.clone();
    s.backends = refs
        .into_iter()
        .enumerate()
        .map(|(i, id)| cloudlb_provider::l7::Backend {
            id,
            node_port: Some(30100 + i as u16),
            problem: None,
            health_check: hc.clone(),
        })
        .collect();
    s
}

/// ALB glob: `*` any run of characters, `?` exactly one.
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    go(&p, &s)
}

fn alb_select<'a>(plan: &'a AlbPlan, host: &str, path: &str) -> &'a AlbAction {
    plan.rules
        .iter()
        .find(|r| {
            r.conditions.host.as_deref().is_none_or(|h| glob(&h.to_ascii_lowercase(), &host.to_ascii_lowercase()))
                && r.conditions.paths.iter().any(|p| glob(p, path))
        })
        .map_or(&plan.listeners[0].default_action, |r| &r.action)
}

fn expected(s: &L7Spec, plan: &AlbPlan, host: &str, path: &str) -> AlbAction {
    let host = cloudlb_provider::l7::normalize_host(host);
    let req = Request { host: &host, path, method: "GET", headers: &[], query: &[] };
    match s.select(&req) {
        RouteAction::Fixed { status } => AlbAction::Fixed(*status),
        RouteAction::Forward(b) => AlbAction::Forward(vec![(plan.backend_groups[&b[0].backend].clone(), 1)]),
    }
}

#[test]
fn the_rules_route_every_request_as_the_ingress_semantics_say() {
    let s = spec(vec![
        (
            "foo.example",
            vec![
                route(PathMatch::Prefix("/".into()), "root", 0),
                route(PathMatch::Prefix("/api".into()), "api", 1),
                route(PathMatch::Exact("/api/v1".into()), "v1", 2),
            ],
        ),
        ("bar.example", vec![route(PathMatch::Prefix("/shop/".into()), "shop", 0)]),
        ("*.example", vec![route(PathMatch::Prefix("/w".into()), "wild", 0)]),
        ("", vec![route(PathMatch::Prefix("/static".into()), "static", 0)]),
    ]);
    let (plan, warnings) = build(&id(), &s, &AlbOptions::default());
    assert!(warnings.is_empty(), "{warnings:?}");
    let table = [
        ("foo.example", "/api/v1"),
        ("foo.example", "/api/v1/"),
        ("foo.example", "/api"),
        ("foo.example", "/api/"),
        ("foo.example", "/apix"),
        ("FOO.example", "/static"),
        ("bar.example", "/shop"),
        ("bar.example", "/shop/cart"),
        ("bar.example", "/shopping"),
        // bar.example is matched, so no route of a later host may take it (the fallback rule).
        ("bar.example", "/static"),
        ("bar.example", "/w"),
        ("baz.example", "/w"),
        ("baz.example", "/w/x"),
        ("baz.example", "/static"),
        ("other.com", "/static/a.css"),
        ("other.com", "/staticx"),
        ("other.com", "/"),
    ];
    for (host, path) in table {
        assert_eq!(alb_select(&plan, host, path), &expected(&s, &plan, host, path), "{host}{path}");
    }
    // Every host that a later host overlaps got a fallback; foo.example catches everything.
    let fallbacks: Vec<&str> = plan
        .rules
        .iter()
        .filter(|r| r.origin.starts_with("host "))
        .filter_map(|r| r.conditions.host.as_deref())
        .collect();
    assert_eq!(fallbacks, ["bar.example", "*.example"]);
}

#[test]
fn path_patterns_follow_the_documented_translation() {
    assert_eq!(path_patterns(&PathMatch::Exact("/a".into())), Some(vec!["/a".to_string()]));
    assert_eq!(path_patterns(&PathMatch::Prefix("/a/".into())), Some(vec!["/a".to_string(), "/a/*".to_string()]));
    assert_eq!(path_patterns(&PathMatch::Prefix("/".into())), Some(vec!["/*".to_string()]));
    assert_eq!(path_patterns(&PathMatch::Prefix("/a*".into())), None);
}

#[test]
fn a_path_alb_cannot_express_is_left_out_with_a_warning_and_the_rest_is_kept() {
    let s = spec(vec![(
        "foo.example",
        vec![route(PathMatch::Prefix("/a?b".into()), "x", 0), route(PathMatch::Prefix("/ok".into()), "ok", 1)],
    )]);
    let (plan, warnings) = build(&id(), &s, &AlbOptions::default());
    assert_eq!(plan.rules.len(), 1);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("/a?b") && warnings[0].contains("left out"), "{warnings:?}");
}

#[test]
fn an_unresolved_backend_answers_503_and_gets_no_target_group() {
    let mut s = spec(vec![("foo.example", vec![route(PathMatch::Prefix("/a".into()), "gone", 0)])]);
    s.backends[0].node_port = None;
    let (plan, _) = build(&id(), &s, &AlbOptions::default());
    assert_eq!(plan.rules[0].action, AlbAction::Fixed(503));
    assert!(plan.target_groups.is_empty());
}

#[test]
fn listeners_certificates_and_redirects() {
    let mut s = spec(vec![("foo.example", vec![route(PathMatch::Prefix("/".into()), "web", 0)])]);
    // No certificate: HTTPS from listen-ports is a fatal problem that says what to add.
    let opts = AlbOptions {
        listen_ports: Some(vec![
            super::super::options::ListenPort { https: false, port: 80 },
            super::super::options::ListenPort { https: true, port: 443 },
        ]),
        ssl_redirect: Some(443),
        ..Default::default()
    };
    let p = problems(&id(), &s, &opts);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("certificate-arn"), "{p:?}");
    s.certificates = vec![cloudlb_provider::l7::Certificate::new(
        "default/tls".into(),
        vec!["foo.example".into()],
        "chain".into(),
        "key".into(),
    )];
    assert!(problems(&id(), &s, &opts).is_empty());
    let (plan, _) = build(&id(), &s, &opts);
    assert_eq!(plan.listeners.len(), 2);
    assert_eq!(plan.listeners[0].default_action, AlbAction::Redirect(443));
    assert!(!plan.listeners[0].with_rules);
    assert!(plan.listeners[1].https && plan.listeners[1].with_rules);
    assert_eq!(plan.certificates, vec![CertRef::Secret("default/tls".into())]);
    // An ARN from the annotation is the default; the Secret is served by SNI.
    let opts = AlbOptions { certificate_arns: vec!["arn:aws:acm:us-east-1:1:certificate/x".into()], ..opts };
    let (plan, _) = build(&id(), &s, &opts);
    assert_eq!(
        plan.certificates,
        vec![CertRef::Arn("arn:aws:acm:us-east-1:1:certificate/x".into()), CertRef::Secret("default/tls".into())]
    );
    // Source ranges x listener ports.
    assert_eq!(plan.sg_rules.len(), 2 * s.source_ranges.len());
}

#[test]
fn target_group_names_are_valid_distinct_and_carry_the_id_marker() {
    let id = id();
    let a = target_group_name(&id, &backend("a-very-long-service-name"), 30080);
    let b = target_group_name(
        &id,
        &BackendRef { port: ServicePort::Name("http".into()), ..backend("a-very-long-service-name") },
        30080,
    );
    for n in [&a, &b] {
        assert!(cloudlb_provider::naming::is_valid_aws_name(n), "{n}");
        assert!(n.contains(&crate::names::target_group_marker(&id)), "{n}");
    }
    assert_ne!(a, b);
}

#[test]
fn the_wildcard_semantics_is_the_known_difference() {
    // Documented: ALB's *.example also takes a.b.example, an Ingress wildcard does not.
    let s = spec(vec![("*.example", vec![route(PathMatch::Prefix("/".into()), "wild", 0)])]);
    let (plan, _) = build(&id(), &s, &AlbOptions::default());
    assert_ne!(alb_select(&plan, "a.b.example", "/"), &expected(&s, &plan, "a.b.example", "/"));
    let _ = WildcardSemantics::SingleLabel;
}
