//! One pass over one object of any front end (Service, Ingress): decide whether it is ours,
//! build its desired load balancer, converge the provider (only when something changed), and
//! write back what happened. What differs per front end is behind [`FrontEnd`].
//!
//! ```text
//!   not ours / deleting ──(has finalizer)──▶ cleanup: delete LB ▶ clear status ▶ drop finalizer
//!   ours ──▶ build spec ──invalid──▶ Warning + condition, no cloud call, wait for a change
//!              │
//!              ▼
//!        finalizer ▶ unchanged hash & confirmed? ──yes──▶ nothing (drift check on its period)
//!              │ only the targets part of the hash changed (node set)
//!              ├──────────▶ provider.update_targets ▶ one event; no write to the object
//!              │ frontend changed, new, drifted
//!              ▼
//!        provider.ensure ▶ record + hash annotations ▶ status (address + condition) ▶ event
//! ```
//!
//! The spec-hash annotation is `<frontend>.<targets>` of the last *full* ensure. Node-set
//! changes never rewrite it (every write to a Service is delivered to every watcher of Services
//! in the cluster, kube-proxy on each node included); what the provider implements since then is
//! kept in memory (`Context::checked`), and after a restart a differing targets part costs one
//! `update_targets`, which only reads when the targets are right.
//!
//! A converged object is not requeued: node changes and drift checks (`get` once per resync
//! period) reach it through the sweeper (`sweep`), outside the controller's queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudlb_provider::{ErrorClass, LoadBalancerStatus, ProviderError, Record, StateLocation};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{debug, info, warn};

use super::cached::Cached;
use super::context::{Confirm, key, uid};
use super::frontend::{Built, Desired, FrontEnd};
use super::status::{Cond, HealthCond};
use super::{Context, EventType, finalizer};
use super::{drift, observe};
use crate::desired::nodes::NodeSnapshot;
use crate::error::{Error, Result, provider_reason};
use crate::keys::{ANN_CLAIMED_CLASS, ANN_RECORD, ANN_SPEC_HASH, FINALIZER, OURS, event, reason};
use crate::metrics::{ErrorReason, Outcome, ReconcileLabels};

/// How soon a pass whose status write met a newer object runs again.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// The backoff "attempt" of a deletion (specs use their hash).
const DELETE_ATTEMPT: &str = "delete";

pub async fn reconcile<F: FrontEnd>(obj: Arc<F>, ctx: Arc<Context>) -> Result<Action> {
    // One pass per object at a time: the controller's queue and the node sweeper (`sweep`)
    // both call this.
    // Keyed by the load balancer's id: the members of an Ingress group share one.
    let lock_key = obj.lb_id(&ctx).uid;
    let lock = ctx.object_lock(&lock_key);
    let guard = lock.lock().await;
    if !obj.still_cached(&ctx) {
        // Deleted while this pass waited for the lock; `orphans::on_gone` handled it.
        drop(guard);
        ctx.release_object_lock(&lock_key, lock);
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    // Bounded: a call that hangs (an API or cloud connection silently dropped) must not hold
    // the object forever; the liveness probe watches for a pass that even this cannot stop.
    let _inflight = ctx.metrics.liveness.reconcile(format!("{} {}", F::KIND, key(obj.as_ref())));
    let limit = ctx.config.reconcile_timeout;
    let result = match tokio::time::timeout(limit, reconcile_inner(obj.as_ref(), &ctx)).await {
        Ok(result) => result,
        Err(_) => Err(Error::ReconcileTimeout(limit)),
    };
    drop(guard);
    ctx.release_object_lock(&lock_key, lock);
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    let result_label = if result.is_ok() { Outcome::Ok } else { Outcome::Error };
    ctx.metrics.reconciles.get_or_create(&ReconcileLabels { kind: F::KIND, result: result_label }).inc();
    if let Err(e) = &result {
        ctx.metrics.reconcile_failed(F::KIND, e.reason());
    }
    result
}

/// [`reconcile`] for an object as its cache holds it (see `cached`): the controllers' pass, which
/// takes the object off the work queue's count (see `metrics::queue`).
pub async fn reconcile_cached<C: Cached>(obj: Arc<C>, ctx: Arc<Context>) -> Result<Action> {
    let kind = <C::Full as FrontEnd>::KIND;
    ctx.metrics.queue.started(kind, obj.meta().namespace.as_deref().unwrap_or_default(), &obj.name_any());
    match C::full(&obj) {
        Some(full) => reconcile(full, ctx).await,
        None => Ok(Action::await_change()),
    }
}

/// [`error_policy`] for an object as its cache holds it.
pub fn error_policy_cached<C: Cached>(obj: Arc<C>, err: &Error, ctx: Arc<Context>) -> Action {
    match C::full(&obj) {
        Some(full) => error_policy(full, err, ctx),
        None => Action::await_change(),
    }
}

/// Retry policy for failed reconciles: per-object exponential backoff with jitter; a
/// provider's own retry-after (throttling) is honoured when longer.
pub fn error_policy<F: FrontEnd>(obj: Arc<F>, err: &Error, ctx: Arc<Context>) -> Action {
    if err.is_write_conflict() {
        // Someone else wrote the object since we read it; its watch event is on the way.
        debug!(kind = F::KIND, object = %key(obj.as_ref()), "status changed since read; passing again");
        return Action::requeue(CONFLICT_RETRY);
    }
    let attempt = attempt_of(obj.as_ref(), &ctx);
    let min = err.provider_error().and_then(ProviderError::retry_after).or_else(|| err.api_retry_after());
    let delay = ctx.backoff.failed(&uid(obj.as_ref()), &attempt, min);
    warn!(kind = F::KIND, object = %key(obj.as_ref()), error = %err, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn api<F: FrontEnd>(ctx: &Context, obj: &F) -> Api<F> {
    Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default())
}

/// Whether `obj` carries our finalizer.
pub fn has_finalizer<K: Resource>(obj: &K) -> bool {
    obj.meta().finalizers.iter().flatten().any(|f| f == FINALIZER)
}

/// The record annotation, if present and readable.
pub fn record<K: Resource>(obj: &K) -> Option<Record> {
    let text = obj.meta().annotations.as_ref()?.get(ANN_RECORD)?;
    match Record::from_json(text) {
        Ok(r) => Some(r),
        Err(e) => {
            // Someone edited it; the provider still finds its resources by name and tags.
            warn!(object = %key(obj), error = %e, "unreadable {ANN_RECORD} annotation; ignoring it");
            None
        }
    }
}

pub(super) fn annotation<'a, K: Resource>(obj: &'a K, k: &str) -> Option<&'a String> {
    obj.meta().annotations.as_ref()?.get(k)
}

async fn reconcile_inner<F: FrontEnd>(obj: &F, ctx: &Context) -> Result<Action> {
    let ours = obj.claimed(ctx);
    let deleting = obj.meta().deletion_timestamp.is_some();
    if ours && !deleting {
        return apply(obj, ctx).await;
    }
    if !has_finalizer(obj) {
        ctx.forget(&uid(obj));
        return Ok(Action::await_change());
    }
    if ctx.is_released(&uid(obj)) {
        // A stale copy: we removed the finalizer already; the watch brings the object without it.
        return Ok(Action::await_change());
    }
    if !deleting && !obj.wants_cleanup(annotation(obj, ANN_CLAIMED_CLASS).map(String::as_str)) {
        // The object still asks for the load balancer it was claimed with: what changed is
        // this controller's flags or the class objects. A typo must never tear down working
        // load balancers, so leave it and say why.
        warn!(
            kind = F::KIND,
            object = %key(obj),
            "{} carries {FINALIZER} but its class {:?} is not claimed by this controller ({}); \
             its load balancer is left as it is",
            F::KIND,
            obj.requested_class(),
            F::claim_settings(ctx)
        );
        return Ok(Action::await_change());
    }
    cleanup(obj, ctx, deleting).await
}

async fn cleanup<F: FrontEnd>(obj: &F, ctx: &Context, deleting: bool) -> Result<Action> {
    let uid = uid(obj);
    if let Some(wait) = ctx.backoff.gate(&uid, DELETE_ATTEMPT) {
        return Ok(Action::requeue(wait));
    }
    let id = obj.lb_id(ctx);
    let record = record(obj);
    // A shared load balancer that others still use goes on without this object's part.
    let result = match obj.shared_remainder(ctx, &ctx.nodes.get()) {
        Some(rest) => {
            info!(kind = F::KIND, object = %key(obj), deleting, lb = %id, "leaving the shared load balancer");
            ctx.ensure(&id, &rest, record.as_ref()).await.map(|_| ())
        }
        None => {
            info!(kind = F::KIND, object = %key(obj), deleting, "deleting load balancer");
            ctx.event(obj, EventType::Normal, event::DELETING, "Delete", "Deleting load balancer").await;
            ctx.delete(F::LAYER, &id, record.as_ref()).await
        }
    };
    if let Err(e) = result {
        let note = format!("Error deleting load balancer: {e}");
        ctx.event(obj, EventType::Warning, event::DELETE_FAILED, "Delete", &note).await;
        return Err(Error::Delete(e));
    }
    let api = api(ctx, obj);
    if !deleting {
        // The object stays but is no longer ours: take back what we wrote.
        if let Some(patch) = obj.clear_status_patch() {
            api.patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(guarded(obj, patch)))
                .await
                .map_err(Error::PatchStatus)?;
        }
        let annotations =
            json!({"metadata": {"annotations": {ANN_RECORD: null, ANN_SPEC_HASH: null, ANN_CLAIMED_CLASS: null}}});
        api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(annotations))
            .await
            .map_err(Error::PatchAnnotations)?;
    }
    finalizer::remove(&api, obj).await.map_err(Error::RemoveFinalizer)?;
    ctx.forget(&uid);
    ctx.mark_released(&uid);
    ctx.event(obj, EventType::Normal, event::DELETED, "Delete", "Deleted load balancer").await;
    Ok(Action::await_change())
}

/// Whether our condition already says exactly this.
pub(super) fn condition_is<F: FrontEnd>(obj: &F, ctx: &Context, cond: &Cond) -> bool {
    match obj.condition() {
        Some(c) => c == *cond,
        None => ctx.reported(&uid(obj)).is_some_and(|c| c == cond.digest()),
    }
}

/// A status merge patch that replaces `status.conditions` (a merge patch replaces a list
/// whole) is made conditional on the object being the one it was computed from: another
/// controller's condition written in between makes it fail with 409 instead of being dropped
/// (see `error_policy`). Patches that only touch our own fields go through unconditionally.
fn guarded<F: FrontEnd>(obj: &F, mut patch: Value) -> Value {
    if patch["status"].get("conditions").is_some()
        && let Some(rv) = obj.meta().resource_version.as_deref()
    {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    patch
}

pub(super) async fn write_status<F: FrontEnd>(
    ctx: &Context,
    obj: &F,
    lb: Option<(&LoadBalancerStatus, &Desired)>,
    cond: &Cond,
    health: Option<&HealthCond>,
) -> Result<()> {
    if let Some(patch) = obj.status_patch(lb, cond, health) {
        api(ctx, obj)
            .patch_status(&obj.name_any(), &PatchParams::default(), &Patch::Merge(guarded(obj, patch)))
            .await
            .map_err(Error::PatchStatus)?;
    }
    ctx.remember_reported(&uid(obj), cond);
    Ok(())
}

async fn apply<F: FrontEnd>(obj: &F, ctx: &Context) -> Result<Action> {
    let nodes = ctx.nodes.get();
    let Built { desired, warnings: build_warnings } = match obj.build(ctx, &nodes) {
        Ok(built) => built,
        Err(invalid) => {
            let fallback = last_valid(obj, ctx, &nodes);
            let mut message = invalid.to_string();
            if fallback.is_some() {
                message.push_str(
                    "; the load balancer keeps its last valid settings and follows node changes until this is fixed",
                );
            }
            let cond = Cond::not_ready(reason::INVALID_SPEC, message);
            if !condition_is(obj, ctx, &cond) {
                info!(kind = F::KIND, object = %key(obj), problems = %invalid, "invalid load balancer spec");
                ctx.event(obj, EventType::Warning, event::INVALID_SPEC, "Validate", &cond.message).await;
                write_status(ctx, obj, None, &cond, None).await?;
            }
            if let Some(rest) = obj.shared_remainder(ctx, &nodes) {
                // A member of a shared load balancer: the others go on without its part.
                if let Err(e) = ctx.ensure(&obj.lb_id(ctx), &rest, record(obj).as_ref()).await {
                    return ensure_failed(obj, ctx, e).await;
                }
            } else if let Some(desired) = fallback {
                follow_nodes_with_last_valid(obj, ctx, &desired, &nodes).await?;
            }
            // Nothing else that exists is touched; wait for the user to fix the object.
            ctx.metrics.reconcile_failed(F::KIND, ErrorReason::Invalid);
            return Ok(Action::await_change());
        }
    };
    ctx.remember_valid_annotations(&uid(obj), obj.meta().annotations.as_ref());
    let hash = desired.hash(&nodes);
    let uid = uid(obj);
    let id = obj.lb_id(ctx);
    let recorded_hash = annotation(obj, ANN_SPEC_HASH).cloned();
    let record = record(obj);

    // We wrote this exact spec a moment ago; the watch cache may not have caught up with both
    // writes yet (annotations and status are two patches), which must not cost another ensure.
    // Warnings can still change without the spec (a broken Secret whose previous certificate
    // goes on serving): compared with what this process reported, not the possibly stale object.
    // Joined, left or changed a shared load balancer: the spec may be the same, the load
    // balancer is not.
    let left_behind = obj.left_behind(ctx, &nodes, record.as_ref());
    let moved = left_behind.is_some();
    if !moved && ctx.just_written(&uid, &hash) && !ctx.watch_due(&uid) {
        let warnings: Vec<String> = build_warnings.iter().cloned().chain(ctx.provider_warnings(&desired)).collect();
        if ctx.reported(&uid).is_some_and(|c| c != ready_cond(&desired, &warnings).digest()) {
            ready_condition(obj, ctx, &desired, &build_warnings).await?;
        }
        return Ok(converged());
    }
    // The annotation holds the hash of the last *full* ensure; only its frontend part (before
    // the dot) says whether the spec changed. Node-set changes since then are targets-only.
    let mut why = if moved {
        Some("moved")
    } else if recorded_hash.as_deref().map(frontend) != Some(frontend(&hash)) {
        Some(if recorded_hash.is_none() { "new" } else { "changed" })
    } else if record.is_none() || !obj.has_address() {
        Some("incomplete")
    } else {
        None
    };
    if why.is_none() {
        let in_process = ctx.caps.state == StateLocation::InProcess;
        // What the load balancer implements as far as this process knows: what it confirmed
        // or made, else (after a restart, for a cloud that keeps its state) the annotation.
        let known = ctx.confirmed_hash(&uid).or_else(|| recorded_hash.clone().filter(|_| !in_process));
        if known.as_deref().is_some_and(|h| h != hash) {
            return targets_changed(obj, ctx, &desired, &hash, record.as_ref(), &build_warnings).await;
        }
        let confirm = ctx.confirmation_due(&uid);
        if matches!(confirm, Confirm::NotDue) && ctx.watched(&uid).is_some() {
            // Provisioning, or a target not healthy: the sweeper brings it back when due.
            if ctx.watch_due(&uid) {
                observe::look(obj, ctx, &id, record.as_ref(), &desired, &build_warnings).await?;
            }
            return Ok(converged());
        }
        match confirm {
            // First sight of an object showing a provisioning or failed load balancer, or
            // targets not all healthy (after a restart): follow it as the last process did.
            Confirm::NotDue if observe::needs_look(obj) => {
                observe::look(obj, ctx, &id, record.as_ref(), &desired, &build_warnings).await?;
                return Ok(converged());
            }
            Confirm::NotDue => {
                ready_condition(obj, ctx, &desired, &build_warnings).await?;
                return Ok(converged());
            }
            Confirm::Reensure => why = Some("restart"),
            Confirm::Check => match drift::check(obj, ctx, &id, &desired, &hash, record.as_ref()).await? {
                drift::Verdict::Implemented => {
                    ctx.confirmed(&uid, &hash);
                    ctx.backoff.succeeded(&uid);
                    // With the drift check: the state and the targets' health (`observe`).
                    observe::look(obj, ctx, &id, record.as_ref(), &desired, &build_warnings).await?;
                    return Ok(converged());
                }
                drift::Verdict::TargetsOnly => {
                    return targets_changed(obj, ctx, &desired, &hash, record.as_ref(), &build_warnings).await;
                }
                drift::Verdict::Drifted => why = Some("drift"),
            },
        }
    }
    let why = why.unwrap_or("changed");
    if let Some(wait) = ctx.backoff.gate(&uid, &hash) {
        // The same spec failed a moment ago; our own condition write woke us up early.
        return Ok(Action::requeue(wait));
    }

    // A released object (ours again before the watch delivered it without the finalizer) still
    // shows the finalizer in this stale copy; it needs it added again.
    let obj = if has_finalizer(obj) && !ctx.is_released(&uid) {
        obj.clone()
    } else {
        let added = finalizer::add(&api(ctx, obj), obj).await.map_err(Error::AddFinalizer)?;
        ctx.unmark_released(&uid);
        added
    };
    let obj = &obj;
    // No "Ensuring" event: the outcome's event (or the failure's) is the one a user needs, and
    // every event is a write the whole cluster's watchers pay for.
    debug!(kind = F::KIND, object = %key(obj), why, "ensuring load balancer");
    let mut st = match ctx.ensure(&id, &desired, record.as_ref()).await {
        Ok(st) => st,
        Err(e) => return ensure_failed(obj, ctx, e).await,
    };
    obj.annotate_record(&mut st.record);
    // Make before break: the load balancer this object used before goes only now.
    if let Some((old, rest)) = left_behind {
        let result = match &rest {
            Some(rest) => ctx.ensure(&old, rest, record.as_ref()).await.map(|_| ()),
            None => ctx.delete(F::LAYER, &old, record.as_ref()).await,
        };
        if let Err(e) = result {
            return ensure_failed(obj, ctx, e).await;
        }
        info!(kind = F::KIND, object = %key(obj), from = %old, to = %id, "moved to another load balancer");
    }
    let written = save_record(ctx, obj, &st, &hash).await?;
    let obj = written.as_ref().unwrap_or(obj);
    let warnings: Vec<String> = build_warnings.iter().cloned().chain(ctx.provider_warnings(&desired)).collect();
    // Still provisioning: the address is published now, readiness once the cloud says so.
    let cond = match st.provisioning {
        Some(_) => Cond::not_ready(reason::PROVISIONING, observe::PROVISIONING_MESSAGE),
        None => ready_cond(&desired, &warnings),
    };
    let health = st.targets.as_ref().map(|t| HealthCond::of(t, desired.local_traffic()));
    write_status(ctx, obj, Some((&st, &desired)), &cond, health.as_ref()).await?;
    observe::schedule(ctx, &uid, st.provisioning, health.as_ref());
    if let Some(h) = &health {
        observe::report_health(obj, ctx, h).await;
    }
    // Only now is everything written: a failed write above retries the whole pass.
    ctx.confirmed(&uid, &hash);
    ctx.backoff.succeeded(&uid);
    if desired.targets().is_empty() {
        let note = "There are no available nodes for LoadBalancer";
        ctx.event(obj, EventType::Warning, event::UNAVAILABLE, "Ensure", note).await;
    }
    if !warnings.is_empty() {
        ctx.event(obj, EventType::Warning, event::WARNING, "Ensure", &warnings.join("; ")).await;
    }
    ctx.event(obj, EventType::Normal, event::ENSURED, "Ensure", "Ensured load balancer").await;
    info!(
        kind = F::KIND,
        object = %key(obj),
        why,
        address = ?st.ingress,
        targets = desired.targets().len(),
        "load balancer ensured"
    );
    Ok(converged())
}

/// Only the node set changed since the load balancer last implemented this spec: the provider
/// converges the targets alone, and nothing is written to the object unless what a user sees
/// changes (the address, or the condition going to or from `NoEligibleNodes`). One event.
async fn targets_changed<F: FrontEnd>(
    obj: &F,
    ctx: &Context,
    desired: &Desired,
    hash: &str,
    record: Option<&Record>,
    build_warnings: &[String],
) -> Result<Action> {
    let uid = uid(obj);
    if let Some(wait) = ctx.backoff.gate(&uid, hash) {
        return Ok(Action::requeue(wait));
    }
    if let Err(e) = ctx.update_targets(&obj.lb_id(ctx), desired, record).await {
        return ensure_failed(obj, ctx, e).await;
    }
    let warnings: Vec<String> = build_warnings.iter().cloned().chain(ctx.provider_warnings(desired)).collect();
    let cond = ready_cond(desired, &warnings);
    if !condition_is(obj, ctx, &cond) && !warnings.is_empty() {
        ctx.event(obj, EventType::Warning, event::WARNING, "Update", &warnings.join("; ")).await;
    }
    if !ctx.holds_ready(&uid) {
        write_status(ctx, obj, None, &cond, None).await?;
    }
    ctx.confirmed(&uid, hash);
    ctx.backoff.succeeded(&uid);
    let targets = desired.targets().len();
    if targets == 0 {
        let note = "There are no available nodes for LoadBalancer";
        ctx.event(obj, EventType::Warning, event::UNAVAILABLE, "Update", note).await;
    } else {
        let note = format!("Updated load balancer with new hosts ({targets} targets)");
        ctx.event(obj, EventType::Normal, event::UPDATED, "Update", &note).await;
    }
    debug!(kind = F::KIND, object = %key(obj), targets, "load balancer targets updated");
    Ok(converged())
}

/// The spec `obj` would have with the annotations of its last valid spec (this process's
/// memory), when it has a load balancer: a typo in an annotation must not freeze a working load
/// balancer on the nodes it had. `None` when the problem is elsewhere (the spec itself), or
/// nothing valid was seen since start.
fn last_valid<F: FrontEnd>(obj: &F, ctx: &Context, nodes: &NodeSnapshot) -> Option<Desired> {
    if !has_finalizer(obj) || record(obj).is_none() {
        return None;
    }
    let mut annotations = ctx.valid_annotations(&uid(obj))?;
    for k in OURS {
        if let Some(v) = annotation(obj, k) {
            annotations.insert(k.to_string(), v.clone());
        }
    }
    let mut fallback = obj.clone();
    fallback.meta_mut().annotations = Some(annotations);
    fallback.build(ctx, nodes).ok().map(|b| b.desired)
}

/// Converges the targets of an object whose spec is invalid with its last valid spec, when
/// that spec is what the load balancer implements (same frontend) and only the nodes moved.
/// No status write: the condition says what is wrong.
async fn follow_nodes_with_last_valid<F: FrontEnd>(
    obj: &F,
    ctx: &Context,
    desired: &Desired,
    nodes: &NodeSnapshot,
) -> Result<()> {
    let uid = uid(obj);
    let hash = desired.hash(nodes);
    let Some(known) = ctx.confirmed_hash(&uid) else { return Ok(()) };
    if known == hash || frontend(&known) != frontend(&hash) {
        return Ok(());
    }
    if ctx.backoff.gate(&uid, &hash).is_some() {
        return Ok(());
    }
    if let Err(e) = ctx.update_targets(&obj.lb_id(ctx), desired, record(obj).as_ref()).await {
        let note = format!("Error updating load balancer targets: {e}");
        ctx.event(obj, EventType::Warning, event::SYNC_FAILED, "Update", &note).await;
        return Err(Error::Ensure(e));
    }
    ctx.confirmed(&uid, &hash);
    ctx.backoff.succeeded(&uid);
    let note = format!(
        "Updated load balancer with new hosts ({} targets), keeping its last valid settings",
        desired.targets().len()
    );
    ctx.event(obj, EventType::Normal, event::UPDATED, "Update", &note).await;
    Ok(())
}

/// A converged object waits for a change: its drift check comes from the sweeper
/// (`sweep`), not from a timer per object in the controller's queue (ten thousand timers held
/// a fifth of the controller's memory, and their checks queued in front of users' edits).
fn converged() -> Action {
    Action::await_change()
}

/// The part of a spec hash before the dot: everything but the targets.
pub(super) fn frontend(hash: &str) -> &str {
    hash.split_once('.').map_or(hash, |(f, _)| f)
}

/// The condition after a successful pass; warnings (parts built without, such as nodes the
/// provider cannot register or an Ingress path that was skipped) are part of the message.
/// No counts in it: a message that changes with every node would be a status write per load
/// balancer per node change.
pub(super) fn ready_cond(desired: &Desired, warnings: &[String]) -> Cond {
    let mut cond = if desired.targets().is_empty() {
        Cond::not_ready(
            reason::NO_ELIGIBLE_NODES,
            "the load balancer has an address but no eligible node to send traffic to",
        )
    } else {
        Cond::ready("the load balancer is ready")
    };
    if !warnings.is_empty() {
        cond.message = format!("{}; {}", cond.message, warnings.join("; "));
    }
    cond
}

/// Makes sure the condition says ready when nothing needed doing (e.g. after an error cleared),
/// and reports warnings that changed without the spec changing (a broken Secret whose previous
/// certificate goes on serving) as an event: for an Ingress that is the only place they show.
/// Not while the cloud is still provisioning: `observe` says ready once it has finished.
pub(super) async fn ready_condition<F: FrontEnd>(
    obj: &F,
    ctx: &Context,
    desired: &Desired,
    warnings: &[String],
) -> Result<()> {
    if ctx.holds_ready(&uid(obj)) {
        return Ok(());
    }
    let warnings: Vec<String> = warnings.iter().cloned().chain(ctx.provider_warnings(desired)).collect();
    let cond = ready_cond(desired, &warnings);
    if condition_is(obj, ctx, &cond) {
        return Ok(());
    }
    if !warnings.is_empty() {
        ctx.event(obj, EventType::Warning, event::WARNING, "Sync", &warnings.join("; ")).await;
    }
    write_status(ctx, obj, None, &cond, None).await
}

/// Writes the record and hash annotations when they differ; returns the object as written (its
/// new `resourceVersion` is what the status write that follows is conditional on).
async fn save_record<F: FrontEnd>(ctx: &Context, obj: &F, st: &LoadBalancerStatus, hash: &str) -> Result<Option<F>> {
    let record = st.record.to_json();
    let class = obj.requested_class();
    // A hash that differs in its targets part only is not rewritten: targets changes never
    // cost a write to the object (see `targets_changed`).
    if annotation(obj, ANN_RECORD) == Some(&record)
        && annotation(obj, ANN_SPEC_HASH).map(|h| frontend(h)) == Some(frontend(hash))
        && annotation(obj, ANN_CLAIMED_CLASS) == Some(&class)
    {
        return Ok(None);
    }
    let patch =
        json!({"metadata": {"annotations": {ANN_RECORD: record, ANN_SPEC_HASH: hash, ANN_CLAIMED_CLASS: class}}});
    let written = api(ctx, obj)
        .patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(Error::PatchAnnotations)?;
    Ok(Some(written))
}

async fn ensure_failed<F: FrontEnd>(obj: &F, ctx: &Context, e: ProviderError) -> Result<Action> {
    match e.class() {
        ErrorClass::Provisioning => {
            let after = e.retry_after().unwrap_or(Duration::from_secs(10));
            write_status(ctx, obj, None, &Cond::not_ready(reason::PROVISIONING, e.to_string()), None).await?;
            Ok(Action::requeue(after))
        }
        ErrorClass::Retryable | ErrorClass::Throttled => {
            let note = format!("Error syncing load balancer: {e}");
            ctx.event(obj, EventType::Warning, event::SYNC_FAILED, "Ensure", &note).await;
            write_status(ctx, obj, None, &Cond::not_ready(reason::PROVIDER_ERROR, e.to_string()), None).await?;
            Err(Error::Ensure(e))
        }
        ErrorClass::Permanent => {
            ctx.failed_for_good(&uid(obj), matches!(e, ProviderError::Failed { .. }));
            let cond = Cond::not_ready(e.reason(), e.to_string());
            if !condition_is(obj, ctx, &cond) {
                let note = format!("Error syncing load balancer: {e}");
                ctx.event(obj, EventType::Warning, event::SYNC_FAILED, "Ensure", &note).await;
                write_status(ctx, obj, None, &cond, None).await?;
            }
            ctx.metrics.reconcile_failed(F::KIND, provider_reason(&e));
            // Retrying will not help until something changes; look again after a resync period
            // in case what blocks it (a conflicting resource, a quota) went away.
            Ok(Action::requeue(ctx.config.resync_period))
        }
    }
}

/// What a pass over `obj` attempts, for the backoff gate: "delete", or the spec hash.
fn attempt_of<F: FrontEnd>(obj: &F, ctx: &Context) -> String {
    if !obj.claimed(ctx) || obj.meta().deletion_timestamp.is_some() {
        return DELETE_ATTEMPT.into();
    }
    let nodes = ctx.nodes.get();
    match obj.build(ctx, &nodes) {
        Ok(built) => built.desired.hash(&nodes),
        Err(_) => "invalid".into(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Service;
    use serde_json::json;

    use super::guarded;

    #[test]
    fn a_patch_that_replaces_the_conditions_is_conditional_on_the_version_read() {
        let mut svc = Service::default();
        svc.metadata.resource_version = Some("42".into());
        let conditions = json!({"status": {"conditions": [{"type": "cloudlb.io/LoadBalancerReady"}]}});
        assert_eq!(guarded(&svc, conditions)["metadata"]["resourceVersion"], "42");
        let cleared = json!({"status": {"loadBalancer": {"ingress": null}, "conditions": null}});
        assert_eq!(guarded(&svc, cleared)["metadata"]["resourceVersion"], "42", "removing the list replaces it too");
        let address = json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}});
        assert!(guarded(&svc, address)["metadata"].is_null(), "our own fields need no precondition");
    }
}
