//! cloudlb: a Kubernetes controller that gives Services of `type: LoadBalancer` a real load
//! balancer outside the cluster, pointed at the nodes' NodePorts, and writes its address back
//! into `status.loadBalancer` so `kubectl get svc` shows an EXTERNAL-IP.
//!
//! ```text
//!  args ─▶ app ─▶ controller ─┬─ claim      (is this Service ours?)
//!                             ├─ desired    (PURE: Service + Nodes -> LoadBalancerSpec)
//!                             ├─ reconcile  (finalizer, provider, record, status, events)
//!                             └─ metrics    (/metrics, /healthz = liveness, /readyz)
//!  providers ─▶ cloudlb-provider::Provider (memory, local, aws, gcp)
//!  demo ─▶ cloudlb-sandbox (an in-memory Kubernetes API) + the controller + a demo Service
//! ```
//!
//! Modules:
//! - [`args`]: every flag; [`app`]: start-up; [`providers`]: the provider factory;
//! - [`claim`]: which Services are ours; [`desired`]: the pure spec builder and node rules;
//! - [`controller`]: reconcile, status and conditions, finalizer, backoff, node tracking;
//! - [`keys`]: annotation keys, reasons, finalizer; [`metrics`]; [`liveness`]: what `/healthz`
//!   checks; [`demo`]: `cloudlb sandbox`;
//! - [`leader`]: leader election on a Lease; [`gc`]: `cloudlb gc` and `--gc-interval`, load
//!   balancers in the cloud that nothing claims any more; [`plan`]: `cloudlb plan`.

/// The commit this binary was built from (see `build.rs`).
pub const COMMIT: &str = env!("CLOUDLB_COMMIT");
/// What `cloudlb --version` prints after the name: the crate version and the commit.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("CLOUDLB_COMMIT"), ")");

pub mod api_limit;
pub mod app;
pub mod args;
pub mod claim;
pub mod controller;
pub mod demo;
pub mod desired;
pub mod error;
pub mod gc;
pub mod keys;
pub mod leader;
pub mod liveness;
pub mod logging;
pub mod metrics;
pub mod plan;
pub mod providers;

pub use error::{Error, Result};
