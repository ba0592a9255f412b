//! Table-driven tests of the spec builder.

use super::*;
use cloudlb_provider::memory::{MemoryConfig, MemoryProvider};
use cloudlb_provider::{AddressKind, NodeAddress, Provider};
use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn port(port: i32, proto: &str, node_port: Option<i32>) -> ServicePort {
    ServicePort { port, protocol: Some(proto.into()), node_port, ..Default::default() }
}

fn svc(ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: ObjectMeta { name: Some("web".into()), namespace: Some("default".into()), ..Default::default() },
        spec: Some(ServiceSpec { type_: Some("LoadBalancer".into()), ports: Some(ports), ..Default::default() }),
        status: None,
    }
}

fn with_ann(mut s: Service, k: &str, v: &str) -> Service {
    s.metadata.annotations.get_or_insert_with(Default::default).insert(k.into(), v.into());
    s
}

fn spec_mut(s: &mut Service) -> &mut ServiceSpec {
    s.spec.as_mut().expect("test service has a spec")
}

fn node(name: &str, labels: &[(&str, &str)]) -> EligibleNode {
    EligibleNode {
        target: Target {
            node: name.into(),
            provider_id: None,
            addresses: vec![NodeAddress { kind: AddressKind::InternalIP, address: "10.0.0.1".into() }],
        },
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

fn ok(s: &Service) -> LoadBalancerSpec {
    build(s, &NodeSnapshot::new(vec![node("a", &[]), node("b", &[("pool", "edge")])]), &DesiredConfig::default())
        .unwrap_or_else(|e| panic!("expected a spec, got: {e}"))
}

fn err(s: &Service) -> String {
    match build(s, &NodeSnapshot::new(vec![node("a", &[])]), &DesiredConfig::default()) {
        Ok(spec) => panic!("expected problems, got {spec:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn basic_service() {
    let s = ok(&svc(vec![port(443, "TCP", Some(30443)), port(80, "TCP", Some(30080))]));
    assert_eq!(s.listeners.iter().map(|l| (l.port, l.node_port)).collect::<Vec<_>>(), vec![(80, 30080), (443, 30443)]);
    assert_eq!(s.targets.iter().map(|t| t.node.as_str()).collect::<Vec<_>>(), vec!["a", "b"]);
    assert_eq!(s.source_ranges, vec!["0.0.0.0/0".parse::<IpNet>().unwrap()]);
    assert_eq!(s.scheme, Scheme::InternetFacing);
    assert_eq!(s.health_check.port, Some(KUBE_PROXY_HEALTH_PORT));
    assert_eq!(s.health_check.path.as_deref(), Some("/healthz"));
    assert_eq!(s.ip_families, vec![IpFamily::IPv4]);
}

#[test]
fn same_inputs_same_hash_regardless_of_order() {
    let a = ok(&svc(vec![port(80, "TCP", Some(30080)), port(53, "UDP", Some(30053))]));
    let b = ok(&svc(vec![port(53, "UDP", Some(30053)), port(80, "TCP", Some(30080))]));
    assert_eq!(a.hash(), b.hash());
}

#[test]
fn traffic_policy_local_uses_health_check_node_port() {
    let mut s = svc(vec![port(80, "TCP", Some(30080))]);
    spec_mut(&mut s).external_traffic_policy = Some("Local".into());
    spec_mut(&mut s).health_check_node_port = Some(32000);
    assert_eq!(ok(&s).health_check.port, Some(32000));
    assert_eq!(ok(&s).health_check.target, HealthTarget::ServiceHealthCheckNodePort);
    spec_mut(&mut s).health_check_node_port = None;
    assert!(err(&s).contains("healthCheckNodePort"));
}

#[test]
fn source_ranges_spec_wins_over_annotation() {
    let mut s = with_ann(svc(vec![port(80, "TCP", Some(30080))]), ANN_SOURCE_RANGES, "192.168.0.0/16");
    assert_eq!(ok(&s).source_ranges, vec!["192.168.0.0/16".parse::<IpNet>().unwrap()]);
    spec_mut(&mut s).load_balancer_source_ranges = Some(vec!["10.0.0.0/8".into(), "10.0.0.0/8".into()]);
    assert_eq!(ok(&s).source_ranges, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
}

#[test]
fn dual_stack_opens_both_families() {
    let mut s = svc(vec![port(80, "TCP", Some(30080))]);
    spec_mut(&mut s).ip_families = Some(vec!["IPv6".into(), "IPv4".into()]);
    let spec = ok(&s);
    assert_eq!(spec.ip_families, vec![IpFamily::IPv4, IpFamily::IPv6]);
    assert_eq!(spec.source_ranges.len(), 2);
}

#[test]
fn options_internal_affinity_and_requested_ip() {
    let mut s = with_ann(svc(vec![port(80, "TCP", Some(30080))]), ANN_INTERNAL, "true");
    s = with_ann(s, "memory.cloudlb.io/flavour", "large");
    spec_mut(&mut s).session_affinity = Some("ClientIP".into());
    spec_mut(&mut s).load_balancer_ip = Some("198.51.100.7".into());
    let cfg = DesiredConfig { option_prefixes: vec!["memory.cloudlb.io/".into()] };
    let spec = build(&s, &NodeSnapshot::default(), &cfg).unwrap();
    assert_eq!(spec.scheme, Scheme::Internal);
    assert_eq!(spec.session_affinity, SessionAffinity::ClientIp { timeout_seconds: DEFAULT_AFFINITY_TIMEOUT });
    assert_eq!(spec.requested_ip, Some("198.51.100.7".parse().unwrap()));
    assert_eq!(spec.options.get("flavour").map(String::as_str), Some("large"));
    assert!(spec.targets.is_empty());
}

#[test]
fn target_node_labels_select_nodes() {
    let s = with_ann(svc(vec![port(80, "TCP", Some(30080))]), ANN_TARGET_NODE_LABELS, "pool=edge");
    assert_eq!(ok(&s).targets.iter().map(|t| t.node.as_str()).collect::<Vec<_>>(), vec!["b"]);
}

#[test]
fn the_aws_target_node_labels_annotation_is_an_alias_ours_wins() {
    let base = || svc(vec![port(80, "TCP", Some(30080))]);
    let nodes = |s: &Service| ok(s).targets.iter().map(|t| t.node.clone()).collect::<Vec<_>>();
    let aws = with_ann(base(), ANN_TARGET_NODE_LABELS_AWS, "pool=edge");
    assert_eq!(nodes(&aws), vec!["b"]);
    assert_eq!(nodes(&with_ann(aws.clone(), ANN_TARGET_NODE_LABELS, "pool=none")), Vec::<String>::new(), "ours wins");
    let e = err(&with_ann(base(), ANN_TARGET_NODE_LABELS_AWS, "novalue"));
    assert!(e.contains(ANN_TARGET_NODE_LABELS_AWS) && e.contains("is not key=value"), "{e}");
    // Malformed, it is reported even when ours is set (and then only it is named).
    let e = err(&with_ann(with_ann(base(), ANN_TARGET_NODE_LABELS, "pool=edge"), ANN_TARGET_NODE_LABELS_AWS, "x"));
    assert!(
        e.contains(ANN_TARGET_NODE_LABELS_AWS) && !e.contains(&format!("annotation {ANN_TARGET_NODE_LABELS}:")),
        "{e}"
    );
}

/// On gcp both keys reach the provider as the option with the empty key, which it refuses
/// (a subset of nodes cannot be targeted there): the alias never narrows the targets silently.
#[test]
fn on_gcp_the_aws_alias_reaches_the_provider_to_be_refused() {
    let s = with_ann(svc(vec![port(80, "TCP", Some(30080))]), ANN_TARGET_NODE_LABELS_AWS, "pool=edge");
    let cfg = crate::providers::desired_config(crate::args::ProviderKind::Gcp);
    let spec = build(&s, &NodeSnapshot::default(), &cfg).expect("valid for the builder");
    assert_eq!(spec.options.get("").map(String::as_str), Some("pool=edge"));
    let (_, problems) = cloudlb_provider_gcp::options::parse(&spec.options);
    assert!(problems.iter().any(|p| p.fatal && p.message.contains(ANN_TARGET_NODE_LABELS_AWS)), "{problems:?}");
}

#[test]
fn bad_input_table() {
    let base = || svc(vec![port(80, "TCP", Some(30080))]);
    let mut bad_range = base();
    spec_mut(&mut bad_range).load_balancer_source_ranges = Some(vec!["10.0.0.0/33".into()]);
    let mut bad_ip = base();
    spec_mut(&mut bad_ip).load_balancer_ip = Some("not-an-ip".into());
    let cases: Vec<(Service, &str)> = vec![
        (bad_range, "spec.loadBalancerSourceRanges: \"10.0.0.0/33\" is not a CIDR"),
        (with_ann(base(), ANN_SOURCE_RANGES, "10.0.0.0/8,garbage"), "is not a CIDR"),
        (bad_ip, "spec.loadBalancerIP: \"not-an-ip\" is not an IP address"),
        (svc(vec![port(80, "TCP", Some(30080)), port(80, "TCP", Some(30081))]), "port 80/TCP is listed twice"),
        (svc(vec![port(80, "HTTP", Some(30080))]), "unknown protocol \"HTTP\""),
        (svc(vec![port(80, "TCP", None)]), "has no nodePort"),
        (svc(vec![]), "has no ports"),
        (with_ann(base(), ANN_INTERNAL, "maybe"), "is not a boolean"),
        (with_ann(base(), ANN_HC_INTERVAL, "0"), "not a whole number from 1 to 300"),
        (with_ann(with_ann(base(), ANN_HC_INTERVAL, "5"), ANN_HC_TIMEOUT, "10"), "must not exceed its interval"),
        (with_ann(base(), ANN_TARGET_NODE_LABELS, "novalue"), "is not key=value"),
    ];
    for (s, want) in cases {
        let got = err(&s);
        assert!(got.contains(want), "want {want:?} in {got:?}");
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let mut s = svc(vec![port(80, "TCP", None)]);
    spec_mut(&mut s).load_balancer_ip = Some("x".into());
    let e = build(&s, &NodeSnapshot::default(), &DesiredConfig::default()).unwrap_err();
    assert_eq!(e.problems.len(), 2, "{e}");
}

#[test]
fn capabilities_reject_unsupported_protocol() {
    let provider = MemoryProvider::new(MemoryConfig::default()).unwrap();
    let s = svc(vec![port(80, "SCTP", Some(30080))]);
    let e = build_for(&s, &NodeSnapshot::default(), &DesiredConfig::default(), &provider.capabilities(), &provider)
        .unwrap_err();
    assert!(e.to_string().contains("protocol SCTP is not supported"), "{e}");
    let s = svc(vec![port(53, "UDP", Some(30053)), port(53, "TCP", Some(30054))]);
    assert!(
        build_for(&s, &NodeSnapshot::default(), &DesiredConfig::default(), &provider.capabilities(), &provider).is_ok()
    );
}

#[test]
fn prefer_dual_stack_gets_the_family_a_single_stack_provider_does() {
    let provider = MemoryProvider::new(MemoryConfig::default()).unwrap();
    let mut caps = provider.capabilities();
    caps.ip_families = vec![IpFamily::IPv4];
    let mut s = svc(vec![port(80, "TCP", Some(30080))]);
    spec_mut(&mut s).ip_families = Some(vec!["IPv4".into(), "IPv6".into()]);
    let build = |s: &Service| build_for(s, &NodeSnapshot::default(), &DesiredConfig::default(), &caps, &provider);

    // Without a policy (or RequireDualStack) two families on a one-family provider are refused...
    spec_mut(&mut s).ip_family_policy = Some("RequireDualStack".into());
    assert!(build(&s).is_err());
    // ...while PreferDualStack gets IPv4, with IPv4's default source range only.
    spec_mut(&mut s).ip_family_policy = Some("PreferDualStack".into());
    let spec = build(&s).expect("PreferDualStack builds");
    assert_eq!(spec.ip_families, vec![IpFamily::IPv4]);
    assert_eq!(spec.source_ranges, vec!["0.0.0.0/0".parse::<IpNet>().unwrap()]);
    // User-given ranges are kept as written (the IPv6 one is then the provider's to refuse).
    spec_mut(&mut s).load_balancer_source_ranges = Some(vec!["10.0.0.0/8".into()]);
    assert_eq!(build(&s).expect("builds").source_ranges, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
}
