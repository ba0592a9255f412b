//! Fault injection: the real `cloudlb` killed with SIGKILL at random points while Services are
//! created, changed and deleted, round after round, against moto (aws) and the Compute fake (gcp).
//! Then one controller is left to converge. Whatever the kills interrupted (a create between two
//! cloud calls, a port change half made, a delete before the finalizer came off), every Service
//! must end with exactly one load balancer of its current shape, and deleting them all must leave
//! nothing of ours in the cloud.
//!
//! Each round changes one or two Services at random, starts the controller and kills it after a
//! random delay inside a window that covers its start (cache sync, restore), its first calls and
//! its last. The seed is printed; `CLOUDLB_FAULT_SEED=<n>` replays a run's choices (the kill
//! points themselves also depend on timing, so a replay is likely, not certain, to hit the same
//! ones).

#[path = "support/aws_env.rs"]
mod aws_env;
#[path = "../providers/aws/tests/support/mod.rs"]
mod aws_support;
#[path = "support/gcp_env.rs"]
mod gcp_env;
#[path = "../providers/gcp/tests/support/mod.rs"]
mod gcp_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use serde_json::json;
use support::*;

/// A small deterministic generator (xorshift64*): the choices of a run are replayable from its seed.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("CLOUDLB_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
        });
        eprintln!("fault injection seed: CLOUDLB_FAULT_SEED={seed}");
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Port sets a Service moves between (each a different set of listeners / target groups).
const SHAPES: [&[i32]; 3] = [&[80], &[80, 443], &[8080]];

/// Ports of a Service as its spec says them.
fn spec_ports(svc: &Service) -> Vec<i32> {
    let mut p: Vec<i32> =
        svc.spec.as_ref().and_then(|s| s.ports.as_ref()).into_iter().flatten().map(|p| p.port).collect();
    p.sort();
    p
}

fn ports_json(ports: &[i32]) -> serde_json::Value {
    json!(ports.iter().map(|p| json!({"name": format!("p{p}-tcp"), "port": p, "protocol": "TCP"})).collect::<Vec<_>>())
}

/// One random change to `name`: create it when absent; otherwise change its ports or delete it.
/// A Service that is being deleted (our finalizer still on) is left alone.
async fn change(c: &Cluster, rng: &mut Rng, name: &str) {
    let current = c.services().get_opt(name).await.expect("get service");
    match current {
        None => {
            let shape = SHAPES[rng.below(SHAPES.len() as u64) as usize];
            let ports: Vec<(i32, &str)> = shape.iter().map(|p| (*p, "TCP")).collect();
            c.add_service(name, &ports, json!({})).await;
        }
        Some(svc) if svc.metadata.deletion_timestamp.is_some() => {}
        Some(svc) => {
            if rng.below(3) == 0 {
                c.services().delete(name, &Default::default()).await.expect("delete service");
            } else {
                let now = spec_ports(&svc);
                let others: Vec<&[i32]> = SHAPES.iter().copied().filter(|s| *s != now.as_slice()).collect();
                let shape = others[rng.below(others.len() as u64) as usize];
                c.patch_service(name, json!({"spec": {"ports": ports_json(shape)}})).await;
            }
        }
    }
}

/// Paths of the Ingresses the Ingress rounds make (all to the Service `app`).
const PATH_SHAPES: [&[&str]; 3] = [&["/"], &["/", "/api"], &["/api", "/shop", "/v2"]];

fn ingress_spec(paths: &[&str]) -> serde_json::Value {
    let paths: Vec<serde_json::Value> = paths.iter().map(|p| ingress_path("Prefix", p, "app")).collect();
    json!({
        "ingressClassName": "cloudlb",
        "tls": [{"hosts": ["app.example"], "secretName": "app-tls"}],
        "rules": [{"host": "app.example", "http": {"paths": paths}}]
    })
}

fn ingress_paths(ing: &Ingress) -> Vec<String> {
    let rules = ing.spec.as_ref().and_then(|s| s.rules.as_ref()).into_iter().flatten();
    rules.flat_map(|r| r.http.iter().flat_map(|h| h.paths.iter().filter_map(|p| p.path.clone()))).collect()
}

/// [`change`] for an Ingress: create it, change its paths, or delete it.
async fn change_ingress(c: &Cluster, rng: &mut Rng, name: &str) {
    match c.ingresses().get_opt(name).await.expect("get ingress") {
        None => {
            let shape = PATH_SHAPES[rng.below(PATH_SHAPES.len() as u64) as usize];
            c.add_ingress(name, ingress_spec(shape), json!({})).await;
        }
        Some(ing) if ing.metadata.deletion_timestamp.is_some() => {}
        Some(ing) => {
            if rng.below(3) == 0 {
                c.ingresses().delete(name, &Default::default()).await.expect("delete ingress");
            } else {
                let now = ingress_paths(&ing);
                let others: Vec<&[&str]> = PATH_SHAPES.iter().copied().filter(|s| *s != now.as_slice()).collect();
                let shape = others[rng.below(others.len() as u64) as usize];
                c.patch_ingress(name, json!({"spec": ingress_spec(shape)})).await;
            }
        }
    }
}

/// What the rounds change.
#[derive(Clone, Copy)]
enum Kind {
    Services,
    Ingresses,
}

/// Runs `rounds` rounds of changes and kills; returns the Services (or Ingresses) that should
/// exist, with their ports (for Ingresses: their number of paths).
async fn churn(
    c: &Cluster,
    args: &[&str],
    envs: &[(&str, &str)],
    names: &[&str],
    rounds: usize,
    window: Duration,
    kind: Kind,
) -> BTreeMap<String, Vec<i32>> {
    let mut rng = Rng::from_env();
    let mut kills_after_ready = 0;
    for round in 0..rounds {
        for _ in 0..=rng.below(2) {
            let name = names[rng.below(names.len() as u64) as usize];
            match kind {
                Kind::Services => change(c, &mut rng, name).await,
                Kind::Ingresses => change_ingress(c, &mut rng, name).await,
            }
        }
        // Without leader election: a killed leader's Lease would make the next process wait
        // for it to expire, and the kills would land in that wait instead of in the work.
        let mut child =
            Controller::command(c, args, "info", envs).arg("--leader-elect=false").spawn().expect("spawn cloudlb");
        let delay = Duration::from_millis(rng.below(window.as_millis() as u64 + 1));
        // The controller must not exit by itself before the kill (a crash would hide here).
        match tokio::time::timeout(delay, child.wait()).await {
            Ok(status) => panic!("round {round}: cloudlb exited by itself after less than {delay:?}: {status:?}"),
            Err(_) => {
                child.kill().await.expect("SIGKILL");
            }
        }
        if delay > Duration::from_millis(500) {
            kills_after_ready += 1;
        }
        eprintln!("round {round}: killed after {delay:?}");
    }
    assert!(kills_after_ready > 0, "every kill came before the controller could act");
    let mut want = BTreeMap::new();
    match kind {
        Kind::Services => {
            for svc in c.services().list(&Default::default()).await.expect("list").items {
                if svc.metadata.deletion_timestamp.is_none() {
                    want.insert(svc.metadata.name.clone().expect("name"), spec_ports(&svc));
                }
            }
        }
        Kind::Ingresses => {
            for ing in c.ingresses().list(&Default::default()).await.expect("list").items {
                if ing.metadata.deletion_timestamp.is_none() {
                    want.insert(ing.metadata.name.clone().expect("name"), vec![ingress_paths(&ing).len() as i32]);
                }
            }
        }
    }
    want
}

/// How long convergence after the last kill may take: a killed process's unfinished operations
/// (the fake settles them after 2 s) and retries with backoff (5 s, 10 s, ...) come first.
const CONVERGE: Duration = Duration::from_secs(120);

/// With one controller running: every wanted Service shows its current ports and is Ready, and
/// every Service being deleted is gone.
async fn converged(c: &Cluster, want: &BTreeMap<String, Vec<i32>>, names: &[&str]) {
    for (name, ports) in want {
        let ports = ports.clone();
        c.wait_service_within(CONVERGE, name, "ready with its current ports", move |s| {
            let mut shown = status_ports(s);
            shown.sort();
            external_ip(s).is_some() && shown == ports && condition(s).is_some_and(|c| c.0 == "True")
        })
        .await;
    }
    for name in names.iter().filter(|n| !want.contains_key(**n)) {
        c.wait_gone_within(CONVERGE, name).await;
    }
}

async fn delete_all(c: &Cluster, names: &[&str]) {
    for name in names {
        if c.services().get_opt(name).await.expect("get").is_some() {
            let _ = c.services().delete(name, &Default::default()).await;
        }
    }
    for name in names {
        c.wait_gone_within(CONVERGE, name).await;
    }
}

fn uid_of(svc: &Service) -> String {
    svc.metadata.uid.clone().expect("uid")
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

#[tokio::test]
async fn aws_killed_at_random_points_converges_to_one_nlb_per_service_and_leaves_nothing() {
    aws_support::test_env();
    let world = aws_support::World::new("test").await;
    let c = Cluster::start().await;
    aws_env::add_nodes(&c, &world).await;
    let args = aws_env::args(&world);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let envs = aws_env::ENVS;

    let want = tokio::time::timeout(
        Duration::from_secs(300),
        churn(&c, &args, &envs, &NAMES, 14, Duration::from_secs(4), Kind::Services),
    )
    .await
    .expect("the rounds finish within 5 minutes");
    let ctl = Controller::start_full(&c, &args, "info", &envs).await;
    converged(&c, &want, &NAMES).await;

    // Exactly one NLB per Service, owned by that Service (uid), one target group per port.
    let owned = world.owned().await;
    let mut owners = BTreeSet::new();
    for name in &owned.load_balancers {
        let lb = world.load_balancer(name).await.expect("load balancer");
        let tags = world.elb_tags(lb.load_balancer_arn().expect("arn")).await;
        owners.insert(tags.get("cloudlb.io/owner-uid").cloned().expect("owner tag"));
    }
    let mut uids = BTreeSet::new();
    for name in want.keys() {
        uids.insert(uid_of(&c.get(name).await));
    }
    assert_eq!(owned.load_balancers.len(), want.len(), "one NLB per Service: {owned:?} for {want:?}");
    assert_eq!(owners, uids, "each NLB belongs to a live Service");
    // Every port has its target group. A target group that an interrupted ensure made for a
    // port changed again before the next ensure can stay unattached until its load balancer is
    // deleted (delete finds it by name and tags; finding it at ensure time is issue 14's).
    let ports: usize = want.values().map(Vec::len).sum();
    assert!(owned.target_groups.len() >= ports, "a target group per port: {owned:?} for {want:?}");
    if owned.target_groups.len() > ports {
        eprintln!("unattached target groups until delete: {owned:?} for {want:?}");
    }
    assert_eq!(owned.security_groups.len(), want.len(), "one security group per NLB: {owned:?}");

    delete_all(&c, &NAMES).await;
    let left = world.owned().await;
    assert!(left.is_empty(), "leaked: {left:?}");
    ctl.stop().await;
}

#[tokio::test]
async fn aws_ingresses_killed_at_random_points_converge_to_one_alb_each_and_leave_nothing() {
    aws_support::test_env();
    let world = aws_support::World::new("test").await;
    let c = Cluster::start().await;
    aws_env::add_nodes(&c, &world).await;
    c.add_ingress_class("cloudlb", INGRESS_CONTROLLER, false).await;
    c.add_backend("app", 30080).await;
    let (crt, key) = pem_pair(&["app.example"]);
    c.add_tls_secret("app-tls", &crt, &key).await;
    let args = aws_env::args(&world);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let envs = aws_env::ENVS;
    let names = ["i1", "i2", "i3"];
    let rounds = churn(&c, &args, &envs, &names, 12, Duration::from_secs(4), Kind::Ingresses);
    let want =
        tokio::time::timeout(Duration::from_secs(300), rounds).await.expect("the rounds finish within 5 minutes");
    let ctl = Controller::start_full(&c, &args, "info", &envs).await;
    for name in want.keys() {
        c.wait_ingress_within(CONVERGE, name, "an ALB hostname", |i| ingress_address(i).is_some()).await;
    }
    for name in names.iter().filter(|n| !want.contains_key(**n)) {
        c.wait_ingress_gone_within(CONVERGE, name).await;
    }
    // One ALB per Ingress, each with one rule per path on each listener; one certificate each.
    let acm = aws_sdk_acm::Client::new(&aws_support::sdk_config(&world.moto.url()).await);
    let deadline = tokio::time::Instant::now() + CONVERGE;
    loop {
        let owned = world.owned().await;
        let certs = acm.list_certificates().send().await.expect("certificates").certificate_summary_list().len();
        let mut rules = Vec::new();
        for name in &owned.load_balancers {
            let lb = world.load_balancer(name).await.expect("load balancer");
            let ls = world.elb.describe_listeners().load_balancer_arn(lb.load_balancer_arn().unwrap()).send().await;
            for l in ls.expect("listeners").listeners() {
                let r = world.elb.describe_rules().listener_arn(l.listener_arn().unwrap()).send().await.expect("rules");
                rules.push(r.rules().iter().filter(|r| r.is_default() != Some(true)).count());
            }
        }
        rules.sort();
        let mut want_rules: Vec<usize> = want.values().flat_map(|n| [n[0] as usize, n[0] as usize]).collect();
        want_rules.sort();
        if owned.load_balancers.len() == want.len() && certs == want.len() && rules == want_rules {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "one ALB per Ingress with its rules and certificate: {owned:?}, {certs} certificates, rules {rules:?} for {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for name in &names {
        if c.ingresses().get_opt(name).await.expect("get").is_some() {
            let _ = c.ingresses().delete(name, &Default::default()).await;
        }
    }
    for name in &names {
        c.wait_ingress_gone_within(CONVERGE, name).await;
    }
    let left = world.owned().await;
    assert!(left.is_empty(), "leaked: {left:?}");
    let certs = acm.list_certificates().send().await.expect("certificates");
    assert!(certs.certificate_summary_list().is_empty(), "leaked certificates");
    ctl.stop().await;
}

#[tokio::test]
async fn gcp_killed_at_random_points_converges_to_one_load_balancer_per_service_and_leaves_nothing() {
    use gcp_support::{PROJECT, REGION, ZONE_A, ZONE_B};
    let w = gcp_support::World::with("test", cloudlb_gce_fake::FakeConfig::new(PROJECT)).await;
    let c = Cluster::start().await;
    for (zone, name) in [(ZONE_A, "node-0"), (ZONE_B, "node-1"), (ZONE_A, "node-2")] {
        gcp_env::add_node(&c, &w, zone, name).await;
    }
    let args = gcp_env::args(&w);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let want = tokio::time::timeout(
        Duration::from_secs(300),
        churn(&c, &args, &[], &NAMES, 16, Duration::from_secs(3), Kind::Services),
    )
    .await
    .expect("the rounds finish within 5 minutes");
    let ctl = Controller::start_full(&c, &args, "info", &[]).await;
    converged(&c, &want, &NAMES).await;

    // Exactly one forwarding rule, backend service and firewall per Service, named for its uid
    // (beside the cluster's shared rule for the node health check).
    let mut expected = Vec::new();
    for name in want.keys() {
        let id = cloudlb_provider::LoadBalancerId::new("test", "default", name.as_str(), uid_of(&c.get(name).await));
        expected.push(cloudlb_provider_gcp::names::load_balancer(&id));
    }
    expected.sort();
    for collection in [
        format!("regions/{REGION}/forwardingRules"),
        format!("regions/{REGION}/backendServices"),
        "global/firewalls".into(),
    ] {
        let mut made = w.list(&collection).await;
        made.retain(|n| *n != cloudlb_provider_gcp::names::node_health_check_firewall("test"));
        assert_eq!(made, expected, "{collection}: one per Service, none stray");
    }

    delete_all(&c, &NAMES).await;
    let left = w.everything().await;
    assert!(left.is_empty(), "leaked: {left:?}");
    ctl.stop().await;
}
