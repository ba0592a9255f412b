//! The aws provider against moto_server (pinned: `pip install 'moto[server]==5.2.1'`).
//!
//! Each test starts its own moto on a free port (killed on drop), so tests run in parallel
//! without sharing state. Everything is read back through the AWS API, never from moto internals.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{LoadBalancerSchemeEnum, LoadBalancerTypeEnum};
use cloudlb_provider::{
    ErrorClass, IngressPoint, IpMode, LoadBalancerStatus, Protocol, Provider, ProviderError, Scheme, conformance,
};
use cloudlb_provider_aws::{AwsProvider, names};

use support::proxy::FaultProxy;
use support::{World, calls_since, delta, mutations};

#[tokio::test]
async fn conformance_suite() {
    let w = World::new(conformance::CLUSTER).await;
    let p = w.provider().await;
    conformance::run_all(&p).await;
    assert!(w.owned().await.is_empty(), "the conformance suite left {:?}", w.owned().await);
}

async fn listeners_of(w: &World, lb_arn: &str) -> BTreeMap<i32, (String, String)> {
    let r = w.elb.describe_listeners().load_balancer_arn(lb_arn).send().await.unwrap();
    r.listeners()
        .iter()
        .map(|l| {
            let tg = l.default_actions()[0].target_group_arn().unwrap_or_default().to_string();
            (l.port().unwrap(), (l.protocol().unwrap().as_str().to_string(), tg))
        })
        .collect()
}

async fn targets_of(w: &World, tg_arn: &str) -> BTreeSet<(String, i32)> {
    let r = w.elb.describe_target_health().target_group_arn(tg_arn).send().await.unwrap();
    r.target_health_descriptions()
        .iter()
        .filter_map(|d| d.target())
        .map(|t| (t.id().unwrap().to_string(), t.port().unwrap_or(0)))
        .collect()
}

async fn target_group(w: &World, arn: &str) -> aws_sdk_elasticloadbalancingv2::types::TargetGroup {
    let r = w.elb.describe_target_groups().target_group_arns(arn).send().await.unwrap();
    r.target_groups()[0].clone()
}

async fn tg_attributes(w: &World, arn: &str) -> BTreeMap<String, String> {
    let r = w.elb.describe_target_group_attributes().target_group_arn(arn).send().await.unwrap();
    r.attributes().iter().map(|a| (a.key().unwrap().to_string(), a.value().unwrap_or_default().to_string())).collect()
}

#[tokio::test]
async fn creates_the_nlb_target_groups_listeners_and_tags_the_spec_asks_for() {
    let w = World::new("shape").await;
    let p = w.provider().await;
    let id = w.id("web");
    let mut spec = w.spec(&[(80, 30080), (53, 30053)], &[0, 1]);
    spec.listeners.push(cloudlb_provider::Listener { port: 53, protocol: Protocol::Udp, node_port: 30053, name: None });
    spec.listeners.sort();
    std::sync::Arc::make_mut(&mut spec.targets).push(conformance::target("no-provider-id", "10.0.0.9"));
    spec.source_ranges = vec!["10.0.0.0/8".parse().unwrap()];
    spec.options.insert("healthcheck-interval".into(), "20".into());
    spec.options.insert("additional-resource-tags".into(), "team=web".into());
    assert!(p.validate(&spec).is_empty(), "{:?}", p.validate(&spec));
    assert!(p.capabilities().check(&spec).is_empty());

    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    let lb_name = names::load_balancer(&id);
    assert_eq!(st.ip_mode, IpMode::VIP);
    let lb = w.load_balancer(&lb_name).await.expect("load balancer exists");
    assert_eq!(st.ingress, vec![IngressPoint::Hostname(lb.dns_name().unwrap().to_string())]);
    assert_eq!(st.spec_hash.as_deref(), Some(spec.hash().as_str()));
    let lb_arn = lb.load_balancer_arn().unwrap().to_string();
    assert_eq!(st.record.get("load-balancer"), Some(lb_arn.as_str()));
    assert_eq!(lb.r#type(), Some(&LoadBalancerTypeEnum::Network));
    assert_eq!(lb.scheme(), Some(&LoadBalancerSchemeEnum::InternetFacing));
    let mut subnets: Vec<String> = lb.availability_zones().iter().map(|z| z.subnet_id().unwrap().to_string()).collect();
    subnets.sort();
    let mut want = w.public.clone();
    want.sort();
    assert_eq!(subnets, want, "one tagged public subnet per zone, lowest id");
    let sg = st.record.get("security-group").expect("security group recorded").to_string();
    // moto 5.2.1 keeps and reports an NLB's security groups (CreateLoadBalancer SecurityGroups):
    // its own, then the cluster's backend group (node_security.rs).
    assert_eq!(lb.security_groups().len(), 2, "{:?}", lb.security_groups());
    assert_eq!(lb.security_groups()[0], sg);
    let backend = w.ec2.describe_security_groups().group_ids(&lb.security_groups()[1]).send().await.unwrap();
    assert_eq!(backend.security_groups()[0].group_name(), Some(names::backend_security_group("shape").as_str()));

    // Listeners: 53 is TCP_UDP (one target group), 80 is TCP.
    let ls = listeners_of(&w, &lb_arn).await;
    assert_eq!(ls.keys().copied().collect::<Vec<_>>(), vec![53, 80]);
    assert_eq!(ls[&53].0, "TCP_UDP");
    assert_eq!(ls[&80].0, "TCP");
    for (port, (_, tg_arn)) in &ls {
        let tg = target_group(&w, tg_arn).await;
        let node_port = if *port == 53 { 30053 } else { 30080 };
        assert_eq!(tg.port(), Some(node_port));
        assert_eq!(tg.protocol().unwrap().as_str(), if *port == 53 { "TCP_UDP" } else { "TCP" });
        assert_eq!(tg.target_type().unwrap().as_str(), "instance");
        assert_eq!(tg.health_check_protocol().unwrap().as_str(), "TCP");
        assert_eq!(tg.health_check_port(), Some("traffic-port"));
        assert_eq!(tg.health_check_interval_seconds(), Some(20));
        assert_eq!(st.record.get(&format!("target-group/{port}")), Some(tg_arn.as_str()));
        // Instance targets on the node port; the node without a providerID is skipped.
        let want: BTreeSet<(String, i32)> = [0, 1].iter().map(|i| (w.instances[*i].clone(), node_port)).collect();
        assert_eq!(targets_of(&w, tg_arn).await, want);
        let t = w.elb_tags(tg_arn).await;
        assert_eq!(t.get("cloudlb.io/resource").map(String::as_str), Some("target-group"));
        assert_eq!(t.get("cloudlb.io/owner-uid"), Some(&id.uid));
        assert_eq!(t.get("team").map(String::as_str), Some("web"));
        assert!(
            names::target_group(
                &id,
                *port as u16,
                if *port == 53 {
                    cloudlb_provider_aws::plan::TgProtocol::TcpUdp
                } else {
                    cloudlb_provider_aws::plan::TgProtocol::Tcp
                },
                node_port as u16
            ) == tg.target_group_name().unwrap()
        );
    }
    let skipped = AwsProvider::skipped_targets(&spec);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].node, "no-provider-id");

    // Tags on the load balancer.
    let t = w.elb_tags(&lb_arn).await;
    for (k, v) in [
        ("cloudlb.io/cluster", "shape"),
        ("cloudlb.io/resource", "load-balancer"),
        ("kubernetes.io/cluster/shape", "owned"),
        ("team", "web"),
    ] {
        assert_eq!(t.get(k).map(String::as_str), Some(v), "tag {k} in {t:?}");
    }
    assert_eq!(t.get("service.k8s.aws/stack"), Some(&id.owner()));
    assert_eq!(t.get("cloudlb.io/spec-hash"), Some(&spec.hash()));

    // Security group: source ranges x ports (TCP 53, UDP 53, TCP 80).
    let g = w.ec2.describe_security_groups().group_ids(&sg).send().await.unwrap();
    let g = &g.security_groups()[0];
    let mut rules: Vec<(String, i32, String)> = Vec::new();
    for perm in g.ip_permissions() {
        for r in perm.ip_ranges() {
            rules.push((
                perm.ip_protocol().unwrap().to_string(),
                perm.from_port().unwrap(),
                r.cidr_ip().unwrap().to_string(),
            ));
        }
    }
    rules.sort();
    assert_eq!(
        rules,
        vec![
            ("tcp".into(), 53, "10.0.0.0/8".into()),
            ("tcp".into(), 80, "10.0.0.0/8".into()),
            ("udp".into(), 53, "10.0.0.0/8".into())
        ]
    );
    assert!(g.tags().iter().any(|t| t.key() == Some("cloudlb.io/resource") && t.value() == Some("security-group")));

    // get reads it all back, including the spec hash.
    let got = p.get(&id, None).await.unwrap().expect("get");
    assert_eq!(got.ingress, st.ingress);
    assert_eq!(got.spec_hash, st.spec_hash);
    assert_eq!(got.record, st.record);

    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}

#[tokio::test]
async fn updates_converge_in_place_with_batched_target_calls() {
    let w = World::new("update").await;
    let p = w.provider().await;
    let id = w.id("web");
    let a = w.spec(&[(80, 30080), (443, 30443)], &[0, 1]);
    let st = p.ensure(&id, &a, None).await.expect("ensure a");

    // Unchanged: no mutating call at all.
    let before = p.call_counts();
    let again = p.ensure(&id, &a, Some(&st.record)).await.expect("ensure a again");
    // The same load balancer; the targets' health moved on (registered a moment ago, healthy now).
    assert_eq!(LoadBalancerStatus { targets: None, ..again }, LoadBalancerStatus { targets: None, ..st.clone() });
    assert_eq!(mutations(&before, &p.call_counts()), BTreeMap::new(), "an unchanged ensure must not mutate");

    // Targets: +2 -0 then 1 RegisterTargets per target group, no deregistration.
    let before = p.call_counts();
    let b = w.spec(&[(80, 30080), (443, 30443)], &[0, 1, 2]);
    let st = p.ensure(&id, &b, Some(&st.record)).await.expect("add a target");
    let after = p.call_counts();
    assert_eq!(delta(&before, &after, "elbv2:RegisterTargets"), 2, "one call per target group");
    assert_eq!(delta(&before, &after, "elbv2:DeregisterTargets"), 0);

    // Swap two targets at once: one register + one deregister per target group.
    let before = p.call_counts();
    let c = w.spec(&[(80, 30080), (443, 30443)], &[2]);
    let st = p.ensure(&id, &c, Some(&st.record)).await.expect("remove targets");
    let after = p.call_counts();
    assert_eq!(delta(&before, &after, "elbv2:RegisterTargets"), 0);
    assert_eq!(delta(&before, &after, "elbv2:DeregisterTargets"), 2, "one call per target group");
    for arn in [st.record.get("target-group/80").unwrap(), st.record.get("target-group/443").unwrap()] {
        let ids: Vec<String> = targets_of(&w, arn).await.into_iter().map(|(i, _)| i).collect();
        assert_eq!(ids, vec![w.instances[2].clone()]);
    }

    // Port change (443 -> 8443, new node port), health check and proxy protocol annotations,
    // source ranges: all in place, same DNS name.
    let mut d = w.spec(&[(80, 30080), (8443, 31443)], &[2]);
    d.options.insert("healthcheck-interval".into(), "30".into());
    d.options.insert("healthcheck-healthy-threshold".into(), "5".into());
    d.options.insert("proxy-protocol".into(), "*".into());
    d.source_ranges = vec!["192.168.0.0/16".parse().unwrap()];
    let old_tg_443 = st.record.get("target-group/443").unwrap().to_string();
    let st2 = p.ensure(&id, &d, Some(&st.record)).await.expect("update");
    assert_eq!(st2.ingress, st.ingress, "the address is kept");
    assert_eq!(st2.record.get("load-balancer"), st.record.get("load-balancer"));
    let lb_arn = st2.record.get("load-balancer").unwrap();
    let ls = listeners_of(&w, lb_arn).await;
    assert_eq!(ls.keys().copied().collect::<Vec<_>>(), vec![80, 8443]);
    for (_, tg_arn) in ls.values() {
        let tg = target_group(&w, tg_arn).await;
        assert_eq!(tg.health_check_interval_seconds(), Some(30));
        assert_eq!(tg.healthy_threshold_count(), Some(5));
        assert_eq!(tg_attributes(&w, tg_arn).await.get("proxy_protocol_v2.enabled").map(String::as_str), Some("true"));
    }
    assert_eq!(target_group(&w, &ls[&8443].1).await.port(), Some(31443));
    let gone = w.elb.describe_target_groups().target_group_arns(&old_tg_443).send().await;
    assert!(gone.is_err(), "the target group of the removed port is deleted");
    let owned = w.owned().await;
    assert_eq!(owned.target_groups.len(), 2, "{owned:?}");
    assert_eq!(owned.load_balancers.len(), 1);
    let sg = st2.record.get("security-group").unwrap();
    let g = w.ec2.describe_security_groups().group_ids(sg).send().await.unwrap();
    let cidrs: BTreeSet<String> = g.security_groups()[0]
        .ip_permissions()
        .iter()
        .flat_map(|p| p.ip_ranges().iter().map(|r| r.cidr_ip().unwrap().to_string()))
        .collect();
    assert_eq!(cidrs, BTreeSet::from(["192.168.0.0/16".to_string()]));
    assert_eq!(p.get(&id, None).await.unwrap().unwrap().spec_hash, Some(d.hash()));

    // Turning proxy protocol off again.
    let mut e = d.clone();
    e.options.remove("proxy-protocol");
    let st3 = p.ensure(&id, &e, Some(&st2.record)).await.expect("update");
    let tg = st3.record.get("target-group/80").unwrap();
    assert_eq!(tg_attributes(&w, tg).await.get("proxy_protocol_v2.enabled").map(String::as_str), Some("false"));

    p.delete(&id, Some(&st3.record)).await.expect("delete");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}

#[tokio::test]
async fn targets_only_updates_touch_only_target_registrations() {
    let w = World::new("targets").await;
    let p = w.provider().await;
    let id = w.id("web");
    let a = w.spec(&[(80, 30080), (443, 30443)], &[0, 1]);
    let st = p.ensure(&id, &a, None).await.expect("ensure");

    // A node joins: per target group one DescribeTargetHealth and one RegisterTargets, plus
    // one DescribeTags for the ownership check the first time, and one DescribeInstances for
    // the new instance's node security group (the same group as the others': no rule call).
    let before = p.call_counts();
    let b = w.spec(&[(80, 30080), (443, 30443)], &[0, 1, 2]);
    p.update_targets(&id, &b, Some(&st.record)).await.expect("update targets");
    let calls = calls_since(&before, &p.call_counts());
    let want = BTreeMap::from([
        ("ec2:DescribeInstances".to_string(), 1),
        ("elbv2:DescribeTags".to_string(), 1),
        ("elbv2:DescribeTargetHealth".to_string(), 2),
        ("elbv2:RegisterTargets".to_string(), 2),
    ]);
    assert_eq!(calls, want);
    for port in ["80", "443"] {
        let arn = st.record.get(&format!("target-group/{port}")).unwrap();
        assert_eq!(targets_of(&w, arn).await.len(), 3, "target group of {port}");
    }

    // A node leaves: ownership is remembered, so reads are one per group, then one deregister each.
    let before = p.call_counts();
    let c = w.spec(&[(80, 30080), (443, 30443)], &[1, 2]);
    p.update_targets(&id, &c, Some(&st.record)).await.expect("update targets");
    let calls = calls_since(&before, &p.call_counts());
    let want =
        BTreeMap::from([("elbv2:DescribeTargetHealth".to_string(), 2), ("elbv2:DeregisterTargets".to_string(), 2)]);
    assert_eq!(calls, want);

    // Already right: reads only.
    let before = p.call_counts();
    p.update_targets(&id, &c, Some(&st.record)).await.expect("update targets");
    assert_eq!(mutations(&before, &p.call_counts()), BTreeMap::new(), "converged targets: no mutating call");

    // A record pointing at another Service's target group changes nothing of theirs.
    let other = w.id("other");
    let other_st = p.ensure(&other, &a, None).await.expect("ensure other");
    let mut forged = st.record.clone();
    forged.set("target-group/80", other_st.record.get("target-group/80").unwrap());
    let err = p.update_targets(&id, &w.spec(&[(80, 30080), (443, 30443)], &[2]), Some(&forged)).await.unwrap_err();
    assert!(matches!(err, cloudlb_provider::ProviderError::Conflict { .. }), "{err:?}");
    let theirs = other_st.record.get("target-group/80").unwrap();
    assert_eq!(targets_of(&w, theirs).await.len(), 2, "the other Service's targets are untouched");

    // Without a record, or with a stale one: a full ensure, which finds everything by name.
    p.update_targets(&id, &b, None).await.expect("falls back to ensure");
    for port in ["80", "443"] {
        let arn = st.record.get(&format!("target-group/{port}")).unwrap();
        assert_eq!(targets_of(&w, arn).await.len(), 3);
    }

    p.delete(&id, Some(&st.record)).await.expect("delete");
    p.delete(&other, Some(&other_st.record)).await.expect("delete other");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}

/// What an ensure killed between CreateTargetGroup and CreateListener leaves when the port
/// changes again before the next ensure: our target group, tagged, in no listener, in no record.
async fn stray_target_group(w: &World, id: &cloudlb_provider::LoadBalancerId) -> String {
    use aws_sdk_elasticloadbalancingv2::types::{ProtocolEnum, Tag};
    use cloudlb_provider_aws::{names, plan::TgProtocol, tags};
    let name = names::target_group(id, 8080, TgProtocol::Tcp, 30090);
    let tag_list: Vec<Tag> = tags::desired(id, tags::ROLE_TARGET_GROUP, &Default::default())
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let made = w
        .elb
        .create_target_group()
        .name(&name)
        .protocol(ProtocolEnum::Tcp)
        .port(30090)
        .vpc_id(&w.vpc)
        .set_tags(Some(tag_list))
        .send()
        .await
        .expect("create the stray target group");
    assert!(made.target_groups()[0].target_group_arn().is_some());
    name
}

#[tokio::test]
async fn delete_with_a_record_also_removes_a_target_group_an_interrupted_ensure_left_unattached() {
    let w = World::new("stray").await;
    let p = w.provider().await;
    let id = w.id("web");
    let st = p.ensure(&id, &w.spec(&[(80, 30080)], &[0]), None).await.expect("ensure");
    stray_target_group(&w, &id).await;
    assert_eq!(w.owned().await.target_groups.len(), 2);
    let before = p.call_counts();
    p.delete(&id, Some(&st.record)).await.expect("delete");
    let calls = calls_since(&before, &p.call_counts());
    assert_eq!(calls.get("tagging:GetResources"), Some(&1), "found by tags in one call: {calls:?}");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
    support::assert_policy_allows(&p.call_counts(), &w.cluster);
}

#[tokio::test]
async fn an_ensure_after_an_interrupted_one_deletes_its_unattached_target_group_and_a_settled_one_does_not_look() {
    let w = World::new("stray-ensure").await;
    let p = w.provider().await;
    let id = w.id("web");
    // The interrupted ensure left a target group and no record (the record is written after it).
    let stray = stray_target_group(&w, &id).await;
    let before = p.call_counts();
    let st = p.ensure(&id, &w.spec(&[(80, 30080)], &[0]), None).await.expect("ensure");
    let calls = calls_since(&before, &p.call_counts());
    assert_eq!(calls.get("tagging:GetResources"), Some(&1), "no record: one look by tags: {calls:?}");
    assert_eq!(calls.get("elbv2:DeleteTargetGroup"), Some(&1), "{calls:?}");
    let left: Vec<String> = w.owned().await.target_groups;
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!left.contains(&stray), "the stray target group is gone: {left:?}");

    // A settled ensure (its record names exactly the wanted groups) does not look.
    let before = p.call_counts();
    p.ensure(&id, &w.spec(&[(80, 30080)], &[0]), Some(&st.record)).await.expect("unchanged");
    let calls = calls_since(&before, &p.call_counts());
    assert_eq!(calls.get("tagging:GetResources"), None, "{calls:?}");
    assert_eq!(mutations(&before, &p.call_counts()), BTreeMap::new());

    // Another object's group, and a group of ours that is in use, are never taken.
    let other = w.id("other");
    let theirs = stray_target_group(&w, &other).await;
    let mut partial = st.record.clone();
    partial.0.remove("target-group/80");
    p.ensure(&id, &w.spec(&[(80, 30080)], &[0]), Some(&partial)).await.expect("record differs: looks again");
    let left = w.owned().await.target_groups;
    assert!(left.contains(&theirs) && left.len() == 2, "{left:?}");
    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert_eq!(w.owned().await.target_groups, vec![theirs]);
}

#[tokio::test]
async fn delete_without_record_and_from_partial_state_leaves_nothing() {
    let w = World::new("cleanup").await;
    let id = w.id("web");
    {
        let p = w.provider().await;
        p.ensure(&id, &w.spec(&[(80, 30080), (81, 30081)], &[0]), None).await.expect("ensure");
    }
    // A fresh provider without the record (a restarted controller that lost the annotation).
    let p = w.provider().await;
    p.delete(&id, None).await.expect("delete without record");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
    p.delete(&id, None).await.expect("a second delete succeeds");

    // Partial state: the load balancer is gone but its target groups and security group remain
    // (an interrupted delete, or an ensure that never attached them).
    let st = p.ensure(&id, &w.spec(&[(80, 30080)], &[0]), None).await.expect("ensure");
    let lb_arn = st.record.get("load-balancer").unwrap();
    for l in w.elb.describe_listeners().load_balancer_arn(lb_arn).send().await.unwrap().listeners() {
        w.elb.delete_listener().listener_arn(l.listener_arn().unwrap()).send().await.unwrap();
    }
    w.elb.delete_load_balancer().load_balancer_arn(lb_arn).send().await.unwrap();
    assert!(!w.owned().await.target_groups.is_empty());
    p.delete(&id, None).await.expect("delete from partial state");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
    assert!(p.get(&id, None).await.unwrap().is_none());
}

#[tokio::test]
async fn a_load_balancer_with_our_name_but_not_our_tags_is_a_conflict_and_untouched() {
    let w = World::new("conflict").await;
    let p = w.provider().await;
    let id = w.id("web");
    let name = names::load_balancer(&id);
    let foreign = w
        .elb
        .create_load_balancer()
        .name(&name)
        .r#type(LoadBalancerTypeEnum::Network)
        .set_subnets(Some(w.public.clone()))
        .send()
        .await
        .unwrap();
    let foreign_arn = foreign.load_balancers()[0].load_balancer_arn().unwrap().to_string();

    let err = p.ensure(&id, &w.spec(&[(80, 30080)], &[0]), None).await.expect_err("conflict");
    assert!(matches!(err, ProviderError::Conflict { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert!(err.to_string().contains(&name), "{err}");

    p.delete(&id, None).await.expect("delete ignores what is not ours");
    assert!(p.get(&id, None).await.unwrap().is_none());
    let lbs = w.elb.describe_load_balancers().names(&name).send().await.unwrap();
    assert_eq!(lbs.load_balancers().len(), 1, "no second load balancer with our name");
    assert_eq!(lbs.load_balancers()[0].load_balancer_arn(), Some(foreign_arn.as_str()));
    assert!(w.elb_tags(&foreign_arn).await.is_empty(), "the foreign load balancer was tagged");
    let listeners = w.elb.describe_listeners().load_balancer_arn(&foreign_arn).send().await.unwrap();
    assert!(listeners.listeners().is_empty(), "the foreign load balancer got listeners");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}

#[tokio::test]
async fn subnet_discovery_by_scheme_and_a_readable_error_when_none_is_tagged() {
    let w = World::new("subnets").await;
    let p = w.provider().await;

    let id = w.id("internal");
    let mut spec = w.spec(&[(80, 30080)], &[0]);
    spec.options.insert("internal".into(), "true".into());
    let st = p.ensure(&id, &spec, None).await.expect("internal");
    let lb = w.load_balancer(&names::load_balancer(&id)).await.unwrap();
    assert_eq!(lb.scheme(), Some(&LoadBalancerSchemeEnum::Internal));
    let mut subnets: Vec<String> = lb.availability_zones().iter().map(|z| z.subnet_id().unwrap().to_string()).collect();
    subnets.sort();
    let mut want = w.internal.clone();
    want.sort();
    assert_eq!(subnets, want);

    // The scheme cannot change in place: refused, with the way forward, nothing torn down.
    let mut public = spec.clone();
    public.options.insert("internal".into(), "false".into());
    let err = p.ensure(&id, &public, Some(&st.record)).await.expect_err("scheme change");
    assert!(matches!(err, ProviderError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("re-create the Service"), "{err}");
    assert!(w.load_balancer(&names::load_balancer(&id)).await.is_some());
    p.delete(&id, Some(&st.record)).await.unwrap();

    // Another cluster name: no subnet carries its tag.
    let mut other = w.id("lost");
    other.cluster = "nobody".into();
    let err = p.ensure(&other, &w.spec(&[(80, 30080)], &[0]), None).await.expect_err("no subnets");
    assert!(matches!(err, ProviderError::Invalid { .. }), "{err:?}");
    let m = err.to_string();
    assert!(m.contains("kubernetes.io/role/elb") && m.contains("kubernetes.io/cluster/nobody"), "{m}");
    assert!(p.get(&other, None).await.unwrap().is_none());
    let sgs = w.ec2.describe_security_groups().send().await.unwrap();
    assert!(
        !sgs.security_groups().iter().any(|g| g.group_name() == Some(names::security_group(&other).as_str())),
        "nothing is made when subnets are missing"
    );

    // Explicit subnets from the annotation win.
    let id = w.id("explicit");
    let mut spec = w.spec(&[(80, 30080)], &[0]);
    spec.options.insert("subnets".into(), w.public[0].clone());
    let st = p.ensure(&id, &spec, None).await.expect("explicit subnets");
    let lb = w.load_balancer(&names::load_balancer(&id)).await.unwrap();
    assert_eq!(lb.availability_zones().len(), 1);
    assert_eq!(lb.availability_zones()[0].subnet_id(), Some(w.public[0].as_str()));
    p.delete(&id, Some(&st.record)).await.unwrap();
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}

#[tokio::test]
async fn tls_listener_target_group_attributes_and_eips() {
    let w = World::new("tls").await;
    let p = w.provider().await;
    let id = w.id("web");
    let mut eips = Vec::new();
    for _ in 0..w.public.len() {
        let a = w.ec2.allocate_address().domain(aws_sdk_ec2::types::DomainType::Vpc).send().await.unwrap();
        eips.push(a.allocation_id().unwrap().to_string());
    }
    let mut spec = w.spec(&[(80, 30080), (443, 30443)], &[0]);
    let cert = "arn:aws:iam::123456789012:server-certificate/test";
    spec.options.insert("ssl-cert".into(), cert.into());
    spec.options.insert("ssl-ports".into(), "443".into());
    spec.options.insert("target-group-attributes".into(), "deregistration_delay.timeout_seconds=10".into());
    spec.options.insert("eip-allocations".into(), eips.join(","));
    spec.options.insert("attributes".into(), "load_balancing.cross_zone.enabled=true".into());
    assert!(p.validate(&spec).is_empty(), "{:?}", p.validate(&spec));
    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    let lb_arn = st.record.get("load-balancer").unwrap();
    let r = w.elb.describe_listeners().load_balancer_arn(lb_arn).send().await.unwrap();
    let tls = r.listeners().iter().find(|l| l.port() == Some(443)).unwrap();
    assert_eq!(tls.protocol().unwrap().as_str(), "TLS");
    assert_eq!(tls.certificates()[0].certificate_arn(), Some(cert));
    let plain = r.listeners().iter().find(|l| l.port() == Some(80)).unwrap();
    assert_eq!(plain.protocol().unwrap().as_str(), "TCP");
    let tg = st.record.get("target-group/443").unwrap();
    assert_eq!(tg_attributes(&w, tg).await.get("deregistration_delay.timeout_seconds").map(String::as_str), Some("10"));
    let attrs = w.elb.describe_load_balancer_attributes().load_balancer_arn(lb_arn).send().await.unwrap();
    assert!(
        attrs
            .attributes()
            .iter()
            .any(|a| a.key() == Some("load_balancing.cross_zone.enabled") && a.value() == Some("true"))
    );
    // Idempotent with all of it.
    let before = p.call_counts();
    p.ensure(&id, &spec, Some(&st.record)).await.expect("again");
    assert_eq!(mutations(&before, &p.call_counts()), BTreeMap::new());
    p.delete(&id, Some(&st.record)).await.unwrap();
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}

#[tokio::test]
async fn validate_reports_bad_annotations_without_io() {
    let w = World::new("validate").await;
    let p = w.provider().await;
    let mut spec = w.spec(&[(80, 30080)], &[0]);
    spec.options.insert("healthcheck-interval".into(), "soon".into());
    spec.options.insert("scheme".into(), "public".into());
    let before = p.call_counts();
    let problems = p.validate(&spec);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|m| m.contains("aws-load-balancer-healthcheck-interval")
        && m.contains("\"soon\"")
        && m.contains("5 to 300")));
    assert_eq!(p.call_counts(), before, "validate made a call");
    let err = p.ensure(&w.id("bad"), &spec, None).await.expect_err("invalid spec");
    assert!(matches!(err, ProviderError::Invalid { .. }));
    assert!(w.owned().await.is_empty());
    let _ = Scheme::Internal;
}

/// Every response that throttled a call is counted under the call's name, including the attempts
/// the SDK retried by itself (the call then succeeds, and no error shows them), and exported on
/// the provider's metrics with the calls; so is the time calls waited for the client-side limit.
#[tokio::test]
async fn throttled_responses_and_limiter_waits_are_counted_per_action() {
    let w = World::new("throttles").await;
    // Only the first sight of each action is throttled: the pseudo-random faults never fire.
    let proxy = FaultProxy::start(w.moto.addr, usize::MAX).await;
    proxy.lose_responses.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut config = w.config();
    config.endpoint_url = Some(proxy.url());
    config.max_attempts = 2; // the SDK retries each throttled call once, and succeeds
    // ELBv2 Describe* calls one after another must wait for their token (a quarter second).
    config.rate_limits.describe = cloudlb_provider_aws::Rate::new(4.0, 1.0);
    support::test_env();
    let p = AwsProvider::new(config).await.unwrap();
    let id = w.id("web");
    let st = p.ensure(&id, &w.spec(&[(80, 30080)], &[0]), None).await.expect("the SDK's retries absorb the throttles");
    assert!(p.get(&id, Some(&st.record)).await.expect("get").is_some());

    let mut injected: BTreeMap<String, u64> = BTreeMap::new();
    for call in proxy.throttled.lock().unwrap().iter() {
        *injected.entry(call.clone()).or_default() += 1;
    }
    assert!(
        injected.contains_key("elbv2:CreateLoadBalancer") && injected.contains_key("ec2:DescribeSubnets"),
        "{injected:?}"
    );
    assert!(!injected.contains_key("?"), "a call the proxy could not name was throttled: {injected:?}");
    assert_eq!(p.throttle_counts(), injected, "each throttled response, under its call's name");

    let metrics = p.metrics();
    let value = |name: &str, call: &str| {
        metrics.iter().find(|m| m.name == name && m.labels == [("call", call.to_string())]).map(|m| m.value)
    };
    assert_eq!(value("cloud_api_throttles", "elbv2:CreateLoadBalancer"), Some(1.0));
    assert_eq!(value("cloud_api_calls", "elbv2:CreateLoadBalancer"), Some(1.0), "a call, however many attempts");
    let waits = p
        .metrics()
        .into_iter()
        .filter(|m| m.name == "cloud_api_limiter_wait_seconds" && m.labels[0].1.starts_with("elbv2:Describe"))
        .map(|m| m.value)
        .sum::<f64>();
    assert!(waits > 0.0, "Describe* calls in a row waited for the limiter: {metrics:?}");
    assert!(
        metrics.iter().all(|m| !m.name.starts_with("cloud_api_limiter") || !m.labels[0].1.starts_with("ec2:")),
        "EC2 calls have a bucket of their own, far from empty: {metrics:?}"
    );
}

/// Throttling and 503s (some after moto applied the change): retrying like the controller does
/// converges, without duplicates, and delete leaves nothing.
#[tokio::test]
async fn converges_through_throttling_and_lost_responses() {
    let w = World::new("faults").await;
    let proxy = FaultProxy::start(w.moto.addr, 12).await;
    let mut config = w.config();
    config.endpoint_url = Some(proxy.url());
    config.max_attempts = 1; // let every fault reach the provider
    support::test_env();
    let p = AwsProvider::new(config).await.unwrap();
    let id = w.id("web");
    let spec = w.spec(&[(80, 30080), (443, 30443)], &[0, 1]);

    let mut failures = Vec::new();
    let mut status = None;
    for _ in 0..60 {
        match p.ensure(&id, &spec, None).await {
            Ok(st) => {
                status = Some(st);
                break;
            }
            Err(e) => {
                assert!(
                    matches!(e.class(), ErrorClass::Throttled | ErrorClass::Retryable | ErrorClass::Provisioning),
                    "{e:?}"
                );
                failures.push(e.to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let st = status.unwrap_or_else(|| panic!("ensure never converged: {failures:#?}"));
    assert!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(!failures.is_empty(), "no fault reached the provider");
    assert!(failures.iter().any(|f| f.contains("throttled")), "{failures:#?}");
    let lost = proxy.lost.lock().unwrap().clone();
    for action in
        ["CreateLoadBalancer", "CreateTargetGroup", "CreateListener", "CreateSecurityGroup", "RegisterTargets"]
    {
        assert!(lost.iter().any(|a| a == action), "{action} never lost its response: {lost:?}");
    }

    let owned = w.owned().await;
    assert_eq!(owned.load_balancers, vec![names::load_balancer(&id)], "exactly one load balancer: {owned:?}");
    assert_eq!(owned.target_groups.len(), 2, "{owned:?}");
    assert_eq!(owned.security_groups.len(), 1, "{owned:?}");
    let lbs = w.elb.describe_load_balancers().send().await.unwrap();
    assert_eq!(lbs.load_balancers().len(), 1, "no duplicate load balancer with our name");
    for port in [80, 443] {
        let tg = st.record.get(&format!("target-group/{port}")).unwrap();
        assert_eq!(targets_of(&w, tg).await.len(), 2);
    }

    let mut deleted = false;
    for _ in 0..60 {
        match p.delete(&id, Some(&st.record)).await {
            Ok(()) => {
                deleted = true;
                break;
            }
            Err(e) => assert!(matches!(e.class(), ErrorClass::Throttled | ErrorClass::Retryable), "{e:?}"),
        }
    }
    assert!(deleted, "delete never succeeded");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}

#[tokio::test]
async fn the_record_is_a_hint_never_an_authority() {
    let w = World::new("record").await;
    let p = w.provider().await;
    let (a, b) = (w.id("a"), w.id("b"));
    let st_a = p.ensure(&a, &w.spec(&[(80, 30080)], &[0]), None).await.expect("ensure a");
    let st_b = p.ensure(&b, &w.spec(&[(80, 30081)], &[0]), None).await.expect("ensure b");
    let b_lb = st_b.record.get("load-balancer").expect("b's load balancer").to_string();
    let b_listeners = listeners_of(&w, &b_lb).await;
    assert_eq!(b_listeners.len(), 1);
    let owned_b = |o: &support::Owned| {
        o.load_balancers == [names::load_balancer(&b)] && o.target_groups.len() == 1 && o.security_groups.len() == 1
    };

    // A's record edited to name everything of B's (listeners included): deleting A deletes all
    // of A's, found by name and tags, and nothing of B's.
    let mut forged = st_b.record.clone();
    for (k, v) in &st_a.record.0 {
        if !forged.0.contains_key(k) {
            forged.set(k.clone(), v.clone());
        }
    }
    p.delete(&a, Some(&forged)).await.expect("delete a with b's record");
    assert!(p.get(&a, None).await.unwrap().is_none(), "a's load balancer is gone");
    let owned = w.owned().await;
    assert!(owned_b(&owned), "only b's resources are left, all of them: {owned:?}");
    assert_eq!(listeners_of(&w, &b_lb).await, b_listeners, "b's listener survives");

    // A malformed record (garbage, wrong kinds of ARN, B's listener) is as if absent.
    p.ensure(&a, &w.spec(&[(80, 30080)], &[0]), None).await.expect("ensure a again");
    let b_listener = b_listeners.values().next().unwrap().0.clone();
    let mut garbage = cloudlb_provider::Record::default();
    garbage.set("load-balancer", "\"}{ not an arn");
    garbage.set("security-group", "sg-../../x");
    garbage.set("target-group/80", b_lb.clone());
    garbage.set("listener/80", b_listener);
    p.delete(&a, Some(&garbage)).await.expect("a malformed record never blocks a delete");
    assert!(p.get(&a, None).await.unwrap().is_none());
    let owned = w.owned().await;
    assert!(owned_b(&owned), "{owned:?}");
    assert_eq!(listeners_of(&w, &b_lb).await, b_listeners);

    // The same object under another --cluster-name: a Conflict naming the flag, never a second
    // load balancer, and nothing deleted.
    let renamed = cloudlb_provider::LoadBalancerId { cluster: "record-renamed".into(), ..b.clone() };
    let err = p.ensure(&renamed, &w.spec(&[(80, 30081)], &[0]), Some(&st_b.record)).await.expect_err("conflict");
    assert!(matches!(err, ProviderError::Conflict { .. }) && err.to_string().contains("--cluster-name"), "{err}");
    let err = p.delete(&renamed, Some(&st_b.record)).await.expect_err("conflict on delete");
    assert!(matches!(err, ProviderError::Conflict { .. }), "{err}");
    assert!(w.load_balancer(&names::load_balancer(&renamed)).await.is_none(), "no second load balancer");
    assert!(owned_b(&w.owned().await));

    p.delete(&b, Some(&st_b.record)).await.expect("delete b");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}

#[tokio::test]
async fn more_security_group_rules_than_the_quota_is_refused_before_any_call() {
    let w = World::new("quota").await;
    let p = w.provider().await;
    let id = w.id("web");
    let mut spec = w.spec(&[(80, 30080), (443, 30443)], &[0]);
    // 31 ranges x 2 ports = 62 IPv4 rules, over AWS's default 60.
    spec.source_ranges = (0..31).map(|i| format!("10.0.{i}.0/24").parse().expect("cidr")).collect();
    let problems = p.validate(&spec);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("62 inbound IPv4 rules (31 source ranges x 2 ports"), "{}", problems[0]);
    assert!(problems[0].contains("quota of 60") && problems[0].contains("--aws-security-group-rules-quota"));
    let before = p.call_counts();
    let e = p.ensure(&id, &spec, None).await.expect_err("refused");
    assert_eq!(e.class(), cloudlb_provider::ErrorClass::Permanent, "{e}");
    assert!(calls_since(&before, &p.call_counts()).is_empty(), "no call at all: {:?}", p.call_counts());

    // An account whose quota was raised says so, and the spec passes. moto keeps AWS's default:
    // what the check spares is exactly this, an ensure failing half-way with the group made.
    let mut config = w.config();
    config.security_group_rules_quota = 100;
    let raised = cloudlb_provider_aws::AwsProvider::new(config).await.expect("provider");
    assert!(raised.validate(&spec).is_empty());
    let e = raised.ensure(&id, &spec, None).await.expect_err("moto enforces 60");
    assert!(e.to_string().contains("RulesPerSecurityGroupLimitExceeded"), "{e}");
    raised.delete(&id, None).await.expect("delete");
    assert!(w.owned().await.is_empty(), "{:?}", w.owned().await);
}

async fn set_running(w: &World, i: usize, running: bool) {
    let id = w.instances[i].clone();
    if running {
        w.ec2.start_instances().instance_ids(id).send().await.expect("start instance");
    } else {
        w.ec2.stop_instances().instance_ids(id).send().await.expect("stop instance");
    }
}

/// Target health from an ensure (what it read anyway) and from `observe` (the record's groups),
/// with AWS's reasons; moto reports a stopped instance `unused` / `Target.InvalidState`.
#[tokio::test]
async fn target_health_follows_the_instances_with_aws_reasons() {
    use cloudlb_provider::{HealthVerdict, LbState};
    let w = World::new("health").await;
    let p = w.provider().await;
    let id = w.id("web");
    let st = p.ensure(&id, &w.spec(&[(80, 30080), (443, 30443)], &[0, 1]), None).await.expect("ensure");
    let fresh = st.targets.expect("an ensure reports the health it read");
    let names: BTreeSet<&str> = fresh.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["port 443", "port 80"]));
    assert_eq!(fresh.verdict(), HealthVerdict::Checking, "targets registered a moment ago are pending: {fresh:?}");

    let before = p.call_counts();
    let seen = p.observe(&id, Some(&st.record)).await.expect("observe").expect("ours");
    assert_eq!(seen.state, LbState::Active);
    let health = seen.targets.expect("health");
    assert_eq!((health.verdict(), health.healthy(), health.counted()), (HealthVerdict::AllHealthy, 4, 4));
    let first = calls_since(&before, &p.call_counts());
    assert_eq!(first.get("elbv2:DescribeTargetHealth"), Some(&2), "{first:?}");
    assert_eq!(first.get("elbv2:DescribeLoadBalancers"), Some(&1), "{first:?}");
    // Ownership is checked once per process; afterwards a look is 1 + 1 per target group.
    let before = p.call_counts();
    p.observe(&id, Some(&st.record)).await.expect("observe again");
    let again = calls_since(&before, &p.call_counts());
    assert_eq!(
        again,
        BTreeMap::from([("elbv2:DescribeLoadBalancers".to_string(), 1), ("elbv2:DescribeTargetHealth".to_string(), 2)])
    );

    set_running(&w, 1, false).await;
    let health = p.observe(&id, Some(&st.record)).await.unwrap().unwrap().targets.unwrap();
    assert_eq!(health.verdict(), HealthVerdict::SomeUnhealthy);
    let m = health.message();
    assert!(m.starts_with("2 of 4 targets healthy") && m.contains(&w.instances[1]), "{m}");
    assert!(m.contains("Target.InvalidState") && m.contains("stopped"), "AWS's reason and words: {m}");

    set_running(&w, 0, false).await;
    let health = p.observe(&id, Some(&st.record)).await.unwrap().unwrap().targets.unwrap();
    assert_eq!(health.verdict(), HealthVerdict::NoHealthyTargets, "{health:?}");
    assert!(health.message().contains("no healthy target on port 443, port 80"), "{}", health.message());

    set_running(&w, 0, true).await;
    set_running(&w, 1, true).await;
    let health = p.observe(&id, Some(&st.record)).await.unwrap().unwrap().targets.unwrap();
    assert_eq!(health.verdict(), HealthVerdict::AllHealthy);

    // A record pointing at another object's load balancer reads as "cannot tell".
    let other = w.id("other");
    let theirs = p.ensure(&other, &w.spec(&[(81, 30081)], &[2]), None).await.expect("ensure other");
    assert_eq!(p.observe(&id, Some(&theirs.record)).await.expect("observe forged"), None);
    assert_eq!(p.observe(&id, None).await.expect("no record"), None);
    p.delete(&id, Some(&st.record)).await.unwrap();
    p.delete(&other, Some(&theirs.record)).await.unwrap();
    support::assert_policy_allows(&p.call_counts(), &w.cluster);
}

/// A provider talking to moto through a proxy that injects no fault (only its forced load
/// balancer state, when set).
async fn behind_a_quiet_proxy(w: &World) -> (FaultProxy, AwsProvider) {
    let proxy = FaultProxy::start(w.moto.addr, usize::MAX).await;
    proxy.enabled.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut config = w.config();
    config.endpoint_url = Some(proxy.url());
    support::test_env();
    (proxy, AwsProvider::new(config).await.expect("provider"))
}

/// A load balancer AWS is still provisioning: the ensure returns its DNS name at once (flagged
/// `provisioning`) instead of an error, and `observe` follows it with one describe per look.
#[tokio::test]
async fn a_provisioning_load_balancer_is_published_at_once_and_watched_with_one_describe() {
    use cloudlb_provider::LbState;
    let w = World::new("provisioning").await;
    let (proxy, p) = behind_a_quiet_proxy(&w).await;
    *proxy.lb_state.lock().unwrap() = Some(("provisioning".into(), None));
    let id = w.id("web");
    let st = p.ensure(&id, &w.spec(&[(80, 30080)], &[0]), None).await.expect("provisioning is not an error");
    assert!(st.provisioning.is_some(), "{st:?}");
    assert!(matches!(st.ingress.as_slice(), [IngressPoint::Hostname(h)] if !h.is_empty()), "{st:?}");

    p.observe(&id, Some(&st.record)).await.expect("first look (ownership)");
    let before = p.call_counts();
    let seen = p.observe(&id, Some(&st.record)).await.expect("observe").expect("ours");
    assert_eq!(seen, cloudlb_provider::Observed { state: LbState::Provisioning, targets: None });
    assert_eq!(
        calls_since(&before, &p.call_counts()),
        BTreeMap::from([("elbv2:DescribeLoadBalancers".to_string(), 1)]),
        "one describe per look while provisioning"
    );

    *proxy.lb_state.lock().unwrap() = None;
    let seen = p.observe(&id, Some(&st.record)).await.unwrap().unwrap();
    assert_eq!(seen.state, LbState::Active);
    assert!(seen.targets.is_some());
    p.delete(&id, Some(&st.record)).await.unwrap();
}

/// AWS gave up on a load balancer: a permanent error saying what to do, no retry loop and no
/// change; with `replace-failed-load-balancer` it is deleted and made again (its target groups
/// and security group kept).
#[tokio::test]
async fn a_failed_load_balancer_is_a_permanent_error_and_replaced_only_when_asked() {
    use cloudlb_provider::LbState;
    let w = World::new("failed").await;
    let (proxy, p) = behind_a_quiet_proxy(&w).await;
    let id = w.id("web");
    let spec = w.spec(&[(80, 30080)], &[0]);
    let st = p.ensure(&id, &spec, None).await.expect("ensure");

    *proxy.lb_state.lock().unwrap() = Some(("failed".into(), Some("InternalFailure".into())));
    let before = p.call_counts();
    let err = p.ensure(&id, &spec, Some(&st.record)).await.expect_err("failed");
    assert!(matches!(err, ProviderError::Failed { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let text = err.to_string();
    assert!(text.contains("InternalFailure") && text.contains("replace-failed-load-balancer"), "{text}");
    assert_eq!(mutations(&before, &p.call_counts()), BTreeMap::new(), "nothing changed");
    let seen = p.observe(&id, Some(&st.record)).await.unwrap().unwrap();
    assert!(matches!(seen.state, LbState::Failed { ref message } if message.contains("InternalFailure")), "{seen:?}");

    let mut replace = spec.clone();
    replace.options.insert("replace-failed-load-balancer".into(), "true".into());
    let before = p.call_counts();
    let err = p.ensure(&id, &replace, Some(&st.record)).await.expect_err("replacing takes a pass");
    assert_eq!(err.class(), ErrorClass::Provisioning, "{err:?}");
    assert_eq!(mutations(&before, &p.call_counts()), BTreeMap::from([("elbv2:DeleteLoadBalancer".to_string(), 1)]));
    *proxy.lb_state.lock().unwrap() = None;
    let new = p.ensure(&id, &replace, None).await.expect("made again");
    assert_ne!(new.record.get("load-balancer"), st.record.get("load-balancer"));
    assert_eq!(new.record.get("target-group/80"), st.record.get("target-group/80"), "the target group is kept");
    assert_eq!(w.owned().await.load_balancers.len(), 1);

    let mut bad = spec.clone();
    bad.options.insert("replace-failed-load-balancer".into(), "yes".into());
    let problems = p.validate(&bad);
    assert!(problems.iter().any(|m| m.contains("replace-failed-load-balancer")), "{problems:?}");
    p.delete(&id, Some(&new.record)).await.unwrap();
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
    support::assert_policy_allows(&p.call_counts(), &w.cluster);
}

async fn lb_attributes(w: &World, arn: &str) -> BTreeMap<String, String> {
    let r = w.elb.describe_load_balancer_attributes().load_balancer_arn(arn).send().await.unwrap();
    r.attributes().iter().map(|a| (a.key().unwrap().to_string(), a.value().unwrap_or_default().to_string())).collect()
}

/// The inbound CIDRs of a security group, as moto reports them.
async fn sg_cidrs(w: &World, sg: &str) -> BTreeSet<String> {
    let r = w.ec2.describe_security_groups().group_ids(sg).send().await.unwrap();
    r.security_groups()[0]
        .ip_permissions()
        .iter()
        .flat_map(|p| {
            let v4 = p.ip_ranges().iter().filter_map(|r| r.cidr_ip().map(String::from));
            let v6 = p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6().map(String::from));
            v4.chain(v6).collect::<Vec<_>>()
        })
        .collect()
}

/// Annotations carried over from the AWS controllers: `cross-zone-load-balancing-enabled` and
/// `ip-address-type` are set at create, changed in place (same load balancer, one call each), and
/// a bad value, or a cross-zone setting that disagrees with `attributes`, is refused before any
/// call. A name annotation is a warning saying why, never a problem.
#[tokio::test]
async fn cross_zone_and_ip_address_type_are_set_at_create_and_changed_in_place() {
    let w = World::new("xzone").await;
    let p = w.provider().await;
    let id = w.id("web");
    let mut spec = w.spec(&[(80, 30080)], &[0]);
    spec.options.insert("cross-zone-load-balancing-enabled".into(), "true".into());
    spec.options.insert("ip-address-type".into(), "dualstack".into());
    spec.options.insert("target-node-labels".into(), "pool=edge".into());
    assert!(p.validate(&spec).is_empty(), "{:?}", p.validate(&spec));
    assert!(p.warnings(&spec).is_empty(), "target-node-labels is the controller's: {:?}", p.warnings(&spec));

    let st = p.ensure(&id, &spec, None).await.expect("ensure");
    let lb_arn = st.record.get("load-balancer").expect("recorded").to_string();
    let sg = st.record.get("security-group").expect("recorded").to_string();
    let lb = w.load_balancer(&names::load_balancer(&id)).await.expect("exists");
    assert_eq!(lb.ip_address_type().map(|t| t.as_str()), Some("dualstack"));
    assert_eq!(
        lb_attributes(&w, &lb_arn).await.get("load_balancing.cross_zone.enabled").map(String::as_str),
        Some("true")
    );
    assert_eq!(sg_cidrs(&w, &sg).await, BTreeSet::from(["0.0.0.0/0".to_string(), "::/0".to_string()]));

    let before = p.call_counts();
    p.ensure(&id, &spec, Some(&st.record)).await.expect("unchanged");
    assert_eq!(mutations(&before, &p.call_counts()), BTreeMap::new(), "an unchanged ensure changes nothing");

    // Both changed: in place, one call each (+ the rule ::/0 revoked, + the spec-hash tag).
    spec.options.insert("cross-zone-load-balancing-enabled".into(), "false".into());
    spec.options.insert("ip-address-type".into(), "ipv4".into());
    let before = p.call_counts();
    let st = p.ensure(&id, &spec, Some(&st.record)).await.expect("changed in place");
    assert_eq!(
        mutations(&before, &p.call_counts()),
        BTreeMap::from([
            ("ec2:RevokeSecurityGroupIngress".to_string(), 1),
            ("elbv2:AddTags".to_string(), 1),
            ("elbv2:ModifyLoadBalancerAttributes".to_string(), 1),
            ("elbv2:SetIpAddressType".to_string(), 1),
        ])
    );
    assert_eq!(st.record.get("load-balancer"), Some(lb_arn.as_str()), "the same load balancer");
    let lb = w.load_balancer(&names::load_balancer(&id)).await.expect("exists");
    assert_eq!(lb.ip_address_type().map(|t| t.as_str()), Some("ipv4"));
    assert_eq!(
        lb_attributes(&w, &lb_arn).await.get("load_balancing.cross_zone.enabled").map(String::as_str),
        Some("false")
    );
    assert_eq!(sg_cidrs(&w, &sg).await, BTreeSet::from(["0.0.0.0/0".to_string()]));

    // Bad values: named with what is accepted, refused before any call; the load balancer stays.
    for (options, wanted) in [
        (
            vec![("ip-address-type", "ipv6")],
            vec!["aws-load-balancer-ip-address-type", "\"ipv6\"", "\"ipv4\", \"dualstack\""],
        ),
        (
            vec![("cross-zone-load-balancing-enabled", "yes")],
            vec!["cross-zone-load-balancing-enabled", "\"yes\"", "\"true\" or \"false\""],
        ),
        (
            vec![
                ("cross-zone-load-balancing-enabled", "true"),
                ("attributes", "load_balancing.cross_zone.enabled=false"),
            ],
            vec!["aws-load-balancer-cross-zone-load-balancing-enabled", "aws-load-balancer-attributes", "disagree"],
        ),
    ] {
        let mut bad = spec.clone();
        for (k, v) in options {
            bad.options.insert(k.into(), v.into());
        }
        let problems = p.validate(&bad);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(wanted.iter().all(|w| problems[0].contains(w)), "{wanted:?} in {}", problems[0]);
        let before = p.call_counts();
        let e = p.ensure(&id, &bad, Some(&st.record)).await.expect_err("refused");
        assert!(matches!(e, ProviderError::Invalid { .. }), "{e}");
        assert!(
            calls_since(&before, &p.call_counts()).is_empty(),
            "no call at all: {:?}",
            calls_since(&before, &p.call_counts())
        );
    }
    assert!(w.load_balancer(&names::load_balancer(&id)).await.is_some(), "still there after the refusals");

    // A name annotation is ignored with the reason (a warning), and changes nothing.
    let mut named = spec.clone();
    named.options.insert("name".into(), "my-nlb".into());
    assert!(p.validate(&named).is_empty());
    let warnings = p.warnings(&named);
    assert!(
        warnings.len() == 1 && warnings[0].contains("aws-load-balancer-name") && warnings[0].contains("cannot rename"),
        "{warnings:?}"
    );

    support::assert_policy_allows(&p.call_counts(), &w.cluster);
    p.delete(&id, Some(&st.record)).await.expect("delete");
    assert!(w.owned().await.is_empty(), "left behind: {:?}", w.owned().await);
}
