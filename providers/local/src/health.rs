//! Active health checks, one task per target (node) of a load balancer.
//!
//! ```text
//!   spec.health_check.target
//!     ServiceHealthCheckNodePort ─▶ HTTP GET <path> on <node>:<port>   (200 = healthy)
//!     KubeProxy                  ─▶ TCP connect to <node>:<node port of the first TCP listener>
//!                                    (there is no kube-proxy here; the traffic port answers
//!                                    for the node, as cloud LBs do for "traffic-port" checks)
//! ```
//!
//! The verdict is one [`TargetHealth`] per node, shared by every listener's backend for that
//! node (a node serves all node ports or none). HTTP (L7) load balancers check each backend on
//! each node with the backend's own check ([`l7_config`]): one verdict per distinct probe. It flips to unhealthy after
//! `unhealthy_threshold` failed probes in a row and back after `healthy_threshold` good ones.
//!
//! **Start state: optimistic.** A new target starts healthy and is probed at once: a new Service
//! (or a new node) carries traffic immediately instead of after `interval * healthy_threshold`,
//! and a dead one leaves rotation after `unhealthy_threshold` probes. The balancer fails open
//! when no target is healthy (see `balance`), so optimism never blackholes more than pessimism.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use cloudlb_provider::{HealthCheck, HealthCheckProtocol, HealthTarget, LoadBalancerSpec, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::{Counters, inc};
use crate::tasks::AbortOnDrop;

/// The health verdict for one node, read on every routing decision (one relaxed load).
#[derive(Debug)]
pub(crate) struct TargetHealth {
    healthy: AtomicBool,
    consecutive_failures: AtomicU32,
    consecutive_successes: AtomicU32,
    probes: AtomicU64,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            consecutive_successes: AtomicU32::new(0),
            probes: AtomicU64::new(0),
        }
    }
}

impl TargetHealth {
    #[inline]
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    /// Record one probe result; returns the new verdict when it changed.
    fn record(&self, ok: bool, healthy_threshold: u32, unhealthy_threshold: u32) -> Option<bool> {
        self.probes.fetch_add(1, Ordering::Relaxed);
        if ok {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            let n = self.consecutive_successes.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.is_healthy() && n >= healthy_threshold {
                self.healthy.store(true, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            self.consecutive_successes.store(0, Ordering::Relaxed);
            let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if self.is_healthy() && n >= unhealthy_threshold {
                self.healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }
}

/// What to probe.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Probe {
    Http {
        addr: SocketAddr,
        path: String,
    },
    Tcp {
        addr: SocketAddr,
    },
    /// Nothing can be probed (a UDP-only load balancer checked on the traffic port): always healthy.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ProbeConfig {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// How node `ip` is checked for `spec`.
pub(crate) fn config(spec: &LoadBalancerSpec, ip: IpAddr) -> ProbeConfig {
    let hc = &spec.health_check;
    let traffic_port = spec.listeners.iter().find(|l| l.protocol == Protocol::Tcp).map(|l| l.node_port);
    let probe = match (hc.target, hc.port) {
        (HealthTarget::ServiceHealthCheckNodePort, Some(port)) => match hc.protocol {
            HealthCheckProtocol::Http => Probe::Http {
                addr: SocketAddr::new(ip, port),
                path: hc.path.clone().filter(|p| p.starts_with('/')).unwrap_or_else(|| "/healthz".into()),
            },
            HealthCheckProtocol::Tcp => Probe::Tcp { addr: SocketAddr::new(ip, port) },
        },
        _ => match traffic_port {
            Some(port) => Probe::Tcp { addr: SocketAddr::new(ip, port) },
            None => Probe::None,
        },
    };
    with_timing(hc, probe)
}

/// How node `ip` is checked for an HTTP load balancer's backend on `node_port`: the backend's
/// own check, on its `port` or else the node port itself (there is no kube-proxy to ask here,
/// and the node port is what the requests use), HTTP `GET path` (200 = healthy) or TCP connect.
pub(crate) fn l7_config(hc: &HealthCheck, ip: IpAddr, node_port: u16) -> ProbeConfig {
    let addr = SocketAddr::new(ip, hc.port.unwrap_or(node_port));
    let probe = match hc.protocol {
        HealthCheckProtocol::Http => {
            Probe::Http { addr, path: hc.path.clone().filter(|p| p.starts_with('/')).unwrap_or_else(|| "/".into()) }
        }
        HealthCheckProtocol::Tcp => Probe::Tcp { addr },
    };
    with_timing(hc, probe)
}

fn with_timing(hc: &HealthCheck, probe: Probe) -> ProbeConfig {
    let interval = Duration::from_secs(u64::from(hc.interval_seconds.max(1)));
    ProbeConfig {
        probe,
        interval,
        timeout: Duration::from_secs(u64::from(hc.timeout_seconds.max(1))).min(interval),
        healthy_threshold: hc.healthy_threshold.max(1),
        unhealthy_threshold: hc.unhealthy_threshold.max(1),
    }
}

/// Start probing; the task stops when the returned handle is dropped.
pub(crate) fn spawn(
    node: String,
    config: ProbeConfig,
    health: Arc<TargetHealth>,
    counters: Arc<Counters>,
) -> AbortOnDrop {
    AbortOnDrop::new(tokio::spawn(async move {
        if config.probe == Probe::None {
            return;
        }
        loop {
            let ok = matches!(tokio::time::timeout(config.timeout, probe(&config.probe)).await, Ok(true));
            inc(&counters.health_probes);
            if !ok {
                inc(&counters.health_probe_failures);
            }
            match health.record(ok, config.healthy_threshold, config.unhealthy_threshold) {
                Some(true) => {
                    tracing::info!(%node, probe = ?config.probe, "target is healthy again: back in rotation")
                }
                Some(false) => {
                    tracing::warn!(%node, probe = ?config.probe, "target is unhealthy: out of rotation")
                }
                None => {}
            }
            tokio::time::sleep(config.interval).await;
        }
    }))
}

async fn probe(probe: &Probe) -> bool {
    match probe {
        Probe::None => true,
        Probe::Tcp { addr } => TcpStream::connect(addr).await.is_ok(),
        Probe::Http { addr, path } => http_ok(*addr, path).await.unwrap_or(false),
    }
}

/// `GET path` and whether the status line says 200 (what kube-proxy's healthz answers).
async fn http_ok(addr: SocketAddr, path: &str) -> std::io::Result<bool> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: cloudlb-local-health/1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).await?;
    let mut buf = [0u8; 256];
    let mut n = 0;
    while n < buf.len() {
        let read = s.read(&mut buf[n..]).await?;
        if read == 0 {
            break;
        }
        n += read;
        if buf[..n].windows(2).any(|w| w == b"\r\n") {
            break;
        }
    }
    Ok(status_is_200(&buf[..n]))
}

fn status_is_200(head: &[u8]) -> bool {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    matches!(parts.next(), Some(v) if v.starts_with(b"HTTP/1.")) && parts.next() == Some(b"200")
}

#[cfg(test)]
impl TargetHealth {
    /// Flip the verdict at once (thresholds of 1), for routing tests.
    pub(crate) fn record_for_test(&self, ok: bool) {
        self.record(ok, 1, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_the_verdict() {
        let h = TargetHealth::default();
        assert!(h.is_healthy());
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), None);
        assert_eq!(h.record(false, 2, 3), Some(false));
        assert_eq!(h.consecutive_failures(), 3);
        assert_eq!(h.record(true, 2, 3), None);
        assert_eq!(h.record(true, 2, 3), Some(true));
        assert_eq!(h.consecutive_failures(), 0);
        assert_eq!(h.probes(), 5);
    }

    #[test]
    fn status_line_parsing() {
        assert!(status_is_200(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_is_200(b"HTTP/1.0 200\r\n"));
        assert!(!status_is_200(b"HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!status_is_200(b"garbage 200"));
        assert!(!status_is_200(b""));
    }

    #[test]
    fn probe_choice_follows_the_spec() {
        let mut spec = cloudlb_provider::conformance::spec(&[8080]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(config(&spec, ip).probe, Probe::Tcp { addr: "10.0.0.1:30080".parse().unwrap() });
        spec.health_check.target = HealthTarget::ServiceHealthCheckNodePort;
        spec.health_check.protocol = HealthCheckProtocol::Http;
        spec.health_check.port = Some(31000);
        spec.health_check.path = Some("/healthz".into());
        assert_eq!(
            config(&spec, ip).probe,
            Probe::Http { addr: "10.0.0.1:31000".parse().unwrap(), path: "/healthz".into() }
        );
        spec.health_check.target = HealthTarget::KubeProxy;
        spec.listeners[0].protocol = Protocol::Udp;
        assert_eq!(config(&spec, ip).probe, Probe::None);
    }

    #[test]
    fn l7_probe_uses_the_backend_check_on_its_node_port() {
        let mut hc = cloudlb_provider::conformance::spec(&[80]).health_check;
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(l7_config(&hc, ip, 31000).probe, Probe::Tcp { addr: "10.0.0.1:31000".parse().unwrap() });
        hc.protocol = HealthCheckProtocol::Http;
        assert_eq!(
            l7_config(&hc, ip, 31000).probe,
            Probe::Http { addr: "10.0.0.1:31000".parse().unwrap(), path: "/".into() }
        );
        hc.path = Some("/ready".into());
        hc.port = Some(31999);
        assert_eq!(
            l7_config(&hc, ip, 31000).probe,
            Probe::Http { addr: "10.0.0.1:31999".parse().unwrap(), path: "/ready".into() }
        );
        assert_eq!(l7_config(&hc, ip, 31000).timeout, Duration::from_secs(5));
    }
}
