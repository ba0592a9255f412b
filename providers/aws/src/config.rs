//! How the provider is configured: where (region, VPC, subnets, endpoint) and how fast it may
//! call AWS (client-side token buckets, SDK retries).
//!
//! Everything has a default except the region and the VPC, which only the operator knows.

use std::time::Duration;

pub use cloudlb_provider::throttle::Rate;

/// Client-side rate limits per API class, shared by every call the provider makes.
///
/// The ELBv2 defaults are the AWS Load Balancer Controller's (Register/DeregisterTargets 4/s burst
/// 20, Describe* 50/s burst 200, Modify* 3/s burst 20); creates and deletes get their own bucket so
/// that a burst of new Services cannot starve target updates. EC2 has its own account budget.
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimits {
    /// `elbv2:Describe*`.
    pub describe: Rate,
    /// `elbv2:RegisterTargets`, `elbv2:DeregisterTargets`.
    pub register: Rate,
    /// `elbv2:Modify*`, `elbv2:Set*`, `elbv2:AddTags`, `elbv2:RemoveTags`.
    pub modify: Rate,
    /// `elbv2:Create*`, `elbv2:Delete*`.
    pub create_delete: Rate,
    /// `ec2:Describe*`.
    pub ec2_describe: Rate,
    /// Every other EC2 call (security groups).
    pub ec2_mutate: Rate,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            describe: Rate::new(50.0, 200.0),
            register: Rate::new(4.0, 20.0),
            modify: Rate::new(3.0, 20.0),
            create_delete: Rate::new(5.0, 20.0),
            ec2_describe: Rate::new(20.0, 100.0),
            ec2_mutate: Rate::new(5.0, 50.0),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AwsConfig {
    pub region: String,
    /// The VPC every load balancer, target group and security group lives in.
    pub vpc_id: String,
    /// Subnets for every load balancer; `None` = discover them by tags (see `subnets.rs`).
    pub subnets: Option<Vec<String>>,
    /// A non-AWS endpoint (an emulator such as moto), used for both ELBv2 and EC2.
    pub endpoint_url: Option<String>,
    pub rate_limits: RateLimits,
    /// Attempts per call inside the SDK (1 = no SDK retry; the controller retries anyway).
    pub max_attempts: u32,
    /// Per-attempt timeout of one API call.
    pub call_timeout: Duration,
    /// Delay asked of the controller while a load balancer is `provisioning`.
    pub provisioning_retry: Duration,
    /// Inbound rules one security group may have (the account's quota, AWS's default 60; IPv4
    /// and IPv6 rules count separately): a spec that needs more is refused before any call.
    pub security_group_rules_quota: usize,
    /// Give every load balancer the cluster's backend security group and open the nodes'
    /// security groups to it on the ports its target groups use (`node_security.rs`). Off: no
    /// backend group and no node rule is made (the nodes must already admit the load balancers).
    pub manage_node_security_groups: bool,
    /// One node rule per protocol for this whole port range (the NodePort range, e.g.
    /// 30000-32767) instead of one per node port: fewer rules (a node security group has 60 by
    /// default), at the price of opening every node port to the load balancers.
    pub node_port_range_rule: Option<(u16, u16)>,
}

/// AWS's default quota of inbound rules per security group (per address family).
pub const DEFAULT_SECURITY_GROUP_RULES_QUOTA: usize = 60;

impl AwsConfig {
    pub fn new(region: impl Into<String>, vpc_id: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            vpc_id: vpc_id.into(),
            subnets: None,
            endpoint_url: None,
            rate_limits: RateLimits::default(),
            max_attempts: 3,
            call_timeout: Duration::from_secs(30),
            provisioning_retry: Duration::from_secs(10),
            security_group_rules_quota: DEFAULT_SECURITY_GROUP_RULES_QUOTA,
            manage_node_security_groups: true,
            node_port_range_rule: None,
        }
    }
}

impl Default for AwsConfig {
    /// Region and VPC empty: fill them in (`AwsProvider::new` rejects empty values).
    fn default() -> Self {
        Self::new("", "")
    }
}
