//! The Service controller: wiring of watches, the reconcile loop, retries and events.
//!
//! ```text
//!  Node watch ──▶ NodeSet (eligible, trimmed) ──change──┐
//!                                                      ▼
//!  Service watch ─▶ trimmed store ─▶ kube-runtime Controller (N workers, per-object queue)
//!                                         │
//!                                         ▼
//!                                 reconcile() ──▶ provider (instrumented)
//!                                         └────▶ Service annotations / status / events
//! ```
//!
//! The controller starts reconciling only after the first complete Node list: starting earlier
//! would ensure every load balancer with an empty target set.

pub mod backoff;
pub mod events;
pub mod finalizer;
pub mod nodes;
pub mod reconcile;
pub mod status;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cloudlb_provider::{Capabilities, Provider, StateLocation};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use kube::runtime::controller::{self, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource};
use tracing::{debug, info, warn};

use crate::claim::ClaimConfig;
use crate::desired::DesiredConfig;
use crate::error::{Error, Result};
use crate::keys::FINALIZER;
use crate::metrics::{InstrumentedProvider, Metrics};
use backoff::Backoff;
pub use events::EventType;
use nodes::NodeSet;

#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub cluster_name: String,
    pub claim: ClaimConfig,
    pub namespace: Option<String>,
    pub concurrency: u16,
    pub resync_period: Duration,
    pub desired: DesiredConfig,
    /// `reportingInstance` of our events (pod name in a cluster).
    pub instance: String,
}

pub struct Context {
    pub client: Client,
    pub provider: Arc<dyn Provider>,
    pub caps: Capabilities,
    pub config: ControllerConfig,
    pub nodes: Arc<NodeSet>,
    pub events: events::Publisher,
    pub metrics: Arc<Metrics>,
    pub backoff: Backoff,
    /// What the provider last confirmed for each Service's load balancer (by uid).
    pub checked: Mutex<HashMap<String, reconcile::Confirmed>>,
}

impl Context {
    /// Publishes an event; a failure to do so is logged, never fatal.
    pub async fn event(&self, svc: &Service, type_: EventType, reason: &str, action: &str, note: &str) {
        let note = truncate(note, 1024);
        if let Err(e) = self.events.publish(&svc.object_ref(&()), type_, reason, action, &note).await {
            debug!(error = %e, reason, "publishing event failed");
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Keeps only what reconcile reads. Services that are not load balancers and do not carry
/// our finalizer are cut down to their identity and type: a cluster has many more of them
/// than load balancers, and they must cost next to nothing.
fn trim_service(svc: &mut Service) {
    svc.metadata.managed_fields = None;
    let spec = svc.spec.get_or_insert_with(Default::default);
    let relevant = spec.type_.as_deref() == Some("LoadBalancer")
        || svc.metadata.finalizers.iter().flatten().any(|f| f == FINALIZER);
    if !relevant {
        *spec = ServiceSpec {
            type_: spec.type_.take(),
            load_balancer_class: spec.load_balancer_class.take(),
            ..Default::default()
        };
        svc.metadata.annotations = None;
        svc.metadata.labels = None;
        svc.status = None;
    }
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    provider: Arc<dyn Provider>,
    config: ControllerConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    client.apiserver_version().await.map_err(Error::ApiUnreachable)?;
    let provider: Arc<dyn Provider> = Arc::new(InstrumentedProvider { inner: provider, metrics: metrics.clone() });
    let caps = provider.capabilities();
    let mut tracker = nodes::spawn(client.clone(), metrics.clone());
    if tracker.ready.wait_for(|r| *r).await.is_err() {
        return Err(Error::NodeWatchEnded);
    }

    let events = events::Publisher::new(client.clone(), "cloudlb", &config.instance);
    let services: Api<Service> = match &config.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    info!(
        provider = provider.name(),
        state = ?caps.state,
        class = %config.claim.class,
        manage_unclassed = config.claim.manage_unclassed,
        concurrency = config.concurrency,
        "controller starting"
    );
    let ctx = Arc::new(Context {
        client,
        provider,
        caps,
        config: config.clone(),
        nodes: tracker.set.clone(),
        events,
        metrics: metrics.clone(),
        backoff: Backoff::default(),
        checked: Mutex::new(HashMap::new()),
    });
    if ctx.caps.state == StateLocation::InProcess {
        reconcile::restore(&ctx, &services).await;
    }
    ctx.metrics.ready.store(true, Ordering::Relaxed);
    let (reader, writer) = reflector::store();
    let stream =
        reflector(writer, watcher(services, watcher::Config::default()).modify(trim_service).default_backoff())
            .applied_objects();
    let changes = std::mem::replace(&mut tracker.changes, tokio::sync::mpsc::unbounded_channel().1);
    Controller::for_stream(stream, reader)
        .with_config(controller::Config::default().concurrency(config.concurrency))
        .reconcile_all_on(nodes::changes_stream(changes))
        .graceful_shutdown_on(shutdown)
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                match e {
                    controller::Error::ReconcilerFailed(..) => {} // logged by error_policy
                    other => warn!(error = %other, "controller"),
                }
            }
        })
        .await;
    tracker.task.abort();
    info!("controller stopped");
    Ok(())
}
