//! Ingresses end to end: the real `cloudlb` binary against the sandbox Kubernetes API over HTTP,
//! with the memory provider keeping its state in a file, so each test reads back what the
//! "cloud" implements (routes, certificates, ports, the spec hash) without sharing a process.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

/// A cluster with two nodes, our IngressClass `cloudlb`, a foreign one, and two backends.
async fn cluster() -> Cluster {
    let c = Cluster::start().await;
    c.add_node("node-a", "10.0.0.1", &[]).await;
    c.add_node("node-b", "10.0.0.2", &[]).await;
    c.add_ingress_class("cloudlb", INGRESS_CONTROLLER, false).await;
    c.add_ingress_class("nginx", "k8s.io/ingress-nginx", false).await;
    c.add_backend("app", 30080).await;
    c.add_backend("api", 30081).await;
    c
}

/// The controller with the memory provider persisting to a file in the cluster's temp dir.
async fn controller(c: &Cluster, extra: &[&str]) -> (Controller, PathBuf) {
    let state = c.dir.path().join("memory-state.json");
    let state_arg = state.display().to_string();
    let mut args = vec!["--memory-state-file", state_arg.as_str()];
    args.extend_from_slice(extra);
    (Controller::start(c, &args).await, state)
}

fn l7_entry(path: &std::path::Path, name: &str) -> Option<Value> {
    memory_entry(path, "l7", name)
}

fn web_spec(class: &str) -> Value {
    json!({
        "ingressClassName": class,
        "rules": [
            {"host": "shop.example", "http": {"paths": [ingress_path("Prefix", "/", "app"), ingress_path("Prefix", "/api", "api")]}},
            {"host": "*.example", "http": {"paths": [ingress_path("Exact", "/status", "api")]}}
        ]
    })
}

#[tokio::test]
async fn claimed_ingress_gets_an_address_finalizer_record_and_events() {
    let c = cluster().await;
    let (ctl, state) = controller(&c, &[]).await;
    c.add_ingress("web", web_spec("cloudlb"), json!({})).await;
    let ip = c.wait_ingress_address("web").await;
    assert!(ip.starts_with("198.18."), "address from the memory pool, got {ip}");
    let ing = c.ingresses().get("web").await.expect("get");
    assert!(has_finalizer(&ing), "finalizer present");
    let ann = ing.metadata.annotations.clone().unwrap_or_default();
    assert!(ann.get("cloudlb.io/load-balancer-record").is_some_and(|r| r.contains(&ip)), "{ann:?}");
    let ports: Vec<i32> = ing.status.as_ref().unwrap().load_balancer.as_ref().unwrap().ingress.as_ref().unwrap()[0]
        .ports
        .as_ref()
        .expect("ports in status")
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, vec![80], "one HTTP listener on port 80 (run's default)");
    c.wait_event("web", "EnsuredLoadBalancer").await;

    let entry = l7_entry(&state, "web").expect("the provider has the load balancer");
    assert_eq!(entry["routes"], 3, "{entry}");
    assert_eq!(entry["ports"], json!([80]));
    assert_eq!(entry["targets"], 2);
    assert_eq!(entry["spec_hash"].as_str(), ann.get("cloudlb.io/spec-hash").map(String::as_str));
    assert_eq!(ctl.metric("cloudlb_provider_calls_total", &[("call", "ensure"), ("layer", "l7")]).await, 1.0);
    ctl.assert_idle("a new Ingress").await;
    assert_eq!(
        ctl.metric("cloudlb_provider_calls_total", &[("call", "ensure")]).await,
        1.0,
        "our own writes must not cause more ensures"
    );
    // Its passes went through the Ingress controller's work queue, which is empty again.
    let ingress = [("kind", "Ingress")];
    assert!(ctl.metric("cloudlb_workqueue_wait_seconds_count", &ingress).await >= 1.0);
    assert_eq!(ctl.metric("cloudlb_workqueue_depth", &ingress).await, 0.0);
    ctl.stop().await;
}

#[tokio::test]
async fn foreign_missing_and_default_classes() {
    let c = cluster().await;
    let (ctl, state) = controller(&c, &[]).await;
    c.add_ingress("foreign", web_spec("nginx"), json!({})).await;
    c.add_ingress("missing", web_spec("no-such-class"), json!({})).await;
    let mut unclassed = web_spec("x");
    unclassed.as_object_mut().unwrap().remove("ingressClassName");
    c.add_ingress("unclassed", unclassed.clone(), json!({})).await;
    c.add_ingress("ours", web_spec("cloudlb"), json!({})).await;
    c.wait_ingress_address("ours").await;
    ctl.settle(Duration::from_millis(500)).await;
    for name in ["foreign", "missing", "unclassed"] {
        let ing = c.ingresses().get(name).await.expect("get");
        assert_eq!(ingress_address(&ing), None, "{name} must not get an address");
        assert!(!has_finalizer(&ing), "{name} must not get our finalizer");
        assert!(l7_entry(&state, name).is_none(), "{name} must not get a load balancer");
    }
    // Once our class is the default, an Ingress naming no class is ours.
    c.add_ingress_class("cloudlb-default", INGRESS_CONTROLLER, true).await;
    c.add_ingress("defaulted", unclassed, json!({})).await;
    c.wait_ingress_address("defaulted").await;
    assert!(l7_entry(&state, "defaulted").is_some());
    ctl.stop().await;
}

#[tokio::test]
async fn class_change_removes_our_load_balancer_and_deleting_the_class_never_blocks_deletion() {
    let c = cluster().await;
    let (ctl, state) = controller(&c, &[]).await;
    c.add_ingress("moving", web_spec("cloudlb"), json!({})).await;
    c.add_ingress("staying", web_spec("cloudlb"), json!({})).await;
    c.wait_ingress_address("moving").await;
    c.wait_ingress_address("staying").await;

    c.patch_ingress("moving", json!({"spec": {"ingressClassName": "nginx"}})).await;
    let ing = c
        .wait_ingress("moving", "cleanup after the class change", |i| ingress_address(i).is_none() && !has_finalizer(i))
        .await;
    let ann = ing.metadata.annotations.unwrap_or_default();
    assert!(!ann.contains_key("cloudlb.io/load-balancer-record"), "record removed: {ann:?}");
    assert!(l7_entry(&state, "moving").is_none(), "load balancer deleted");
    c.wait_event("moving", "DeletedLoadBalancer").await;

    // Deleting our IngressClass leaves working load balancers alone...
    c.ingress_classes().delete("cloudlb", &Default::default()).await.expect("delete class");
    ctl.settle(Duration::from_millis(500)).await;
    assert!(l7_entry(&state, "staying").is_some(), "a deleted class must not tear down a working load balancer");
    // ...and never blocks deleting an Ingress of that class.
    c.ingresses().delete("staying", &Default::default()).await.expect("delete ingress");
    c.wait_ingress_gone("staying").await;
    assert!(l7_entry(&state, "staying").is_none(), "deleted with its Ingress");
    ctl.stop().await;
}

#[tokio::test]
async fn backend_service_secret_and_node_changes_resync_only_the_ingresses_concerned() {
    let c = cluster().await;
    let (ctl, state) = controller(&c, &[]).await;
    c.add_backend("other", 30082).await;
    let (crt, key) = pem_pair(&["shop.example"]);
    c.add_tls_secret("shop-tls", &crt, &key).await;
    let mut with_tls = web_spec("cloudlb");
    with_tls["tls"] = json!([{"hosts": ["shop.example"], "secretName": "shop-tls"}]);
    c.add_ingress("web", with_tls, json!({})).await;
    c.add_ingress(
        "bystander",
        json!({"ingressClassName": "cloudlb", "defaultBackend": {"service": {"name": "other", "port": {"number": 80}}}}),
        json!({}),
    )
    .await;
    c.wait_ingress_address("web").await;
    c.wait_ingress_address("bystander").await;
    let entry = l7_entry(&state, "web").expect("web");
    assert_eq!(entry["certificates"], 1);
    assert_eq!(entry["ports"], json!([80, 443]));
    let ensures = || async { ctl.metric("cloudlb_provider_calls_total", &[("call", "ensure"), ("layer", "l7")]).await };
    ctl.settle(Duration::from_millis(300)).await;
    assert_eq!(ensures().await, 2.0);
    let hash_of = |name: &str| l7_entry(&state, name).map(|e| e["spec_hash"].as_str().unwrap_or_default().to_string());
    let bystander = hash_of("bystander");

    // A backend's nodePort changes: web follows, bystander is not touched.
    let before = hash_of("web");
    c.services()
        .patch(
            "api",
            &Default::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30090}]}}),
            ),
        )
        .await
        .expect("patch api");
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "ensure"), ("layer", "l7")], "nodePort change", |v| {
        v == 3.0
    })
    .await;
    assert_ne!(hash_of("web"), before);

    // The TLS Secret is rotated: web is re-ensured with the new certificate.
    let before = hash_of("web");
    let (crt2, key2) = pem_pair(&["shop.example"]);
    c.replace_tls_secret("shop-tls", &crt2, &key2).await;
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "ensure"), ("layer", "l7")], "rotation", |v| v == 4.0)
        .await;
    assert_ne!(hash_of("web"), before, "the rotated certificate is part of the spec");

    // A broken Secret: a warning, and the previous certificate goes on serving (no change).
    let before = hash_of("web");
    c.replace_tls_secret("shop-tls", &crt, &key2).await;
    let (_, kind, note) = c.wait_event("web", "LoadBalancerWarning").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("default/shop-tls") && note.contains("previous certificate"), "{note}");
    ctl.settle(Duration::from_millis(300)).await;
    assert_eq!(hash_of("web"), before, "a broken Secret must not change what is served");
    assert_eq!(l7_entry(&state, "web").unwrap()["certificates"], 1);

    // A node joins: both get a targets-only update (their targets changed), nothing else, and
    // neither Ingress is written to.
    let version = |i: k8s_openapi::api::networking::v1::Ingress| i.metadata.resource_version.expect("resourceVersion");
    let web_version = version(c.ingresses().get("web").await.expect("web"));
    c.add_node("node-c", "10.0.0.3", &[]).await;
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "update_targets"), ("layer", "l7")], "node add", |v| {
        v >= 2.0
    })
    .await;
    ctl.settle(Duration::from_millis(300)).await;
    assert_eq!(l7_entry(&state, "web").unwrap()["targets"], 3);
    assert_ne!(hash_of("bystander"), bystander, "the bystander's targets changed too");
    assert_eq!(ensures().await, 4.0, "no full ensure for a node change");
    assert_eq!(
        ctl.metric("cloudlb_provider_calls_total", &[("call", "update_targets"), ("layer", "l7")]).await,
        2.0,
        "one targets update per Ingress"
    );
    assert_eq!(version(c.ingresses().get("web").await.expect("web")), web_version, "no write to the Ingress");
    ctl.stop().await;
}

#[tokio::test]
async fn missing_backend_is_reported_and_healed_when_the_service_appears() {
    let c = cluster().await;
    let (ctl, state) = controller(&c, &[]).await;
    let spec = json!({"ingressClassName": "cloudlb", "rules": [{"http": {"paths": [
        ingress_path("Prefix", "/", "app"), ingress_path("Prefix", "/later", "later")]}}]});
    c.add_ingress("web", spec, json!({})).await;
    c.wait_ingress_address("web").await;
    let (_, kind, note) = c.wait_event("web", "LoadBalancerWarning").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("default/later:http") && note.contains("does not exist") && note.contains("503"), "{note}");
    let before = l7_entry(&state, "web").unwrap()["spec_hash"].clone();
    c.add_backend("later", 30099).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while l7_entry(&state, "web").unwrap()["spec_hash"] == before {
        assert!(tokio::time::Instant::now() < deadline, "the Ingress was not re-synced when its backend appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ctl.stop().await;
}

#[tokio::test]
async fn invalid_annotation_is_reported_once_with_no_cloud_call_and_bad_paths_are_skipped() {
    let c = cluster().await;
    let (ctl, state) = controller(&c, &[]).await;
    c.add_ingress(
        "bad",
        web_spec("cloudlb"),
        json!({"metadata": {"annotations": {"cloudlb.io/source-ranges": "10.0.0.0/33"}}}),
    )
    .await;
    let (_, kind, note) = c.wait_event("bad", "InvalidLoadBalancerSpec").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("cloudlb.io/source-ranges") && note.contains("10.0.0.0/33"), "{note}");
    ctl.assert_idle("an invalid Ingress").await;
    assert!(l7_entry(&state, "bad").is_none());
    assert_eq!(ctl.calls("ensure").await, 0, "no cloud call for an invalid spec");
    assert_eq!(c.event_count("bad", "InvalidLoadBalancerSpec").await, 1, "reported once, not once per pass");

    // The fix gets it built; a regex path is skipped with a warning, the rest works.
    let mut spec = web_spec("cloudlb");
    spec["rules"][0]["http"]["paths"].as_array_mut().unwrap().push(ingress_path(
        "ImplementationSpecific",
        "/v[0-9]+",
        "api",
    ));
    c.patch_ingress("bad", json!({"metadata": {"annotations": {"cloudlb.io/source-ranges": null}}, "spec": spec}))
        .await;
    c.wait_ingress_address("bad").await;
    assert_eq!(l7_entry(&state, "bad").unwrap()["routes"], 3, "the regex path is skipped");
    let (_, _, note) = c.wait_event("bad", "LoadBalancerWarning").await;
    assert!(note.contains("regular expressions"), "{note}");
    ctl.stop().await;
}

#[tokio::test]
async fn delete_removes_the_load_balancer_and_a_restart_makes_no_call() {
    let c = cluster().await;
    let (ctl, state) = controller(&c, &[]).await;
    c.add_ingress("web", web_spec("cloudlb"), json!({})).await;
    c.add_ingress("kept", web_spec("cloudlb"), json!({})).await;
    c.wait_ingress_address("web").await;
    c.wait_ingress_address("kept").await;
    ctl.stop().await;

    // A restart on converged state: no mutating call.
    let (ctl, _) = controller(&c, &[]).await;
    ctl.settle(Duration::from_millis(500)).await;
    assert_eq!(ctl.calls("ensure").await, 0, "restart with unchanged Ingresses");
    c.ingresses().delete("web", &Default::default()).await.expect("delete");
    c.wait_ingress_gone("web").await;
    assert!(l7_entry(&state, "web").is_none());
    assert!(l7_entry(&state, "kept").is_some());
    assert_eq!(ctl.metric("cloudlb_provider_calls_total", &[("call", "delete"), ("layer", "l7")]).await, 1.0);

    // Our finalizer removed by hand, then deleted: the load balancer goes from the last copy.
    c.patch_ingress("kept", json!({"metadata": {"finalizers": null}})).await;
    c.ingresses().delete("kept", &Default::default()).await.expect("delete");
    c.wait_ingress_gone("kept").await;
    ctl.wait_metric(
        "cloudlb_provider_calls_total",
        &[("call", "delete"), ("layer", "l7")],
        "the orphan's delete",
        |v| v == 2.0,
    )
    .await;
    assert!(l7_entry(&state, "kept").is_none(), "the orphan's load balancer is gone");
    ctl.stop().await;
}

/// Polls the memory provider's state until `check` holds for the L7 entry named `name`.
async fn wait_entry(state: &std::path::Path, name: &str, what: &str, check: impl Fn(Option<&Value>) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let entry = l7_entry(state, name);
        if check(entry.as_ref()) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; entry {name}: {entry:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_ingress_group_shares_one_load_balancer_leaves_out_an_invalid_member_and_goes_with_its_last_member() {
    let c = cluster().await;
    let (ctl, state) = controller(&c, &[]).await;
    let spec = |paths: Value| json!({"ingressClassName": "cloudlb", "rules": [{"host": "shop.example", "http": {"paths": paths}}]});
    let member = |extra: Value| {
        let mut a = json!({"cloudlb.io/group.name": "shop"});
        merge(&mut a, extra);
        json!({"metadata": {"annotations": a}})
    };
    c.add_ingress("a", spec(json!([ingress_path("Prefix", "/", "app")])), member(json!({}))).await;
    c.add_ingress("b", spec(json!([ingress_path("Prefix", "/api", "api")])), member(json!({}))).await;
    let ip_a = c.wait_ingress_address("a").await;
    let ip_b = c.wait_ingress_address("b").await;
    assert_eq!(ip_a, ip_b, "the members share one load balancer");
    wait_entry(&state, "shop", "both members' paths on the group's load balancer", |e| {
        e.is_some_and(|e| e["routes"] == 2)
    })
    .await;
    assert!(l7_entry(&state, "a").is_none() && l7_entry(&state, "b").is_none(), "no load balancer per member");

    // An invalid member is reported on itself and left out; the others keep working.
    c.add_ingress(
        "bad",
        spec(json!([ingress_path("Prefix", "/bad", "app")])),
        member(json!({"cloudlb.io/source-ranges": "not-a-cidr"})),
    )
    .await;
    let (_, kind, note) = c.wait_event("bad", "InvalidLoadBalancerSpec").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("not-a-cidr"), "{note}");
    ctl.settle(Duration::from_millis(500)).await;
    assert_eq!(l7_entry(&state, "shop").expect("group")["routes"], 2, "the invalid member's path is left out");
    assert_eq!(ingress_address(&c.ingresses().get("bad").await.expect("get")), None);

    // A member that leaves the group gets its own load balancer; the group goes on without it.
    c.patch_ingress("b", json!({"metadata": {"annotations": {"cloudlb.io/group.name": null}}})).await;
    wait_entry(&state, "b", "b's own load balancer", |e| e.is_some()).await;
    wait_entry(&state, "shop", "the group without b", |e| e.is_some_and(|e| e["routes"] == 1)).await;
    let b = c.wait_ingress("b", "its own address", move |i| ingress_address(i).is_some_and(|ip| ip != ip_a)).await;
    assert!(ingress_address(&b).is_some());

    // The last valid member goes: so does the group's load balancer.
    c.ingresses().delete("a", &Default::default()).await.expect("delete a");
    c.wait_ingress_gone("a").await;
    wait_entry(&state, "shop", "the group's load balancer to be deleted", |e| e.is_none()).await;
    assert!(l7_entry(&state, "b").is_some(), "b's own load balancer is untouched");

    // Joining a group: the group's load balancer first, then b's own goes.
    c.patch_ingress("b", json!({"metadata": {"annotations": {"cloudlb.io/group.name": "shop"}}})).await;
    wait_entry(&state, "shop", "the group made again with b", |e| e.is_some_and(|e| e["routes"] == 1)).await;
    wait_entry(&state, "b", "b's own load balancer to go", |e| e.is_none()).await;
    ctl.stop().await;
}

/// Waits for the targets-only update a node change brings, then for the controller to be idle.
async fn targets_updated_then_idle(ctl: &Controller, what: &str) {
    let l7_targets = [("call", "update_targets"), ("layer", "l7")];
    ctl.wait_metric("cloudlb_provider_calls_total", &l7_targets, what, |v| v >= 1.0).await;
    ctl.assert_idle(what).await;
}

/// API writes by the controller for Ingresses, counted by the sandbox: the same budget as for
/// Services (issue 12): a new load balancer <= 4, a node change 0 writes to the Ingress and at
/// most one event, a restart on converged state 0, a delete <= 3. Counted as patches and updates
/// of the Ingress and of its status, and events created or patched (the test itself only
/// creates and deletes Ingresses and Nodes).
#[tokio::test]
async fn ingress_api_writes_stay_within_the_services_budget() {
    let writes = |c: &Cluster| c.writes("ingresses.networking.k8s.io");
    let c = cluster().await;
    let (ctl, _) = controller(&c, &[]).await;

    let before = writes(&c);
    c.add_ingress("web", web_spec("cloudlb"), json!({})).await;
    c.wait_ingress_address("web").await;
    c.wait_event("web", "EnsuredLoadBalancer").await;
    ctl.assert_idle("a new Ingress").await;
    let new = writes(&c).since(before);
    // The finalizer before the first cloud call, then the record with the address and spec hash;
    // the status; one event.
    assert_eq!(new, Writes { objects: 2, status: 1, events: 1 }, "a new Ingress");

    let before = writes(&c);
    c.add_node("node-c", "10.0.0.3", &[]).await;
    targets_updated_then_idle(&ctl, "a node change").await;
    let node = writes(&c).since(before);
    assert_eq!((node.objects, node.status), (0, 0), "a node change writes nothing to the Ingress: {node:?}");
    assert!(node.events <= 1, "at most one event per load balancer on a node change: {node:?}");
    ctl.stop().await;

    // Restart on converged state, after a node change made while the controller was down.
    c.add_node("node-d", "10.0.0.4", &[]).await;
    let before = writes(&c);
    let (ctl, _) = controller(&c, &[]).await;
    targets_updated_then_idle(&ctl, "a restart").await;
    let restart = writes(&c).since(before);
    assert_eq!((restart.objects, restart.status), (0, 0), "a restart writes nothing to the Ingress: {restart:?}");
    assert!(restart.events <= 1, "only the node change's event: {restart:?}");
    assert_eq!(ctl.calls("ensure").await, 0, "no full ensure on restart");

    let before = writes(&c);
    c.ingresses().delete("web", &Default::default()).await.expect("delete");
    c.wait_ingress_gone("web").await;
    ctl.assert_idle("a delete").await;
    let delete = writes(&c).since(before);
    assert!(delete.total() <= 3, "a delete: {delete:?}");
    assert_eq!(delete.status, 0, "no status write to an Ingress being deleted: {delete:?}");
    eprintln!("Ingress writes: new {new:?}, node change {node:?}, restart {restart:?}, delete {delete:?}");
    ctl.stop().await;
}
