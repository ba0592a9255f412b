//! Rebuilding in-process load balancers at start.
//!
//! A provider whose state lives in this process (`StateLocation::InProcess`: local, memory
//! without a state file) lost every load balancer with the previous process. Before the
//! controller reports ready, each claimed object with a record gets its load balancer back, on
//! its recorded address, so that no `EXTERNAL-IP` changes across a restart and the first
//! reconcile finds nothing to do.

use futures::StreamExt;
use tracing::warn;

use super::Context;
use super::context::{key, uid};
use super::frontend::FrontEnd;
use super::reconcile::{annotation, frontend, has_finalizer, record};
use crate::keys::ANN_SPEC_HASH;

/// Rebuilds, before the controller reports ready, every load balancer of `objects` for a provider
/// whose state lives in this process (it was lost with the previous process): each claimed object
/// with a record gets `ensure` with its recorded address. Objects whose recorded spec hash matches
/// are marked confirmed, so the reconcile that follows makes no second call; the others (changed
/// while we were down, or failing here) are left to the normal reconcile.
///
/// What was is rebuilt before what is asked for: a restore ignores `loadBalancerIP` (the recorded
/// address is what the object had), and objects whose status shows an address go first, all of
/// them before any other. Otherwise a Service that lost a race for an address (it asks for
/// another's, is in Conflict and keeps its own) could, restored first, take the winner's address;
/// and a copy of a Service made with its annotations (so with the original's record) could take
/// the original's. The normal reconcile then moves an object to its requested address if it is
/// free, or reports the Conflict again while the object keeps the address it had.
pub async fn restore<F: FrontEnd>(ctx: &Context, objects: Vec<F>) -> usize {
    let (shown, rest): (Vec<F>, Vec<F>) = objects
        .into_iter()
        .filter(|o| o.claimed(ctx) && o.meta().deletion_timestamp.is_none())
        .filter(|o| has_finalizer(o) && record(o).is_some())
        .partition(|o| o.has_address());
    restore_all(ctx, shown).await + restore_all(ctx, rest).await
}

async fn restore_all<F: FrontEnd>(ctx: &Context, todo: Vec<F>) -> usize {
    let nodes = ctx.nodes.get();
    let mut results = futures::stream::iter(todo)
        .map(|obj| {
            let nodes = nodes.clone();
            async move {
                let Ok(built) = obj.build(ctx, &nodes) else {
                    return false;
                };
                let hash = built.desired.hash(&nodes);
                let recorded = record(&obj);
                let id = obj.lb_id(ctx);
                // Members of a shared load balancer are restored one at a time.
                let lock = ctx.object_lock(&id.uid);
                let held = lock.lock().await;
                let result = ctx.ensure(&id, &built.desired.as_recorded(), recorded.as_ref()).await;
                drop(held);
                ctx.release_object_lock(&id.uid, lock);
                match result {
                    Ok(mut st) => {
                        obj.annotate_record(&mut st.record);
                        // Targets that changed while the controller was down are built in
                        // already; only a frontend change leaves work for reconcile.
                        let unchanged = annotation(&obj, ANN_SPEC_HASH).map(|h| frontend(h)) == Some(frontend(&hash))
                            && Some(&st.record) == recorded.as_ref();
                        if unchanged {
                            ctx.confirmed(&uid(&obj), &hash);
                        }
                        unchanged
                    }
                    Err(e) => {
                        warn!(kind = F::KIND, object = %key(&obj), error = %e, "restoring load balancer failed; reconcile will retry");
                        false
                    }
                }
            }
        })
        .buffer_unordered(usize::from(ctx.config.concurrency));
    let mut restored = 0usize;
    while let Some(ok) = results.next().await {
        restored += usize::from(ok);
    }
    restored
}
