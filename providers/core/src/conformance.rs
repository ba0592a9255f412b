//! The conformance suite every provider runs (memory in unit tests; aws against moto, gcp
//! against its fake, local against real sockets in their own crates).
//!
//! Each check uses its own ids, so checks do not interfere and can run against a shared
//! backend. Checks panic with a message naming the broken guarantee (they are test code).

use std::collections::BTreeMap;

use crate::l7::{
    Backend, BackendRef, HostMatch, L7Listener, L7Protocol, L7Spec, L7Timeouts, PathMatch, Route, RouteAction,
    RouteMatch, RouteOrigin, ServicePort, VirtualHost, WeightedBackend, WildcardSemantics,
};
use crate::provider::Provider;
use crate::spec::{
    AddressKind, HealthCheck, HealthCheckProtocol, HealthTarget, IpFamily, Listener, LoadBalancerId, LoadBalancerSpec,
    NodeAddress, Protocol, Scheme, SessionAffinity, Target,
};

/// The cluster name the suite uses.
pub const CLUSTER: &str = "conformance";

/// An id unique to this process run and `name`.
pub fn id(name: &str) -> LoadBalancerId {
    LoadBalancerId::new(CLUSTER, "conformance", name, format!("{name}-{}-{}", std::process::id(), unique()))
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A node target with an InternalIP on loopback.
pub fn target(node: &str, ip: &str) -> Target {
    Target {
        node: node.into(),
        provider_id: None,
        addresses: vec![NodeAddress { kind: AddressKind::InternalIP, address: ip.into() }],
    }
}

/// A minimal TCP spec with the given ports (node ports 30000 + port).
pub fn spec(ports: &[u16]) -> LoadBalancerSpec {
    LoadBalancerSpec {
        listeners: ports
            .iter()
            .map(|p| Listener { port: *p, protocol: Protocol::Tcp, node_port: 30000 + p % 2000, name: None })
            .collect(),
        targets: vec![target("node-a", "127.0.0.1")].into(),
        health_check: HealthCheck {
            target: HealthTarget::KubeProxy,
            protocol: HealthCheckProtocol::Tcp,
            port: None,
            path: None,
            interval_seconds: 10,
            timeout_seconds: 5,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        },
        source_ranges: vec!["0.0.0.0/0".parse().expect("literal CIDR")],
        requested_ip: None,
        scheme: Scheme::InternetFacing,
        session_affinity: SessionAffinity::None,
        ip_families: vec![IpFamily::IPv4],
        options: BTreeMap::new(),
    }
}

/// Runs every check.
pub async fn run_all(p: &dyn Provider) {
    ensure_then_get(p).await;
    ensure_is_idempotent(p).await;
    update_converges_in_place(p).await;
    delete_removes_everything(p).await;
    delete_of_nothing_succeeds(p).await;
    distinct_ids_get_distinct_load_balancers(p).await;
    record_is_enough_to_delete(p).await;
}

pub async fn ensure_then_get(p: &dyn Provider) {
    let id = id("get");
    assert!(p.get(&id, None).await.expect("get before ensure").is_none(), "get before ensure must be None");
    let st = p.ensure(&id, &spec(&[80]), None).await.expect("ensure");
    assert!(!st.ingress.is_empty(), "ensure must return an address");
    let got = p.get(&id, Some(&st.record)).await.expect("get").expect("get after ensure must be Some");
    assert_eq!(got.ingress, st.ingress, "get must report the address ensure returned");
    p.delete(&id, Some(&st.record)).await.expect("cleanup");
}

pub async fn ensure_is_idempotent(p: &dyn Provider) {
    let id = id("idem");
    let s = spec(&[80, 443]);
    let a = p.ensure(&id, &s, None).await.expect("first ensure");
    let b = p.ensure(&id, &s, Some(&a.record)).await.expect("second ensure");
    assert_eq!(a.ingress, b.ingress, "same spec twice must give the same address");
    assert_eq!(a.record, b.record, "same spec twice must give the same record");
    // Without the record too (a crash before the record was written).
    let c = p.ensure(&id, &s, None).await.expect("ensure without record");
    assert_eq!(a.ingress, c.ingress, "ensure must find its own resources without the record");
    p.delete(&id, Some(&a.record)).await.expect("cleanup");
}

pub async fn update_converges_in_place(p: &dyn Provider) {
    let id = id("update");
    let a = p.ensure(&id, &spec(&[80]), None).await.expect("ensure");
    let mut changed = spec(&[80, 8080]);
    std::sync::Arc::make_mut(&mut changed.targets).push(target("node-b", "127.0.0.2"));
    let b = p.ensure(&id, &changed, Some(&a.record)).await.expect("update");
    assert_eq!(a.ingress, b.ingress, "an update must keep the address");
    // `get` must see the load balancer; a provider that can report which spec it implements
    // must report the new one (one that cannot, like gcp, says `None`, never a stale hash).
    let got = p.get(&id, Some(&b.record)).await.expect("get").expect("get must find the updated load balancer");
    assert_eq!(got.ingress, b.ingress, "get must report the address ensure returned");
    if let Some(hash) = got.spec_hash {
        assert_eq!(hash, changed.hash(), "get must report the updated spec");
    }
    p.delete(&id, Some(&b.record)).await.expect("cleanup");
}

pub async fn delete_removes_everything(p: &dyn Provider) {
    let id = id("delete");
    let st = p.ensure(&id, &spec(&[80]), None).await.expect("ensure");
    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(p.get(&id, Some(&st.record)).await.expect("get").is_none(), "nothing may remain after delete");
    p.delete(&id, Some(&st.record)).await.expect("a second delete must succeed");
}

pub async fn delete_of_nothing_succeeds(p: &dyn Provider) {
    let id = id("never");
    p.delete(&id, None).await.expect("delete of an id never ensured must succeed");
}

pub async fn distinct_ids_get_distinct_load_balancers(p: &dyn Provider) {
    let a = id("distinct");
    let b = id("distinct");
    let sa = p.ensure(&a, &spec(&[80]), None).await.expect("ensure a");
    let sb = p.ensure(&b, &spec(&[80]), None).await.expect("ensure b");
    p.delete(&a, Some(&sa.record)).await.expect("delete a");
    assert!(p.get(&b, Some(&sb.record)).await.expect("get b").is_some(), "deleting one id must not touch another");
    p.delete(&b, Some(&sb.record)).await.expect("delete b");
}

pub async fn record_is_enough_to_delete(p: &dyn Provider) {
    // Deletion must not depend on the spec (the user may have changed annotations since).
    let id = id("record");
    let mut s = spec(&[80]);
    s.options.insert("some-option".into(), "value".into());
    let st = p.ensure(&id, &s, None).await.expect("ensure");
    p.delete(&id, Some(&st.record)).await.expect("delete from record");
    assert!(p.get(&id, Some(&st.record)).await.expect("get").is_none(), "delete from the record left something");
}

/// An HTTP spec: one listener on `port`, host `foo.example` with `/a` and `/b` to two backends,
/// everything else 404.
pub fn l7_spec(port: u16) -> L7Spec {
    let backend = |svc: &str, node_port: u16| Backend {
        id: BackendRef { namespace: "conformance".into(), service: svc.into(), port: ServicePort::Number(80) },
        node_port: Some(node_port),
        problem: None,
        health_check: spec(&[80]).health_check,
    };
    let route = |path: &str, svc: &str, index: u32| Route {
        matches: RouteMatch::path(PathMatch::Prefix(path.into())),
        action: RouteAction::Forward(vec![WeightedBackend { backend: backend(svc, 0).id, weight: 1 }]),
        origin: RouteOrigin {
            kind: "Ingress".into(),
            namespace: "conformance".into(),
            name: "web".into(),
            rule: 0,
            index,
        },
    };
    let mut vhost =
        VirtualHost { host: HostMatch::parse("foo.example"), routes: vec![route("/a", "a", 0), route("/b", "b", 1)] };
    vhost.sort_routes();
    L7Spec {
        listeners: vec![L7Listener { port, protocol: L7Protocol::Http, redirect_to_https: None }],
        wildcards: WildcardSemantics::SingleLabel,
        virtual_hosts: vec![vhost],
        default_action: RouteAction::not_found(),
        backends: vec![backend("a", 30081), backend("b", 30082)],
        certificates: Vec::new(),
        targets: vec![target("node-a", "127.0.0.1")].into(),
        source_ranges: vec!["0.0.0.0/0".parse().expect("literal CIDR")],
        requested_ip: None,
        scheme: Scheme::InternetFacing,
        timeouts: L7Timeouts::default(),
        options: BTreeMap::new(),
    }
}

/// Runs every L7 check; the provider must declare [`crate::Capabilities::l7`].
pub async fn run_all_l7(p: &dyn Provider) {
    assert!(p.capabilities().l7.is_some(), "run_all_l7 needs a provider that declares L7 capabilities");
    let problems = p.capabilities().l7.map(|c| c.check(&l7_spec(L7_PORT))).unwrap_or_default();
    assert!(problems.is_empty(), "the conformance L7 spec must be buildable: {problems:?}");
    l7_ensure_get_update_delete(p).await;
    l7_delete_of_nothing_succeeds(p).await;
    l7_and_l4_ids_are_separate(p).await;
}

/// The port the L7 checks listen on (unprivileged, so local providers can run them as any user).
pub const L7_PORT: u16 = 18080;

pub async fn l7_ensure_get_update_delete(p: &dyn Provider) {
    let id = id("l7");
    assert!(p.get_l7(&id, None).await.expect("get_l7 before ensure").is_none(), "get_l7 before ensure must be None");
    let s = l7_spec(L7_PORT);
    let a = p.ensure_l7(&id, &s, None).await.expect("ensure_l7");
    assert!(!a.ingress.is_empty(), "ensure_l7 must return an address");
    let again = p.ensure_l7(&id, &s, Some(&a.record)).await.expect("second ensure_l7");
    assert_eq!((&a.ingress, &a.record), (&again.ingress, &again.record), "ensure_l7 must be idempotent");
    let without = p.ensure_l7(&id, &s, None).await.expect("ensure_l7 without record");
    assert_eq!(a.ingress, without.ingress, "ensure_l7 must find its own load balancer without the record");

    let mut changed = s.clone();
    changed.virtual_hosts[0].routes.pop();
    std::sync::Arc::make_mut(&mut changed.targets).push(target("node-b", "127.0.0.2"));
    let b = p.ensure_l7(&id, &changed, Some(&a.record)).await.expect("update");
    assert_eq!(a.ingress, b.ingress, "an update must keep the address");
    let got = p.get_l7(&id, Some(&b.record)).await.expect("get_l7").expect("get_l7 after ensure must be Some");
    assert_eq!(got.ingress, b.ingress, "get_l7 must report the address ensure_l7 returned");
    let hash = got.spec_hash.expect("get_l7 must report the hash of the spec it implements (the drift check needs it)");
    assert_eq!(hash, changed.hash(), "get_l7 must report the updated spec");

    p.delete_l7(&id, Some(&b.record)).await.expect("delete_l7");
    assert!(p.get_l7(&id, Some(&b.record)).await.expect("get_l7").is_none(), "nothing may remain after delete_l7");
    p.delete_l7(&id, Some(&b.record)).await.expect("a second delete_l7 must succeed");
}

pub async fn l7_delete_of_nothing_succeeds(p: &dyn Provider) {
    p.delete_l7(&id("l7-never"), None).await.expect("delete_l7 of an id never ensured must succeed");
}

pub async fn l7_and_l4_ids_are_separate(p: &dyn Provider) {
    let l4 = id("kinds-l4");
    let l7 = id("kinds-l7");
    let s4 = p.ensure(&l4, &spec(&[L7_PORT + 1]), None).await.expect("ensure l4");
    let s7 = p.ensure_l7(&l7, &l7_spec(L7_PORT + 2), None).await.expect("ensure l7");
    assert!(p.get_l7(&l4, Some(&s4.record)).await.expect("get_l7 of an L4 id").is_none(), "an L4 id is not an L7 one");
    assert!(p.get(&l7, Some(&s7.record)).await.expect("get of an L7 id").is_none(), "an L7 id is not an L4 one");
    p.delete_l7(&l4, Some(&s4.record)).await.expect("delete_l7 of an L4 id");
    assert!(
        p.get(&l4, Some(&s4.record)).await.expect("get l4").is_some(),
        "delete_l7 must not delete an L4 load balancer"
    );
    p.delete(&l4, Some(&s4.record)).await.expect("delete l4");
    p.delete_l7(&l7, Some(&s7.record)).await.expect("delete l7");
}
