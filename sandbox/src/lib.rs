//! `cloudlb-sandbox`: an in-memory Kubernetes API server on 127.0.0.1 over plain HTTP.
//!
//! It is the "cluster" of cloudlb's tests, benchmarks and `cloudlb sandbox`: real clients —
//! kube-rs (Controller, watcher, reflector, events Recorder) and the real `kubectl` — reach it
//! through an ordinary kubeconfig ([`Sandbox::kubeconfig`]). Objects are stored as untyped JSON.
//!
//! ```text
//!  kube-rs / kubectl ──HTTP──> http.rs (routing, verbs) ──> registry.rs (generic verbs)
//!                                  │                            │  kinds/ (per-kind hooks:
//!                                  │                            │    services/ IPs, nodePorts,
//!                                  │                            │    defaults, validation, status;
//!                                  │                            │    ingresses/ validation,
//!                                  │                            │    default-class admission, status;
//!                                  │                            │    ingress_classes, secrets/,
//!                                  │                            │    namespaces, events)
//!                                  │                            │  names.rs (shared name formats)
//!                                  │                            │  patch/ (json, merge, strategic, apply)
//!                                  ├─ watch.rs <── notify ── store.rs (Arc objects, history)
//!                                  └─ table.rs, discovery.rs
//! ```
//!
//! Served: core/v1 services (+status), nodes (+status), namespaces (+status), events,
//! endpoints, pods (+status), configmaps, secrets; events.k8s.io/v1 events;
//! networking.k8s.io/v1 ingresses (+status, short name `ing`), ingressclasses (cluster-scoped);
//! coordination.k8s.io/v1 leases; discovery.k8s.io/v1 endpointslices. `kubectl get` prints
//! services, nodes, namespaces, events, leases, ingresses, ingressclasses and secrets with the
//! apiserver's columns (others: NAME and AGE).
//!
//! Semantics a controller observes, per kind (`kinds/`):
//! - Services: ClusterIP/NodePort allocation, defaulting, type-dependent clean-up, validation,
//!   status (`ipMode` defaulted to `VIP`).
//! - Ingresses: `ValidateIngressSpec` (rules, hosts — DNS-1123 subdomains, `*.` wildcards, not
//!   IPs —, `pathType` required and one of Exact/Prefix/ImplementationSpecific, absolute paths
//!   free of `//`, `/./`, `/../`, `%2f`, `%2F` and not ending in `/..` or `/.` for Exact and
//!   Prefix, backends with exactly one of service/resource and a service port by number or
//!   name, TLS hosts and secret names, `ingressClassName`), the create-time check that the
//!   `kubernetes.io/ingress.class` annotation matches `ingressClassName`, the
//!   `DefaultIngressClass` admission (create only: a class-less, annotation-less Ingress gets
//!   the newest IngressClass annotated `ingressclass.kubernetes.io/is-default-class: "true"`,
//!   name ascending on a creationTimestamp tie), status (`status.loadBalancer.ingress` IPs,
//!   hostnames, ports) and `metadata.generation`.
//! - IngressClasses: `spec.controller` required, a domain-prefixed path, immutable;
//!   `spec.parameters` validated, its `scope` defaulted to `Cluster`; `metadata.generation`.
//! - Secrets: `data` must be base64 (400 with Go's decoder message otherwise), `stringData`
//!   merged into `data` and never stored, `type` defaulted to `Opaque` and immutable,
//!   `immutable: true` honoured, data keys and the 1 MiB limit checked, and the keys each
//!   well-known type requires (`kubernetes.io/tls`: `tls.crt` and `tls.key`).
//!
//! # Known differences from a real kube-apiserver
//!
//! - No authentication, authorization, admission webhooks, TLS, protobuf or CBOR (always JSON),
//!   no aggregated discovery (legacy discovery only; kubectl falls back), no OpenAPI schemas
//!   (an empty OpenAPI v2 document and empty v3 documents: kubectl validates nothing and builds
//!   strategic merge patches from its compiled-in types).
//! - Server-side apply is approximated: the applied configuration is strategically merged into
//!   the live object (list-map keys: `spec.ports` by port+protocol, conditions by type), and
//!   fields the same field manager applied before but no longer applies are removed. No
//!   `managedFields` are recorded, there are no field-ownership conflicts, `force` is accepted
//!   and ignored.
//! - `dryRun` is rejected (400); `propagationPolicy` is ignored (there is no garbage collector;
//!   ownerReferences never cascade); `deletecollection` is not supported (405).
//! - `resourceVersion` on GET/LIST is ignored (always the latest state); `resourceVersionMatch`
//!   is ignored; a `continue` token reads the current state after the last returned key (not a
//!   snapshot) and `remainingItemCount` is not set. Watches of a resourceVersion newer than the
//!   current one just wait.
//! - Watch history is per resource and bounded by `watch_history` changes; a watch from an
//!   older resourceVersion gets a `410 Expired` ERROR event. Bookmarks every 5 s when
//!   `allowWatchBookmarks=true`.
//! - Field selectors accept any dotted path on any resource (the apiserver allows only a
//!   per-resource list, e.g. for Secrets `metadata.name`, `metadata.namespace` and `type`), so
//!   `fieldSelector=type=kubernetes.io/tls` works on lists and watches, and so would selectors
//!   a real apiserver refuses with 400.
//! - Objects are stored as sent: unknown fields are kept (the apiserver drops them) and field
//!   types are not checked against the schema, except Secret `data`/`stringData`.
//! - Validation covers what cloudlb's paths touch: Service spec (ports, nodePorts, clusterIP,
//!   type-dependent fields, `loadBalancerSourceRanges` and its annotation, loadBalancerClass
//!   immutability) and status (ingress IP/hostname/ipMode, conditions), Ingress, IngressClass
//!   and Secret as listed above, object names, and events.k8s.io/v1 required fields.
//!   `spec.loadBalancerIP` is not validated. Other kinds are stored as given; generic
//!   `metadata` rules (label and annotation syntax, finalizer names) are not checked.
//! - Stricter than the apiserver: the ports of Service and Ingress status ingress points must
//!   have a port in 1-65535 and a protocol of TCP/UDP/SCTP (the apiserver checks neither).
//! - Ingress validation does not reproduce the update-time leniency for objects stored before a
//!   rule existed (invalid TLS secret names or rules under wildcard hosts are refused on update
//!   too), nor feature-gated rules (relaxed Service names in backends). Backend Services,
//!   IngressClasses and TLS Secrets an Ingress names need not exist (as in a real cluster).
//! - Secrets: the content of well-known types is not checked beyond required keys (a
//!   `kubernetes.io/tls` Secret's certificate and key are not parsed, as in a real cluster; the
//!   dockercfg JSON is not parsed); a PATCH whose result has a non-base64 `data` value is also
//!   answered 400 (the apiserver's patch path may word it differently); Secrets are not
//!   encrypted and `data` is returned to every reader.
//! - There is no `kubernetes` Service in `default` (its ClusterIP, the range's first address,
//!   is reserved); ClusterIPs are handed out sequentially rather than randomly; IPv4 only.
//! - Events are not garbage-collected after an hour.
//! - Namespace deletion deletes the contained objects at once (finalizers honoured) and removes
//!   the namespace as soon as it is empty.
//! - `metadata.generation` is maintained for Services, Ingresses and IngressClasses only.

mod discovery;
mod http;
mod kinds;
mod kubeconfig;
mod names;
mod patch;
mod registry;
mod resources;
mod selectors;
mod stats;
mod status;
mod store;
mod table;
mod time;
mod watch;

pub use stats::Stats;

use std::net::SocketAddr;
use std::sync::Arc;

/// How to run the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Listen address; default `127.0.0.1:0` (a free port).
    pub bind: SocketAddr,
    /// Service ClusterIP range (IPv4); default `10.96.0.0/16`.
    pub service_cidr: String,
    /// NodePort range, inclusive; default `(30000, 32767)`.
    pub node_port_range: (u16, u16),
    /// Changes kept per resource for watch resumption; default 10 000.
    pub watch_history: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            service_cidr: "10.96.0.0/16".into(),
            node_port_range: (30000, 32767),
            watch_history: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("binding the sandbox API listener")]
    Bind(#[source] std::io::Error),
    #[error("reading the bound address of the listener")]
    LocalAddr(#[source] std::io::Error),
    #[error("invalid service CIDR {0:?} (want an IPv4 CIDR with prefix <= 30)")]
    ServiceCidr(String),
    #[error("invalid node port range {0}-{1}")]
    NodePortRange(u16, u16),
}

/// A running sandbox API server. Dropping it (or [`Sandbox::shutdown`]) stops serving and ends
/// every open watch.
pub struct Sandbox {
    addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<stats::Counters>,
}

impl Sandbox {
    /// Binds, creates the default namespaces and starts serving on the current tokio runtime.
    pub async fn start(config: SandboxConfig) -> Result<Sandbox, Error> {
        let (lo, hi) = config.node_port_range;
        if lo == 0 || lo > hi {
            return Err(Error::NodePortRange(lo, hi));
        }
        let alloc = kinds::services::Allocator::new(&config.service_cidr, config.node_port_range)
            .ok_or_else(|| Error::ServiceCidr(config.service_cidr.clone()))?;
        let listener = tokio::net::TcpListener::bind(config.bind).await.map_err(Error::Bind)?;
        let addr = listener.local_addr().map_err(Error::LocalAddr)?;
        let mut inner = store::Inner::new(alloc, config.watch_history);
        registry::bootstrap(&mut inner);
        let store: store::Shared = Arc::new(std::sync::RwLock::new(inner));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stats = Arc::new(stats::Counters::default());
        let app = http::App { store, stats: stats.clone(), shutdown: rx.clone(), server_address: addr.to_string() };
        let router = http::router(app);
        let mut stop = rx;
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "sandbox API server stopped with an error");
            }
        });
        tracing::debug!(%addr, "sandbox API listening");
        Ok(Sandbox { addr, shutdown: tx, task: Some(task), stats })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig (YAML) with context `sandbox` pointing at [`Sandbox::url`], no credentials.
    pub fn kubeconfig(&self) -> String {
        kubeconfig::render(&self.url())
    }

    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Stops accepting requests, ends watches and waits (up to 5 s) for connections to close.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Request counts so far, by verb and resource.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}
