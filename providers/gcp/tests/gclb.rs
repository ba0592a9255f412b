//! Ingresses on the gcp provider: global external Application Load Balancers in the Compute fake,
//! through the real client. What was built is read back through the fake's REST API (the URL map
//! is evaluated with Compute's matching and compared with the model's routing), and behaviour is
//! checked on the fake's call log (make before break, no call when nothing changed).

mod support;

use std::sync::Arc;

use cloudlb_gce_fake::{Fault, FaultKind};
use cloudlb_provider::l7::{
    Backend, BackendRef, Certificate, HostMatch, L7Listener, L7Protocol, PathMatch, Request, Route, RouteAction,
    RouteMatch, RouteOrigin, ServicePort, VirtualHost, WeightedBackend,
};
use cloudlb_provider::{
    ErrorClass, IngressPoint, L7Spec, LoadBalancerStatus, Provider, ProviderError, Target, conformance,
};
use cloudlb_provider_gcp::gclb::evaluate::{self, Outcome};
use cloudlb_provider_gcp::gclb::plan::Names;
use cloudlb_provider_gcp::names;
use google_cloud_compute_v1::model::UrlMap;
use serde_json::{Value, json};
use support::*;

const CERT_1: &str = "-----BEGIN CERTIFICATE-----\nMIIB-one\n-----END CERTIFICATE-----\n";
const CERT_2: &str = "-----BEGIN CERTIFICATE-----\nMIIB-two\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

fn backend_ref(svc: &str) -> BackendRef {
    BackendRef { namespace: "default".into(), service: svc.into(), port: ServicePort::Number(80) }
}

fn route(path: PathMatch, svc: &str, rule: u32, index: u32) -> Route {
    Route {
        matches: RouteMatch::path(path),
        action: RouteAction::Forward(vec![WeightedBackend { backend: backend_ref(svc), weight: 1 }]),
        origin: RouteOrigin { kind: "Ingress".into(), namespace: "default".into(), name: "web".into(), rule, index },
    }
}

/// The Ingress: `app.example` (Prefix `/` -> app, Prefix `/api` -> api) and
/// `shop.example` (Exact `/cart` -> shop), TLS for app.example, HTTP and HTTPS, 404 otherwise.
fn ingress(targets: &[Target], backends: &[(&str, u16)], cert: &str) -> L7Spec {
    let mut app = VirtualHost {
        host: HostMatch::parse("app.example"),
        routes: vec![
            route(PathMatch::Prefix("/".into()), "app", 0, 0),
            route(PathMatch::Prefix("/api".into()), "api", 0, 1),
        ],
    };
    app.sort_routes();
    let shop = VirtualHost {
        host: HostMatch::parse("shop.example"),
        routes: vec![route(PathMatch::Exact("/cart".into()), "shop", 1, 0)],
    };
    let mut s = conformance::l7_spec(80);
    s.listeners = vec![
        L7Listener { port: 80, protocol: L7Protocol::Http, redirect_to_https: None },
        L7Listener { port: 443, protocol: L7Protocol::Https, redirect_to_https: None },
    ];
    s.virtual_hosts = vec![app, shop];
    s.sort_virtual_hosts();
    let hc = s.backends[0].health_check.clone();
    let mut list: Vec<Backend> = backends
        .iter()
        .map(|(svc, np)| Backend {
            id: backend_ref(svc),
            node_port: Some(*np),
            problem: None,
            health_check: hc.clone(),
        })
        .collect();
    list.sort_by(|a, b| a.id.cmp(&b.id));
    s.backends = list;
    s.certificates =
        vec![Certificate::new("default/app-tls".into(), vec!["app.example".into()], cert.into(), KEY.into())];
    let mut t = targets.to_vec();
    t.sort();
    s.targets = t.into();
    s
}

const BACKENDS: &[(&str, u16)] = &[("api", 30081), ("app", 30080), ("shop", 30082)];

fn ip_of(st: &LoadBalancerStatus) -> String {
    match st.ingress.as_slice() {
        [IngressPoint::Ip(ip)] => ip.to_string(),
        other => panic!("expected one IP, got {other:?}"),
    }
}

fn g(rel: &str) -> String {
    format!("global/{rel}")
}

fn tail(link: &str) -> &str {
    link.find("projects/").map(|i| &link[i..]).unwrap_or(link)
}

/// The URL map as the fake stores it, in the client's model.
async fn url_map(w: &World, name: &str) -> UrlMap {
    let v = w.get(&g(&format!("urlMaps/{name}"))).await.expect("url map");
    serde_json::from_value(v).expect("a URL map in Compute's JSON")
}

/// Where the model sends `host` + `path`, in the evaluator's terms.
fn model_outcome(spec: &L7Spec, names: &Names, host: &str, path: &str) -> Outcome {
    let req = Request { host, path, method: "GET", headers: &[], query: &[] };
    match spec.select(&req) {
        RouteAction::Fixed { status } => Outcome::Abort(u32::from(*status)),
        RouteAction::Forward(list) => {
            Outcome::Service(format!("projects/{PROJECT}/global/backendServices/{}", names.backend(&list[0].backend)))
        }
    }
}

fn mutation_names(w: &World) -> Vec<String> {
    w.fake
        .mutations()
        .iter()
        .map(|c| {
            let name = c.name.clone().or_else(|| c.body.as_ref().and_then(|b| b["name"].as_str().map(String::from)));
            format!("{} {}/{}", c.verb, c.collection, name.unwrap_or_default())
        })
        .collect()
}

fn position(seq: &[String], want: &str) -> usize {
    seq.iter().position(|s| s == want).unwrap_or_else(|| panic!("{want} not in {seq:#?}"))
}

#[tokio::test]
async fn l7_conformance_suite() {
    let w = World::new(conformance::CLUSTER).await;
    let p = w.provider().await;
    conformance::run_all_l7(&p).await;
    assert!(w.everything().await.is_empty(), "the L7 conformance suite left {:?}", w.everything().await);
}

#[tokio::test]
async fn two_hosts_three_paths_and_tls_get_a_gclb_that_routes_as_kubernetes_says_and_delete_leaves_nothing() {
    let w = World::new("shape").await;
    let p = w.provider().await;
    let id = w.id("web");
    let nodes = [w.node(ZONE_A, "node-a"), w.node(ZONE_B, "node-b")];
    let spec = ingress(&nodes, BACKENDS, CERT_1);
    assert!(p.capabilities().l7.expect("L7 capabilities").check(&spec).is_empty());
    assert!(p.validate_l7(&spec).is_empty(), "{:?}", p.validate_l7(&spec));
    let st = p.ensure_l7(&id, &spec, None).await.expect("ensure_l7");
    let ip = ip_of(&st);
    let n = Names::new(&id);

    // One address, two rules on it, each to its proxy.
    let addr = w.get(&g(&format!("addresses/{}", n.address))).await.expect("our global address");
    assert_eq!(addr["address"].as_str(), Some(ip.as_str()), "the status shows the address's IP");
    for (rule, port, proxy) in [
        (&n.http_rule, "80-80", g(&format!("targetHttpProxies/{}", n.http_proxy))),
        (&n.https_rule, "443-443", g(&format!("targetHttpsProxies/{}", n.https_proxy))),
    ] {
        let fr = w.get(&g(&format!("forwardingRules/{rule}"))).await.expect("forwarding rule");
        assert_eq!(fr["IPAddress"].as_str(), Some(ip.as_str()));
        assert_eq!(fr["portRange"], port);
        assert_eq!(fr["loadBalancingScheme"], "EXTERNAL_MANAGED");
        assert_eq!(tail(fr["target"].as_str().unwrap()), format!("projects/{PROJECT}/{proxy}"));
    }
    let sp = w.get(&g(&format!("targetHttpsProxies/{}", n.https_proxy))).await.expect("https proxy");
    let certs: Vec<&str> = sp["sslCertificates"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(certs.len(), 1);
    assert!(certs[0].ends_with(&n.certificate(&spec.certificates[0])), "{certs:?}");

    // Backend services per backend: EXTERNAL_MANAGED, named port, both zones' groups, own check.
    let ig = names::instance_group("shape");
    for (svc, np) in BACKENDS {
        let name = n.backend(&backend_ref(svc));
        let bs = w.get(&g(&format!("backendServices/{name}"))).await.expect("backend service");
        assert_eq!(bs["loadBalancingScheme"], "EXTERNAL_MANAGED");
        assert_eq!(bs["protocol"], "HTTP");
        assert_eq!(bs["portName"], format!("port{np}"));
        assert_eq!(bs["backends"].as_array().map(Vec::len), Some(2), "{bs}");
        let hc = w.get(&g(&format!("healthChecks/{name}"))).await.expect("health check");
        assert_eq!(hc["httpHealthCheck"]["port"], json!(np));
        assert_eq!(hc["httpHealthCheck"]["requestPath"], "/");
    }
    for zone in [ZONE_A, ZONE_B] {
        let group = w.get(&format!("zones/{zone}/instanceGroups/{ig}")).await.expect("group");
        let mut ports: Vec<i64> =
            group["namedPorts"].as_array().unwrap().iter().filter_map(|p| p["port"].as_i64()).collect();
        ports.sort();
        assert_eq!(ports, [30080, 30081, 30082], "named ports in {zone}");
    }
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-a"]);
    let fw = w.get(&g(&format!("firewalls/{}", n.firewall))).await.expect("firewall");
    assert_eq!(fw["sourceRanges"], json!(["130.211.0.0/22", "35.191.0.0/16"]));
    assert_eq!(fw["allowed"][0]["ports"], json!(["30080", "30081", "30082"]));

    // The URL map routes as the Kubernetes semantics say, request by request.
    let map = url_map(&w, &n.url_map).await;
    let mut checked = 0;
    for host in ["app.example", "APP.example:443", "shop.example", "other.example"] {
        for path in ["/", "/x", "/api", "/api/", "/api/v1", "/apix", "/cart", "/cart/", "/cartx"] {
            let want = model_outcome(&spec, &n, &host.to_ascii_lowercase().replace(":443", ""), path);
            let got = evaluate::evaluate(
                &map,
                &evaluate::Request { authority: host, path, method: "GET", headers: &[], query: &[] },
            );
            assert_eq!(got, want, "{host}{path}");
            checked += 1;
        }
    }
    assert_eq!(checked, 36);
    let api = format!("projects/{PROJECT}/global/backendServices/{}", n.backend(&backend_ref("api")));
    let req = |authority, path| evaluate::Request { authority, path, method: "GET", headers: &[], query: &[] };
    assert_eq!(evaluate::evaluate(&map, &req("app.example", "/api/v1")), Outcome::Service(api));
    assert_eq!(evaluate::evaluate(&map, &req("shop.example", "/cart/")), Outcome::Abort(404), "Exact /cart only");

    // get_l7 reads it back; delete leaves nothing.
    let got = p.get_l7(&id, Some(&st.record)).await.expect("get_l7").expect("exists");
    assert_eq!(got.ingress, st.ingress);
    assert_eq!(got.spec_hash, Some(spec.hash()));
    p.delete_l7(&id, Some(&st.record)).await.expect("delete_l7");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn unchanged_ensure_makes_no_mutating_call_and_a_node_only_touches_membership() {
    let w = World::new("calls").await;
    let p = w.provider().await;
    let id = w.id("web");
    let a = w.node(ZONE_A, "node-a");
    let spec = ingress(std::slice::from_ref(&a), BACKENDS, CERT_1);
    let before = p.call_counts();
    let st = p.ensure_l7(&id, &spec, None).await.expect("ensure");
    let created: u64 = p.call_counts().iter().map(|(k, v)| v - before.get(k).copied().unwrap_or(0)).sum();

    w.fake.clear_calls();
    let before = p.call_counts();
    let again = p.ensure_l7(&id, &spec, Some(&st.record)).await.expect("unchanged");
    assert_eq!(again.record, st.record);
    assert!(w.mutations().is_empty(), "an unchanged ensure changed something: {:?}", w.mutations());
    let reads: u64 = p.call_counts().iter().map(|(k, v)| v - before.get(k).copied().unwrap_or(0)).sum();
    println!("ensure new: {created} calls; unchanged: {reads} reads");
    assert!(reads <= 14, "an unchanged ensure reads {reads} times");

    // A node joins the same zone: one addInstances, through update_targets_l7.
    let b = w.node(ZONE_A, "node-b");
    let grown = ingress(&[a.clone(), b], BACKENDS, CERT_1);
    w.fake.clear_calls();
    p.update_targets_l7(&id, &grown, Some(&st.record)).await.expect("update targets");
    let ig = names::instance_group("calls");
    assert_eq!(w.mutations(), [format!("addInstances zones/{ZONE_A}/instanceGroups/{ig}")]);
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-a", "node-b"]);
    p.delete_l7(&id, Some(&st.record)).await.expect("delete");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn a_rotated_certificate_is_inserted_swapped_in_place_then_the_old_one_deleted() {
    let w = World::new("rotate").await;
    let p = w.provider().await;
    let id = w.id("web");
    let nodes = [w.node(ZONE_A, "node-a")];
    let old = ingress(&nodes, BACKENDS, CERT_1);
    let st = p.ensure_l7(&id, &old, None).await.expect("ensure");
    let n = Names::new(&id);
    let new = ingress(&nodes, BACKENDS, CERT_2);
    let (old_cert, new_cert) = (n.certificate(&old.certificates[0]), n.certificate(&new.certificates[0]));
    assert_ne!(old_cert, new_cert);

    w.fake.clear_calls();
    let st2 = p.ensure_l7(&id, &new, Some(&st.record)).await.expect("rotate");
    assert_eq!(ip_of(&st2), ip_of(&st));
    let seq = mutation_names(&w);
    let insert = position(&seq, &format!("insert sslCertificates/{new_cert}"));
    let swap = position(&seq, &format!("setSslCertificates targetHttpsProxies/{}", n.https_proxy));
    let delete = position(&seq, &format!("delete sslCertificates/{old_cert}"));
    assert!(insert < swap && swap < delete, "never a moment without a certificate: {seq:#?}");
    assert!(
        !seq.iter().any(|s| s.contains("forwardingRules") || s.starts_with("delete targetHttpsProxies")),
        "{seq:#?}"
    );
    assert_eq!(w.list("global/sslCertificates").await, [new_cert]);
    p.delete_l7(&id, Some(&st2.record)).await.expect("delete");
}

#[tokio::test]
async fn a_repointed_path_gets_its_new_backend_before_the_map_and_loses_the_old_after() {
    let w = World::new("repoint").await;
    let p = w.provider().await;
    let id = w.id("web");
    let nodes = [w.node(ZONE_A, "node-a")];
    let before = ingress(&nodes, BACKENDS, CERT_1);
    let st = p.ensure_l7(&id, &before, None).await.expect("ensure");
    // /cart goes to a new Service, "cart"; nothing uses "shop" any more.
    let mut after = ingress(&nodes, &[("api", 30081), ("app", 30080), ("cart", 30083)], CERT_1);
    for vh in &mut after.virtual_hosts {
        for r in &mut vh.routes {
            if r.action.backends().any(|b| b.service == "shop") {
                r.action = RouteAction::Forward(vec![WeightedBackend { backend: backend_ref("cart"), weight: 1 }]);
            }
        }
    }
    let n = Names::new(&id);
    let (shop, cart) = (n.backend(&backend_ref("shop")), n.backend(&backend_ref("cart")));
    w.fake.clear_calls();
    p.ensure_l7(&id, &after, Some(&st.record)).await.expect("repoint");
    let seq = mutation_names(&w);
    let new_bs = position(&seq, &format!("insert backendServices/{cart}"));
    let map = position(&seq, &format!("update urlMaps/{}", n.url_map));
    let old_bs = position(&seq, &format!("delete backendServices/{shop}"));
    let old_hc = position(&seq, &format!("delete healthChecks/{shop}"));
    assert!(position(&seq, &format!("insert healthChecks/{cart}")) < new_bs);
    assert!(new_bs < map && map < old_bs && old_bs < old_hc, "make before break: {seq:#?}");
    let m = url_map(&w, &n.url_map).await;
    let got = evaluate::evaluate(
        &m,
        &evaluate::Request { authority: "shop.example", path: "/cart", method: "GET", headers: &[], query: &[] },
    );
    assert_eq!(got, Outcome::Service(format!("projects/{PROJECT}/global/backendServices/{cart}")));
    // The old node port's name left the group.
    let ig = names::instance_group("repoint");
    let group = w.get(&format!("zones/{ZONE_A}/instanceGroups/{ig}")).await.expect("group");
    let ports: Vec<&str> = group["namedPorts"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(ports.contains(&"port30083") && !ports.contains(&"port30082"), "{ports:?}");
    p.delete_l7(&id, Some(&st.record)).await.expect("delete");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn a_crash_at_any_await_then_a_fresh_ensure_gives_exactly_one_set() {
    let w = World::new("crash").await;
    let p = Arc::new(w.provider().await);
    let nodes = [w.node(ZONE_A, "node-a"), w.node(ZONE_B, "node-b")];
    let spec = ingress(&nodes, BACKENDS, CERT_1);
    let mut n = 1;
    loop {
        let id = w.id(&format!("crash-{n}"));
        w.fake.clear_calls();
        let completed = run_until_calls(&w, n, p.ensure_l7(&id, &spec, None)).await;
        settle_everything(&w, &format!("a crash at call {n}")).await;
        let st = p
            .ensure_l7(&id, &spec, None)
            .await
            .unwrap_or_else(|e| panic!("fresh ensure after a crash at call {n}: {e}"));
        let all = w.everything().await;
        for (c, count) in [
            ("addresses", 1),
            ("forwardingRules", 2),
            ("targetHttpProxies", 1),
            ("targetHttpsProxies", 1),
            ("urlMaps", 1),
            ("sslCertificates", 1),
            ("backendServices", 4),
            ("healthChecks", 3),
        ] {
            assert_eq!(all.get(&g(c)).map(Vec::len), Some(count), "{c} after a crash at call {n}: {all:?}");
        }
        p.delete_l7(&id, Some(&st.record)).await.expect("delete");
        assert!(w.everything().await.is_empty(), "crash at call {n}: left {:?}", w.everything().await);
        if let Some(r) = completed {
            r.expect("the uninterrupted ensure succeeds");
            assert!(n > 20, "the ensure makes more than 20 calls");
            break;
        }
        n += 1;
    }
}

#[tokio::test]
async fn a_users_static_ip_is_used_and_never_released_and_ours_goes_when_it_comes() {
    let w = World::new("static").await;
    let p = w.provider().await;
    let id = w.id("web");
    let nodes = [w.node(ZONE_A, "node-a")];
    let plain = ingress(&nodes, BACKENDS, CERT_1);
    let st = p.ensure_l7(&id, &plain, None).await.expect("ensure with our address");
    let n = Names::new(&id);
    assert!(w.get(&g(&format!("addresses/{}", n.address))).await.is_some());

    create(&w, "global/addresses", json!({"name": "web-ip"})).await;
    let user_ip = w.get(&g("addresses/web-ip")).await.unwrap()["address"].as_str().unwrap().to_string();
    let mut pinned = plain.clone();
    pinned.options.insert("global-static-ip-name".into(), "web-ip".into());
    let st2 = p.ensure_l7(&id, &pinned, Some(&st.record)).await.expect("switch to the user's address");
    assert_eq!(ip_of(&st2), user_ip);
    for rule in [&n.http_rule, &n.https_rule] {
        let fr = w.get(&g(&format!("forwardingRules/{rule}"))).await.expect("rule");
        assert_eq!(fr["IPAddress"].as_str(), Some(user_ip.as_str()), "{rule} moved to the user's address");
    }
    assert!(w.get(&g(&format!("addresses/{}", n.address))).await.is_none(), "ours is released once unused");
    p.delete_l7(&id, Some(&st2.record)).await.expect("delete");
    assert_eq!(
        w.everything().await.get("global/addresses"),
        Some(&vec!["web-ip".to_string()]),
        "the user's address stays"
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_any_change() {
    let w = World::new("bad").await;
    let p = w.provider().await;
    let id = w.id("web");
    let nodes = [w.node(ZONE_A, "node-a")];
    let mut spec = ingress(&nodes, BACKENDS, CERT_1);
    spec.options.insert("global-static-ip-name".into(), "Not_A_Name".into());
    let problems = p.validate_l7(&spec);
    assert!(problems.len() == 1 && problems[0].contains("kubernetes.io/ingress.global-static-ip-name"), "{problems:?}");

    for (key, value, want) in [
        ("global-static-ip-name", "missing-ip", "does not exist"),
        ("pre-shared-cert", "missing-cert", "does not exist"),
    ] {
        let mut s = ingress(&nodes, BACKENDS, CERT_1);
        s.options.insert(key.into(), value.into());
        assert!(p.validate_l7(&s).is_empty());
        w.fake.clear_calls();
        let e = p.ensure_l7(&id, &s, None).await.expect_err("refused");
        assert_eq!(e.class(), ErrorClass::Permanent, "{e}");
        assert!(e.to_string().contains(want), "{e}");
        assert!(w.mutations().is_empty(), "{key}: {:?}", w.mutations());
    }
    p.delete_l7(&id, None).await.expect("delete");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn a_foreign_url_map_with_our_name_is_a_conflict_and_is_never_touched() {
    let w = World::new("foreign").await;
    let p = w.provider().await;
    let id = w.id("web");
    let n = Names::new(&id);
    create(&w, "global/backendServices", json!({"name": "someone-elses", "loadBalancingScheme": "EXTERNAL_MANAGED"}))
        .await;
    create(&w, "global/urlMaps", json!({"name": n.url_map, "defaultService": g("backendServices/someone-elses")}))
        .await;
    w.fake.clear_calls();
    let e =
        p.ensure_l7(&id, &ingress(&[w.node(ZONE_A, "node-a")], BACKENDS, CERT_1), None).await.expect_err("conflict");
    assert!(matches!(e, ProviderError::Conflict { .. }), "{e}");
    assert!(w.mutations().is_empty(), "{:?}", w.mutations());
    p.delete_l7(&id, None).await.expect("delete");
    assert!(w.get(&g(&format!("urlMaps/{}", n.url_map))).await.is_some(), "not ours: left alone");
}

#[tokio::test]
async fn server_errors_at_random_converge_without_duplicates() {
    let w = World::new("flaky").await;
    let p = w.provider().await;
    let id = w.id("web");
    let spec = ingress(&[w.node(ZONE_A, "node-a")], BACKENDS, CERT_1);
    w.fake.inject(Fault::once("POST", "global/urlMaps", FaultKind::Unavailable));
    w.fake.inject(Fault::once("POST", "targetHttpsProxies/*/setSslCertificates", FaultKind::Internal));
    w.fake.inject(Fault::once("POST", "global/forwardingRules", FaultKind::RateLimited));
    let mut last = None;
    for _ in 0..6 {
        match p.ensure_l7(&id, &spec, None).await {
            Ok(st) => {
                last = Some(st);
                break;
            }
            Err(e) => assert_ne!(e.class(), ErrorClass::Permanent, "a server error is not permanent: {e}"),
        }
    }
    let st = last.expect("converges within a few passes");
    let all = w.everything().await;
    assert_eq!(all[&g("forwardingRules")].len(), 2, "{all:?}");
    assert_eq!(all[&g("urlMaps")].len(), 1, "{all:?}");
    p.delete_l7(&id, Some(&st.record)).await.expect("delete");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn ssl_redirect_points_the_http_proxy_at_the_redirect_map_and_back() {
    let w = World::new("redirect").await;
    let p = w.provider().await;
    let id = w.id("web");
    let nodes = [w.node(ZONE_A, "node-a")];
    let plain = ingress(&nodes, BACKENDS, CERT_1);
    let st = p.ensure_l7(&id, &plain, None).await.expect("ensure");
    let n = Names::new(&id);
    let mut redirecting = plain.clone();
    redirecting.listeners[0].redirect_to_https = Some(443);
    w.fake.clear_calls();
    p.ensure_l7(&id, &redirecting, Some(&st.record)).await.expect("redirect on");
    let seq = mutation_names(&w);
    assert!(
        position(&seq, &format!("insert urlMaps/{}", n.redirect_map))
            < position(&seq, &format!("setUrlMap targetHttpProxies/{}", n.http_proxy)),
        "{seq:#?}"
    );
    let rd = url_map(&w, &n.redirect_map).await;
    let req = evaluate::Request { authority: "app.example", path: "/api", method: "GET", headers: &[], query: &[] };
    assert_eq!(evaluate::evaluate(&rd, &req), Outcome::HttpsRedirect);
    let hp = w.get(&g(&format!("targetHttpProxies/{}", n.http_proxy))).await.expect("http proxy");
    assert!(hp["urlMap"].as_str().unwrap().ends_with(&n.redirect_map));

    w.fake.clear_calls();
    p.ensure_l7(&id, &plain, Some(&st.record)).await.expect("redirect off");
    let seq = mutation_names(&w);
    assert!(
        position(&seq, &format!("setUrlMap targetHttpProxies/{}", n.http_proxy))
            < position(&seq, &format!("delete urlMaps/{}", n.redirect_map)),
        "{seq:#?}"
    );
    assert_eq!(w.list("global/urlMaps").await, std::slice::from_ref(&n.url_map));
    p.delete_l7(&id, Some(&st.record)).await.expect("delete");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn delete_without_record_after_a_partial_ensure_leaves_nothing() {
    let w = World::new("partial").await;
    let p = w.provider().await;
    let id = w.id("web");
    // The first backend service insert fails: address, groups, firewall and a check exist.
    w.fake.inject(Fault::once("POST", "global/backendServices", FaultKind::Internal));
    p.ensure_l7(&id, &ingress(&[w.node(ZONE_B, "node-b")], BACKENDS, CERT_1), None).await.expect_err("fails half-way");
    assert!(w.get(&format!("zones/{ZONE_B}/instanceGroups/{}", names::instance_group("partial"))).await.is_some());
    assert!(!w.list("global/healthChecks").await.is_empty());
    p.delete_l7(&id, None).await.expect("delete without a record");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn plan_lists_every_change_of_a_certificate_rotation_and_sends_none() {
    let w = World::new("plan").await;
    let p = w.provider().await;
    let id = w.id("web");
    let nodes = [w.node(ZONE_A, "node-a")];
    let spec = ingress(&nodes, BACKENDS, CERT_1);
    let st = p.ensure_l7(&id, &spec, None).await.expect("ensure");
    let unchanged = p.plan_l7(&id, &spec, Some(&st.record)).await.expect("plan");
    assert!(unchanged.complete && unchanged.changes.is_empty(), "{unchanged:?}");

    let rotated = ingress(&nodes, BACKENDS, CERT_2);
    w.fake.clear_calls();
    let plan = p.plan_l7(&id, &rotated, Some(&st.record)).await.expect("plan");
    assert!(w.mutations().is_empty(), "a plan sends nothing: {:?}", w.mutations());
    let calls: Vec<(&str, &str)> = plan.changes.iter().map(|c| (c.action.as_str(), c.call.as_str())).collect();
    assert_eq!(
        calls,
        [
            ("create", "compute.sslCertificates.insert"),
            ("update", "compute.urlMaps.update"),
            ("update", "compute.targetHttpsProxies.setSslCertificates"),
            ("delete", "compute.sslCertificates.delete"),
        ],
        "the rotation, in the order the ensure makes it (the map's recorded spec hash changes too)"
    );
    assert!(plan.complete);
    p.delete_l7(&id, Some(&st.record)).await.expect("delete");
}
