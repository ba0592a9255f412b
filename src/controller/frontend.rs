//! What differs between the front ends — a Service (L4) and an Ingress (L7), later a Gateway —
//! so that one reconcile ([`super::reconcile`]) serves them all.
//!
//! ```text
//!                    ┌─ Service: claim by class, L4 spec, status + condition
//!  FrontEnd  ────────┤
//!                    └─ Ingress: claim by IngressClass, L7 spec, status (events only)
//!  Desired   ── L4(LoadBalancerSpec) | L7(L7Spec): hashed, handed to the provider's matching calls
//! ```
//!
//! Everything else (finalizer, record and hash annotations, backoff, events, drift checks,
//! deletion) is the same for every front end and lives in `reconcile`.

use std::fmt::Debug;
use std::sync::Arc;

use cloudlb_provider::{L7Spec, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus, Record, Target};
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Context;
use super::status::{Cond, HealthCond};
use crate::desired::Invalid;
use crate::desired::nodes::NodeSnapshot;

/// Which provider calls a front end's load balancers go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    L4,
    L7,
}

/// A desired load balancer of either kind.
#[derive(Clone, Debug)]
pub enum Desired {
    L4(LoadBalancerSpec),
    L7(L7Spec),
}

impl Desired {
    /// `externalTrafficPolicy: Local`: nodes without a ready endpoint fail the health checks by
    /// design (see `observe`).
    pub fn local_traffic(&self) -> bool {
        matches!(self, Desired::L4(s) if s.health_check.target == cloudlb_provider::HealthTarget::ServiceHealthCheckNodePort)
    }

    /// The same load balancer without its requested address, so that the provider keeps the
    /// recorded one (see `restore::restore`).
    pub fn as_recorded(&self) -> Desired {
        let mut d = self.clone();
        match &mut d {
            Desired::L4(s) => s.requested_ip = None,
            Desired::L7(s) => s.requested_ip = None,
        }
        d
    }

    pub fn targets(&self) -> &Arc<Vec<Target>> {
        match self {
            Desired::L4(s) => &s.targets,
            Desired::L7(s) => &s.targets,
        }
    }

    /// The spec's hash, using the node set's cached digest when the targets are the whole set
    /// (the same shared list every object without a node selector points at).
    pub fn hash(&self, nodes: &NodeSnapshot) -> String {
        let shared = Arc::ptr_eq(self.targets(), &nodes.all_targets);
        match (self, shared) {
            (Desired::L4(s), true) => s.hash_with_targets(&nodes.all_targets_digest),
            (Desired::L7(s), true) => s.hash_with_targets(&nodes.all_targets_digest),
            (Desired::L4(s), false) => s.hash(),
            (Desired::L7(s), false) => s.hash(),
        }
    }
}

/// The spec and the problems that only affect part of it (shown as a Warning event).
pub struct Built {
    pub desired: Desired,
    pub warnings: Vec<String>,
}

/// One kind of object that gets a load balancer.
pub trait FrontEnd:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// `Service`, `Ingress`: in logs and metrics.
    const KIND: &'static str;
    const LAYER: Layer;

    /// Whether this object is ours now.
    fn claimed(&self, ctx: &Context) -> bool;

    /// The class the object asks for, as written (recorded when it is claimed; a change of it
    /// later is an ownership change, see [`FrontEnd::wants_cleanup`]).
    fn requested_class(&self) -> String;

    /// This controller's settings that decide what it claims, as flags (for the log line that
    /// explains why an object with our finalizer is left alone).
    fn claim_settings(ctx: &Context) -> String;

    /// Whether the object still asks for a load balancer of any class at all (a Service whose
    /// type changed does not).
    fn wants_load_balancer(&self) -> bool;

    /// The desired load balancer, or everything wrong with the object. Pure, given the
    /// context's caches.
    fn build(&self, ctx: &Context, nodes: &NodeSnapshot) -> Result<Built, Invalid>;

    /// Whether the status shows an address.
    fn has_address(&self) -> bool;

    /// Our condition as the object shows it, for front ends whose status has conditions;
    /// `None` makes the controller remember the last condition it reported instead.
    fn condition(&self) -> Option<Cond>;

    /// The status merge patch for `lb` (the address), `cond` and `health` (the targets' health,
    /// when known), or `None` when the status already says that. `lb: None` leaves the address
    /// as it is, `health: None` the health condition.
    fn status_patch(
        &self,
        lb: Option<(&LoadBalancerStatus, &Desired)>,
        cond: &Cond,
        health: Option<&HealthCond>,
    ) -> Option<Value>;

    /// Our health condition as the object shows it (`None` for front ends without conditions:
    /// the controller remembers what it reported instead).
    fn health_condition(&self) -> Option<HealthCond>;

    /// The status merge patch that removes what we wrote, or `None` when nothing is there.
    fn clear_status_patch(&self) -> Option<Value>;

    /// Keeps only what reconcile reads (applied to every watched object).
    fn trim(&mut self);

    /// Whether the watch cache still holds this object (this incarnation, by uid). A pass that
    /// waited for the lock while the watch delivered the object's deletion must not act on its
    /// old copy: the deletion's handler (`orphans`) has dropped its state already.
    fn still_cached(&self, ctx: &Context) -> bool;

    /// The id the load balancer is ensured, found and deleted as: the object's own, or a shared
    /// load balancer's (an Ingress group's). Passes on the same id run one at a time.
    fn lb_id(&self, ctx: &Context) -> LoadBalancerId {
        ctx.lb_id(self)
    }

    /// For a shared load balancer that others still use: what it must become without this
    /// object (ensured instead of deleting it when this object goes). `None`: delete it.
    fn shared_remainder(&self, ctx: &Context, nodes: &NodeSnapshot) -> Option<Desired> {
        let _ = (ctx, nodes);
        None
    }

    /// Adds to the record what this object must remember about its load balancer.
    fn annotate_record(&self, record: &mut Record) {
        let _ = record;
    }

    /// A load balancer this object used (per its `record`) and no longer does, because it
    /// joined, left or changed a shared one: its id, and what it must become when others still
    /// use it (`None`: delete it).
    fn left_behind(
        &self,
        ctx: &Context,
        nodes: &NodeSnapshot,
        record: Option<&Record>,
    ) -> Option<(LoadBalancerId, Option<Desired>)> {
        let _ = (ctx, nodes, record);
        None
    }

    /// Whether an object of this kind that carries our finalizer but is no longer claimed was
    /// claimed with a different class than it asks for now (an ownership change: clean up), as
    /// opposed to our flags or classes having changed (leave it alone).
    fn wants_cleanup(&self, claimed_as: Option<&str>) -> bool {
        if !self.wants_load_balancer() {
            return true;
        }
        claimed_as.is_some_and(|c| c != self.requested_class())
    }
}
