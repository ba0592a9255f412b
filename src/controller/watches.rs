//! Watches that fill a cache and tell their consumers what changed.
//!
//! kube-runtime's `Controller` drives the watch of its own kind, but a cache that several
//! consumers read (every Service: the Service controller's objects, and the Ingress builder's
//! backends), or that must be complete *before* a controller starts (IngressClasses and TLS
//! Secrets: an Ingress built from a half-filled cache would look like it routes to nothing),
//! needs a task of its own. [`spawn_cache`] is that task: it applies each event to the cache,
//! then hands it to a callback that forwards what matters (synchronously, through unbounded
//! channels of small references; the objects themselves stay in the cache).
//!
//! A cache keeps only what its readers need: `trim` cuts each object down, and `keep` leaves
//! out whole objects no reader will ever look up (most of a cluster's Services are ClusterIP
//! Services nobody here reads). An object that stops being kept is removed from the cache as if
//! it had been deleted, and its consumers see it as a deletion.

use std::fmt::Debug;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::warn;

use crate::liveness::WatchAlive;

/// One change of a watched object, after it was applied to the cache.
pub enum Change<'a, K> {
    /// Created or updated. `initial` is true for the objects of a (re-)list: those are *not*
    /// in the cache yet (the reflector swaps the whole list in at its end, see `Listed`).
    Applied {
        obj: &'a K,
        initial: bool,
    },
    Deleted(&'a K),
    /// A (re-)list is complete and the cache now holds exactly its objects. `first` is false
    /// after a watch gap, when anything may have changed unseen.
    Listed {
        first: bool,
    },
}

/// Starts watching `api` into a cache of the objects `keep` accepts, each cut down by `trim`;
/// `notify` sees every change, with the cache (already holding it) to read from. The task ends with the watch (never, unless the client is dropped)
/// or when aborted.
pub fn spawn_cache<K, N>(
    api: Api<K>,
    config: watcher::Config,
    alive: WatchAlive,
    trim: fn(&mut K),
    keep: fn(&K) -> bool,
    mut notify: N,
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    N: FnMut(Change<'_, K>, &Store<K>) + Send + 'static,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let reader = store.clone();
    let task = tokio::spawn(async move {
        // Dropped when this task ends for any reason: /healthz then fails (see `liveness`).
        let _alive = alive;
        let mut first = true;
        let kept = watcher(api, config).modify(trim).filter_map(move |event| {
            futures::future::ready(match event {
                Ok(watcher::Event::InitApply(obj)) if !keep(&obj) => None,
                Ok(watcher::Event::Apply(obj)) if !keep(&obj) => Some(Ok(watcher::Event::Delete(obj))),
                other => Some(other),
            })
        });
        let mut events = reflector::reflector(writer, kept.default_backoff()).boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::Apply(obj)) => notify(Change::Applied { obj: &obj, initial: false }, &reader),
                Ok(watcher::Event::InitApply(obj)) => notify(Change::Applied { obj: &obj, initial: true }, &reader),
                Ok(watcher::Event::Delete(obj)) => notify(Change::Deleted(&obj), &reader),
                Ok(watcher::Event::InitDone) => {
                    notify(Change::Listed { first }, &reader);
                    first = false;
                }
                Ok(watcher::Event::Init) => {}
                Err(e) => warn!(kind = %kind, error = %e, "watch failed; retrying"),
            }
        }
    });
    (store, task)
}

/// The items sent on `rx`, as a stream (ends when every sender is gone).
pub fn receiver_stream<T: Send + 'static>(rx: mpsc::UnboundedReceiver<T>) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// Aborts a task when dropped (the watch tasks end with the controller).
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
