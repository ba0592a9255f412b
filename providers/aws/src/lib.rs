//! `cloudlb-provider-aws`: Network Load Balancers (ELBv2) for LoadBalancer Services.
//!
//! ```text
//!   Service ports ──▶ listeners (TCP | UDP | TCP_UDP | TLS), one per port
//!                         │ forward
//!                         ▼
//!                    target groups (instance, port = nodePort), one per port
//!                         │ RegisterTargets (batched)
//!                         ▼
//!                    nodes' EC2 instances (from Node.spec.providerID)
//!   source ranges ──▶ security group owned by the load balancer
//!   backend group  ──▶ the cluster's, on every load balancer; the nodes' security groups admit
//!                      it on the target groups' ports (`node_security.rs`)
//! ```
//!
//! Why it is built this way:
//! - **Ownership by tags** (`tags.rs`): every resource is found by a deterministic name
//!   (`names.rs`) and used only when its `cloudlb.io/cluster` + `cloudlb.io/owner-uid` tags say it
//!   is ours; anything else with our name is a `Conflict`, never adopted or deleted.
//! - **Look up before create**, everywhere: creation is not idempotent on every backend.
//! - **Plan, then apply** (`plan.rs` is pure; `ensure.rs` applies): rules are unit-tested without
//!   an emulator, and `validate` reuses them without I/O.
//! - **Delete from the record** (`record.rs`, `delete.rs`), by name + tags when it is missing.
//! - **Shared client-side rate limits, deletes first** (`throttle.rs`), and one error mapping
//!   (`errors.rs`) that names the failing AWS call.
//! - **Leaks found by tags** (`tagged.rs`): a target group an interrupted ensure made and never
//!   attached or recorded is found through the Resource Groups Tagging API, by the next ensure
//!   that follows an interrupted one and by every delete.
//! - **Between ensures** (`observe.rs`): a load balancer still `provisioning` is published at once
//!   and followed with one describe; `failed` is a permanent error; the targets' health comes from
//!   the record's target groups. The drift check is a planned ensure
//!   ([`cloudlb_provider::DriftCheck::Plan`]), so listeners, target groups, targets, rules and
//!   attributes changed behind our back are found, not only the load balancer.
//!
//! Targets without a usable instance id (no providerID, or not `aws:///zone/i-...`) are skipped
//! with a warning log and never fail `ensure`: a load balancer with no usable target keeps its
//! address (the spec allows empty target sets). [`AwsProvider::skipped_targets`] lists them so the
//! controller can surface them (e.g. as a Warning event).

pub mod alb;
mod clients;
pub mod config;
mod delete;
mod ensure;
mod errors;
pub mod health;
mod inventory;
mod listeners;
mod load_balancer;
pub mod names;
mod node_security;
mod observe;
pub mod options;
pub mod plan;
mod planned;
pub mod record;
mod security_group;
pub mod subnets;
mod tagged;
pub mod tags;
mod target_groups;
mod targets;
pub mod throttle;

use std::collections::BTreeMap;

use async_trait::async_trait;
use cloudlb_provider::{
    Capabilities, IpFamily, IpMode, L7Capabilities, L7Spec, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus,
    Protocol, Provider, ProviderError, ProviderMetric, Record, StateLocation,
};

pub use config::{AwsConfig, Rate, RateLimits};
pub use plan::SkippedTarget;

use clients::{Api, Clients};
use throttle::{Limiter, Priority};

/// Annotations under these prefixes arrive in `spec.options` with the prefix cut
/// (e.g. `ssl-cert`, `healthcheck-interval`, `scheme`, `internal`).
/// For Ingresses also `alb.ingress.kubernetes.io/` (the AWS Load Balancer Controller's keys).
pub const OPTION_PREFIXES: &[&str] =
    &["service.beta.kubernetes.io/aws-load-balancer-", "aws.cloudlb.io/", alb::options::PREFIX];

/// NLB quota: listeners per load balancer.
pub const MAX_LISTENERS: usize = 50;

pub struct AwsProvider {
    config: AwsConfig,
    clients: Clients,
    limiter: Limiter,
    /// Target groups whose ownership was checked (targets-only updates trust only these).
    verified: targets::Verified,
    /// Node security groups: caches and the lock serializing their rule changes.
    node: node_security::NodeSecurity,
}

impl AwsProvider {
    /// Build the SDK clients (credentials from the standard chain) and check that credentials
    /// exist. Makes no AWS API call.
    pub async fn new(config: AwsConfig) -> Result<Self, ProviderError> {
        if config.region.trim().is_empty() || config.vpc_id.trim().is_empty() {
            return Err(ProviderError::Invalid {
                call: "aws:config",
                message: "the aws provider needs a region and a VPC id".into(),
            });
        }
        let limiter = Limiter::new(&config.rate_limits);
        let clients = Clients::new(&config, limiter.throttles()).await?;
        Ok(Self { config, clients, limiter, verified: Default::default(), node: Default::default() })
    }

    pub fn config(&self) -> &AwsConfig {
        &self.config
    }

    /// AWS API calls made so far, by `service:Action` (tests, metrics).
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.limiter.counts()
    }

    /// Responses that throttled a call so far (each attempt, SDK retries included), by
    /// `service:Action` (tests, metrics).
    pub fn throttle_counts(&self) -> BTreeMap<String, u64> {
        self.limiter.throttles().snapshot()
    }

    /// Nodes of `spec` that cannot be registered (no EC2 instance id in their providerID), with
    /// the reason. Pure; the controller may turn them into a Warning event.
    pub fn skipped_targets(spec: &LoadBalancerSpec) -> Vec<SkippedTarget> {
        plan::targets(&spec.targets).1
    }

    fn api(&self, priority: Priority) -> Api<'_> {
        self.api_with(priority, None)
    }

    fn api_with<'a>(&'a self, priority: Priority, dry_run: Option<&'a cloudlb_provider::DryRun>) -> Api<'a> {
        Api {
            dry_run,
            elb: &self.clients.elb,
            ec2: &self.clients.ec2,
            acm: &self.clients.acm,
            tagging: &self.clients.tagging,
            limiter: &self.limiter,
            priority,
            config: &self.config,
            node: &self.node,
        }
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn name(&self) -> &'static str {
        "aws"
    }

    /// Cloud API calls so far, by `service:Action` (the client-side count: the controller's
    /// retries included, the SDK's own not), the responses that throttled them (each attempt),
    /// and the time they waited for the client-side rate limit.
    fn metrics(&self) -> Vec<ProviderMetric> {
        let mut out = ProviderMetric::cloud_api_calls(self.call_counts());
        out.extend(ProviderMetric::cloud_api_throttles(self.throttle_counts()));
        out.extend(ProviderMetric::cloud_api_limiter_waits(self.limiter.waits()));
        out
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            protocols: vec![Protocol::Tcp, Protocol::Udp],
            mixed_protocols: true,
            // Same port with TCP and UDP = one TCP_UDP listener (same nodePort required; see validate).
            same_port_multiple_protocols: true,
            source_ranges: true,
            requested_ip: false,
            internal: true,
            // Target-group stickiness by source IP (the timeout is not configurable on NLBs).
            client_ip_affinity: true,
            ip_families: vec![IpFamily::IPv4],
            max_listeners: MAX_LISTENERS,
            ip_mode: IpMode::VIP,
            state: StateLocation::Durable,
            drift_check: cloudlb_provider::DriftCheck::Plan,
            l7: Some(L7Capabilities {
                https: true,
                any_port: true,
                redirect_to_https: true,
                method_matches: true,
                header_matches: true,
                query_matches: true,
                weighted_backends: true,
                source_ranges: true,
                requested_ip: false,
                internal: true,
                max_routes: alb::plan::MAX_RULES,
                ip_mode: IpMode::Proxy,
            }),
        }
    }

    /// Unknown or unsupported annotation keys under our prefixes are warnings, not errors:
    /// `ensure` never reads them, and a typo in one must not block a Service.
    fn warnings(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        let (_, problems) = options::parse(&spec.options);
        let ignored = problems.into_iter().filter(|p| !p.fatal).map(|p| format!("{} (ignored)", p.message));
        let skipped =
            Self::skipped_targets(spec).into_iter().map(|s| format!("node {} is not a target: {}", s.node, s.reason));
        ignored.chain(skipped).collect()
    }

    fn validate(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        ensure::fatal_problems(spec, self.config.security_group_rules_quota)
    }

    async fn ensure(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> Result<LoadBalancerStatus, ProviderError> {
        ensure::ensure(&self.api(Priority::Normal), id, spec, record).await
    }

    async fn update_targets(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> Result<(), ProviderError> {
        let api = self.api(Priority::Normal);
        if targets::update(&api, id, spec, record, &self.verified).await? {
            return Ok(());
        }
        ensure::ensure(&api, id, spec, record).await.map(|_| ())
    }

    async fn delete(&self, id: &LoadBalancerId, record: Option<&Record>) -> Result<(), ProviderError> {
        delete::delete(&self.api(Priority::High), id, record).await?;
        self.verified.forget(&id.uid);
        Ok(())
    }

    async fn get(
        &self,
        id: &LoadBalancerId,
        record: Option<&Record>,
    ) -> Result<Option<LoadBalancerStatus>, ProviderError> {
        delete::get(&self.api(Priority::Normal), id, record).await
    }

    fn validate_l7(&self, spec: &L7Spec) -> Vec<String> {
        // The id only names resources; problems do not depend on it.
        alb::fatal_problems(&LoadBalancerId::new("validate", "", "", ""), spec, self.config.security_group_rules_quota)
    }

    fn warnings_l7(&self, spec: &L7Spec) -> Vec<String> {
        alb::warnings(&LoadBalancerId::new("validate", "", "", ""), spec)
    }

    async fn ensure_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> Result<LoadBalancerStatus, ProviderError> {
        alb::ensure(&self.api(Priority::Normal), id, spec, record).await
    }

    async fn update_targets_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> Result<(), ProviderError> {
        let api = self.api(Priority::Normal);
        if alb::update_targets(&api, id, spec, record, &self.verified).await? {
            return Ok(());
        }
        alb::ensure(&api, id, spec, record).await.map(|_| ())
    }

    /// The ensure with every mutation recorded and skipped (`Api::mutate`, placeholders in
    /// `planned.rs`).
    async fn plan(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> Result<cloudlb_provider::Plan, ProviderError> {
        let dry = cloudlb_provider::DryRun::default();
        dry.run(ensure::ensure(&self.api_with(Priority::Normal, Some(&dry)), id, spec, record)).await
    }

    async fn plan_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> Result<cloudlb_provider::Plan, ProviderError> {
        let dry = cloudlb_provider::DryRun::default();
        dry.run(alb::ensure(&self.api_with(Priority::Normal, Some(&dry)), id, spec, record)).await
    }

    /// The recorded load balancer's state and its targets' health (see `observe.rs`).
    async fn observe(
        &self,
        id: &LoadBalancerId,
        record: Option<&Record>,
    ) -> Result<Option<cloudlb_provider::Observed>, ProviderError> {
        observe::observe(&self.api(Priority::Normal), id, record, &self.verified).await
    }

    /// One tagging-API sweep of the cluster's resources (see `inventory.rs`).
    async fn list_owned(&self, cluster: &str) -> Result<Vec<cloudlb_provider::OwnedLoadBalancer>, ProviderError> {
        inventory::list_owned(&self.api(Priority::Normal), cluster).await
    }

    async fn delete_l7(&self, id: &LoadBalancerId, record: Option<&Record>) -> Result<(), ProviderError> {
        alb::delete(&self.api(Priority::High), id, record).await?;
        self.verified.forget(&id.uid);
        Ok(())
    }

    async fn get_l7(
        &self,
        id: &LoadBalancerId,
        record: Option<&Record>,
    ) -> Result<Option<LoadBalancerStatus>, ProviderError> {
        alb::get(&self.api(Priority::Normal), id, record).await
    }
}
