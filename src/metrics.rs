//! Prometheus metrics and the health endpoints, served on `--metrics-addr`.
//!
//! Provider calls are counted here for every provider (through [`InstrumentedProvider`]), so the
//! claim "an unchanged Service costs no mutating cloud call" is observable in production, and
//! tests and benchmarks assert on the same counters users would graph.
//!
//! What each family means is in its help text and in the README's Metrics section;
//! `deploy/grafana/cloudlb-dashboard.json` graphs them (a test here keeps it to names this
//! binary exports).

mod queue;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use cloudlb_provider::{
    Capabilities, L7Spec, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus, Provider, ProviderMetric, Record,
    Result as PResult,
};
use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::{Error, Result};
use crate::liveness::Liveness;
pub use queue::WorkQueue;

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Call {
    Ensure,
    UpdateTargets,
    Delete,
    Get,
    /// `Provider::observe`: the state and targets' health between ensures.
    Observe,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
}

/// Label values are lowercase words from a `match`, never formatted from data.
impl EncodeLabelValue for Call {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Call::Ensure => "ensure",
            Call::UpdateTargets => "update_targets",
            Call::Delete => "delete",
            Call::Get => "get",
            Call::Observe => "observe",
        })
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
        })
    }
}

/// Which kind of load balancer a provider call is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Layer {
    L4,
    L7,
}

impl EncodeLabelValue for Layer {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Layer::L4 => "l4",
            Layer::L7 => "l7",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub call: Call,
    pub layer: Layer,
    pub result: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `Service` or `Ingress` (a front end's `KIND`).
    pub kind: &'static str,
    pub result: Outcome,
}

/// Why a pass failed: a small fixed set, from the error's class (see `Error::reason`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ErrorReason {
    /// The spec cannot be built (a malformed annotation, an unsupported protocol), or the
    /// provider refused it for good.
    Invalid,
    /// A cloud resource with our name is not ours (no ownership tags).
    Conflict,
    Quota,
    Permission,
    /// The cloud API asked us to slow down.
    Throttled,
    /// A network error, a 5xx, a dependency still being released: retried with backoff.
    Transient,
    /// The load balancer was still being made when it was read or deleted.
    Provisioning,
    /// The cloud gave up making the load balancer (aws state `failed`).
    Failed,
    /// The Kubernetes API answered 429 (API Priority and Fairness shedding load).
    KubeThrottled,
    /// The object changed since it was read (a 409); the next pass reads the new one.
    KubeConflict,
    /// Any other failed Kubernetes API request (refused, timed out, unreachable).
    KubeApi,
    /// The pass ran past `--reconcile-timeout` and was stopped.
    Timeout,
    Other,
}

impl EncodeLabelValue for ErrorReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            ErrorReason::Invalid => "invalid",
            ErrorReason::Conflict => "conflict",
            ErrorReason::Quota => "quota",
            ErrorReason::Permission => "permission",
            ErrorReason::Throttled => "throttled",
            ErrorReason::Transient => "transient",
            ErrorReason::Provisioning => "provisioning",
            ErrorReason::Failed => "failed",
            ErrorReason::KubeThrottled => "kube_throttled",
            ErrorReason::KubeConflict => "kube_conflict",
            ErrorReason::KubeApi => "kube_api",
            ErrorReason::Timeout => "timeout",
            ErrorReason::Other => "other",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub reason: ErrorReason,
}

/// A change of leadership of this process.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Transition {
    Acquired,
    /// Given up on a clean shutdown.
    Released,
    /// Not renewed in time, or taken by another holder; the process exits right after.
    Lost,
}

impl EncodeLabelValue for Transition {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Transition::Acquired => "acquired",
            Transition::Released => "released",
            Transition::Lost => "lost",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    transition: Transition,
}

/// The Kubernetes API client's own counters (see `api_limit` and `app::client`).
#[derive(Clone, Default)]
pub struct KubeApiMetrics {
    /// Responses 429 (each attempt, the client's own retries included).
    pub throttled: Counter,
    /// Requests that waited for a `--kube-api-qps` token, and how long in all.
    pub limiter_waits: Counter,
    pub limiter_wait_seconds: Counter<f64, AtomicU64>,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Failed passes by why (see [`Metrics::reconcile_failed`]).
    reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub provider_calls: Family<CallLabels, Counter>,
    pub provider_duration: Histogram,
    pub eligible_nodes: Gauge,
    pub node_set_changes: Counter,
    /// Set through [`Metrics::leadership`] (or to 1 when running without election).
    pub leader: Gauge,
    leader_transitions: Family<TransitionLabels, Counter>,
    /// Load balancers this process keeps per-object state for.
    pub tracked: Gauge,
    /// What waits in the controllers' work queues.
    pub queue: WorkQueue,
    pub kube_api: KubeApiMetrics,
    pub ready: AtomicBool,
    /// What `/healthz` checks (see `liveness`).
    pub liveness: Arc<Liveness>,
    /// Whose own metrics are exported too (set once the provider exists).
    provider: std::sync::OnceLock<Arc<dyn Provider>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cloudlb");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register("reconciles", "Reconciles, by kind of object and result", reconciles.clone());
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Passes that ended in a failure, by kind of object and reason (retried or waiting for a change)",
            reconcile_errors.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", reconcile_duration.clone());
        let provider_calls = Family::<CallLabels, Counter>::default();
        registry.register("provider_calls", "Provider calls, by call and result", provider_calls.clone());
        let provider_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register("provider_call_duration_seconds", "Duration of provider calls", provider_duration.clone());
        let eligible_nodes = Gauge::default();
        registry.register("eligible_nodes", "Nodes that load balancers send traffic to", eligible_nodes.clone());
        let node_set_changes = Counter::default();
        registry.register(
            "node_set_changes",
            "Changes of the eligible node set (each re-checks every load balancer's targets)",
            node_set_changes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process holds the leader Lease (or runs without election)",
            leader.clone(),
        );
        let leader_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "leader_transitions",
            "Leadership changes of this process: acquired, released (clean shutdown), lost",
            leader_transitions.clone(),
        );
        let queue = WorkQueue::default();
        queue.register(&mut registry);
        let kube_api = KubeApiMetrics::default();
        registry.register(
            "kube_api_throttled",
            "Kubernetes API responses 429 Too Many Requests (each attempt, retries included)",
            kube_api.throttled.clone(),
        );
        registry.register(
            "kube_api_limiter_waits",
            "Kubernetes API requests that waited for a --kube-api-qps token",
            kube_api.limiter_waits.clone(),
        );
        registry.register(
            "kube_api_limiter_wait_seconds",
            "Time Kubernetes API requests waited for a --kube-api-qps token",
            kube_api.limiter_wait_seconds.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "1, labelled with the version and commit of this binary", build_info.clone());
        build_info.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION"), commit: crate::COMMIT }).set(1);
        let tracked = Gauge::default();
        registry.register(
            "tracked_load_balancers",
            "Load balancers this process keeps state for (seen since start, not yet deleted)",
            tracked.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            provider_calls,
            provider_duration,
            eligible_nodes,
            node_set_changes,
            leader,
            leader_transitions,
            tracked,
            queue,
            kube_api,
            ready: AtomicBool::new(false),
            liveness: Default::default(),
            provider: Default::default(),
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        if let Some(p) = self.provider.get() {
            // The registry ends the exposition with `# EOF`; the provider's families go before it.
            let body = out.strip_suffix("# EOF\n").map(String::from).unwrap_or(out);
            out = body + &encode_provider_metrics(&p.metrics()) + "# EOF\n";
        }
        out
    }

    /// A pass over an object of `kind` failed for `reason`. Counted once per pass, where the
    /// pass ends: by `reconcile` for the errors it returns (retried with backoff), and where a
    /// pass gives up until something changes (an invalid spec, a permanent cloud error).
    pub fn reconcile_failed(&self, kind: &'static str, reason: ErrorReason) {
        self.reconcile_errors.get_or_create(&ErrorLabels { kind, reason }).inc();
    }

    /// Leadership changed: the `leader` gauge and the transitions counter move together.
    pub fn leadership(&self, transition: Transition) {
        self.leader.set(i64::from(transition == Transition::Acquired));
        self.leader_transitions.get_or_create(&TransitionLabels { transition }).inc();
    }

    /// Exports `provider`'s own metrics (see [`Provider::metrics`]) from now on.
    pub fn export_provider(&self, provider: Arc<dyn Provider>) {
        let _ = self.provider.set(provider);
    }

    fn provider_call(&self, call: Call, layer: Layer, ok: bool, started: Instant) {
        let result = if ok { Outcome::Ok } else { Outcome::Error };
        self.provider_calls.get_or_create(&CallLabels { call, layer, result }).inc();
        self.provider_duration.observe(started.elapsed().as_secs_f64());
    }
}

/// OpenMetrics text for provider samples: one family per name (in first-seen order), label
/// values escaped.
pub fn encode_provider_metrics(samples: &[ProviderMetric]) -> String {
    let mut names: Vec<&'static str> = Vec::new();
    for s in samples {
        if !names.contains(&s.name) {
            names.push(s.name);
        }
    }
    let mut out = String::new();
    for name in names {
        let family: Vec<&ProviderMetric> = samples.iter().filter(|s| s.name == name).collect();
        let first = family[0];
        let kind = if first.counter { "counter" } else { "gauge" };
        let _ = writeln!(out, "# HELP cloudlb_{name} {}", first.help);
        let _ = writeln!(out, "# TYPE cloudlb_{name} {kind}");
        for s in family {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let suffix = if s.counter { "_total" } else { "" };
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let _ = writeln!(out, "cloudlb_{name}{suffix}{labels} {}", s.value);
        }
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Serves `/metrics`, `/healthz` and `/readyz` until the process ends. Returns the bound address.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        what: "metrics server",
        addr,
        source,
    })?;
    let bound = listener.local_addr().map_err(|source| Error::Bind { what: "metrics server", addr, source })?;
    let m = metrics.clone();
    let r = metrics.clone();
    let l = metrics.liveness.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let l = l.clone();
                async move {
                    match l.check() {
                        Ok(()) => (StatusCode::OK, "ok".to_string()).into_response(),
                        Err(why) => {
                            tracing::error!(problem = %why, "liveness check failed");
                            (StatusCode::SERVICE_UNAVAILABLE, format!("not alive: {why}")).into_response()
                        }
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let r = r.clone();
                async move {
                    if r.ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ok").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready: leader still syncing").into_response()
                    }
                }
            }),
        );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(bound)
}

/// Wraps any provider and counts/times its calls.
pub struct InstrumentedProvider {
    pub inner: Arc<dyn Provider>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl Provider for InstrumentedProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn metrics(&self) -> Vec<cloudlb_provider::ProviderMetric> {
        self.inner.metrics()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn validate(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        self.inner.validate(spec)
    }

    fn warnings(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        self.inner.warnings(spec)
    }

    async fn ensure(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> PResult<LoadBalancerStatus> {
        let started = Instant::now();
        let r = self.inner.ensure(id, spec, record).await;
        self.metrics.provider_call(Call::Ensure, Layer::L4, r.is_ok(), started);
        r
    }

    async fn update_targets(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> PResult<()> {
        let started = Instant::now();
        let r = self.inner.update_targets(id, spec, record).await;
        self.metrics.provider_call(Call::UpdateTargets, Layer::L4, r.is_ok(), started);
        r
    }

    async fn delete(&self, id: &LoadBalancerId, record: Option<&Record>) -> PResult<()> {
        let started = Instant::now();
        let r = self.inner.delete(id, record).await;
        self.metrics.provider_call(Call::Delete, Layer::L4, r.is_ok(), started);
        r
    }

    async fn get(&self, id: &LoadBalancerId, record: Option<&Record>) -> PResult<Option<LoadBalancerStatus>> {
        let started = Instant::now();
        let r = self.inner.get(id, record).await;
        self.metrics.provider_call(Call::Get, Layer::L4, r.is_ok(), started);
        r
    }

    async fn observe(
        &self,
        id: &LoadBalancerId,
        record: Option<&Record>,
    ) -> PResult<Option<cloudlb_provider::Observed>> {
        let started = Instant::now();
        let r = self.inner.observe(id, record).await;
        self.metrics.provider_call(Call::Observe, Layer::L4, r.is_ok(), started);
        r
    }

    fn validate_l7(&self, spec: &L7Spec) -> Vec<String> {
        self.inner.validate_l7(spec)
    }

    fn warnings_l7(&self, spec: &L7Spec) -> Vec<String> {
        self.inner.warnings_l7(spec)
    }

    async fn ensure_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> PResult<LoadBalancerStatus> {
        let started = Instant::now();
        let r = self.inner.ensure_l7(id, spec, record).await;
        self.metrics.provider_call(Call::Ensure, Layer::L7, r.is_ok(), started);
        r
    }

    async fn update_targets_l7(&self, id: &LoadBalancerId, spec: &L7Spec, record: Option<&Record>) -> PResult<()> {
        let started = Instant::now();
        let r = self.inner.update_targets_l7(id, spec, record).await;
        self.metrics.provider_call(Call::UpdateTargets, Layer::L7, r.is_ok(), started);
        r
    }

    async fn delete_l7(&self, id: &LoadBalancerId, record: Option<&Record>) -> PResult<()> {
        let started = Instant::now();
        let r = self.inner.delete_l7(id, record).await;
        self.metrics.provider_call(Call::Delete, Layer::L7, r.is_ok(), started);
        r
    }

    async fn plan(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> PResult<cloudlb_provider::Plan> {
        self.inner.plan(id, spec, record).await
    }

    async fn plan_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> PResult<cloudlb_provider::Plan> {
        self.inner.plan_l7(id, spec, record).await
    }

    async fn list_owned(&self, cluster: &str) -> PResult<Vec<cloudlb_provider::OwnedLoadBalancer>> {
        self.inner.list_owned(cluster).await
    }

    async fn get_l7(&self, id: &LoadBalancerId, record: Option<&Record>) -> PResult<Option<LoadBalancerStatus>> {
        let started = Instant::now();
        let r = self.inner.get_l7(id, record).await;
        self.metrics.provider_call(Call::Get, Layer::L7, r.is_ok(), started);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_samples_are_families_with_escaped_labels() {
        let samples = vec![
            ProviderMetric::counter(
                "local_bytes",
                "Bytes",
                vec![("name", "a\"b".into()), ("direction", "in".into())],
                5,
            ),
            ProviderMetric::gauge("local_targets", "Targets", vec![], 2),
            ProviderMetric::counter(
                "local_bytes",
                "Bytes",
                vec![("name", "c\\d\n".into()), ("direction", "out".into())],
                7,
            ),
        ];
        let text = encode_provider_metrics(&samples);
        assert_eq!(
            text,
            "# HELP cloudlb_local_bytes Bytes\n# TYPE cloudlb_local_bytes counter\n\
             cloudlb_local_bytes_total{name=\"a\\\"b\",direction=\"in\"} 5\n\
             cloudlb_local_bytes_total{name=\"c\\\\d\\n\",direction=\"out\"} 7\n\
             # HELP cloudlb_local_targets Targets\n# TYPE cloudlb_local_targets gauge\ncloudlb_local_targets 2\n"
        );
    }

    #[test]
    fn failures_leadership_and_kube_api_counters_are_exported_with_fixed_labels() {
        let m = Metrics::default();
        m.reconcile_failed("Service", ErrorReason::Transient);
        m.reconcile_failed("Service", ErrorReason::Transient);
        m.reconcile_failed("Ingress", ErrorReason::KubeThrottled);
        m.leadership(Transition::Acquired);
        assert_eq!(m.leader.get(), 1);
        m.leadership(Transition::Released);
        assert_eq!(m.leader.get(), 0, "the gauge follows the transitions");
        m.kube_api.throttled.inc();
        let text = m.encode();
        for line in [
            "cloudlb_reconcile_errors_total{kind=\"Service\",reason=\"transient\"} 2",
            "cloudlb_reconcile_errors_total{kind=\"Ingress\",reason=\"kube_throttled\"} 1",
            "cloudlb_leader_transitions_total{transition=\"acquired\"} 1",
            "cloudlb_leader_transitions_total{transition=\"released\"} 1",
            "cloudlb_kube_api_throttled_total 1",
            "cloudlb_kube_api_limiter_wait_seconds_total 0.0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
        }
        assert!(!text.contains("transition=\"lost\""), "{text}");
    }

    /// One sample of every family the providers export: the local data plane's (an HTTP load
    /// balancer has them all) and the cloud providers' (through the core helpers they call).
    fn provider_samples() -> Vec<ProviderMetric> {
        use cloudlb_provider_local::stats::{HttpStats, LoadBalancerKind, LoadBalancerStats, LocalStats};
        let lb = LoadBalancerStats {
            namespace: "default".into(),
            name: "web".into(),
            uid: "u".into(),
            kind: LoadBalancerKind::L7,
            address: std::net::IpAddr::from([127, 240, 0, 1]),
            traffic: Default::default(),
            targets: Vec::new(),
            http: Some(HttpStats::default()),
            backends: Vec::new(),
        };
        let mut samples =
            cloudlb_provider_local::stats::metrics(&LocalStats { load_balancers: vec![lb], ..Default::default() });
        let call = || std::collections::BTreeMap::from([("elbv2:CreateLoadBalancer".to_string(), 1)]);
        samples.extend(ProviderMetric::cloud_api_calls(call()));
        samples.extend(ProviderMetric::cloud_api_throttles(call()));
        let waited = cloudlb_provider::throttle::Waited { calls: 1, seconds: 0.5 };
        samples.extend(ProviderMetric::cloud_api_limiter_waits(std::collections::BTreeMap::from([(
            "elbv2:DescribeLoadBalancers".to_string(),
            waited,
        )])));
        samples
    }

    /// `deploy/grafana/cloudlb-dashboard.json` is a Grafana dashboard on a Prometheus data source
    /// variable that graphs only what this binary exports: every `cloudlb_*` name in a query is a
    /// family of the controller's registry or of a provider's metrics, with the suffix of its
    /// type (`_total` for a counter, `_bucket`/`_sum`/`_count` for a histogram, none for a
    /// gauge). A renamed metric fails here instead of leaving an empty panel.
    #[test]
    fn the_grafana_dashboard_graphs_only_exported_metrics() {
        let text = Metrics::default().encode() + &encode_provider_metrics(&provider_samples());
        let types: std::collections::BTreeMap<&str, &str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_once(' ')).collect();
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../deploy/grafana/cloudlb-dashboard.json")).expect("dashboard JSON");
        assert_eq!(dashboard["uid"], "cloudlb");
        assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion");
        let vars = dashboard["templating"]["list"].as_array().expect("templating.list");
        assert!(
            vars.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
            "a Prometheus data source variable: {vars:?}"
        );
        let panels = dashboard["panels"].as_array().expect("panels");
        let mut ids = std::collections::BTreeSet::new();
        let mut used = std::collections::BTreeSet::new();
        for p in panels {
            assert!(ids.insert(p["id"].as_u64().expect("panel id")), "duplicate panel id {}", p["id"]);
            if p["type"] == "row" {
                assert!(p["panels"].as_array().is_some_and(Vec::is_empty), "rows hold no collapsed panels");
                continue;
            }
            let title = p["title"].as_str().expect("title");
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}: data source");
            let targets = p["targets"].as_array().filter(|t| !t.is_empty()).unwrap_or_else(|| panic!("{title}"));
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}: target data source");
                let expr = t["expr"].as_str().unwrap_or_else(|| panic!("{title}: no expr"));
                let mut rest = expr;
                while let Some(at) = rest.find("cloudlb_") {
                    let name: String =
                        rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    rest = &rest[at + name.len()..];
                    let family = [
                        ("_total", "counter"),
                        ("_bucket", "histogram"),
                        ("_sum", "histogram"),
                        ("_count", "histogram"),
                        ("", "gauge"),
                    ]
                    .iter()
                    .find_map(|(suffix, kind)| {
                        let family = name.strip_suffix(suffix)?;
                        (types.get(family) == Some(kind)).then_some(family)
                    })
                    .unwrap_or_else(|| panic!("{title}: {name} in `{expr}` is not exported (families: {types:?})"));
                    used.insert(family.to_string());
                }
            }
        }
        for family in [
            "reconciles",
            "reconcile_errors",
            "reconcile_duration_seconds",
            "workqueue_depth",
            "workqueue_wait_seconds",
            "provider_calls",
            "provider_call_duration_seconds",
            "cloud_api_calls",
            "cloud_api_throttles",
            "eligible_nodes",
            "tracked_load_balancers",
            "leader",
            "leader_transitions",
            "kube_api_throttled",
            "local_connections",
            "local_bytes",
            "local_connections_refused",
            "local_http_responses",
        ] {
            assert!(used.contains(&format!("cloudlb_{family}")), "no panel graphs cloudlb_{family}: {used:?}");
        }
    }

    #[test]
    fn the_exposition_carries_build_info_and_ends_with_eof() {
        let m = Metrics::default();
        let text = m.encode();
        assert!(
            text.contains(&format!(
                "cloudlb_build_info{{version=\"{}\",commit=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION"),
                crate::COMMIT
            )),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        assert!(!crate::COMMIT.is_empty());
    }
}
