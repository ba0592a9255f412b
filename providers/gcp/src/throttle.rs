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
//! the report of API costs use. Operation polls are made by the client library's poller and are
//! neither limited nor counted here.

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
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Limiter {
    pub fn new(limits: &RateLimits) -> Self {
        Self {
            read: Bucket::new(limits.read),
            mutate: Bucket::new(limits.mutate),
            membership: Bucket::new(limits.membership),
            delete: Bucket::new(limits.delete),
            counts: Mutex::new(BTreeMap::new()),
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
        assert!(std::ptr::eq(l.bucket("compute.forwardingRules.get"), &l.read));
        assert!(std::ptr::eq(l.bucket("compute.instanceGroups.listInstances"), &l.read));
        assert!(std::ptr::eq(l.bucket("compute.instanceGroups.addInstances"), &l.membership));
        assert!(std::ptr::eq(l.bucket("compute.instanceGroups.removeInstances"), &l.membership));
        assert!(std::ptr::eq(l.bucket("compute.regionBackendServices.update"), &l.mutate));
        assert!(std::ptr::eq(l.bucket("compute.firewalls.insert"), &l.mutate));
        assert!(std::ptr::eq(l.bucket("compute.addresses.delete"), &l.delete));
    }
}
