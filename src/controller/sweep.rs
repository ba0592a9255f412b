//! Node-set changes, outside the controllers' work queues.
//!
//! A node change concerns every load balancer. Queued into kube-runtime's controller like any
//! other trigger, ten thousand of them would sit in front of a user's fresh edit, which would
//! then wait for the whole backlog. So node changes are swept here instead: one pass over the
//! cache per change (a change during a pass starts another when it ends), `--concurrency` at a
//! time, each object through the same [`reconcile`](super::reconcile::reconcile) the
//! controller runs, while the controller's queue stays free for edits.
//!
//! The two never work on one object at once (reconcile holds a per-object lock), and a pass
//! that fails is handed to the controller (`retry`), whose error policy backs it off as usual.
//! Objects without our finalizer are skipped: a node change cannot make them ours.

use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::{mpsc, watch};
use tracing::debug;

use super::Context;
use super::frontend::FrontEnd;
use super::reconcile::{self, has_finalizer};

/// Runs until the node tracker goes away. `retry` takes the objects whose pass failed.
pub async fn run<F: FrontEnd>(
    mut changes: watch::Receiver<u64>,
    store: Store<F>,
    ctx: Arc<Context>,
    retry: mpsc::UnboundedSender<ObjectRef<F>>,
) {
    while changes.changed().await.is_ok() {
        let objects: Vec<Arc<F>> = store.state().into_iter().filter(|o| has_finalizer(o.as_ref())).collect();
        debug!(kind = F::KIND, objects = objects.len(), "node set changed; sweeping");
        futures::stream::iter(objects)
            .for_each_concurrent(usize::from(ctx.config.concurrency), |obj| {
                let (ctx, retry) = (ctx.clone(), retry.clone());
                async move {
                    let key = ObjectRef::from_obj(obj.as_ref());
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
