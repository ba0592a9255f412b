//! Client-side token buckets per API class, shared by every call the provider makes, with
//! deletes first.
//!
//! Compute rate-limits per project; a controller that bursts through the budget gets `403
//! rateLimitExceeded` together with everything else in the project. Each call takes a token from
//! its class's bucket (reads, writes, instance-group membership, deletes) before it is sent. Calls
//! made by `delete` are [`Priority::High`]: while one of them waits for a token, normal callers of
//! that bucket wait behind it, so cleaning up (which frees quota) is never starved by a storm of
//! `ensure`s.
//!
//! The limiter also counts calls per method (`compute.forwardingRules.insert`), which tests and
//! the report of API costs use, the calls that waited for a token (and how long), and the
//! answers that throttled a call (`rateLimitExceeded`, 429: the clients never retry, so each is
//! one call). Operation polls are made by the client library's poller and are
//! neither limited nor counted here.

use std::collections::BTreeMap;

pub use cloudlb_provider::throttle::{Bucket, Priority};
use cloudlb_provider::throttle::{CallCounts, Waited, Waits};

use crate::config::RateLimits;

/// The class of a call, from its method name (`compute.<collection>.<method>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Read,
    Mutate,
    Membership,
    Delete,
}

pub fn class(call: &str) -> Class {
    let method = call.rsplit('.').next().unwrap_or(call);
    match method {
        "get" | "list" | "listInstances" => Class::Read,
        "addInstances" | "removeInstances" => Class::Membership,
        "delete" => Class::Delete,
        _ => Class::Mutate,
    }
}

/// Every bucket, chosen by the call's class.
pub struct Limiter {
    read: Bucket,
    mutate: Bucket,
    membership: Bucket,
    delete: Bucket,
    counts: CallCounts,
    waits: Waits,
    throttles: CallCounts,
}

impl Limiter {
    pub fn new(limits: &RateLimits) -> Self {
        Self {
            read: Bucket::new(limits.read),
            mutate: Bucket::new(limits.mutate),
            membership: Bucket::new(limits.membership),
            delete: Bucket::new(limits.delete),
            counts: CallCounts::default(),
            waits: Waits::default(),
            throttles: CallCounts::default(),
        }
    }

    fn bucket(&self, call: &str) -> &Bucket {
        match class(call) {
            Class::Read => &self.read,
            Class::Mutate => &self.mutate,
            Class::Membership => &self.membership,
            Class::Delete => &self.delete,
        }
    }

    /// Wait for a token for `call`, and count it.
    pub async fn acquire(&self, call: &'static str, priority: Priority) {
        self.waits.record(call, self.bucket(call).acquire(priority).await);
        self.counts.count(call);
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.snapshot()
    }

    /// An answer to `call` throttled it.
    pub fn throttled(&self, call: &str) {
        self.throttles.count(call);
    }

    pub fn throttles(&self) -> BTreeMap<String, u64> {
        self.throttles.snapshot()
    }

    pub fn waits(&self) -> BTreeMap<String, Waited> {
        self.waits.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_map_to_their_class() {
        let l = Limiter::new(&RateLimits::default());
        assert!(std::ptr::eq(l.bucket("compute.forwardingRules.get"), &l.read));
        assert!(std::ptr::eq(l.bucket("compute.instanceGroups.listInstances"), &l.read));
        assert!(std::ptr::eq(l.bucket("compute.instanceGroups.addInstances"), &l.membership));
        assert!(std::ptr::eq(l.bucket("compute.instanceGroups.removeInstances"), &l.membership));
        assert!(std::ptr::eq(l.bucket("compute.regionBackendServices.update"), &l.mutate));
        assert!(std::ptr::eq(l.bucket("compute.firewalls.insert"), &l.mutate));
        assert!(std::ptr::eq(l.bucket("compute.addresses.delete"), &l.delete));
    }
}
