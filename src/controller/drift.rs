//! The drift check: once per `--resync-period`, does the cloud still implement an object's spec?
//!
//! How depends on the provider ([`DriftCheck`]): aws plans an ensure (its own reads, every
//! change skipped), so anything an ensure would repair is drift, below the load balancer too (a
//! deleted listener, a deregistered target, a revoked security-group rule), and the event names
//! the calls that repair it. The others compare the spec hash the provider keeps with the load
//! balancer (`get`), which is a few reads but sees only the load balancer itself; a hash that
//! differs in its targets part only means nodes changed while nobody looked: targets only.

use cloudlb_provider::{DriftCheck, ErrorClass, LoadBalancerId, Record};
use tracing::warn;

use super::EventType;
use super::context::{Context, key};
use super::frontend::{Desired, FrontEnd};
use super::reconcile::frontend;
use crate::error::{Error, Result};
use crate::keys::event;

pub enum Verdict {
    /// The cloud implements the spec.
    Implemented,
    /// It implements it for other targets: converge the targets only.
    TargetsOnly,
    /// Missing or different: a full ensure repairs it (the event is published).
    Drifted,
}

pub async fn check<F: FrontEnd>(
    obj: &F,
    ctx: &Context,
    id: &LoadBalancerId,
    desired: &Desired,
    hash: &str,
    record: Option<&Record>,
) -> Result<Verdict> {
    if ctx.caps.drift_check == DriftCheck::Plan {
        return match ctx.plan(id, desired, record).await {
            Ok(plan) if plan.changes.is_empty() => Ok(Verdict::Implemented),
            Ok(plan) => {
                let mut calls: Vec<&str> = plan.changes.iter().map(|c| c.call.as_str()).collect();
                calls.dedup();
                drifted(obj, ctx, &format!("differs from its spec ({})", calls.join(", "))).await;
                Ok(Verdict::Drifted)
            }
            // What the ensure reports properly (a conflict, a failed load balancer), or does (a
            // failed load balancer being replaced: the planned delete was skipped).
            Err(e) if matches!(e.class(), ErrorClass::Permanent | ErrorClass::Provisioning) => Ok(Verdict::Drifted),
            Err(e) => Err(Error::Get(e)),
        };
    }
    match ctx.get(F::LAYER, id, record).await {
        Ok(Some(st)) if st.spec_hash.as_deref().is_none_or(|h| h == hash) => Ok(Verdict::Implemented),
        // The node set changed in a way this process did not see through.
        Ok(Some(st)) if st.spec_hash.as_deref().map(frontend) == Some(frontend(hash)) => Ok(Verdict::TargetsOnly),
        Ok(found) => {
            drifted(obj, ctx, if found.is_some() { "differs from its spec" } else { "is missing" }).await;
            Ok(Verdict::Drifted)
        }
        Err(e) => Err(Error::Get(e)),
    }
}

async fn drifted<F: FrontEnd>(obj: &F, ctx: &Context, what: &str) {
    warn!(kind = F::KIND, object = %key(obj), "load balancer {what}; repairing");
    let note = format!("Load balancer {what}; repairing");
    ctx.event(obj, EventType::Warning, event::DRIFT, "Sync", &note).await;
}
