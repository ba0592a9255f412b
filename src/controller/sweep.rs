//! Node-set changes and drift checks, outside the controllers' work queues.
//!
//! A node change concerns every load balancer, and every load balancer is checked against the
//! cloud once per resync period. Queued into kube-runtime's controller like any other trigger,
//! ten thousand of them would sit in front of a user's fresh edit, which would then wait for the
//! whole backlog; kept as a requeue timer per object, they held a fifth of the controller's
//! memory. So both are swept here instead: one pass over the cache per node change (a change
//! during a pass starts another when it ends), and a pass over the objects whose drift check is
//! due every [`drift_tick`], `--concurrency` at a time, each object through the same
//! [`reconcile`](super::reconcile::reconcile) the controller runs, while the controller's queue
//! stays free for edits. Node changes go first when both are pending. Load balancers watched
//! more closely (`observe`: the cloud still provisioning, a target failing its health checks)
//! are looked at on the same tick when their watch is due; the tick is then at most
//! [`watch_tick`].
//!
//! The two never work on one object at once (reconcile holds a per-object lock), and a pass
//! that fails is handed to the controller (`retry`), whose error policy backs it off as usual.
//! Objects without our finalizer are skipped: neither a node change nor time can make them ours.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tracing::debug;

use super::Context;
use super::cached::Cached;
use super::context::uid;
use super::reconcile::{self, has_finalizer};

/// How often the sweeper looks for due drift checks and watches: [`drift_tick`], or half the
/// health recheck interval when that is shorter (a watch is then at most half an interval late).
pub fn watch_tick(resync_period: Duration, health_recheck: Duration) -> Duration {
    drift_tick(resync_period).min((health_recheck / 2).max(Duration::from_secs(1)))
}

/// How often the sweeper looks for due drift checks: a tenth of the resync period (so a check
/// is at most 10% late), between 1 s and 1 min.
pub fn drift_tick(resync_period: Duration) -> Duration {
    (resync_period / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Runs until the node tracker goes away. `retry` takes the objects whose pass failed.
pub async fn run<C: Cached>(
    mut nodes: watch::Receiver<u64>,
    store: Store<C>,
    ctx: Arc<Context>,
    retry: mpsc::UnboundedSender<ObjectRef<C>>,
) {
    let mut drift = tokio::time::interval(watch_tick(ctx.config.resync_period, ctx.config.health_recheck));
    drift.set_missed_tick_behavior(MissedTickBehavior::Delay);
    drift.tick().await;
    loop {
        let node_change = tokio::select! {
            biased;
            changed = nodes.changed() => match changed {
                Ok(()) => true,
                Err(_) => return,
            },
            _ = drift.tick() => false,
        };
        let objects: Vec<Arc<C>> = store
            .state()
            .into_iter()
            .filter(|o| has_finalizer(o.as_ref()))
            .filter(|o| {
                let uid = uid(o.as_ref());
                node_change || ctx.drift_check_due(&uid) || ctx.watch_due(&uid)
            })
            .collect();
        if objects.is_empty() {
            continue;
        }
        let why = if node_change { "node set changed" } else { "drift checks due" };
        debug!(kind = %C::kind(&()), objects = objects.len(), "{why}; sweeping");
        futures::stream::iter(objects)
            .for_each_concurrent(usize::from(ctx.config.concurrency), |obj| {
                let (ctx, retry) = (ctx.clone(), retry.clone());
                async move {
                    let key = ObjectRef::from_obj(obj.as_ref());
                    let Some(obj) = C::full(&obj) else { return };
                    if let Err(e) = reconcile::reconcile(obj.clone(), ctx.clone()).await {
                        // Records the backoff; the controller's pass then waits it out.
                        let _ = reconcile::error_policy(obj, &e, ctx);
                        let _ = retry.send(key);
                    }
                }
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_tick_is_the_drift_tick_or_half_the_recheck() {
        assert_eq!(watch_tick(Duration::from_secs(600), Duration::from_secs(30)), Duration::from_secs(15));
        assert_eq!(watch_tick(Duration::from_secs(20), Duration::from_secs(30)), Duration::from_secs(2));
        assert_eq!(watch_tick(Duration::from_secs(600), Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn drift_tick_is_a_tenth_of_the_period_within_bounds() {
        assert_eq!(drift_tick(Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(drift_tick(Duration::from_secs(100)), Duration::from_secs(10));
        assert_eq!(drift_tick(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(drift_tick(Duration::from_secs(2)), Duration::from_secs(1));
    }
}
