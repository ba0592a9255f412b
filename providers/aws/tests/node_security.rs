//! The nodes' security groups against moto: the cluster's backend group on every load balancer,
//! rules on the nodes' groups admitting it on the node and health-check ports, shared rules
//! counted by the load balancers that use them, the targets-only path, ambiguity, and off.
//!
//! moto 5.2.1 supports what this relies on (descriptions on UserIdGroupPairs, the
//! `ip-permission.group-id` filter, SetSecurityGroups on NLBs, DescribeInstances' network
//! interfaces with their device index and groups); where it differs from AWS is listed in
//! `src/node_security.rs`.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use cloudlb_provider::{Listener, LoadBalancerSpec, LoadBalancerStatus, Protocol, Provider, conformance};
use cloudlb_provider_aws::{AwsProvider, names};

use support::{World, calls_since, mutations};

fn udp_spec(w: &World, port: u16, node_port: u16, targets: &[usize]) -> LoadBalancerSpec {
    let mut s = w.spec(&[], targets);
    s.listeners = vec![Listener { port, protocol: Protocol::Udp, node_port, name: None }];
    s
}

async fn lb_groups(w: &World, rec: &cloudlb_provider::Record) -> BTreeSet<String> {
    let arn = rec.get("load-balancer").expect("recorded load balancer");
    let r = w.elb.describe_load_balancers().load_balancer_arns(arn).send().await.expect("describe lb");
    r.load_balancers()[0].security_groups().iter().cloned().collect()
}

async fn backend_group(w: &World) -> Option<(String, BTreeMap<String, String>)> {
    let name = names::backend_security_group(&w.cluster);
    let r = w
        .ec2
        .describe_security_groups()
        .filters(aws_sdk_ec2::types::Filter::builder().name("group-name").values(&name).build())
        .send()
        .await
        .expect("describe groups");
    r.security_groups().first().map(|g| {
        let tags = g
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
            .collect();
        (g.group_id().unwrap_or_default().to_string(), tags)
    })
}

/// (protocol, from, to) of the rules on `group` whose source is `backend`.
async fn rules_from(w: &World, group: &str, backend: &str) -> BTreeSet<(String, i32, i32)> {
    w.group_rules(group).await.into_iter().filter(|r| r.3 == backend).map(|(p, f, t, _, _)| (p, f, t)).collect()
}

fn rule(p: &str, port: i32) -> (String, i32, i32) {
    (p.to_string(), port, port)
}

#[tokio::test]
async fn node_groups_admit_the_backend_group_on_node_and_health_check_ports() {
    let w = World::new("nodesg").await;
    let p = w.provider().await;
    let node_group = w.instance_groups(0).await;
    assert_eq!(node_group.len(), 1, "moto gives a new instance the VPC's default group");
    let node_group = node_group[0].clone();

    // TCP 80 (health check on the traffic port) and UDP 53 (HTTP on kube-proxy's 10256).
    let id = w.id("web");
    let mut spec = w.spec(&[(80, 30080)], &[0, 1]);
    spec.listeners.push(Listener { port: 53, protocol: Protocol::Udp, node_port: 30053, name: None });
    let before = p.call_counts();
    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    let new_lb = calls_since(&before, &p.call_counts());
    eprintln!("calls of a new NLB: {new_lb:?}");

    let (backend, tags) = backend_group(&w).await.expect("the backend group exists");
    assert_eq!(tags.get("cloudlb.io/cluster").map(String::as_str), Some("nodesg"));
    assert_eq!(tags.get("cloudlb.io/resource").map(String::as_str), Some("backend-security-group"));
    assert!(!tags.contains_key("cloudlb.io/owner-uid"), "the backend group is no one load balancer's");
    let frontend = st.record.get("security-group").expect("recorded group").to_string();
    assert_eq!(lb_groups(&w, &st.record).await, BTreeSet::from([frontend.clone(), backend.clone()]));
    let rules = w.group_rules(&node_group).await;
    let ours: BTreeSet<(String, i32, i32)> =
        rules.iter().filter(|r| r.3 == backend).map(|(p, f, t, _, _)| (p.clone(), *f, *t)).collect();
    assert_eq!(ours, BTreeSet::from([rule("tcp", 10256), rule("tcp", 30080), rule("udp", 30053)]));
    for r in rules.iter().filter(|r| r.3 == backend) {
        assert!(r.4.starts_with("cloudlb nodesg:"), "described as ours: {r:?}");
    }
    assert_eq!(new_lb.get("ec2:DescribeInstances"), Some(&1), "{new_lb:?}");
    assert_eq!(new_lb.get("ec2:AuthorizeSecurityGroupIngress"), Some(&2), "frontend + node group: {new_lb:?}");
    assert_eq!(new_lb.get("ec2:CreateSecurityGroup"), Some(&2), "frontend + backend: {new_lb:?}");

    // Unchanged: no mutating call; the reads node security adds are counted.
    let before = p.call_counts();
    let again = p.ensure(&id, &spec, Some(&st.record)).await.expect("again");
    // The same load balancer; the targets' health moved on (registered a moment ago, healthy now).
    assert_eq!(LoadBalancerStatus { targets: None, ..again }, LoadBalancerStatus { targets: None, ..st.clone() });
    let calls = calls_since(&before, &p.call_counts());
    eprintln!("calls of an unchanged NLB ensure: {calls:?}");
    assert_eq!(mutations(&before, &p.call_counts()), BTreeMap::new(), "an unchanged ensure must not mutate");
    assert_eq!(calls.get("ec2:DescribeInstances"), None, "instances are cached");
    assert_eq!(calls.get("ec2:DescribeSecurityGroups"), Some(&2), "its own group + the node group's rules");
    assert_eq!(p.get(&id, Some(&st.record)).await.expect("get").expect("exists").record, st.record);

    // An ALB gets the backend group too, and its backends' node ports.
    let l7_id = w.id("ing");
    let mut l7 = conformance::l7_spec(80);
    l7.targets = vec![w.target(0)].into();
    let l7_st = p.ensure_l7(&l7_id, &l7, None).await.expect("ensure_l7");
    let alb_groups = lb_groups(&w, &l7_st.record).await;
    assert!(alb_groups.contains(&backend) && alb_groups.len() == 2, "{alb_groups:?}");
    let ours = rules_from(&w, &node_group, &backend).await;
    for port in [30081, 30082] {
        assert!(ours.contains(&rule("tcp", port)), "ALB backend node port {port}: {ours:?}");
    }
    let before = p.call_counts();
    p.ensure_l7(&l7_id, &l7, Some(&l7_st.record)).await.expect("again");
    assert_eq!(mutations(&before, &p.call_counts()), BTreeMap::new(), "an unchanged ALB ensure must not mutate");

    // Deleting the NLB removes its rules (the ALB's stay); deleting the ALB removes the rest and
    // the backend group.
    p.delete(&id, Some(&st.record)).await.expect("delete");
    support::assert_policy_allows(&p.call_counts(), &w.cluster);
    assert_eq!(rules_from(&w, &node_group, &backend).await, BTreeSet::from([rule("tcp", 30081), rule("tcp", 30082)]));
    assert!(backend_group(&w).await.is_some(), "kept while a load balancer carries it");
    p.delete_l7(&l7_id, Some(&l7_st.record)).await.expect("delete_l7");
    assert!(rules_from(&w, &node_group, &backend).await.is_empty());
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}

#[tokio::test]
async fn a_shared_rule_stays_while_a_load_balancer_needs_it_and_user_rules_are_never_touched() {
    let w = World::new("shared").await;
    let p = w.provider().await;
    let node_group = w.instance_groups(0).await[0].clone();
    // The user's own rules on the node group: the same ports from a CIDR and from another group.
    let theirs = w.security_group("users-own", &[]).await;
    w.ec2
        .authorize_security_group_ingress()
        .group_id(&node_group)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(10256)
                .to_port(10256)
                .ip_ranges(aws_sdk_ec2::types::IpRange::builder().cidr_ip("10.0.0.0/16").build())
                .user_id_group_pairs(
                    aws_sdk_ec2::types::UserIdGroupPair::builder().group_id(&theirs).description("mine").build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("the user's rule");
    let users = |rules: BTreeSet<(String, i32, i32, String, String)>| -> usize {
        rules.iter().filter(|r| r.3 == theirs).count()
    };
    let user_rules_before = users(w.group_rules(&node_group).await);
    assert_eq!(user_rules_before, 1);

    // Two UDP Services with the Cluster policy: both health-checked on kube-proxy's 10256.
    let (a, b) = (w.id("a"), w.id("b"));
    let st_a = p.ensure(&a, &udp_spec(&w, 53, 30053, &[0]), None).await.expect("ensure a");
    let st_b = p.ensure(&b, &udp_spec(&w, 54, 30054, &[0]), None).await.expect("ensure b");
    let (backend, _) = backend_group(&w).await.expect("backend group");
    let all = w.group_rules(&node_group).await;
    assert_eq!(
        all.iter().filter(|r| r.3 == backend && r.1 == 10256).count(),
        1,
        "one rule for the shared port: {all:?}"
    );
    assert_eq!(
        rules_from(&w, &node_group, &backend).await,
        BTreeSet::from([rule("tcp", 10256), rule("udp", 30053), rule("udp", 30054)])
    );

    // Deleting a keeps 10256 (b needs it) and removes a's node port.
    p.delete(&a, Some(&st_a.record)).await.expect("delete a");
    assert_eq!(rules_from(&w, &node_group, &backend).await, BTreeSet::from([rule("tcp", 10256), rule("udp", 30054)]));
    assert_eq!(users(w.group_rules(&node_group).await), user_rules_before);

    // b's load balancer disappears as if a delete was interrupted right after DeleteLoadBalancer:
    // a delete without a record finishes it (rules, target group, groups, the backend group).
    let b_lb = st_b.record.get("load-balancer").unwrap();
    w.elb.delete_load_balancer().load_balancer_arn(b_lb).send().await.expect("delete b's load balancer by hand");
    assert!(!rules_from(&w, &node_group, &backend).await.is_empty());
    p.delete(&b, None).await.expect("delete b without a record");
    assert!(rules_from(&w, &node_group, &backend).await.is_empty(), "the shared rule goes with the last user");
    assert!(backend_group(&w).await.is_none(), "the backend group goes with the last load balancer");
    assert_eq!(users(w.group_rules(&node_group).await), user_rules_before, "the user's rules are untouched");
    let cidr_rule = w.ec2.describe_security_groups().group_ids(&node_group).send().await.unwrap();
    assert!(
        cidr_rule.security_groups()[0]
            .ip_permissions()
            .iter()
            .any(|p| p.from_port() == Some(10256) && p.ip_ranges().iter().any(|r| r.cidr_ip() == Some("10.0.0.0/16"))),
        "the user's CIDR rule on the shared port is untouched"
    );
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);

    // A second delete finds nothing to do.
    let before = p.call_counts();
    p.delete(&b, None).await.expect("second delete");
    assert_eq!(mutations(&before, &p.call_counts()), BTreeMap::new());
    assert!(w.owned().await.is_empty());
}

/// A rule someone else made that admits the backend group (into their database's group, say)
/// is not ours: the sweeps never revoke it, and it keeps the backend group alive.
#[tokio::test]
async fn a_rule_admitting_the_backend_group_that_we_did_not_make_is_never_revoked() {
    let w = World::new("foreign").await;
    let p = w.provider().await;
    let id = w.id("a");
    let st = p.ensure(&id, &udp_spec(&w, 53, 30053, &[0]), None).await.expect("ensure");
    let (backend, _) = backend_group(&w).await.expect("backend group");
    let database = w.security_group("database", &[]).await;
    w.ec2
        .authorize_security_group_ingress()
        .group_id(&database)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(5432)
                .to_port(5432)
                .user_id_group_pairs(
                    aws_sdk_ec2::types::UserIdGroupPair::builder().group_id(&backend).description("postgres").build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("the user's rule admitting the backend group");
    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert_eq!(rules_from(&w, &database, &backend).await, BTreeSet::from([rule("tcp", 5432)]), "untouched");
    assert!(backend_group(&w).await.is_some(), "kept while a rule we did not make admits it");
}

#[tokio::test]
async fn a_new_node_with_another_group_gets_the_rules_on_the_targets_only_path() {
    let mut w = World::new("churn").await;
    let p = w.provider().await;
    let id = w.id("web");
    let st = p.ensure(&id, &w.spec(&[(80, 30080), (443, 30443)], &[0, 1]), None).await.expect("ensure");
    let (backend, _) = backend_group(&w).await.expect("backend group");

    // A node of another node group (its own security group) joins.
    let group_b = w.security_group("nodes-b", &[]).await;
    let n = w.run_instance(std::slice::from_ref(&group_b)).await;
    let before = p.call_counts();
    p.update_targets(&id, &w.spec(&[(80, 30080), (443, 30443)], &[0, 1, n]), Some(&st.record)).await.expect("join");
    let calls = calls_since(&before, &p.call_counts());
    let want = BTreeMap::from([
        ("ec2:DescribeInstances".to_string(), 1),
        ("ec2:DescribeSecurityGroups".to_string(), 1),
        ("ec2:AuthorizeSecurityGroupIngress".to_string(), 1),
        ("elbv2:DescribeTags".to_string(), 1),
        ("elbv2:DescribeTargetHealth".to_string(), 2),
        ("elbv2:RegisterTargets".to_string(), 2),
    ]);
    assert_eq!(calls, want, "no listener, attribute or load balancer read on node churn");
    assert_eq!(rules_from(&w, &group_b, &backend).await, BTreeSet::from([rule("tcp", 30080), rule("tcp", 30443)]));

    // Another node of the same group: its group is known to have the rules.
    let m = w.run_instance(std::slice::from_ref(&group_b)).await;
    let before = p.call_counts();
    p.update_targets(&id, &w.spec(&[(80, 30080), (443, 30443)], &[0, 1, n, m]), Some(&st.record)).await.expect("join");
    let calls = calls_since(&before, &p.call_counts());
    let want = BTreeMap::from([
        ("ec2:DescribeInstances".to_string(), 1),
        ("elbv2:DescribeTargetHealth".to_string(), 2),
        ("elbv2:RegisterTargets".to_string(), 2),
    ]);
    assert_eq!(calls, want);

    // Nodes leaving: no node security call at all.
    let before = p.call_counts();
    p.update_targets(&id, &w.spec(&[(80, 30080), (443, 30443)], &[0]), Some(&st.record)).await.expect("leave");
    let calls = calls_since(&before, &p.call_counts());
    assert!(calls.keys().all(|c| c.starts_with("elbv2:")), "{calls:?}");

    p.delete(&id, Some(&st.record)).await.expect("delete");
    support::assert_policy_allows(&p.call_counts(), &w.cluster);
    assert!(rules_from(&w, &group_b, &backend).await.is_empty());
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}

#[tokio::test]
async fn an_ambiguous_node_gets_no_rule_and_stops_nothing_else() {
    let mut w = World::new("ambiguous").await;
    let p = w.provider().await;
    let a = w.security_group("nodes-a", &[]).await;
    let b = w.security_group("nodes-b", &[]).await;
    let n = w.run_instance(&[a.clone(), b.clone()]).await;
    let id = w.id("web");
    let spec = w.spec(&[(80, 30080)], &[0, n]);
    let node_group = w.instance_groups(0).await[0].clone();

    // The other node's group is opened and the load balancer made; the ambiguous node's two
    // groups get nothing (it is registered: its failing checks show in the health condition).
    let st = p.ensure(&id, &spec, None).await.expect("one ambiguous node stops nothing");
    let (backend, _) = backend_group(&w).await.expect("backend group");
    assert_eq!(rules_from(&w, &node_group, &backend).await, BTreeSet::from([rule("tcp", 30080)]));
    assert!(rules_from(&w, &a, &backend).await.is_empty() && rules_from(&w, &b, &backend).await.is_empty());

    // Tagging one of them settles it on the next ensure: only that one is opened.
    w.ec2
        .create_tags()
        .resources(&b)
        .tags(aws_sdk_ec2::types::Tag::builder().key("kubernetes.io/cluster/ambiguous").value("owned").build())
        .send()
        .await
        .expect("tag");
    let st = p.ensure(&id, &spec, Some(&st.record)).await.expect("ensure");
    assert_eq!(rules_from(&w, &b, &backend).await, BTreeSet::from([rule("tcp", 30080)]));
    assert!(rules_from(&w, &a, &backend).await.is_empty());
    p.delete(&id, Some(&st.record)).await.expect("delete");
    support::assert_policy_allows(&p.call_counts(), &w.cluster);
    assert!(w.owned().await.is_empty(), "{:?}", w.owned().await);
}

#[tokio::test]
async fn turned_off_there_is_no_backend_group_and_no_node_rule() {
    let w = World::new("off").await;
    let node_group = w.instance_groups(0).await[0].clone();
    let mut config = w.config();
    config.manage_node_security_groups = false;
    support::test_env();
    let p = AwsProvider::new(config).await.expect("provider");
    let id = w.id("web");
    let st = p.ensure(&id, &w.spec(&[(80, 30080)], &[0]), None).await.expect("ensure");
    let frontend = st.record.get("security-group").unwrap().to_string();
    assert_eq!(lb_groups(&w, &st.record).await, BTreeSet::from([frontend]));
    assert!(backend_group(&w).await.is_none());
    assert!(w.group_rules(&node_group).await.is_empty(), "{:?}", w.group_rules(&node_group).await);
    assert!(!p.call_counts().contains_key("ec2:DescribeInstances"), "{:?}", p.call_counts());
    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(w.owned().await.is_empty(), "{:?}", w.owned().await);

    // On, but one Service says no (the AWS Load Balancer Controller's annotation).
    let p = w.provider().await;
    let mut spec = w.spec(&[(80, 30080)], &[0]);
    spec.options.insert("manage-backend-security-group-rules".into(), "false".into());
    assert!(p.warnings(&spec).is_empty(), "{:?}", p.warnings(&spec));
    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    assert_eq!(lb_groups(&w, &st.record).await.len(), 1);
    assert!(backend_group(&w).await.is_none());
    assert!(w.group_rules(&node_group).await.is_empty());

    // Turning it on for the Service attaches the group and adds the rules; off again detaches
    // and sweeps them (and the backend group, no longer carried by anyone).
    spec.options.remove("manage-backend-security-group-rules");
    let st = p.ensure(&id, &spec, Some(&st.record)).await.expect("on");
    let (backend, _) = backend_group(&w).await.expect("backend group");
    assert!(lb_groups(&w, &st.record).await.contains(&backend));
    assert_eq!(rules_from(&w, &node_group, &backend).await, BTreeSet::from([rule("tcp", 30080)]));
    spec.options.insert("manage-backend-security-group-rules".into(), "false".into());
    let st = p.ensure(&id, &spec, Some(&st.record)).await.expect("off again");
    assert_eq!(lb_groups(&w, &st.record).await.len(), 1);
    assert!(w.group_rules(&node_group).await.is_empty());
    assert!(backend_group(&w).await.is_none());
    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(w.owned().await.is_empty(), "{:?}", w.owned().await);
}

#[tokio::test]
async fn one_rule_per_protocol_for_the_node_port_range_and_plan_lists_the_changes() {
    let w = World::new("range").await;
    let node_group = w.instance_groups(0).await[0].clone();
    let mut config = w.config();
    config.node_port_range_rule = Some((30000, 32767));
    support::test_env();
    let p = AwsProvider::new(config).await.expect("provider");
    let (a, b) = (w.id("a"), w.id("b"));
    let spec_a = udp_spec(&w, 53, 30053, &[0]);

    // plan: every node-security change listed, none made.
    let plan = p.plan(&a, &spec_a, None).await.expect("plan");
    let calls: Vec<&str> = plan.changes.iter().map(|c| c.call.as_str()).collect();
    assert_eq!(calls.iter().filter(|c| **c == "ec2:CreateSecurityGroup").count(), 2, "{calls:?}");
    assert_eq!(
        calls.iter().filter(|c| **c == "ec2:AuthorizeSecurityGroupIngress").count(),
        2,
        "the frontend's and the node group's rules: {calls:?}"
    );
    assert!(backend_group(&w).await.is_none(), "plan made nothing");
    assert!(w.group_rules(&node_group).await.is_empty());

    let st_a = p.ensure(&a, &spec_a, None).await.expect("ensure a");
    let st_b = p.ensure(&b, &w.spec(&[(80, 31080)], &[0]), None).await.expect("ensure b");
    let (backend, _) = backend_group(&w).await.expect("backend group");
    assert_eq!(
        rules_from(&w, &node_group, &backend).await,
        BTreeSet::from([("tcp".to_string(), 10256, 10256), ("tcp".into(), 30000, 32767), ("udp".into(), 30000, 32767)])
    );
    p.delete(&a, Some(&st_a.record)).await.expect("delete a");
    assert_eq!(
        rules_from(&w, &node_group, &backend).await,
        BTreeSet::from([("tcp".to_string(), 30000, 32767)]),
        "b still needs the tcp range"
    );
    p.delete(&b, Some(&st_b.record)).await.expect("delete b");
    assert!(w.group_rules(&node_group).await.is_empty());
    assert!(w.owned().await.is_empty(), "{:?}", w.owned().await);
}
