//! One module per Compute collection: read, create, update and delete the resources of one load
//! balancer, each call named, rate-limited, deadline-bound and (for mutations) awaited to `DONE`
//! with the operation's error checked (see `clients.rs`).
//!
//! Creation is always preceded by a read: an insert of a name that exists is a 409, and a 409 (or
//! a `resourceNotReady`) while our own earlier insert is still running is reported as retryable,
//! so a cancelled pass is finished by the next one and never duplicates anything.

pub mod address;
pub mod backend_service;
pub mod firewall;
pub mod forwarding_rule;
pub mod global;
pub mod health_check;
pub mod instance_group;
pub mod operations;

/// Every Compute method the provider calls (the IAM role in `deploy/gcp/role.yaml` must grant
/// the permission of each; a test checks it).
pub const ALL_CALLS: &[&str] = &[
    address::GET,
    address::LIST,
    address::INSERT,
    address::DELETE,
    backend_service::GET,
    backend_service::INSERT,
    backend_service::UPDATE,
    backend_service::DELETE,
    firewall::GET,
    firewall::INSERT,
    firewall::UPDATE,
    firewall::DELETE,
    forwarding_rule::GET,
    forwarding_rule::INSERT,
    forwarding_rule::PATCH,
    forwarding_rule::DELETE,
    health_check::GET,
    health_check::INSERT,
    health_check::UPDATE,
    health_check::DELETE,
    instance_group::GET,
    instance_group::INSERT,
    instance_group::LIST_INSTANCES,
    instance_group::ADD_INSTANCES,
    instance_group::REMOVE_INSTANCES,
    instance_group::DELETE,
    crate::delete::ZONES_LIST,
    operations::LIST_REGIONAL,
    operations::LIST_GLOBAL,
    instance_group::SET_NAMED_PORTS,
];
