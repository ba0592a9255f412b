//! Client-side token buckets per API class, shared by every call the provider makes, with
//! deletes first.
//!
//! AWS rate-limits ELBv2 and EC2 per account and region; a controller that bursts through the
//! budget gets throttled together with everything else in the account. Each call takes a token
//! from its class's bucket (`Describe*`, `Register/DeregisterTargets`, `Modify*`, create/delete,
//! EC2 describe, EC2 mutate) before it is sent. Calls made by `delete` are [`Priority::High`]:
//! while one of them waits for a token, normal callers of that bucket wait behind it, so cleaning
//! up (which frees quota) is never starved by a storm of `ensure`s.
//!
//! The limiter also counts, per API action: the calls (tests use them to check batching), the
//! calls that waited for a token and how long, and the responses that throttled a call (counted
//! by the SDK clients' interceptor, `clients.rs`, since the SDK retries those itself).

use std::collections::BTreeMap;
use std::sync::Arc;

pub use cloudlb_provider::throttle::{Bucket, Priority};
use cloudlb_provider::throttle::{CallCounts, Waited, Waits};

use crate::config::RateLimits;

/// Every bucket, chosen by the call's name (`service:Action`).
pub struct Limiter {
    describe: Bucket,
    register: Bucket,
    modify: Bucket,
    create_delete: Bucket,
    ec2_describe: Bucket,
    ec2_mutate: Bucket,
    counts: CallCounts,
    waits: Waits,
    throttles: Arc<CallCounts>,
}

impl Limiter {
    pub fn new(limits: &RateLimits) -> Self {
        Self {
            describe: Bucket::new(limits.describe),
            register: Bucket::new(limits.register),
            modify: Bucket::new(limits.modify),
            create_delete: Bucket::new(limits.create_delete),
            ec2_describe: Bucket::new(limits.ec2_describe),
            ec2_mutate: Bucket::new(limits.ec2_mutate),
            counts: CallCounts::default(),
            waits: Waits::default(),
            throttles: Default::default(),
        }
    }

    fn bucket(&self, call: &str) -> &Bucket {
        if let Some(action) = call.strip_prefix("acm:").or_else(|| call.strip_prefix("tagging:")) {
            // ACM and the tagging API have their own account limits; reads and writes are rare
            // (certificates change on rotation only), so they share the ELBv2 classes.
            if action.starts_with("List") || action.starts_with("Describe") || action.starts_with("Get") {
                &self.describe
            } else {
                &self.modify
            }
        } else if let Some(action) = call.strip_prefix("ec2:") {
            if action.starts_with("Describe") { &self.ec2_describe } else { &self.ec2_mutate }
        } else {
            let action = call.strip_prefix("elbv2:").unwrap_or(call);
            if action.starts_with("Describe") {
                &self.describe
            } else if action == "RegisterTargets" || action == "DeregisterTargets" {
                &self.register
            } else if action.starts_with("Modify") || action.starts_with("Set") || action.ends_with("Tags") {
                &self.modify
            } else {
                &self.create_delete
            }
        }
    }

    /// Wait for a token for `call`, and count it (and the wait, if there was one).
    pub async fn acquire(&self, call: &'static str, priority: Priority) {
        self.waits.record(call, self.bucket(call).acquire(priority).await);
        self.counts.count(call);
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.snapshot()
    }

    /// Calls that waited for a token, and how long in all.
    pub fn waits(&self) -> BTreeMap<String, Waited> {
        self.waits.snapshot()
    }

    /// Where the SDK clients count the responses that throttled a call (each attempt).
    pub fn throttles(&self) -> Arc<CallCounts> {
        self.throttles.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_map_to_their_class() {
        let l = Limiter::new(&RateLimits::default());
        assert!(std::ptr::eq(l.bucket("elbv2:DescribeTargetHealth"), &l.describe));
        assert!(std::ptr::eq(l.bucket("elbv2:RegisterTargets"), &l.register));
        assert!(std::ptr::eq(l.bucket("elbv2:ModifyTargetGroup"), &l.modify));
        assert!(std::ptr::eq(l.bucket("elbv2:AddTags"), &l.modify));
        assert!(std::ptr::eq(l.bucket("elbv2:CreateLoadBalancer"), &l.create_delete));
        assert!(std::ptr::eq(l.bucket("ec2:DescribeSubnets"), &l.ec2_describe));
        assert!(std::ptr::eq(l.bucket("ec2:CreateSecurityGroup"), &l.ec2_mutate));
    }
}
