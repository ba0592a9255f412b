use super::*;
use cloudlb_provider::Scheme;
use cloudlb_provider::conformance;
use cloudlb_provider::l7::{
    BackendRef, HostMatch, PathMatch, Request, Route, RouteMatch, RouteOrigin, ServicePort, VirtualHost,
    WeightedBackend,
};
use kube::api::ObjectMeta;

fn to(svc: &str) -> RouteAction {
    RouteAction::Forward(vec![WeightedBackend {
        backend: BackendRef { namespace: "ns".into(), service: svc.into(), port: ServicePort::Number(80) },
        weight: 1,
    }])
}

/// A member `ns/<name>` with host `shop.example` and `paths` (path, Service).
fn member(name: &str, order: i32, paths: &[(&str, &str)]) -> Member {
    let mut spec = conformance::l7_spec(80);
    let routes = paths
        .iter()
        .enumerate()
        .map(|(i, (p, svc))| Route {
            matches: RouteMatch::path(PathMatch::Prefix((*p).into())),
            action: to(svc),
            origin: RouteOrigin {
                kind: "Ingress".into(),
                namespace: "ns".into(),
                name: name.into(),
                rule: 0,
                index: i as u32,
            },
        })
        .collect();
    let mut v = VirtualHost { host: HostMatch::parse("shop.example"), routes };
    v.sort_routes();
    spec.virtual_hosts = vec![v];
    Member { key: format!("ns/{name}"), order, spec }
}

fn select<'a>(spec: &'a L7Spec, path: &str) -> &'a RouteAction {
    spec.select(&Request { host: "shop.example", path, method: "GET", headers: &[], query: &[] })
}

#[test]
fn with_the_default_order_the_group_routes_like_one_ingress() {
    let m = merge("g", vec![member("a", 0, &[("/", "web")]), member("b", 0, &[("/api", "api")])]);
    let spec = m.spec.clone().expect("merged");
    assert_eq!(select(&spec, "/api/x"), &to("api"), "the longer path wins across members");
    assert_eq!(select(&spec, "/other"), &to("web"));
    assert!(m.excluded.is_empty() && m.warnings.is_empty(), "{m:?}");
}

#[test]
fn a_lower_group_order_puts_a_members_paths_first() {
    let m = merge("g", vec![member("a", 0, &[("/api", "api")]), member("deny", -10, &[("/", "deny")])]);
    let spec = m.spec.clone().expect("merged");
    assert_eq!(select(&spec, "/api"), &to("deny"));
}

#[test]
fn a_member_with_another_scheme_is_left_out_and_named_the_rest_works() {
    let mut b = member("b", 0, &[("/b", "b")]);
    b.spec.scheme = Scheme::Internal;
    let m = merge("g", vec![member("a", 0, &[("/a", "a")]), b]);
    assert!(m.excluded["ns/b"].contains("ns/a"), "{m:?}");
    let spec = m.spec.clone().expect("merged");
    assert_eq!(select(&spec, "/a"), &to("a"));
    assert_eq!(select(&spec, "/b"), &RouteAction::not_found());
}

#[test]
fn conflicts_keep_the_first_members_and_warn_the_later_one() {
    let mut b = member("b", 0, &[("/a", "other")]);
    b.spec.default_action = to("fallback-b");
    b.spec.options.insert("ssl-policy".into(), "p2".into());
    let mut a = member("a", 0, &[("/a", "a")]);
    a.spec.default_action = to("fallback-a");
    a.spec.options.insert("ssl-policy".into(), "p1".into());
    let m = merge("g", vec![b, a]);
    let spec = m.spec.clone().expect("merged");
    assert_eq!(select(&spec, "/a"), &to("a"));
    assert_eq!(spec.default_action, to("fallback-a"));
    assert_eq!(spec.options["ssl-policy"], "p1");
    assert_eq!(m.warnings["ns/b"].len(), 3, "{m:?}");
    assert!(!m.warnings.contains_key("ns/a"));
}

fn ingress(annotations: &[(&str, &str)]) -> Ingress {
    Ingress {
        metadata: ObjectMeta {
            annotations: Some(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn group_annotations_are_checked() {
    assert_eq!(group_of(&ingress(&[])), Ok(None));
    assert_eq!(group_of(&ingress(&[(ann::GROUP_NAME, "shop")])), Ok(Some(("shop".into(), 0))));
    assert_eq!(
        group_of(&ingress(&[(ann::ALB_GROUP_NAME, "a.b-c"), (ann::ALB_GROUP_ORDER, "-5")])),
        Ok(Some(("a.b-c".into(), -5)))
    );
    assert!(group_of(&ingress(&[(ann::GROUP_NAME, "Shop")])).unwrap_err().contains(ann::GROUP_NAME));
    assert!(
        group_of(&ingress(&[(ann::GROUP_NAME, "shop"), (ann::GROUP_ORDER, "2000")])).unwrap_err().contains("-1000")
    );
}
