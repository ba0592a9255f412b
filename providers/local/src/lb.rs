//! One load balancer: its address, its listeners ("fronts"), their routing tables, and one
//! health checker per target; and how `ensure` converges all of that **in place**.
//!
//! ```text
//!  Lb (ip) ── fronts: (port, protocol) ─▶ Front { socket task, ArcSwap<Table>, draining }
//!          └─ health: node IP ───────────▶ HealthSlot { Arc<TargetHealth>, probe task }
//!                                            ▲ shared by every listener's Backend of that node
//! ```
//!
//! `converge` first binds every *new* listener; if one bind fails, the ones bound so far are
//! dropped (closed) and nothing else has changed. Only then does it touch running state:
//! health checkers are kept when their probe is unchanged, tables are rebuilt (keeping the
//! `Backend` objects of targets that stay, so their connection counts and open connections
//! carry on), removed targets drain, removed listeners close. Listeners that stay are never
//! re-bound, so their connections continue.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use cloudlb_provider::{
    IngressPoint, IpMode, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus, Protocol, ProviderError, Record,
    Result, SessionAffinity,
};
use tokio::task::JoinHandle;

use crate::balance::{Backend, SourceFilter, Table, Timeouts};
use crate::health::{self, ProbeConfig, TargetHealth};
use crate::limits::LbSlots;
use crate::options::LbOptions;
use crate::stats::{Counters, TargetStats};
use crate::tasks::AbortOnDrop;
use crate::{LocalConfig, RECORD_IP, listener_tcp, listener_udp};

type FrontKey = (u16, Protocol);

pub(crate) struct Lb {
    pub id: LoadBalancerId,
    pub spec: Option<LoadBalancerSpec>,
    pub ip: IpAddr,
    pub counters: Arc<Counters>,
    /// Caps on open connections and flows, shared by every listener (and kept, like the
    /// counters, when the load balancer moves to another address).
    pub slots: Arc<LbSlots>,
    drain_timeout: Duration,
    fronts: BTreeMap<FrontKey, Front>,
    health: HashMap<IpAddr, HealthSlot>,
}

struct HealthSlot {
    node: String,
    state: Arc<TargetHealth>,
    config: ProbeConfig,
    _task: AbortOnDrop,
}

struct Front {
    table: Arc<ArcSwap<Table>>,
    task: AbortOnDrop,
    /// Removed backends whose drain has not run out, so that a target re-added in time keeps
    /// its open connections.
    draining: Vec<Arc<Backend>>,
}

impl Front {
    /// Stop accepting now; open connections drain. The handle resolves once the socket is closed.
    fn close(self, drain: Duration, counters: &Arc<Counters>) -> Option<JoinHandle<()>> {
        for b in self.table.load().backends.iter() {
            b.drain(drain, Arc::clone(counters));
        }
        self.task.abort_and_take()
    }
}

enum Bound {
    Tcp(tokio::net::TcpListener),
    Udp(tokio::net::UdpSocket),
}

impl Lb {
    pub(crate) fn new(
        id: LoadBalancerId,
        ip: IpAddr,
        counters: Arc<Counters>,
        slots: Arc<LbSlots>,
        drain_timeout: Duration,
    ) -> Self {
        Self { id, spec: None, ip, counters, slots, drain_timeout, fronts: BTreeMap::new(), health: HashMap::new() }
    }

    pub(crate) fn status(&self) -> LoadBalancerStatus {
        let mut record = Record::default();
        record.set(RECORD_IP, self.ip.to_string());
        LoadBalancerStatus::new(
            vec![IngressPoint::Ip(self.ip)],
            IpMode::Proxy,
            record,
            self.spec.as_ref().map(LoadBalancerSpec::hash),
        )
    }

    /// Make this load balancer implement `spec`. On error nothing has changed. Returns the
    /// handles of closed listener tasks: await them to know their sockets are released.
    pub(crate) fn converge(
        &mut self,
        spec: &LoadBalancerSpec,
        opts: &LbOptions,
        config: &LocalConfig,
    ) -> Result<Vec<JoinHandle<()>>> {
        // 1. Bind what is new. A failure returns here: `bound` is dropped, its sockets closed.
        let mut bound: HashMap<FrontKey, Bound> = HashMap::new();
        for l in &spec.listeners {
            let key = (l.port, l.protocol);
            if self.fronts.contains_key(&key) || bound.contains_key(&key) {
                continue;
            }
            let addr = SocketAddr::new(self.ip, l.port);
            let b = match l.protocol {
                Protocol::Tcp => Bound::Tcp(listener_tcp::bind(addr)?),
                Protocol::Udp => Bound::Udp(listener_udp::bind(addr)?),
                Protocol::Sctp => {
                    return Err(ProviderError::Invalid {
                        call: "local.ensure",
                        message: format!("port {}/SCTP: the local provider forwards TCP and UDP only", l.port),
                    });
                }
            };
            bound.insert(key, b);
        }

        // Nothing below fails.
        let drain = opts.drain_timeout.unwrap_or(config.drain_timeout);
        self.drain_timeout = drain;

        // 2. Targets (by dial address, first node wins on duplicates) and their health checks.
        let mut targets: Vec<(IpAddr, &str)> = Vec::with_capacity(spec.targets.len());
        for t in spec.targets.iter() {
            match t.dial_address() {
                Some(ip) if !targets.iter().any(|(seen, _)| *seen == ip) => targets.push((ip, &t.node)),
                Some(_) => {}
                None => {
                    tracing::warn!(lb = %self.id, node = %t.node, "target has no InternalIP/ExternalIP: skipped")
                }
            }
        }
        let mut health = HashMap::with_capacity(targets.len());
        for (ip, node) in &targets {
            let cfg = health::config(spec, *ip);
            let slot = match self.health.remove(ip) {
                Some(slot) if slot.config == cfg && slot.node == *node => slot,
                old => {
                    // Keep the verdict when only the probe changed, or when the target comes
                    // back while its old backends still drain.
                    let state =
                        old.map(|s| Arc::clone(&s.state)).or_else(|| self.draining_health(*ip)).unwrap_or_default();
                    let task =
                        health::spawn(node.to_string(), cfg.clone(), Arc::clone(&state), Arc::clone(&self.counters));
                    HealthSlot { node: node.to_string(), state, config: cfg, _task: task }
                }
            };
            health.insert(*ip, slot);
        }
        self.health = health; // slots of removed targets drop here: their probes stop

        // 3. One routing table per listener; listeners that stay keep their socket.
        let source = SourceFilter::new(&spec.source_ranges);
        let affinity = matches!(spec.session_affinity, SessionAffinity::ClientIp { .. });
        let mut fronts = BTreeMap::new();
        for l in &spec.listeners {
            let key = (l.port, l.protocol);
            if fronts.contains_key(&key) {
                continue;
            }
            let old = self.fronts.remove(&key);
            let (old_backends, mut draining) = match &old {
                Some(f) => (f.table.load().backends.clone(), f.draining.clone()),
                None => (Vec::new(), Vec::new()),
            };
            let mut backends = Vec::with_capacity(targets.len());
            for (ip, node) in &targets {
                let addr = SocketAddr::new(*ip, l.node_port);
                let Some(slot) = self.health.get(ip) else {
                    continue;
                };
                let same = |b: &Arc<Backend>| b.addr == addr && Arc::ptr_eq(&b.health, &slot.state);
                let kept = old_backends.iter().find(|b| same(b)).cloned().or_else(|| {
                    let i = draining.iter().position(|b| same(b) && b.undrain())?;
                    Some(draining.swap_remove(i))
                });
                backends.push(kept.unwrap_or_else(|| Backend::new(addr, node.to_string(), Arc::clone(&slot.state))));
            }
            for b in old_backends {
                if !backends.iter().any(|n| Arc::ptr_eq(n, &b)) {
                    b.drain(drain, Arc::clone(&self.counters));
                    draining.push(b);
                }
            }
            draining.retain(|b| !b.is_killed());
            let table = Arc::new(Table::new(
                backends,
                opts.policy,
                affinity,
                source.clone(),
                opts.proxy_v2 && l.protocol == Protocol::Tcp,
                Timeouts::from(config),
                Arc::clone(&self.counters),
                Arc::clone(&self.slots),
            ));
            let front = match (old, bound.remove(&key)) {
                (Some(mut f), _) => {
                    f.table.store(table);
                    f.draining = draining;
                    f
                }
                (None, Some(b)) => {
                    let table = Arc::new(ArcSwap::new(table));
                    let task = match b {
                        Bound::Tcp(listener) => tokio::spawn(listener_tcp::serve(listener, Arc::clone(&table))),
                        Bound::Udp(socket) => tokio::spawn(listener_udp::serve(socket, Arc::clone(&table))),
                    };
                    Front { table, task: AbortOnDrop::new(task), draining }
                }
                // Unreachable: every key without a front was bound in step 1.
                (None, None) => continue,
            };
            fronts.insert(key, front);
        }

        // 4. Listeners no longer wanted: stop accepting, drain their connections.
        let closing = std::mem::replace(&mut self.fronts, fronts);
        let handles = closing.into_values().filter_map(|f| f.close(drain, &self.counters)).collect();
        self.spec = Some(spec.clone());
        Ok(handles)
    }

    fn draining_health(&self, ip: IpAddr) -> Option<Arc<TargetHealth>> {
        self.fronts
            .values()
            .flat_map(|f| f.draining.iter())
            .find(|b| b.addr.ip() == ip && !b.is_killed())
            .map(|b| Arc::clone(&b.health))
    }

    /// Stop accepting everywhere and let open connections drain. Await the handles to know the
    /// sockets are released.
    pub(crate) fn close(mut self) -> Vec<JoinHandle<()>> {
        let drain = self.drain_timeout;
        let counters = Arc::clone(&self.counters);
        std::mem::take(&mut self.fronts).into_values().filter_map(|f| f.close(drain, &counters)).collect()
    }

    pub(crate) fn target_stats(&self) -> Vec<TargetStats> {
        let mut out: Vec<TargetStats> = self
            .health
            .iter()
            .map(|(ip, slot)| TargetStats {
                node: slot.node.clone(),
                address: *ip,
                healthy: slot.state.is_healthy(),
                consecutive_failures: slot.state.consecutive_failures(),
                probes: slot.state.probes(),
                connections_active: self
                    .fronts
                    .values()
                    .flat_map(|f| f.table.load().backends.clone())
                    .filter(|b| b.addr.ip() == *ip)
                    .map(|b| b.active.load(std::sync::atomic::Ordering::Relaxed))
                    .sum(),
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node).then(a.address.cmp(&b.address)));
        out
    }
}
