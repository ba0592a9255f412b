//! Keeps the eligible node set and tells the controller when it changes.
//!
//! Nodes change all the time (heartbeats every ~10 s per node, readiness flips); load
//! balancers depend only on the eligible set's names, providerIDs, addresses and labels. This
//! task watches Nodes, keeps a trimmed copy (no conditions, images or managed fields), recomputes
//! the eligible set after each change and sends one trigger only when the set differs. The
//! controller then re-derives every Service's spec; only Services whose targets actually changed
//! reach the provider (their spec hash differs), so a heartbeat costs nothing and a node add
//! costs one call per affected load balancer.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::desired::nodes::{EligibleNode, NodeSnapshot, eligible};
use crate::liveness::WatchAlive;
use crate::metrics::Metrics;

#[derive(Default)]
pub struct NodeSet {
    current: RwLock<Arc<NodeSnapshot>>,
}

impl NodeSet {
    pub fn get(&self) -> Arc<NodeSnapshot> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the set; returns whether it changed.
    fn set(&self, next: Vec<EligibleNode>) -> bool {
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if cur.nodes == next {
            return false;
        }
        *cur = Arc::new(NodeSnapshot::new(next));
        true
    }
}

/// Drops what load balancers never look at, to keep the cache small.
fn trim(node: &mut Node) {
    node.metadata.managed_fields = None;
    node.metadata.annotations = None;
    if let Some(status) = node.status.as_mut() {
        let addresses = status.addresses.take();
        *status = Default::default();
        status.addresses = addresses;
    }
}

pub struct NodeTracker {
    pub set: Arc<NodeSet>,
    /// Becomes true after the first complete list.
    pub ready: watch::Receiver<bool>,
    /// Counts changes of the eligible set (after the first list); every consumer clones it and
    /// sees each change (changes in quick succession may be seen as one).
    pub changes: watch::Receiver<u64>,
    /// The watch task; aborted when the controller stops.
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts watching Nodes in the background.
pub fn spawn(client: Client, metrics: Arc<Metrics>) -> NodeTracker {
    let set = Arc::new(NodeSet::default());
    let (ready_tx, ready) = watch::channel(false);
    let (change_tx, changes) = watch::channel(0u64);
    let api: Api<Node> = Api::all(client);
    let task_set = set.clone();
    let alive = WatchAlive { liveness: metrics.liveness.clone(), what: "Nodes" };
    let task = tokio::spawn(async move {
        // Dropped when this task ends for any reason: /healthz then fails (see `liveness`).
        let _alive = alive;
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut init: BTreeMap<String, Node> = BTreeMap::new();
        let mut stream = watcher(api, watcher::Config::default()).modify(trim).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            let recompute = match event {
                Ok(watcher::Event::Apply(n)) => {
                    nodes.insert(n.metadata.name.clone().unwrap_or_default(), n);
                    true
                }
                Ok(watcher::Event::Delete(n)) => {
                    nodes.remove(n.metadata.name.as_deref().unwrap_or_default());
                    true
                }
                Ok(watcher::Event::Init) => {
                    init.clear();
                    false
                }
                Ok(watcher::Event::InitApply(n)) => {
                    init.insert(n.metadata.name.clone().unwrap_or_default(), n);
                    false
                }
                Ok(watcher::Event::InitDone) => {
                    nodes = std::mem::take(&mut init);
                    true
                }
                Err(e) => {
                    warn!(error = %e, "node watch failed; retrying");
                    false
                }
            };
            if !recompute {
                continue;
            }
            let next = eligible(nodes.values());
            metrics.eligible_nodes.set(next.len() as i64);
            let changed = task_set.set(next);
            if !*ready_tx.borrow() {
                info!(nodes = nodes.len(), eligible = task_set.get().nodes.len(), "node list complete");
                let _ = ready_tx.send(true);
            } else if changed {
                info!(eligible = task_set.get().nodes.len(), "eligible node set changed");
                metrics.node_set_changes.inc();
                change_tx.send_modify(|n| *n += 1);
            }
        }
    });
    NodeTracker { set, ready, changes, task }
}

/// The change notifications as a stream for `Controller::reconcile_all_on`.
pub fn changes_stream(rx: watch::Receiver<u64>) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.changed().await.ok().map(|()| ((), rx)) })
}
