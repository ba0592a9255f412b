//! `cloudlb-provider-local`: cloudlb itself is the load balancer, on this host.
//!
//! For every load balancer it allocates an address from a pool (by default `127.240.0.0/16`,
//! which Linux's loopback answers for without any configuration, unprivileged), binds the
//! Service's ports on it, and forwards TCP connections and UDP flows to the targets' node ports
//! (`Target::dial_address()`, port `Listener::node_port`). It is what a kind / k3s / bare-metal
//! user runs, and what `cloudlb sandbox` uses so that a newcomer's `curl` reaches a real
//! backend: like cloud-provider-kind's Envoy-per-Service, without containers, privileges or a
//! second process.
//!
//! ```text
//!                       LocalProvider (Mutex<State>: only ensure/delete/get/stats take it)
//!                        ├─ AddressPool (core) address pools, stable per Service via the Record ("ip")
//!                        └─ Lb per id ── Front per (port, protocol)
//!  client ─▶ addr:port ──▶  listener_tcp / listener_udp ─▶ balance::Table (ArcSwap, lock-free)
//!                                                           ├─ health (probe task per node)
//!                                                           └─▶ node IP : node port
//! ```
//!
//! Modules: addresses come from [`cloudlb_provider::pool`]; `lb` (one load balancer, converging in place),
//! `listener_tcp`, `listener_udp` (the data plane), `balance` (routing, affinity, panic mode),
//! `health` (active checks), [`proxy_protocol`] (PROXY v2 header), `options` (annotations),
//! [`stats`] (counters), `tasks` (task ownership), `limits` (caps on connections and flows),
//! `activity` (idle timeouts).
//!
//! **Bounded under floods.** Every TCP connection costs two descriptors (client and target) and
//! every UDP flow one (its socket towards the target), plus memory; without caps a flood of new
//! connections or new client addresses takes them until the process runs out. So, per load
//! balancer (all its listeners together, L4 only) and per process, [`LocalConfig`] caps:
//!
//! | setting | default | why this number |
//! |---|---|---|
//! | `max_tcp_connections` (per load balancer) | 10,000 | a full load balancer holds 20,000 descriptors and about 100 MiB idle (two 4 KiB buffers and a task per connection; bulk transfers grow the buffers to 64 KiB each); the size of this crate's idle-connection benchmark, and far above what one Service on one host normally sees |
//! | `max_tcp_connections_per_source` | 2,500 | a quarter of the above: one client address cannot take a whole Service, four are needed to fill it; still far above browsers (6 per host), connection pools (tens) and local load tests (hundreds). All clients on this host share one address (127.0.0.1 or the host's): raise it for local tests with more concurrent connections |
//! | `max_udp_flows` (per load balancer) | 10,000 | one descriptor and about 2 KiB per flow; with the 60 s `udp_idle_timeout`, room for about 160 new client ports per second sustained (DNS clients use a new port per query) |
//! | `max_udp_flows_total` (process) | 50,000 | five full load balancers: a flood of spoofable UDP sources on many Services stays at 50,000 descriptors and about 100 MiB |
//! | `tcp_idle_timeout` | 1 h | Envoy's TCP proxy default: connection pools and other long-lived connections that idle between uses keep working (cloud load balancers cut them sooner: 350 s on AWS NLB), while a client that vanished without a FIN does not hold its slot for ever |
//!
//! A TCP connection past a cap is reset right after `accept` (it never reaches a target); a
//! datagram that would open a UDP flow past a cap is dropped. Both are counted by reason
//! ([`TrafficStats::connections_refused_lb_limit`], `connections_refused_source_limit`,
//! `udp_datagrams_refused_lb_limit`, `udp_datagrams_refused_total_limit`; idle closes in
//! `connections_idle_closed`). Connections and flows already open are never affected. A slot is
//! held by the connection's task or the flow's socket and given back when it closes, however
//! it ends. The caps bound what this process opens; the descriptors it may open at all are
//! still its `RLIMIT_NOFILE`, which must be above the caps for them to be what binds.
//!
//! **HTTP (L7) load balancers** (Ingresses) live in `l7`: cloudlb terminates HTTP/1.1, HTTP/2
//! and TLS itself and routes requests by host and path to the backends' node ports. They take
//! their address from the same pool (recorded under the same `ip` key) and reuse the health
//! checks, source filter, bind errors, task ownership and counters of the L4 path; an id is
//! either an L4 or an L7 load balancer, never both (two maps).
//!
//! State lives in this process ([`StateLocation::InProcess`]): after a restart the controller
//! re-ensures every Service with its recorded address, which is kept.

mod activity;
mod balance;
mod health;
mod l7;
mod lb;
mod limits;
mod listener_tcp;
mod listener_udp;
mod options;
pub mod proxy_protocol;
pub mod stats;
mod tasks;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use cloudlb_provider::{
    Capabilities, IpMode, L7Capabilities, L7Spec, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus, Protocol,
    Provider, ProviderError, Record, Result, StateLocation,
};
use ipnet::IpNet;

use crate::l7::L7Lb;
use crate::lb::Lb;
pub use crate::limits::{
    DEFAULT_MAX_TCP_CONNECTIONS, DEFAULT_MAX_TCP_CONNECTIONS_PER_SOURCE, DEFAULT_MAX_UDP_FLOWS,
    DEFAULT_MAX_UDP_FLOWS_TOTAL, DEFAULT_TCP_IDLE_TIMEOUT,
};
use crate::limits::{Gate, LbSlots};
pub use crate::stats::{
    BackendStats, HttpStats, LoadBalancerKind, LoadBalancerStats, LocalStats, TargetStats, TrafficStats,
};
use cloudlb_provider::pool::AddressPool;

/// Annotations under this prefix arrive in `spec.options` with the prefix cut.
pub const OPTION_PREFIX: &str = "local.cloudlb.io/";

/// Record key under which the allocated address is kept.
pub const RECORD_IP: &str = "ip";

/// Most listeners one load balancer may have.
pub const MAX_LISTENERS: usize = 100;

/// Most routes one HTTP load balancer may have (they are matched in order per virtual host).
pub const MAX_L7_ROUTES: usize = 10_000;

#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// Where addresses come from. The default, `127.240.0.0/16`, is on Linux's loopback: bindable
    /// by an unprivileged process (ports >= 1024) and reachable from this host only.
    pub pools: Vec<IpNet>,
    /// How long connections to a removed target (or listener, or deleted load balancer) may
    /// finish before they are closed. Option `drain-timeout-seconds` overrides it per Service.
    pub drain_timeout: Duration,
    /// A UDP flow without a datagram either way for this long is closed.
    pub udp_idle_timeout: Duration,
    /// Connecting to a target that takes longer fails (and is retried once elsewhere).
    pub connect_timeout: Duration,
    /// A proxied TCP connection without a byte either way for this long is closed (both sides).
    pub tcp_idle_timeout: Duration,
    /// Most TCP connections one load balancer (all its listeners) has open at once; a new one
    /// past it is reset right after `accept`. The defaults of this and the caps below, and why,
    /// are in the crate docs.
    pub max_tcp_connections: usize,
    /// Most TCP connections one client address has open at once to one load balancer (IPv4 and
    /// IPv4-mapped IPv6 are the same address).
    pub max_tcp_connections_per_source: usize,
    /// Most UDP flows one load balancer (all its listeners) has open at once; a datagram that
    /// would open another one is dropped.
    pub max_udp_flows: usize,
    /// Most UDP flows open at once in this process (all load balancers).
    pub max_udp_flows_total: usize,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            pools: vec![IpNet::V4(
                ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(127, 240, 0, 0), 16).unwrap_or_default(),
            )],
            drain_timeout: Duration::from_secs(30),
            udp_idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            tcp_idle_timeout: limits::DEFAULT_TCP_IDLE_TIMEOUT,
            max_tcp_connections: limits::DEFAULT_MAX_TCP_CONNECTIONS,
            max_tcp_connections_per_source: limits::DEFAULT_MAX_TCP_CONNECTIONS_PER_SOURCE,
            max_udp_flows: limits::DEFAULT_MAX_UDP_FLOWS,
            max_udp_flows_total: limits::DEFAULT_MAX_UDP_FLOWS_TOTAL,
        }
    }
}

/// The local provider. Must be used from within a Tokio runtime (it spawns its L4 data plane
/// and its health checks there; HTTP connections run on its own worker threads, see `l7`).
pub struct LocalProvider {
    config: LocalConfig,
    state: Mutex<State>,
    /// UDP flows open in all load balancers, against `max_udp_flows_total`.
    udp_flows_total: Arc<Gate>,
    /// Threads the HTTP data plane runs on (one per core unless set), started with the first
    /// HTTP load balancer.
    http_workers: usize,
    workers: std::sync::OnceLock<Arc<l7::Workers>>,
}

struct State {
    alloc: AddressPool,
    /// Keyed by `cluster/uid`.
    lbs: HashMap<String, Lb>,
    /// HTTP load balancers, keyed by `cluster/uid` (an id is in one map only).
    l7: HashMap<String, L7Lb>,
    /// Counters of deleted load balancers, so totals never go backwards.
    retired: TrafficStats,
    retired_http: HttpStats,
}

fn key(id: &LoadBalancerId) -> String {
    format!("{}/{}", id.cluster, id.uid)
}

impl LocalProvider {
    pub fn new(config: LocalConfig) -> Result<Self> {
        let alloc = AddressPool::new(config.pools.clone(), "local provider")?;
        let state = State {
            alloc,
            lbs: HashMap::new(),
            l7: HashMap::new(),
            retired: TrafficStats::default(),
            retired_http: HttpStats::default(),
        };
        Ok(Self {
            udp_flows_total: Arc::new(Gate::new(config.max_udp_flows_total)),
            config,
            state: Mutex::new(state),
            http_workers: l7::default_workers(),
            workers: std::sync::OnceLock::new(),
        })
    }

    /// Run the HTTP (L7) data plane on `n` threads (at least one) instead of one per core.
    pub fn with_http_workers(mut self, n: usize) -> Self {
        self.http_workers = n.max(1);
        self
    }

    fn workers(&self) -> Result<Arc<l7::Workers>> {
        if let Some(w) = self.workers.get() {
            return Ok(Arc::clone(w));
        }
        let started = l7::Workers::start(self.http_workers).map_err(|e| ProviderError::Retryable {
            call: "local.http_workers",
            message: format!("cannot start the HTTP data plane's threads: {e}"),
        })?;
        // Two first calls at once: one set of workers wins, the other is dropped (stopped).
        Ok(Arc::clone(self.workers.get_or_init(|| started)))
    }

    /// Counters per load balancer and in total, with each target's health.
    pub fn stats(&self) -> LocalStats {
        let st = self.lock();
        let mut totals = st.retired.clone();
        let mut load_balancers: Vec<LoadBalancerStats> = st
            .lbs
            .values()
            .map(|lb| {
                let traffic = lb.counters.snapshot();
                totals.add(&traffic);
                LoadBalancerStats {
                    namespace: lb.id.namespace.clone(),
                    name: lb.id.name.clone(),
                    uid: lb.id.uid.clone(),
                    kind: LoadBalancerKind::L4,
                    address: lb.ip,
                    traffic,
                    targets: lb.target_stats(),
                    http: None,
                    backends: Vec::new(),
                }
            })
            .collect();
        let mut http_totals = st.retired_http.clone();
        for lb in st.l7.values() {
            let traffic = lb.counters.snapshot();
            totals.add(&traffic);
            let http = lb.http.snapshot();
            http_totals.add(&http);
            load_balancers.push(LoadBalancerStats {
                namespace: lb.id.namespace.clone(),
                name: lb.id.name.clone(),
                uid: lb.id.uid.clone(),
                kind: LoadBalancerKind::L7,
                address: lb.ip,
                traffic,
                targets: Vec::new(),
                http: Some(http),
                backends: lb.backend_stats(),
            });
        }
        load_balancers.sort_by(|a, b| (&a.namespace, &a.name, &a.uid).cmp(&(&b.namespace, &b.name, &b.uid)));
        LocalStats { totals, load_balancers, http_totals }
    }

    fn requested_ip_problem(&self, requested: Option<IpAddr>) -> Option<String> {
        let ip = requested?;
        if self.lock().alloc.in_pool(ip) {
            return None;
        }
        Some(format!(
            "loadBalancerIP {ip} is outside the local provider's address pools ({}); request an address inside them or leave it unset",
            self.config.pools.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
        ))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation under the lock is completed before anything can panic, so a poisoned
        // lock holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The error for a listener that cannot be bound, naming `address:port` and the OS error.
pub(crate) fn bind_error(addr: SocketAddr, protocol: &str, e: &std::io::Error) -> ProviderError {
    let what = format!("{addr}/{protocol}");
    match e.kind() {
        std::io::ErrorKind::AddrInUse => ProviderError::Conflict {
            call: "local.bind",
            resource: what.clone(),
            message: format!(
                "cannot listen on {what}: {e}: another process or load balancer uses this port on this address"
            ),
        },
        std::io::ErrorKind::PermissionDenied => ProviderError::Permission {
            call: "local.bind",
            message: format!(
                "cannot listen on {what}: {e}: ports below 1024 need root or CAP_NET_BIND_SERVICE (or a lower net.ipv4.ip_unprivileged_port_start)"
            ),
        },
        _ => ProviderError::Invalid {
            call: "local.bind",
            message: format!(
                "cannot listen on {what}: {e}: is this address configured on the host? (127.0.0.0/8 always is on Linux)"
            ),
        },
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn metrics(&self) -> Vec<cloudlb_provider::ProviderMetric> {
        stats::metrics(&self.stats())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            protocols: vec![Protocol::Tcp, Protocol::Udp],
            mixed_protocols: true,
            same_port_multiple_protocols: true,
            source_ranges: true,
            requested_ip: true,
            // Every address here is as internal as it is external: the same thing.
            internal: true,
            client_ip_affinity: true,
            ip_families: self.lock().alloc.families(),
            max_listeners: MAX_LISTENERS,
            ip_mode: IpMode::Proxy,
            state: StateLocation::InProcess,
            drift_check: cloudlb_provider::DriftCheck::SpecHash,
            l7: Some(L7Capabilities {
                https: true,
                any_port: true,
                redirect_to_https: true,
                method_matches: true,
                header_matches: true,
                query_matches: true,
                weighted_backends: true,
                source_ranges: true,
                requested_ip: true,
                internal: true,
                max_routes: MAX_L7_ROUTES,
                ip_mode: IpMode::Proxy,
            }),
        }
    }

    fn validate(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        let (_, mut problems) = options::parse(&spec.options);
        problems.extend(options::unknown(&spec.options));
        problems.extend(self.requested_ip_problem(spec.requested_ip));
        problems
    }

    async fn ensure(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> Result<LoadBalancerStatus> {
        let (opts, problems) = options::parse(&spec.options);
        if !problems.is_empty() {
            return Err(ProviderError::Invalid { call: "local.ensure", message: problems.join("; ") });
        }
        if spec.listeners.len() > MAX_LISTENERS {
            return Err(ProviderError::Invalid {
                call: "local.ensure",
                message: format!(
                    "{} ports requested, the local provider supports at most {MAX_LISTENERS}",
                    spec.listeners.len()
                ),
            });
        }
        // Everything under the lock is synchronous (binding is): no await point, so a cancelled
        // ensure leaves either the old or the new state, never half of it.
        let (status, closing) = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let k = key(id);
            if st.l7.contains_key(&k) {
                return Err(ProviderError::Invalid {
                    call: "local.ensure",
                    message: format!("{id} is an HTTP (L7) load balancer; an id is used for one kind only"),
                });
            }
            if let Some(lb) = st.lbs.get(&k).filter(|lb| lb.spec.as_ref() == Some(spec)) {
                return Ok(lb.status());
            }
            let current = st.lbs.get(&k).map(|lb| lb.ip);
            let recorded = record.and_then(|r| r.get(RECORD_IP)).and_then(|s| s.parse::<IpAddr>().ok());
            let ip = st.alloc.choose(spec.requested_ip, current, recorded)?;
            match st.lbs.get_mut(&k) {
                Some(lb) if lb.ip == ip => {
                    let closing = lb.converge(spec, &opts, &self.config)?;
                    (lb.status(), closing)
                }
                existing => {
                    // New, or moving to another address: build it whole on `ip` first, so a
                    // failure leaves the old one serving.
                    let counters = existing.as_ref().map(|lb| Arc::clone(&lb.counters)).unwrap_or_default();
                    let slots = existing.as_ref().map_or_else(
                        || LbSlots::new(&self.config, Arc::clone(&self.udp_flows_total)),
                        |lb| Arc::clone(&lb.slots),
                    );
                    let mut lb = Lb::new(id.clone(), ip, counters, slots, self.config.drain_timeout);
                    let mut closing = lb.converge(spec, &opts, &self.config)?;
                    st.alloc.take(ip);
                    let status = lb.status();
                    if let Some(old) = st.lbs.insert(k, lb) {
                        tracing::info!(lb = %id, from = %old.ip, to = %ip, "load balancer moved to its requested address");
                        st.alloc.release(old.ip);
                        closing.extend(old.close());
                    } else {
                        tracing::info!(lb = %id, address = %ip, "load balancer created");
                    }
                    (status, closing)
                }
            }
        };
        // Closed listeners' sockets are released once their tasks are gone: wait for that, so a
        // port freed here can be bound again by the very next call.
        for h in closing {
            let _ = h.await;
        }
        Ok(status)
    }

    async fn delete(&self, id: &LoadBalancerId, _record: Option<&Record>) -> Result<()> {
        let closing = {
            let mut st = self.lock();
            match st.lbs.remove(&key(id)) {
                Some(lb) => {
                    st.alloc.release(lb.ip);
                    let gone = lb.counters.snapshot().without_gauges();
                    st.retired.add(&gone);
                    tracing::info!(lb = %id, address = %lb.ip, "load balancer deleted");
                    lb.close()
                }
                None => Vec::new(),
            }
        };
        for h in closing {
            let _ = h.await;
        }
        Ok(())
    }

    async fn get(&self, id: &LoadBalancerId, _record: Option<&Record>) -> Result<Option<LoadBalancerStatus>> {
        Ok(self.lock().lbs.get(&key(id)).map(Lb::status))
    }

    fn validate_l7(&self, spec: &L7Spec) -> Vec<String> {
        let mut problems = l7::problems(spec);
        problems.extend(self.requested_ip_problem(spec.requested_ip));
        problems
    }

    fn warnings_l7(&self, spec: &L7Spec) -> Vec<String> {
        l7::warnings(spec)
    }

    async fn ensure_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> Result<LoadBalancerStatus> {
        let workers = self.workers()?;
        // As for L4: everything under the lock is synchronous, so a cancelled ensure leaves the
        // old or the new state, never half of it; a failure leaves the old one serving.
        let (status, closing) = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let k = key(id);
            if st.lbs.contains_key(&k) {
                return Err(ProviderError::Invalid {
                    call: "local.ensure_l7",
                    message: format!("{id} is a TCP/UDP (L4) load balancer; an id is used for one kind only"),
                });
            }
            if let Some(lb) = st.l7.get(&k).filter(|lb| lb.spec.as_ref() == Some(spec)) {
                return Ok(lb.status());
            }
            let current = st.l7.get(&k).map(|lb| lb.ip);
            let recorded = record.and_then(|r| r.get(RECORD_IP)).and_then(|s| s.parse::<IpAddr>().ok());
            let ip = st.alloc.choose(spec.requested_ip, current, recorded)?;
            match st.l7.get_mut(&k) {
                Some(lb) if lb.ip == ip => {
                    let closing = lb.converge(spec, &self.config)?;
                    (lb.status(), closing)
                }
                existing => {
                    // New, or moving to another address: build it whole first, so a failure
                    // leaves the old one serving.
                    let counters = existing.as_ref().map(|lb| Arc::clone(&lb.counters)).unwrap_or_default();
                    let http = existing.as_ref().map(|lb| Arc::clone(&lb.http)).unwrap_or_default();
                    let mut lb = L7Lb::new(id.clone(), ip, counters, http, workers)?;
                    let mut closing = lb.converge(spec, &self.config)?;
                    st.alloc.take(ip);
                    let status = lb.status();
                    if let Some(old) = st.l7.insert(k, lb) {
                        tracing::info!(lb = %id, from = %old.ip, to = %ip, "HTTP load balancer moved to its requested address");
                        st.alloc.release(old.ip);
                        closing.extend(old.close());
                    } else {
                        tracing::info!(lb = %id, address = %ip, "HTTP load balancer created");
                    }
                    (status, closing)
                }
            }
        };
        for h in closing {
            let _ = h.await;
        }
        Ok(status)
    }

    async fn delete_l7(&self, id: &LoadBalancerId, _record: Option<&Record>) -> Result<()> {
        let closing = {
            let mut st = self.lock();
            match st.l7.remove(&key(id)) {
                Some(lb) => {
                    st.alloc.release(lb.ip);
                    let gone = lb.counters.snapshot().without_gauges();
                    st.retired.add(&gone);
                    let http = lb.http.snapshot();
                    st.retired_http.add(&http);
                    tracing::info!(lb = %id, address = %lb.ip, "HTTP load balancer deleted");
                    lb.close()
                }
                None => Vec::new(),
            }
        };
        for h in closing {
            let _ = h.await;
        }
        Ok(())
    }

    async fn get_l7(&self, id: &LoadBalancerId, _record: Option<&Record>) -> Result<Option<LoadBalancerStatus>> {
        Ok(self.lock().l7.get(&key(id)).map(L7Lb::status))
    }
}
