//! Between ensures: what the cloud says about a load balancer it is still provisioning, and
//! whether its targets pass the cloud's health checks (`Provider::observe`).
//!
//! ```text
//!   ensure ─▶ provisioning? ─yes─▶ address published, Ready=False/Provisioning, watched:
//!      │                            observe (aws: one DescribeLoadBalancers) when due
//!      │                              active ─▶ Ready (+ health)   failed ─▶ LoadBalancerFailed
//!      └──▶ targets' health ─▶ cloudlb.io/TargetsHealthy (+ an event when the verdict changes)
//!             all healthy ──▶ looked at again with the drift check (--resync-period)
//!             otherwise ────▶ watched: looked at again every --target-health-recheck
//! ```
//!
//! Why: a load balancer the cloud is still making has an address a user can already put in DNS
//! (publishing it at once is what the cloud-controller-manager does), and waiting for it must not
//! cost a whole ensure every few seconds. `Ready` stays about the load balancer existing and
//! implementing the spec; `TargetsHealthy` says whether it can serve, with the cloud's reasons.
//! Its message carries counts only when something is wrong, so nodes joining a healthy load
//! balancer change nothing a user sees (and cost no status write: see `cloudlb_provider::observed`).
//!
//! Watched objects are looked at by the sweeper (`sweep`), outside the controllers' queues, so a
//! user's edit never waits behind them. Providers that cannot tell (memory, local) answer `None`:
//! nothing is watched, no condition is written.

use std::time::{Duration, Instant};

use super::EventType;
use cloudlb_provider::{HealthVerdict, LbState, LoadBalancerId, Record};
use tracing::{info, warn};

use super::context::{Context, uid};
use super::frontend::{Desired, FrontEnd};
use super::reconcile::{ready_cond, write_status};
use super::status::{Cond, HealthCond};
use crate::error::{Error, Result};
use crate::keys::{event, reason};

/// The condition while the cloud provisions: the address is there, it may not answer yet.
pub const PROVISIONING_MESSAGE: &str =
    "the cloud is still provisioning the load balancer; its address is published and answers once provisioning ends";

/// Longest wait between looks at a load balancer the cloud is still provisioning (aws takes a
/// few minutes; the provider's first delay comes with the ensure's status).
const PROVISIONING_RECHECK: Duration = Duration::from_secs(10);

/// An object whose load balancer is looked at before its next drift check.
#[derive(Clone, Copy, Debug)]
pub struct Watch {
    pub due: Instant,
    /// Still provisioning, or failed: `Ready` must not be written from the spec (as ready) before
    /// the cloud says the load balancer is active.
    pub holds_ready: bool,
}

/// After an ensure or a look: watch `uid` again when the cloud is provisioning (after the
/// provider's delay) or a target is not healthy (after `--target-health-recheck`); else stop.
/// No targets is not watched: only a node change fixes that, and it brings its own pass.
pub fn schedule(ctx: &Context, uid: &str, provisioning: Option<Duration>, health: Option<&HealthCond>) {
    let after = match (provisioning, health) {
        (Some(after), _) => Some((after, true)),
        (None, Some(h)) if !h.all_healthy() && h.reason != HealthVerdict::NoTargets.reason() => {
            Some((ctx.config.health_recheck, false))
        }
        _ => None,
    };
    match after {
        Some((after, holds_ready)) => ctx.watch(uid, Watch { due: Instant::now() + after, holds_ready }),
        None => ctx.unwatch(uid),
    }
}

/// Whether an object this process has not watched yet shows something `look` must follow (after
/// a restart or a change of leader): the cloud still provisioning or failed, or targets that are
/// not all healthy.
pub fn needs_look<F: FrontEnd>(obj: &F) -> bool {
    let held = obj
        .condition()
        .is_some_and(|c| !c.ready && (c.reason == reason::PROVISIONING || c.reason == reason::LOAD_BALANCER_FAILED));
    let unhealthy = obj.health_condition().is_some_and(|h| !h.all_healthy());
    held || unhealthy
}

/// Reports a health verdict that changed since the last one shown (the object's own condition,
/// else what this process reported): an event, Normal when all is well. Not for pending first
/// checks, nor for their turning out healthy.
pub async fn report_health<F: FrontEnd>(obj: &F, ctx: &Context, health: &HealthCond) {
    let uid = uid(obj);
    let previous = match obj.health_condition() {
        Some(c) => Some((c.status, c.reason)),
        None => ctx.health_reported(&uid),
    };
    ctx.remember_health(&uid, health);
    if previous.as_ref().is_some_and(|(s, r)| *s == health.status && *r == health.reason) {
        return;
    }
    // First checks still running says nothing yet; a new load balancer whose targets turn out
    // healthy needs no event beyond `EnsuredLoadBalancer` (every event is a write).
    let was_unknown = previous.as_ref().is_none_or(|(s, _)| s.is_none());
    if health.status.is_none() || (was_unknown && health.all_healthy()) {
        return;
    }
    let (type_, event_reason) = if health.status == Some(false) || !health.all_healthy() {
        (EventType::Warning, event::TARGETS_UNHEALTHY)
    } else {
        (EventType::Normal, event::TARGETS_HEALTHY)
    };
    info!(kind = F::KIND, object = %super::context::key(obj), reason = %health.reason, "targets' health changed");
    ctx.event(obj, type_, event_reason, "Observe", &format!("{}: {}", health.reason, health.message)).await;
}

/// Looks at a watched (or drift-checked) load balancer: publishes readiness once the cloud has
/// finished, reports a failed one, follows its targets' health. A provider that cannot tell
/// leaves the object as it is (`Ready` from the spec).
pub async fn look<F: FrontEnd>(
    obj: &F,
    ctx: &Context,
    id: &LoadBalancerId,
    record: Option<&Record>,
    desired: &Desired,
    warnings: &[String],
) -> Result<()> {
    let uid = uid(obj);
    let was_held = ctx.watched(&uid).is_some_and(|w| w.holds_ready) || needs_look(obj);
    let local = desired.local_traffic();
    let observed = match ctx.provider.observe(id, record).await {
        Ok(o) => o,
        Err(e) if was_held => return Err(Error::Get(e)),
        Err(e) => {
            // Health is a report, not a repair: a failed read keeps the last verdict, and a
            // watched object is looked at again.
            warn!(kind = F::KIND, object = %super::context::key(obj), error = %e, "reading target health failed");
            if ctx.watched(&uid).is_some() {
                ctx.watch(&uid, Watch { due: Instant::now() + ctx.config.health_recheck, holds_ready: false });
            }
            return Ok(());
        }
    };
    let Some(observed) = observed else {
        let watched = ctx.watched(&uid).is_some();
        ctx.unwatch(&uid);
        if watched || was_held {
            // Gone (or not ours any more) while watched: the drift check repairs it, due now.
            ctx.expire_confirmation(&uid);
        } else {
            super::reconcile::ready_condition(obj, ctx, desired, warnings).await?;
        }
        return Ok(());
    };
    match observed.state {
        LbState::Provisioning => {
            schedule(ctx, &uid, Some(ctx.config.health_recheck.min(PROVISIONING_RECHECK)), None);
            Ok(())
        }
        LbState::Failed { message } => {
            // Held (no `Ready` from the spec) and looked at again with the drift check's period:
            // only the user (the replace annotation, or deleting it) moves it on.
            ctx.watch(&uid, Watch { due: Instant::now() + ctx.config.resync_period, holds_ready: true });
            let cond = Cond::not_ready(reason::LOAD_BALANCER_FAILED, message.clone());
            if !super::reconcile::condition_is(obj, ctx, &cond) {
                ctx.event(obj, EventType::Warning, event::FAILED, "Observe", &message).await;
                write_status(ctx, obj, None, &cond, None).await?;
            }
            Ok(())
        }
        LbState::Active => {
            let health = observed.targets.as_ref().map(|t| HealthCond::of(t, local));
            let all_warnings: Vec<String> = warnings.iter().cloned().chain(ctx.provider_warnings(desired)).collect();
            let cond = ready_cond(desired, &all_warnings);
            write_status(ctx, obj, None, &cond, health.as_ref()).await?;
            if was_held {
                let note = "The cloud finished provisioning the load balancer";
                ctx.event(obj, EventType::Normal, event::PROVISIONED, "Observe", note).await;
            }
            if let Some(h) = &health {
                report_health(obj, ctx, h).await;
            }
            schedule(ctx, &uid, None, health.as_ref());
            Ok(())
        }
    }
}
