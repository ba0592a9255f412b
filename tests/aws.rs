//! The aws provider end to end: the real `cloudlb` binary + the sandbox Kubernetes API +
//! `moto_server`; what the controller made is read back through the AWS API.

#[path = "support/aws_env.rs"]
mod aws_env;
#[path = "../providers/aws/tests/support/mod.rs"]
mod aws_support;
mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[tokio::test]
async fn service_gets_an_nlb_hostname_converges_and_leaves_nothing() {
    aws_support::test_env();
    let world = aws_support::World::new("test").await;
    let c = Cluster::start().await;
    aws_env::add_nodes(&c, &world).await;
    let args = aws_env::args(&world);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ctl = Controller::start_full(&c, &args, "info,cloudlb=debug", &aws_env::ENVS).await;
    c.add_service("web", &[(80, "TCP"), (443, "TCP")], json!({})).await;
    let host = c.wait_address("web").await;
    // Cloud API calls are on /metrics, by action.
    assert_eq!(ctl.metric("cloudlb_cloud_api_calls_total", &[("call", "elbv2:CreateLoadBalancer")]).await, 1.0);
    assert!(ctl.metric("cloudlb_cloud_api_calls_total", &[("call", "elbv2:DescribeLoadBalancers")]).await >= 1.0);
    let lb = world.elb.describe_load_balancers().send().await.expect("describe").load_balancers().to_vec();
    assert_eq!(lb.len(), 1, "one NLB");
    assert_eq!(lb[0].dns_name(), Some(host.as_str()), "status shows the NLB's DNS name");
    let svc = c.get("web").await;
    let ingress = &svc.status.as_ref().unwrap().load_balancer.as_ref().unwrap().ingress.as_ref().unwrap()[0];
    assert_eq!(ingress.hostname.as_deref(), Some(host.as_str()));
    assert_eq!(ingress.ip, None);

    // Targets: every instance on the node port of each port.
    let tgs = world.elb.describe_target_groups().send().await.expect("tgs").target_groups().to_vec();
    assert_eq!(tgs.len(), 2, "one target group per port");
    let node_ports: Vec<i32> =
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap().iter().filter_map(|p| p.node_port).collect();
    for tg in &tgs {
        assert!(node_ports.contains(&tg.port().unwrap_or_default()), "target group on a node port");
        let health = world
            .elb
            .describe_target_health()
            .target_group_arn(tg.target_group_arn().unwrap())
            .send()
            .await
            .expect("health");
        let mut ids: Vec<String> =
            health.target_health_descriptions().iter().filter_map(|d| d.target()?.id().map(String::from)).collect();
        ids.sort();
        assert_eq!(ids, world.instances, "all instances registered");
    }

    // A node without an instance id is reported, not silently dropped.
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-x"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.99"}]}
    }))
    .unwrap();
    c.nodes().create(&Default::default(), &node).await.expect("node-x");
    let svc =
        c.wait_service("web", "warning about node-x", |s| condition(s).is_some_and(|c| c.2.contains("node-x"))).await;
    assert_eq!(condition(&svc).unwrap().0, "True", "still ready");
    c.wait_event("web", "LoadBalancerWarning").await;

    // A port change converges in place: same DNS name.
    c.patch_service("web", json!({"spec": {"ports": [{"name": "p80-tcp", "port": 80, "protocol": "TCP"}, {"name": "p8443-tcp", "port": 8443, "protocol": "TCP"}]}}))
        .await;
    c.wait_service("web", "8443 in status", |s| status_ports(s).contains(&8443)).await;
    assert_eq!(external_ip(&c.get("web").await), Some(host.clone()));
    let listeners = world
        .elb
        .describe_listeners()
        .load_balancer_arn(lb[0].load_balancer_arn().unwrap())
        .send()
        .await
        .expect("listeners");
    let mut ports: Vec<i32> = listeners.listeners().iter().filter_map(|l| l.port()).collect();
    ports.sort();
    assert_eq!(ports, vec![80, 8443]);

    // An unknown key under the provider's prefix (a typo) is a warning on a working load
    // balancer, not an error that blocks it.
    let ensures = ctl.calls("ensure").await;
    c.patch_service("web", json!({"metadata": {"annotations": {"aws.cloudlb.io/helthcheck-path": "/healthz"}}})).await;
    let svc = c
        .wait_service("web", "warning about the unknown key", |s| {
            condition(s).is_some_and(|c| c.2.contains("helthcheck-path is not known") && c.2.contains("(ignored)"))
        })
        .await;
    assert_eq!(condition(&svc).unwrap().0, "True", "an unknown key does not make the load balancer not ready");
    assert_eq!(external_ip(&svc), Some(host.clone()));
    assert!(ctl.calls("ensure").await > ensures, "the annotation is part of the spec: the load balancer converges");

    // Delete: nothing carrying our tags is left.
    c.services().delete("web", &Default::default()).await.expect("delete");
    c.wait_gone("web").await;
    let owned = world.owned().await;
    assert!(
        owned.is_empty(),
        "leaked: {:?} {:?} {:?}",
        owned.load_balancers,
        owned.target_groups,
        owned.security_groups
    );
    ctl.settle(Duration::from_millis(200)).await;
    ctl.stop().await;
}

/// `cloudlb.io/TargetsHealthy` as (status, reason, message).
fn targets_healthy(svc: &k8s_openapi::api::core::v1::Service) -> Option<(String, String, String)> {
    let c = svc.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "cloudlb.io/TargetsHealthy")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The targets' health reaches the Service as a condition of its own, with an event on each
/// change of verdict: a stopped instance (moto: `Target.InvalidState`) makes it degraded, all
/// stopped makes it False, and it recovers; `Ready` stays True throughout. Then drift below the
/// load balancer is repaired.
#[tokio::test]
async fn target_health_is_a_condition_with_an_event_on_each_change() {
    aws_support::test_env();
    let world = aws_support::World::new("test").await;
    let c = Cluster::start().await;
    aws_env::add_nodes(&c, &world).await;
    let mut args = aws_env::args(&world);
    // A healthy load balancer is looked at with its drift check: often here.
    args.extend(["--target-health-recheck", "1s", "--resync-period", "2s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ctl = Controller::start_full(&c, &args, "info,cloudlb=debug", &aws_env::ENVS).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    c.wait_address("web").await;
    let svc = c
        .wait_service("web", "all targets healthy", |s| {
            targets_healthy(s).is_some_and(|(st, reason, _)| st == "True" && reason == "AllTargetsHealthy")
        })
        .await;
    assert_eq!(condition(&svc).unwrap().0, "True");
    let events = c.events("web").await;
    assert!(!events.iter().any(|e| e.0.starts_with("Targets")), "a new, healthy load balancer is quiet: {events:?}");

    let stop = |i: usize| world.ec2.stop_instances().instance_ids(world.instances[i].clone()).send();
    stop(0).await.expect("stop");
    let stopped = world.instances[0].clone();
    let svc = c
        .wait_service("web", "one target unhealthy", move |s| {
            targets_healthy(s).is_some_and(|(st, reason, m)| {
                st == "True"
                    && reason == "SomeTargetsUnhealthy"
                    && m.contains(&stopped)
                    && m.contains("Target.InvalidState")
            })
        })
        .await;
    assert_eq!(condition(&svc).unwrap().0, "True", "Ready is about the load balancer, not its targets");
    let (_, _, note) = c.wait_event("web", "TargetsUnhealthy").await;
    assert!(note.contains("SomeTargetsUnhealthy"), "{note}");

    for i in 1..world.instances.len() {
        stop(i).await.expect("stop");
    }
    c.wait_service("web", "no healthy target", |s| {
        targets_healthy(s).is_some_and(|(st, reason, _)| st == "False" && reason == "NoHealthyTargets")
    })
    .await;

    for id in &world.instances {
        world.ec2.start_instances().instance_ids(id.clone()).send().await.expect("start");
    }
    c.wait_service("web", "healthy again", |s| {
        targets_healthy(s).is_some_and(|(st, reason, _)| st == "True" && reason == "AllTargetsHealthy")
    })
    .await;
    c.wait_event("web", "TargetsHealthy").await;

    // Drift below the load balancer (issue 14 item 6): a deleted listener and a deregistered
    // target are found by the drift check (the ensure's reads, nothing changed) and repaired.
    let lb = world.elb.describe_load_balancers().send().await.unwrap().load_balancers()[0].clone();
    let lb_arn = lb.load_balancer_arn().unwrap().to_string();
    let listeners = world.elb.describe_listeners().load_balancer_arn(&lb_arn).send().await.unwrap();
    let listener = listeners.listeners()[0].clone();
    let tg = listener.default_actions()[0].target_group_arn().unwrap().to_string();
    world.elb.delete_listener().listener_arn(listener.listener_arn().unwrap()).send().await.unwrap();
    let target = aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder().id(&world.instances[0]).build();
    world.elb.deregister_targets().target_group_arn(&tg).targets(target).send().await.unwrap();
    let (_, _, note) = c.wait_event("web", "LoadBalancerDrifted").await;
    assert!(note.contains("elbv2:CreateListener") && note.contains("elbv2:RegisterTargets"), "{note}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let l = world.elb.describe_listeners().load_balancer_arn(&lb_arn).send().await.unwrap();
        let h = world.elb.describe_target_health().target_group_arn(&tg).send().await.unwrap();
        if l.listeners().len() == 1 && h.target_health_descriptions().len() == world.instances.len() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "drift not repaired: {l:?} {h:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    c.services().delete("web", &Default::default()).await.expect("delete");
    c.wait_gone("web").await;
    assert!(world.owned().await.is_empty());
    ctl.stop().await;
}

/// The load balancer's lifecycle as the controller shows it (AWS states forced by rewriting
/// moto's answers): its address at once while `provisioning` with `Ready=False/Provisioning`,
/// `Ready` once `active`; `failed` is `LoadBalancerFailed`, which a node change does not turn
/// into `Ready=True`; active again, ready again.
#[tokio::test]
async fn provisioning_publishes_the_address_at_once_and_failed_holds_ready_until_active() {
    use std::sync::atomic::Ordering;
    aws_support::test_env();
    let world = aws_support::World::new("test").await;
    let proxy = aws_support::proxy::FaultProxy::start(world.moto.addr, usize::MAX).await;
    proxy.enabled.store(false, Ordering::SeqCst);
    *proxy.lb_state.lock().unwrap() = Some(("provisioning".into(), None));
    let c = Cluster::start().await;
    aws_env::add_nodes(&c, &world).await;
    let moto = world.moto.url();
    let mut args: Vec<String> =
        aws_env::args(&world).into_iter().map(|a| if a == moto { proxy.url() } else { a }).collect();
    args.extend(["--target-health-recheck", "1s", "--resync-period", "3s"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ctl = Controller::start_full(&c, &args, "info,cloudlb=debug", &aws_env::ENVS).await;
    c.add_service("web", &[(80, "TCP")], json!({})).await;
    let svc = c
        .wait_service("web", "the address while provisioning", |s| {
            external_ip(s).is_some() && condition(s).is_some_and(|c| c.0 == "False" && c.1 == "Provisioning")
        })
        .await;
    let host = external_ip(&svc).unwrap();

    *proxy.lb_state.lock().unwrap() = None;
    c.wait_service("web", "ready once active", |s| condition(s).is_some_and(|c| c.0 == "True")).await;
    c.wait_event("web", "LoadBalancerProvisioned").await;

    *proxy.lb_state.lock().unwrap() = Some(("failed".into(), Some("InternalFailure".into())));
    c.wait_service("web", "failed", |s| {
        condition(s).is_some_and(|c| {
            c.0 == "False" && c.1 == "LoadBalancerFailed" && c.2.contains("replace-failed-load-balancer")
        })
    })
    .await;
    // A node joining converges the targets but does not make a failed load balancer ready.
    let updated = c.events("web").await.iter().filter(|e| e.0 == "UpdatedLoadBalancer").count();
    let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-x"},
        "spec": {"providerID": format!("aws:///us-east-1a/{}", world.instances[0])},
    }))
    .unwrap();
    c.nodes().delete("node-0", &Default::default()).await.expect("node-0 goes");
    c.nodes().create(&Default::default(), &node).await.expect("node-x");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while c.events("web").await.iter().filter(|e| e.0 == "UpdatedLoadBalancer").count() == updated {
        assert!(tokio::time::Instant::now() < deadline, "no targets update");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let svc = c.get("web").await;
    assert_eq!(condition(&svc).map(|c| c.1), Some("LoadBalancerFailed".to_string()), "still failed");

    *proxy.lb_state.lock().unwrap() = None;
    c.wait_service("web", "ready again", |s| condition(s).is_some_and(|c| c.0 == "True")).await;
    assert_eq!(external_ip(&c.get("web").await), Some(host), "the same load balancer");
    c.services().delete("web", &Default::default()).await.expect("delete");
    c.wait_gone("web").await;
    assert!(world.owned().await.is_empty());
    ctl.stop().await;
}

/// moto, the sandbox with a Node per instance, our IngressClass, `backends` (name, node port), and
/// the controller with the aws provider.
async fn ingress_world(backends: &[(&str, i32)]) -> (aws_support::World, Cluster, Controller) {
    aws_support::test_env();
    let world = aws_support::World::new("test").await;
    let c = Cluster::start().await;
    aws_env::add_nodes(&c, &world).await;
    c.add_ingress_class("cloudlb", INGRESS_CONTROLLER, false).await;
    for (name, node_port) in backends {
        c.add_backend(name, *node_port).await;
    }
    let args = aws_env::args(&world);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ctl = Controller::start_full(&c, &args, "info,cloudlb=debug", &aws_env::ENVS).await;
    (world, c, ctl)
}

#[tokio::test]
async fn ingress_with_two_hosts_three_paths_and_tls_gets_an_alb_hostname_and_delete_leaves_nothing() {
    let (world, c, ctl) = ingress_world(&[("app", 30080), ("api", 30081), ("shop", 30082)]).await;
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
        json!({}),
    )
    .await;
    let host = c.wait_ingress_address("web").await;
    let lbs = world.elb.describe_load_balancers().send().await.expect("describe").load_balancers().to_vec();
    assert_eq!(lbs.len(), 1, "one ALB");
    assert_eq!(lbs[0].r#type().map(|t| t.as_str()), Some("application"));
    assert_eq!(lbs[0].dns_name(), Some(host.as_str()), "the Ingress status shows the ALB's DNS name");
    let listeners = world
        .elb
        .describe_listeners()
        .load_balancer_arn(lbs[0].load_balancer_arn().unwrap())
        .send()
        .await
        .expect("listeners");
    let ports: Vec<i32> = listeners.listeners().iter().filter_map(|l| l.port()).collect();
    assert_eq!(ports.len(), 2, "HTTP and HTTPS: {ports:?}");
    for l in listeners.listeners() {
        let rules = world.elb.describe_rules().listener_arn(l.listener_arn().unwrap()).send().await.expect("rules");
        let ours = rules.rules().iter().filter(|r| r.is_default() != Some(true)).count();
        assert_eq!(ours, 3, "one rule per path on port {:?}", l.port());
    }
    let tgs = world.elb.describe_target_groups().send().await.expect("tgs").target_groups().to_vec();
    let mut tg_ports: Vec<i32> = tgs.iter().filter_map(|t| t.port()).collect();
    tg_ports.sort();
    assert_eq!(tg_ports, vec![30080, 30081, 30082], "one target group per backend, on its node port");

    c.ingresses().delete("web", &Default::default()).await.expect("delete ingress");
    c.wait_ingress_gone("web").await;
    let owned = world.owned().await;
    assert!(owned.is_empty(), "left behind: {owned:?}");
    let acm = aws_sdk_acm::Client::new(&aws_support::sdk_config(&world.moto.url()).await);
    let certs = acm.list_certificates().send().await.expect("certificates");
    assert!(certs.certificate_summary_list().is_empty(), "the imported certificate was deleted");
    drop(ctl);
}

#[tokio::test]
async fn an_ingress_group_gets_one_alb_with_every_members_rules_and_the_last_member_takes_it_away() {
    let (world, c, ctl) = ingress_world(&[("app", 30080), ("api", 30081)]).await;
    let member = |path: &str, svc: &str| json!({"ingressClassName": "cloudlb", "rules": [{"host": "app.example", "http": {"paths": [ingress_path("Prefix", path, svc)]}}]});
    let group = json!({"metadata": {"annotations": {"alb.ingress.kubernetes.io/group.name": "web"}}});
    c.add_ingress("front", member("/", "app"), group.clone()).await;
    c.add_ingress("api", member("/api", "api"), group).await;
    let host = c.wait_ingress_address("front").await;
    assert_eq!(c.wait_ingress_address("api").await, host, "both members show the group's ALB");
    let rules_of_the_alb = || async {
        let lbs = world.elb.describe_load_balancers().send().await.expect("describe").load_balancers().to_vec();
        let mut counts = Vec::new();
        for lb in &lbs {
            let ls =
                world.elb.describe_listeners().load_balancer_arn(lb.load_balancer_arn().unwrap()).send().await.unwrap();
            for l in ls.listeners() {
                let r = world.elb.describe_rules().listener_arn(l.listener_arn().unwrap()).send().await.unwrap();
                counts.push(r.rules().iter().filter(|r| r.is_default() != Some(true)).count());
            }
        }
        (lbs.len(), counts)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while rules_of_the_alb().await != (1, vec![2]) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "one ALB with both members' rules: {:?}",
            rules_of_the_alb().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A member the ALB cannot build (a malformed ALB annotation) is reported on itself and left out.
    let bad = json!({"metadata": {"annotations": {
        "alb.ingress.kubernetes.io/group.name": "web",
        "alb.ingress.kubernetes.io/healthcheck-path": "no-slash"
    }}});
    c.add_ingress("bad", member("/bad", "app"), bad).await;
    let (_, kind, note) = c.wait_event("bad", "InvalidLoadBalancerSpec").await;
    assert_eq!(kind, "Warning");
    assert!(note.contains("healthcheck-path"), "{note}");
    ctl.settle(Duration::from_millis(500)).await;
    assert_eq!(rules_of_the_alb().await, (1, vec![2]), "the invalid member's path is left out, the others keep theirs");
    c.ingresses().delete("bad", &Default::default()).await.expect("delete bad");

    c.ingresses().delete("api", &Default::default()).await.expect("delete api");
    c.wait_ingress_gone("api").await;
    assert_eq!(rules_of_the_alb().await, (1, vec![1]), "the remaining member keeps the ALB with its rule");
    c.ingresses().delete("front", &Default::default()).await.expect("delete front");
    c.wait_ingress_gone("front").await;
    let owned = world.owned().await;
    assert!(owned.is_empty(), "left behind: {owned:?}");
    drop(ctl);
}

/// `cloudlb gc` against the sandbox and moto; its stdout.
async fn gc(c: &Cluster, args: &[String], extra: &[&str]) -> String {
    one_shot("gc", c, args, extra).await
}

/// A one-shot `cloudlb <command>` against the sandbox and moto; its stdout (it must succeed).
async fn one_shot(command: &str, c: &Cluster, args: &[String], extra: &[&str]) -> String {
    let out = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudlb"))
            .arg(command)
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .args(["--cluster-name", "test", "--log-format", "json"])
            .args(args)
            .args(extra)
            .envs(aws_env::ENVS)
            .output(),
    )
    .await
    .expect("the command finishes in time")
    .expect("run the command");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "cloudlb {command} failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// moto and the sandbox, a Service `name` given its NLB by the controller, which is then stopped;
/// the controller's flags.
async fn one_service_then_stopped(name: &str) -> (aws_support::World, Cluster, Vec<String>) {
    aws_support::test_env();
    let world = aws_support::World::new("test").await;
    let c = Cluster::start().await;
    aws_env::add_nodes(&c, &world).await;
    let args = aws_env::args(&world);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let ctl = Controller::start_full(&c, &argv, "info", &aws_env::ENVS).await;
    c.add_service(name, &[(80, "TCP")], json!({})).await;
    c.wait_address(name).await;
    ctl.stop().await;
    (world, c, args)
}

#[tokio::test]
async fn gc_lists_then_deletes_only_the_leaked_load_balancer() {
    let (world, c, args) = one_service_then_stopped("live").await;

    // Made for a Service of this cluster that is gone (a controller that crashed before cleanup,
    // a finalizer removed by hand), and another cluster's.
    let p = world.provider().await;
    let spec = world.spec(&[(80, 30080)], &[0]);
    let leaked = cloudlb_provider::LoadBalancerId::new("test", "default", "gone", "uid-gone");
    let foreign = cloudlb_provider::LoadBalancerId::new("other", "default", "gone", "uid-other");
    use cloudlb_provider::Provider;
    p.ensure(&leaked, &spec, None).await.expect("the leaked load balancer");
    p.ensure(&foreign, &spec, None).await.expect("another cluster's");
    let count = || async { world.elb.describe_load_balancers().send().await.expect("describe").load_balancers().len() };
    assert_eq!(count().await, 3);

    let listed = gc(&c, &args, &["--dry-run", "--gc-min-age", "0s"]).await;
    assert!(listed.contains("default/gone") && listed.contains("uid-gone"), "{listed}");
    assert!(listed.contains("would delete (dry run)"), "{listed}");
    assert!(listed.contains("loadbalancer/") && listed.contains("targetgroup "), "its resources are listed: {listed}");
    assert!(!listed.contains("default/live") && !listed.contains("uid-other"), "{listed}");
    assert_eq!(count().await, 3, "a dry run deletes nothing");

    let young = gc(&c, &args, &[]).await;
    assert!(young.contains("kept: younger than --gc-min-age"), "the default minimum age keeps it: {young}");
    assert_eq!(count().await, 3);

    let swept = gc(&c, &args, &["--gc-min-age", "0s"]).await;
    assert!(swept.contains("uid-gone") && swept.contains("deleted"), "{swept}");
    assert_eq!(count().await, 2, "the live one and the other cluster's stay");
    let tgs = world.elb.describe_target_groups().send().await.expect("tgs").target_groups().to_vec();
    assert_eq!(tgs.len(), 2, "the leaked one's target group went with it");
    let again = gc(&c, &args, &["--dry-run", "--gc-min-age", "0s"]).await;
    assert_eq!(again, "no load balancer of this cluster is orphaned\n");
}

#[tokio::test]
async fn plan_shows_a_pending_port_change_and_changes_nothing() {
    let (world, c, args) = one_service_then_stopped("web").await;

    let unchanged = one_shot("plan", &c, &args, &["default/web"]).await;
    assert_eq!(unchanged, "Service default/web: no change\n");

    // A port is added while no controller runs: the plan shows it, and nothing is made.
    c.patch_service("web", json!({"spec": {"ports": [{"name": "p80-tcp", "port": 80, "protocol": "TCP"}, {"name": "p443-tcp", "port": 443, "protocol": "TCP"}]}})).await;
    let tgs = || async { world.elb.describe_target_groups().send().await.expect("tgs").target_groups().len() };
    let before = tgs().await;
    let planned = one_shot("plan", &c, &args, &[]).await;
    assert!(planned.starts_with("Service default/web: "), "{planned}");
    println!("{planned}");
    // The rule for 443 on the load balancer's security group, the new port's target group and its
    // targets, the listener; nothing else of the load balancer changes.
    for change in [
        "update  ec2:AuthorizeSecurityGroupIngress",
        "create  elbv2:CreateTargetGroup",
        "update  elbv2:RegisterTargets",
        "create  elbv2:CreateListener",
    ] {
        assert!(planned.contains(change), "{change}: {planned}");
    }
    assert!(!planned.contains("CreateLoadBalancer") && !planned.contains("and what follows"), "{planned}");
    assert_eq!(tgs().await, before, "plan made nothing");
    let lb = world.elb.describe_load_balancers().send().await.expect("lbs").load_balancers()[0].clone();
    let listeners = world
        .elb
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap())
        .send()
        .await
        .expect("listeners");
    assert_eq!(listeners.listeners().len(), 1, "plan made no listener");
    let missing = one_shot("plan", &c, &args, &["default/nothing"]).await;
    assert_eq!(missing, "no object claimed by this configuration matches\n");
}
