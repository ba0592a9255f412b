//! Counters of the data plane, kept per load balancer as plain atomics (one cache line of
//! relaxed increments on the hot path, no lock), and snapshotted into serializable
//! [`LocalStats`] for metrics, tests and the sandbox.
//!
//! Totals include load balancers deleted since the provider started, so that exported counters
//! never go backwards.
//!
//! HTTP (L7) load balancers count their connections, bytes, upstream connects and health probes
//! in the same [`TrafficStats`] as TCP ones, and their requests in [`HttpStats`] (by status
//! class, and why the load balancer answered itself); their health is per backend and node
//! ([`BackendStats`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::limits::{TcpRefusal, UdpRefusal};

/// Everything [`crate::LocalProvider::stats`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LocalStats {
    /// Sums over all load balancers, including deleted ones (counters) / current ones (gauges).
    pub totals: TrafficStats,
    /// Sorted by namespace, name, uid (L4 and L7 load balancers together; see `kind`).
    pub load_balancers: Vec<LoadBalancerStats>,
    /// Sums of the HTTP counters over all L7 load balancers, including deleted ones.
    pub http_totals: HttpStats,
}

/// Which kind of load balancer a [`LoadBalancerStats`] describes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum LoadBalancerKind {
    /// TCP/UDP forwarding for a Service.
    #[default]
    L4,
    /// HTTP(S) proxying for an Ingress.
    L7,
}

/// Request counters of an HTTP load balancer (monotonic).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HttpStats {
    /// Requests received (every HTTP version, every listener).
    pub requests: u64,
    /// Responses sent, by status class (from the backends and from the load balancer itself).
    pub responses_1xx: u64,
    pub responses_2xx: u64,
    pub responses_3xx: u64,
    pub responses_4xx: u64,
    pub responses_5xx: u64,
    /// 404 answered because no route matched and there is no default backend (or a fixed action).
    pub not_found: u64,
    /// 503 answered because the backend is unresolved, has no node, or no healthy node.
    pub unavailable: u64,
    /// 502 answered because the backend could not be reached or failed mid-exchange.
    pub upstream_errors: u64,
    /// 504 answered because connecting or the backend's answer took too long.
    pub upstream_timeouts: u64,
    /// 308 answered by listeners that redirect HTTP to HTTPS.
    pub redirects: u64,
    /// Upgraded connections (WebSocket and other `Upgrade`s) passed through.
    pub upgrades: u64,
    /// Connections opened to nodes (a keep-alive pool opens few for many requests).
    pub upstream_connections: u64,
    /// Times an idle HTTP/1.1 client connection was parked (its HTTP buffers freed until the
    /// client sends again).
    pub parks: u64,
    pub tls_handshakes: u64,
    pub tls_handshake_failures: u64,
}

impl HttpStats {
    pub(crate) fn add(&mut self, o: &HttpStats) {
        self.requests += o.requests;
        self.responses_1xx += o.responses_1xx;
        self.responses_2xx += o.responses_2xx;
        self.responses_3xx += o.responses_3xx;
        self.responses_4xx += o.responses_4xx;
        self.responses_5xx += o.responses_5xx;
        self.not_found += o.not_found;
        self.unavailable += o.unavailable;
        self.upstream_errors += o.upstream_errors;
        self.upstream_timeouts += o.upstream_timeouts;
        self.redirects += o.redirects;
        self.upgrades += o.upgrades;
        self.upstream_connections += o.upstream_connections;
        self.parks += o.parks;
        self.tls_handshakes += o.tls_handshakes;
        self.tls_handshake_failures += o.tls_handshake_failures;
    }
}

/// One backend (Service port) of an HTTP load balancer and its nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendStats {
    /// `namespace/service:port`.
    pub backend: String,
    pub node_port: Option<u16>,
    /// Why the backend is unresolved (requests to it get 503).
    pub problem: Option<String>,
    /// Sorted by node name; `connections_active` counts requests in flight to the node.
    pub targets: Vec<TargetStats>,
}

/// Traffic counters (monotonic unless marked as a gauge).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrafficStats {
    pub connections_accepted: u64,
    /// Gauge: TCP connections open now.
    pub connections_active: u64,
    /// TCP connections closed at once because the client is outside `loadBalancerSourceRanges`.
    pub connections_refused: u64,
    /// TCP connections reset at once because the load balancer had `max_tcp_connections` open.
    pub connections_refused_lb_limit: u64,
    /// TCP connections reset at once because their client address had
    /// `max_tcp_connections_per_source` open to this load balancer.
    pub connections_refused_source_limit: u64,
    /// TCP connections closed because no byte passed either way for `tcp_idle_timeout`.
    pub connections_idle_closed: u64,
    /// Connection attempts to a target that failed (refused, timed out).
    pub connect_failures: u64,
    /// Connections retried on a second target after the first failed.
    pub connect_retries: u64,
    /// Connections / flows closed because no target could be reached (or none exists).
    pub no_target: u64,
    /// Routing decisions made while no target was healthy (all targets used: fail open).
    pub panic_routes: u64,
    /// Connections closed when a removed target's drain timeout ran out.
    pub drained_closed: u64,
    /// Client -> target payload bytes (counted as they pass).
    pub bytes_in: u64,
    /// Target -> client payload bytes.
    pub bytes_out: u64,
    pub udp_flows: u64,
    /// Gauge: UDP flows open now.
    pub udp_flows_active: u64,
    /// Datagrams dropped because the client is outside `loadBalancerSourceRanges`.
    pub udp_datagrams_refused: u64,
    /// Datagrams dropped because a socket buffer was full (UDP has no backpressure).
    pub udp_datagrams_dropped: u64,
    /// Datagrams dropped because they would have opened a flow while the load balancer had
    /// `max_udp_flows` open (each such datagram counts).
    pub udp_datagrams_refused_lb_limit: u64,
    /// Datagrams dropped because they would have opened a flow while the process had
    /// `max_udp_flows_total` open.
    pub udp_datagrams_refused_total_limit: u64,
    pub health_probes: u64,
    pub health_probe_failures: u64,
}

impl TrafficStats {
    pub(crate) fn add(&mut self, o: &TrafficStats) {
        self.connections_accepted += o.connections_accepted;
        self.connections_active += o.connections_active;
        self.connections_refused += o.connections_refused;
        self.connections_refused_lb_limit += o.connections_refused_lb_limit;
        self.connections_refused_source_limit += o.connections_refused_source_limit;
        self.connections_idle_closed += o.connections_idle_closed;
        self.connect_failures += o.connect_failures;
        self.connect_retries += o.connect_retries;
        self.no_target += o.no_target;
        self.panic_routes += o.panic_routes;
        self.drained_closed += o.drained_closed;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.udp_flows += o.udp_flows;
        self.udp_flows_active += o.udp_flows_active;
        self.udp_datagrams_refused += o.udp_datagrams_refused;
        self.udp_datagrams_dropped += o.udp_datagrams_dropped;
        self.udp_datagrams_refused_lb_limit += o.udp_datagrams_refused_lb_limit;
        self.udp_datagrams_refused_total_limit += o.udp_datagrams_refused_total_limit;
        self.health_probes += o.health_probes;
        self.health_probe_failures += o.health_probe_failures;
    }

    /// The same counters with the gauges zeroed (what a deleted load balancer leaves behind).
    pub(crate) fn without_gauges(mut self) -> Self {
        self.connections_active = 0;
        self.udp_flows_active = 0;
        self
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoadBalancerStats {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub kind: LoadBalancerKind,
    pub address: IpAddr,
    pub traffic: TrafficStats,
    /// Sorted by node name (L4; an L7 load balancer reports its nodes per backend).
    pub targets: Vec<TargetStats>,
    /// L7 only: request counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpStats>,
    /// L7 only: sorted by backend.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<BackendStats>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TargetStats {
    pub node: String,
    pub address: IpAddr,
    pub healthy: bool,
    pub consecutive_failures: u32,
    pub probes: u64,
    /// Gauge: TCP connections to this target open now (all listeners).
    pub connections_active: u64,
}

/// The live counters of one load balancer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub connections_accepted: AtomicU64,
    pub connections_active: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_refused_lb_limit: AtomicU64,
    pub connections_refused_source_limit: AtomicU64,
    pub connections_idle_closed: AtomicU64,
    pub connect_failures: AtomicU64,
    pub connect_retries: AtomicU64,
    pub no_target: AtomicU64,
    pub panic_routes: AtomicU64,
    pub drained_closed: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub udp_flows: AtomicU64,
    pub udp_flows_active: AtomicU64,
    pub udp_datagrams_refused: AtomicU64,
    pub udp_datagrams_dropped: AtomicU64,
    pub udp_datagrams_refused_lb_limit: AtomicU64,
    pub udp_datagrams_refused_total_limit: AtomicU64,
    pub health_probes: AtomicU64,
    pub health_probe_failures: AtomicU64,
}

/// The live request counters of one HTTP load balancer.
#[derive(Debug, Default)]
pub(crate) struct HttpCounters {
    pub requests: AtomicU64,
    /// Index = status / 100 - 1 (1xx..5xx).
    pub responses: [AtomicU64; 5],
    pub not_found: AtomicU64,
    pub unavailable: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    pub redirects: AtomicU64,
    pub upgrades: AtomicU64,
    pub upstream_connections: AtomicU64,
    pub parks: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
}

impl HttpCounters {
    /// Count one response by its status class.
    #[inline]
    pub(crate) fn response(&self, status: u16) {
        if let Some(c) = (status / 100).checked_sub(1).and_then(|i| self.responses.get(usize::from(i))) {
            inc(c);
        }
    }

    pub(crate) fn snapshot(&self) -> HttpStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HttpStats {
            requests: l(&self.requests),
            responses_1xx: l(&self.responses[0]),
            responses_2xx: l(&self.responses[1]),
            responses_3xx: l(&self.responses[2]),
            responses_4xx: l(&self.responses[3]),
            responses_5xx: l(&self.responses[4]),
            not_found: l(&self.not_found),
            unavailable: l(&self.unavailable),
            upstream_errors: l(&self.upstream_errors),
            upstream_timeouts: l(&self.upstream_timeouts),
            redirects: l(&self.redirects),
            upgrades: l(&self.upgrades),
            upstream_connections: l(&self.upstream_connections),
            parks: l(&self.parks),
            tls_handshakes: l(&self.tls_handshakes),
            tls_handshake_failures: l(&self.tls_handshake_failures),
        }
    }
}

/// `+1` on a counter.
#[inline]
pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Decrements a gauge when dropped, so every exit path of a connection task counts.
pub(crate) struct GaugeGuard<'a>(&'a AtomicU64);

impl<'a> GaugeGuard<'a> {
    pub(crate) fn new(g: &'a AtomicU64) -> Self {
        g.fetch_add(1, Ordering::Relaxed);
        Self(g)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    /// Count a new TCP connection refused by a cap.
    pub(crate) fn tcp_refused(&self, why: TcpRefusal) {
        inc(match why {
            TcpRefusal::LoadBalancer => &self.connections_refused_lb_limit,
            TcpRefusal::Source => &self.connections_refused_source_limit,
        });
    }

    /// Count a datagram dropped because its new flow was refused by a cap.
    pub(crate) fn udp_refused(&self, why: UdpRefusal) {
        inc(match why {
            UdpRefusal::LoadBalancer => &self.udp_datagrams_refused_lb_limit,
            UdpRefusal::Total => &self.udp_datagrams_refused_total_limit,
        });
    }

    pub(crate) fn snapshot(&self) -> TrafficStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TrafficStats {
            connections_accepted: l(&self.connections_accepted),
            connections_active: l(&self.connections_active),
            connections_refused: l(&self.connections_refused),
            connections_refused_lb_limit: l(&self.connections_refused_lb_limit),
            connections_refused_source_limit: l(&self.connections_refused_source_limit),
            connections_idle_closed: l(&self.connections_idle_closed),
            connect_failures: l(&self.connect_failures),
            connect_retries: l(&self.connect_retries),
            no_target: l(&self.no_target),
            panic_routes: l(&self.panic_routes),
            drained_closed: l(&self.drained_closed),
            bytes_in: l(&self.bytes_in),
            bytes_out: l(&self.bytes_out),
            udp_flows: l(&self.udp_flows),
            udp_flows_active: l(&self.udp_flows_active),
            udp_datagrams_refused: l(&self.udp_datagrams_refused),
            udp_datagrams_dropped: l(&self.udp_datagrams_dropped),
            udp_datagrams_refused_lb_limit: l(&self.udp_datagrams_refused_lb_limit),
            udp_datagrams_refused_total_limit: l(&self.udp_datagrams_refused_total_limit),
            health_probes: l(&self.health_probes),
            health_probe_failures: l(&self.health_probe_failures),
        }
    }
}

// ---- Prometheus samples --------------------------------------------------------------------

use cloudlb_provider::ProviderMetric;

/// The samples `/metrics` exports: per load balancer (labels namespace, name, kind), the
/// connections, refusals by reason, bytes by direction, UDP flows and drops, health probes and
/// targets, and for HTTP load balancers the requests and responses by status class and why the
/// load balancer answered itself.
pub fn metrics(stats: &LocalStats) -> Vec<ProviderMetric> {
    let mut out = Vec::new();
    for lb in &stats.load_balancers {
        let kind = match lb.kind {
            LoadBalancerKind::L4 => "l4",
            LoadBalancerKind::L7 => "l7",
        };
        let base = || vec![("namespace", lb.namespace.clone()), ("name", lb.name.clone()), ("kind", kind.to_string())];
        let with = |k: &'static str, v: &str| {
            let mut l = base();
            l.push((k, v.to_string()));
            l
        };
        let t = &lb.traffic;
        let c = ProviderMetric::counter;
        let g = ProviderMetric::gauge;
        out.push(c("local_connections", "TCP connections accepted", base(), t.connections_accepted));
        out.push(g("local_connections_active", "TCP connections open now", base(), t.connections_active));
        for (reason, v) in [
            ("source_range", t.connections_refused),
            ("lb_limit", t.connections_refused_lb_limit),
            ("source_limit", t.connections_refused_source_limit),
        ] {
            out.push(c("local_connections_refused", "TCP connections refused, by reason", with("reason", reason), v));
        }
        out.push(c(
            "local_connections_idle_closed",
            "TCP connections closed for idleness",
            base(),
            t.connections_idle_closed,
        ));
        out.push(c("local_connect_failures", "Failed connection attempts to a node", base(), t.connect_failures));
        out.push(c(
            "local_no_target",
            "Connections or flows closed because no node could be reached",
            base(),
            t.no_target,
        ));
        for (dir, v) in [("in", t.bytes_in), ("out", t.bytes_out)] {
            out.push(c("local_bytes", "Payload bytes, client to node (in) and back (out)", with("direction", dir), v));
        }
        out.push(c("local_udp_flows", "UDP flows opened", base(), t.udp_flows));
        out.push(g("local_udp_flows_active", "UDP flows open now", base(), t.udp_flows_active));
        for (reason, v) in [
            ("source_range", t.udp_datagrams_refused),
            ("buffer_full", t.udp_datagrams_dropped),
            ("lb_limit", t.udp_datagrams_refused_lb_limit),
            ("total_limit", t.udp_datagrams_refused_total_limit),
        ] {
            out.push(c("local_udp_datagrams_dropped", "UDP datagrams dropped, by reason", with("reason", reason), v));
        }
        out.push(c("local_health_probes", "Health probes sent to nodes", base(), t.health_probes));
        out.push(c("local_health_probe_failures", "Health probes that failed", base(), t.health_probe_failures));
        let targets: Vec<&TargetStats> =
            lb.targets.iter().chain(lb.backends.iter().flat_map(|b| b.targets.iter())).collect();
        out.push(g("local_targets", "Node targets (per backend for HTTP)", base(), targets.len() as u64));
        out.push(g(
            "local_targets_healthy",
            "Node targets passing their health check",
            base(),
            targets.iter().filter(|t| t.healthy).count() as u64,
        ));
        if let Some(h) = &lb.http {
            out.push(c("local_http_requests", "HTTP requests received", base(), h.requests));
            for (code, v) in [
                ("1xx", h.responses_1xx),
                ("2xx", h.responses_2xx),
                ("3xx", h.responses_3xx),
                ("4xx", h.responses_4xx),
                ("5xx", h.responses_5xx),
            ] {
                out.push(c("local_http_responses", "HTTP responses sent, by status class", with("code", code), v));
            }
            for (reason, v) in [
                ("not_found", h.not_found),
                ("unavailable", h.unavailable),
                ("upstream_error", h.upstream_errors),
                ("upstream_timeout", h.upstream_timeouts),
                ("redirect", h.redirects),
            ] {
                out.push(c(
                    "local_http_answered",
                    "Requests the load balancer answered itself, by reason",
                    with("reason", reason),
                    v,
                ));
            }
            out.push(c("local_tls_handshake_failures", "TLS handshakes that failed", base(), h.tls_handshake_failures));
        }
    }
    out
}
