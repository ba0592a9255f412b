//! The gcp provider against the Compute fake (`cloudlb-gce-fake`), through the real
//! `google-cloud-compute-v1` client over HTTP. Each test starts its own fake; what the provider
//! made is read back through the fake's REST API, never from the provider's own answers.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use cloudlb_gce_fake::{Delivery, Fault, FaultKind};
use cloudlb_provider::{
    ErrorClass, HealthCheckProtocol, HealthTarget, IngressPoint, Listener, Protocol, Provider, ProviderError, Scheme,
    SessionAffinity, conformance,
};
use cloudlb_provider_gcp::{names, ownership};
use serde_json::{Value, json};
use support::*;

fn ip_of(st: &cloudlb_provider::LoadBalancerStatus) -> String {
    match st.ingress.as_slice() {
        [IngressPoint::Ip(ip)] => ip.to_string(),
        other => panic!("expected one IP, got {other:?}"),
    }
}

fn strs(v: &Value) -> Vec<String> {
    let mut out: Vec<String> =
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
    out.sort();
    out
}

fn tail(link: &str) -> &str {
    link.find("projects/").map(|i| &link[i..]).unwrap_or(link)
}

#[tokio::test]
async fn conformance_suite() {
    let w = World::new(conformance::CLUSTER).await;
    let p = w.provider().await;
    conformance::run_all(&p).await;
    assert!(w.everything().await.is_empty(), "the conformance suite left {:?}", w.everything().await);
}

#[tokio::test]
async fn creates_the_resources_the_spec_asks_for() {
    let w = World::new("shape").await;
    let p = w.provider().await;
    let id = w.id("web");
    let a = w.node(ZONE_A, "node-a");
    let b = w.node(ZONE_B, "node-b");
    let c = w.node(ZONE_A, "node-c");
    let mut spec = w.spec(&[80, 443], &[a, b, c, conformance::target("no-provider-id", "10.0.0.9")]);
    spec.source_ranges = vec!["10.0.0.0/8".parse().unwrap(), "192.168.0.0/16".parse().unwrap()];
    spec.session_affinity = SessionAffinity::ClientIp { timeout_seconds: 10800 };
    assert!(p.validate(&spec).is_empty(), "{:?}", p.validate(&spec));
    assert!(p.capabilities().check(&spec).is_empty());
    let warnings = p.warnings(&spec);
    assert!(warnings.len() == 1 && warnings[0].contains("no-provider-id"), "{warnings:?}");

    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    let name = names::load_balancer(&id);
    let ip = ip_of(&st);

    let fr = w.get(&format!("regions/{REGION}/forwardingRules/{name}")).await.expect("forwarding rule");
    assert_eq!(fr["IPAddress"], json!(ip), "status shows the forwarding rule's IP");
    assert_eq!(fr["IPProtocol"], "TCP");
    assert_eq!(fr["loadBalancingScheme"], "EXTERNAL");
    assert_eq!(fr["networkTier"], "PREMIUM");
    assert_eq!(strs(&fr["ports"]), ["443", "80"]);
    assert!(fr["backendService"].as_str().unwrap().ends_with(&format!("/regions/{REGION}/backendServices/{name}")));
    assert_eq!(fr["labels"]["cloudlb-cluster"], "shape");
    let desc: BTreeMap<String, String> = serde_json::from_str(fr["description"].as_str().unwrap()).unwrap();
    assert_eq!(desc.get(ownership::CLUSTER).map(String::as_str), Some("shape"));
    assert_eq!(desc.get(ownership::OWNER).map(String::as_str), Some("default/web"));
    assert_eq!(desc.get(ownership::OWNER_UID), Some(&id.uid));
    assert_eq!(st.record.get("forwarding-rule").map(tail), fr["selfLink"].as_str().map(tail));
    assert_eq!(st.record.get("ip"), Some(ip.as_str()));

    let bs = w.get(&format!("regions/{REGION}/backendServices/{name}")).await.expect("backend service");
    assert_eq!(bs["loadBalancingScheme"], "EXTERNAL");
    assert_eq!(bs["protocol"], "TCP");
    assert_eq!(bs["sessionAffinity"], "CLIENT_IP");
    let ig = names::instance_group("shape");
    let groups: Vec<String> =
        bs["backends"].as_array().unwrap().iter().map(|b| tail(b["group"].as_str().unwrap()).to_string()).collect();
    assert_eq!(
        groups,
        [ZONE_A, ZONE_B].map(|z| format!("projects/{PROJECT}/zones/{z}/instanceGroups/{ig}")),
        "one instance group per zone with nodes"
    );
    assert!(bs["backends"].as_array().unwrap().iter().all(|b| b["balancingMode"] == "CONNECTION"));
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-a", "node-c"]);
    assert_eq!(w.members(ZONE_B, &ig).await, ["node-b"]);
    let ig_a = w.get(&format!("zones/{ZONE_A}/instanceGroups/{ig}")).await.unwrap();
    assert!(ownership::is_owned(ownership::Owner::Cluster("shape"), ig_a["description"].as_str()));

    // externalTrafficPolicy Cluster: the cluster's node check on kube-proxy.
    let hc_name = names::node_health_check("shape");
    assert!(tail(bs["healthChecks"][0].as_str().unwrap()).ends_with(&format!("/healthChecks/{hc_name}")));
    let hc = w.get(&format!("regions/{REGION}/healthChecks/{hc_name}")).await.expect("health check");
    assert_eq!(hc["type"], "HTTP");
    assert_eq!(hc["httpHealthCheck"]["port"], 10256);
    assert_eq!(hc["httpHealthCheck"]["requestPath"], "/healthz");

    let fw = w.get(&format!("global/firewalls/{name}")).await.expect("traffic firewall");
    assert_eq!(strs(&fw["sourceRanges"]), ["10.0.0.0/8", "192.168.0.0/16"]);
    assert_eq!(strs(&fw["destinationRanges"]), [format!("{ip}/32")]);
    assert_eq!(fw["allowed"], json!([{"IPProtocol": "tcp", "ports": ["80", "443"]}]));
    assert!(fw["network"].as_str().unwrap().ends_with("/global/networks/default"));
    let hc_fw = w.get(&format!("global/firewalls/{}", names::node_health_check_firewall("shape"))).await.unwrap();
    assert_eq!(strs(&hc_fw["sourceRanges"]), ["130.211.0.0/22", "209.85.152.0/22", "209.85.204.0/22", "35.191.0.0/16"]);
    assert_eq!(hc_fw["allowed"], json!([{"IPProtocol": "tcp", "ports": ["10256"]}]));

    // No address was reserved: the Service asked for no IP.
    assert!(w.list(&format!("regions/{REGION}/addresses")).await.is_empty());

    // get sees every part; the record names the groups.
    let got = p.get(&id, Some(&st.record)).await.unwrap().expect("exists");
    assert_eq!(got.ingress, st.ingress);
    assert_eq!(got.spec_hash, None, "complete load balancer: nothing missing");
    assert_eq!(cloudlb_provider_gcp::record::zones(&st.record), [ZONE_A, ZONE_B]);

    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn unchanged_ensure_makes_no_mutating_call_and_node_churn_only_touches_membership() {
    let w = World::new("calls").await;
    let p = w.provider().await;
    let id = w.id("web");
    let a = w.node(ZONE_A, "node-a");
    let b = w.node(ZONE_B, "node-b");
    let spec = w.spec(&[80], &[a.clone(), b.clone()]);
    let before = p.call_counts();
    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    let new_calls = diff(&before, &p.call_counts());

    w.fake.clear_calls();
    let before = p.call_counts();
    let again = p.ensure(&id, &spec, Some(&st.record)).await.expect("unchanged ensure");
    assert_eq!(again.record, st.record);
    assert!(w.mutations().is_empty(), "an unchanged ensure changed something: {:?}", w.mutations());
    let unchanged_calls = diff(&before, &p.call_counts());

    // A node joins zone A: one addInstances, nothing else.
    let c = w.node(ZONE_A, "node-c");
    let before = p.call_counts();
    let spec2 = w.spec(&[80], &[a.clone(), b.clone(), c.clone()]);
    let st2 = p.ensure(&id, &spec2, Some(&st.record)).await.expect("node added");
    let add_calls = diff(&before, &p.call_counts());
    assert_eq!(ip_of(&st2), ip_of(&st));
    let ig = names::instance_group("calls");
    assert_eq!(w.mutations(), [format!("addInstances zones/{ZONE_A}/instanceGroups/{ig}")]);
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-a", "node-c"]);

    // It leaves again: one removeInstances.
    w.fake.clear_calls();
    p.ensure(&id, &spec, Some(&st2.record)).await.expect("node removed");
    assert_eq!(w.mutations(), [format!("removeInstances zones/{ZONE_A}/instanceGroups/{ig}")]);
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-a"]);

    w.fake.clear_calls();
    let before = p.call_counts();
    p.delete(&id, Some(&st.record)).await.expect("delete");
    let delete_calls = diff(&before, &p.call_counts());
    assert!(w.everything().await.is_empty());

    // Measured costs (printed for the record; the bounds keep them from creeping up).
    for (what, calls) in [
        ("ensure new", &new_calls),
        ("ensure unchanged", &unchanged_calls),
        ("node add", &add_calls),
        ("delete", &delete_calls),
    ] {
        let total: u64 = calls.values().sum();
        let writes: u64 = calls.iter().filter(|(k, _)| !is_read(k)).map(|(_, v)| v).sum();
        println!("{what}: {total} calls ({writes} mutating) {calls:?}");
    }
    let writes = |m: &BTreeMap<String, u64>| m.iter().filter(|(k, _)| !is_read(k)).map(|(_, v)| *v).sum::<u64>();
    assert_eq!(writes(&unchanged_calls), 0);
    assert_eq!(writes(&add_calls), 1);
    assert_eq!(
        writes(&new_calls),
        2 + 2 + 1 + 1 + 1 + 1 + 1,
        "2 groups + 2 addInstances + check + its firewall + backend service + rule + firewall: {new_calls:?}"
    );
    assert!(unchanged_calls.values().sum::<u64>() <= 10, "{unchanged_calls:?}");
}

fn is_read(call: &str) -> bool {
    call.ends_with(".get") || call.ends_with(".list") || call.ends_with(".listInstances")
}

fn diff(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

#[tokio::test]
async fn ports_traffic_policy_and_source_ranges_converge_in_place_keeping_the_ip() {
    let w = World::new("update").await;
    let p = w.provider().await;
    let id = w.id("web");
    let a = w.node(ZONE_A, "node-a");
    let spec = w.spec(&[80], std::slice::from_ref(&a));
    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    let ip = ip_of(&st);
    let name = names::load_balancer(&id);

    // Ports: the rule cannot change in place; it is re-made with the same IP.
    let spec = w.spec(&[80, 8080], std::slice::from_ref(&a));
    let st = p.ensure(&id, &spec, Some(&st.record)).await.expect("ports");
    assert_eq!(ip_of(&st), ip, "the IP survives a re-created forwarding rule");
    let fr = w.get(&format!("regions/{REGION}/forwardingRules/{name}")).await.unwrap();
    assert_eq!(strs(&fr["ports"]), ["80", "8080"]);
    assert!(w.list(&format!("regions/{REGION}/addresses")).await.is_empty(), "the IP was held only while re-making");
    let fw = w.get(&format!("global/firewalls/{name}")).await.unwrap();
    assert_eq!(fw["allowed"], json!([{"IPProtocol": "tcp", "ports": ["80", "8080"]}]));

    // externalTrafficPolicy Local: a per-Service check on healthCheckNodePort; the backend
    // service is updated in place (fingerprint), the rule is untouched.
    let mut local = spec.clone();
    local.health_check.target = HealthTarget::ServiceHealthCheckNodePort;
    local.health_check.protocol = HealthCheckProtocol::Http;
    local.health_check.port = Some(32100);
    local.health_check.path = Some("/healthz".into());
    w.fake.clear_calls();
    let st = p.ensure(&id, &local, Some(&st.record)).await.expect("ETP Local");
    assert_eq!(ip_of(&st), ip);
    assert!(!w.mutations().iter().any(|m| m.contains("forwardingRules")), "{:?}", w.mutations());
    let bs = w.get(&format!("regions/{REGION}/backendServices/{name}")).await.unwrap();
    assert!(bs["healthChecks"][0].as_str().unwrap().ends_with(&format!("/healthChecks/{name}")));
    let hc = w.get(&format!("regions/{REGION}/healthChecks/{name}")).await.unwrap();
    assert_eq!(hc["httpHealthCheck"]["port"], 32100);
    let hc_fw = w.get(&format!("global/firewalls/{}", names::health_check_firewall(&id))).await.unwrap();
    assert_eq!(hc_fw["allowed"], json!([{"IPProtocol": "tcp", "ports": ["32100"]}]));

    // Back to Cluster: the per-Service check and its firewall go.
    let st = p.ensure(&id, &spec, Some(&st.record)).await.expect("ETP Cluster");
    assert!(w.get(&format!("regions/{REGION}/healthChecks/{name}")).await.is_none());
    assert!(w.get(&format!("global/firewalls/{}", names::health_check_firewall(&id))).await.is_none());

    // Source ranges: the firewall is updated, nothing else.
    let mut ranged = spec.clone();
    ranged.source_ranges = vec!["203.0.113.0/24".parse().unwrap()];
    w.fake.clear_calls();
    let st = p.ensure(&id, &ranged, Some(&st.record)).await.expect("source ranges");
    assert_eq!(w.mutations(), [format!("update global/firewalls/{name}")]);
    let fw = w.get(&format!("global/firewalls/{name}")).await.unwrap();
    assert_eq!(strs(&fw["sourceRanges"]), ["203.0.113.0/24"]);

    // TCP + UDP: backend service UNSPECIFIED, rule L3_DEFAULT on all ports, same IP.
    let mut mixed = ranged.clone();
    mixed.listeners.push(Listener { port: 53, protocol: Protocol::Udp, node_port: 30053, name: None });
    mixed.listeners.sort();
    let st = p.ensure(&id, &mixed, Some(&st.record)).await.expect("mixed protocols");
    assert_eq!(ip_of(&st), ip);
    let fr = w.get(&format!("regions/{REGION}/forwardingRules/{name}")).await.unwrap();
    assert_eq!((fr["IPProtocol"].as_str(), fr["allPorts"].as_bool()), (Some("L3_DEFAULT"), Some(true)));
    let bs = w.get(&format!("regions/{REGION}/backendServices/{name}")).await.unwrap();
    assert_eq!(bs["protocol"], "UNSPECIFIED");
    let fw = w.get(&format!("global/firewalls/{name}")).await.unwrap();
    assert_eq!(
        fw["allowed"],
        json!([{"IPProtocol": "tcp", "ports": ["80", "8080"]}, {"IPProtocol": "udp", "ports": ["53"]}])
    );

    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn internal_load_balancer_in_the_subnetwork() {
    let w = World::new("ilb").await;
    let p = w.provider().await;
    let id = w.id("db");
    let a = w.node(ZONE_A, "node-a");
    let mut spec = w.spec(&[5432], &[a]);
    spec.options.insert("load-balancer-type".into(), "Internal".into());
    spec.options.insert("internal-load-balancer-allow-global-access".into(), "true".into());
    assert!(p.validate(&spec).is_empty(), "{:?}", p.validate(&spec));
    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    let ip = ip_of(&st);
    assert!(ip.starts_with("10.128."), "an internal IP from the subnet pool, got {ip}");
    let name = names::load_balancer(&id);
    let fr = w.get(&format!("regions/{REGION}/forwardingRules/{name}")).await.unwrap();
    assert_eq!(fr["loadBalancingScheme"], "INTERNAL");
    assert!(fr["subnetwork"].as_str().unwrap().ends_with(&format!("/regions/{REGION}/subnetworks/{SUBNET}")));
    assert_eq!(fr["allowGlobalAccess"], true);
    let bs = w.get(&format!("regions/{REGION}/backendServices/{name}")).await.unwrap();
    assert_eq!(bs["loadBalancingScheme"], "INTERNAL");
    assert!(bs["network"].as_str().unwrap().ends_with("/global/networks/default"));

    // A requested internal IP and a subnet by annotation.
    let pinned_id = w.id("pinned");
    let mut pinned = spec.clone();
    pinned.requested_ip = Some("10.128.7.7".parse().unwrap());
    pinned.options.insert("internal-load-balancer-subnet".into(), "other-subnet".into());
    let pst = p.ensure(&pinned_id, &pinned, None).await.expect("pinned internal");
    assert_eq!(ip_of(&pst), "10.128.7.7");
    let pfr = w.get(&format!("regions/{REGION}/forwardingRules/{}", names::load_balancer(&pinned_id))).await.unwrap();
    assert!(pfr["subnetwork"].as_str().unwrap().ends_with("/subnetworks/other-subnet"));
    p.delete(&pinned_id, Some(&pst.record)).await.expect("delete pinned");

    // allowGlobalAccess off: patched in place, same IP.
    spec.options.insert("internal-load-balancer-allow-global-access".into(), "false".into());
    w.fake.clear_calls();
    let st2 = p.ensure(&id, &spec, Some(&st.record)).await.expect("patch");
    assert_eq!(ip_of(&st2), ip);
    assert_eq!(w.mutations(), [format!("patch regions/{REGION}/forwardingRules/{name}")]);

    // cloudlb.io/internal (the spec's scheme) works the same.
    let mut by_scheme = spec.clone();
    by_scheme.options.remove("load-balancer-type");
    by_scheme.scheme = Scheme::Internal;
    w.fake.clear_calls();
    let st2 = p.ensure(&id, &by_scheme, Some(&st2.record)).await.expect("same LB through cloudlb.io/internal");
    assert!(w.mutations().is_empty(), "{:?}", w.mutations());

    // Flipping to external (Standard tier) re-makes the rule and the backend service.
    let mut external = spec.clone();
    external.options.clear();
    external.options.insert("network-tier".into(), "Standard".into());
    external.scheme = Scheme::InternetFacing;
    let st3 = p.ensure(&id, &external, Some(&st2.record)).await.expect("to external");
    assert!(!ip_of(&st3).starts_with("10.128."));
    let fr = w.get(&format!("regions/{REGION}/forwardingRules/{name}")).await.unwrap();
    assert_eq!((fr["loadBalancingScheme"].as_str(), fr["networkTier"].as_str()), (Some("EXTERNAL"), Some("STANDARD")));
    let bs = w.get(&format!("regions/{REGION}/backendServices/{name}")).await.unwrap();
    assert_eq!(bs["loadBalancingScheme"], "EXTERNAL");
    p.delete(&id, Some(&st3.record)).await.expect("delete");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn a_users_reserved_address_is_used_and_never_released() {
    let w = World::new("addr").await;
    let p = w.provider().await;
    let a = w.node(ZONE_A, "node-a");
    create(&w, &format!("regions/{REGION}/addresses"), json!({"name": "user-ip", "description": "mine"})).await;
    let user_ip =
        w.get(&format!("regions/{REGION}/addresses/user-ip")).await.unwrap()["address"].as_str().unwrap().to_string();

    // By loadBalancerIP.
    let id = w.id("by-ip");
    let mut spec = w.spec(&[80], std::slice::from_ref(&a));
    spec.requested_ip = Some(user_ip.parse().unwrap());
    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    assert_eq!(ip_of(&st), user_ip);
    assert!(st.record.get("user-address").is_some_and(|l| l.ends_with("/addresses/user-ip")));
    p.delete(&id, Some(&st.record)).await.expect("delete");
    let kept = w.get(&format!("regions/{REGION}/addresses/user-ip")).await.expect("the user's address is kept");
    assert_eq!(kept["description"], "mine");

    // By name (networking.gke.io/load-balancer-ip-addresses).
    let id = w.id("by-name");
    let mut spec = w.spec(&[80], std::slice::from_ref(&a));
    spec.options.insert("load-balancer-ip-addresses".into(), "user-ip".into());
    let st = p.ensure(&id, &spec, None).await.expect("ensure by name");
    assert_eq!(ip_of(&st), user_ip);
    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(w.get(&format!("regions/{REGION}/addresses/user-ip")).await.is_some());
    assert_eq!(w.everything().await.into_keys().collect::<Vec<_>>(), [format!("regions/{REGION}/addresses")]);

    // Another Service asking for an IP cloudlb holds for this one: a conflict, nothing made.
    let id_pinned = w.id("pinned");
    let st_pinned = p.ensure(&id_pinned, &w.spec(&[80], std::slice::from_ref(&a)), None).await.expect("pinned");
    let mut pin = w.spec(&[80], std::slice::from_ref(&a));
    pin.requested_ip = Some(ip_of(&st_pinned).parse().unwrap());
    let st_pinned = p.ensure(&id_pinned, &pin, Some(&st_pinned.record)).await.expect("reserve it");
    let thief = w.id("thief");
    w.fake.clear_calls();
    let err = p.ensure(&thief, &pin, None).await.expect_err("held for another Service");
    assert!(matches!(err, ProviderError::Conflict { .. }) && err.to_string().contains("default/pinned"), "{err}");
    assert!(w.mutations().is_empty(), "{:?}", w.mutations());
    p.delete(&id_pinned, Some(&st_pinned.record)).await.expect("delete");

    // loadBalancerIP equal to the current ephemeral IP: cloudlb reserves it while asked.
    let id = w.id("keep");
    let spec = w.spec(&[80], std::slice::from_ref(&a));
    let st = p.ensure(&id, &spec, None).await.expect("ephemeral");
    let mut pinned = spec.clone();
    pinned.requested_ip = Some(ip_of(&st).parse().unwrap());
    let st = p.ensure(&id, &pinned, Some(&st.record)).await.expect("pinned");
    let ours = w.get(&format!("regions/{REGION}/addresses/{}", names::load_balancer(&id))).await.expect("reserved");
    assert_eq!(ours["address"].as_str(), Some(ip_of(&st).as_str()));
    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(w.get(&format!("regions/{REGION}/addresses/{}", names::load_balancer(&id))).await.is_none());
}

#[tokio::test]
async fn bad_input_is_refused_before_any_call() {
    let w = World::new("bad").await;
    let p = w.provider().await;
    let a = w.node(ZONE_A, "node-a");
    let id = w.id("web");
    type Change = Box<dyn Fn(&mut cloudlb_provider::LoadBalancerSpec)>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "typo value",
            Box::new(|s| {
                s.options.insert("load-balancer-type".into(), "Intenral".into());
            }),
            "\"Intenral\"",
        ),
        (
            "tier",
            Box::new(|s| {
                s.options.insert("network-tier".into(), "gold".into());
            }),
            "cloud.google.com/network-tier",
        ),
        (
            "sctp",
            Box::new(|s| {
                s.listeners.push(Listener { port: 9, protocol: Protocol::Sctp, node_port: 30009, name: None })
            }),
            "SCTP",
        ),
        ("private ip", Box::new(|s| s.requested_ip = Some("10.1.2.3".parse().unwrap())), "loadBalancerIP 10.1.2.3"),
        (
            "node subset",
            Box::new(|s| {
                s.options.insert(String::new(), "pool=a".into());
            }),
            "cloudlb.io/target-node-labels",
        ),
    ];
    for (what, change, needle) in cases {
        let mut spec = w.spec(&[80], std::slice::from_ref(&a));
        change(&mut spec);
        let problems = p.validate(&spec);
        assert!(problems.iter().any(|m| m.contains(needle)), "{what}: {problems:?}");
        w.fake.clear_calls();
        let err = p.ensure(&id, &spec, None).await.expect_err(what);
        assert!(matches!(err, ProviderError::Invalid { .. }), "{what}: {err:?}");
        assert!(err.to_string().contains(needle), "{what}: {err}");
        assert!(w.fake.calls().is_empty(), "{what}: no call before refusing: {:?}", w.mutations());
    }
    // An unknown key is a warning, not a problem that blocks the Service; ensure ignores it.
    let mut spec = w.spec(&[80], std::slice::from_ref(&a));
    spec.options.insert("load-balancer-typo".into(), "x".into());
    assert!(p.validate(&spec).is_empty(), "{:?}", p.validate(&spec));
    assert!(p.warnings(&spec).iter().any(|m| m.contains("load-balancer-typo") && m.contains("ignored")));

    // A public loadBalancerIP that is not reserved in the region: refused after reads only.
    let mut spec = w.spec(&[80], std::slice::from_ref(&a));
    spec.requested_ip = Some("8.8.8.8".parse().unwrap());
    w.fake.clear_calls();
    let err = p.ensure(&id, &spec, None).await.expect_err("foreign IP");
    assert!(matches!(err, ProviderError::Invalid { .. }) && err.to_string().contains("8.8.8.8"), "{err}");
    assert!(w.mutations().is_empty(), "{:?}", w.mutations());

    // A working load balancer is not torn down by a typo.
    let good = w.spec(&[80], std::slice::from_ref(&a));
    let st = p.ensure(&id, &good, None).await.expect("ensure");
    let mut typo = good.clone();
    typo.options.insert("network-tier".into(), "Standrad".into());
    w.fake.clear_calls();
    assert!(p.ensure(&id, &typo, Some(&st.record)).await.is_err());
    assert!(w.fake.calls().is_empty());
    assert!(p.get(&id, Some(&st.record)).await.unwrap().is_some());
    p.delete(&id, Some(&st.record)).await.unwrap();
}

#[tokio::test]
async fn a_foreign_resource_with_our_name_is_a_conflict_and_is_never_touched() {
    let w = World::new("conflict").await;
    let p = w.provider().await;
    let a = w.node(ZONE_A, "node-a");
    let id = w.id("web");
    let name = names::load_balancer(&id);
    // An address someone made by hand under our name: refused before any change.
    create(&w, &format!("regions/{REGION}/addresses"), json!({"name": name, "description": "hand-made"})).await;
    w.fake.clear_calls();
    let err = p.ensure(&id, &w.spec(&[80], std::slice::from_ref(&a)), None).await.expect_err("conflict");
    assert!(matches!(err, ProviderError::Conflict { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains(&name) && err.to_string().contains("hand-made"), "{err}");
    assert!(w.mutations().is_empty(), "{:?}", w.mutations());
    p.delete(&id, None).await.expect("delete leaves the foreign address alone");
    assert_eq!(w.get(&format!("regions/{REGION}/addresses/{name}")).await.unwrap()["description"], "hand-made");

    // A firewall with our name: ensure stops there, delete leaves it.
    let id = w.id("fw");
    let name = names::load_balancer(&id);
    create(
        &w,
        "global/firewalls",
        json!({"name": name, "description": "{\"cloudlb.io/cluster\":\"other\"}", "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}], "sourceRanges": ["1.2.3.4/32"]}),
    )
    .await;
    w.fake.clear_calls();
    let err = p.ensure(&id, &w.spec(&[80], std::slice::from_ref(&a)), None).await.expect_err("conflict");
    assert!(matches!(err, ProviderError::Conflict { .. }) && err.to_string().contains("cluster \"other\""), "{err}");
    assert!(w.mutations().is_empty(), "refused before any change: {:?}", w.mutations());
    p.delete(&id, None).await.expect("delete");
    let fw = w.get(&format!("global/firewalls/{name}")).await.expect("foreign firewall kept");
    assert_eq!(strs(&fw["sourceRanges"]), ["1.2.3.4/32"]);
    assert!(w.get(&format!("regions/{REGION}/forwardingRules/{name}")).await.is_none());
}

#[tokio::test]
async fn operations_that_fail_inside_done_are_errors() {
    let w = World::new("opfail").await;
    let p = w.provider().await;
    let a = w.node(ZONE_A, "node-a");
    let id = w.id("web");
    let spec = w.spec(&[80], std::slice::from_ref(&a));
    let fault = |kind| Fault {
        method: Some("POST".into()),
        path: "regions/*/backendServices".into(),
        kind,
        delivery: Delivery::InOperation,
        times: Some(1),
    };
    w.fake.inject(fault(FaultKind::Unavailable));
    let err = p.ensure(&id, &spec, None).await.expect_err("the operation failed");
    assert!(matches!(err, ProviderError::Retryable { .. }), "{err:?}");
    assert!(
        err.to_string().contains("compute.regionBackendServices.insert")
            && err.to_string().contains("in the operation"),
        "{err}"
    );
    w.fake.inject(fault(FaultKind::Custom {
        code: 403,
        reason: "forbidden".into(),
        message: "Required 'compute.regionBackendServices.create' permission".into(),
    }));
    let err = p.ensure(&id, &spec, None).await.expect_err("forbidden");
    assert!(matches!(err, ProviderError::Permission { .. }), "{err:?}");
    assert!(err.to_string().contains("grant compute.regionBackendServices.create"), "{err}");
    w.fake.inject(fault(FaultKind::Custom {
        code: 403,
        reason: "QUOTA_EXCEEDED".into(),
        message: "Quota 'BACKEND_SERVICES' exceeded".into(),
    }));
    let err = p.ensure(&id, &spec, None).await.expect_err("quota");
    assert!(matches!(err, ProviderError::Quota { .. }), "{err:?}");

    let st = p.ensure(&id, &spec, None).await.expect("converges once the faults are gone");
    assert_eq!(w.list(&format!("regions/{REGION}/backendServices")).await.len(), 1);

    // In-use failures reported inside the operation: the shared group and check stay while
    // another Service uses them.
    w.fake.set_in_use_delivery(Delivery::InOperation);
    let id2 = w.id("other");
    let st2 = p.ensure(&id2, &spec, None).await.expect("second service");
    p.delete(&id, Some(&st.record)).await.expect("delete the first");
    let ig = names::instance_group("opfail");
    assert!(w.get(&format!("zones/{ZONE_A}/instanceGroups/{ig}")).await.is_some(), "still used by the other");
    assert!(w.get(&format!("regions/{REGION}/healthChecks/{}", names::node_health_check("opfail"))).await.is_some());
    p.delete(&id2, Some(&st2.record)).await.expect("delete the second");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn rate_limits_and_server_errors_at_30_percent_converge_without_duplicates() {
    let w = World::new("chaos").await;
    let p = w.provider().await;
    let nodes = [w.node(ZONE_A, "node-a"), w.node(ZONE_B, "node-b"), w.node(ZONE_A, "node-c")];
    let ids = [w.id("one"), w.id("two")];
    let spec = w.spec(&[80, 443], &nodes);
    w.fake.set_random_faults(0.3, 0.5);
    let mut records = Vec::new();
    let mut failures = 0;
    for id in &ids {
        let mut attempts = 0;
        let st = loop {
            attempts += 1;
            match p.ensure(id, &spec, None).await {
                Ok(st) => break st,
                Err(e) => {
                    failures += 1;
                    assert!(e.class() != ErrorClass::Permanent, "only transient errors expected: {e}");
                    assert!(attempts < 200, "no convergence after {attempts} attempts: {e}");
                }
            }
        };
        records.push(st);
    }
    assert!(failures > 0, "the injected faults must have hit some ensure");
    w.fake.clear_faults();
    w.fake.settle();
    let all = w.everything().await;
    assert_eq!(all[&format!("regions/{REGION}/forwardingRules")].len(), 2, "{all:?}");
    assert_eq!(all[&format!("regions/{REGION}/backendServices")].len(), 2, "{all:?}");
    assert_eq!(all[&format!("regions/{REGION}/healthChecks")].len(), 1, "one shared node check: {all:?}");
    assert_eq!(all["global/firewalls"].len(), 3, "{all:?}");
    assert!(!all.contains_key(&format!("regions/{REGION}/addresses")), "{all:?}");
    let ig = names::instance_group("chaos");
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-a", "node-c"]);
    for (id, st) in ids.iter().zip(&records) {
        w.fake.clear_calls();
        p.ensure(id, &spec, Some(&st.record)).await.expect("unchanged");
        assert!(w.mutations().is_empty(), "{:?}", w.mutations());
    }
    w.fake.set_random_faults(0.3, 0.5);
    for (id, st) in ids.iter().zip(&records) {
        let mut attempts = 0;
        while let Err(e) = p.delete(id, Some(&st.record)).await {
            attempts += 1;
            assert!(attempts < 200 && e.class() != ErrorClass::Permanent, "{e}");
        }
    }
    w.fake.clear_faults();
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn a_crash_at_any_await_then_a_fresh_ensure_gives_exactly_one_set() {
    let w = World::new("crash").await;
    let p = Arc::new(w.provider().await);
    let nodes = [w.node(ZONE_A, "node-a"), w.node(ZONE_B, "node-b")];
    let spec = w.spec(&[80], &nodes);
    let mut n = 1;
    loop {
        let id = w.id(&format!("crash-{n}"));
        w.fake.clear_calls();
        let completed = run_until_calls(&w, n, p.ensure(&id, &spec, None)).await;
        settle_everything(&w, &format!("a crash at call {n}")).await;
        let st =
            p.ensure(&id, &spec, None).await.unwrap_or_else(|e| panic!("fresh ensure after a crash at call {n}: {e}"));
        let all = w.everything().await;
        for c in ["forwardingRules", "backendServices", "healthChecks"] {
            assert_eq!(all[&format!("regions/{REGION}/{c}")].len(), 1, "crash at call {n}: {all:?}");
        }
        assert_eq!(all["global/firewalls"].len(), 2, "crash at call {n}: {all:?}");
        assert!(!all.contains_key(&format!("regions/{REGION}/addresses")), "crash at call {n}: {all:?}");
        let ig = names::instance_group("crash");
        assert_eq!(w.members(ZONE_A, &ig).await, ["node-a"]);
        p.delete(&id, Some(&st.record)).await.expect("delete");
        assert!(w.everything().await.is_empty(), "crash at call {n}: left {:?}", w.everything().await);
        if let Some(r) = completed {
            r.expect("the uninterrupted ensure succeeds");
            assert!(n > 10, "the ensure makes more than 10 calls");
            break;
        }
        n += 1;
    }
}

#[tokio::test]
async fn delete_without_record_and_after_a_partial_ensure_leaves_nothing() {
    let w = World::new("partial").await;
    let p = w.provider().await;
    let a = w.node(ZONE_B, "node-a");
    let id = w.id("web");
    // The backend service insert fails: groups, check and firewall exist, nothing refers to them.
    w.fake.inject(Fault::once("POST", "regions/*/backendServices", FaultKind::Internal));
    p.ensure(&id, &w.spec(&[80], std::slice::from_ref(&a)), None).await.expect_err("fails half-way");
    assert!(w.get(&format!("zones/{ZONE_B}/instanceGroups/{}", names::instance_group("partial"))).await.is_some());
    p.delete(&id, None).await.expect("delete without a record");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn a_zone_that_loses_every_node_is_emptied_detached_and_deleted_once_unused() {
    let w = World::new("zones").await;
    let p = w.provider().await;
    let a = w.node(ZONE_A, "node-a");
    let b = w.node(ZONE_B, "node-b");
    let both = w.spec(&[80], &[a.clone(), b.clone()]);
    let (one, two) = (w.id("one"), w.id("two"));
    let st1 = p.ensure(&one, &both, None).await.expect("one");
    let st2 = p.ensure(&two, &both, None).await.expect("two");
    let ig = names::instance_group("zones");

    // node-b leaves: the first Service's pass empties zone B's group and detaches it; the group
    // stays while the second Service's backend service still uses it.
    let only_a = w.spec(&[80], std::slice::from_ref(&a));
    w.fake.clear_calls();
    let st1 = p.ensure(&one, &only_a, Some(&st1.record)).await.expect("one without node-b");
    let m = w.mutations();
    assert_eq!(m[0], format!("removeInstances zones/{ZONE_B}/instanceGroups/{ig}"), "{m:?}");
    assert!(m.contains(&format!("update regions/{REGION}/backendServices/{}", names::load_balancer(&one))), "{m:?}");
    assert!(w.members(ZONE_B, &ig).await.is_empty());
    assert!(w.get(&format!("zones/{ZONE_B}/instanceGroups/{ig}")).await.is_some(), "still used by two");
    assert_eq!(cloudlb_provider_gcp::record::zones(&st1.record), [ZONE_A]);

    // The second Service follows: the unused group goes.
    let st2 = p.ensure(&two, &only_a, Some(&st2.record)).await.expect("two without node-b");
    assert!(w.get(&format!("zones/{ZONE_B}/instanceGroups/{ig}")).await.is_none());
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-a"]);
    p.delete(&one, Some(&st1.record)).await.expect("delete one");
    p.delete(&two, Some(&st2.record)).await.expect("delete two");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn get_reports_a_missing_part_and_ensure_repairs_it() {
    let w = World::new("drift").await;
    let p = w.provider().await;
    let a = w.node(ZONE_A, "node-a");
    let id = w.id("web");
    let spec = w.spec(&[80], std::slice::from_ref(&a));
    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    let name = names::load_balancer(&id);
    assert_eq!(p.get(&id, Some(&st.record)).await.unwrap().unwrap().spec_hash, None);

    // Someone deletes the traffic firewall by hand.
    let (code, body) = raw(w.fake.addr(), "DELETE", &api(&format!("global/firewalls/{name}")), None).await;
    assert_eq!(code, 200, "{body}");
    w.fake.settle();
    let got = p.get(&id, Some(&st.record)).await.unwrap().expect("the rule still exists");
    let hash = got.spec_hash.expect("an incomplete load balancer reports a hash no spec has");
    assert!(hash.contains(&format!("firewall {name}")) && hash != spec.hash(), "{hash}");
    assert_eq!(got.ingress, st.ingress);

    w.fake.clear_calls();
    p.ensure(&id, &spec, Some(&st.record)).await.expect("repair");
    assert_eq!(w.mutations(), ["insert global/firewalls"]);
    assert_eq!(p.get(&id, Some(&st.record)).await.unwrap().unwrap().spec_hash, None);
    p.delete(&id, Some(&st.record)).await.unwrap();
}

#[tokio::test]
async fn a_stale_fingerprint_is_retried_by_the_next_pass() {
    let w = World::new("fingerprint").await;
    let p = w.provider().await;
    let a = w.node(ZONE_A, "node-a");
    let id = w.id("web");
    let spec = w.spec(&[80], std::slice::from_ref(&a));
    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    let mut sticky = spec.clone();
    sticky.session_affinity = SessionAffinity::ClientIp { timeout_seconds: 10800 };
    let stale = || Fault {
        method: Some("PUT".into()),
        path: "regions/*/backendServices/*".into(),
        kind: FaultKind::Custom { code: 412, reason: "conditionNotMet".into(), message: "Invalid fingerprint.".into() },
        delivery: Delivery::Sync,
        times: Some(2),
    };
    // Twice stale: the pass reads once more, then leaves it to the next pass.
    w.fake.inject(stale());
    let err = p.ensure(&id, &sticky, Some(&st.record)).await.expect_err("412 twice");
    assert!(matches!(err, ProviderError::Retryable { .. }), "{err:?}");
    assert!(err.to_string().contains("compute.regionBackendServices.update"), "{err}");
    let st = p.ensure(&id, &sticky, Some(&st.record)).await.expect("the next pass reads a fresh fingerprint");
    let bs = w.get(&format!("regions/{REGION}/backendServices/{}", names::load_balancer(&id))).await.unwrap();
    assert_eq!(bs["sessionAffinity"], "CLIENT_IP");
    // Once stale: the same pass re-reads and succeeds.
    w.fake.inject(Fault { times: Some(1), ..stale() });
    w.fake.clear_calls();
    let st = p.ensure(&id, &spec, Some(&st.record)).await.expect("one stale fingerprint is absorbed");
    let bs_path = format!("regions/{REGION}/backendServices/{}", names::load_balancer(&id));
    assert_eq!(w.mutations(), [format!("update {bs_path}"), format!("update {bs_path}")]);
    assert_eq!(w.get(&bs_path).await.unwrap()["sessionAffinity"], "NONE");
    p.delete(&id, Some(&st.record)).await.unwrap();
}

#[tokio::test]
async fn services_ensured_concurrently_share_one_group_per_zone_and_one_node_check() {
    let w = World::new("parallel").await;
    let p = w.provider().await;
    let nodes = [w.node(ZONE_A, "node-a"), w.node(ZONE_B, "node-b"), w.node(ZONE_A, "node-c")];
    let spec = w.spec(&[80], &nodes);
    let ids: Vec<_> = (0..8).map(|i| w.id(&format!("svc-{i}"))).collect();
    // The shared groups and check are made once while the other ensures wait, so no ensure
    // loses a race (409, memberAlreadyExists, resourceNotReady) and needs a second pass.
    let runs = ids[..5].iter().map(|id| {
        let (p, spec) = (&p, &spec);
        async move { p.ensure(id, spec, None).await.unwrap_or_else(|e| panic!("{id}: first attempt: {e}")) }
    });
    let statuses = futures::future::join_all(runs).await;
    let all = w.everything().await;
    assert_eq!(all[&format!("regions/{REGION}/forwardingRules")].len(), 5, "{all:?}");
    assert_eq!(all[&format!("regions/{REGION}/healthChecks")].len(), 1, "{all:?}");
    assert_eq!(all[&format!("zones/{ZONE_A}/instanceGroups")].len(), 1, "{all:?}");
    assert_eq!(all[&format!("zones/{ZONE_B}/instanceGroups")].len(), 1, "{all:?}");
    let ig = names::instance_group("parallel");
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-a", "node-c"]);
    let ips: std::collections::BTreeSet<String> = statuses.iter().map(ip_of).collect();
    assert_eq!(ips.len(), 5, "distinct IPs: {ips:?}");

    // Deletes of some while others are made: a delete never removes a shared group or the
    // node check that an ensure in flight is about to attach.
    let deletes = ids[..5].iter().zip(&statuses).map(|(id, st)| {
        let p = &p;
        async move { p.delete(id, Some(&st.record)).await.unwrap_or_else(|e| panic!("{id}: delete: {e}")) }
    });
    let creates = ids[5..].iter().map(|id| {
        let (p, spec) = (&p, &spec);
        async move { p.ensure(id, spec, None).await.unwrap_or_else(|e| panic!("{id}: first attempt: {e}")) }
    });
    let (_, created) =
        futures::future::join(futures::future::join_all(deletes), futures::future::join_all(creates)).await;
    let all = w.everything().await;
    assert_eq!(all[&format!("regions/{REGION}/forwardingRules")].len(), 3, "{all:?}");
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-a", "node-c"]);
    for (id, st) in ids[5..].iter().zip(&created) {
        p.delete(id, Some(&st.record)).await.unwrap_or_else(|e| panic!("{id}: delete: {e}"));
    }
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn a_delete_never_removes_a_shared_group_that_an_ensure_in_flight_is_about_to_attach() {
    let w = World::new("inflight").await;
    let p = w.provider().await;
    let nodes = [w.node(ZONE_A, "node-a")];
    let spec = w.spec(&[80], &nodes);
    let (a, b) = (w.id("a"), w.id("b"));
    let st_a = p.ensure(&a, &spec, None).await.expect("ensure a");
    // b's backend service insert is held: b has found the zone's group (a uses it) and not
    // attached it yet when a is deleted, which finds the group unused by any backend service.
    w.fake.delay("POST", "regions/*/backendServices", std::time::Duration::from_millis(1500), 1);
    let delete_a = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        p.delete(&a, Some(&st_a.record)).await
    };
    let (ensured_b, deleted_a) = futures::future::join(p.ensure(&b, &spec, None), delete_a).await;
    deleted_a.expect("delete a");
    let st_b = ensured_b.expect("b converges on its first attempt");
    let ig = names::instance_group("inflight");
    assert_eq!(w.members(ZONE_A, &ig).await, ["node-a"], "b's group is there");
    assert_eq!(w.list(&format!("regions/{REGION}/forwardingRules")).await.len(), 1);
    p.delete(&b, Some(&st_b.record)).await.expect("delete b");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn a_delete_waits_for_an_insert_that_a_killed_process_left_running() {
    let w = World::new("orphan-op").await;
    let p = w.provider().await;
    let id = w.id("web");
    let name = names::load_balancer(&id);
    // A killed controller's last call: a backend service insert whose operation nobody polls.
    // Until it is done, Compute answers 404 for the backend service.
    let body = json!({
        "name": name,
        "description": ownership::description(ownership::Owner::Service(&id), ownership::BACKEND_SERVICE),
        "loadBalancingScheme": "EXTERNAL",
        "protocol": "TCP",
    });
    let (code, op) = raw(w.fake.addr(), "POST", &api(&format!("regions/{REGION}/backendServices")), Some(&body)).await;
    assert_eq!(code, 200, "{op}");
    assert!(w.get(&format!("regions/{REGION}/backendServices/{name}")).await.is_none(), "not visible yet");
    let err = p.delete(&id, None).await.expect_err("the delete waits for the insert");
    assert_eq!(err.class(), ErrorClass::Provisioning, "{err}");
    assert!(err.to_string().contains(&name), "{err}");
    // Once it is done, the next pass deletes what it made.
    w.fake.settle();
    assert!(w.get(&format!("regions/{REGION}/backendServices/{name}")).await.is_some());
    p.delete(&id, None).await.expect("delete");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn node_tags_limit_the_firewall_rules_to_the_nodes() {
    let w = World::new("tags").await;
    let mut config = w.config();
    config.node_tags = vec!["k8s-node".into()];
    let p = cloudlb_provider_gcp::GcpProvider::new(config).await.expect("provider");
    let a = w.node(ZONE_A, "node-a");
    let id = w.id("web");
    let st = p.ensure(&id, &w.spec(&[80], std::slice::from_ref(&a)), None).await.expect("ensure");
    let name = names::load_balancer(&id);
    for fw in [name.clone(), names::node_health_check_firewall("tags")] {
        let f = w.get(&format!("global/firewalls/{fw}")).await.unwrap();
        assert_eq!(strs(&f["targetTags"]), ["k8s-node"], "{fw}");
    }
    p.delete(&id, Some(&st.record)).await.unwrap();
}

#[tokio::test]
async fn writes_wait_for_the_shared_client_side_bucket() {
    let w = World::new("throttle").await;
    let mut config = w.config();
    // One write token, refilled 10 times a second: the 7 inserts of a new load balancer (the
    // memberships have their own bucket) need at least 0.6 s.
    config.rate_limits.mutate = cloudlb_provider_gcp::Rate::new(10.0, 1.0);
    let p = cloudlb_provider_gcp::GcpProvider::new(config).await.expect("provider");
    let nodes = [w.node(ZONE_A, "node-a"), w.node(ZONE_B, "node-b")];
    let id = w.id("web");
    let start = tokio::time::Instant::now();
    let st = p.ensure(&id, &w.spec(&[80], &nodes), None).await.expect("ensure");
    let took = start.elapsed();
    let inserts: u64 = p.call_counts().iter().filter(|(k, _)| k.ends_with(".insert")).map(|(_, v)| v).sum();
    assert_eq!(inserts, 7, "{:?}", p.call_counts());
    assert!(took >= std::time::Duration::from_millis(550), "7 inserts at 10/s with a burst of 1 took {took:?}");
    // Deletes have their own bucket: not slowed by the write bucket.
    let start = tokio::time::Instant::now();
    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(start.elapsed() < std::time::Duration::from_millis(550), "{:?}", start.elapsed());
}

#[tokio::test]
async fn an_operation_that_never_finishes_is_bounded_and_finished_by_a_later_pass() {
    let w = World::new("slow").await;
    let mut config = w.config();
    config.operation_timeout = std::time::Duration::from_millis(300);
    let p = cloudlb_provider_gcp::GcpProvider::new(config).await.expect("provider");
    let a = w.node(ZONE_A, "node-a");
    let id = w.id("web");
    let spec = w.spec(&[80], std::slice::from_ref(&a));
    w.fake.set_op_delay_polls(1_000_000);
    let start = tokio::time::Instant::now();
    let err = p.ensure(&id, &spec, None).await.expect_err("the first operation never finishes");
    assert!(start.elapsed() < std::time::Duration::from_secs(5), "bounded: {:?}", start.elapsed());
    assert!(matches!(err, ProviderError::Retryable { .. }) && err.to_string().contains("did not finish"), "{err}");
    // While it runs, a second pass is told to come back (409 on the same name), not duplicated.
    let err = p.ensure(&id, &spec, None).await.expect_err("still running");
    assert_eq!(err.class(), ErrorClass::Retryable, "{err}");
    // Time passes; the next pass finishes the job with one set of resources.
    w.fake.set_op_delay_polls(1);
    w.fake.settle();
    let st = p.ensure(&id, &spec, None).await.expect("converges");
    assert_eq!(w.list(&format!("zones/{ZONE_A}/instanceGroups")).await.len(), 1);
    assert_eq!(w.members(ZONE_A, &names::instance_group("slow")).await, ["node-a"]);
    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(w.everything().await.is_empty(), "left {:?}", w.everything().await);
}

#[tokio::test]
async fn plan_lists_a_port_change_call_by_call_and_sends_nothing() {
    let w = World::new("plan").await;
    let p = w.provider().await;
    let id = w.id("web");
    let nodes = [w.node(ZONE_A, "node-a")];
    let st = p.ensure(&id, &w.spec(&[80], &nodes), None).await.expect("ensure");
    let unchanged = p.plan(&id, &w.spec(&[80], &nodes), Some(&st.record)).await.expect("plan");
    assert!(unchanged.complete && unchanged.changes.is_empty(), "{unchanged:?}");
    w.fake.clear_calls();
    let plan = p.plan(&id, &w.spec(&[80, 443], &nodes), Some(&st.record)).await.expect("plan");
    assert!(w.mutations().is_empty(), "a plan sends nothing: {:?}", w.mutations());
    let calls: Vec<String> = plan.changes.iter().map(|c| format!("{} {}", c.action.as_str(), c.call)).collect();
    println!("{calls:#?} complete={}", plan.complete);
    assert_eq!(
        calls,
        [
            "create compute.addresses.insert",
            "delete compute.forwardingRules.delete",
            "create compute.forwardingRules.insert",
            "update compute.firewalls.update",
            "delete compute.addresses.delete",
        ],
        "the IP held, the rule re-made with both ports, the firewall opened, the hold released"
    );
    assert!(plan.complete);
    p.delete(&id, Some(&st.record)).await.expect("delete");
}

#[tokio::test]
async fn throttling_answers_are_counted_per_call_in_the_metrics() {
    let w = World::new("throttled").await;
    let p = w.provider().await;
    let id = w.id("web");
    w.fake.inject(Fault::once("POST", "regions/*/backendServices", FaultKind::RateLimited));
    w.fake.inject(Fault::once("GET", "global/firewalls/*", FaultKind::TooManyRequests));
    let spec = w.spec(&[80], &[w.node(ZONE_A, "node-a")]);
    for _ in 0..4 {
        if p.ensure(&id, &spec, None).await.is_ok() {
            break;
        }
    }
    let throttles: std::collections::BTreeMap<String, f64> = p
        .metrics()
        .into_iter()
        .filter(|m| m.name == "cloud_api_throttles")
        .map(|m| (m.labels[0].1.clone(), m.value))
        .collect();
    assert_eq!(throttles.get("compute.regionBackendServices.insert"), Some(&1.0), "{throttles:?}");
    assert_eq!(throttles.get("compute.firewalls.get"), Some(&1.0), "{throttles:?}");
    assert_eq!(throttles.len(), 2, "{throttles:?}");
    p.delete(&id, None).await.expect("delete");
}
