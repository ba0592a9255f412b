//! The contract between the controller and a cloud.
//!
//! ```text
//!   controller ── ensure(id, spec, record) ──▶ provider ──▶ cloud converges to spec
//!              ◀─ status (ingress, record) ──
//!              ── delete(id, record) ───────▶ nothing of id is left
//!              ── get(id, record) ─────────▶ what exists now (drift check)
//!              ── update_targets(id, spec) ─▶ only the targets converge (node set changed)
//! ```
//!
//! # Guarantees a provider gives
//! - `ensure` is idempotent: calling it again with the same arguments changes nothing and
//!   returns the same status. It converges *in place* where the cloud allows it.
//! - `ensure` and `delete` are safe to cancel at any await point and to re-run after a crash:
//!   every resource is found again by its deterministic name **and** its ownership tags.
//! - `delete` succeeds when nothing exists, and when an `ensure` never finished.
//! - A resource that has our name but not our ownership tags is a [`ProviderError::Conflict`]:
//!   it is never adopted, modified or deleted.
//! - Nothing outside `id` is touched.
//!
//! # Assumptions a provider may make
//! - The spec passed [`Capabilities::check`] (the controller rejects others before calling).
//! - `record` is what this provider returned for `id` earlier (or `None`/empty): it may be stale
//!   (a crash between the cloud call and the write of the record) but is never made up.
//!
//! # Errors
//! Every failure is a [`ProviderError`] whose `class()` drives the controller's retry policy.
//!
//! # Two kinds of load balancer
//! L4 (a Service: [`LoadBalancerSpec`]) through `ensure`/`delete`/`get`, and L7 (an Ingress,
//! later a Gateway: [`L7Spec`]) through `ensure_l7`/`delete_l7`/`get_l7`, with the same
//! guarantees. A provider that builds L7 load balancers says so in [`Capabilities::l7`]; the
//! controller never calls the L7 methods of one that does not (their defaults refuse, report
//! nothing and delete nothing). An id is only ever used for one kind.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::capabilities::Capabilities;
use crate::error::ProviderError;
use crate::error::Result;
use crate::l7::L7Spec;
use crate::spec::{LoadBalancerId, LoadBalancerSpec};
use crate::status::{LoadBalancerStatus, Record};
use crate::throttle::Waited;

/// One sample of a provider metric. Samples of one `name` must share `counter` and `help`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderMetric {
    /// Without the `cloudlb_` prefix and (for counters) without `_total`, e.g. `local_bytes`.
    pub name: &'static str,
    pub help: &'static str,
    /// A counter (monotonic) rather than a gauge.
    pub counter: bool,
    pub labels: Vec<(&'static str, String)>,
    /// A count, or seconds (see [`ProviderMetric::cloud_api_limiter_waits`]).
    pub value: f64,
}

impl ProviderMetric {
    pub fn counter(name: &'static str, help: &'static str, labels: Vec<(&'static str, String)>, value: u64) -> Self {
        Self { name, help, counter: true, labels, value: value as f64 }
    }

    pub fn gauge(name: &'static str, help: &'static str, labels: Vec<(&'static str, String)>, value: u64) -> Self {
        Self { name, help, counter: false, labels, value: value as f64 }
    }

    /// One counter sample per call (`service:Action`), labelled `call`.
    fn per_call(name: &'static str, help: &'static str, values: impl IntoIterator<Item = (String, f64)>) -> Vec<Self> {
        values
            .into_iter()
            .map(|(call, value)| Self { name, help, counter: true, labels: vec![("call", call)], value })
            .collect()
    }

    /// `cloud_api_calls{call}` from a provider's call counts by `service:Action`.
    pub fn cloud_api_calls(counts: BTreeMap<String, u64>) -> Vec<Self> {
        let counts = counts.into_iter().map(|(call, n)| (call, n as f64));
        Self::per_call("cloud_api_calls", "Cloud API calls, by service:Action", counts)
    }

    /// `cloud_api_throttles{call}`: responses of the cloud API that said "slow down" (AWS
    /// `Throttling`, `RequestLimitExceeded`, HTTP 429; Google `rateLimitExceeded`), counted per
    /// attempt where the provider can see attempts (an SDK's own retries included), by
    /// `service:Action`.
    pub fn cloud_api_throttles(counts: BTreeMap<String, u64>) -> Vec<Self> {
        let counts = counts.into_iter().map(|(call, n)| (call, n as f64));
        Self::per_call(
            "cloud_api_throttles",
            "Cloud API responses that throttled the call (each attempt), by service:Action",
            counts,
        )
    }

    /// `cloud_api_limiter_waits{call}` and `cloud_api_limiter_wait_seconds{call}`: calls that
    /// waited for a token of the provider's client-side rate limit, and how long they waited in
    /// all. A rising wait means the controller, not the cloud, is holding calls back.
    pub fn cloud_api_limiter_waits(waits: BTreeMap<String, Waited>) -> Vec<Self> {
        let calls = waits.iter().map(|(call, w)| (call.clone(), w.calls as f64));
        let seconds = waits.iter().map(|(call, w)| (call.clone(), w.seconds));
        let mut out = Self::per_call(
            "cloud_api_limiter_waits",
            "Cloud API calls that waited for a client-side rate-limit token, by service:Action",
            calls,
        );
        out.extend(Self::per_call(
            "cloud_api_limiter_wait_seconds",
            "Time cloud API calls waited for a client-side rate-limit token, by service:Action",
            seconds,
        ));
        out
    }
}

/// A load balancer a provider finds in the cloud by its ownership marks ([`Provider::list_owned`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedLoadBalancer {
    /// Cluster, owner (`namespace/name`) and uid, as the marks say.
    pub id: LoadBalancerId,
    /// Made by `ensure_l7` (an Ingress) rather than `ensure`.
    pub l7: bool,
    /// When its oldest resource was made, if the cloud says.
    pub created: Option<std::time::SystemTime>,
    /// Its resources, as the cloud names them (for a report).
    pub resources: Vec<String>,
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Short name (`aws`, `gcp`, `local`, `memory`), used in logs and metrics.
    fn name(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// Provider-specific problems with `spec` (its `options`, e.g. a malformed annotation value),
    /// in words a user can act on; empty when the provider can build it. Called before any
    /// cloud call, together with [`Capabilities::check`]; must not do I/O.
    fn validate(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        let _ = spec;
        Vec::new()
    }

    /// Parts of `spec` the provider will build *without* (e.g. nodes it cannot register), in
    /// words a user can act on. Unlike [`Provider::validate`] these do not block the load
    /// balancer; the controller shows them in the condition and as a Warning event. No I/O.
    fn warnings(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        let _ = spec;
        Vec::new()
    }

    /// Create or update the load balancer for `id` so that it implements `spec`.
    ///
    /// `record` is what was recorded after the last successful call (e.g. the allocated address,
    /// which should be kept).
    async fn ensure(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> Result<LoadBalancerStatus>;

    /// Converge only the targets of `id` to `spec.targets`: the controller calls this when
    /// nothing but the node set changed since `spec` was last ensured (same
    /// [`LoadBalancerSpec::frontend_digest`]), and after a restart when the targets may have
    /// changed while it was down. A provider reads what is registered and changes only the
    /// difference: no call at all when the targets are already right, and nothing but targets
    /// touched (no listener, attribute or tag reads or writes). The address does not change, so
    /// nothing is returned. The default is a full `ensure`, right for providers whose ensure is
    /// cheap and in place (memory, local).
    async fn update_targets(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> Result<()> {
        self.ensure(id, spec, record).await.map(|_| ())
    }

    /// Remove everything made for `id`. Succeeds when nothing exists.
    async fn delete(&self, id: &LoadBalancerId, record: Option<&Record>) -> Result<()>;

    /// What exists for `id` now, without changing anything; `None` when nothing does.
    async fn get(&self, id: &LoadBalancerId, record: Option<&Record>) -> Result<Option<LoadBalancerStatus>>;

    /// The cloud's state of the load balancer `id` (either layer) and, once it is active, its
    /// targets' health (see [`crate::observed`]); `None` when the provider cannot tell or nothing
    /// exists. Reads only, and cheap: the controller calls it while the cloud is provisioning
    /// (to publish readiness without a full ensure) and to follow target health (often while
    /// some target is unhealthy, with the drift check otherwise). The default is `None`: an
    /// in-process load balancer is active once made and has no health checks of its own.
    async fn observe(&self, id: &LoadBalancerId, record: Option<&Record>) -> Result<Option<crate::Observed>> {
        let _ = (id, record);
        Ok(None)
    }

    /// [`Provider::validate`] for an L7 spec (checked with [`crate::L7Capabilities::check`]).
    fn validate_l7(&self, spec: &L7Spec) -> Vec<String> {
        let _ = spec;
        Vec::new()
    }

    /// [`Provider::warnings`] for an L7 spec.
    fn warnings_l7(&self, spec: &L7Spec) -> Vec<String> {
        let _ = spec;
        Vec::new()
    }

    /// Create or update the L7 load balancer for `id` so that it implements `spec`.
    async fn ensure_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> Result<LoadBalancerStatus> {
        let _ = (id, spec, record);
        Err(ProviderError::Invalid {
            call: "ensure_l7",
            message: format!("the {} provider does not build HTTP (L7) load balancers", self.name()),
        })
    }

    /// [`Provider::update_targets`] for an L7 load balancer (the node set changed, nothing else).
    async fn update_targets_l7(&self, id: &LoadBalancerId, spec: &L7Spec, record: Option<&Record>) -> Result<()> {
        self.ensure_l7(id, spec, record).await.map(|_| ())
    }

    /// Remove everything made for the L7 load balancer `id`. Succeeds when nothing exists.
    async fn delete_l7(&self, id: &LoadBalancerId, record: Option<&Record>) -> Result<()> {
        let _ = (id, record);
        Ok(())
    }

    /// The provider's own metrics at this moment (a data plane's traffic counters, cloud API
    /// calls by action), exported with the controller's on `/metrics`. Cheap: called on every
    /// scrape. The default is none.
    fn metrics(&self) -> Vec<ProviderMetric> {
        Vec::new()
    }

    /// What [`Provider::ensure`] would change now, changing nothing (see [`crate::dry_run`]).
    /// The default refuses: in-process providers have no cloud to plan against.
    async fn plan(&self, id: &LoadBalancerId, spec: &LoadBalancerSpec, record: Option<&Record>) -> Result<crate::Plan> {
        let _ = (id, spec, record);
        Err(crate::dry_run::unsupported(self.name()))
    }

    /// [`Provider::plan`] for an L7 load balancer.
    async fn plan_l7(&self, id: &LoadBalancerId, spec: &L7Spec, record: Option<&Record>) -> Result<crate::Plan> {
        let _ = (id, spec, record);
        Err(crate::dry_run::unsupported(self.name()))
    }

    /// Every load balancer of `cluster` in the cloud, found by its ownership marks whatever any
    /// record says, one entry per owner uid (half-made ones included): what `cloudlb gc`
    /// compares with the cluster's objects. Reads only. The default is none: a provider whose
    /// state lives in the process has nothing that outlives its objects.
    async fn list_owned(&self, cluster: &str) -> Result<Vec<OwnedLoadBalancer>> {
        let _ = cluster;
        Ok(Vec::new())
    }

    /// What exists for the L7 load balancer `id` now; `None` when nothing does.
    async fn get_l7(&self, id: &LoadBalancerId, record: Option<&Record>) -> Result<Option<LoadBalancerStatus>> {
        let _ = (id, record);
        Ok(None)
    }
}
