//! Caps on what the L4 data plane holds open, so that a flood cannot take the process's file
//! descriptors and memory: TCP connections per load balancer and per client address, UDP flows
//! per load balancer and in total.
//!
//! ```text
//!  LocalProvider ── udp_total: Gate (every load balancer's UDP flows)
//!  Lb ── LbSlots (shared by all its listeners, kept when the Lb moves address)
//!         ├─ tcp: Gate          ── TcpSlot: held by the connection task
//!         ├─ per source: map    ─┘  (client socket + target socket)
//!         └─ udp: Gate + total  ── UdpSlot: held with the flow's socket
//! ```
//!
//! A slot is taken *before* anything is allocated for the connection or flow (its task, its
//! socket to the target) and is released by `Drop`, held by the very thing whose lifetime it
//! counts: a TCP connection's task (which owns both sockets) or a UDP flow's socket. So whatever
//! way a connection or flow ends (EOF, error, idle timeout, drain, a deleted load balancer,
//! an aborted task), its slot comes back, and the number of slots taken is at all times the
//! number of such sockets open: the caps bound descriptors, not just an estimate of them.
//!
//! Refusing is cheap on purpose: a refused TCP connection is reset right after `accept` (nothing
//! was spawned, nothing reached a target), a refused UDP datagram is dropped before a socket is
//! made. Connections and flows already open are never touched by a refusal.
//!
//! Caps are per load balancer, not per listener: a Service with many ports does not get a
//! larger share. The per-source map only holds addresses with a connection open (an entry goes
//! when its count reaches zero), so it is bounded by the per-load-balancer cap; it is not used at
//! all when the per-source cap cannot bind (it is not below the per-load-balancer cap).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::LocalConfig;

/// Default of [`LocalConfig::tcp_idle_timeout`].
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default of [`LocalConfig::max_tcp_connections`]: see the crate docs for the reasoning.
pub const DEFAULT_MAX_TCP_CONNECTIONS: usize = 10_000;
/// Default of [`LocalConfig::max_tcp_connections_per_source`].
pub const DEFAULT_MAX_TCP_CONNECTIONS_PER_SOURCE: usize = 2_500;
/// Default of [`LocalConfig::max_udp_flows`].
pub const DEFAULT_MAX_UDP_FLOWS: usize = 10_000;
/// Default of [`LocalConfig::max_udp_flows_total`].
pub const DEFAULT_MAX_UDP_FLOWS_TOTAL: usize = 50_000;

/// Why a new TCP connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TcpRefusal {
    /// The load balancer has its maximum open.
    LoadBalancer,
    /// This client address has its maximum open to this load balancer.
    Source,
}

/// Why a new UDP flow was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UdpRefusal {
    /// The load balancer has its maximum open.
    LoadBalancer,
    /// The process has its maximum open (all load balancers together).
    Total,
}

/// A count with a ceiling.
#[derive(Debug)]
pub(crate) struct Gate {
    open: AtomicUsize,
    max: usize,
}

impl Gate {
    pub(crate) fn new(max: usize) -> Self {
        Self { open: AtomicUsize::new(0), max }
    }

    /// Take one unless the ceiling is reached.
    fn try_take(&self) -> bool {
        self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1)).is_ok()
    }

    fn release(&self) {
        // Only ever called for a slot taken before: never below zero.
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Slots taken now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// The slots of one load balancer.
#[derive(Debug)]
pub(crate) struct LbSlots {
    tcp: Gate,
    max_tcp_per_source: usize,
    /// Open TCP connections per client address (only addresses with at least one).
    sources: Mutex<HashMap<IpAddr, usize>>,
    udp: Gate,
    udp_total: Arc<Gate>,
}

impl LbSlots {
    /// Slots with the caps of `config`; UDP flows also count against `udp_total`, shared by every
    /// load balancer of the provider.
    pub(crate) fn new(config: &LocalConfig, udp_total: Arc<Gate>) -> Arc<Self> {
        Arc::new(Self {
            tcp: Gate::new(config.max_tcp_connections),
            max_tcp_per_source: config.max_tcp_connections_per_source,
            sources: Mutex::new(HashMap::new()),
            udp: Gate::new(config.max_udp_flows),
            udp_total,
        })
    }

    /// A slot for a new TCP connection from `source`.
    pub(crate) fn tcp(self: &Arc<Self>, source: IpAddr) -> Result<TcpSlot, TcpRefusal> {
        if !self.tcp.try_take() {
            return Err(TcpRefusal::LoadBalancer);
        }
        // From here on `slot` gives the load balancer's slot back if this returns an error.
        let mut slot = TcpSlot { lb: Arc::clone(self), source: None };
        if self.max_tcp_per_source < self.tcp.max {
            let source = source.to_canonical();
            let mut sources = self.sources();
            let n = sources.entry(source).or_insert(0);
            if *n >= self.max_tcp_per_source {
                if *n == 0 {
                    sources.remove(&source);
                }
                return Err(TcpRefusal::Source);
            }
            *n += 1;
            slot.source = Some(source);
        }
        Ok(slot)
    }

    /// A slot for a new UDP flow.
    pub(crate) fn udp(self: &Arc<Self>) -> Result<UdpSlot, UdpRefusal> {
        if !self.udp.try_take() {
            return Err(UdpRefusal::LoadBalancer);
        }
        if !self.udp_total.try_take() {
            self.udp.release();
            return Err(UdpRefusal::Total);
        }
        Ok(UdpSlot { lb: Arc::clone(self) })
    }

    /// TCP connections holding a slot now.
    #[cfg(test)]
    pub(crate) fn tcp_open(&self) -> usize {
        self.tcp.open()
    }

    /// UDP flows holding a slot now.
    #[cfg(test)]
    pub(crate) fn udp_open(&self) -> usize {
        self.udp.open()
    }

    fn sources(&self) -> MutexGuard<'_, HashMap<IpAddr, usize>> {
        // Nothing panics while the lock is held: a poisoned lock still holds consistent counts.
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One open TCP connection's place; given back when dropped.
#[derive(Debug)]
pub(crate) struct TcpSlot {
    lb: Arc<LbSlots>,
    source: Option<IpAddr>,
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        if let Some(source) = self.source {
            let mut sources = self.lb.sources();
            if let Some(n) = sources.get_mut(&source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    sources.remove(&source);
                }
            }
        }
        self.lb.tcp.release();
    }
}

/// One open UDP flow's place (on its load balancer and in the total); given back when dropped.
#[derive(Debug)]
pub(crate) struct UdpSlot {
    lb: Arc<LbSlots>,
}

impl Drop for UdpSlot {
    fn drop(&mut self) {
        self.lb.udp_total.release();
        self.lb.udp.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(tcp: usize, per_source: usize, udp: usize, total: &Arc<Gate>) -> Arc<LbSlots> {
        let config = LocalConfig {
            max_tcp_connections: tcp,
            max_tcp_connections_per_source: per_source,
            max_udp_flows: udp,
            ..LocalConfig::default()
        };
        LbSlots::new(&config, Arc::clone(total))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_caps_per_load_balancer_and_per_source_and_give_back_on_drop() {
        let total = Arc::new(Gate::new(100));
        let s = slots(3, 2, 1, &total);
        let a1 = s.tcp(ip("10.0.0.1")).unwrap();
        let a2 = s.tcp(ip("10.0.0.1")).unwrap();
        assert_eq!(s.tcp(ip("10.0.0.1")).unwrap_err(), TcpRefusal::Source);
        // The IPv4-mapped form is the same client.
        assert_eq!(s.tcp(ip("::ffff:10.0.0.1")).unwrap_err(), TcpRefusal::Source);
        assert_eq!(s.tcp_open(), 2, "a refusal per source gives the load balancer's slot back");
        let b1 = s.tcp(ip("10.0.0.2")).unwrap();
        assert_eq!(s.tcp(ip("10.0.0.3")).unwrap_err(), TcpRefusal::LoadBalancer);
        drop(a1);
        assert_eq!(s.tcp_open(), 2);
        let a3 = s.tcp(ip("10.0.0.1")).unwrap();
        drop((a2, a3, b1));
        assert_eq!(s.tcp_open(), 0);
        assert!(s.sources().is_empty(), "no entry is kept for an address without connections");
    }

    #[test]
    fn per_source_map_is_skipped_when_it_cannot_bind() {
        let total = Arc::new(Gate::new(100));
        let s = slots(2, 2, 1, &total);
        let _a = s.tcp(ip("10.0.0.1")).unwrap();
        let _b = s.tcp(ip("10.0.0.1")).unwrap();
        assert!(s.sources().is_empty());
        assert_eq!(s.tcp(ip("10.0.0.1")).unwrap_err(), TcpRefusal::LoadBalancer);
    }

    #[test]
    fn udp_caps_per_load_balancer_and_in_total() {
        let total = Arc::new(Gate::new(3));
        let one = slots(1, 1, 2, &total);
        let two = slots(1, 1, 2, &total);
        let f1 = one.udp().unwrap();
        let _f2 = one.udp().unwrap();
        assert_eq!(one.udp().unwrap_err(), UdpRefusal::LoadBalancer);
        let _g1 = two.udp().unwrap();
        assert_eq!(two.udp().unwrap_err(), UdpRefusal::Total);
        assert_eq!(two.udp_open(), 1, "a refusal in total gives the load balancer's slot back");
        assert_eq!(total.open(), 3);
        drop(f1);
        assert_eq!((one.udp_open(), total.open()), (1, 2));
        let _g2 = two.udp().unwrap();
        assert_eq!(total.open(), 3);
    }

    #[test]
    fn gate_counts_exactly_under_contention() {
        let gate = Arc::new(Gate::new(1000));
        let taken = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if gate.try_take() {
                            taken.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(taken.load(Ordering::Relaxed), 1000);
        assert_eq!(gate.open(), 1000);
    }
}
