//! Client-side token buckets for a provider's cloud calls, with priorities, and a count of
//! calls by name. Every cloud rate-limits per account or project, and a controller that bursts
//! through the budget is throttled together with everything else there; each provider maps its
//! calls to classes (its `throttle` module) and takes a token from the class's [`Bucket`] before
//! each call. Calls made by `delete` are [`Priority::High`]: while one of them waits, normal
//! callers of that bucket wait behind it, so cleaning up (which frees quota) is never starved by
//! a storm of ensures.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// One token bucket: `per_second` tokens are added each second, up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub const fn new(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst }
    }
}

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

    /// Wait for one token; returns how long that took (zero when one was there).
    pub async fn acquire(&self, priority: Priority) -> Duration {
        let mut registered: Option<HighWaiter<'_>> = None;
        let mut waited = Duration::ZERO;
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
                None => return waited, // `registered` drops here and un-registers
                Some(d) => {
                    let slept = Instant::now();
                    tokio::time::sleep(d).await;
                    waited += slept.elapsed();
                }
            }
        }
    }
}

/// A number per call name (`elbv2:RegisterTargets`, `compute.firewalls.insert`): calls made,
/// or calls the cloud throttled. What tests, reports of API cost and `/metrics` read.
#[derive(Debug, Default)]
pub struct CallCounts(Mutex<BTreeMap<String, u64>>);

impl CallCounts {
    pub fn count(&self, call: &str) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match counts.get_mut(call) {
            Some(n) => *n += 1,
            None => {
                counts.insert(call.to_string(), 1);
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// How many calls had to wait for a token of their bucket, and for how long in all, by call
/// name: the client-side limit at work (see [`crate::ProviderMetric::cloud_api_limiter_waits`]).
#[derive(Debug, Default)]
pub struct Waits(Mutex<BTreeMap<&'static str, Waited>>);

/// Calls that waited and the seconds they waited, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Waited {
    pub calls: u64,
    pub seconds: f64,
}

impl Waits {
    /// Records what [`Bucket::acquire`] returned for `call` (nothing when it did not wait).
    pub fn record(&self, call: &'static str, waited: Duration) {
        if waited.is_zero() {
            return;
        }
        let mut waits = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let w = waits.entry(call).or_default();
        w.calls += 1;
        w.seconds += waited.as_secs_f64();
    }

    pub fn snapshot(&self) -> BTreeMap<String, Waited> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn burst_then_rate() {
        let b = Bucket::new(Rate::new(20.0, 3.0));
        let waits = Waits::default();
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            waits.record("burst", b.acquire(Priority::Normal).await);
        }
        assert!(start.elapsed() < Duration::from_millis(10));
        assert!(waits.snapshot().is_empty(), "the burst waits for nothing");
        waits.record("over", b.acquire(Priority::Normal).await);
        waits.record("over", b.acquire(Priority::Normal).await);
        let e = start.elapsed();
        assert!(e >= Duration::from_millis(90) && e < Duration::from_millis(600), "{e:?}");
        let over = waits.snapshot()["over"];
        assert_eq!(over.calls, 2, "both calls past the burst waited");
        // 50 ms each at 20/s; what they waited is the elapsed time, give or take the burst's.
        assert!(over.seconds >= 0.09 && over.seconds <= e.as_secs_f64(), "{over:?} in {e:?}");
    }

    #[test]
    fn call_counts_count_by_name() {
        let c = CallCounts::default();
        c.count("ec2:DescribeSubnets");
        c.count(&format!("elbv2:{}", "Describe"));
        c.count("ec2:DescribeSubnets");
        assert_eq!(
            c.snapshot(),
            BTreeMap::from([("ec2:DescribeSubnets".to_string(), 2), ("elbv2:Describe".to_string(), 1)])
        );
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
}
