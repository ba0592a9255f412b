//! `cloudlb-provider`: the contract between cloudlb's controller and the clouds.
//!
//! Providers never see Kubernetes types. The controller translates a Service (and its Nodes)
//! once into a [`LoadBalancerSpec`]; a provider converges its cloud to that spec and reports a
//! [`LoadBalancerStatus`]. This crate holds:
//!
//! - [`Provider`], the trait with its guarantees written down (see [`provider`]);
//! - the spec/status/id types ([`spec`] for L4, [`l7`] for HTTP, [`status`]) and the
//!   [`Record`] of what was made;
//! - [`ProviderError`], whose [`ErrorClass`] drives the controller's retries;
//! - [`Capabilities`], checked before any cloud call;
//! - [`naming`]: deterministic, bounded resource names; [`pool`]: address pools;
//! - [`memory::MemoryProvider`], the reference implementation;
//! - [`conformance`], the suite every provider runs.

pub mod capabilities;
pub mod conformance;
pub mod dry_run;
pub mod error;
pub mod l7;
pub mod memory;
pub mod naming;
pub mod observed;
pub mod options;
pub mod pool;
pub mod provider;
pub mod spec;
pub mod status;
pub mod throttle;

pub use capabilities::{Capabilities, DriftCheck, L7Capabilities, StateLocation};
pub use dry_run::{ChangeAction, DryRun, Plan, PlannedChange};
pub use error::{ErrorClass, ProviderError, Result};
pub use l7::L7Spec;
pub use observed::{GroupHealth, HealthVerdict, LbState, Observed, TargetHealth, UnhealthyTarget};
pub use provider::{OwnedLoadBalancer, Provider, ProviderMetric};
pub use spec::{
    AddressKind, HealthCheck, HealthCheckProtocol, HealthTarget, IpFamily, Listener, LoadBalancerId, LoadBalancerSpec,
    NodeAddress, Protocol, Scheme, SessionAffinity, Target, TargetsDigestCache, targets_digest,
};
pub use status::{IngressPoint, IpMode, LoadBalancerStatus, Record};
