//! Test support: a moto_server per test, a VPC with tagged subnets and real EC2 instances, and
//! helpers to read back what the provider made through the AWS API.

#![allow(dead_code)]

pub mod proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_sdk_ec2 as ec2;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_sdk_elasticloadbalancingv2 as elbv2;
use cloudlb_provider::conformance;
use cloudlb_provider::{LoadBalancerId, LoadBalancerSpec, Target};
use cloudlb_provider_aws::{AwsConfig, AwsProvider};

pub const REGION: &str = "us-east-1";

/// Static test credentials for the SDK's standard chain, set once before any client exists.
pub fn test_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: every test calls this first, and `Once` blocks the others until it is done, so
        // no other thread reads the environment while it is written.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
            std::env::set_var("AWS_SESSION_TOKEN", "testing");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/cloudlb-test-aws-config");
            std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/cloudlb-test-aws-credentials");
        }
    });
}

/// A `moto_server` on a free 127.0.0.1 port, killed on drop.
pub struct Moto {
    child: Child,
    pub addr: SocketAddr,
}

impl Moto {
    pub fn start() -> Moto {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
            let child = Command::new("moto_server")
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server on PATH (pip install 'moto[server]==5.2.1')");
            let mut moto = Moto { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = moto.child.try_wait() {
                    break; // exited (port taken?): try another port
                }
                if TcpStream::connect_timeout(&moto.addr, Duration::from_millis(200)).is_ok() {
                    return moto;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        panic!("moto_server did not start");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    test_env();
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// A moto with a VPC, tagged subnets in two zones, and three running instances.
pub struct World {
    pub moto: Moto,
    pub ec2: ec2::Client,
    pub elb: elbv2::Client,
    pub cluster: String,
    pub vpc: String,
    /// One per zone, the lowest id of the tagged public subnets in each zone.
    pub public: Vec<String>,
    pub internal: Vec<String>,
    pub instances: Vec<String>,
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

impl World {
    pub async fn new(cluster: &str) -> World {
        let moto = Moto::start();
        let sdk = sdk_config(&moto.url()).await;
        let ec2 = ec2::Client::new(&sdk);
        let elb = elbv2::Client::new(&sdk);
        let vpc = ec2.create_vpc().cidr_block("10.0.0.0/16").send().await.expect("create vpc");
        let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
        let cluster_key = format!("kubernetes.io/cluster/{cluster}");
        // (cidr, zone, tags)
        let layout: Vec<(&str, &str, Vec<Tag>)> = vec![
            ("10.0.1.0/24", "us-east-1a", vec![tag("kubernetes.io/role/elb", "1"), tag(&cluster_key, "owned")]),
            ("10.0.2.0/24", "us-east-1a", vec![tag("kubernetes.io/role/elb", "1"), tag(&cluster_key, "shared")]),
            ("10.0.3.0/24", "us-east-1b", vec![tag("kubernetes.io/role/elb", "1"), tag(&cluster_key, "owned")]),
            (
                "10.0.4.0/24",
                "us-east-1a",
                vec![tag("kubernetes.io/role/internal-elb", "1"), tag(&cluster_key, "owned")],
            ),
            (
                "10.0.5.0/24",
                "us-east-1b",
                vec![tag("kubernetes.io/role/internal-elb", "1"), tag(&cluster_key, "owned")],
            ),
            // Role tag but another cluster's: never picked.
            (
                "10.0.6.0/24",
                "us-east-1c",
                vec![tag("kubernetes.io/role/elb", "1"), tag("kubernetes.io/cluster/other", "owned")],
            ),
            // Untagged.
            ("10.0.7.0/24", "us-east-1c", vec![]),
        ];
        let mut made: Vec<(String, String, bool, bool)> = Vec::new();
        for (cidr, zone, tags) in layout {
            let public = tags.iter().any(|t| t.key() == Some("kubernetes.io/role/elb"))
                && tags.iter().any(|t| t.key() == Some(cluster_key.as_str()));
            let internal = tags.iter().any(|t| t.key() == Some("kubernetes.io/role/internal-elb"));
            let mut req = ec2.create_subnet().vpc_id(&vpc).cidr_block(cidr).availability_zone(zone);
            if !tags.is_empty() {
                req = req.tag_specifications(
                    TagSpecification::builder().resource_type(ResourceType::Subnet).set_tags(Some(tags)).build(),
                );
            }
            let s = req.send().await.expect("create subnet");
            let id = s.subnet().and_then(|s| s.subnet_id()).expect("subnet id").to_string();
            made.push((id, zone.to_string(), public, internal));
        }
        let pick = |want_public: bool| -> Vec<String> {
            let mut by_zone: BTreeMap<String, String> = BTreeMap::new();
            for (id, zone, public, internal) in &made {
                if (want_public && *public) || (!want_public && *internal) {
                    let e = by_zone.entry(zone.clone()).or_insert_with(|| id.clone());
                    if id < e {
                        *e = id.clone();
                    }
                }
            }
            by_zone.into_values().collect()
        };
        let public = pick(true);
        let internal = pick(false);
        let images = ec2.describe_images().send().await.expect("describe images");
        let image = images.images().iter().find_map(|i| i.image_id()).expect("a moto AMI").to_string();
        let run = ec2
            .run_instances()
            .image_id(image)
            .min_count(3)
            .max_count(3)
            .subnet_id(&public[0])
            .instance_type(ec2::types::InstanceType::T3Micro)
            .send()
            .await
            .expect("run instances");
        let mut instances: Vec<String> =
            run.instances().iter().filter_map(|i| i.instance_id().map(String::from)).collect();
        instances.sort();
        assert_eq!(instances.len(), 3);
        World { moto, ec2, elb, cluster: cluster.to_string(), vpc, public, internal, instances }
    }

    pub fn config(&self) -> AwsConfig {
        let mut c = AwsConfig::new(REGION, &self.vpc);
        c.endpoint_url = Some(self.moto.url());
        c
    }

    pub async fn provider(&self) -> AwsProvider {
        test_env();
        AwsProvider::new(self.config()).await.expect("provider")
    }

    pub fn id(&self, name: &str) -> LoadBalancerId {
        let mut id = conformance::id(name);
        id.cluster = self.cluster.clone();
        id
    }

    /// A node target for instance `i` (index into `instances`).
    pub fn target(&self, i: usize) -> Target {
        Target {
            node: format!("node-{i}"),
            provider_id: Some(format!("aws:///us-east-1a/{}", self.instances[i])),
            addresses: vec![],
        }
    }

    pub fn spec(&self, ports: &[(u16, u16)], targets: &[usize]) -> LoadBalancerSpec {
        let mut s = conformance::spec(&[80]);
        s.listeners = ports
            .iter()
            .map(|(p, np)| cloudlb_provider::Listener {
                port: *p,
                protocol: cloudlb_provider::Protocol::Tcp,
                node_port: *np,
                name: None,
            })
            .collect();
        s.targets = targets.iter().map(|i| self.target(*i)).collect::<Vec<_>>().into();
        s
    }

    /// Every load balancer, target group and security group tagged with our cluster.
    pub async fn owned(&self) -> Owned {
        let mut out = Owned::default();
        let lbs = self.elb.describe_load_balancers().send().await.expect("describe lbs");
        let tgs = self.elb.describe_target_groups().send().await.expect("describe tgs");
        let mut arns: Vec<(String, String, bool)> = Vec::new();
        for lb in lbs.load_balancers() {
            arns.push((lb.load_balancer_arn().unwrap().into(), lb.load_balancer_name().unwrap().into(), true));
        }
        for tg in tgs.target_groups() {
            arns.push((tg.target_group_arn().unwrap().into(), tg.target_group_name().unwrap().into(), false));
        }
        for (arn, name, is_lb) in arns {
            let t = self.elb_tags(&arn).await;
            if t.get("cloudlb.io/cluster") == Some(&self.cluster) {
                if is_lb { out.load_balancers.push(name) } else { out.target_groups.push(name) }
            }
        }
        let sgs = self
            .ec2
            .describe_security_groups()
            .filters(Filter::builder().name("tag:cloudlb.io/cluster").values(&self.cluster).build())
            .send()
            .await
            .expect("describe sgs");
        for g in sgs.security_groups() {
            let backend = g
                .tags()
                .iter()
                .any(|t| t.key() == Some("cloudlb.io/resource") && t.value() == Some("backend-security-group"));
            let name = g.group_name().unwrap_or_default().to_string();
            if backend { out.backend_security_groups.push(name) } else { out.security_groups.push(name) }
        }
        out
    }

    /// The inbound rules of security group `group` whose source is a security group, as
    /// (protocol, from, to, source group, description).
    pub async fn group_rules(&self, group: &str) -> BTreeSet<(String, i32, i32, String, String)> {
        let r = self.ec2.describe_security_groups().group_ids(group).send().await.expect("describe group");
        let mut out = BTreeSet::new();
        for g in r.security_groups() {
            for p in g.ip_permissions() {
                for pair in p.user_id_group_pairs() {
                    out.insert((
                        p.ip_protocol().unwrap_or_default().to_string(),
                        p.from_port().unwrap_or(-1),
                        p.to_port().unwrap_or(-1),
                        pair.group_id().unwrap_or_default().to_string(),
                        pair.description().unwrap_or_default().to_string(),
                    ));
                }
            }
        }
        out
    }

    /// The security groups of instance `i`'s primary network interface.
    pub async fn instance_groups(&self, i: usize) -> Vec<String> {
        let r = self.ec2.describe_instances().instance_ids(&self.instances[i]).send().await.expect("describe instance");
        let inst = &r.reservations()[0].instances()[0];
        let eni = inst
            .network_interfaces()
            .iter()
            .find(|n| n.attachment().and_then(|a| a.device_index()) == Some(0))
            .expect("primary interface");
        eni.groups().iter().filter_map(|g| g.group_id().map(String::from)).collect()
    }

    /// A new instance (in the first public subnet) whose primary interface has `groups`.
    pub async fn run_instance(&mut self, groups: &[String]) -> usize {
        let images = self.ec2.describe_images().send().await.expect("describe images");
        let image = images.images().iter().find_map(|i| i.image_id()).expect("a moto AMI").to_string();
        let run = self
            .ec2
            .run_instances()
            .image_id(image)
            .min_count(1)
            .max_count(1)
            .subnet_id(&self.public[0])
            .set_security_group_ids(Some(groups.to_vec()))
            .instance_type(ec2::types::InstanceType::T3Micro)
            .send()
            .await
            .expect("run instance");
        self.instances.push(run.instances()[0].instance_id().expect("instance id").to_string());
        self.instances.len() - 1
    }

    /// A security group `name` in the VPC with `tags`.
    pub async fn security_group(&self, name: &str, tags: &[(&str, &str)]) -> String {
        let mut req = self.ec2.create_security_group().group_name(name).description(name).vpc_id(&self.vpc);
        if !tags.is_empty() {
            req = req.tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .set_tags(Some(tags.iter().map(|(k, v)| tag(k, v)).collect()))
                    .build(),
            );
        }
        req.send().await.expect("create security group").group_id().expect("group id").to_string()
    }

    pub async fn elb_tags(&self, arn: &str) -> BTreeMap<String, String> {
        let t = self.elb.describe_tags().resource_arns(arn).send().await.expect("describe tags");
        t.tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string())))
            .collect()
    }

    pub async fn load_balancer(&self, name: &str) -> Option<elbv2::types::LoadBalancer> {
        match self.elb.describe_load_balancers().names(name).send().await {
            Ok(r) => r.load_balancers().first().cloned(),
            Err(_) => None,
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Owned {
    pub load_balancers: Vec<String>,
    pub target_groups: Vec<String>,
    /// The load balancers' own security groups.
    pub security_groups: Vec<String>,
    /// The cluster's backend security group (role `backend-security-group`).
    pub backend_security_groups: Vec<String>,
}

impl Owned {
    pub fn is_empty(&self) -> bool {
        self.load_balancers.is_empty()
            && self.target_groups.is_empty()
            && self.security_groups.is_empty()
            && self.backend_security_groups.is_empty()
    }
}

/// Every call made between two snapshots of the provider's counters, by name (reads included).
pub fn calls_since(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// Mutating calls in `after` that were not in `before` (everything but Describe*, List*, Get*).
pub fn mutations(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    calls_since(before, after)
        .into_iter()
        .filter(|(k, _)| !k.contains(":Describe") && !k.contains(":List") && !k.contains(":Get"))
        .collect()
}

pub fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>, call: &str) -> u64 {
    after.get(call).copied().unwrap_or(0) - before.get(call).copied().unwrap_or(0)
}

/// `deploy/aws/iam-policy.json` rendered for `cluster` by `deploy/aws/render-iam-policy.sh` (the
/// command the README gives users), with a sample account, region and VPC.
pub fn rendered_policy(cluster: &str) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/aws/render-iam-policy.sh");
    let out = Command::new("bash")
        .arg(script)
        .env("CLUSTER_NAME", cluster)
        .env("VPC_ID", "vpc-0123456789abcdef0")
        .env("ACCOUNT_ID", "123456789012")
        .env("REGION", REGION)
        .env_remove("AWS_PARTITION")
        .output()
        .expect("run deploy/aws/render-iam-policy.sh");
    assert!(out.status.success(), "render-iam-policy.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("utf-8 policy");
    assert!(!text.contains("${"), "placeholders left in the rendered policy");
    serde_json::from_str(&text).expect("the rendered policy is JSON")
}

fn strings(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    }
}

/// Whether a statement's condition requires the resource or the request to be tagged for
/// `cluster`: `cloudlb.io/cluster` equal to it (resource or request tag), or, for the nodes'
/// security groups, `kubernetes.io/cluster/<cluster>`.
fn has_cluster_condition(statement: &serde_json::Value, cluster: &str) -> bool {
    // The VPC half of CreateSecurityGroup (AWS authorizes the VPC and the new group separately):
    // one VPC's ARN and nothing else; the group half carries the request tag.
    let resources = strings(statement.get("Resource"));
    if strings(statement.get("Action")) == ["ec2:CreateSecurityGroup"]
        && resources.len() == 1
        && resources[0].contains(":vpc/vpc-")
        && !resources[0].contains('*')
    {
        return true;
    }
    let Some(eq) = statement.pointer("/Condition/StringEquals").and_then(|v| v.as_object()) else { return false };
    let ours = ["aws:ResourceTag/cloudlb.io/cluster", "aws:RequestTag/cloudlb.io/cluster"];
    ours.iter().any(|k| strings(eq.get(*k)) == [cluster.to_string()])
        || eq.contains_key(&format!("aws:ResourceTag/kubernetes.io/cluster/{cluster}"))
}

/// Every call in `calls` (`service:Action`, as the provider counts them) is allowed by the
/// rendered policy, and every mutating one only by statements that require the cluster's tag;
/// changing an ownership tag key after create is denied for ELB and EC2 resources.
pub fn assert_policy_allows(calls: &BTreeMap<String, u64>, cluster: &str) {
    let policy = rendered_policy(cluster);
    let statements = policy["Statement"].as_array().expect("Statement list");
    for call in calls.keys() {
        let (service, action) = call.split_once(':').expect("service:Action");
        let service = match service {
            "elbv2" => "elasticloadbalancing",
            "tagging" => "tag",
            other => other,
        };
        let action = format!("{service}:{action}");
        let allowing: Vec<&serde_json::Value> = statements
            .iter()
            .filter(|s| s["Effect"] == "Allow" && strings(s.get("Action")).contains(&action))
            .collect();
        assert!(!allowing.is_empty(), "{action} is not allowed by deploy/aws/iam-policy.json");
        let read_only = ["Describe", "List", "Get"].iter().any(|p| action.split(':').nth(1).unwrap().starts_with(p));
        if !read_only {
            for s in allowing {
                assert!(
                    has_cluster_condition(s, cluster),
                    "{action} is allowed by statement {} without requiring the cluster's tag",
                    s["Sid"]
                );
            }
        }
    }
    let ownership = [
        cloudlb_provider_aws::tags::CLUSTER,
        cloudlb_provider_aws::tags::OWNER_UID,
        cloudlb_provider_aws::tags::RESOURCE,
    ];
    for action in
        ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags", "ec2:CreateTags", "ec2:DeleteTags"]
    {
        let denied = statements.iter().any(|s| {
            let keys = strings(s.pointer("/Condition/ForAnyValue:StringEquals/aws:TagKeys"));
            s["Effect"] == "Deny"
                && strings(s.get("Action")).iter().any(|a| a == action)
                && ownership.iter().all(|k| keys.iter().any(|x| x == k))
                // ... unless the tags come with a create (`<service>:CreateAction` is set then).
                && s.pointer("/Condition/Null").and_then(|n| n.as_object()).is_some_and(|o| {
                    let service = action.split(':').next().unwrap_or_default();
                    o.len() == 1 && o.get(&format!("{service}:CreateAction")).and_then(|v| v.as_str()) == Some("true")
                })
        });
        assert!(denied, "no Deny statement keeps {action} off the ownership tags {ownership:?} after create");
    }
}
