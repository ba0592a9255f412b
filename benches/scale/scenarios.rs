//! The scale and latency scenarios of the benchmark (issue: "Scale and latency benchmarks").
//!
//! Each scenario drives the real `cloudlb` binary against the sandbox Kubernetes API over HTTP,
//! with the memory provider at a chosen per-call latency, and returns measurements; printing is
//! the caller's job. The same code runs at full size from `cargo bench --bench scale` and at
//! N = 50 from the CI smoke test, which checks the counts (never the timings).
//!
//! Times are measured from the harness's side: "create-to-status" runs from the moment the
//! create call returned to the moment the harness's own watch saw the EXTERNAL-IP, so it
//! includes two watch deliveries on top of the controller's work.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudlb_sandbox::SandboxConfig;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio::sync::Notify;

pub use crate::support::Writes;
use crate::support::{Cluster, Controller, INGRESS_CONTROLLER, external_ip, ingress_address, ingress_path};

/// Upper bound for any one wait in a scenario: a hang fails instead of running forever.
const LIMIT: Duration = Duration::from_secs(600);
/// The controller's log level: quiet, but `cloudlb::app` at info (the metrics address).
const LOG: &str = "warn,cloudlb::app=info";

/// What a scale run creates N of: LoadBalancer Services, or Ingresses of our class (one load
/// balancer each, all routing to one NodePort backend). The phases and the budget of API writes
/// are the same for both (issue 12: "the same rules hold for Ingresses").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Front {
    #[default]
    Services,
    Ingresses,
}

impl Front {
    pub fn plural(self) -> &'static str {
        match self {
            Front::Services => "Services",
            Front::Ingresses => "Ingresses",
        }
    }

    /// The kind, as in the `kind` label of `cloudlb_reconciles_total`.
    pub fn kind(self) -> &'static str {
        match self {
            Front::Services => "Service",
            Front::Ingresses => "Ingress",
        }
    }

    /// The resource's name in the sandbox's request counters.
    fn resource(self) -> &'static str {
        match self {
            Front::Services => "services",
            Front::Ingresses => "ingresses.networking.k8s.io",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Params {
    pub front: Front,
    /// How many load balancers (Services or Ingresses).
    pub n: usize,
    pub nodes: usize,
    pub latency: Duration,
    pub concurrency: u16,
}

#[derive(Debug, Default)]
pub struct ScaleResult {
    pub front: Front,
    pub n: usize,
    pub converge: Duration,
    pub create_p50: Duration,
    pub create_p99: Duration,
    pub restart_mutating_calls: u64,
    pub restart_catch_up: Duration,
    pub add_node_calls: u64,
    pub add_node_time: Duration,
    pub exclude_node_calls: u64,
    pub exclude_node_time: Duration,
    pub delete_all: Duration,
    pub api_requests: u64,
    /// The controller's API writes in each phase (see [`Writes`]).
    pub create_writes: Writes,
    pub restart_writes: Writes,
    pub add_node_writes: Writes,
    pub exclude_node_writes: Writes,
    pub delete_writes: Writes,
}

/// The controller's writes so far (see [`Writes`]): the harness itself only creates and deletes
/// objects and creates and patches Nodes, so none of these are its own.
fn writes(cluster: &Cluster, front: Front) -> Writes {
    cluster.writes(front.resource())
}

/// What the harness's own watch has seen: when each object first had an address.
#[derive(Default)]
struct Seen {
    addressed: HashMap<String, Instant>,
}

struct Watch {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Watches the Services or the Ingresses of the namespace.
    fn of(cluster: &Cluster, front: Front) -> Watch {
        match front {
            Front::Services => Watch::start(cluster.services(), |s| external_ip(s).is_some()),
            Front::Ingresses => Watch::start(cluster.ingresses(), |i| ingress_address(i).is_some()),
        }
    }

    fn start<K>(api: Api<K>, addressed: fn(&K) -> bool) -> Watch
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let changed = Arc::new(Notify::new());
        let (s, c) = (seen.clone(), changed.clone());
        let stream = watcher(api, watcher::Config::default()).default_backoff().touched_objects();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Ok(Some(obj)) = stream.try_next().await {
                let name = obj.meta().name.clone().unwrap_or_default();
                let now = Instant::now();
                {
                    let mut st = s.lock().expect("seen");
                    if addressed(&obj) {
                        st.addressed.entry(name).or_insert(now);
                    }
                }
                c.notify_waiters();
            }
        });
        Watch { seen, changed, task }
    }

    async fn wait(&self, what: &str, done: impl Fn(&Seen) -> bool) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let notified = self.changed.notified();
            if done(&self.seen.lock().expect("seen")) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out after {LIMIT:?} waiting for {what}");
            }
        }
    }
}

fn service(name: &str, lb: bool) -> Service {
    let spec = if lb {
        json!({"type": "LoadBalancer", "loadBalancerClass": "cloudlb.io/lb", "ports": [{"port": 80, "protocol": "TCP"}]})
    } else {
        json!({"type": "ClusterIP", "ports": [{"port": 80, "protocol": "TCP"}]})
    };
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec}))
        .expect("service json")
}

/// An Ingress of our class with one rule to the backend `app` (see [`scale`]).
fn ingress(name: &str) -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ingressClassName": "cloudlb", "rules": [
            {"host": format!("{name}.example"), "http": {"paths": [ingress_path("Prefix", "/", "app")]}}
        ]}
    }))
    .expect("ingress json")
}

/// What [`create_all`] creates.
#[derive(Clone, Copy)]
enum Object {
    LbService,
    OtherService,
    Ingress,
}

impl From<Front> for Object {
    fn from(f: Front) -> Object {
        match f {
            Front::Services => Object::LbService,
            Front::Ingresses => Object::Ingress,
        }
    }
}

async fn create(cluster: &Cluster, what: Object, name: &str) {
    let pp = PostParams::default();
    match what {
        Object::Ingress => {
            cluster.ingresses().create(&pp, &ingress(name)).await.expect("create ingress");
        }
        Object::LbService | Object::OtherService => {
            let lb = matches!(what, Object::LbService);
            cluster.services().create(&pp, &service(name, lb)).await.expect("create service");
        }
    }
}

async fn create_all(cluster: &Cluster, names: &[String], what: Object) -> HashMap<String, Instant> {
    futures::stream::iter(names.iter().cloned())
        .map(|name| async move {
            create(cluster, what, &name).await;
            (name, Instant::now())
        })
        .buffer_unordered(32)
        .collect()
        .await
}

async fn delete(cluster: &Cluster, front: Front, name: &str) -> Result<(), kube::Error> {
    let dp = DeleteParams::default();
    match front {
        Front::Services => cluster.services().delete(name, &dp).await.map(|_| ()),
        Front::Ingresses => cluster.ingresses().delete(name, &dp).await.map(|_| ()),
    }
}

/// How many Services (all of them) or Ingresses exist.
async fn count(cluster: &Cluster, front: Front) -> usize {
    let lp = Default::default();
    match front {
        Front::Services => cluster.services().list_metadata(&lp).await.expect("list").items.len(),
        Front::Ingresses => cluster.ingresses().list_metadata(&lp).await.expect("list").items.len(),
    }
}

/// Progress on stderr, so a long run shows where it is (the table goes to stdout).
fn progress(what: &str) {
    eprintln!("[bench] {what}");
}

fn sandbox_config() -> SandboxConfig {
    // 10,000 LoadBalancer Services need more node ports than the default 30000-32767 range
    // has, exactly as on a real cluster; widen it. Keep enough watch history for the bursts.
    SandboxConfig { node_port_range: (10000, 65000), watch_history: 500_000, ..Default::default() }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn add_nodes(cluster: &Cluster, n: usize) {
    futures::stream::iter(0..n)
        .map(|i| async move {
            cluster.add_node(&format!("node-{i:04}"), &format!("10.1.{}.{}", i / 250, i % 250 + 1), &[]).await;
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
}

/// Waits until `calls(ensure) - before == want` and stays there for a quiet moment; returns the
/// delta and the time when it first reached `want`.
/// Mutating provider calls so far: full ensures and targets-only updates.
async fn mutating_calls(ctl: &Controller) -> u64 {
    ctl.calls("ensure").await + ctl.calls("update_targets").await
}

async fn calls_delta(ctl: &Controller, before: u64, want: u64, started: Instant) -> (u64, Duration) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while mutating_calls(ctl).await < before + want {
        assert!(tokio::time::Instant::now() < deadline, "fewer than {want} provider calls after {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reached = started.elapsed();
    ctl.settle_mutations_within(Duration::from_millis(1000), LIMIT).await;
    (mutating_calls(ctl).await - before, reached)
}

/// Scenarios 1-4: create N at once, restart, add a node, exclude a node, delete all; of
/// LoadBalancer Services or of Ingresses (`p.front`).
pub async fn scale(p: &Params) -> ScaleResult {
    let front = p.front;
    let cluster = Cluster::start_with(sandbox_config()).await;
    add_nodes(&cluster, p.nodes).await;
    if front == Front::Ingresses {
        cluster.add_ingress_class("cloudlb", INGRESS_CONTROLLER, false).await;
        cluster.add_backend("app", 30080).await;
    }
    let state = cluster.dir.path().join("memory-state.json");
    let state = state.to_str().expect("utf-8 path").to_string();
    let latency = format!("{}ms", p.latency.as_millis());
    let concurrency = p.concurrency.to_string();
    let args = ["--memory-latency", &latency, "--memory-state-file", &state, "--concurrency", &concurrency];
    let ctl = Controller::start_logging(&cluster, &args, LOG).await;
    let watch = Watch::of(&cluster, front);
    let names: Vec<String> = (0..p.n).map(|i| format!("lb-{i:05}")).collect();
    let mut r = ScaleResult { front, n: p.n, ..Default::default() };

    // 1. Create N at once.
    let w = writes(&cluster, front);
    let started = Instant::now();
    let created = create_all(&cluster, &names, front.into()).await;
    let n = p.n;
    watch.wait("every object to get an address", |s| s.addressed.len() >= n).await;
    r.converge = started.elapsed();
    progress(&format!("N={n}: converged in {:?}", r.converge));
    let mut lat: Vec<Duration> = {
        let seen = watch.seen.lock().expect("seen");
        names.iter().map(|n| seen.addressed[n].saturating_duration_since(created[n])).collect()
    };
    lat.sort();
    r.create_p50 = percentile(&lat, 0.5);
    r.create_p99 = percentile(&lat, 0.99);
    ctl.settle_mutations_within(Duration::from_millis(1000), LIMIT).await;
    ctl.settle_within(Duration::from_millis(500), LIMIT).await;
    r.create_writes = writes(&cluster, front).since(w);
    ctl.stop().await;

    // 2. Restart with N converged (durable provider state): no mutating call.
    let w = writes(&cluster, front);
    let started = Instant::now();
    let ctl = Controller::start_logging(&cluster, &args, LOG).await;
    let kind = [("kind", front.kind())];
    ctl.wait_metric_within("cloudlb_reconciles_total", &kind, "every object reconciled after restart", LIMIT, |v| {
        v as usize >= n
    })
    .await;
    r.restart_catch_up = started.elapsed();
    ctl.settle_mutations_within(Duration::from_millis(1000), LIMIT).await;
    ctl.settle_within(Duration::from_millis(500), LIMIT).await;
    r.restart_mutating_calls = mutating_calls(&ctl).await + ctl.calls("delete").await;
    r.restart_writes = writes(&cluster, front).since(w);
    progress(&format!("N={n}: restart caught up in {:?}", r.restart_catch_up));

    // 3. Add one node, then exclude one node.
    let w = writes(&cluster, front);
    let before = mutating_calls(&ctl).await;
    let started = Instant::now();
    cluster.add_node("node-new", "10.2.0.1", &[]).await;
    (r.add_node_calls, r.add_node_time) = calls_delta(&ctl, before, n as u64, started).await;
    ctl.settle_within(Duration::from_millis(500), LIMIT).await;
    r.add_node_writes = writes(&cluster, front).since(w);
    progress(&format!("N={n}: node added, {} calls in {:?}", r.add_node_calls, r.add_node_time));
    let w = writes(&cluster, front);
    let before = mutating_calls(&ctl).await;
    let started = Instant::now();
    cluster
        .patch_node(
            "node-0000",
            json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": "true"}}}),
        )
        .await;
    (r.exclude_node_calls, r.exclude_node_time) = calls_delta(&ctl, before, n as u64, started).await;
    ctl.settle_within(Duration::from_millis(500), LIMIT).await;
    r.exclude_node_writes = writes(&cluster, front).since(w);

    // 4. Delete all (for Ingresses, the backend Service stays).
    let w = writes(&cluster, front);
    let started = Instant::now();
    futures::stream::iter(names.iter())
        .map(|name| delete(&cluster, front, name))
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await
        .expect("delete");
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let left = count(&cluster, front).await;
        if left == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left} {} still there after {LIMIT:?}", front.plural());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.delete_all = started.elapsed();
    ctl.settle_within(Duration::from_millis(500), LIMIT).await;
    r.delete_writes = writes(&cluster, front).since(w);
    progress(&format!("N={n}: all deleted in {:?}", r.delete_all));
    r.api_requests = cluster.sandbox.stats().total;
    ctl.stop().await;
    watch.task.abort();
    r
}

#[derive(Debug, Default)]
pub struct LatencyResult {
    pub samples: usize,
    pub p50: Duration,
    pub p99: Duration,
}

/// Scenario 5: one Service at a time, provider latency 0: create to EXTERNAL-IP seen.
pub async fn latency(samples: usize) -> LatencyResult {
    let cluster = Cluster::start_with(sandbox_config()).await;
    add_nodes(&cluster, 3).await;
    let ctl = Controller::start_logging(&cluster, &[], LOG).await;
    let watch = Watch::of(&cluster, Front::Services);
    let api = cluster.services();
    let mut lat = Vec::with_capacity(samples);
    for i in 0..samples {
        let name = format!("lat-{i:05}");
        api.create(&PostParams::default(), &service(&name, true)).await.expect("create");
        let created = Instant::now();
        watch.wait("the address", |s| s.addressed.contains_key(&name)).await;
        let seen = watch.seen.lock().expect("seen").addressed[&name];
        lat.push(seen.saturating_duration_since(created));
        api.delete(&name, &DeleteParams::default()).await.expect("delete");
    }
    lat.sort();
    ctl.stop().await;
    watch.task.abort();
    LatencyResult { samples, p50: percentile(&lat, 0.5), p99: percentile(&lat, 0.99) }
}

#[derive(Debug, Default)]
pub struct FootprintResult {
    pub lb_services: usize,
    pub other_services: usize,
    pub nodes: usize,
    pub converge: Duration,
    pub peak_rss_mib: f64,
    /// The largest anonymous (heap, stacks) and file-backed (the binary's pages) parts of the
    /// RSS seen by sampling every 10 ms: the file part depends on the kernel's page cache
    /// (large folios map more of the binary than was executed), the anonymous part is ours.
    pub peak_anon_mib: f64,
    pub peak_file_mib: f64,
    pub cpu_seconds: f64,
}

/// A `/proc/<pid>/status` field in MiB (0 when absent).
fn status_mib(status: &str, field: &str) -> f64 {
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Samples the anonymous and file-backed RSS of `pid` every 10 ms until aborted; the maxima
/// are in the returned cell.
fn sample_rss(pid: u32) -> (tokio::task::JoinHandle<()>, Arc<Mutex<(f64, f64)>>) {
    let peaks = Arc::new(Mutex::new((0.0f64, 0.0f64)));
    let out = peaks.clone();
    let task = tokio::spawn(async move {
        loop {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let (anon, file) = (status_mib(&status, "RssAnon:"), status_mib(&status, "RssFile:"));
            {
                let mut p = peaks.lock().unwrap_or_else(|p| p.into_inner());
                p.0 = p.0.max(anon);
                p.1 = p.1.max(file);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    (task, out)
}

fn proc_stats(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_mib = status_mib(&status, "VmHWM:");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12].iter().filter_map(|i| f.get(*i)?.parse::<f64>().ok()).sum();
    (hwm_mib, ticks / 100.0)
}

/// Scenario 6: peak RSS and CPU of the controller with LB Services, other Services it must
/// ignore, and many Nodes.
pub async fn footprint(lb: usize, other: usize, nodes: usize, latency: Duration) -> FootprintResult {
    let cluster = Cluster::start_with(sandbox_config()).await;
    add_nodes(&cluster, nodes).await;
    let others: Vec<String> = (0..other).map(|i| format!("other-{i:05}")).collect();
    create_all(&cluster, &others, Object::OtherService).await;
    let latency = format!("{}ms", latency.as_millis());
    let ctl = Controller::start_logging(&cluster, &["--memory-latency", &latency], LOG).await;
    let (sampler, peaks) = sample_rss(ctl.pid().expect("controller running"));
    let watch = Watch::of(&cluster, Front::Services);
    let names: Vec<String> = (0..lb).map(|i| format!("svc-{i:05}")).collect();
    let started = Instant::now();
    create_all(&cluster, &names, Object::LbService).await;
    watch.wait("every LB Service to get an address", |s| s.addressed.len() >= lb).await;
    let converge = started.elapsed();
    ctl.settle_mutations_within(Duration::from_millis(1000), LIMIT).await;
    let (peak_rss_mib, cpu_seconds) = proc_stats(ctl.pid().expect("controller running"));
    sampler.abort();
    let (peak_anon_mib, peak_file_mib) = *peaks.lock().unwrap_or_else(|p| p.into_inner());
    ctl.stop().await;
    watch.task.abort();
    FootprintResult {
        lb_services: lb,
        other_services: other,
        nodes,
        converge,
        peak_rss_mib,
        peak_anon_mib,
        peak_file_mib,
        cpu_seconds,
    }
}
