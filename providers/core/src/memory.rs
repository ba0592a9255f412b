//! The in-process provider: the reference implementation of the contract, used by tests and
//! benchmarks (`--provider memory`).
//!
//! It allocates addresses from a pool, keeps every load balancer in a map, and can be made to
//! behave like a slow, flaky cloud: a fixed latency per call and a failure rate. It counts its
//! calls by kind so that tests can assert "no mutating call happened".
//!
//! By default its state lives in the process ([`StateLocation::InProcess`]): the controller then
//! re-ensures every Service at start and hands back the recorded address, which is kept. With a
//! state file it behaves like a remote cloud ([`StateLocation::Durable`]): every mutation is
//! written to the file before the call returns (group commit: concurrent calls share one write),
//! so a restarted controller can be checked to make zero mutating calls.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::capabilities::{Capabilities, L7Capabilities, StateLocation};
use crate::error::{ProviderError, Result};
use crate::l7::L7Spec;
use crate::pool::AddressPool;
use crate::provider::Provider;
use crate::spec::{IpFamily, Listener, LoadBalancerId, LoadBalancerSpec, Protocol};
use crate::status::{IngressPoint, IpMode, LoadBalancerStatus, Record};

/// Record key under which the allocated address is kept.
pub const RECORD_IP: &str = "ip";

#[derive(Clone, Debug)]
pub struct MemoryConfig {
    pub pool: IpNet,
    /// Added to every call (ensure, delete, get).
    pub latency: Duration,
    /// Probability in [0, 1] that a call fails with a retryable error (after the latency).
    pub failure_rate: f64,
    /// The first this-many calls fail with a retryable error (deterministic fault injection).
    pub fail_first: u64,
    pub protocols: Vec<Protocol>,
    /// Persist state here; makes the provider [`StateLocation::Durable`].
    pub state_file: Option<PathBuf>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            pool: "198.51.100.0/24".parse().expect("valid literal CIDR"),
            latency: Duration::ZERO,
            failure_rate: 0.0,
            fail_first: 0,
            protocols: vec![Protocol::Tcp, Protocol::Udp],
            state_file: None,
        }
    }
}

/// Calls by kind, since the provider was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    pub ensure: u64,
    pub delete: u64,
    pub get: u64,
    /// `ensure` calls that changed something (created or updated a load balancer).
    pub changed: u64,
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    ensure: AtomicU64,
    delete: AtomicU64,
    get: AtomicU64,
    changed: AtomicU64,
    failed: AtomicU64,
    calls: AtomicU64,
}

/// What the memory "cloud" keeps per load balancer: not the whole spec (with a thousand nodes
/// a spec carries a thousand targets, and ten thousand copies would be gigabytes), only what it
/// reports back and what tells a change apart.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    id: LoadBalancerId,
    spec_hash: String,
    #[serde(flatten)]
    shape: Shape,
    targets: usize,
    ip: IpAddr,
}

/// The parts of a spec tests look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Shape {
    L4 { listeners: Vec<Listener> },
    L7 { ports: Vec<u16>, routes: usize, certificates: usize },
}

/// L4 and L7 load balancers live in separate maps: an id is only ever used for one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    L4,
    L7,
}

#[derive(Default, Serialize, Deserialize)]
struct State {
    /// Keyed by `cluster/uid`.
    lbs: BTreeMap<String, Entry>,
    #[serde(default)]
    l7: BTreeMap<String, Entry>,
}

impl State {
    fn map(&mut self, kind: Kind) -> &mut BTreeMap<String, Entry> {
        match kind {
            Kind::L4 => &mut self.lbs,
            Kind::L7 => &mut self.l7,
        }
    }
}

pub struct MemoryProvider {
    config: MemoryConfig,
    state: Mutex<(State, AddressPool)>,
    counters: Counters,
    /// Mutations applied / mutations known to be on disk (group commit).
    generation: AtomicU64,
    flushed: AtomicU64,
    flush_lock: tokio::sync::Mutex<()>,
    digests: crate::spec::TargetsDigestCache,
}

impl MemoryProvider {
    /// A provider with in-process state, or loaded from `config.state_file` when it exists.
    pub fn new(config: MemoryConfig) -> Result<Self> {
        let mut state = State::default();
        if let Some(path) = &config.state_file {
            match std::fs::read(path) {
                Ok(bytes) => {
                    state = serde_json::from_slice(&bytes).map_err(|e| ProviderError::Invalid {
                        call: "memory.load_state",
                        message: format!("{}: {e}", path.display()),
                    })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ProviderError::Invalid {
                        call: "memory.load_state",
                        message: format!("{}: {e}", path.display()),
                    });
                }
            }
        }
        let mut pool = AddressPool::new(vec![config.pool], "memory provider")?;
        for e in state.lbs.values().chain(state.l7.values()) {
            pool.take(e.ip);
        }
        Ok(Self {
            config,
            state: Mutex::new((state, pool)),
            counters: Counters::default(),
            generation: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            flush_lock: tokio::sync::Mutex::new(()),
            digests: Default::default(),
        })
    }

    pub fn calls(&self) -> CallCounts {
        let c = &self.counters;
        CallCounts {
            ensure: c.ensure.load(Ordering::Relaxed),
            delete: c.delete.load(Ordering::Relaxed),
            get: c.get.load(Ordering::Relaxed),
            changed: c.changed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
        }
    }

    /// Number of load balancers (L4 and L7) that exist.
    pub fn len(&self) -> usize {
        let st = self.lock();
        st.0.lbs.len() + st.0.l7.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The listeners and the number of targets currently implemented for `id` (tests).
    pub fn implemented(&self, id: &LoadBalancerId) -> Option<(Vec<Listener>, usize)> {
        self.lock().0.lbs.get(&key(id)).and_then(|e| match &e.shape {
            Shape::L4 { listeners } => Some((listeners.clone(), e.targets)),
            Shape::L7 { .. } => None,
        })
    }

    /// The shape and the number of targets of the L7 load balancer `id` (tests).
    pub fn implemented_l7(&self, id: &LoadBalancerId) -> Option<(Shape, usize)> {
        self.lock().0.l7.get(&key(id)).map(|e| (e.shape.clone(), e.targets))
    }

    /// Drop a load balancer (L4 or L7) behind the controller's back (drift tests).
    pub fn forget(&self, id: &LoadBalancerId) {
        let mut guard = self.lock();
        let (st, pool) = &mut *guard;
        for kind in [Kind::L4, Kind::L7] {
            if let Some(e) = st.map(kind).remove(&key(id)) {
                pool.release(e.ip);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (State, AddressPool)> {
        // A panic while holding the lock cannot leave State half-updated in a way that matters
        // more than losing the whole provider, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn simulate(&self, call: &'static str) -> Result<()> {
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let n = self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let injected = n < self.config.fail_first
            || (self.config.failure_rate > 0.0 && rand::random::<f64>() < self.config.failure_rate);
        if injected {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            return Err(ProviderError::Retryable {
                call,
                message: "injected failure (--memory-failure-rate / --memory-fail-first)".into(),
            });
        }
        Ok(())
    }

    /// Wait until every mutation made so far is on disk (no-op without a state file).
    async fn persist(&self) -> Result<()> {
        let Some(path) = &self.config.state_file else {
            return Ok(());
        };
        let mine = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let _guard = self.flush_lock.lock().await;
        if self.flushed.load(Ordering::SeqCst) >= mine {
            return Ok(()); // another call's write already covered ours
        }
        let covered = self.generation.load(Ordering::SeqCst);
        let bytes = {
            let guard = self.lock();
            serde_json::to_vec(&guard.0)
                .map_err(|e| ProviderError::Retryable { call: "memory.persist", message: e.to_string() })?
        };
        let tmp = path.with_extension("tmp");
        let io = |e: std::io::Error| ProviderError::Retryable {
            call: "memory.persist",
            message: format!("{}: {e}", path.display()),
        };
        tokio::fs::write(&tmp, &bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, path).await.map_err(io)?;
        self.flushed.fetch_max(covered, Ordering::SeqCst);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn ensure_entry(
        &self,
        kind: Kind,
        id: &LoadBalancerId,
        hash: String,
        requested_ip: Option<IpAddr>,
        targets: usize,
        shape: Shape,
        record: Option<&Record>,
    ) -> Result<LoadBalancerStatus> {
        self.counters.ensure.fetch_add(1, Ordering::Relaxed);
        self.simulate("memory.ensure").await?;
        let recorded = record.and_then(|r| r.get(RECORD_IP)).and_then(|s| s.parse().ok());
        let (status, changed) = {
            let mut guard = self.lock();
            let (st, pool) = &mut *guard;
            let map = st.map(kind);
            let k = key(id);
            let current = map.get(&k);
            if let Some(e) = current.filter(|e| e.spec_hash == hash) {
                (self.status(e), false)
            } else {
                let current_ip = current.map(|e| e.ip);
                let ip = pool.choose(requested_ip, current_ip, recorded)?;
                if let Some(old) = current_ip.filter(|old| *old != ip) {
                    pool.release(old);
                }
                pool.take(ip);
                let entry = Entry { id: id.clone(), spec_hash: hash, shape, targets, ip };
                let status = self.status(&entry);
                map.insert(k, entry);
                (status, true)
            }
        };
        if changed {
            self.counters.changed.fetch_add(1, Ordering::Relaxed);
            self.persist().await?;
        }
        Ok(status)
    }

    async fn delete_entry(&self, kind: Kind, id: &LoadBalancerId) -> Result<()> {
        self.counters.delete.fetch_add(1, Ordering::Relaxed);
        self.simulate("memory.delete").await?;
        let removed = {
            let mut guard = self.lock();
            let (st, pool) = &mut *guard;
            let removed = st.map(kind).remove(&key(id));
            if let Some(e) = &removed {
                pool.release(e.ip);
            }
            removed.is_some()
        };
        if removed {
            self.persist().await?;
        }
        Ok(())
    }

    async fn get_entry(&self, kind: Kind, id: &LoadBalancerId) -> Result<Option<LoadBalancerStatus>> {
        self.counters.get.fetch_add(1, Ordering::Relaxed);
        self.simulate("memory.get").await?;
        Ok(self.lock().0.map(kind).get(&key(id)).map(|e| self.status(e)))
    }

    fn status(&self, entry: &Entry) -> LoadBalancerStatus {
        let mut record = Record::default();
        record.set(RECORD_IP, entry.ip.to_string());
        LoadBalancerStatus::new(vec![IngressPoint::Ip(entry.ip)], IpMode::VIP, record, Some(entry.spec_hash.clone()))
    }
}

fn key(id: &LoadBalancerId) -> String {
    format!("{}/{}", id.cluster, id.uid)
}

#[async_trait]
impl Provider for MemoryProvider {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        let ip_families = match self.config.pool {
            IpNet::V4(_) => vec![IpFamily::IPv4],
            IpNet::V6(_) => vec![IpFamily::IPv6],
        };
        Capabilities {
            protocols: self.config.protocols.clone(),
            mixed_protocols: true,
            same_port_multiple_protocols: true,
            source_ranges: true,
            requested_ip: true,
            internal: true,
            client_ip_affinity: true,
            ip_families,
            max_listeners: 100,
            ip_mode: IpMode::VIP,
            state: if self.config.state_file.is_some() { StateLocation::Durable } else { StateLocation::InProcess },
            drift_check: crate::DriftCheck::SpecHash,
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
                max_routes: 1000,
                ip_mode: IpMode::VIP,
            }),
        }
    }

    async fn ensure(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> Result<LoadBalancerStatus> {
        let shape = Shape::L4 { listeners: spec.listeners.clone() };
        let hash = spec.hash_with_targets(&self.digests.digest(&spec.targets));
        self.ensure_entry(Kind::L4, id, hash, spec.requested_ip, spec.targets.len(), shape, record).await
    }

    async fn delete(&self, id: &LoadBalancerId, _record: Option<&Record>) -> Result<()> {
        self.delete_entry(Kind::L4, id).await
    }

    async fn get(&self, id: &LoadBalancerId, _record: Option<&Record>) -> Result<Option<LoadBalancerStatus>> {
        self.get_entry(Kind::L4, id).await
    }

    async fn ensure_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> Result<LoadBalancerStatus> {
        let shape = Shape::L7 {
            ports: spec.listeners.iter().map(|l| l.port).collect(),
            routes: spec.route_count(),
            certificates: spec.certificates.len(),
        };
        let hash = spec.hash_with_targets(&self.digests.digest(&spec.targets));
        self.ensure_entry(Kind::L7, id, hash, spec.requested_ip, spec.targets.len(), shape, record).await
    }

    async fn delete_l7(&self, id: &LoadBalancerId, _record: Option<&Record>) -> Result<()> {
        self.delete_entry(Kind::L7, id).await
    }

    async fn get_l7(&self, id: &LoadBalancerId, _record: Option<&Record>) -> Result<Option<LoadBalancerStatus>> {
        self.get_entry(Kind::L7, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    fn small_pool(cidr: &str) -> MemoryProvider {
        MemoryProvider::new(MemoryConfig { pool: cidr.parse().unwrap(), ..Default::default() }).unwrap()
    }

    #[tokio::test]
    async fn conformance_suite() {
        let p = MemoryProvider::new(MemoryConfig::default()).unwrap();
        conformance::run_all(&p).await;
        conformance::run_all_l7(&p).await;
    }

    #[tokio::test]
    async fn pool_exhaustion_is_quota_and_release_frees() {
        // A /30 has two usable addresses.
        let p = small_pool("192.0.2.0/30");
        let spec = conformance::spec(&[80]);
        let a = conformance::id("a");
        let b = conformance::id("b");
        let c = conformance::id("c");
        p.ensure(&a, &spec, None).await.unwrap();
        p.ensure(&b, &spec, None).await.unwrap();
        let err = p.ensure(&c, &spec, None).await.unwrap_err();
        assert!(matches!(err, ProviderError::Quota { .. }), "{err}");
        p.delete(&a, None).await.unwrap();
        let st = p.ensure(&c, &spec, None).await.unwrap();
        assert_eq!(st.ingress, vec![IngressPoint::Ip("192.0.2.1".parse().unwrap())]);
    }

    #[tokio::test]
    async fn requested_ip_outside_pool_or_taken_is_refused() {
        let p = small_pool("192.0.2.0/29");
        let mut spec = conformance::spec(&[80]);
        spec.requested_ip = Some("203.0.113.9".parse().unwrap());
        let err = p.ensure(&conformance::id("a"), &spec, None).await.unwrap_err();
        assert!(matches!(err, ProviderError::Invalid { .. }), "{err}");
        spec.requested_ip = Some("192.0.2.5".parse().unwrap());
        p.ensure(&conformance::id("a"), &spec, None).await.unwrap();
        let err = p.ensure(&conformance::id("b"), &spec, None).await.unwrap_err();
        assert!(matches!(err, ProviderError::Conflict { .. }), "{err}");
    }

    #[tokio::test]
    async fn state_file_survives_restart_and_makes_provider_durable() {
        let dir = std::env::temp_dir().join(format!("cloudlb-mem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("state.json");
        let _ = std::fs::remove_file(&file);
        let config = MemoryConfig { state_file: Some(file.clone()), ..Default::default() };
        let first = MemoryProvider::new(config.clone()).unwrap();
        assert_eq!(first.capabilities().state, StateLocation::Durable);
        let id = conformance::id("persisted");
        let st = first.ensure(&id, &conformance::spec(&[80]), None).await.unwrap();
        drop(first);
        let second = MemoryProvider::new(config).unwrap();
        assert_eq!(second.get(&id, None).await.unwrap(), Some(st));
        // The address stays allocated: another load balancer gets a different one.
        let other = second.ensure(&conformance::id("other"), &conformance::spec(&[80]), None).await.unwrap();
        assert_ne!(other.ingress, second.get(&id, None).await.unwrap().unwrap().ingress);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn injected_failures_are_retryable_and_counted() {
        let p = MemoryProvider::new(MemoryConfig { failure_rate: 1.0, ..Default::default() }).unwrap();
        let err = p.ensure(&conformance::id("x"), &conformance::spec(&[80]), None).await.unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::Retryable);
        assert_eq!(p.calls().failed, 1);
        assert!(p.is_empty());
    }

    #[tokio::test]
    async fn fail_first_fails_exactly_that_many_calls() {
        let p = MemoryProvider::new(MemoryConfig { fail_first: 2, ..Default::default() }).unwrap();
        let id = conformance::id("x");
        assert!(p.ensure(&id, &conformance::spec(&[80]), None).await.is_err());
        assert!(p.get(&id, None).await.is_err());
        assert!(p.ensure(&id, &conformance::spec(&[80]), None).await.is_ok());
        assert_eq!(p.calls().failed, 2);
    }

    #[tokio::test]
    async fn unchanged_ensure_is_not_a_change() {
        let p = MemoryProvider::new(MemoryConfig::default()).unwrap();
        let id = conformance::id("x");
        p.ensure(&id, &conformance::spec(&[80]), None).await.unwrap();
        p.ensure(&id, &conformance::spec(&[80]), None).await.unwrap();
        assert_eq!(p.calls().ensure, 2);
        assert_eq!(p.calls().changed, 1);
    }
}
