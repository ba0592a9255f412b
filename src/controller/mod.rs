//! The controllers: one reconcile ([`reconcile`]) over two front ends ([`service`], [`ingress`]),
//! sharing the node tracker, the Service cache, backoff, events, metrics and leadership.
//!
//! ```text
//!  Node watch ────▶ NodeSet (eligible, trimmed) ──change──▶ sweep (outside the queues) ──┐
//!  Service watch ─▶ Service cache ──▶ Service controller (queue: edits, retries)          │
//!                        └──(changed Service)──▶ Ingresses routing to it ──┐              │
//!  TLS Secret watch ─▶ Secret cache ──(changed)──▶ Ingresses using it ─────┤              │
//!  IngressClass watch ─▶ class cache ──(changed)──▶ every Ingress ─────────┤              │
//!  Ingress watch ─────────────────────────────────▶ Ingress controller ◀───┘              │
//!                                                        │                                │
//!   all: reconcile::<F>() (one pass per object at a time) ◀───────────────────────────────┘
//!          ──▶ provider (instrumented; ensure/update_targets/delete/get, L4 or L7)
//!          └─▶ object annotations / status / events
//! ```
//!
//! Reconciling starts only after the first complete Node list (starting earlier would ensure
//! every load balancer with an empty target set), and Ingresses only once the caches they are
//! built from are complete (a half-filled cache would look like missing backends).

pub mod backoff;
pub mod cached;
mod context;
mod drift;
pub mod events;
pub mod finalizer;
pub mod frontend;
pub mod ingress;
pub mod nodes;
mod observe;
mod orphans;
pub mod reconcile;
mod restore;
pub mod service;
pub mod status;
mod sweep;
mod watches;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cloudlb_provider::{Provider, StateLocation};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::metrics::{InstrumentedProvider, Metrics};
use cached::CachedService;
pub use context::{Confirm, Confirmed, Context, ControllerConfig, IngressCaches};
pub use events::EventType;
use frontend::FrontEnd;
use watches::{AbortOnDrop, Change, receiver_stream, spawn_cache};

use crate::liveness::WatchAlive;

fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controllers until `shutdown` resolves.
pub async fn run(
    client: Client,
    provider: Arc<dyn Provider>,
    config: ControllerConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    client.apiserver_version().await.map_err(Error::ApiUnreachable)?;
    metrics.export_provider(provider.clone());
    let provider: Arc<dyn Provider> = Arc::new(InstrumentedProvider { inner: provider, metrics: metrics.clone() });
    let caps = provider.capabilities();
    metrics.liveness.set_deadline(config.reconcile_timeout);
    let tracker = nodes::spawn(client.clone(), metrics.clone());
    let _node_task = AbortOnDrop(tracker.task);
    if tracker.ready.clone().wait_for(|r| *r).await.is_err() {
        return Err(Error::NodeWatchEnded);
    }
    let watch_ingresses = config.ingress.is_some();

    // Services: one watch and one cache, read by both controllers.
    let (svc_tx, svc_rx) = mpsc::unbounded_channel::<Arc<CachedService>>();
    let (svc_changed_tx, svc_changed_rx) = mpsc::unbounded_channel::<(String, String)>();
    // A cache re-listed after a watch gap: what changed is unknown, so every Ingress is rebuilt.
    let (relisted_tx, relisted_rx) = mpsc::unbounded_channel::<()>();
    // Deleted Services: their per-object state is dropped, and a load balancer our cleanup
    // did not delete is (see `orphans`).
    let (gone_tx, mut gone_rx) = mpsc::unbounded_channel::<CachedService>();
    let svc_relisted_tx = relisted_tx.clone();
    let (services, svc_task) = spawn_cache(
        scoped::<CachedService>(&client, &config.namespace),
        watcher::Config::default(),
        WatchAlive { liveness: metrics.liveness.clone(), what: "Services" },
        // Trimmed and filtered while decoding (see `cached`).
        |_| {},
        CachedService::kept,
        // The store is handed in by the cache task itself: the first list can complete before
        // this function gets to keep the store it returns.
        move |change, store: &Store<CachedService>| match change {
            // The objects of a list reach the cache only at its end: send them all then.
            Change::Applied { initial: true, .. } => {}
            Change::Listed { first } => {
                for cached in store.state() {
                    let _ = svc_tx.send(cached);
                }
                if watch_ingresses && !first {
                    let _ = svc_relisted_tx.send(());
                }
            }
            Change::Applied { obj, initial: false } | Change::Deleted(obj) => {
                if let Change::Deleted(gone) = change {
                    let _ = gone_tx.send(gone.clone());
                }
                if let Change::Applied { .. } = change
                    && let Some(cached) = store.get(&ObjectRef::from_obj(obj))
                {
                    let _ = svc_tx.send(cached);
                }
                if watch_ingresses {
                    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
                    let _ = svc_changed_tx.send(key);
                }
            }
        },
    );
    let _svc_task = AbortOnDrop(svc_task);

    // Ingresses: classes and TLS Secrets cached before the controller starts.
    let (class_changed_tx, class_changed_rx) = mpsc::unbounded_channel::<()>();
    let secrets_relisted_tx = relisted_tx.clone();
    let (secret_changed_tx, secret_changed_rx) = mpsc::unbounded_channel::<(String, String)>();
    let mut ingress_tasks = Vec::new();
    let ingress_reflector = watch_ingresses.then(kube::runtime::reflector::store::<Ingress>);
    let ingress_caches = if let Some((ingresses, _)) = &ingress_reflector {
        let (classes, task) = spawn_cache(
            Api::<IngressClass>::all(client.clone()),
            watcher::Config::default(),
            WatchAlive { liveness: metrics.liveness.clone(), what: "IngressClasses" },
            |c: &mut IngressClass| service::trim_meta(&mut c.metadata),
            |_| true,
            move |change, _: &Store<IngressClass>| {
                if !matches!(change, Change::Applied { initial: true, .. } | Change::Listed { first: true }) {
                    let _ = class_changed_tx.send(());
                }
            },
        );
        ingress_tasks.push(AbortOnDrop(task));
        let (secrets, task) = spawn_cache(
            scoped::<Secret>(&client, &config.namespace),
            watcher::Config::default().fields(ingress::TLS_SECRET_SELECTOR),
            WatchAlive { liveness: metrics.liveness.clone(), what: "TLS Secrets" },
            ingress::trim_secret,
            |_| true,
            move |change, _: &Store<Secret>| {
                let obj = match change {
                    Change::Applied { initial: true, .. } | Change::Listed { first: true } => return,
                    Change::Listed { first: false } => {
                        let _ = secrets_relisted_tx.send(());
                        return;
                    }
                    Change::Applied { obj, .. } | Change::Deleted(obj) => obj,
                };
                let key =
                    (obj.metadata.namespace.clone().unwrap_or_default(), obj.metadata.name.clone().unwrap_or_default());
                let _ = secret_changed_tx.send(key);
            },
        );
        ingress_tasks.push(AbortOnDrop(task));
        Some(IngressCaches { ingresses: ingresses.clone(), classes, secrets, last_good: Default::default() })
    } else {
        None
    };

    let events = events::Publisher::new(client.clone(), "cloudlb", &config.instance);
    info!(
        provider = provider.name(),
        state = ?caps.state,
        class = %config.claim.class,
        manage_unclassed = config.claim.manage_unclassed,
        ingresses = watch_ingresses,
        ingress_controller = %config.claim.ingress_controller,
        concurrency = config.concurrency,
        "controller starting"
    );
    let ctx = Arc::new(Context {
        client: client.clone(),
        provider,
        caps,
        config: config.clone(),
        nodes: tracker.set.clone(),
        services: services.clone(),
        ingress: ingress_caches,
        events,
        metrics: metrics.clone(),
        backoff: Default::default(),
        checked: Default::default(),
        reported: Default::default(),
        watched: Default::default(),
        health: Default::default(),
        released: Default::default(),
        valid_annotations: Default::default(),
        locks: Default::default(),
    });
    let _forget_gone = {
        let ctx = ctx.clone();
        AbortOnDrop(tokio::spawn(async move {
            while let Some(gone) = gone_rx.recv().await {
                match gone.service() {
                    Ok(svc) => {
                        tokio::spawn(orphans::on_gone(ctx.clone(), svc));
                    }
                    Err(_) => ctx.forget(gone.meta().uid.as_deref().unwrap_or_default()),
                }
            }
        }))
    };

    // The Ingress watch is driven by its controller, but its cache must be complete before the
    // first reconcile reads a Service or Secret, and before restore: wait for all of them.
    let ingress_watch = ingress_reflector.map(|(store, writer)| {
        let stream = kube::runtime::reflector(
            writer,
            kube::runtime::WatchStreamExt::default_backoff(kube::runtime::WatchStreamExt::modify(
                watcher(scoped::<Ingress>(&client, &config.namespace), watcher::Config::default()),
                <Ingress as FrontEnd>::trim,
            )),
        );
        (store, stream)
    });
    synced(&services, "services").await?;
    if let Some(caches) = &ctx.ingress {
        synced(&caches.classes, "ingressclasses").await?;
        synced(&caches.secrets, "secrets").await?;
    }

    if ctx.caps.state == StateLocation::InProcess {
        let started = std::time::Instant::now();
        let mut restored = 0;
        if config.services {
            let list: Vec<Service> = services.state().iter().filter_map(|s| s.service().ok()).collect();
            restored += restore::restore(&ctx, list).await;
        }
        if watch_ingresses {
            match scoped::<Ingress>(&client, &config.namespace).list(&Default::default()).await {
                Ok(l) => restored += restore::restore(&ctx, l.items).await,
                Err(e) => {
                    warn!(error = %e, "listing Ingresses to restore load balancers failed; reconcile will restore them")
                }
            }
        }
        info!(restored, took = ?started.elapsed(), "restored in-process load balancers");
    }
    ctx.metrics.ready.store(true, Ordering::Relaxed);
    let _gc = config.gc.clone().map(|(every, cfg)| {
        AbortOnDrop(tokio::spawn(crate::gc::every(every, client.clone(), ctx.provider.clone(), cfg)))
    });

    let shutdown = shutdown.shared();
    let controller_config = controller::Config::default().concurrency(config.concurrency);
    // Node changes are swept outside the controllers' queues (see `sweep`); a failed sweep
    // pass comes back through the controller.
    let (svc_retry_tx, svc_retry_rx) = mpsc::unbounded_channel();
    let _svc_sweep = config.services.then(|| {
        AbortOnDrop(tokio::spawn(sweep::run::<CachedService>(
            tracker.changes.clone(),
            services.clone(),
            ctx.clone(),
            svc_retry_tx,
        )))
    });
    // Every trigger is counted into the work queue's depth as it reaches the controller (see
    // `metrics::queue`); `reconcile_cached` takes it out when its pass starts.
    let triggered = {
        let m = metrics.clone();
        receiver_stream(svc_rx).inspect(move |svc| queued::<Service, _>(&m, svc.as_ref()))
    };
    let retried = {
        let m = metrics.clone();
        receiver_stream(svc_retry_rx).inspect(move |r| queued_ref::<Service, _>(&m, r))
    };
    let service_controller = Controller::for_shared_stream(triggered, services.clone())
        .with_config(controller_config.clone())
        .reconcile_on(retried)
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile::reconcile_cached::<CachedService>, reconcile::error_policy_cached::<CachedService>, ctx.clone())
        .for_each(log_result::<Service, _, _, _>(metrics.clone()));
    let ingress_controller = ingress_watch.map(|(store, stream)| {
        let routed = {
            let store = store.clone();
            receiver_stream(svc_changed_rx)
                .flat_map(move |(ns, name)| futures::stream::iter(ingress::routing_to(&store, &ns, &name)))
        };
        let terminated = {
            let store = store.clone();
            receiver_stream(secret_changed_rx)
                .flat_map(move |(ns, name)| futures::stream::iter(ingress::using_secret(&store, &ns, &name)))
        };
        let everything = futures::stream::select(receiver_stream(class_changed_rx), receiver_stream(relisted_rx));
        let (retry_tx, retry_rx) = mpsc::unbounded_channel();
        let sweeper = AbortOnDrop(tokio::spawn(sweep::run::<Ingress>(
            tracker.changes.clone(),
            store.clone(),
            ctx.clone(),
            retry_tx,
        )));
        let gone_ctx = ctx.clone();
        let stream = stream.inspect(move |event| {
            if let Ok(watcher::Event::Delete(gone)) = event {
                tokio::spawn(orphans::on_gone(gone_ctx.clone(), gone.clone()));
            }
        });
        let applied = {
            let m = metrics.clone();
            kube::runtime::WatchStreamExt::applied_objects(stream).inspect(move |obj| {
                if let Ok(ing) = obj {
                    queued::<Ingress, _>(&m, ing);
                }
            })
        };
        // Every Ingress the cache holds when the signal arrives is queued (the controller
        // reads the same store then).
        let everything = {
            let (store, m) = (store.clone(), metrics.clone());
            everything.inspect(move |_| store.state().iter().for_each(|ing| queued::<Ingress, _>(&m, ing.as_ref())))
        };
        let requested = {
            let m = metrics.clone();
            futures::stream::select(futures::stream::select(routed, terminated), receiver_stream(retry_rx))
                .inspect(move |r| queued_ref::<Ingress, _>(&m, r))
        };
        let controller = Controller::for_stream(applied, store)
            .with_config(controller_config.clone())
            .reconcile_all_on(everything)
            .reconcile_on(requested)
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile::reconcile_cached::<Ingress>, reconcile::error_policy_cached::<Ingress>, ctx.clone())
            .for_each(log_result::<Ingress, _, _, _>(metrics.clone()));
        async move {
            let _sweeper = sweeper;
            controller.await
        }
    });
    let service_controller = config.services.then_some(service_controller);
    match (service_controller, ingress_controller) {
        (Some(services), Some(ingresses)) => {
            futures::join!(services, ingresses);
        }
        (Some(services), None) => services.await,
        (None, Some(ingresses)) => ingresses.await,
        (None, None) => shutdown.await,
    }
    drop(ingress_tasks);
    info!("controller stopped");
    Ok(())
}

/// How long the first list of a cache may take before the controller gives up, saying why.
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(120);

async fn synced<K>(store: &Store<K>, what: &'static str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    match tokio::time::timeout(CACHE_SYNC_TIMEOUT, store.wait_until_ready()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Error::CacheEnded(what)),
        Err(_) => Err(Error::CacheSync { what, after: CACHE_SYNC_TIMEOUT }),
    }
}

/// Counts an object a trigger brought to the controller of `F` as queued.
fn queued<F: FrontEnd, K: Resource>(metrics: &Metrics, obj: &K) {
    metrics.queue.queued(F::KIND, obj.meta().namespace.as_deref().unwrap_or_default(), &obj.name_any());
}

/// [`queued`] for a trigger that names the object.
fn queued_ref<F: FrontEnd, K: Resource>(metrics: &Metrics, r: &ObjectRef<K>) {
    metrics.queue.queued(F::KIND, r.namespace.as_deref().unwrap_or_default(), &r.name);
}

/// Logs what the controller of `F` reports besides the reconciles' own results (those are
/// logged by `error_policy`); an object that is gone before its turn leaves the work queue.
fn log_result<F, T, E, R>(
    metrics: Arc<Metrics>,
) -> impl FnMut(std::result::Result<T, controller::Error<E, R>>) -> std::future::Ready<()>
where
    F: FrontEnd,
    E: std::error::Error + 'static,
    R: std::error::Error + 'static,
{
    move |res| {
        match res {
            Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
            Err(controller::Error::ObjectNotFound(gone)) => {
                metrics.queue.dropped(F::KIND, gone.namespace.as_deref().unwrap_or_default(), &gone.name);
            }
            Err(other) => warn!(error = %other, "controller"),
        }
        std::future::ready(())
    }
}
