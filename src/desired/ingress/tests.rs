//! Table-driven tests of the Ingress builder: rules into routes, backends into node ports, TLS
//! Secrets into certificates, annotations into listeners, and what is skipped with a warning
//! versus what makes the whole Ingress invalid.

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudlb_provider::l7::{Certificate, HostMatch, L7Protocol, PathMatch, Request, RouteAction};
use cloudlb_provider::memory::{MemoryConfig, MemoryProvider};
use cloudlb_provider::{AddressKind, NodeAddress, Provider, Target};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, Service, ServicePort as K8sPort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::desired::nodes::{EligibleNode, NodeSnapshot};

fn svc_backend(name: &str, port: &str) -> IngressBackend {
    let port = match port.parse::<i32>() {
        Ok(n) => ServiceBackendPort { number: Some(n), name: None },
        Err(_) => ServiceBackendPort { number: None, name: Some(port.into()) },
    };
    IngressBackend { service: Some(IngressServiceBackend { name: name.into(), port: Some(port) }), resource: None }
}

fn path(path_type: &str, path: &str, to: &str) -> HTTPIngressPath {
    HTTPIngressPath { path: Some(path.into()), path_type: path_type.into(), backend: svc_backend(to, "80") }
}

fn rule(host: &str, paths: Vec<HTTPIngressPath>) -> IngressRule {
    IngressRule { host: (!host.is_empty()).then(|| host.to_string()), http: Some(HTTPIngressRuleValue { paths }) }
}

fn ingress(rules: Vec<IngressRule>) -> Ingress {
    Ingress {
        metadata: ObjectMeta { name: Some("web".into()), namespace: Some("shop".into()), ..Default::default() },
        spec: Some(IngressSpec { rules: Some(rules), ..Default::default() }),
        status: None,
    }
}

fn with_ann(mut ing: Ingress, k: &str, v: &str) -> Ingress {
    ing.metadata.annotations.get_or_insert_with(Default::default).insert(k.into(), v.into());
    ing
}

fn service(name: &str, type_: &str, ports: &[(i32, Option<&str>, Option<i32>)]) -> Arc<Service> {
    Arc::new(Service {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some("shop".into()), ..Default::default() },
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(port, name, node_port)| K8sPort {
                        port: *port,
                        name: name.map(Into::into),
                        node_port: *node_port,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    })
}

/// A self-signed certificate for `host` and its key, PEM.
fn pem_pair(host: &str) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("rcgen");
    (c.cert.pem(), c.signing_key.serialize_pem())
}

fn tls_secret(name: &str, crt: &str, key: &str) -> Arc<Secret> {
    Arc::new(Secret {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some("shop".into()), ..Default::default() },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_string(), ByteString(crt.as_bytes().to_vec())),
            ("tls.key".to_string(), ByteString(key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    })
}

/// The cluster the builder sees: Services, Secrets, last-good certificates, two nodes.
struct World {
    services: Vec<Arc<Service>>,
    secrets: Vec<Arc<Secret>>,
    last_good: Vec<Certificate>,
    nodes: NodeSnapshot,
    config: IngressConfig,
}

impl World {
    fn new() -> Self {
        let node = |n: &str, ip: &str| EligibleNode {
            target: Target {
                node: n.into(),
                provider_id: None,
                addresses: vec![NodeAddress { kind: AddressKind::InternalIP, address: ip.into() }],
            },
            labels: BTreeMap::new(),
        };
        World {
            services: vec![
                service("app", "NodePort", &[(80, Some("http"), Some(30080))]),
                service("api", "LoadBalancer", &[(80, None, Some(30081)), (9090, Some("metrics"), Some(30090))]),
                service("internal", "ClusterIP", &[(80, None, None)]),
            ],
            secrets: Vec::new(),
            last_good: Vec::new(),
            nodes: NodeSnapshot::new(vec![node("n1", "10.0.0.1"), node("n2", "10.0.0.2")]),
            config: IngressConfig { http_port: 8080, https_port: 8443, ..Default::default() },
        }
    }

    fn build(&self, ing: &Ingress) -> Result<Built, Invalid> {
        let services = |ns: &str, name: &str| {
            self.services
                .iter()
                .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name))
                .cloned()
        };
        let secrets = |ns: &str, name: &str| {
            self.secrets
                .iter()
                .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name))
                .cloned()
        };
        let last_good = |name: &str| self.last_good.iter().find(|c| c.name == name).cloned();
        let inputs = Inputs {
            services: &services,
            secrets: &secrets,
            last_good: &last_good,
            nodes: &self.nodes,
            config: &self.config,
        };
        build(ing, &inputs)
    }
}

fn route_to(spec: &L7Spec, host: &str, p: &str) -> String {
    match spec.select(&Request { host, path: p, method: "GET", headers: &[], query: &[] }) {
        RouteAction::Forward(b) => b[0].backend.service.clone(),
        RouteAction::Fixed { status } => status.to_string(),
    }
}

#[test]
fn rules_become_hosts_and_routes_in_precedence_order() {
    let ing = ingress(vec![
        rule(
            "foo.example",
            vec![path("Prefix", "/", "app"), path("Prefix", "/api", "api"), path("Exact", "/api", "app")],
        ),
        rule("*.example", vec![path("Prefix", "/", "api")]),
        rule("", vec![path("ImplementationSpecific", "/static", "app")]),
        // A second rule for the same host adds to it.
        rule("foo.example", vec![path("Prefix", "/api/v2", "app")]),
    ]);
    let built = World::new().build(&ing).expect("valid");
    let spec = &built.spec;
    assert!(built.warnings.is_empty(), "{:?}", built.warnings);
    let hosts: Vec<&HostMatch> = spec.virtual_hosts.iter().map(|v| &v.host).collect();
    assert_eq!(
        hosts,
        [&HostMatch::Exact("foo.example".into()), &HostMatch::Wildcard("example".into()), &HostMatch::Any]
    );
    let foo: Vec<&PathMatch> = spec.virtual_hosts[0].routes.iter().map(|r| &r.matches.path).collect();
    assert_eq!(
        foo,
        [
            &PathMatch::Prefix("/api/v2".into()),
            &PathMatch::Exact("/api".into()),
            &PathMatch::Prefix("/api".into()),
            &PathMatch::Prefix("/".into())
        ]
    );
    let cases = [
        ("foo.example", "/api", "app"),
        ("foo.example", "/api/x", "api"),
        ("foo.example", "/api/v2/x", "app"),
        ("foo.example", "/", "app"),
        ("bar.example", "/anything", "api"),
        ("a.b.example", "/static/x", "app"),
        ("other.test", "/static", "app"),
        ("other.test", "/dynamic", "404"),
    ];
    for (host, p, want) in cases {
        assert_eq!(route_to(spec, host, p), want, "{host}{p}");
    }
    assert_eq!(spec.listeners.len(), 1);
    assert_eq!((spec.listeners[0].port, spec.listeners[0].protocol), (8080, L7Protocol::Http));
    assert_eq!(spec.targets.len(), 2);
    assert!(Arc::ptr_eq(&spec.targets, &World::new().nodes.all_targets) || spec.targets.len() == 2);
}

#[test]
fn backends_resolve_to_node_ports_or_say_why_not() {
    let mut named = path("Prefix", "/metrics", "api");
    named.backend = svc_backend("api", "metrics");
    let ing = ingress(vec![rule(
        "",
        vec![
            path("Prefix", "/app", "app"),
            named,
            path("Prefix", "/internal", "internal"),
            path("Prefix", "/gone", "missing"),
        ],
    )]);
    let built = World::new().build(&ing).expect("valid: unresolved backends only get 503");
    let by_name = |n: &str| built.spec.backends.iter().find(|b| b.id.service == n).expect("backend present");
    assert_eq!(by_name("app").node_port, Some(30080));
    assert_eq!(by_name("api").node_port, Some(30090), "named port resolves");
    assert_eq!(by_name("internal").node_port, None);
    assert!(by_name("internal").problem.as_deref().unwrap().contains("type ClusterIP"));
    assert!(by_name("missing").problem.as_deref().unwrap().contains("does not exist"));
    assert_eq!(built.warnings.len(), 2, "{:?}", built.warnings);
    assert!(built.warnings.iter().any(|w| w.contains("shop/missing:80") && w.contains("503")));
}

#[test]
fn bad_paths_duplicates_and_resource_backends_are_skipped_not_fatal() {
    let mut resource = path("Prefix", "/bucket", "app");
    resource.backend = IngressBackend { service: None, resource: Some(Default::default()) };
    let ing = ingress(vec![
        rule(
            "foo.example",
            vec![
                path("Prefix", "/ok", "app"),
                path("Prefix", "/ok/", "api"),
                path("Exact", "/img/*.png", "app"),
                path("ImplementationSpecific", "/v[0-9]+", "app"),
                path("Prefix", "relative", "app"),
                path("Fuzzy", "/x", "app"),
                resource,
            ],
        ),
        rule("bad*host.example", vec![path("Prefix", "/", "app")]),
    ]);
    let built = World::new().build(&ing).expect("only parts are skipped");
    assert_eq!(built.spec.route_count(), 1, "only /ok survives");
    assert_eq!(built.warnings.len(), 7, "{:#?}", built.warnings);
    for needle in
        ["listed twice", "*.png", "regular expressions", "absolute path", "Fuzzy", "resource backends", "bad*host"]
    {
        assert!(
            built.warnings.iter().any(|w| w.contains(needle)),
            "no warning mentions {needle}: {:#?}",
            built.warnings
        );
    }
}

#[test]
fn default_backend_and_no_rules() {
    let mut ing = ingress(vec![]);
    ing.spec.as_mut().unwrap().default_backend = Some(svc_backend("app", "http"));
    let built = World::new().build(&ing).expect("valid");
    assert_eq!(route_to(&built.spec, "any", "/whatever"), "app");
    assert_eq!(built.spec.backends[0].node_port, Some(30080));
    let empty = World::new().build(&ingress(vec![])).expect("an Ingress without rules is valid");
    assert_eq!(route_to(&empty.spec, "any", "/"), "404");
}

#[test]
fn tls_secrets_become_certificates_and_https_listeners() {
    let (crt, key) = pem_pair("foo.example");
    let (other_crt, _) = pem_pair("other.example");
    let mut world = World::new();
    world.secrets = vec![tls_secret("foo-tls", &crt, &key), tls_secret("mismatch", &other_crt, &key)];
    let mut ing = ingress(vec![rule("foo.example", vec![path("Prefix", "/", "app")])]);
    ing.spec.as_mut().unwrap().tls = Some(vec![
        IngressTLS { hosts: Some(vec!["foo.example".into()]), secret_name: Some("foo-tls".into()) },
        IngressTLS { hosts: Some(vec!["bad.example".into()]), secret_name: Some("mismatch".into()) },
        IngressTLS { hosts: Some(vec!["gone.example".into()]), secret_name: Some("missing".into()) },
    ]);
    let built = world.build(&ing).expect("valid");
    let spec = &built.spec;
    assert_eq!(spec.certificates.len(), 1);
    assert_eq!(spec.certificates[0].name, "shop/foo-tls");
    assert_eq!(spec.certificates[0].hosts, vec!["foo.example".to_string()]);
    let ports: Vec<(u16, L7Protocol)> = spec.listeners.iter().map(|l| (l.port, l.protocol)).collect();
    assert_eq!(ports, [(8080, L7Protocol::Http), (8443, L7Protocol::Https)]);
    assert_eq!(built.valid_certificates.len(), 1);
    assert!(
        built.warnings.iter().any(|w| w.contains("shop/mismatch") && w.contains("do not form")),
        "{:?}",
        built.warnings
    );
    assert!(built.warnings.iter().any(|w| w.contains("shop/missing") && w.contains("does not exist")));

    // The broken Secret had a good certificate before: it goes on serving.
    world.last_good = vec![Certificate::new("shop/mismatch".into(), vec![], crt.clone(), key.clone())];
    let built = world.build(&ing).expect("valid");
    assert_eq!(built.spec.certificates.len(), 2);
    let kept = built.spec.certificates.iter().find(|c| c.name == "shop/mismatch").unwrap();
    assert_eq!(kept.hosts, vec!["bad.example".to_string()], "hosts come from the Ingress as it is now");
    assert!(built.warnings.iter().any(|w| w.contains("previous certificate goes on serving")));
    assert_eq!(built.valid_certificates.len(), 1, "a kept certificate is not re-validated as current");
}

#[test]
fn redirect_and_allow_http() {
    let (crt, key) = pem_pair("foo.example");
    let mut world = World::new();
    world.secrets = vec![tls_secret("foo-tls", &crt, &key)];
    let mut ing = ingress(vec![rule("foo.example", vec![path("Prefix", "/", "app")])]);
    ing = with_ann(ing, crate::keys::ingress::SSL_REDIRECT, "true");
    let no_tls = world.build(&ing).expect("valid");
    assert_eq!(no_tls.spec.listeners[0].redirect_to_https, None, "no TLS: nothing to redirect to");
    assert!(no_tls.warnings.iter().any(|w| w.contains("redirect")));
    ing.spec.as_mut().unwrap().tls =
        Some(vec![IngressTLS { hosts: Some(vec!["foo.example".into()]), secret_name: Some("foo-tls".into()) }]);
    let built = world.build(&ing).expect("valid");
    assert_eq!(built.spec.listeners[0].redirect_to_https, Some(8443));
    let https_only = world.build(&with_ann(ing.clone(), crate::keys::ingress::ALLOW_HTTP, "false")).expect("valid");
    assert_eq!(https_only.spec.listeners.len(), 1);
    assert_eq!(https_only.spec.listeners[0].protocol, L7Protocol::Https);
    // GKE's name for it works too; ours wins when both are set.
    let gke = world.build(&with_ann(ing.clone(), crate::keys::ingress::ALLOW_HTTP_GCE, "false")).expect("valid");
    assert_eq!(gke.spec.listeners, https_only.spec.listeners);
    let both = with_ann(
        with_ann(ing.clone(), crate::keys::ingress::ALLOW_HTTP_GCE, "false"),
        crate::keys::ingress::ALLOW_HTTP,
        "true",
    );
    assert_eq!(world.build(&both).expect("valid").spec.listeners.len(), 2);
    ing.spec.as_mut().unwrap().tls = None;
    let err = world.build(&with_ann(ing, crate::keys::ingress::ALLOW_HTTP, "false")).unwrap_err();
    assert!(err.to_string().contains("would serve nothing"), "{err}");
}

#[test]
fn malformed_annotations_make_the_ingress_invalid_naming_each() {
    let ing = ingress(vec![rule("", vec![path("Prefix", "/", "app")])]);
    let cases = [
        (crate::keys::ingress::SOURCE_RANGES, "10.0.0.0/33", "is not a CIDR"),
        (crate::keys::ingress::LOAD_BALANCER_IP, "not-an-ip", "is not an IP"),
        (crate::keys::ingress::REQUEST_TIMEOUT, "0", "from 1 to 3600"),
        (crate::keys::ingress::SSL_REDIRECT, "yes", "not a boolean"),
        (crate::keys::ingress::HEALTHCHECK_PATH, "healthz", "starting with /"),
        (crate::keys::ANN_HC_INTERVAL, "0", "from 1 to 300"),
        (crate::keys::ANN_INTERNAL, "maybe", "not a boolean"),
    ];
    for (key, value, needle) in cases {
        let err = World::new().build(&with_ann(ing.clone(), key, value)).unwrap_err();
        assert!(err.to_string().contains(key) || err.to_string().contains(value), "{key}: {err}");
        assert!(err.to_string().contains(needle), "{key}: {err}");
    }
}

#[test]
fn annotations_shape_the_load_balancer() {
    let ing = ingress(vec![rule("", vec![path("Prefix", "/", "app")])]);
    let ing = with_ann(ing, crate::keys::ingress::SOURCE_RANGES, "10.0.0.0/8, 192.168.1.7");
    let ing = with_ann(ing, crate::keys::ingress::LOAD_BALANCER_IP, "127.240.0.9");
    let ing = with_ann(ing, crate::keys::ingress::CONNECT_TIMEOUT, "2");
    let ing = with_ann(ing, crate::keys::ingress::HEALTHCHECK_PATH, "/healthz");
    let ing = with_ann(ing, crate::keys::ANN_INTERNAL, "true");
    let ing = with_ann(ing, "memory.cloudlb.io/flavour", "blue");
    let mut world = World::new();
    world.config.desired.option_prefixes = vec!["memory.cloudlb.io/".into()];
    let spec = world.build(&ing).expect("valid").spec;
    assert_eq!(spec.source_ranges.len(), 2);
    assert!(spec.restricts_sources());
    assert_eq!(spec.requested_ip, Some("127.240.0.9".parse().unwrap()));
    assert_eq!(spec.timeouts.connect_seconds, 2);
    assert_eq!(spec.scheme, cloudlb_provider::Scheme::Internal);
    assert_eq!(spec.backends[0].health_check.path.as_deref(), Some("/healthz"));
    assert_eq!(spec.options.get("flavour").map(String::as_str), Some("blue"));
}

#[test]
fn same_inputs_same_hash_and_changes_are_seen() {
    let ing = ingress(vec![rule("foo.example", vec![path("Prefix", "/", "app"), path("Exact", "/x", "api")])]);
    let world = World::new();
    let a = world.build(&ing).unwrap().spec.hash();
    assert_eq!(a, world.build(&ing).unwrap().spec.hash());
    let mut moved = World::new();
    moved.services[0] = service("app", "NodePort", &[(80, Some("http"), Some(30099))]);
    let b = moved.build(&ing).unwrap().spec.hash();
    assert_ne!(a, b, "a nodePort change is a change");
    assert_eq!(a.split('.').nth(1), b.split('.').nth(1), "...of the front end, not of the targets");
}

#[test]
fn references_are_listed_for_resyncs() {
    let mut ing = ingress(vec![rule(
        "",
        vec![path("Prefix", "/", "app"), path("Prefix", "/b", "api"), path("Prefix", "/c", "app")],
    )]);
    ing.spec.as_mut().unwrap().default_backend = Some(svc_backend("fallback", "80"));
    ing.spec.as_mut().unwrap().tls = Some(vec![IngressTLS { hosts: None, secret_name: Some("cert".into()) }]);
    let svcs: Vec<String> = referenced_services(&ing).into_iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
    assert_eq!(svcs, ["shop/api", "shop/app", "shop/fallback"]);
    assert_eq!(referenced_secrets(&ing), [("shop".to_string(), "cert".to_string())]);
}

#[test]
fn provider_without_l7_is_refused_before_any_call() {
    let ing = ingress(vec![rule("", vec![path("Prefix", "/", "app")])]);
    let memory = MemoryProvider::new(MemoryConfig::default()).unwrap();
    let mut caps = memory.capabilities();
    let world = World::new();
    let services = |ns: &str, name: &str| {
        world
            .services
            .iter()
            .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(name))
            .cloned()
    };
    let inputs = Inputs {
        services: &services,
        secrets: &|_, _| None,
        last_good: &|_| None,
        nodes: &world.nodes,
        config: &world.config,
    };
    assert!(build_for(&ing, &inputs, &caps, &memory).is_ok());
    caps.l7 = None;
    let err = build_for(&ing, &inputs, &caps, &memory).unwrap_err();
    assert!(err.to_string().contains("does not build HTTP load balancers"), "{err}");
}
