//! What every reconcile shares: the clients, the provider (instrumented), the caches of nodes
//! and of the objects Ingresses refer to, backoff, events, metrics, and what the provider last
//! confirmed per object.
//!
//! Per-object state is keyed by uid, so a deleted and re-created object never inherits its
//! predecessor's backoff or confirmation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudlb_provider::l7::Certificate;
use cloudlb_provider::{Capabilities, LoadBalancerId, LoadBalancerStatus, Provider, Record, StateLocation};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use tracing::debug;

use super::backoff::Backoff;
use super::cached::CachedService;
use super::events::{self, EventType};
use super::frontend::{Desired, Layer};
use super::nodes::NodeSet;
use super::observe::Watch;
use super::status::{Cond, HealthCond};
use crate::claim::ClaimConfig;
use crate::desired::DesiredConfig;
use crate::desired::ingress::IngressConfig;
use crate::metrics::Metrics;

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub cluster_name: String,
    pub claim: ClaimConfig,
    pub namespace: Option<String>,
    /// Whether Services get load balancers (`--controllers` has `service`).
    pub services: bool,
    pub concurrency: u16,
    pub resync_period: Duration,
    /// Longest one pass may take (see `reconcile`).
    pub reconcile_timeout: Duration,
    pub desired: DesiredConfig,
    /// `None`: Ingresses are not watched.
    pub ingress: Option<IngressConfig>,
    /// `reportingInstance` of our events (pod name in a cluster).
    pub instance: String,
    /// `--target-health-recheck`: how soon a load balancer with a target that is not healthy, or
    /// one the cloud is still provisioning, is looked at again (see `observe`).
    pub health_recheck: Duration,
    /// `--gc-interval`: sweep for load balancers nothing claims (see `gc`).
    pub gc: Option<(Duration, crate::gc::GcConfig)>,
}

/// The caches the Ingress builder reads.
pub struct IngressCaches {
    /// Every watched Ingress: the members of an Ingress group are built together.
    pub ingresses: Store<Ingress>,
    pub classes: Store<IngressClass>,
    pub secrets: Store<Secret>,
    /// The last valid certificate per `namespace/secret`, so a broken Secret never replaces a
    /// working certificate (see `desired::ingress::tls`).
    pub last_good: Mutex<HashMap<String, Certificate>>,
}

pub struct Context {
    pub client: Client,
    pub provider: Arc<dyn Provider>,
    pub caps: Capabilities,
    pub config: ControllerConfig,
    pub nodes: Arc<NodeSet>,
    /// The Services cloudlb reads, compact (see `cached`): the Service controller's own cache,
    /// read by Ingresses too.
    pub services: Store<CachedService>,
    /// Present when Ingresses are watched.
    pub ingress: Option<IngressCaches>,
    pub events: events::Publisher,
    pub metrics: Arc<Metrics>,
    pub backoff: Backoff,
    /// What the provider last confirmed for each object's load balancer (by uid).
    pub checked: Mutex<HashMap<String, Confirmed>>,
    /// The last condition reported for objects whose status has no conditions (Ingress), so a
    /// problem is reported once per change, not once per pass.
    pub reported: Mutex<HashMap<String, u64>>,
    /// Objects whose load balancer this process deleted and whose finalizer it removed, until
    /// the watch delivers them without it: a pass on the stale cached copy (woken by our own
    /// status and annotation writes) must not delete again.
    pub released: Mutex<HashSet<String>>,
    /// The annotations of each object's last spec that built (ours left out; no entry when it
    /// had none), so a typo in one keeps the load balancer following the nodes with the last
    /// valid settings (see `reconcile::follow_nodes_with_last_valid`).
    pub valid_annotations: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// Load balancers looked at before their next drift check (provisioning, or a target not
    /// healthy), by uid (see `observe`).
    pub watched: Mutex<HashMap<String, Watch>>,
    /// The health verdict (status, reason) last reported per uid, for front ends whose status
    /// has no conditions (Ingress).
    pub health: Mutex<HashMap<String, (Option<bool>, String)>>,
    /// Per-object locks while a pass runs (the controller and the node sweeper share objects).
    pub locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What to do for an object whose spec is unchanged.
pub enum Confirm {
    /// The provider state was confirmed within the resync period.
    NotDue,
    /// Ask the provider whether it still implements the spec.
    Check,
    /// The provider keeps state in-process and has not seen this object since start.
    Reensure,
}

/// What the controller knows about an object's load balancer since this process started.
pub struct Confirmed {
    /// When the provider last confirmed (or was made to implement) the spec.
    pub at: Instant,
    /// The spec hash last written to the object together with the provider's status; `None`
    /// for a first sight that was not confirmed yet.
    pub hash: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Context {
    /// Publishes an event about `obj`; a failure to do so is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let note = truncate(note, 1024);
        if let Err(e) = self.events.publish(&obj.object_ref(&()), type_, reason, action, &note).await {
            debug!(error = %e, reason, "publishing event failed");
        }
    }

    /// The load balancer id of `obj`.
    pub fn lb_id<K: Resource>(&self, obj: &K) -> LoadBalancerId {
        LoadBalancerId::new(
            self.config.cluster_name.clone(),
            obj.meta().namespace.clone().unwrap_or_default(),
            obj.meta().name.clone().unwrap_or_default(),
            obj.meta().uid.clone().unwrap_or_default(),
        )
    }

    pub async fn ensure(
        &self,
        id: &LoadBalancerId,
        desired: &Desired,
        record: Option<&Record>,
    ) -> cloudlb_provider::Result<LoadBalancerStatus> {
        match desired {
            Desired::L4(s) => self.provider.ensure(id, s, record).await,
            Desired::L7(s) => self.provider.ensure_l7(id, s, record).await,
        }
    }

    /// The node set changed, nothing else: the provider converges the targets only.
    pub async fn update_targets(
        &self,
        id: &LoadBalancerId,
        desired: &Desired,
        record: Option<&Record>,
    ) -> cloudlb_provider::Result<()> {
        match desired {
            Desired::L4(s) => self.provider.update_targets(id, s, record).await,
            Desired::L7(s) => self.provider.update_targets_l7(id, s, record).await,
        }
    }

    pub async fn delete(
        &self,
        layer: Layer,
        id: &LoadBalancerId,
        record: Option<&Record>,
    ) -> cloudlb_provider::Result<()> {
        match layer {
            Layer::L4 => self.provider.delete(id, record).await,
            Layer::L7 => self.provider.delete_l7(id, record).await,
        }
    }

    pub async fn get(
        &self,
        layer: Layer,
        id: &LoadBalancerId,
        record: Option<&Record>,
    ) -> cloudlb_provider::Result<Option<LoadBalancerStatus>> {
        match layer {
            Layer::L4 => self.provider.get(id, record).await,
            Layer::L7 => self.provider.get_l7(id, record).await,
        }
    }

    /// What an ensure of `desired` would change now, changing nothing (the drift check of
    /// providers with [`cloudlb_provider::DriftCheck::Plan`]).
    pub async fn plan(
        &self,
        id: &LoadBalancerId,
        desired: &Desired,
        record: Option<&Record>,
    ) -> cloudlb_provider::Result<cloudlb_provider::Plan> {
        match desired {
            Desired::L4(s) => self.provider.plan(id, s, record).await,
            Desired::L7(s) => self.provider.plan_l7(id, s, record).await,
        }
    }

    /// The provider's warnings about a spec it will build (parts it builds without).
    pub fn provider_warnings(&self, desired: &Desired) -> Vec<String> {
        match desired {
            Desired::L4(s) => self.provider.warnings(s),
            Desired::L7(s) => self.provider.warnings_l7(s),
        }
    }

    /// A Service from the shared cache.
    pub fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services.get(&ObjectRef::new(name).within(namespace))?.decoded()
    }

    pub fn confirmation_due(&self, uid: &str) -> Confirm {
        let mut checked = lock(&self.checked);
        let period = self.config.resync_period;
        let last = match checked.get(uid) {
            Some(c) => c.at,
            None if self.caps.state == StateLocation::InProcess => return Confirm::Reensure,
            None => {
                // First sight since start: schedule the first drift check at a random point
                // of the period, so a restart does not fire every check at once.
                let offset = period.mul_f64(rand::random::<f64>());
                let at = Instant::now().checked_sub(offset).unwrap_or_else(Instant::now);
                checked.insert(uid.to_string(), Confirmed { at, hash: None });
                self.metrics.tracked.set(checked.len() as i64);
                at
            }
        };
        if last.elapsed() >= period { Confirm::Check } else { Confirm::NotDue }
    }

    /// Whether the sweeper should look at `uid` for its drift check: it was seen since start
    /// and not confirmed for a resync period.
    pub fn drift_check_due(&self, uid: &str) -> bool {
        lock(&self.checked).get(uid).is_some_and(|c| c.at.elapsed() >= self.config.resync_period)
    }

    /// Whether `hash` is what this process last wrote for `uid`, within the resync period.
    pub fn just_written(&self, uid: &str, hash: &str) -> bool {
        lock(&self.checked)
            .get(uid)
            .is_some_and(|c| c.hash.as_deref() == Some(hash) && c.at.elapsed() < self.config.resync_period)
    }

    /// The full spec hash (targets included) this process last confirmed or made for `uid`.
    pub fn confirmed_hash(&self, uid: &str) -> Option<String> {
        lock(&self.checked).get(uid).and_then(|c| c.hash.clone())
    }

    pub fn confirmed(&self, uid: &str, hash: &str) {
        let mut checked = lock(&self.checked);
        checked.insert(uid.to_string(), Confirmed { at: Instant::now(), hash: Some(hash.to_string()) });
        self.metrics.tracked.set(checked.len() as i64);
    }

    /// Remembers the annotations a spec of `uid` just built with (without our own).
    pub fn remember_valid_annotations(&self, uid: &str, annotations: Option<&BTreeMap<String, String>>) {
        let relevant: BTreeMap<String, String> = annotations
            .into_iter()
            .flatten()
            .filter(|(k, _)| !crate::keys::OURS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut valid = lock(&self.valid_annotations);
        if relevant.is_empty() {
            valid.remove(uid);
        } else if valid.get(uid) != Some(&relevant) {
            valid.insert(uid.to_string(), relevant);
        }
    }

    /// The annotations `uid`'s last valid spec built with, if one built since start.
    pub fn valid_annotations(&self, uid: &str) -> Option<BTreeMap<String, String>> {
        self.confirmed_hash(uid)?;
        Some(lock(&self.valid_annotations).get(uid).cloned().unwrap_or_default())
    }

    /// Look at `uid`'s load balancer again at `w.due` (see `observe`).
    pub fn watch(&self, uid: &str, w: Watch) {
        lock(&self.watched).insert(uid.to_string(), w);
    }

    pub fn unwatch(&self, uid: &str) {
        lock(&self.watched).remove(uid);
    }

    pub fn watched(&self, uid: &str) -> Option<Watch> {
        lock(&self.watched).get(uid).copied()
    }

    /// Whether the sweeper should look at `uid` for its watch.
    pub fn watch_due(&self, uid: &str) -> bool {
        lock(&self.watched).get(uid).is_some_and(|w| w.due <= Instant::now())
    }

    /// Whether `uid`'s `Ready` is held (the cloud was still provisioning its load balancer, or had
    /// given up on it, when last seen): not to be written from the spec.
    pub fn holds_ready(&self, uid: &str) -> bool {
        lock(&self.watched).get(uid).is_some_and(|w| w.holds_ready)
    }

    /// A pass failed for good: the next drift check waits a resync period (a sweep every tick
    /// would repeat the same failing calls), and nothing is watched until an ensure succeeds;
    /// `hold`: the cloud gave up on the load balancer, so `Ready` stays held until it is active.
    pub fn failed_for_good(&self, uid: &str, hold: bool) {
        if hold {
            let due = Instant::now() + self.config.resync_period;
            lock(&self.watched).insert(uid.to_string(), Watch { due, holds_ready: true });
        } else {
            lock(&self.watched).remove(uid);
        }
        if let Some(c) = lock(&self.checked).get_mut(uid) {
            c.at = Instant::now();
        }
    }

    pub fn health_reported(&self, uid: &str) -> Option<(Option<bool>, String)> {
        lock(&self.health).get(uid).cloned()
    }

    pub fn remember_health(&self, uid: &str, h: &HealthCond) {
        lock(&self.health).insert(uid.to_string(), (h.status, h.reason.clone()));
    }

    /// Makes `uid`'s drift check due now.
    pub fn expire_confirmation(&self, uid: &str) {
        if let Some(c) = lock(&self.checked).get_mut(uid) {
            c.at = Instant::now().checked_sub(self.config.resync_period).unwrap_or(c.at);
        }
    }

    /// The digest of the last condition reported for `uid` (see [`Cond::digest`]).
    pub fn reported(&self, uid: &str) -> Option<u64> {
        lock(&self.reported).get(uid).copied()
    }

    pub fn remember_reported(&self, uid: &str, cond: &Cond) {
        lock(&self.reported).insert(uid.to_string(), cond.digest());
    }

    /// Drops every per-object entry of `uid` (the object is gone or no longer ours): called by
    /// the cleanup pass, and for every object the watch reports deleted (one whose finalizer was
    /// removed by hand never gets a cleanup pass).
    pub fn forget(&self, uid: &str) {
        {
            let mut checked = lock(&self.checked);
            checked.remove(uid);
            self.metrics.tracked.set(checked.len() as i64);
        }
        lock(&self.reported).remove(uid);
        lock(&self.watched).remove(uid);
        lock(&self.health).remove(uid);
        lock(&self.released).remove(uid);
        lock(&self.valid_annotations).remove(uid);
        self.backoff.succeeded(uid);
    }

    /// The lock of `uid`'s passes (taken by `reconcile`).
    pub fn object_lock(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.locks).entry(uid.to_string()).or_default().clone()
    }

    /// Gives back a lock from [`Self::object_lock`]; the entry goes when nobody else holds it.
    pub fn release_object_lock(&self, uid: &str, held: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = lock(&self.locks);
        // The map's reference and ours: no other pass is waiting.
        if Arc::strong_count(&held) == 2 {
            locks.remove(uid);
        }
    }

    /// The load balancer of `uid` was deleted and its finalizer removed (see `released`).
    pub fn mark_released(&self, uid: &str) {
        lock(&self.released).insert(uid.to_string());
    }

    /// `uid` is ours again and carries the finalizer.
    pub fn unmark_released(&self, uid: &str) {
        lock(&self.released).remove(uid);
    }

    /// Whether `uid` was released by this process and the cache has not caught up yet.
    pub fn is_released(&self, uid: &str) -> bool {
        lock(&self.released).contains(uid)
    }

    /// Remembers certificates that are valid now (Ingress TLS).
    pub fn remember_certificates(&self, certs: &[Certificate]) {
        if let Some(caches) = &self.ingress {
            let mut good = lock(&caches.last_good);
            for c in certs {
                good.insert(c.name.clone(), c.clone());
            }
        }
    }

    /// The last valid certificate of `namespace/secret`.
    pub fn last_good_certificate(&self, name: &str) -> Option<Certificate> {
        self.ingress.as_ref().and_then(|c| lock(&c.last_good).get(name).cloned())
    }
}

/// `obj`'s uid (empty for objects that have none, which the apiserver never serves).
pub fn uid<K: Resource>(obj: &K) -> String {
    obj.meta().uid.clone().unwrap_or_default()
}

/// `namespace/name` of `obj`, for logs.
pub fn key<K: Resource>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
