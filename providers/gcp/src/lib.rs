//! `cloudlb-provider-gcp`: Compute Engine backend-service network load balancers for
//! LoadBalancer Services (the path GKE moved to, "RBS" NetLB; internal ones too).
//!
//! ```text
//!   Service ──▶ forwarding rule (regional; IP, protocol TCP | UDP | L3_DEFAULT, ports)
//!                   │ backendService
//!                   ▼
//!               backend service (regional; EXTERNAL | INTERNAL, CONNECTION balancing)
//!                   │ healthChecks                 │ backends
//!                   ▼                              ▼
//!   health check (regional, HTTP /healthz:      instance groups, one per zone, shared by the
//!     healthCheckNodePort | shared :10256)       cluster, holding the nodes (providerID)
//!   firewalls: source ranges -> Service ports at the IP; Google's checker ranges -> check port
//!   address: only while the Service asks for its IP (loadBalancerIP), or to hold the IP while a
//!            forwarding rule is re-created; a user's reserved address is used, never released
//! ```
//!
//! Why it is built this way:
//! - **Ownership by description** (`ownership.rs`): Compute has labels on addresses and
//!   forwarding rules only, so every resource carries a JSON `description` naming the cluster,
//!   the Service and its uid; a resource with our deterministic name (`names.rs`) but another
//!   description is a `Conflict`, never adopted, changed or deleted.
//! - **Operations are awaited and their `error` checked** (`clients.rs`): a `DONE` operation can
//!   carry a failure, which the client library does not turn into an error by itself.
//! - **Errors by HTTP status and reason** (`errors.rs`), synchronous or inside the operation.
//! - **Plan, then apply** (`plan.rs` is pure; `ensure.rs` applies): rules are unit-tested without
//!   the fake, and `validate` reuses them without I/O.
//! - **In place where Compute allows it**: backend services with their fingerprint, health checks
//!   and firewalls by update, instance-group membership by difference; only an immutable
//!   forwarding-rule field re-creates the rule, keeping its IP.
//! - **Shared client-side rate limits, deletes first** (`throttle.rs`).
//!
//! Nodes without a usable providerID (`gce://<project>/<zone>/<name>` in this project and region)
//! are not backends; [`Provider::warnings`] names them and `ensure` never fails on them.

mod clients;
pub mod config;
mod delete;
mod ensure;
pub mod errors;
pub mod gclb;
mod inventory;
pub mod links;
pub mod names;
pub mod options;
pub mod ownership;
pub mod plan;
pub mod record;
mod resources;
pub mod throttle;

use std::collections::BTreeMap;

use async_trait::async_trait;
use cloudlb_provider::{
    Capabilities, IpFamily, IpMode, L7Capabilities, L7Spec, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus,
    Protocol, Provider, ProviderError, Record, StateLocation,
};

pub use config::{GcpConfig, Polling, Rate, RateLimits};
pub use plan::SkippedTarget;
/// Every Compute method the provider calls (`compute.<collection>.<method>`).
pub fn calls() -> impl Iterator<Item = &'static str> {
    resources::ALL_CALLS.iter().chain(resources::global::ALL_CALLS).chain(inventory::CALLS).copied()
}

use clients::{Api, Clients};
use throttle::{Limiter, Priority};

/// Annotations under these prefixes arrive in `spec.options` with the prefix cut (e.g.
/// `load-balancer-type`, `network-tier`; for Ingresses `global-static-ip-name`, `pre-shared-cert`).
pub const OPTION_PREFIXES: &[&str] = &[
    "cloud.google.com/",
    "networking.gke.io/",
    "gcp.cloudlb.io/",
    "kubernetes.io/ingress.",
    "ingress.gcp.kubernetes.io/",
];

/// Ports per Service this provider accepts (one firewall rule lists them).
pub const MAX_LISTENERS: usize = 100;

pub struct GcpProvider {
    config: GcpConfig,
    clients: Clients,
    limiter: Limiter,
    /// The cluster's shared resources (the per-zone instance groups, the node health check and
    /// its firewall rule) are deleted when no backend service uses them any more. An ensure in
    /// flight has made (or found) them but not attached them to its backend service yet: a
    /// delete of another load balancer at that moment would find them unused and delete them,
    /// and the ensure would fail on a missing group. Ensures hold this lock shared, deletes of
    /// shared resources exclusively. One process acts at a time (leader election and its
    /// fence), so a lock in the process is enough.
    shared: tokio::sync::RwLock<()>,
    /// Concurrent ensures all find a shared resource missing (a new cluster) or a group's
    /// members out of date (a node joined): the first makes the change while the others wait and
    /// then find it done, instead of each inserting or adding the same node and all but one
    /// failing (409, `memberAlreadyExists`, `resourceNotReady`) into a backoff. Only a change
    /// takes it: reads that find everything right do not.
    changing_shared: tokio::sync::Mutex<()>,
}

impl GcpProvider {
    /// Build the Compute clients (Application Default Credentials, or anonymous against a fake
    /// endpoint). Makes no API call.
    pub async fn new(config: GcpConfig) -> Result<Self, ProviderError> {
        for (flag, value) in
            [("--gcp-project", &config.project), ("--gcp-region", &config.region), ("--gcp-network", &config.network)]
        {
            if value.trim().is_empty() {
                return Err(ProviderError::Invalid {
                    call: "gcp:config",
                    message: format!("the gcp provider needs {flag}"),
                });
            }
        }
        let clients = Clients::new(&config).await?;
        let limiter = Limiter::new(&config.rate_limits);
        Ok(Self { config, clients, limiter, shared: Default::default(), changing_shared: Default::default() })
    }

    pub fn config(&self) -> &GcpConfig {
        &self.config
    }

    /// Compute API calls made so far, by method (`compute.forwardingRules.insert`); operation
    /// polls are not counted.
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.limiter.counts()
    }

    /// Nodes of `spec` that cannot be backends, with the reason. Pure.
    pub fn skipped_targets(&self, spec: &LoadBalancerSpec) -> Vec<SkippedTarget> {
        plan::targets(&spec.targets, &self.config).1
    }

    fn api(&self, priority: Priority) -> Api<'_> {
        self.api_with(priority, None)
    }

    fn api_with<'a>(&'a self, priority: Priority, dry_run: Option<&'a cloudlb_provider::DryRun>) -> Api<'a> {
        Api {
            dry_run,
            clients: &self.clients,
            limiter: &self.limiter,
            priority,
            config: &self.config,
            shared: &self.shared,
            changing_shared: &self.changing_shared,
        }
    }
}

#[async_trait]
impl Provider for GcpProvider {
    fn name(&self) -> &'static str {
        "gcp"
    }

    /// Cloud API calls, throttling answers and client-side limiter waits so far, by method.
    fn metrics(&self) -> Vec<cloudlb_provider::ProviderMetric> {
        let mut out = cloudlb_provider::ProviderMetric::cloud_api_calls(self.call_counts());
        out.extend(cloudlb_provider::ProviderMetric::cloud_api_throttles(self.limiter.throttles()));
        out.extend(cloudlb_provider::ProviderMetric::cloud_api_limiter_waits(self.limiter.waits()));
        out
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            protocols: vec![Protocol::Tcp, Protocol::Udp],
            // TCP and UDP together: backend service UNSPECIFIED + forwarding rule L3_DEFAULT.
            mixed_protocols: true,
            same_port_multiple_protocols: true,
            source_ranges: true,
            requested_ip: true,
            internal: true,
            client_ip_affinity: true,
            ip_families: vec![IpFamily::IPv4],
            max_listeners: MAX_LISTENERS,
            ip_mode: IpMode::VIP,
            state: StateLocation::Durable,
            drift_check: cloudlb_provider::DriftCheck::SpecHash,
            l7: Some(L7Capabilities {
                https: true,
                any_port: true,
                redirect_to_https: true,
                method_matches: true,
                header_matches: true,
                query_matches: true,
                weighted_backends: true,
                // Would need a Cloud Armor policy, which is not built.
                source_ranges: false,
                // The address is chosen by name: kubernetes.io/ingress.global-static-ip-name.
                requested_ip: false,
                internal: false,
                // Per host; `validate_l7` checks each path matcher.
                max_routes: usize::MAX,
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
            self.skipped_targets(spec).into_iter().map(|s| format!("node {} is not a backend: {}", s.node, s.reason));
        ignored.chain(skipped).collect()
    }

    fn validate(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        let (opts, problems) = options::parse(&spec.options);
        let mut out: Vec<String> = problems.into_iter().filter(|p| p.fatal).map(|p| p.message).collect();
        out.extend(plan::spec_problems(spec, &opts, &self.config));
        out
    }

    async fn ensure(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> Result<LoadBalancerStatus, ProviderError> {
        ensure::ensure(&self.api(Priority::Normal), id, spec, record).await
    }

    async fn delete(&self, id: &LoadBalancerId, record: Option<&Record>) -> Result<(), ProviderError> {
        delete::delete(&self.api(Priority::High), id, record).await
    }

    async fn get(
        &self,
        id: &LoadBalancerId,
        record: Option<&Record>,
    ) -> Result<Option<LoadBalancerStatus>, ProviderError> {
        delete::get(&self.api(Priority::Normal), id, record).await
    }

    fn validate_l7(&self, spec: &L7Spec) -> Vec<String> {
        gclb::ensure::fatal_problems(spec)
    }

    fn warnings_l7(&self, spec: &L7Spec) -> Vec<String> {
        gclb::warnings(spec, &self.config)
    }

    async fn ensure_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        _record: Option<&Record>,
    ) -> Result<LoadBalancerStatus, ProviderError> {
        gclb::ensure::ensure(&self.api(Priority::Normal), id, spec).await
    }

    async fn update_targets_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> Result<(), ProviderError> {
        gclb::update_targets(&self.api(Priority::Normal), id, spec, record).await
    }

    async fn delete_l7(&self, id: &LoadBalancerId, record: Option<&Record>) -> Result<(), ProviderError> {
        gclb::delete(&self.api(Priority::High), id, record).await
    }

    /// The ensure with every mutation recorded and skipped (see `clients.rs`).
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
        _record: Option<&Record>,
    ) -> Result<cloudlb_provider::Plan, ProviderError> {
        let dry = cloudlb_provider::DryRun::default();
        dry.run(gclb::ensure::ensure(&self.api_with(Priority::Normal, Some(&dry)), id, spec)).await
    }

    /// One list per collection, by our name prefix and descriptions (see `inventory.rs`).
    async fn list_owned(&self, cluster: &str) -> Result<Vec<cloudlb_provider::OwnedLoadBalancer>, ProviderError> {
        inventory::list_owned(&self.api(Priority::Normal), cluster).await
    }

    async fn get_l7(
        &self,
        id: &LoadBalancerId,
        record: Option<&Record>,
    ) -> Result<Option<LoadBalancerStatus>, ProviderError> {
        gclb::get(&self.api(Priority::Normal), id, record).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_iam_role_grants_every_call() {
        let role = include_str!("../../../deploy/gcp/role.yaml");
        let granted: Vec<&str> = role.lines().filter_map(|l| l.trim().strip_prefix("- ")).collect();
        for call in crate::calls() {
            let permission = crate::errors::permission(call);
            assert!(granted.contains(&permission.as_str()), "deploy/gcp/role.yaml lacks {permission} (for {call})");
        }
        for extra in ["compute.regionOperations.get", "compute.zoneOperations.get", "compute.globalOperations.get"] {
            assert!(granted.contains(&extra), "{extra}");
        }
    }
}
