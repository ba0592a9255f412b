//! A client-side limit on Kubernetes API requests (`--kube-api-qps`, `--kube-api-burst`): a
//! token bucket in front of the kube client, shared by every request the process makes.
//!
//! Why off by default: an apiserver protects itself with API Priority and Fairness (GA since
//! 1.29), answering 429 with `retryAfterSeconds` when a flow is over its share; kube's client
//! retries those and the controller's backoff honours the delay (`Error::api_retry_after`).
//! A fixed client-side rate on top only slows convergence of a large cluster whose apiserver
//! has room (client-go's old 20 QPS would make 1,000 new load balancers take 200 s). Operators
//! whose apiserver has no APF, or who want a hard cap per controller, set the flags.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tower::{Layer, Service};

/// Tokens refill at `qps` per second up to `burst`; each request takes one.
pub struct Bucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub fn new(qps: f64, burst: u32) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket { qps, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Waits for a token. Waiters are served in order (the mutex is fair).
    pub async fn acquire(&self) {
        let mut s = self.state.lock().await;
        let now = Instant::now();
        let (tokens, last) = *s;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.qps).min(self.burst);
        if tokens >= 1.0 {
            *s = (tokens - 1.0, now);
            return;
        }
        let wait = Duration::from_secs_f64((1.0 - tokens) / self.qps);
        tokio::time::sleep(wait).await;
        // The lock was held while waiting: the next waiter starts from an empty bucket.
        *s = (0.0, now + wait);
    }
}

#[derive(Clone)]
pub struct LimitLayer(pub Arc<Bucket>);

impl<S> Layer<S> for LimitLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited { inner, bucket: self.0.clone(), waiting: None, permit: false }
    }
}

/// The wrapped service: a request may go once a token was taken in `poll_ready` (so the inner
/// service, which need not be `Clone`, is called exactly as tower's contract says).
pub struct Limited<S> {
    inner: S,
    bucket: Arc<Bucket>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    permit: bool,
}

impl<S, R> Service<R> for Limited<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if !self.permit {
            let bucket = self.bucket.clone();
            let waiting = self.waiting.get_or_insert_with(|| Box::pin(async move { bucket.acquire().await }));
            match waiting.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.waiting = None;
                    self.permit = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.permit = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_then_qps() {
        let b = Bucket::new(100.0, 5);
        let start = Instant::now();
        for _ in 0..5 {
            b.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(20), "the burst is free: {:?}", start.elapsed());
        for _ in 0..10 {
            b.acquire().await;
        }
        let took = start.elapsed();
        // 10 more at 100/s: 100 ms, give or take scheduling on a loaded machine.
        assert!(took >= Duration::from_millis(95) && took < Duration::from_millis(600), "{took:?}");
    }
}
