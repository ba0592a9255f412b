//! Routing: which target a new connection (or UDP flow) goes to.
//!
//! Each listener owns one immutable [`Table`] behind an `ArcSwap`: the accept loop loads it once
//! per connection (no lock), `ensure` builds a new one and swaps it in. Connections keep the
//! table (and the [`Backend`]) they started with, which is what lets a removed target drain.
//!
//! - **Policy** (option `local.cloudlb.io/balance`): least-connections by default, ties broken
//!   in round-robin order so equal targets alternate; or plain round-robin.
//! - **ClientIP affinity** (`sessionAffinity: ClientIP`): rendezvous (highest-random-weight)
//!   hashing of (client IP, node IP) over the usable targets. No table, no lock, no expiry to
//!   run; a client stays on its target as long as that target stays in rotation, and when a
//!   target leaves only its own clients move. This is stickier than kube-proxy's timeout
//!   (`timeout_seconds` is not needed, so it is not used).
//! - **Health**: only healthy targets are used. When none is healthy the table **fails open**
//!   (uses all of them, like Envoy's panic mode) and counts `panic_routes`: health checks that
//!   are wrong must not take a whole Service down.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::watch;

use crate::health::TargetHealth;
use crate::limits::LbSlots;
use crate::stats::{Counters, inc};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    LeastConnections,
    RoundRobin,
}

/// One target on one listener: `node IP : node port`.
#[derive(Debug)]
pub(crate) struct Backend {
    pub addr: SocketAddr,
    pub node: String,
    pub health: Arc<TargetHealth>,
    /// TCP connections open to this backend now.
    pub active: AtomicU64,
    /// Set to `true` when a drain ran out: open connections to this backend close.
    kill: watch::Sender<bool>,
    draining: AtomicBool,
    drain_generation: AtomicU64,
}

impl Backend {
    pub(crate) fn new(addr: SocketAddr, node: String, health: Arc<TargetHealth>) -> Arc<Self> {
        Arc::new(Self {
            addr,
            node,
            health,
            active: AtomicU64::new(0),
            kill: watch::Sender::new(false),
            draining: AtomicBool::new(false),
            drain_generation: AtomicU64::new(0),
        })
    }

    /// Resolves when this backend's connections must close (drain ran out); never otherwise.
    pub(crate) async fn killed(&self) {
        let mut rx = self.kill.subscribe();
        if rx.wait_for(|k| *k).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub(crate) fn is_killed(&self) -> bool {
        *self.kill.borrow()
    }

    /// Take a draining backend back into rotation (the target was removed and re-added before
    /// its drain ran out). Returns false when it was already killed: make a new one then.
    pub(crate) fn undrain(&self) -> bool {
        if self.is_killed() {
            return false;
        }
        self.drain_generation.fetch_add(1, Ordering::SeqCst);
        self.draining.store(false, Ordering::SeqCst);
        true
    }

    /// Start draining: no new connections come (the caller removed it from the table); open
    /// ones may finish until `timeout`, then are closed. `counters` counts what was cut.
    pub(crate) fn drain(self: &Arc<Self>, timeout: Duration, counters: Arc<Counters>) {
        if self.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        let generation = self.drain_generation.fetch_add(1, Ordering::SeqCst) + 1;
        let me = Arc::clone(self);
        let kill = move || {
            if me.draining.load(Ordering::SeqCst) && me.drain_generation.load(Ordering::SeqCst) == generation {
                let open = me.active.load(Ordering::Relaxed);
                if open > 0 {
                    tracing::info!(backend = %me.addr, node = %me.node, open, "drain timeout: closing connections");
                    counters.drained_closed.fetch_add(open, Ordering::Relaxed);
                }
                me.kill.send_replace(true);
            }
        };
        if self.active.load(Ordering::Relaxed) == 0 && timeout.is_zero() {
            kill();
            return;
        }
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            kill();
        });
    }
}

/// Who may connect.
#[derive(Clone, Debug)]
pub(crate) struct SourceFilter {
    all: bool,
    ranges: Vec<IpNet>,
}

impl SourceFilter {
    pub(crate) fn new(ranges: &[IpNet]) -> Self {
        let all = ranges.is_empty()
            || ranges.iter().any(|r| r.prefix_len() == 0 && matches!(r, IpNet::V4(_)))
                && ranges.iter().any(|r| r.prefix_len() == 0 && matches!(r, IpNet::V6(_)));
        Self { all, ranges: ranges.to_vec() }
    }

    #[inline]
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        if self.all {
            return true;
        }
        let ip = ip.to_canonical();
        self.ranges.iter().any(|r| r.contains(&ip))
    }
}

/// The timeouts a listener's connections and flows run with (from [`crate::LocalConfig`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub udp_idle: Duration,
    pub tcp_idle: Duration,
}

impl From<&crate::LocalConfig> for Timeouts {
    fn from(c: &crate::LocalConfig) -> Self {
        Self { connect: c.connect_timeout, udp_idle: c.udp_idle_timeout, tcp_idle: c.tcp_idle_timeout }
    }
}

/// The routing table of one listener.
#[derive(Debug)]
pub(crate) struct Table {
    pub backends: Vec<Arc<Backend>>,
    pub policy: Policy,
    pub affinity: bool,
    pub source: SourceFilter,
    pub proxy_v2: bool,
    pub timeouts: Timeouts,
    pub counters: Arc<Counters>,
    /// The load balancer's connection and flow caps (the same for all its listeners and tables).
    pub slots: Arc<LbSlots>,
    next: AtomicUsize,
}

impl Table {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        backends: Vec<Arc<Backend>>,
        policy: Policy,
        affinity: bool,
        source: SourceFilter,
        proxy_v2: bool,
        timeouts: Timeouts,
        counters: Arc<Counters>,
        slots: Arc<LbSlots>,
    ) -> Self {
        Self { backends, policy, affinity, source, proxy_v2, timeouts, counters, slots, next: AtomicUsize::new(0) }
    }

    /// The backend for a new connection from `client`, skipping `exclude` (the target that just
    /// refused, for the one retry). `None` when there is no usable target at all.
    pub(crate) fn pick(&self, client: IpAddr, exclude: Option<SocketAddr>) -> Option<&Arc<Backend>> {
        let usable = |b: &Backend| Some(b.addr) != exclude;
        let any_healthy = self.backends.iter().any(|b| usable(b) && b.health.is_healthy());
        if !any_healthy {
            if !self.backends.iter().any(|b| usable(b)) {
                return None;
            }
            inc(&self.counters.panic_routes);
        }
        let eligible = |b: &Backend| usable(b) && (!any_healthy || b.health.is_healthy());
        if self.affinity {
            let c = mix(ip_bits(client));
            return self
                .backends
                .iter()
                .filter(|b| eligible(b))
                .max_by_key(|b| mix(c ^ ip_bits(b.addr.ip()).rotate_left(17)));
        }
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let in_order = (0..n).map(|i| &self.backends[(start + i) % n]).filter(|b| eligible(b));
        match self.policy {
            Policy::RoundRobin => in_order.into_iter().next(),
            // min_by_key keeps the first of equal minima: ties rotate with `start`.
            Policy::LeastConnections => in_order.min_by_key(|b| b.active.load(Ordering::Relaxed)),
        }
    }
}

fn ip_bits(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let b = u128::from(v6);
            (b as u64) ^ ((b >> 64) as u64).rotate_left(29)
        }
    }
}

/// splitmix64's finalizer: a fast, well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(n: usize, policy: Policy, affinity: bool) -> Table {
        let backends = (0..n)
            .map(|i| Backend::new(SocketAddr::from(([10, 0, 0, i as u8 + 1], 30000)), format!("n{i}"), Arc::default()))
            .collect();
        Table::new(
            backends,
            policy,
            affinity,
            SourceFilter::new(&["0.0.0.0/0".parse().unwrap()]),
            false,
            Timeouts::from(&crate::LocalConfig::default()),
            Arc::default(),
            LbSlots::new(&crate::LocalConfig::default(), Arc::new(crate::limits::Gate::new(1))),
        )
    }

    #[test]
    fn round_robin_alternates_and_skips_unhealthy() {
        let t = table(3, Policy::RoundRobin, false);
        let picks: Vec<u8> = (0..6).map(|_| last_octet(t.pick(ip("1.1.1.1"), None).unwrap())).collect();
        assert_eq!(picks, vec![1, 2, 3, 1, 2, 3]);
        t.backends[1].health.record_for_test(false);
        assert!((0..6).all(|_| last_octet(t.pick(ip("1.1.1.1"), None).unwrap()) != 2));
        assert_eq!(t.counters.panic_routes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn least_connections_prefers_idle_and_ties_rotate() {
        let t = table(2, Policy::LeastConnections, false);
        t.backends[0].active.store(5, Ordering::Relaxed);
        assert!((0..4).all(|_| last_octet(t.pick(ip("1.1.1.1"), None).unwrap()) == 2));
        t.backends[0].active.store(0, Ordering::Relaxed);
        let picks: Vec<u8> = (0..4).map(|_| last_octet(t.pick(ip("1.1.1.1"), None).unwrap())).collect();
        assert!(picks.contains(&1) && picks.contains(&2), "{picks:?}");
    }

    #[test]
    fn panic_mode_uses_all_and_counts() {
        let t = table(2, Policy::RoundRobin, false);
        for b in &t.backends {
            b.health.record_for_test(false);
        }
        assert!(t.pick(ip("1.1.1.1"), None).is_some());
        assert_eq!(t.counters.panic_routes.load(Ordering::Relaxed), 1);
        let only = table(1, Policy::RoundRobin, false);
        assert!(only.pick(ip("1.1.1.1"), Some(only.backends[0].addr)).is_none());
    }

    #[test]
    fn affinity_is_sticky_and_spreads() {
        let t = table(4, Policy::LeastConnections, true);
        let mut seen = std::collections::HashSet::new();
        for c in 1..=64u8 {
            let client = IpAddr::from([192, 168, 7, c]);
            let first = t.pick(client, None).unwrap().addr;
            for _ in 0..5 {
                assert_eq!(t.pick(client, None).unwrap().addr, first);
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 4, "64 clients should reach all 4 targets");
        // A target leaving moves only its own clients.
        let client = IpAddr::from([192, 168, 7, 1]);
        let home = t.pick(client, None).unwrap().addr;
        let other = t.backends.iter().find(|b| b.addr != home).unwrap();
        other.health.record_for_test(false);
        assert_eq!(t.pick(client, None).unwrap().addr, home);
    }

    #[test]
    fn source_filter() {
        let any = SourceFilter::new(&["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()]);
        assert!(any.allows(ip("8.8.8.8")));
        let f = SourceFilter::new(&["127.0.0.5/32".parse().unwrap()]);
        assert!(f.allows(ip("127.0.0.5")));
        assert!(f.allows(ip("::ffff:127.0.0.5")));
        assert!(!f.allows(ip("127.0.0.6")));
        let v4_only = SourceFilter::new(&["0.0.0.0/0".parse().unwrap()]);
        assert!(v4_only.allows(ip("127.0.0.6")));
        assert!(!v4_only.allows(ip("2001:db8::1")));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn last_octet(b: &Backend) -> u8 {
        match b.addr.ip() {
            IpAddr::V4(v4) => v4.octets()[3],
            IpAddr::V6(_) => 0,
        }
    }
}
