//! The local L7 data plane: cloudlb itself proxies HTTP and HTTPS on the host, routing by host
//! and path to the backends' node ports, for Ingresses (later Gateways).
//!
//! ```text
//!  L7Lb (one per Ingress, its own pool address)
//!   ├─ listeners: port ─▶ accept task (listener)           sockets kept across ensure
//!   ├─ Shared ── snapshot: ArcSwap<Snapshot> ◀── ensure swaps a whole new one in
//!   │            │   spec, router (routes ▸ BackendPools), parsed certificates,
//!   │            │   source ranges, timeouts
//!   │            ├─ tls: rustls ServerConfig, its resolver reads the snapshot (tls)
//!   │            └─ h1 / h2: hyper's HTTP/1.1 and HTTP/2 server builders
//!   ├─ health: one probe task per distinct probe (backend check × node)
//!   └─ endpoints: node:nodePort ─▶ keep-alive pool (upstream), kept while they stay
//!
//!  client ─▶ listener ─▶ proxy::handle ─▶ router ─▶ upstream ─▶ node IP : node port
//! ```
//!
//! Modules: [`router`] (the routing decision, exactly `L7Spec::select`), [`tls`] (PEM parsing,
//! SNI choice, rotation), [`listener`] (accept, TLS, HTTP/1.1 + HTTP/2 serving, idle close),
//! [`proxy`] (one request: redirect, route, forward, answers), [`upstream`] (nodes, health,
//! connection pools, connect retry), [`headers`] (hop-by-hop, X-Forwarded-*), [`workers`]
//! (thread-per-core runtimes the connections run on), [`transport`] (counted client streams
//! that can be parked).
//!
//! **Converging in place.** `converge` first does everything that can fail: parse every
//! certificate, then bind every new port. If either fails, nothing running has changed (the
//! ports bound so far close). Then it builds the new snapshot (keeping health verdicts and
//! warm connection pools of nodes that stay) and swaps it in with one atomic store: requests
//! in flight finish on the snapshot they started with, new ones use the new one; established
//! TLS connections keep their certificate. Listeners that stay keep their sockets; removed ones
//! stop accepting and their connections close gracefully.

mod headers;
mod listener;
mod proxy;
mod router;
mod tls;
mod transport;
mod upstream;
mod workers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use cloudlb_provider::l7::{BackendRef, L7Listener, L7Protocol, RouteAction};
use cloudlb_provider::{
    IngressPoint, IpMode, L7Spec, LoadBalancerId, LoadBalancerStatus, ProviderError, Record, Result,
};
use hyper_util::rt::TokioExecutor;
use rustls::sign::CertifiedKey;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::balance::SourceFilter;
use crate::health::{self, ProbeConfig, TargetHealth};
use crate::options::{self, LbOptions};
use crate::stats::{BackendStats, Counters, HttpCounters, TargetStats};
use crate::tasks::AbortOnDrop;
use crate::{LocalConfig, MAX_LISTENERS, OPTION_PREFIX, RECORD_IP, listener_tcp};

use router::Router;
use upstream::{BackendPool, Endpoint, UpstreamTimeouts};
pub(crate) use workers::{Workers, default_count as default_workers};

/// What the data plane serves right now; replaced whole by `ensure`.
pub(crate) struct Snapshot {
    pub spec: Arc<L7Spec>,
    pub router: Router,
    /// Parsed certificates, at the same index as `spec.certificates`.
    pub certs: Vec<Arc<CertifiedKey>>,
    pub source: SourceFilter,
    pub upstream: UpstreamTimeouts,
    /// A client connection without a request in flight for this long is closed.
    pub idle: Duration,
    /// How long in-flight requests (and upgraded connections) may finish when their listener or
    /// load balancer goes away.
    pub drain: Duration,
}

impl Snapshot {
    pub(crate) fn listener(&self, port: u16) -> Option<&L7Listener> {
        self.spec.listeners.iter().find(|l| l.port == port)
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("spec", &self.spec.hash()).finish_non_exhaustive()
    }
}

/// What every connection of one load balancer shares.
pub(crate) struct Shared {
    pub ip: IpAddr,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub tls: Arc<rustls::ServerConfig>,
    pub h1: hyper::server::conn::http1::Builder,
    pub h2: hyper::server::conn::http2::Builder<TokioExecutor>,
    pub counters: Arc<Counters>,
    pub http: Arc<HttpCounters>,
    pub workers: Arc<Workers>,
}

/// One listener port: an accept loop on every worker (sharing one socket).
struct ListenerSlot {
    tasks: Vec<AbortOnDrop>,
    shutdown: watch::Sender<bool>,
}

impl ListenerSlot {
    /// Stop accepting now; open connections close gracefully. The handles resolve once the
    /// socket is closed.
    fn close(self) -> Vec<JoinHandle<()>> {
        self.shutdown.send_replace(true);
        self.tasks.into_iter().filter_map(AbortOnDrop::abort_and_take).collect()
    }
}

struct HealthSlot {
    node: String,
    state: Arc<TargetHealth>,
    _task: AbortOnDrop,
}

/// One HTTP load balancer.
pub(crate) struct L7Lb {
    pub id: LoadBalancerId,
    pub ip: IpAddr,
    pub spec: Option<L7Spec>,
    pub counters: Arc<Counters>,
    pub http: Arc<HttpCounters>,
    shared: Arc<Shared>,
    workers: Arc<Workers>,
    listeners: BTreeMap<u16, ListenerSlot>,
    health: HashMap<ProbeConfig, HealthSlot>,
    endpoints: HashMap<(SocketAddr, ProbeConfig), Arc<Endpoint>>,
}

/// The error every `ensure_l7` refusal uses.
fn invalid(message: String) -> ProviderError {
    ProviderError::Invalid { call: "local.ensure_l7", message }
}

impl L7Lb {
    pub(crate) fn new(
        id: LoadBalancerId,
        ip: IpAddr,
        counters: Arc<Counters>,
        http: Arc<HttpCounters>,
        workers: Arc<Workers>,
    ) -> Result<Self> {
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::empty()));
        let tls = tls::server_config(Arc::clone(&snapshot))
            .map_err(|e| invalid(format!("cannot set up TLS for the load balancer: {e}")))?;
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.keep_alive(true);
        let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        let shared = Arc::new(Shared {
            ip,
            snapshot,
            tls,
            h1,
            h2,
            counters: Arc::clone(&counters),
            http: Arc::clone(&http),
            workers: Arc::clone(&workers),
        });
        Ok(Self {
            id,
            ip,
            spec: None,
            counters,
            http,
            shared,
            workers,
            listeners: BTreeMap::new(),
            health: HashMap::new(),
            endpoints: HashMap::new(),
        })
    }

    pub(crate) fn status(&self) -> LoadBalancerStatus {
        let mut record = Record::default();
        record.set(RECORD_IP, self.ip.to_string());
        LoadBalancerStatus::new(
            vec![IngressPoint::Ip(self.ip)],
            IpMode::Proxy,
            record,
            self.spec.as_ref().map(L7Spec::hash),
        )
    }

    /// Make this load balancer implement `spec`. On error nothing has changed. Returns the
    /// handles of closed listener tasks: await them to know their sockets are released.
    pub(crate) fn converge(&mut self, spec: &L7Spec, config: &LocalConfig) -> Result<Vec<JoinHandle<()>>> {
        // 1. Everything that can fail, before anything running changes.
        let problems = problems(spec);
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        let opts = options::parse(&spec.options).0;
        let certs = tls::parse_all(spec).map_err(|p| invalid(p.join("; ")))?;
        let mut bound = BTreeMap::new();
        for l in &spec.listeners {
            if !self.listeners.contains_key(&l.port) && !bound.contains_key(&l.port) {
                // A failure returns here: `bound` is dropped, its sockets closed.
                bound.insert(l.port, self.bind(l.port)?);
            }
        }

        // 2. Nodes (by dial address, first node wins on duplicates), health and endpoints.
        let mut targets: Vec<(IpAddr, &str)> = Vec::with_capacity(spec.targets.len());
        for t in spec.targets.iter() {
            match t.dial_address() {
                Some(ip) if !targets.iter().any(|(seen, _)| *seen == ip) => targets.push((ip, &t.node)),
                Some(_) => {}
                None => tracing::warn!(lb = %self.id, node = %t.node, "target has no InternalIP/ExternalIP: skipped"),
            }
        }
        let mut health = HashMap::new();
        let mut endpoints = HashMap::new();
        let mut pools: HashMap<BackendRef, Arc<BackendPool>> = HashMap::with_capacity(spec.backends.len());
        for b in &spec.backends {
            let mut list = Vec::new();
            if let Some(node_port) = b.node_port {
                for (ip, node) in &targets {
                    let cfg = health::l7_config(&b.health_check, *ip, node_port);
                    if !health.contains_key(&cfg) {
                        let slot = match self.health.remove(&cfg) {
                            Some(slot) if slot.node == *node => slot,
                            _ => {
                                let state = Arc::<TargetHealth>::default();
                                let task = health::spawn(
                                    node.to_string(),
                                    cfg.clone(),
                                    Arc::clone(&state),
                                    Arc::clone(&self.counters),
                                );
                                HealthSlot { node: node.to_string(), state, _task: task }
                            }
                        };
                        health.insert(cfg.clone(), slot);
                    }
                    let addr = SocketAddr::new(*ip, node_port);
                    let key = (addr, cfg);
                    let endpoint = match self.endpoints.get(&key).filter(|e| e.node == *node) {
                        Some(e) => Arc::clone(e),
                        None => {
                            let state = health.get(&key.1).map(|s| Arc::clone(&s.state)).unwrap_or_default();
                            Endpoint::new(addr, node.to_string(), state, self.workers.handles().len())
                        }
                    };
                    list.push(Arc::clone(&endpoint));
                    endpoints.insert(key, endpoint);
                }
            }
            pools.insert(b.id.clone(), Arc::new(BackendPool::new(b, list)));
        }

        // 3. The new snapshot, in one store.
        let spec_arc = Arc::new(spec.clone());
        let secs = |s: u32| Duration::from_secs(u64::from(s.max(1)));
        let snapshot = Snapshot {
            router: Router::new(Arc::clone(&spec_arc), &pools),
            spec: spec_arc,
            certs,
            source: SourceFilter::new(&spec.source_ranges),
            upstream: UpstreamTimeouts {
                connect: secs(spec.timeouts.connect_seconds),
                request: secs(spec.timeouts.request_seconds),
            },
            idle: secs(spec.timeouts.idle_seconds),
            drain: drain(&opts, config),
        };
        self.shared.snapshot.store(Arc::new(snapshot));
        self.health = health; // probes of nodes and checks no longer wanted stop here
        self.endpoints = endpoints;

        // 4. Listeners: new ones start, removed ones close.
        let wanted: BTreeSet<u16> = spec.listeners.iter().map(|l| l.port).collect();
        let mut closing = Vec::new();
        let ports: Vec<u16> = self.listeners.keys().copied().filter(|p| !wanted.contains(p)).collect();
        for port in ports {
            if let Some(slot) = self.listeners.remove(&port) {
                closing.extend(slot.close());
            }
        }
        for (port, sockets) in bound {
            let (tx, rx) = watch::channel(false);
            let mut tasks = Vec::with_capacity(sockets.len());
            for (socket, worker) in sockets.into_iter().zip(self.workers.handles()) {
                let (shared, rx) = (Arc::clone(&self.shared), rx.clone());
                let task = worker.spawn(async move {
                    // Registers the socket with this worker's reactor.
                    match tokio::net::TcpListener::from_std(socket) {
                        Ok(listener) => listener::serve(listener, port, shared, rx).await,
                        Err(e) => tracing::error!(port, error = %e, "cannot serve a listener on an HTTP worker"),
                    }
                });
                tasks.push(AbortOnDrop::new(task));
            }
            self.listeners.insert(port, ListenerSlot { tasks, shutdown: tx });
        }
        self.spec = Some(spec.clone());
        Ok(closing)
    }

    /// Bind `port` now (so a conflict is reported by `ensure_l7`), as one socket per worker
    /// (duplicates of one listening socket: one accept queue, one port).
    fn bind(&self, port: u16) -> Result<Vec<std::net::TcpListener>> {
        let addr = SocketAddr::new(self.ip, port);
        let listener = listener_tcp::bind(addr)?;
        let shared = listener.into_std().map_err(|e| crate::bind_error(addr, "TCP", &e))?;
        let mut sockets = Vec::with_capacity(self.workers.handles().len());
        for _ in 1..self.workers.handles().len() {
            sockets.push(shared.try_clone().map_err(|e| crate::bind_error(addr, "TCP", &e))?);
        }
        sockets.push(shared);
        Ok(sockets)
    }

    /// Stop accepting everywhere; open connections close gracefully. Await the handles to know
    /// the sockets are released.
    pub(crate) fn close(mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.listeners).into_values().flat_map(ListenerSlot::close).collect()
    }

    pub(crate) fn backend_stats(&self) -> Vec<BackendStats> {
        let snap = self.shared.snapshot.load();
        let mut out: Vec<BackendStats> = snap
            .spec
            .backends
            .iter()
            .map(|b| {
                let pool = snap.router.pool(&b.id);
                let mut targets: Vec<TargetStats> = pool
                    .map(|p| p.endpoints.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|e| TargetStats {
                        node: e.node.clone(),
                        address: e.addr.ip(),
                        healthy: e.health.is_healthy(),
                        consecutive_failures: e.health.consecutive_failures(),
                        probes: e.health.probes(),
                        connections_active: e.active.load(std::sync::atomic::Ordering::Relaxed),
                    })
                    .collect();
                targets.sort_by(|a, b| a.node.cmp(&b.node).then(a.address.cmp(&b.address)));
                BackendStats { backend: b.id.to_string(), node_port: b.node_port, problem: b.problem.clone(), targets }
            })
            .collect();
        out.sort_by(|a, b| a.backend.cmp(&b.backend));
        out
    }
}

fn drain(opts: &LbOptions, config: &LocalConfig) -> Duration {
    opts.drain_timeout.unwrap_or(config.drain_timeout)
}

impl Snapshot {
    /// What a load balancer serves before its first `ensure` completes: nothing.
    fn empty() -> Self {
        let spec = Arc::new(L7Spec {
            listeners: Vec::new(),
            wildcards: Default::default(),
            virtual_hosts: Vec::new(),
            default_action: RouteAction::not_found(),
            backends: Vec::new(),
            certificates: Vec::new(),
            targets: Arc::default(),
            source_ranges: Vec::new(),
            requested_ip: None,
            scheme: Default::default(),
            timeouts: Default::default(),
            options: BTreeMap::new(),
        });
        Snapshot {
            router: Router::new(Arc::clone(&spec), &HashMap::new()),
            spec,
            certs: Vec::new(),
            source: SourceFilter::new(&[]),
            upstream: UpstreamTimeouts { connect: Duration::from_secs(5), request: Duration::from_secs(60) },
            idle: Duration::from_secs(60),
            drain: Duration::from_secs(30),
        }
    }
}

/// Why the local provider cannot build `spec` (no I/O): listeners, options, routes naming
/// backends the spec does not define, certificates that do not parse. The same check refuses
/// `ensure_l7`, so `validate_l7` and `ensure_l7` never disagree.
pub(crate) fn problems(spec: &L7Spec) -> Vec<String> {
    let mut problems = Vec::new();
    if spec.listeners.is_empty() {
        problems.push("an HTTP load balancer needs at least one listener".into());
    }
    if spec.listeners.len() > MAX_LISTENERS {
        problems.push(format!(
            "{} ports requested, the local provider supports at most {MAX_LISTENERS}",
            spec.listeners.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for l in &spec.listeners {
        if !seen.insert(l.port) {
            problems.push(format!("port {} is listed twice", l.port));
        }
        if l.protocol == L7Protocol::Https && l.redirect_to_https.is_some() {
            problems.push(format!("port {}: an HTTPS listener cannot redirect to HTTPS", l.port));
        }
    }
    let (opts, mut option_problems) = options::parse(&spec.options);
    problems.append(&mut option_problems);
    problems.extend(options::unknown(&spec.options));
    if opts.proxy_v2 {
        problems.push(format!(
            "{OPTION_PREFIX}{}: the PROXY protocol is for TCP load balancers; an HTTP load balancer passes the client address in X-Forwarded-For",
            options::PROXY_PROTOCOL
        ));
    }
    let defined: BTreeSet<&BackendRef> = spec.backends.iter().map(|b| &b.id).collect();
    let mut undefined: BTreeSet<String> = BTreeSet::new();
    let actions = spec.virtual_hosts.iter().flat_map(|v| v.routes.iter().map(|r| &r.action));
    for a in actions.chain(std::iter::once(&spec.default_action)) {
        for b in a.backends() {
            if !defined.contains(b) {
                undefined.insert(b.to_string());
            }
        }
    }
    for b in undefined {
        problems.push(format!("backend {b} is routed to but not defined in the spec's backends"));
    }
    if let Err(mut cert_problems) = tls::parse_all(spec) {
        problems.append(&mut cert_problems);
    }
    problems
}

/// Parts of `spec` that will not work as the user may expect, without blocking it.
pub(crate) fn warnings(spec: &L7Spec) -> Vec<String> {
    let mut out = Vec::new();
    if spec.listeners.iter().any(|l| l.protocol == L7Protocol::Https) && spec.certificates.is_empty() {
        out.push(
            "an HTTPS listener has no certificate: TLS handshakes will fail until a valid TLS Secret is referenced"
                .into(),
        );
    }
    if options::parse(&spec.options).0.policy != LbOptions::default().policy {
        out.push(format!(
            "{OPTION_PREFIX}{} is ignored by HTTP load balancers: each request goes to the healthy node with the fewest requests in flight",
            options::BALANCE
        ));
    }
    for t in spec.targets.iter().filter(|t| t.dial_address().is_none()) {
        out.push(format!("node {} has no InternalIP or ExternalIP: no traffic is sent to it", t.node));
    }
    out
}
