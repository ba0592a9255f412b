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
//! The buckets also count calls per API action, which tests use to check batching.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Rate, RateLimits};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Normal,
    High,
}

struct BucketState {
    tokens: f64,
    last: Instant,
    high_waiting: usize,
}

pub struct Bucket {
    rate: Rate,
    state: Mutex<BucketState>,
}

/// Decrements `high_waiting` when a high-priority waiter finishes or is cancelled.
struct HighWaiter<'a>(&'a Bucket);

impl Drop for HighWaiter<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.high_waiting = s.high_waiting.saturating_sub(1);
    }
}

impl Bucket {
    pub fn new(rate: Rate) -> Self {
        let rate = Rate::new(rate.per_second.max(0.001), rate.burst.max(1.0));
        Self { rate, state: Mutex::new(BucketState { tokens: rate.burst, last: Instant::now(), high_waiting: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BucketState> {
        // The state is a few numbers updated atomically under the lock: a poisoned lock still
        // holds a consistent value.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for one token.
    pub async fn acquire(&self, priority: Priority) {
        let mut registered: Option<HighWaiter<'_>> = None;
        loop {
            let wait = {
                let mut s = self.lock();
                let now = Instant::now();
                let elapsed = now.duration_since(s.last).as_secs_f64();
                s.tokens = (s.tokens + elapsed * self.rate.per_second).min(self.rate.burst);
                s.last = now;
                let blocked_by_high = priority == Priority::Normal && s.high_waiting > 0;
                if !blocked_by_high && s.tokens >= 1.0 {
                    s.tokens -= 1.0;
                    None
                } else {
                    if priority == Priority::High && registered.is_none() {
                        s.high_waiting += 1;
                        registered = Some(HighWaiter(self));
                    }
                    let missing = (1.0 - s.tokens).max(0.0);
                    Some(Duration::from_secs_f64((missing / self.rate.per_second).max(0.001)))
                }
            };
            match wait {
                None => return, // `registered` drops here and un-registers
                Some(d) => tokio::time::sleep(d).await,
            }
        }
    }
}

/// Every bucket, chosen by the call's name (`service:Action`).
pub struct Limiter {
    describe: Bucket,
    register: Bucket,
    modify: Bucket,
    create_delete: Bucket,
    ec2_describe: Bucket,
    ec2_mutate: Bucket,
    counts: Mutex<BTreeMap<&'static str, u64>>,
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
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    fn bucket(&self, call: &str) -> &Bucket {
        if let Some(action) = call.strip_prefix("ec2:") {
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

    /// Wait for a token for `call`, and count it.
    pub async fn acquire(&self, call: &'static str, priority: Priority) {
        self.bucket(call).acquire(priority).await;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(call).or_default() += 1;
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn burst_then_rate() {
        let b = Bucket::new(Rate::new(20.0, 3.0));
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            b.acquire(Priority::Normal).await;
        }
        assert!(start.elapsed() < Duration::from_millis(10));
        b.acquire(Priority::Normal).await;
        b.acquire(Priority::Normal).await;
        let e = start.elapsed();
        assert!(e >= Duration::from_millis(90) && e < Duration::from_millis(600), "{e:?}");
    }

    #[tokio::test]
    async fn high_priority_goes_first() {
        let b = Arc::new(Bucket::new(Rate::new(20.0, 1.0)));
        b.acquire(Priority::Normal).await; // empty the bucket
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                b.acquire(Priority::Normal).await;
                order.lock().unwrap().push(format!("n{i}"));
            }));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        let (b2, order2) = (b.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            b2.acquire(Priority::High).await;
            order2.lock().unwrap().push("high".into());
        }));
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let pos = order.iter().position(|s| s == "high").unwrap();
        assert!(pos <= 1, "high-priority caller served at position {pos}: {order:?}");
    }

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
