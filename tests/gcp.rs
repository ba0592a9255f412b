//! The gcp provider end to end: the real `cloudlb` binary + the sandbox Kubernetes API + the
//! Compute fake (`cloudlb-gce-fake`, started in-process); what the controller made is read back
//! through the fake's Compute REST API.

#[path = "support/gcp_env.rs"]
mod gcp_env;
#[path = "../providers/gcp/tests/support/mod.rs"]
mod gcp_support;
mod support;

use std::time::Duration;

use cloudlb_provider_gcp::names;
use gcp_support::{PROJECT, REGION, ZONE_A, ZONE_B};
use serde_json::json;
use support::*;

/// Polls the fake until `ok` holds (bounded).
async fn wait_for<F, Fut>(what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ok().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn service_gets_the_forwarding_rules_ip_follows_nodes_and_leaves_nothing() {
    // The controller runs with --cluster-name test (see support::Controller).
    let w = gcp_support::World::with("test", cloudlb_gce_fake::FakeConfig::new(PROJECT)).await;
    let c = Cluster::start().await;
    gcp_env::add_node(&c, &w, ZONE_A, "node-0").await;
    gcp_env::add_node(&c, &w, ZONE_B, "node-1").await;
    gcp_env::add_node(&c, &w, ZONE_A, "node-2").await;
    let args = gcp_env::args(&w);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ctl = Controller::start_full(&c, &args, "info,cloudlb=debug", &[]).await;
    c.add_service("web", &[(80, "TCP"), (443, "TCP")], json!({})).await;
    let ip = c.wait_address("web").await;

    let rules = w.list(&format!("regions/{REGION}/forwardingRules")).await;
    assert_eq!(rules.len(), 1, "one forwarding rule: {rules:?}");
    let fr = w.get(&format!("regions/{REGION}/forwardingRules/{}", rules[0])).await.expect("rule");
    assert_eq!(fr["IPAddress"].as_str(), Some(ip.as_str()), "EXTERNAL-IP is the forwarding rule's IP");
    let svc = c.get("web").await;
    let uid = svc.metadata.uid.clone().expect("uid");
    let id = cloudlb_provider::LoadBalancerId::new("test", "default", "web", uid);
    assert_eq!(rules[0], names::load_balancer(&id));
    let ig = names::instance_group("test");
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-0", "node-2"]);
    assert_eq!(w.members(ZONE_B, &ig).await, ["node-1"]);
    let bs = w.get(&format!("regions/{REGION}/backendServices/{}", rules[0])).await.expect("backend service");
    assert_eq!(bs["backends"].as_array().map(Vec::len), Some(2));
    assert!(w.get(&format!("global/firewalls/{}", rules[0])).await.is_some());

    // A node goes away: only the membership of its zone's group changes, the IP stays.
    w.fake.clear_calls();
    c.nodes().delete("node-2", &Default::default()).await.expect("delete node");
    wait_for("node-2 to leave the instance group", || async { w.members(ZONE_A, &ig).await == ["node-0"] }).await;
    let changes = w.mutations();
    assert!(
        changes.iter().all(|m| m.starts_with("removeInstances")),
        "a node removal changes membership only: {changes:?}"
    );
    assert_eq!(external_ip(&c.get("web").await), Some(ip.clone()));

    // A port change converges keeping the IP (the forwarding rule is re-made around it).
    c.patch_service(
        "web",
        json!({"spec": {"ports": [{"name": "p80-tcp", "port": 80, "protocol": "TCP"}, {"name": "p8443-tcp", "port": 8443, "protocol": "TCP"}]}}),
    )
    .await;
    let fr_path = format!("regions/{REGION}/forwardingRules/{}", rules[0]);
    wait_for("the forwarding rule to carry port 8443", || async {
        w.get(&fr_path).await.is_some_and(|fr| fr["ports"].as_array().is_some_and(|p| p.contains(&json!("8443"))))
    })
    .await;
    c.wait_service("web", "8443 in status", |s| status_ports(s).contains(&8443)).await;
    assert_eq!(external_ip(&c.get("web").await), Some(ip.clone()), "the IP survives");
    assert_eq!(w.get(&fr_path).await.expect("rule")["IPAddress"].as_str(), Some(ip.as_str()));

    // A node without a GCE providerID is reported, not silently dropped; the rest keeps working.
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-x"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.99"}]}
    }))
    .expect("node-x");
    c.nodes().create(&Default::default(), &node).await.expect("node-x");
    let svc =
        c.wait_service("web", "warning about node-x", |s| condition(s).is_some_and(|c| c.2.contains("node-x"))).await;
    assert_eq!(condition(&svc).expect("condition").0, "True", "still ready");
    c.wait_event("web", "LoadBalancerWarning").await;

    // A typo in a GKE annotation: an InvalidLoadBalancerSpec event naming it, and no cloud change.
    w.fake.clear_calls();
    c.add_service(
        "typo",
        &[(80, "TCP")],
        json!({"metadata": {"annotations": {"networking.gke.io/load-balancer-type": "Intenral"}}}),
    )
    .await;
    let (_, kind, note) = c.wait_event("typo", "InvalidLoadBalancerSpec").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("networking.gke.io/load-balancer-type") && note.contains("Intenral"), "{note}");
    assert!(w.mutations().is_empty(), "nothing is made for an invalid Service: {:?}", w.mutations());
    c.services().delete("typo", &Default::default()).await.expect("delete typo");
    c.wait_gone("typo").await;

    // Delete: nothing is left in the project (the shared groups and check too).
    c.services().delete("web", &Default::default()).await.expect("delete service");
    c.wait_gone("web").await;
    assert!(w.everything().await.is_empty(), "leaked: {:?}", w.everything().await);
    ctl.settle(Duration::from_millis(200)).await;
    ctl.stop().await;
}

#[tokio::test]
async fn a_missing_gcp_flag_exits_1_naming_it_before_the_cluster_is_contacted() {
    for (args, want) in [
        (vec!["--gcp-region", "us-central1", "--gcp-network", "default"], "--gcp-project"),
        (vec!["--gcp-project", "p", "--gcp-network", "default"], "--gcp-region"),
        (vec!["--gcp-project", "p", "--gcp-region", "us-central1"], "--gcp-network"),
    ] {
        let out = tokio::time::timeout(
            WAIT,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudlb"))
                .args(["run", "--provider", "gcp", "--kubeconfig", "/dev/null", "--metrics-addr", "127.0.0.1:0"])
                .args(&args)
                .env_remove("GOOGLE_CLOUD_PROJECT")
                .env_remove("CLOUDSDK_COMPUTE_REGION")
                .output(),
        )
        .await
        .expect("exits promptly")
        .expect("runs");
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want) && stderr.contains("required"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn ingress_gets_the_application_load_balancers_ip_and_delete_leaves_nothing() {
    let w = gcp_support::World::with("test", cloudlb_gce_fake::FakeConfig::new(PROJECT)).await;
    let c = Cluster::start().await;
    gcp_env::add_node(&c, &w, ZONE_A, "node-0").await;
    gcp_env::add_node(&c, &w, ZONE_B, "node-1").await;
    c.add_ingress_class("cloudlb", INGRESS_CONTROLLER, false).await;
    for (name, node_port) in [("app", 30080), ("api", 30081), ("shop", 30082)] {
        c.add_backend(name, node_port).await;
    }
    let args = gcp_env::args(&w);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ctl = Controller::start_full(&c, &args, "info,cloudlb=debug", &[]).await;
    let (crt, key) = pem_pair(&["app.example"]);
    c.add_tls_secret("app-tls", &crt, &key).await;
    c.add_ingress(
        "web",
        json!({
            "ingressClassName": "cloudlb",
            "tls": [{"hosts": ["app.example"], "secretName": "app-tls"}],
            "rules": [
                {"host": "app.example", "http": {"paths": [ingress_path("Prefix", "/", "app"), ingress_path("Prefix", "/api", "api")]}},
                {"host": "shop.example", "http": {"paths": [ingress_path("Exact", "/cart", "shop")]}}
            ]
        }),
        json!({"metadata": {"annotations": {"kubernetes.io/ingress.allow-http": "true"}}}),
    )
    .await;
    let ip = c.wait_ingress_address("web").await;

    let addresses = w.list("global/addresses").await;
    assert_eq!(addresses.len(), 1, "{addresses:?}");
    let addr = w.get(&format!("global/addresses/{}", addresses[0])).await.expect("address");
    assert_eq!(addr["address"].as_str(), Some(ip.as_str()), "the Ingress status shows the address's IP");
    assert_eq!(w.list("global/forwardingRules").await.len(), 2, "HTTP and HTTPS");
    assert_eq!(w.list("global/sslCertificates").await.len(), 1, "the TLS Secret");
    let backends = w.list("global/backendServices").await;
    assert_eq!(backends.len(), 4, "one per backend and the 404 service: {backends:?}");
    let maps = w.list("global/urlMaps").await;
    let map: cloudlb_provider_gcp::gclb::evaluate::UrlMap =
        serde_json::from_value(w.get(&format!("global/urlMaps/{}", maps[0])).await.expect("map")).expect("model");
    let go = |authority: &str, path: &str| {
        let req =
            cloudlb_provider_gcp::gclb::evaluate::Request { authority, path, method: "GET", headers: &[], query: &[] };
        cloudlb_provider_gcp::gclb::evaluate::evaluate(&map, &req)
    };
    use cloudlb_provider_gcp::gclb::evaluate::Outcome;
    assert!(
        matches!(go("app.example", "/api/x"), Outcome::Service(s) if s != match go("app.example", "/x") { Outcome::Service(o) => o, _ => String::new() })
    );
    assert_eq!(go("shop.example", "/cart/"), Outcome::Abort(404));
    let ig = names::instance_group("test");
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-0"]);

    c.ingresses().delete("web", &Default::default()).await.expect("delete ingress");
    c.wait_ingress_gone("web").await;
    let left: Vec<(String, Vec<String>)> =
        w.everything().await.into_iter().filter(|(k, _)| k.starts_with("global/") && k != "global/firewalls").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(w.list("global/firewalls").await.is_empty(), "the firewall too");
    ctl.settle(Duration::from_millis(200)).await;
    ctl.stop().await;
}

#[tokio::test]
async fn the_controllers_gc_sweep_deletes_leaked_service_and_ingress_load_balancers_only() {
    use cloudlb_provider::Provider;
    let w = gcp_support::World::with("test", cloudlb_gce_fake::FakeConfig::new(PROJECT)).await;
    let c = Cluster::start().await;
    gcp_env::add_node(&c, &w, ZONE_A, "node-0").await;
    // Leftovers of a Service and an Ingress of this cluster that are gone, and another cluster's.
    let p = w.provider().await;
    let node = w.node(ZONE_A, "node-9");
    let spec = w.spec(&[80], std::slice::from_ref(&node));
    let gone_svc = cloudlb_provider::LoadBalancerId::new("test", "default", "gone", "uid-gone-svc");
    let gone_ing = cloudlb_provider::LoadBalancerId::new("test", "default", "gone-web", "uid-gone-ing");
    let foreign = cloudlb_provider::LoadBalancerId::new("other", "default", "gone", "uid-other");
    p.ensure(&gone_svc, &spec, None).await.expect("leaked Service load balancer");
    p.ensure(&foreign, &spec, None).await.expect("another cluster's");
    let mut l7 = cloudlb_provider::conformance::l7_spec(80);
    l7.targets = vec![node].into();
    p.ensure_l7(&gone_ing, &l7, None).await.expect("leaked Ingress load balancer");
    assert_eq!(w.list("global/urlMaps").await.len(), 1);

    let args = gcp_env::args(&w);
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    argv.extend(["--gc-interval", "1s", "--gc-min-age", "0s"]);
    let ctl = Controller::start_full(&c, &argv, "info", &[]).await;
    c.add_service("live", &[(80, "TCP")], json!({})).await;
    c.wait_address("live").await;
    let rules = format!("regions/{REGION}/forwardingRules");
    wait_for("the leaked load balancers to be swept", || async {
        w.list("global/urlMaps").await.is_empty() && w.list(&rules).await.len() == 2
    })
    .await;
    let left = w.list(&rules).await;
    assert!(left.contains(&names::load_balancer(&foreign)), "another cluster's stays: {left:?}");
    let live = c.get("live").await;
    let live_id =
        cloudlb_provider::LoadBalancerId::new("test", "default", "live", live.metadata.uid.clone().expect("uid"));
    assert!(left.contains(&names::load_balancer(&live_id)), "the live one stays: {left:?}");
    assert!(w.list("global/backendServices").await.is_empty(), "nothing of the Ingress is left");
    ctl.stop().await;
}
