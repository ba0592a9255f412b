//! The real `cloudlb` binary against the sandbox Kubernetes API over HTTP, with the memory
//! provider: every scenario of the spine issue.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

async fn cluster_with_nodes() -> Cluster {
    let c = Cluster::start().await;
    c.add_node("node-a", "10.0.0.1", &[]).await;
    c.add_node("node-b", "10.0.0.2", &[("pool", "edge")]).await;
    c
}

#[tokio::test]
async fn create_gets_address_events_condition_finalizer_and_record() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    c.add_service("web", &[(80, "TCP"), (443, "TCP")], json!({})).await;
    let ip = c.wait_address("web").await;
    assert!(ip.starts_with("198.18."), "address from the default pool, got {ip}");
    let svc = c.wait_service("web", "Ready condition", |s| condition(s).is_some_and(|c| c.0 == "True")).await;
    assert!(has_finalizer(&svc), "finalizer present");
    let (_, reason, message) = condition(&svc).unwrap();
    assert_eq!(reason, "Ready");
    assert!(!message.chars().any(|c| c.is_ascii_digit()), "no counts that churn with nodes: {message}");
    let ann = svc.metadata.annotations.clone().unwrap_or_default();
    assert!(ann.get("cloudlb.io/load-balancer-record").is_some_and(|r| r.contains(&ip)), "{ann:?}");
    assert!(ann.contains_key("cloudlb.io/spec-hash"));
    let ingress = &svc.status.as_ref().unwrap().load_balancer.as_ref().unwrap().ingress.as_ref().unwrap()[0];
    assert_eq!(ingress.ip_mode.as_deref(), Some("VIP"));
    let ports: Vec<i32> = ingress.ports.as_ref().unwrap().iter().map(|p| p.port).collect();
    assert_eq!(ports, vec![80, 443]);
    let (_, kind, _) = c.wait_event("web", "EnsuredLoadBalancer").await;
    assert_eq!(kind, "Normal");
    assert_eq!(ctl.calls("ensure").await, 1);
    ctl.assert_idle("a new load balancer").await;
    assert_eq!(ctl.calls("ensure").await, 1, "status and annotation writes must not cause more ensures");
    let reasons: Vec<String> = c.events("web").await.into_iter().map(|e| e.0).collect();
    assert_eq!(reasons, ["EnsuredLoadBalancer"], "one event for a new load balancer");
    ctl.stop().await;
}

#[tokio::test]
async fn port_change_updates_the_load_balancer_and_keeps_the_address() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    let ip = c.wait_address("web").await;
    let hash = c.get("web").await.metadata.annotations.unwrap()["cloudlb.io/spec-hash"].clone();
    c.patch_service("web", json!({"spec": {"ports": [{"name": "p8080-tcp", "port": 8080, "protocol": "TCP"}]}})).await;
    let svc = c.wait_service("web", "port 8080 in status", |s| status_ports(s) == [8080]).await;
    assert_eq!(external_ip(&svc).as_deref(), Some(ip.as_str()), "the address is kept");
    assert_ne!(svc.metadata.annotations.unwrap()["cloudlb.io/spec-hash"], hash);
    assert_eq!(ctl.calls("ensure").await, 2);
    assert_eq!(ctl.calls("delete").await, 0);
    ctl.stop().await;
}

#[tokio::test]
async fn node_changes_touch_only_load_balancers_whose_targets_change_and_never_write_the_service() {
    let c = cluster_with_nodes().await;
    let state = c.dir.path().join("memory-state.json");
    let ctl = Controller::start(&c, &["--memory-state-file", state.to_str().expect("utf-8")]).await;
    c.add_service("all", &[(80, "TCP")], json!({})).await;
    c.add_service(
        "edge",
        &[(80, "TCP")],
        json!({"metadata": {"annotations": {"cloudlb.io/target-node-labels": "pool=edge"}}}),
    )
    .await;
    c.wait_address("all").await;
    c.wait_address("edge").await;
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "ensure")], "two ensures", |v| v == 2.0).await;
    ctl.settle(Duration::from_millis(200)).await;
    let targets = |name: &str| memory_entry(&state, "lbs", name).map(|e| e["targets"].clone());
    assert_eq!(targets("all"), Some(json!(2)));
    let version = |s: k8s_openapi::api::core::v1::Service| s.metadata.resource_version.expect("resourceVersion");
    let all_version = version(c.get("all").await);
    let updates = || ctl.calls("update_targets");

    // A heartbeat / readiness flip changes nothing a load balancer depends on.
    c.patch_node_status("node-a", json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletDown", "message": "x"}]}}))
        .await;
    ctl.settle(Duration::from_millis(300)).await;
    assert_eq!(ctl.calls("ensure").await + updates().await, 2, "a readiness flip must cost no provider call");

    // A new node outside the edge pool: only "all" changes, through a targets-only update, with
    // one event and no write to the Service.
    c.add_node("node-c", "10.0.0.3", &[]).await;
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "update_targets")], "one targets update", |v| v == 1.0)
        .await;
    c.wait_event("all", "UpdatedLoadBalancer").await;
    ctl.settle(Duration::from_millis(300)).await;
    assert_eq!(targets("all"), Some(json!(3)));
    assert_eq!(ctl.calls("ensure").await, 2, "no full ensure for a node change");
    assert_eq!(updates().await, 1, "exactly one call for the one load balancer whose targets changed");
    assert!(c.events("edge").await.iter().all(|e| e.0 != "UpdatedLoadBalancer"));
    assert_eq!(version(c.get("all").await), all_version, "a node change writes nothing to the Service");

    // Excluding the edge node changes both; edge's condition says it has no eligible node.
    c.patch_node(
        "node-b",
        json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": "true"}}}),
    )
    .await;
    c.wait_service("edge", "no eligible nodes", |s| condition(s).is_some_and(|c| c.1 == "NoEligibleNodes")).await;
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "update_targets")], "both updated", |v| v == 3.0).await;
    ctl.settle(Duration::from_millis(300)).await;
    assert_eq!(targets("all"), Some(json!(2)));
    assert_eq!(targets("edge"), Some(json!(0)));
    assert_eq!(updates().await, 3);
    c.wait_event("edge", "UnAvailableLoadBalancer").await;
    assert!(external_ip(&c.get("edge").await).is_some(), "no eligible node keeps the address");
    assert_eq!(version(c.get("all").await), all_version);

    // Removing a node.
    c.nodes().delete("node-c", &Default::default()).await.expect("delete node");
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "update_targets")], "removal", |v| v == 4.0).await;
    ctl.settle(Duration::from_millis(300)).await;
    assert_eq!(targets("all"), Some(json!(1)));
    assert_eq!(ctl.calls("ensure").await, 2);
    assert_eq!(version(c.get("all").await), all_version, "still no write to the Service");

    // A restart after the node set changed: the targets are right already, nothing is written.
    ctl.stop().await;
    let ctl = Controller::start(&c, &["--memory-state-file", state.to_str().expect("utf-8")]).await;
    ctl.wait_metric("cloudlb_reconciles_total", &[], "both reconciled", |v| v >= 2.0).await;
    ctl.settle(Duration::from_millis(300)).await;
    assert_eq!(ctl.calls("ensure").await, 0, "no ensure after restart");
    assert_eq!(targets("all"), Some(json!(1)));
    assert_eq!(version(c.get("all").await), all_version, "no write after restart");
    ctl.stop().await;
}

#[tokio::test]
async fn a_typo_keeps_a_working_load_balancer_following_the_nodes() {
    let c = cluster_with_nodes().await;
    let state = c.dir.path().join("memory-state.json");
    let ctl = Controller::start(&c, &["--memory-state-file", state.to_str().expect("utf-8")]).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    let ip = c.wait_address("web").await;
    let targets = || memory_entry(&state, "lbs", "web").map(|e| e["targets"].clone());
    assert_eq!(targets(), Some(json!(2)));

    // A typo in an annotation: reported, and nothing else changes...
    c.patch_service("web", json!({"metadata": {"annotations": {"cloudlb.io/healthcheck-interval-seconds": "often"}}}))
        .await;
    let svc = c.wait_service("web", "InvalidSpec", |s| condition(s).is_some_and(|c| c.1 == "InvalidSpec")).await;
    let message = condition(&svc).unwrap().2;
    assert!(message.contains("cloudlb.io/healthcheck-interval-seconds") && message.contains("last valid"), "{message}");
    assert_eq!(external_ip(&svc), Some(ip.clone()), "the address stays");
    assert_eq!(ctl.calls("ensure").await, 1);

    // ...but the load balancer keeps following the nodes, with its last valid settings.
    c.add_node("node-c", "10.0.0.3", &[]).await;
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "update_targets")], "targets follow", |v| v == 1.0)
        .await;
    assert_eq!(targets(), Some(json!(3)));
    c.nodes().delete("node-a", &Default::default()).await.expect("delete node");
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "update_targets")], "removal follows", |v| v == 2.0)
        .await;
    assert_eq!(targets(), Some(json!(2)));
    assert_eq!(ctl.calls("ensure").await, 1, "the invalid spec itself is never applied");

    // Fixing the typo applies the new settings.
    c.patch_service("web", json!({"metadata": {"annotations": {"cloudlb.io/healthcheck-interval-seconds": "20"}}}))
        .await;
    c.wait_service("web", "ready again", |s| condition(s).is_some_and(|c| c.0 == "True")).await;
    assert_eq!(ctl.calls("ensure").await, 2);
    assert_eq!(external_ip(&c.get("web").await), Some(ip));
    ctl.stop().await;
}

#[tokio::test]
async fn a_hung_provider_call_is_stopped_at_the_reconcile_timeout_and_retried() {
    let c = cluster_with_nodes().await;
    // Every provider call takes an hour: without a bound, the pass would hold the Service as
    // long, and nothing would say so.
    let ctl = Controller::start(&c, &["--memory-latency", "1h", "--reconcile-timeout", "2s"]).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    ctl.wait_metric("cloudlb_reconciles_total", &[("kind", "Service"), ("result", "error")], "a timed-out pass", |v| {
        v >= 1.0
    })
    .await;
    ctl.wait_log("took longer than --reconcile-timeout").await;
    let timeouts = [("kind", "Service"), ("reason", "timeout")];
    assert!(ctl.metric("cloudlb_reconcile_errors_total", &timeouts).await >= 1.0, "counted by reason");
    // The pass was stopped, so the process is alive: /healthz says so.
    assert_eq!(ctl.probe("/healthz").await.0, 200);
    ctl.stop().await;
}

#[tokio::test]
async fn a_service_deleted_without_our_cleanup_loses_its_state_and_its_load_balancer() {
    let c = cluster_with_nodes().await;
    let state = c.dir.path().join("memory-state.json");
    let ctl = Controller::start(&c, &["--memory-state-file", state.to_str().expect("path")]).await;
    for name in ["a", "b", "c"] {
        c.add_service(name, &[(80, "TCP")], json!({})).await;
    }
    for name in ["a", "b", "c"] {
        c.wait_address(name).await;
    }
    let tracked = |n: f64| ctl.wait_metric("cloudlb_tracked_load_balancers", &[], "tracked", move |v| v == n);
    tracked(3.0).await;
    // A normal delete: the cleanup pass forgets the object.
    c.services().delete("a", &Default::default()).await.expect("delete a");
    c.wait_gone("a").await;
    tracked(2.0).await;
    assert_eq!(ctl.calls("delete").await, 1);
    // Our finalizer removed by hand, then deleted: the object is gone at once and no pass ever
    // sees it again; the watch's deletion drops its state and deletes its load balancer from the
    // last copy.
    c.patch_service("b", json!({"metadata": {"finalizers": null}})).await;
    c.services().delete("b", &Default::default()).await.expect("delete b");
    c.wait_gone("b").await;
    tracked(1.0).await;
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "delete")], "the orphan's delete", |v| v == 2.0).await;
    assert!(memory_entry(&state, "lbs", "b").is_none(), "b's load balancer is gone");
    assert!(memory_entry(&state, "lbs", "c").is_some(), "c's is not");
    // A deleted object that never had a load balancer costs no call.
    c.add_service("bad", &[(80, "TCP")], json!({"metadata": {"annotations": {"cloudlb.io/internal": "ture"}}})).await;
    c.wait_event("bad", "InvalidLoadBalancerSpec").await;
    c.services().delete("bad", &Default::default()).await.expect("delete bad");
    c.wait_gone("bad").await;
    ctl.assert_idle("after an invalid Service was deleted").await;
    assert_eq!(ctl.calls("delete").await, 2);
    ctl.stop().await;
}

#[tokio::test]
async fn delete_removes_load_balancer_then_finalizer_then_object() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    c.wait_service("web", "address and finalizer", |s| external_ip(s).is_some() && has_finalizer(s)).await;
    c.services().delete("web", &Default::default()).await.expect("delete");
    c.wait_gone("web").await;
    assert_eq!(ctl.calls("delete").await, 1);
    let events = c.events("web").await;
    assert!(events.iter().any(|e| e.0 == "DeletingLoadBalancer"), "{events:?}");
    assert!(events.iter().any(|e| e.0 == "DeletedLoadBalancer"), "{events:?}");
    ctl.stop().await;
}

#[tokio::test]
async fn type_change_cleans_up() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    c.wait_address("web").await;
    c.patch_service("web", json!({"spec": {"type": "ClusterIP", "loadBalancerClass": null}})).await;
    let svc = c.wait_service("web", "cleanup", |s| !has_finalizer(s)).await;
    assert_eq!(external_ip(&svc), None, "status cleared");
    assert!(condition(&svc).is_none(), "our condition removed");
    let ann = svc.metadata.annotations.unwrap_or_default();
    assert!(!ann.keys().any(|k| k.starts_with("cloudlb.io/")), "our annotations removed: {ann:?}");
    assert_eq!(ctl.calls("delete").await, 1);
    c.wait_event("web", "DeletedLoadBalancer").await;
    ctl.stop().await;
}

#[tokio::test]
async fn class_change_cleans_up() {
    // loadBalancerClass is immutable while a Service is a LoadBalancer, so a class change is
    // LoadBalancer -> another type -> LoadBalancer with another class. With the controller down
    // in between, it only sees the end result.
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    c.wait_address("web").await;
    ctl.stop().await;
    c.patch_service("web", json!({"spec": {"type": "ClusterIP", "loadBalancerClass": null}})).await;
    c.patch_service("web", json!({"spec": {"type": "LoadBalancer", "loadBalancerClass": "other.example/lb"}})).await;
    let ctl = Controller::start(&c, &[]).await;
    let svc = c.wait_service("web", "cleanup", |s| !has_finalizer(s)).await;
    assert_eq!(external_ip(&svc), None, "our address removed");
    assert_eq!(ctl.calls("delete").await, 1);
    ctl.stop().await;
}

#[tokio::test]
async fn a_class_flag_typo_never_tears_down_load_balancers() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    let ip = c.wait_address("web").await;
    ctl.stop().await;
    let typo = Controller::start(&c, &["--load-balancer-class", "cloudbl.io/lb"]).await;
    typo.wait_log("is not claimed by this controller").await;
    typo.settle(Duration::from_millis(200)).await;
    assert_eq!(typo.calls("delete").await, 0);
    let svc = c.get("web").await;
    assert!(has_finalizer(&svc));
    assert_eq!(external_ip(&svc), Some(ip));
    typo.stop().await;
}

#[tokio::test]
async fn unclassed_services_need_manage_unclassed() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    c.add_service("unclassed", &[(80, "TCP")], json!({"spec": {"loadBalancerClass": null}})).await;
    c.add_service("classed", &[(80, "TCP")], json!({})).await;
    c.wait_address("classed").await;
    ctl.settle(Duration::from_millis(300)).await;
    let svc = c.get("unclassed").await;
    assert!(
        !has_finalizer(&svc) && external_ip(&svc).is_none() && svc.metadata.annotations.is_none(),
        "never written: {svc:?}"
    );
    assert!(c.events("unclassed").await.is_empty());
    ctl.stop().await;

    let sidecar = Controller::start(&c, &["--manage-unclassed"]).await;
    c.wait_address("unclassed").await;
    sidecar.stop().await;
}

#[tokio::test]
async fn bad_input_is_reported_and_creates_nothing() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    // A malformed source range is rejected by the API server itself (422, as on a real cluster),
    // so it never reaches a controller that way; the pure tests cover cloudlb's own check.
    c.add_service(
        "bad-internal",
        &[(80, "TCP")],
        json!({"metadata": {"annotations": {"cloudlb.io/internal": "ture"}}}),
    )
    .await;
    c.add_service("bad-ip", &[(80, "TCP")], json!({"spec": {"loadBalancerIP": "300.1.2.3"}})).await;
    c.add_service("sctp", &[(80, "SCTP")], json!({})).await;
    c.add_service(
        "bad-hc",
        &[(80, "TCP")],
        json!({"metadata": {"annotations": {"cloudlb.io/healthcheck-interval-seconds": "often"}}}),
    )
    .await;
    for (name, want) in [
        ("bad-internal", "cloudlb.io/internal: \"ture\" is not a boolean"),
        ("bad-ip", "spec.loadBalancerIP: \"300.1.2.3\" is not an IP address"),
        ("sctp", "protocol SCTP is not supported"),
        ("bad-hc", "healthcheck-interval-seconds"),
    ] {
        let svc = c.wait_service(name, "InvalidSpec", |s| condition(s).is_some_and(|c| c.1 == "InvalidSpec")).await;
        let (status, _, message) = condition(&svc).unwrap();
        assert_eq!(status, "False");
        assert!(message.contains(want), "{name}: {message}");
        assert!(!has_finalizer(&svc), "{name}: no finalizer without a cloud call");
        assert!(external_ip(&svc).is_none());
        let (_, kind, note) = c.wait_event(name, "InvalidLoadBalancerSpec").await;
        assert_eq!(kind, "Warning");
        assert!(note.contains(want), "{note}");
    }
    ctl.assert_idle("invalid specs").await;
    assert_eq!(ctl.calls("ensure").await, 0, "no cloud call for invalid specs");
    let invalid = [("kind", "Service"), ("reason", "invalid")];
    assert!(ctl.metric("cloudlb_reconcile_errors_total", &invalid).await >= 4.0, "a failed pass for each");
    assert_eq!(
        ctl.metric("cloudlb_reconciles_total", &[("result", "error")]).await,
        0.0,
        "passes that wait for a change are not retried errors"
    );
    let events = c.events("sctp").await.iter().filter(|e| e.0 == "InvalidLoadBalancerSpec").count();
    assert_eq!(events, 1, "one warning, not one per pass");

    // Fixing the Service makes it work.
    c.patch_service("bad-ip", json!({"spec": {"loadBalancerIP": "198.18.7.7"}})).await;
    assert_eq!(c.wait_address("bad-ip").await, "198.18.7.7");
    ctl.stop().await;
}

#[tokio::test]
async fn a_typo_never_tears_down_a_working_load_balancer() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    let ip = c.wait_address("web").await;
    c.patch_service("web", json!({"metadata": {"annotations": {"cloudlb.io/healthcheck-timeout-seconds": "5s"}}}))
        .await;
    let svc = c.wait_service("web", "InvalidSpec", |s| condition(s).is_some_and(|c| c.1 == "InvalidSpec")).await;
    assert_eq!(external_ip(&svc).as_deref(), Some(ip.as_str()), "address kept");
    assert!(has_finalizer(&svc));
    assert_eq!(ctl.calls("delete").await, 0);
    assert_eq!(ctl.calls("ensure").await, 1);
    ctl.stop().await;
}

#[tokio::test]
async fn provider_failures_back_off_then_succeed() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &["--memory-fail-first", "1"]).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    let svc = c.wait_service("web", "ProviderError", |s| condition(s).is_some_and(|c| c.1 == "ProviderError")).await;
    assert!(condition(&svc).unwrap().2.contains("injected failure"));
    let (_, kind, _) = c.wait_event("web", "SyncLoadBalancerFailed").await;
    assert_eq!(kind, "Warning");
    // Backoff starts at about 5 s (jittered 4-6 s); the retry succeeds.
    let started = std::time::Instant::now();
    c.wait_address("web").await;
    c.wait_service("web", "Ready", |s| condition(s).is_some_and(|c| c.1 == "Ready")).await;
    assert!(started.elapsed() >= Duration::from_secs(3), "retried after a backoff, not at once");
    assert_eq!(ctl.metric("cloudlb_provider_calls_total", &[("call", "ensure"), ("result", "error")]).await, 1.0);
    let transient = [("kind", "Service"), ("reason", "transient")];
    assert_eq!(ctl.metric("cloudlb_reconcile_errors_total", &transient).await, 1.0, "the failed pass, by reason");
    assert_eq!(ctl.metric("cloudlb_reconcile_errors_total", &[]).await, 1.0, "and nothing else");
    ctl.stop().await;
}

#[tokio::test]
async fn restart_on_converged_state_makes_no_mutating_call() {
    let c = cluster_with_nodes().await;
    let state = c.dir.path().join("memory-state.json");
    let state_arg = state.to_str().unwrap().to_string();
    let ctl = Controller::start(&c, &["--memory-state-file", &state_arg]).await;
    for name in ["a", "b", "c"] {
        c.add_service(name, &[(80, "TCP")], json!({})).await;
    }
    let mut before = Vec::new();
    for name in ["a", "b", "c"] {
        before.push(c.wait_address(name).await);
    }
    ctl.stop().await;

    let ctl = Controller::start(&c, &["--memory-state-file", &state_arg]).await;
    ctl.wait_metric("cloudlb_reconciles_total", &[], "reconciles after restart", |v| v >= 3.0).await;
    ctl.settle(Duration::from_millis(300)).await;
    assert_eq!(ctl.calls("ensure").await, 0, "no ensure after restart");
    assert_eq!(ctl.calls("delete").await, 0, "no delete after restart");
    for (name, ip) in ["a", "b", "c"].iter().zip(&before) {
        assert_eq!(external_ip(&c.get(name).await).as_ref(), Some(ip));
    }
    ctl.stop().await;
}

#[tokio::test]
async fn in_process_provider_is_re_ensured_at_start_keeping_addresses() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    c.add_service("a", &[(80, "TCP")], json!({})).await;
    c.add_service("b", &[(80, "TCP")], json!({})).await;
    let a = c.wait_address("a").await;
    let b = c.wait_address("b").await;
    ctl.stop().await;
    // A new process starts with an empty pool: the recorded addresses must be handed back.
    let ctl = Controller::start(&c, &[]).await;
    // Rebuilt before the controller reports ready (Controller::start waited for /readyz).
    assert_eq!(ctl.calls("ensure").await, 2, "both restored before ready");
    ctl.settle(Duration::from_millis(300)).await;
    assert_eq!(ctl.calls("ensure").await, 2, "no second call after the restore");
    assert_eq!(external_ip(&c.get("a").await), Some(a));
    assert_eq!(external_ip(&c.get("b").await), Some(b));
    ctl.stop().await;
}

#[tokio::test]
async fn a_restart_gives_recorded_addresses_back_before_requested_ones() {
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &[]).await;
    // Winners hold addresses; each loser asks for a winner's address, is in Conflict and keeps
    // its own. Ten pairs, restored in the cache's order: before the fix some loser was restored
    // first and took its winner's address (the chance that none does is about 1 in 1,000).
    let pairs = 10;
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for i in 0..pairs {
        c.add_service(&format!("w{i}"), &[(80, "TCP")], json!({})).await;
        c.add_service(&format!("l{i}"), &[(80, "TCP")], json!({})).await;
    }
    for i in 0..pairs {
        winners.push(c.wait_address(&format!("w{i}")).await);
        losers.push(c.wait_address(&format!("l{i}")).await);
    }
    for (i, ip) in winners.iter().enumerate() {
        c.patch_service(&format!("l{i}"), json!({"spec": {"loadBalancerIP": ip}})).await;
    }
    for (i, loser) in losers.iter().enumerate() {
        let svc = c
            .wait_service(&format!("l{i}"), "Conflict", |s| condition(s).is_some_and(|c| c.1 == "ResourceConflict"))
            .await;
        assert_eq!(external_ip(&svc).as_ref(), Some(loser), "the loser keeps its address");
    }
    ctl.stop().await;

    let ctl = Controller::start(&c, &[]).await;
    // Restored before ready; then the losers' reconcile reports the conflict again.
    for i in 0..pairs {
        assert_eq!(external_ip(&c.get(&format!("w{i}")).await).as_ref(), Some(&winners[i]), "w{i}");
        assert_eq!(external_ip(&c.get(&format!("l{i}")).await).as_ref(), Some(&losers[i]), "l{i}");
    }
    ctl.wait_metric("cloudlb_reconciles_total", &[], "the losers reconciled", |v| v >= 2.0 * pairs as f64).await;
    ctl.settle(Duration::from_millis(300)).await;
    for i in 0..pairs {
        let w = c.get(&format!("w{i}")).await;
        let l = c.get(&format!("l{i}")).await;
        assert_eq!(external_ip(&w).as_ref(), Some(&winners[i]), "w{i} after reconcile");
        assert_eq!(external_ip(&l).as_ref(), Some(&losers[i]), "l{i} after reconcile");
        assert_eq!(condition(&l).map(|c| c.1).as_deref(), Some("ResourceConflict"), "l{i}");
    }
    ctl.stop().await;
}

#[tokio::test]
async fn bad_flags_exit_non_zero_with_a_message() {
    for (args, want) in [
        (vec!["run", "--provider", "nope"], "invalid value 'nope'"),
        (vec!["run", "--concurrency", "0"], "--concurrency"),
        (vec!["run", "--resync-period", "soon"], "is not a duration"),
        (vec!["run", "--cluster-name", "Bad_Name"], "lowercase letters"),
        (vec!["run", "--memory-ip-pool", "10.0.0.0/99"], "is not a CIDR"),
        (vec!["run", "--kubeconfig", "/nonexistent/kubeconfig"], "/nonexistent/kubeconfig"),
        (
            vec!["run", "--provider", "aws", "--aws-region", "us-east-1", "--kubeconfig", "/dev/null"],
            "--aws-vpc-id is required",
        ),
        (vec!["run", "--local-address-pool", "127.240.0.0/16,nope"], "is not a CIDR"),
    ] {
        let out = tokio::time::timeout(
            WAIT,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudlb"))
                .args(&args)
                .args(["--metrics-addr", "127.0.0.1:0"])
                .output(),
        )
        .await
        .expect("exits promptly")
        .expect("runs");
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{args:?}: want {want:?} in {stderr}");
    }
}

#[tokio::test]
async fn version_names_the_commit() {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudlb")).arg("--version").output(),
    )
    .await
    .expect("exits promptly")
    .expect("runs");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim(), format!("cloudlb {} (commit {})", env!("CARGO_PKG_VERSION"), cloudlb::COMMIT));
    // Built from a git checkout (as here and in CI): the commit is a hash, not "unknown".
    if std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.git")).exists() {
        assert!(cloudlb::COMMIT.len() == 12 && cloudlb::COMMIT.chars().all(|c| c.is_ascii_hexdigit()), "{stdout}");
    }
}

#[tokio::test]
async fn drift_is_detected_and_repaired() {
    let c = cluster_with_nodes().await;
    let state = c.dir.path().join("memory-state.json");
    let state_arg = state.to_str().unwrap().to_string();
    let args = ["--memory-state-file", state_arg.as_str(), "--resync-period", "1s"];
    let ctl = Controller::start(&c, &args).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    let ip = c.wait_address("web").await;
    ctl.stop().await;
    // Someone deletes the load balancer behind cloudlb's back (here: in the provider's state).
    let text = std::fs::read_to_string(&state).expect("state file");
    let mut v: serde_json::Value = serde_json::from_str(&text).expect("state json");
    v["lbs"].as_object_mut().expect("lbs map").clear();
    std::fs::write(&state, v.to_string()).expect("write state");
    let ctl = Controller::start(&c, &args).await;
    let (_, kind, note) = c.wait_event("web", "LoadBalancerDrifted").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("missing"), "{note}");
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "ensure")], "repair", |v| v >= 1.0).await;
    assert_eq!(external_ip(&c.get("web").await), Some(ip), "repaired with the recorded address");
    ctl.stop().await;
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let c = cluster_with_nodes().await;
    let first = Controller::start(&c, &[]).await;
    first.wait_metric("cloudlb_leader", &[], "first leads", |v| v == 1.0).await;
    let acquired = [("transition", "acquired")];
    assert_eq!(first.metric("cloudlb_leader_transitions_total", &acquired).await, 1.0);
    let second = Controller::start(&c, &[]).await; // ready as a standby
    assert_eq!(second.metric("cloudlb_leader", &[]).await, 0.0, "the second waits");
    assert_eq!(second.metric("cloudlb_leader_transitions_total", &[]).await, 0.0);
    c.add_service("a", &[(80, "TCP")], json!({})).await;
    c.wait_address("a").await;
    assert_eq!(first.calls("ensure").await, 1);
    assert_eq!(second.calls("ensure").await, 0, "a standby makes no provider call");

    // A clean shutdown releases the lease: the standby takes over without waiting for expiry.
    let released = std::time::Instant::now();
    first.stop().await;
    second.wait_metric("cloudlb_leader", &[], "second leads", |v| v == 1.0).await;
    assert!(released.elapsed() < Duration::from_secs(10), "took {:?}", released.elapsed());
    assert_eq!(second.metric("cloudlb_leader_transitions_total", &acquired).await, 1.0);
    c.add_service("b", &[(80, "TCP")], json!({})).await;
    c.wait_address("b").await;
    second.stop().await;
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_after_the_lease_expires() {
    let c = cluster_with_nodes().await;
    let mut first = Controller::start(&c, &[]).await;
    first.wait_metric("cloudlb_leader", &[], "first leads", |v| v == 1.0).await;
    let second = Controller::start(&c, &[]).await;
    first.kill().await; // no release: the lease must expire (15 s) on the standby's clock
    let killed = std::time::Instant::now();
    second.wait_metric("cloudlb_leader", &[], "second leads", |v| v == 1.0).await;
    assert!(killed.elapsed() >= Duration::from_secs(12), "took over before the lease expired: {:?}", killed.elapsed());
    c.add_service("a", &[(80, "TCP")], json!({})).await;
    c.wait_address("a").await;
    second.stop().await;
}

#[tokio::test]
async fn namespace_flag_limits_the_scope() {
    use k8s_openapi::api::core::v1::{Namespace, Service};
    use kube::api::{Api, PostParams};
    let c = cluster_with_nodes().await;
    let ns: Namespace =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}))
            .unwrap();
    Api::<Namespace>::all(c.client.clone()).create(&PostParams::default(), &ns).await.expect("namespace");
    let ctl = Controller::start(&c, &["--namespace", "team-a"]).await;
    let team: Api<Service> = Api::namespaced(c.client.clone(), "team-a");
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "in-scope", "namespace": "team-a"},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": CLASS, "ports": [{"port": 80, "protocol": "TCP"}]}
    }))
    .unwrap();
    c.add_service("out-of-scope", &[(80, "TCP")], json!({})).await;
    team.create(&PostParams::default(), &svc).await.expect("create in team-a");
    let fut = kube::runtime::wait::await_condition(team.clone(), "in-scope", |s: Option<&Service>| {
        s.is_some_and(|s| external_ip(s).is_some())
    });
    tokio::time::timeout(WAIT, fut).await.expect("in-scope Service gets an address").expect("watch");
    ctl.settle(Duration::from_millis(300)).await;
    let out = c.get("out-of-scope").await;
    assert!(external_ip(&out).is_none() && !has_finalizer(&out), "a Service outside --namespace is never touched");
    assert_eq!(ctl.calls("ensure").await, 1);
    ctl.stop().await;
}

#[tokio::test]
async fn a_client_side_api_limit_still_converges() {
    let c = cluster_with_nodes().await;
    // Low enough that starting (a dozen lists, watches and Lease calls) cannot fit the burst.
    let limit = ["--kube-api-qps", "10", "--kube-api-burst", "2"];
    let ctl = Controller::start(&c, &limit).await;
    for name in ["a", "b", "c"] {
        c.add_service(name, &[(80, "TCP")], json!({})).await;
    }
    for name in ["a", "b", "c"] {
        c.wait_address(name).await;
    }
    assert_eq!(ctl.calls("ensure").await, 3);
    assert!(ctl.metric("cloudlb_kube_api_limiter_waits_total", &[]).await >= 1.0, "requests waited for the limit");
    assert!(ctl.metric("cloudlb_kube_api_limiter_wait_seconds_total", &[]).await > 0.0);
    assert_eq!(ctl.metric("cloudlb_kube_api_throttled_total", &[]).await, 0.0, "the sandbox never sheds load");
    ctl.stop().await;
}

#[tokio::test]
async fn the_work_queue_shows_what_waits_for_a_pass() {
    // One pass at a time, 300 ms per provider call: Services created together wait in the
    // queue for the passes ahead of them.
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &["--memory-latency", "300ms", "--concurrency", "1"]).await;
    let service = [("kind", "Service")];
    let before = ctl.metric("cloudlb_workqueue_wait_seconds_count", &service).await;
    for name in ["a", "b", "c"] {
        c.add_service(name, &[(80, "TCP")], json!({})).await;
    }
    for name in ["a", "b", "c"] {
        c.wait_address(name).await;
    }
    ctl.settle(Duration::from_millis(300)).await;
    let passes = ctl.metric("cloudlb_workqueue_wait_seconds_count", &service).await - before;
    assert!(passes >= 3.0, "each new Service's pass came through the queue: {passes}");
    // The second waited for the first's ensure, the third for both.
    let waited = ctl.metric("cloudlb_workqueue_wait_seconds_sum", &service).await;
    assert!(waited >= 0.6, "waiting behind 300 ms ensures, one at a time: {waited} s in all");
    assert_eq!(ctl.metric("cloudlb_workqueue_depth", &service).await, 0.0, "nothing left waiting");
    ctl.stop().await;
}

#[tokio::test]
async fn a_new_service_is_not_queued_behind_node_churn() {
    // 12 load balancers, 300 ms per provider call, 2 at a time: a node change is 1.8 s of
    // targets updates. A Service created while they run must not wait for all of them.
    let c = cluster_with_nodes().await;
    let ctl = Controller::start(&c, &["--memory-latency", "300ms", "--concurrency", "2"]).await;
    let names: Vec<String> = (0..12).map(|i| format!("svc-{i:02}")).collect();
    for name in &names {
        c.add_service(name, &[(80, "TCP")], json!({})).await;
    }
    for name in &names {
        c.wait_address(name).await;
    }
    ctl.settle(Duration::from_millis(300)).await;

    c.add_node("node-c", "10.0.0.3", &[]).await;
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "update_targets")], "the sweep started", |v| v >= 1.0)
        .await;
    c.add_service("fresh", &[(80, "TCP")], json!({})).await;
    c.wait_address("fresh").await;
    let swept = ctl.calls("update_targets").await;
    assert!(swept < 10, "the new Service waited for the node sweep: {swept} of 12 targets updates were done first");
    ctl.wait_metric("cloudlb_provider_calls_total", &[("call", "update_targets")], "the sweep ends", |v| v >= 12.0)
        .await;
    ctl.stop().await;
}
