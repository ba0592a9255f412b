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
pub mod health_check;
pub mod instance_group;
