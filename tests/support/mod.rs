//! Test harness: an in-process sandbox Kubernetes API (reached over HTTP with a kubeconfig),
//! and the real `cloudlb` binary run against it as a child process.
//!
//! Waiting is always on a condition with a bounded timeout: object state through watches
//! (`await_condition`), controller counters by polling `/metrics` until they match.

#![allow(dead_code)]
pub mod freeze_proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudlb_sandbox::{Sandbox, SandboxConfig};
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const CLASS: &str = "cloudlb.io/lb";
/// The `spec.controller` of IngressClasses cloudlb claims by default.
pub const INGRESS_CONTROLLER: &str = "cloudlb.io/ingress-controller";
pub const WAIT: Duration = Duration::from_secs(30);
/// How long [`Controller::assert_idle`] watches a settled controller for a loop.
pub const IDLE_WINDOW: Duration = Duration::from_secs(6);

pub struct Cluster {
    pub sandbox: Sandbox,
    pub client: Client,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Self::start_with(SandboxConfig::default()).await
    }

    pub async fn start_with(config: SandboxConfig) -> Cluster {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("sandbox.kubeconfig");
        sandbox.write_kubeconfig(&kubeconfig).expect("write kubeconfig");
        let config = kube::Config::new(sandbox.url().parse().expect("sandbox url"));
        let client = Client::try_from(config).expect("client");
        Cluster { sandbox, client, kubeconfig, dir }
    }

    pub fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn nodes(&self) -> Api<Node> {
        Api::all(self.client.clone())
    }

    pub async fn add_node(&self, name: &str, ip: &str, labels: &[(&str, &str)]) -> Node {
        let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"providerID": format!("memory:///{name}")},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}
        }))
        .expect("node json");
        self.nodes().create(&PostParams::default(), &node).await.expect("create node")
    }

    pub async fn patch_node(&self, name: &str, patch: Value) {
        self.nodes().patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch node");
    }

    pub async fn patch_node_status(&self, name: &str, patch: Value) {
        self.nodes()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("patch node status");
    }

    /// A LoadBalancer Service with our class; `extra` is merged into the object.
    pub async fn add_service(&self, name: &str, ports: &[(i32, &str)], extra: Value) -> Service {
        let ports: Vec<Value> = ports
            .iter()
            .map(|(p, proto)| json!({"port": p, "protocol": proto, "name": format!("p{p}-{}", proto.to_lowercase())}))
            .collect();
        let mut obj = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": CLASS, "ports": ports, "selector": {"app": name}}
        });
        merge(&mut obj, extra);
        let svc: Service = serde_json::from_value(obj).expect("service json");
        self.services().create(&PostParams::default(), &svc).await.expect("create service")
    }

    pub async fn patch_service(&self, name: &str, patch: Value) -> Service {
        self.services().patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch service")
    }

    pub async fn get(&self, name: &str) -> Service {
        self.services().get(name).await.expect("get service")
    }

    /// Waits until the Service satisfies `cond` (watch-driven), panicking with `what` on timeout.
    pub async fn wait_service(
        &self,
        name: &str,
        what: &str,
        cond: impl Fn(&Service) -> bool + Send + 'static,
    ) -> Service {
        self.wait_service_within(WAIT, name, what, cond).await
    }

    pub async fn wait_service_within(
        &self,
        limit: Duration,
        name: &str,
        what: &str,
        cond: impl Fn(&Service) -> bool + Send + 'static,
    ) -> Service {
        let fut = await_condition(self.services(), name, move |s: Option<&Service>| s.is_some_and(&cond));
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) => panic!("{name}: gone while waiting for {what}"),
            Ok(Err(e)) => panic!("{name}: watch failed while waiting for {what}: {e}"),
            Err(_) => panic!(
                "{name}: timed out after {limit:?} waiting for {what}; now: {:?}",
                self.services().get_opt(name).await
            ),
        }
    }

    pub async fn wait_address(&self, name: &str) -> String {
        let svc = self.wait_service(name, "an EXTERNAL-IP", |s| external_ip(s).is_some()).await;
        external_ip(&svc).expect("address present")
    }

    pub async fn wait_gone(&self, name: &str) {
        self.wait_gone_within(WAIT, name).await
    }

    pub async fn wait_gone_within(&self, limit: Duration, name: &str) {
        let fut = await_condition(self.services(), name, |s: Option<&Service>| s.is_none());
        tokio::time::timeout(limit, fut).await.expect("timed out waiting for deletion").expect("watch");
    }

    /// Events about `name` (reason, type, note), read through events.k8s.io/v1.
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = api.list(&ListParams::default()).await.expect("list events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| (e.reason.unwrap_or_default(), e.type_.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// How many times `reason` was reported about `name` (repeats are folded into a series).
    pub async fn event_count(&self, name: &str, reason: &str) -> i32 {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        let list = api.list(&ListParams::default()).await.expect("list events");
        list.items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| e.series.as_ref().map_or(1, |s| s.count))
            .sum()
    }

    pub async fn wait_event(&self, name: &str, reason: &str) -> (String, String, String) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(e) = self.events(name).await.into_iter().find(|e| e.0 == reason) {
                return e;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: no {reason} event within {WAIT:?}; have {:?}",
                self.events(name).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Ingress helpers: classes, backends, TLS Secrets, Ingresses, and waiting on their status.
impl Cluster {
    pub fn ingresses(&self) -> Api<Ingress> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn ingress_classes(&self) -> Api<IngressClass> {
        Api::all(self.client.clone())
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// An IngressClass with `controller`; `default` marks it the default class.
    pub async fn add_ingress_class(&self, name: &str, controller: &str, default: bool) -> IngressClass {
        let mut obj = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": name},
            "spec": {"controller": controller}
        });
        if default {
            obj["metadata"]["annotations"] = json!({"ingressclass.kubernetes.io/is-default-class": "true"});
        }
        let class: IngressClass = serde_json::from_value(obj).expect("ingress class json");
        self.ingress_classes().create(&PostParams::default(), &class).await.expect("create ingress class")
    }

    /// A NodePort Service `name` with port 80 (named `http`) on node port `node_port`.
    pub async fn add_backend(&self, name: &str, node_port: i32) -> Service {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": node_port}]}
        }))
        .expect("service json");
        self.services().create(&PostParams::default(), &svc).await.expect("create backend service")
    }

    /// A `kubernetes.io/tls` Secret from PEM text.
    pub async fn add_tls_secret(&self, name: &str, crt: &str, key: &str) -> Secret {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": crt, "tls.key": key}
        }))
        .expect("secret json");
        self.secrets().create(&PostParams::default(), &secret).await.expect("create secret")
    }

    pub async fn replace_tls_secret(&self, name: &str, crt: &str, key: &str) {
        let patch = json!({"stringData": {"tls.crt": crt, "tls.key": key}});
        self.secrets().patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch secret");
    }

    /// An Ingress from its `spec` (JSON), with `extra` merged into the object.
    pub async fn add_ingress(&self, name: &str, spec: Value, extra: Value) -> Ingress {
        let mut obj = json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec
        });
        merge(&mut obj, extra);
        let ing: Ingress = serde_json::from_value(obj).expect("ingress json");
        self.ingresses().create(&PostParams::default(), &ing).await.expect("create ingress")
    }

    pub async fn patch_ingress(&self, name: &str, patch: Value) -> Ingress {
        self.ingresses().patch(name, &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch ingress")
    }

    /// Waits until the Ingress satisfies `cond` (watch-driven), panicking with `what` on timeout.
    pub async fn wait_ingress(
        &self,
        name: &str,
        what: &str,
        cond: impl Fn(&Ingress) -> bool + Send + 'static,
    ) -> Ingress {
        self.wait_ingress_within(WAIT, name, what, cond).await
    }

    /// [`Self::wait_ingress`] with its own time limit.
    pub async fn wait_ingress_within(
        &self,
        limit: Duration,
        name: &str,
        what: &str,
        cond: impl Fn(&Ingress) -> bool + Send + 'static,
    ) -> Ingress {
        let fut = await_condition(self.ingresses(), name, move |i: Option<&Ingress>| i.is_some_and(&cond));
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(Some(i))) => i,
            Ok(Ok(None)) => panic!("ingress {name}: gone while waiting for {what}"),
            Ok(Err(e)) => panic!("ingress {name}: watch failed while waiting for {what}: {e}"),
            Err(_) => panic!(
                "ingress {name}: timed out after {limit:?} waiting for {what}; now: {:?}",
                self.ingresses().get_opt(name).await
            ),
        }
    }

    /// The Ingress's ADDRESS, once it has one.
    pub async fn wait_ingress_address(&self, name: &str) -> String {
        let ing = self.wait_ingress(name, "an ADDRESS", |i| ingress_address(i).is_some()).await;
        ingress_address(&ing).expect("address present")
    }

    pub async fn wait_ingress_gone(&self, name: &str) {
        self.wait_ingress_gone_within(WAIT, name).await
    }

    pub async fn wait_ingress_gone_within(&self, limit: Duration, name: &str) {
        let fut = await_condition(self.ingresses(), name, |i: Option<&Ingress>| i.is_none());
        tokio::time::timeout(limit, fut).await.expect("timed out waiting for the Ingress to go").expect("watch");
    }
}

/// The memory provider's entry (from its `--memory-state-file`) for the load balancer of the
/// object `name`: `kind` is `lbs` (Services) or `l7` (Ingresses).
pub fn memory_entry(state: &std::path::Path, kind: &str, name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(state).ok()?;
    let v: Value = serde_json::from_str(&text).expect("state file is JSON");
    v[kind].as_object()?.values().find(|e| e["id"]["name"] == name).cloned()
}

/// The first address in an Ingress's status.
/// Writes to the API, from the sandbox's request counters: patches and updates of one resource
/// (finalizer, annotations) and of its status, and events created or patched (a series). Lease
/// renewals are not counted: they do not depend on the load balancers. One phase's writes are
/// the counts after it [`since`](Writes::since) the counts before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Writes {
    pub objects: u64,
    pub status: u64,
    pub events: u64,
}

impl Writes {
    pub fn since(self, before: Writes) -> Writes {
        Writes {
            objects: self.objects - before.objects,
            status: self.status - before.status,
            events: self.events - before.events,
        }
    }

    pub fn total(&self) -> u64 {
        self.objects + self.status + self.events
    }

    /// `objects/status/events` per load balancer, e.g. `2/1/1`.
    pub fn per(&self, n: usize) -> String {
        let n = n.max(1) as f64;
        let f = |v: u64| {
            let x = v as f64 / n;
            if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.2}") }
        };
        format!("{}/{}/{}", f(self.objects), f(self.status), f(self.events))
    }
}

impl Cluster {
    /// The writes so far to `resource` (as the sandbox names it: `services`,
    /// `ingresses.networking.k8s.io`), its status, and events.
    pub fn writes(&self, resource: &str) -> Writes {
        let s = self.sandbox.stats();
        let both = |res: &str| s.count("patch", res) + s.count("update", res);
        Writes {
            objects: both(resource),
            status: both(&format!("{resource}/status")),
            events: s.count("create", "events.events.k8s.io") + s.count("patch", "events.events.k8s.io"),
        }
    }
}

/// The `cloudlb` binary the tests run: cargo's build, or `$CLOUDLB_TEST_BIN` (see
/// [`Controller::command`]).
pub fn cloudlb_binary() -> String {
    std::env::var("CLOUDLB_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_cloudlb").to_string())
}

pub fn ingress_address(ing: &Ingress) -> Option<String> {
    let first = ing.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?.first()?.clone();
    first.ip.or(first.hostname)
}

/// An Ingress path rule as JSON: `(pathType, path, service)` to the Service's port `http`.
pub fn ingress_path(path_type: &str, path: &str, service: &str) -> Value {
    json!({"pathType": path_type, "path": path, "backend": {"service": {"name": service, "port": {"name": "http"}}}})
}

/// A self-signed certificate for `hosts` and its key, PEM.
pub fn pem_pair(hosts: &[&str]) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).expect("rcgen");
    (c.cert.pem(), c.signing_key.serialize_pem())
}

pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

pub fn external_ip(svc: &Service) -> Option<String> {
    let ingress = svc.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?;
    let first = ingress.first()?;
    first.ip.clone().or(first.hostname.clone())
}

/// The ports of the first point of a Service's `status.loadBalancer.ingress`.
pub fn status_ports(svc: &Service) -> Vec<i32> {
    let first = svc.status.as_ref().and_then(|st| st.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
    first
        .and_then(|i| i.first())
        .and_then(|p| p.ports.as_ref())
        .map(|p| p.iter().map(|p| p.port).collect())
        .unwrap_or_default()
}

pub fn condition(svc: &Service) -> Option<(String, String, String)> {
    svc.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "cloudlb.io/LoadBalancerReady")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

pub fn has_finalizer<K: ResourceExt>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == "cloudlb.io/load-balancer-cleanup")
}

/// The real binary, running `cloudlb run` against a cluster.
pub struct Controller {
    child: Child,
    pub metrics: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
    http: plain_http::Client,
}

impl Controller {
    pub async fn start(cluster: &Cluster, extra: &[&str]) -> Controller {
        Self::start_logging(cluster, extra, "info,cloudlb=debug").await
    }

    /// `rust_log` must keep `cloudlb::app` at info: the metrics address is read from its log.
    pub async fn start_logging(cluster: &Cluster, extra: &[&str], rust_log: &str) -> Controller {
        Self::start_full(cluster, extra, rust_log, &[]).await
    }

    pub async fn start_full(cluster: &Cluster, extra: &[&str], rust_log: &str, envs: &[(&str, &str)]) -> Controller {
        let mut cmd = Self::command(cluster, extra, rust_log, envs);
        cmd.stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn cloudlb");
        let stderr = child.stderr.take().expect("stderr piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let task_logs = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut addr_tx = Some(addr_tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "serving metrics and health"
                    && let (Some(tx), Some(a)) = (addr_tx.take(), v["addr"].as_str())
                {
                    let _ = tx.send(a.parse::<SocketAddr>().expect("addr"));
                }
                if std::env::var_os("CLOUDLB_TEST_LOGS").is_some() {
                    eprintln!("[cloudlb] {line}");
                }
                task_logs.lock().expect("logs").push(line);
            }
        });
        let metrics = match tokio::time::timeout(WAIT, addr_rx).await {
            Ok(Ok(a)) => a,
            _ => panic!("cloudlb did not start; log: {:#?}", logs.lock().expect("logs")),
        };
        let c = Controller { child, metrics, logs, http: plain_http::Client::new() };
        c.wait_ready().await;
        c
    }

    /// The command `start_full` runs (stderr discarded: callers that read it pipe it).
    ///
    /// Two variables serve `link/order.sh`, which records with valgrind which functions the
    /// controller runs: `$CLOUDLB_TEST_BIN` runs another build of the binary (the one that
    /// ships, `cargo build --release`), and `$CLOUDLB_TEST_WRAPPER`, a command line split at
    /// spaces, runs it under another program.
    pub fn command(cluster: &Cluster, extra: &[&str], rust_log: &str, envs: &[(&str, &str)]) -> Command {
        let binary = cloudlb_binary();
        let wrapper = std::env::var("CLOUDLB_TEST_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut cmd = match words.next() {
            Some(program) => {
                let mut cmd = Command::new(program);
                cmd.args(words).arg(binary);
                cmd
            }
            None => Command::new(binary),
        };
        cmd.envs(envs.iter().copied());
        cmd.arg("run")
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["--metrics-addr", "127.0.0.1:0", "--log-format", "json", "--cluster-name", "test"])
            .args(if extra.contains(&"--provider") { &[][..] } else { &["--provider", "memory"][..] })
            .args(extra)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok((200, _)) = self.http.get(self.metrics, "/readyz").await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cloudlb not ready; log: {:#?}",
                self.logs.lock().expect("logs")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sum of a metric over all label sets matching every `label="value"` given.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let (_, body) = self.http.get(self.metrics, "/metrics").await.expect("scrape /metrics");
        // A family with no samples yet reads as 0, but one that is not exported at all (a typo
        // or a rename) must fail the test, not pass an "== 0" check.
        let family = ["_total", "_count", "_sum", "_bucket"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(
            body.lines().any(|l| l.starts_with("# TYPE ") && l.split_whitespace().nth(2) == Some(family)),
            "metric {name} is not exported by cloudlb (renamed?)"
        );
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `GET path` on the metrics server: (status code, body).
    pub async fn probe(&self, path: &str) -> (u16, String) {
        self.http.get(self.metrics, path).await.expect("probe")
    }

    /// Provider calls of one kind (ensure, delete, get), any result.
    pub async fn calls(&self, call: &str) -> u64 {
        self.metric("cloudlb_provider_calls_total", &[("call", call)]).await as u64
    }

    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], what: &str, ok: impl Fn(f64) -> bool) -> f64 {
        self.wait_metric_within(name, labels, what, WAIT, ok).await
    }

    pub async fn wait_metric_within(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        what: &str,
        limit: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let v = self.metric(name, labels).await;
            if ok(v) {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: {name}{labels:?} = {v} after {limit:?}; last log lines: {:#?}",
                self.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the controller has been idle (no reconcile) for `quiet`, bounded by WAIT.
    pub async fn settle(&self, quiet: Duration) {
        self.settle_within(quiet, WAIT).await
    }

    /// Like [`Self::settle`] with an explicit bound (benchmarks at 10,000 Services need more).
    pub async fn settle_within(&self, quiet: Duration, limit: Duration) {
        let started = tokio::time::Instant::now();
        let first = self.metric("cloudlb_reconciles_total", &[]).await;
        let mut last = first;
        let mut since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let now = self.metric("cloudlb_reconciles_total", &[]).await;
            if now != last {
                last = now;
                since = tokio::time::Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "controller never settled within {limit:?}: {} reconciles meanwhile ({:.0}/s); a hot loop?",
                last - first,
                (last - first) / started.elapsed().as_secs_f64()
            );
        }
    }

    /// Asserts that the controller, settled, stays idle for [`IDLE_WINDOW`]: no reconcile and no
    /// provider call at all. The window is longer than the controller's shortest retry (backoff
    /// starts at about 5 s), so a loop that requeues itself or is woken by its own writes shows
    /// even when it is slow; a short window would only catch loops faster than itself.
    pub async fn assert_idle(&self, what: &str) {
        self.settle(Duration::from_millis(300)).await;
        let reconciles = self.metric("cloudlb_reconciles_total", &[]).await;
        let calls = self.metric("cloudlb_provider_calls_total", &[]).await;
        tokio::time::sleep(IDLE_WINDOW).await;
        let more = self.metric("cloudlb_reconciles_total", &[]).await - reconciles;
        let more_calls = self.metric("cloudlb_provider_calls_total", &[]).await - calls;
        assert!(
            more == 0.0 && more_calls == 0.0,
            "{what}: {more} reconciles and {more_calls} provider calls within {IDLE_WINDOW:?} of settling (a loop)"
        );
    }

    /// Waits until no mutating provider call (ensure, delete) happened for `quiet`. Unlike
    /// [`Self::settle`] this ignores drift-check reads, which with thousands of Services never
    /// pause for long.
    pub async fn settle_mutations_within(&self, quiet: Duration, limit: Duration) {
        let started = tokio::time::Instant::now();
        let mutations = || async { self.calls("ensure").await + self.calls("delete").await };
        let mut last = mutations().await;
        let mut since = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let now = mutations().await;
            if now != last {
                last = now;
                since = tokio::time::Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
            assert!(started.elapsed() < limit, "provider mutations never stopped within {limit:?}");
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(Ok(status)) => assert!(status.success(), "cloudlb exited with {status}"),
            _ => {
                let _ = self.child.kill().await;
                let logs = self.logs.lock().expect("logs");
                let tail = &logs[logs.len().saturating_sub(30)..];
                panic!("cloudlb did not stop within 10s of SIGTERM; its last log lines: {tail:#?}");
            }
        }
    }

    pub async fn wait_log(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.log_contains(needle) {
            assert!(tokio::time::Instant::now() < deadline, "no log line with {needle:?} within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: a crash, nothing released.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last `n` lines cloudlb wrote, for failure messages.
    pub fn log_tail(&self, n: usize) -> Vec<String> {
        let logs = self.logs.lock().expect("logs");
        logs[logs.len().saturating_sub(n)..].to_vec()
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.logs.lock().expect("logs").iter().any(|l| l.contains(needle))
    }
}

/// A minimal HTTP/1.1 GET client over TCP, enough for /metrics and /readyz (no extra crate).
pub mod plain_http {
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Clone, Default)]
    pub struct Client;

    impl Client {
        pub fn new() -> Self {
            Client
        }

        pub async fn get(&self, addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await?;
            let text = String::from_utf8_lossy(&buf).to_string();
            let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
            Ok((code, dechunk(&body)))
        }
    }

    /// Undo chunked transfer encoding if present (axum streams /metrics bodies chunked only
    /// when large; plain bodies pass through).
    fn dechunk(body: &str) -> String {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let Some((size, after)) = rest.split_once("\r\n") else { return body.to_string() };
            let Ok(n) = usize::from_str_radix(size.trim(), 16) else { return body.to_string() };
            if n == 0 {
                return out;
            }
            if after.len() < n {
                return body.to_string();
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
    }
}
