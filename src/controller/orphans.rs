//! Load balancers whose object went away without our cleanup pass.
//!
//! Our finalizer keeps a deleted Service or Ingress until its load balancer is gone. Someone can
//! still remove the finalizer by hand (a stuck namespace, a script, `kubectl patch`): the object is
//! then deleted at once, no pass ever sees it again, and its load balancer would be left running
//! and billed. The cloud-controller-manager deletes from its informer's last copy in that case;
//! so do we: the watch's deletion carries the last copy, with the record and the claim.
//!
//! Only a copy that shows we made something (our record or spec-hash annotation) and that this
//! controller claims gets a delete, so a deleted object that never had a load balancer costs no
//! call. The pass runs under the object's lock, after any pass in flight; an object our own
//! cleanup released already is skipped. A failed delete is retried a few times with a growing
//! wait (nothing will bring the object back to retry it later); after that the log line names
//! what is left.

use std::sync::Arc;
use std::time::Duration;

use cloudlb_provider::ErrorClass;
use tracing::{error, info, warn};

use super::context::{key, uid};
use super::frontend::FrontEnd;
use super::{Context, reconcile};
use crate::keys::{ANN_RECORD, ANN_SPEC_HASH};

/// Attempts at deleting an orphan's load balancer, and the first wait between them (doubling).
const ATTEMPTS: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_secs(1);

/// Whether the last copy of a deleted object shows a load balancer of ours that our cleanup
/// did not delete.
pub fn needs_cleanup<F: FrontEnd>(ctx: &Context, gone: &F) -> bool {
    let made =
        gone.meta().annotations.as_ref().is_some_and(|a| a.contains_key(ANN_RECORD) || a.contains_key(ANN_SPEC_HASH));
    made && gone.claimed(ctx) && !ctx.is_released(&uid(gone))
}

/// Handles the watch's deletion of `gone`: deletes its load balancer when our cleanup did not,
/// then drops its per-object state.
pub async fn on_gone<F: FrontEnd>(ctx: Arc<Context>, gone: F) {
    let uid = uid(&gone);
    if needs_cleanup(&ctx, &gone) {
        let lock_key = gone.lb_id(&ctx).uid;
        let lock = ctx.object_lock(&lock_key);
        let held = lock.lock().await;
        // A pass that held the lock may have cleaned up meanwhile.
        if !ctx.is_released(&uid) {
            delete_orphan(&ctx, &gone).await;
        }
        drop(held);
        ctx.release_object_lock(&lock_key, lock);
    }
    ctx.forget(&uid);
}

async fn delete_orphan<F: FrontEnd>(ctx: &Context, gone: &F) {
    let id = gone.lb_id(ctx);
    let record = reconcile::record(gone);
    // A member of a shared load balancer: the others go on without its part.
    if let Some(rest) = gone.shared_remainder(ctx, &ctx.nodes.get()) {
        if let Err(e) = ctx.ensure(&id, &rest, record.as_ref()).await {
            warn!(kind = F::KIND, object = %key(gone), error = %e, "removing a deleted member from its shared load balancer failed; the next pass of another member does it");
        }
        return;
    }
    warn!(
        kind = F::KIND,
        object = %key(gone),
        "deleted without our cleanup (its finalizer was removed by hand); deleting its load balancer from the last copy"
    );
    let mut wait = FIRST_WAIT;
    for attempt in 1..=ATTEMPTS {
        match ctx.delete(F::LAYER, &id, record.as_ref()).await {
            Ok(()) => {
                info!(kind = F::KIND, object = %key(gone), "deleted the load balancer of a deleted object");
                return;
            }
            Err(e) if attempt < ATTEMPTS && e.class() != ErrorClass::Permanent => {
                warn!(kind = F::KIND, object = %key(gone), error = %e, attempt, "deleting an orphaned load balancer failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                error!(
                    kind = F::KIND,
                    object = %key(gone),
                    lb = %id,
                    error = %e,
                    "the load balancer of a deleted object is left behind; delete it by hand (it carries this cluster's ownership tags)"
                );
                return;
            }
        }
    }
}
