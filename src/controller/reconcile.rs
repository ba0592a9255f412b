//! One pass over one Service: decide whether it is ours, build its desired load balancer,
//! converge the provider (only when something changed), and write back what happened.
//!
//! ```text
//!   not ours / deleting ──(has finalizer)──▶ cleanup: delete LB ▶ clear status ▶ drop finalizer
//!   ours ──▶ build spec ──invalid──▶ Warning + condition, no cloud call, wait for a change
//!              │
//!              ▼
//!        finalizer ▶ unchanged hash & confirmed? ──yes──▶ nothing (drift check on its period)
//!              │ no
//!              ▼
//!        provider.ensure ▶ record + hash annotations ▶ status (ingress + condition) ▶ event
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudlb_provider::{ErrorClass, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus, Record, StateLocation};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::status::{self, Cond};
use super::{Context, EventType, finalizer};
use crate::claim::is_claimed;
use crate::desired;
use crate::desired::nodes::NodeSnapshot;
use crate::error::{Error, Result};
use crate::keys::{ANN_CLAIMED_CLASS, ANN_RECORD, ANN_SPEC_HASH, FINALIZER, event, reason};

/// The backoff "attempt" of a deletion (specs use their hash).
const DELETE_ATTEMPT: &str = "delete";

pub async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&svc, &ctx).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { crate::metrics::Outcome::Ok } else { crate::metrics::Outcome::Error };
    ctx.metrics.reconciles.get_or_create(&crate::metrics::ResultLabels { result: outcome }).inc();
    result
}

/// Retry policy for failed reconciles: per-object exponential backoff with jitter; a
/// provider's own retry-after (throttling) is honoured when longer.
pub fn error_policy(svc: Arc<Service>, err: &Error, ctx: Arc<Context>) -> Action {
    let attempt = ctx.attempt_of(&svc);
    let min = err.provider_error().and_then(|e| e.retry_after());
    let delay = ctx.backoff.failed(&key(&svc), &attempt, min);
    warn!(service = %key(&svc), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn key(svc: &Service) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

fn api(ctx: &Context, svc: &Service) -> Api<Service> {
    Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default())
}

fn lb_id(ctx: &Context, svc: &Service) -> LoadBalancerId {
    LoadBalancerId::new(
        ctx.config.cluster_name.clone(),
        svc.namespace().unwrap_or_default(),
        svc.name_any(),
        svc.uid().unwrap_or_default(),
    )
}

/// The record annotation, if present and readable.
fn record(svc: &Service) -> Option<Record> {
    let text = svc.annotations().get(ANN_RECORD)?;
    match Record::from_json(text) {
        Ok(r) => Some(r),
        Err(e) => {
            // Someone edited it; the provider still finds its resources by name and tags.
            warn!(service = %key(svc), error = %e, "unreadable {ANN_RECORD} annotation; ignoring it");
            None
        }
    }
}

/// The spec's hash, using the node set's cached digest when the targets are the whole set
/// (the same shared list, which `desired::build` hands out to every Service without a selector).
fn spec_hash(spec: &LoadBalancerSpec, nodes: &NodeSnapshot) -> String {
    if Arc::ptr_eq(&spec.targets, &nodes.all_targets) {
        spec.hash_with_targets(&nodes.all_targets_digest)
    } else {
        spec.hash()
    }
}

async fn reconcile_inner(svc: &Service, ctx: &Context) -> Result<Action> {
    let ours = is_claimed(svc, &ctx.config.claim);
    let deleting = svc.metadata.deletion_timestamp.is_some();
    if ours && !deleting {
        return apply(svc, ctx).await;
    }
    if !finalizer::has(svc) {
        return Ok(Action::await_change());
    }
    if !deleting && !wants_cleanup(svc) {
        // The Service still asks for the same load balancer it was claimed with: what changed is
        // this controller's --load-balancer-class / --manage-unclassed. A flag typo must never
        // tear down working load balancers, so leave it and say why.
        let note = format!(
            "Service carries {FINALIZER} but its class {:?} is not claimed by this controller \
             (--load-balancer-class {}, --manage-unclassed {}); its load balancer is left as it is",
            class_of(svc),
            ctx.config.claim.class,
            ctx.config.claim.manage_unclassed
        );
        warn!(service = %key(svc), "{note}");
        return Ok(Action::await_change());
    }
    cleanup(svc, ctx, deleting).await
}

/// `spec.loadBalancerClass`, `""` when unset.
fn class_of(svc: &Service) -> String {
    svc.spec.as_ref().and_then(|s| s.load_balancer_class.clone()).unwrap_or_default()
}

/// Whether a Service that is not (or no longer) ours should lose its load balancer: its type is
/// no longer LoadBalancer, or its class differs from the one it was claimed with.
fn wants_cleanup(svc: &Service) -> bool {
    let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
    match svc.annotations().get(ANN_CLAIMED_CLASS) {
        Some(claimed) => !is_lb || *claimed != class_of(svc),
        None => !is_lb,
    }
}

async fn cleanup(svc: &Service, ctx: &Context, deleting: bool) -> Result<Action> {
    if let Some(wait) = ctx.backoff.gate(&key(svc), DELETE_ATTEMPT) {
        return Ok(Action::requeue(wait));
    }
    let id = lb_id(ctx, svc);
    let record = record(svc);
    info!(service = %key(svc), deleting, "deleting load balancer");
    ctx.event(svc, EventType::Normal, event::DELETING, "Delete", "Deleting load balancer").await;
    if let Err(e) = ctx.provider.delete(&id, record.as_ref()).await {
        ctx.event(
            svc,
            EventType::Warning,
            event::DELETE_FAILED,
            "Delete",
            &format!("Error deleting load balancer: {e}"),
        )
        .await;
        return Err(Error::Delete(e));
    }
    let api = api(ctx, svc);
    if !deleting {
        // The Service stays but is no longer ours: take back what we wrote.
        if let Some(patch) = status::clear(svc) {
            api.patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(Error::PatchStatus)?;
        }
        let annotations =
            json!({"metadata": {"annotations": {ANN_RECORD: null, ANN_SPEC_HASH: null, ANN_CLAIMED_CLASS: null}}});
        api.patch(&svc.name_any(), &PatchParams::default(), &Patch::Merge(annotations))
            .await
            .map_err(Error::PatchAnnotations)?;
    }
    finalizer::remove(&api, svc).await.map_err(Error::RemoveFinalizer)?;
    ctx.forget(svc);
    ctx.backoff.succeeded(&key(svc));
    ctx.event(svc, EventType::Normal, event::DELETED, "Delete", "Deleted load balancer").await;
    Ok(Action::await_change())
}

async fn apply(svc: &Service, ctx: &Context) -> Result<Action> {
    let nodes = ctx.nodes.get();
    let spec = match desired::service::build_for(svc, &nodes, &ctx.config.desired, &ctx.caps, ctx.provider.as_ref()) {
        Ok(spec) => spec,
        Err(invalid) => {
            let cond = Cond::not_ready(reason::INVALID_SPEC, invalid.to_string());
            if !status::condition_is(svc, &cond) {
                info!(service = %key(svc), problems = %invalid, "invalid load balancer spec");
                ctx.event(svc, EventType::Warning, event::INVALID_SPEC, "Validate", &invalid.to_string()).await;
                write_status(ctx, svc, None, &cond).await?;
            }
            // Nothing that exists is touched; wait for the user to fix the Service.
            return Ok(Action::await_change());
        }
    };
    let hash = spec_hash(&spec, &nodes);
    let id = lb_id(ctx, svc);
    let recorded_hash = svc.annotations().get(ANN_SPEC_HASH).cloned();
    let record = record(svc);
    let has_address = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .is_some_and(|i| !i.is_empty());

    // We wrote this exact spec a moment ago; the watch cache may not have caught up with both
    // writes yet (annotations and status are two patches), which must not cost another ensure.
    if ctx.just_written(svc, &hash) {
        return Ok(Action::requeue(ctx.config.resync_period));
    }
    let mut why = if recorded_hash.as_deref() != Some(hash.as_str()) {
        Some(if recorded_hash.is_none() { "new" } else { "changed" })
    } else if record.is_none() || !has_address {
        Some("incomplete")
    } else {
        None
    };
    if why.is_none() {
        match ctx.confirmation_due(svc) {
            Confirm::NotDue(after) => {
                ready_condition(svc, ctx, &spec).await?;
                return Ok(Action::requeue(after));
            }
            Confirm::Reensure => why = Some("restart"),
            Confirm::Check => match ctx.provider.get(&id, record.as_ref()).await {
                Ok(Some(st)) if st.spec_hash.as_deref().is_none_or(|h| h == hash) => {
                    ctx.confirmed(svc, &hash);
                    ctx.backoff.succeeded(&key(svc));
                    ready_condition(svc, ctx, &spec).await?;
                    return Ok(Action::requeue(ctx.config.resync_period));
                }
                Ok(found) => {
                    let what = if found.is_some() { "differs from its spec" } else { "is missing" };
                    warn!(service = %key(svc), "load balancer {what}; repairing");
                    ctx.event(
                        svc,
                        EventType::Warning,
                        event::DRIFT,
                        "Sync",
                        &format!("Load balancer {what}; repairing"),
                    )
                    .await;
                    why = Some("drift");
                }
                Err(e) => return Err(Error::Get(e)),
            },
        }
    }
    let why = why.unwrap_or("changed");
    if let Some(wait) = ctx.backoff.gate(&key(svc), &hash) {
        // The same spec failed a moment ago; our own condition write woke us up early.
        return Ok(Action::requeue(wait));
    }

    let svc = if finalizer::has(svc) {
        svc.clone()
    } else {
        finalizer::add(&api(ctx, svc), svc).await.map_err(Error::AddFinalizer)?
    };
    let svc = &svc;
    let targets_only =
        recorded_hash.as_deref().and_then(|h| h.split('.').next()) == hash.split('.').next() && why == "changed";
    if !targets_only {
        ctx.event(svc, EventType::Normal, event::ENSURING, "Ensure", "Ensuring load balancer").await;
    }
    debug!(service = %key(svc), why, "ensuring load balancer");
    let st = match ctx.provider.ensure(&id, &spec, record.as_ref()).await {
        Ok(st) => st,
        Err(e) => return ensure_failed(svc, ctx, e).await,
    };
    save_record(ctx, svc, &st, &hash).await?;
    let warnings = ctx.provider.warnings(&spec);
    let cond = ready_cond(&spec, &warnings);
    let ingress = status::ingress(&st.ingress, st.ip_mode, &spec.listeners);
    if let Some(patch) = status::patch(svc, Some(ingress), Some(&cond)) {
        api(ctx, svc)
            .patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(Error::PatchStatus)?;
    }
    // Only now is everything written: a failed write above retries the whole pass.
    ctx.confirmed(svc, &hash);
    ctx.backoff.succeeded(&key(svc));
    if spec.targets.is_empty() {
        ctx.event(
            svc,
            EventType::Warning,
            event::UNAVAILABLE,
            "Ensure",
            "There are no available nodes for LoadBalancer",
        )
        .await;
    }
    if !warnings.is_empty() {
        ctx.event(svc, EventType::Warning, event::WARNING, "Ensure", &warnings.join("; ")).await;
    }
    if targets_only {
        let note = format!("Updated load balancer with new hosts ({} targets)", spec.targets.len());
        ctx.event(svc, EventType::Normal, event::UPDATED, "Update", &note).await;
    } else {
        ctx.event(svc, EventType::Normal, event::ENSURED, "Ensure", "Ensured load balancer").await;
    }
    info!(service = %key(svc), why, address = ?st.ingress, targets = spec.targets.len(), "load balancer ensured");
    Ok(Action::requeue(ctx.config.resync_period))
}

/// The condition after a successful pass; the provider's warnings (parts it built without, such
/// as nodes it cannot register) are part of the message, so they are visible on the Service.
fn ready_cond(spec: &LoadBalancerSpec, warnings: &[String]) -> Cond {
    let mut cond = if spec.targets.is_empty() {
        Cond::not_ready(
            reason::NO_ELIGIBLE_NODES,
            "the load balancer has an address but no eligible node to send traffic to",
        )
    } else {
        Cond::ready(format!("load balancer ready with {} targets", spec.targets.len()))
    };
    if !warnings.is_empty() {
        cond.message = format!("{}; {}", cond.message, warnings.join("; "));
    }
    cond
}

/// Makes sure the condition says ready when nothing needed doing (e.g. after an error cleared).
async fn ready_condition(svc: &Service, ctx: &Context, spec: &LoadBalancerSpec) -> Result<()> {
    let cond = ready_cond(spec, &ctx.provider.warnings(spec));
    if status::condition_is(svc, &cond) {
        return Ok(());
    }
    write_status(ctx, svc, None, &cond).await
}

async fn write_status(
    ctx: &Context,
    svc: &Service,
    ingress: Option<Vec<k8s_openapi::api::core::v1::LoadBalancerIngress>>,
    cond: &Cond,
) -> Result<()> {
    if let Some(patch) = status::patch(svc, ingress, Some(cond)) {
        api(ctx, svc)
            .patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(Error::PatchStatus)?;
    }
    Ok(())
}

async fn save_record(ctx: &Context, svc: &Service, st: &LoadBalancerStatus, hash: &str) -> Result<()> {
    let record = st.record.to_json();
    let class = class_of(svc);
    let ann = svc.annotations();
    if ann.get(ANN_RECORD) == Some(&record)
        && ann.get(ANN_SPEC_HASH).map(String::as_str) == Some(hash)
        && ann.get(ANN_CLAIMED_CLASS) == Some(&class)
    {
        return Ok(());
    }
    let patch =
        json!({"metadata": {"annotations": {ANN_RECORD: record, ANN_SPEC_HASH: hash, ANN_CLAIMED_CLASS: class}}});
    api(ctx, svc)
        .patch(&svc.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(Error::PatchAnnotations)?;
    Ok(())
}

async fn ensure_failed(svc: &Service, ctx: &Context, e: cloudlb_provider::ProviderError) -> Result<Action> {
    match e.class() {
        ErrorClass::Provisioning => {
            let after = e.retry_after().unwrap_or(Duration::from_secs(10));
            write_status(ctx, svc, None, &Cond::not_ready(reason::PROVISIONING, e.to_string())).await?;
            Ok(Action::requeue(after))
        }
        ErrorClass::Retryable | ErrorClass::Throttled => {
            let note = format!("Error syncing load balancer: {e}");
            ctx.event(svc, EventType::Warning, event::SYNC_FAILED, "Ensure", &note).await;
            write_status(ctx, svc, None, &Cond::not_ready(reason::PROVIDER_ERROR, e.to_string())).await?;
            Err(Error::Ensure(e))
        }
        ErrorClass::Permanent => {
            let cond = Cond::not_ready(e.reason(), e.to_string());
            if !status::condition_is(svc, &cond) {
                let note = format!("Error syncing load balancer: {e}");
                ctx.event(svc, EventType::Warning, event::SYNC_FAILED, "Ensure", &note).await;
                write_status(ctx, svc, None, &cond).await?;
            }
            // Retrying will not help until something changes; look again after a resync period
            // in case what blocks it (a conflicting resource, a quota) went away.
            Ok(Action::requeue(ctx.config.resync_period))
        }
    }
}

/// Rebuilds, before the controller reports ready, every load balancer of a provider whose state
/// lives in this process (it was lost with the previous process): each claimed Service that has
/// a record gets `ensure` with its recorded address. Services whose recorded spec hash matches are
/// marked confirmed, so the reconcile that follows makes no second call; the others (changed while
/// we were down, or failing here) are left to the normal reconcile.
pub async fn restore(ctx: &Context, services: &Api<Service>) {
    let list = match services.list(&Default::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            warn!(error = %e, "listing Services to restore load balancers failed; reconcile will restore them");
            return;
        }
    };
    let nodes = ctx.nodes.get();
    let started = Instant::now();
    let todo: Vec<Service> = list
        .into_iter()
        .filter(|s| is_claimed(s, &ctx.config.claim) && s.metadata.deletion_timestamp.is_none())
        .filter(|s| finalizer::has(s) && record(s).is_some())
        .collect();
    let mut results = futures::stream::iter(todo)
        .map(|svc| restore_one(ctx, nodes.clone(), svc))
        .buffer_unordered(usize::from(ctx.config.concurrency));
    let mut restored = 0usize;
    while let Some(ok) = results.next().await {
        restored += usize::from(ok);
    }
    info!(restored, took = ?started.elapsed(), "restored in-process load balancers");
}

async fn restore_one(ctx: &Context, nodes: Arc<NodeSnapshot>, svc: Service) -> bool {
    let Ok(spec) = desired::service::build_for(&svc, &nodes, &ctx.config.desired, &ctx.caps, ctx.provider.as_ref())
    else {
        return false;
    };
    let hash = spec_hash(&spec, &nodes);
    let recorded = record(&svc);
    match ctx.provider.ensure(&lb_id(ctx, &svc), &spec, recorded.as_ref()).await {
        Ok(st) => {
            let unchanged =
                svc.annotations().get(ANN_SPEC_HASH) == Some(&hash) && Some(&st.record) == recorded.as_ref();
            if unchanged {
                ctx.confirmed(&svc, &hash);
            }
            unchanged
        }
        Err(e) => {
            warn!(service = %key(&svc), error = %e, "restoring load balancer failed; reconcile will retry");
            false
        }
    }
}

/// What to do for a Service whose spec is unchanged.
pub enum Confirm {
    /// The provider state was confirmed recently; look again after this long.
    NotDue(Duration),
    /// Ask the provider whether it still implements the spec.
    Check,
    /// The provider keeps state in-process and has not seen this Service since start.
    Reensure,
}

/// What the controller knows about a Service's load balancer since this process started.
pub struct Confirmed {
    /// When the provider last confirmed (or was made to implement) the spec.
    pub at: Instant,
    /// The spec hash last written to the Service together with the provider's status; `None`
    /// for a first sight that was not confirmed yet.
    pub hash: Option<String>,
}

impl Context {
    pub fn confirmation_due(&self, svc: &Service) -> Confirm {
        let uid = svc.uid().unwrap_or_default();
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        let period = self.config.resync_period;
        let last = match checked.get(&uid) {
            Some(c) => c.at,
            None if self.caps.state == StateLocation::InProcess => return Confirm::Reensure,
            None => {
                // First sight since start: schedule the first drift check at a random point
                // of the period, so a restart does not fire every check at once.
                let offset = period.mul_f64(rand::random::<f64>());
                let at = Instant::now().checked_sub(offset).unwrap_or_else(Instant::now);
                checked.insert(uid, Confirmed { at, hash: None });
                at
            }
        };
        let elapsed = last.elapsed();
        if elapsed >= period { Confirm::Check } else { Confirm::NotDue(period - elapsed) }
    }

    /// Whether `hash` is what this process last wrote for `svc`, within the resync period.
    pub fn just_written(&self, svc: &Service, hash: &str) -> bool {
        let checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        checked
            .get(&svc.uid().unwrap_or_default())
            .is_some_and(|c| c.hash.as_deref() == Some(hash) && c.at.elapsed() < self.config.resync_period)
    }

    pub fn confirmed(&self, svc: &Service, hash: &str) {
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        checked.insert(svc.uid().unwrap_or_default(), Confirmed { at: Instant::now(), hash: Some(hash.to_string()) });
    }

    /// What a pass over `svc` attempts, for the backoff gate: "delete", or the spec hash.
    pub fn attempt_of(&self, svc: &Service) -> String {
        let ours = is_claimed(svc, &self.config.claim) && svc.metadata.deletion_timestamp.is_none();
        if !ours {
            return DELETE_ATTEMPT.into();
        }
        let nodes = self.nodes.get();
        match desired::service::build_for(svc, &nodes, &self.config.desired, &self.caps, self.provider.as_ref()) {
            Ok(spec) => spec_hash(&spec, &nodes),
            Err(_) => "invalid".into(),
        }
    }

    pub fn forget(&self, svc: &Service) {
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        checked.remove(&svc.uid().unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudlb_provider::conformance;

    #[test]
    fn cached_digest_gives_the_same_hash() {
        use crate::desired::nodes::EligibleNode;
        let base = conformance::spec(&[80]);
        let nodes = NodeSnapshot::new(
            base.targets.iter().map(|t| EligibleNode { target: t.clone(), labels: Default::default() }).collect(),
        );
        let shared = LoadBalancerSpec { targets: nodes.all_targets.clone(), ..base.clone() };
        assert_eq!(spec_hash(&shared, &nodes), base.hash(), "the cached digest equals the computed one");
        let mut subset = shared.clone();
        Arc::make_mut(&mut subset.targets).clear();
        assert_eq!(spec_hash(&subset, &nodes), subset.hash());
        assert_ne!(spec_hash(&subset, &nodes), base.hash());
    }
}
