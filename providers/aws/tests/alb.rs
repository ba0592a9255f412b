//! ALBs for Ingresses against moto: the shape read back through the AWS API, routing of the
//! rules as the Kubernetes semantics say, stable priorities, make-before-break, certificates,
//! targets-only updates, interruption and deletion.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::Rule;
use cloudlb_provider::conformance;
use cloudlb_provider::l7::{
    Backend, BackendRef, Certificate, HostMatch, L7Protocol, PathMatch, Request, Route, RouteAction, RouteMatch,
    RouteOrigin, ServicePort, VirtualHost, WeightedBackend,
};
use cloudlb_provider::{L7Spec, LoadBalancerId, Provider, Record};
use support::{World, calls_since, mutations, proxy::FaultProxy};

fn backend_ref(svc: &str) -> BackendRef {
    BackendRef { namespace: "default".into(), service: svc.into(), port: ServicePort::Number(80) }
}

fn route(path: PathMatch, svc: &str, index: u32) -> Route {
    Route {
        matches: RouteMatch::path(path),
        action: RouteAction::Forward(vec![WeightedBackend { backend: backend_ref(svc), weight: 1 }]),
        origin: RouteOrigin { kind: "Ingress".into(), namespace: "default".into(), name: "web".into(), rule: 0, index },
    }
}

fn certificate(secret: &str, host: &str) -> Certificate {
    let c = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("rcgen");
    Certificate::new(secret.into(), vec![host.into()], c.cert.pem(), c.signing_key.serialize_pem())
}

/// Two hosts, three paths, a TLS Secret: `foo.example` `/` → web, `/api` → api;
/// `bar.example` `/shop` → shop; HTTP on 80 and HTTPS on 443.
fn ingress(w: &World, targets: &[usize]) -> L7Spec {
    let mut s = conformance::l7_spec(80);
    let mut foo_example = VirtualHost {
        host: HostMatch::parse("foo.example"),
        routes: vec![route(PathMatch::Prefix("/".into()), "web", 0), route(PathMatch::Prefix("/api".into()), "api", 1)],
    };
    foo_example.sort_routes();
    let bar = VirtualHost {
        host: HostMatch::parse("bar.example"),
        routes: vec![route(PathMatch::Prefix("/shop".into()), "shop", 0)],
    };
    s.virtual_hosts = vec![foo_example, bar];
    s.sort_virtual_hosts();
    let hc = s.backends[0].health_check.clone();
    s.backends = [("api", 30081), ("shop", 30082), ("web", 30080)]
        .iter()
        .map(|(svc, np)| Backend {
            id: backend_ref(svc),
            node_port: Some(*np),
            problem: None,
            health_check: hc.clone(),
        })
        .collect();
    s.listeners = vec![
        cloudlb_provider::l7::L7Listener { port: 80, protocol: L7Protocol::Http, redirect_to_https: None },
        cloudlb_provider::l7::L7Listener { port: 443, protocol: L7Protocol::Https, redirect_to_https: None },
    ];
    s.certificates = vec![certificate("default/web-tls", "foo.example")];
    s.targets = targets.iter().map(|i| w.target(*i)).collect::<Vec<_>>().into();
    s
}

async fn alb_of(w: &World, rec: &Record) -> aws_sdk_elasticloadbalancingv2::types::LoadBalancer {
    let arn = rec.get("load-balancer").expect("recorded ALB");
    let r = w.elb.describe_load_balancers().load_balancer_arns(arn).send().await.expect("describe lb");
    r.load_balancers()[0].clone()
}

async fn listeners(w: &World, lb_arn: &str) -> BTreeMap<i32, aws_sdk_elasticloadbalancingv2::types::Listener> {
    let r = w.elb.describe_listeners().load_balancer_arn(lb_arn).send().await.expect("describe listeners");
    r.listeners().iter().map(|l| (l.port().unwrap(), l.clone())).collect()
}

async fn rules(w: &World, listener_arn: &str) -> Vec<Rule> {
    let r = w.elb.describe_rules().listener_arn(listener_arn).send().await.expect("describe rules");
    let mut rules: Vec<Rule> = r.rules().iter().filter(|r| r.is_default() != Some(true)).cloned().collect();
    rules.sort_by_key(|r| r.priority().and_then(|p| p.parse::<u32>().ok()));
    rules
}

/// Target group name by ARN.
async fn tg_names(w: &World) -> BTreeMap<String, String> {
    let r = w.elb.describe_target_groups().send().await.expect("describe tgs");
    r.target_groups()
        .iter()
        .map(|t| (t.target_group_arn().unwrap().to_string(), t.target_group_name().unwrap().to_string()))
        .collect()
}

fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    go(&pattern.chars().collect::<Vec<_>>(), &s.chars().collect::<Vec<_>>())
}

/// What the ALB does with a request, evaluated from the rules AWS describes: the target group
/// name it forwards to, or the fixed status.
fn alb_route(rules: &[Rule], default: &str, names: &BTreeMap<String, String>, host: &str, path: &str) -> String {
    for r in rules {
        let ok = r.conditions().iter().all(|c| match c.field() {
            Some("host-header") => {
                c.host_header_config().unwrap().values().iter().any(|h| glob(&h.to_lowercase(), host))
            }
            Some("path-pattern") => c.path_pattern_config().unwrap().values().iter().any(|p| glob(p, path)),
            other => panic!("unexpected condition {other:?}"),
        });
        if ok {
            let a = &r.actions()[0];
            return match a.target_group_arn() {
                Some(tg) => names[tg].clone(),
                None => a.fixed_response_config().and_then(|f| f.status_code()).unwrap_or("?").to_string(),
            };
        }
    }
    default.to_string()
}

fn expected(spec: &L7Spec, id: &LoadBalancerId, host: &str, path: &str) -> String {
    let req = Request { host, path, method: "GET", headers: &[], query: &[] };
    match spec.select(&req) {
        RouteAction::Fixed { status } => status.to_string(),
        RouteAction::Forward(b) => {
            let be = spec.backend(&b[0].backend).unwrap();
            cloudlb_provider_aws::alb::plan::target_group_name(id, &be.id, be.node_port.unwrap())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_l7() {
    let w = World::new(conformance::CLUSTER).await;
    let p = w.provider().await;
    conformance::run_all_l7(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_with_two_hosts_three_paths_and_a_tls_secret_gets_an_alb_that_routes_as_kubernetes_says() {
    let w = World::new("alb").await;
    let p = w.provider().await;
    let id = w.id("web");
    let spec = ingress(&w, &[0, 1]);
    assert!(p.validate_l7(&spec).is_empty(), "{:?}", p.validate_l7(&spec));
    let st = p.ensure_l7(&id, &spec, None).await.expect("ensure_l7");
    let lb = alb_of(&w, &st.record).await;
    assert_eq!(lb.r#type().map(|t| t.as_str()), Some("application"));
    assert_eq!(lb.scheme().map(|s| s.as_str()), Some("internet-facing"));
    let hostname = lb.dns_name().unwrap().to_string();
    assert_eq!(st.ingress, vec![cloudlb_provider::IngressPoint::Hostname(hostname)]);

    // Security group: source ranges x {80, 443}.
    let sg_id = lb.security_groups()[0].clone();
    let sg = w.ec2.describe_security_groups().group_ids(&sg_id).send().await.expect("sg");
    let ports: BTreeSet<i32> = sg.security_groups()[0].ip_permissions().iter().filter_map(|p| p.from_port()).collect();
    assert_eq!(ports, BTreeSet::from([80, 443]));

    // Target groups: HTTP on the node ports, both instances registered, HTTP health check on /.
    let names = tg_names(&w).await;
    for (svc, np) in [("api", 30081), ("shop", 30082), ("web", 30080)] {
        let name = cloudlb_provider_aws::alb::plan::target_group_name(&id, &backend_ref(svc), np);
        let arn = names.iter().find(|(_, n)| **n == name).map(|(a, _)| a.clone()).expect("target group");
        let tg =
            &w.elb.describe_target_groups().target_group_arns(&arn).send().await.unwrap().target_groups()[0].clone();
        assert_eq!((tg.protocol().map(|p| p.as_str()), tg.port()), (Some("HTTP"), Some(i32::from(np))));
        assert_eq!(tg.health_check_path(), Some("/"));
        let h = w.elb.describe_target_health().target_group_arn(&arn).send().await.unwrap();
        let ids: BTreeSet<String> =
            h.target_health_descriptions().iter().map(|d| d.target().unwrap().id().unwrap().to_string()).collect();
        assert_eq!(ids, BTreeSet::from([w.instances[0].clone(), w.instances[1].clone()]));
    }

    // Listeners: HTTP 80 and HTTPS 443 with the imported certificate, default action 404.
    let ls = listeners(&w, lb.load_balancer_arn().unwrap()).await;
    assert_eq!(ls.keys().copied().collect::<Vec<_>>(), vec![80, 443]);
    assert_eq!(ls[&443].protocol().map(|p| p.as_str()), Some("HTTPS"));
    let cert_arn = ls[&443].certificates()[0].certificate_arn().unwrap().to_string();
    let acm = aws_sdk_acm::Client::new(&support::sdk_config(&w.moto.url()).await);
    let tags = acm.list_tags_for_certificate().certificate_arn(&cert_arn).send().await.expect("acm tags");
    let tags: BTreeMap<&str, &str> = tags.tags().iter().map(|t| (t.key(), t.value().unwrap_or(""))).collect();
    assert_eq!(tags.get("cloudlb.io/secret"), Some(&"default/web-tls"));
    assert_eq!(tags.get("cloudlb.io/owner-uid"), Some(&id.uid.as_str()));

    // Routing: both listeners, a table of requests, compared with the reference evaluation.
    for port in [80, 443] {
        let rs = rules(&w, ls[&port].listener_arn().unwrap()).await;
        assert_eq!(rs.len(), 3, "one rule per path (no later host overlaps, so no fallback rules)");
        for (host, path) in [
            ("foo.example", "/"),
            ("foo.example", "/api"),
            ("foo.example", "/api/v1"),
            ("foo.example", "/apix"),
            ("bar.example", "/shop"),
            ("bar.example", "/shop/cart"),
            ("bar.example", "/shopping"),
            ("bar.example", "/"),
            ("other.example", "/api"),
        ] {
            assert_eq!(
                alb_route(&rs, "404", &names, host, path),
                expected(&spec, &id, host, path),
                ":{port} {host}{path}"
            );
        }
    }

    // Unchanged: no mutating call (reads only).
    let before = p.call_counts();
    let again = p.ensure_l7(&id, &spec, Some(&st.record)).await.expect("second ensure");
    assert_eq!(again.record, st.record);
    let m = mutations(&before, &p.call_counts());
    assert!(m.is_empty(), "an unchanged ensure made mutating calls: {m:?}");

    // get_l7 reports the spec hash (drift check).
    let got = p.get_l7(&id, Some(&st.record)).await.expect("get_l7").expect("exists");
    assert_eq!(got.spec_hash, Some(spec.hash()));

    // Delete leaves nothing: ALB, target groups, security group, certificates.
    p.delete_l7(&id, Some(&st.record)).await.expect("delete_l7");
    // Every call made is allowed by the IAM policy rendered for this cluster, every mutating one
    // only for resources (or requests) tagged for it.
    support::assert_policy_allows(&p.call_counts(), &w.cluster);
    let owned = w.owned().await;
    assert!(owned.is_empty(), "left behind: {owned:?}");
    let left = acm.list_certificates().send().await.expect("list certs");
    assert!(left.certificate_summary_list().is_empty(), "certificates left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_path_keeps_every_priority_and_a_repointed_path_never_lacks_a_rule() {
    let w = World::new("prio").await;
    let proxy = FaultProxy::start(w.moto.addr, 1).await;
    proxy.enabled.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut config = w.config();
    config.endpoint_url = Some(proxy.url());
    support::test_env();
    let p = cloudlb_provider_aws::AwsProvider::new(config).await.expect("provider");
    let id = w.id("prio");
    let mut spec = ingress(&w, &[0]);
    spec.listeners.pop();
    spec.certificates.clear();
    let st = p.ensure_l7(&id, &spec, None).await.expect("ensure");
    let lb = alb_of(&w, &st.record).await;
    let l80 = listeners(&w, lb.load_balancer_arn().unwrap()).await[&80].listener_arn().unwrap().to_string();
    let prio = |rs: &[Rule]| -> BTreeMap<String, String> {
        rs.iter().map(|r| (r.rule_arn().unwrap().to_string(), r.priority().unwrap().to_string())).collect()
    };
    let before = prio(&rules(&w, &l80).await);

    // Add /api/v2 (more specific than /api: goes before it).
    let foo = spec.virtual_hosts.iter().position(|v| v.host == HostMatch::parse("foo.example")).expect("foo");
    spec.virtual_hosts[foo].routes.push(route(PathMatch::Prefix("/api/v2".into()), "api", 2));
    spec.virtual_hosts[foo].sort_routes();
    let counts = p.call_counts();
    let st = p.ensure_l7(&id, &spec, Some(&st.record)).await.expect("add a path");
    let m = mutations(&counts, &p.call_counts());
    assert_eq!(
        m,
        BTreeMap::from([("elbv2:AddTags".to_string(), 1), ("elbv2:CreateRule".to_string(), 1)]),
        "adding a path is one new rule (and the spec-hash tag): {m:?}"
    );
    let after = prio(&rules(&w, &l80).await);
    for (arn, p) in &before {
        assert_eq!(after.get(arn), Some(p), "rule {arn} changed priority");
    }

    // Repoint /api from api to shop: the rule is modified in place, the new target group exists
    // before the rule points at it, and the old one is deleted only after.
    spec.virtual_hosts[foo].routes.iter_mut().filter(|r| r.matches.path == PathMatch::Prefix("/api".into())).for_each(
        |r| r.action = RouteAction::Forward(vec![WeightedBackend { backend: backend_ref("shop"), weight: 1 }]),
    );
    proxy.log.lock().unwrap().clear();
    let counts = p.call_counts();
    p.ensure_l7(&id, &spec, Some(&st.record)).await.expect("repoint");
    let m = mutations(&counts, &p.call_counts());
    assert_eq!(m.get("elbv2:ModifyRule"), Some(&1), "{m:?} {:?}", proxy.log.lock().unwrap());
    assert!(!m.contains_key("elbv2:DeleteRule") && !m.contains_key("elbv2:CreateRule"), "{m:?}");
    assert_eq!(prio(&rules(&w, &l80).await).keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    // /api/v2 still goes to api, so nothing is deleted yet; now drop it and check the order.
    spec.virtual_hosts[foo].routes.retain(|r| r.matches.path != PathMatch::Prefix("/api/v2".into()));
    spec.backends.retain(|b| b.id.service != "api");
    proxy.log.lock().unwrap().clear();
    p.ensure_l7(&id, &spec, None).await.expect("remove the last user of api");
    let log = proxy.log.lock().unwrap().clone();
    let at = |a: &str| log.iter().position(|x| x == a).unwrap_or_else(|| panic!("{a} not in {log:?}"));
    assert!(at("DeleteRule") < at("DeleteTargetGroup"), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_reimported_in_place_and_a_node_change_only_registers_targets() {
    let w = World::new("rot").await;
    let p = w.provider().await;
    let id = w.id("rot");
    let mut spec = ingress(&w, &[0]);
    let st = p.ensure_l7(&id, &spec, None).await.expect("ensure");
    let lb = alb_of(&w, &st.record).await;
    let l443 = listeners(&w, lb.load_balancer_arn().unwrap()).await[&443].clone();
    let cert_before = l443.certificates()[0].certificate_arn().unwrap().to_string();

    spec.certificates = vec![certificate("default/web-tls", "foo.example")];
    let counts = p.call_counts();
    let st = p.ensure_l7(&id, &spec, Some(&st.record)).await.expect("rotate");
    let m = mutations(&counts, &p.call_counts());
    assert_eq!(
        m,
        BTreeMap::from([
            ("acm:AddTagsToCertificate".to_string(), 1),
            ("acm:ImportCertificate".to_string(), 1),
            ("elbv2:AddTags".to_string(), 1),
        ]),
        "a rotation re-imports the certificate and updates the fingerprint and spec-hash tags: {m:?}"
    );
    let l443 = listeners(&w, lb.load_balancer_arn().unwrap()).await[&443].clone();
    assert_eq!(l443.certificates()[0].certificate_arn().unwrap(), cert_before, "the listener keeps the same ARN");

    // Node added: only target registrations (one per target group), after one ownership check.
    spec.targets = [0, 1, 2].iter().map(|i| w.target(*i)).collect::<Vec<_>>().into();
    let counts = p.call_counts();
    p.update_targets_l7(&id, &spec, Some(&st.record)).await.expect("update targets");
    let calls = calls_since(&counts, &p.call_counts());
    assert_eq!(calls.get("elbv2:RegisterTargets"), Some(&3), "{calls:?}");
    // The new instance's node security group (the others'): one look-up, no rule call.
    assert_eq!(calls.get("ec2:DescribeInstances"), Some(&1), "{calls:?}");
    let allowed =
        ["elbv2:RegisterTargets", "elbv2:DescribeTargetHealth", "elbv2:DescribeTags", "ec2:DescribeInstances"];
    assert!(calls.keys().all(|k| allowed.contains(&k.as_str())), "{calls:?}");
    p.delete_l7(&id, Some(&st.record)).await.expect("delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_ensures_then_a_full_one_leave_no_duplicates_and_delete_without_record_leaves_nothing() {
    let w = World::new("cut").await;
    let p = w.provider().await;
    let id = w.id("cut");
    let spec = ingress(&w, &[0, 1]);
    // Cancel ensure at growing points (each a little further), as a killed process would.
    for ms in [5u64, 20, 40, 80, 120, 200, 300] {
        let _ = tokio::time::timeout(Duration::from_millis(ms), p.ensure_l7(&id, &spec, None)).await;
    }
    let st = p.ensure_l7(&id, &spec, None).await.expect("full ensure");
    let owned = w.owned().await;
    assert_eq!(owned.load_balancers.len(), 1, "{owned:?}");
    assert_eq!(owned.target_groups.len(), 3, "{owned:?}");
    assert_eq!(owned.security_groups.len(), 1, "{owned:?}");
    let acm = aws_sdk_acm::Client::new(&support::sdk_config(&w.moto.url()).await);
    let certs = acm.list_certificates().send().await.expect("list");
    assert_eq!(certs.certificate_summary_list().len(), 1, "one certificate per Secret");
    let lb = alb_of(&w, &st.record).await;
    for l in listeners(&w, lb.load_balancer_arn().unwrap()).await.values() {
        assert_eq!(rules(&w, l.listener_arn().unwrap()).await.len(), 3, "no duplicate rules");
    }
    p.delete_l7(&id, None).await.expect("delete without record");
    assert!(w.owned().await.is_empty());
    assert!(acm.list_certificates().send().await.unwrap().certificate_summary_list().is_empty());
}

#[tokio::test]
async fn plans_of_a_new_alb_and_a_new_nlb_list_every_change_and_make_nothing() {
    let w = World::new("plan").await;
    let p = w.provider().await;
    let spec = ingress(&w, &[0, 1]);
    let plan = p.plan_l7(&w.id("web"), &spec, None).await.expect("plan of a new ALB");
    let calls: Vec<String> = plan.changes.iter().map(|c| format!("{} {}", c.action.as_str(), c.call)).collect();
    println!("ALB: {calls:#?}");
    assert!(plan.complete, "{calls:?}");
    let count = |call: &str| calls.iter().filter(|c| c.ends_with(call)).count();
    assert_eq!(count("ec2:CreateSecurityGroup"), 2, "the ALB's own and the cluster's backend group");
    assert_eq!(count("ec2:AuthorizeSecurityGroupIngress"), 2, "the ALB's source ranges, the nodes' group");
    assert_eq!(count("elbv2:CreateLoadBalancer"), 1);
    assert_eq!(count("elbv2:CreateTargetGroup"), 3, "web, api, shop");
    assert_eq!(count("elbv2:CreateListener"), 2, "HTTP and HTTPS");
    assert_eq!(count("acm:ImportCertificate"), 1);
    assert_eq!(count("elbv2:CreateRule"), 6, "one rule per path and listener: {calls:?}");
    assert_eq!(count("elbv2:ModifyListener"), 0, "a new HTTPS listener is made with its certificate");

    let nlb = p.plan(&w.id("svc"), &w.spec(&[(80, 30080)], &[0]), None).await.expect("plan of a new NLB");
    let nlb_calls: Vec<&str> = nlb.changes.iter().map(|c| c.call.as_str()).collect();
    println!("NLB: {nlb_calls:#?}");
    assert!(nlb.complete);
    for call in [
        "ec2:CreateSecurityGroup",
        "elbv2:CreateLoadBalancer",
        "elbv2:CreateTargetGroup",
        "elbv2:RegisterTargets",
        "elbv2:CreateListener",
    ] {
        assert!(nlb_calls.contains(&call), "{call}: {nlb_calls:?}");
    }
    let lbs = w.elb.describe_load_balancers().send().await.expect("lbs");
    assert!(lbs.load_balancers().is_empty(), "a plan makes nothing");
    let tgs = w.elb.describe_target_groups().send().await.expect("tgs");
    assert!(tgs.target_groups().is_empty(), "a plan makes nothing");
    assert!(w.owned().await.security_groups.is_empty(), "a plan makes nothing");
    assert!(w.owned().await.backend_security_groups.is_empty(), "a plan makes no backend group");
}

/// `alb.ingress.kubernetes.io/ip-address-type` takes the NLB's path: given at create, changed in
/// place with one SetIpAddressType (same ALB), a bad value refused before any call.
#[tokio::test]
async fn ip_address_type_is_set_at_create_and_changed_in_place() {
    let w = World::new("ipt").await;
    let p = w.provider().await;
    let id = w.id("ipt");
    let mut spec = ingress(&w, &[0]);
    spec.listeners.pop();
    spec.certificates.clear();
    spec.options.insert("ip-address-type".into(), "dualstack".into());
    assert!(p.validate_l7(&spec).is_empty(), "{:?}", p.validate_l7(&spec));
    let st = p.ensure_l7(&id, &spec, None).await.expect("ensure");
    let lb = alb_of(&w, &st.record).await;
    assert_eq!(lb.ip_address_type().map(|t| t.as_str()), Some("dualstack"));

    spec.options.insert("ip-address-type".into(), "ipv4".into());
    let before = p.call_counts();
    let st = p.ensure_l7(&id, &spec, Some(&st.record)).await.expect("changed in place");
    let m = mutations(&before, &p.call_counts());
    assert_eq!(m.get("elbv2:SetIpAddressType"), Some(&1), "{m:?}");
    assert!(!m.contains_key("elbv2:CreateLoadBalancer") && !m.contains_key("elbv2:DeleteLoadBalancer"), "{m:?}");
    let after = alb_of(&w, &st.record).await;
    assert_eq!(after.load_balancer_arn(), lb.load_balancer_arn(), "the same ALB");
    assert_eq!(after.ip_address_type().map(|t| t.as_str()), Some("ipv4"));

    spec.options.insert("ip-address-type".into(), "IPv6".into());
    let problems = p.validate_l7(&spec);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("alb.ingress.kubernetes.io/ip-address-type") && problems[0].contains("\"dualstack\""));
    let before = p.call_counts();
    assert!(p.ensure_l7(&id, &spec, Some(&st.record)).await.is_err());
    assert!(calls_since(&before, &p.call_counts()).is_empty(), "no call at all");

    support::assert_policy_allows(&p.call_counts(), &w.cluster);
    p.delete_l7(&id, Some(&st.record)).await.expect("delete");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}
