//! A client-side limit on Kubernetes API requests (`--kube-api-qps`, `--kube-api-burst`): a
//! token bucket in front of the kube client, shared by every request the process makes.
//!
//! Why off by default: an apiserver protects itself with API Priority and Fairness (GA since
//! 1.29), answering 429 with `retryAfterSeconds` when a flow is over its share; kube's client
//! retries those and the controller's backoff honours the delay (`Error::api_retry_after`).
//! A fixed client-side rate on top only slows convergence of a large cluster whose apiserver
//! has room (client-go's old 20 QPS would make 1,000 new load balancers take 200 s). Operators
//! whose apiserver has no APF, or who want a hard cap per controller, set the flags.
//!
//! Both are counted: the requests that waited for a token and for how long
//! (`cloudlb_kube_api_limiter_wait*`), and every 429 the apiserver answered
//! (`cloudlb_kube_api_throttled_total`, by [`CountThrottledLayer`], which sits below the retry
//! layer so the 429s the client retries by itself are counted too; see `app::client`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::metrics::KubeApiMetrics;

/// Tokens refill at `qps` per second up to `burst`; each request takes one.
pub struct Bucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
    metrics: KubeApiMetrics,
}

impl Bucket {
    pub fn new(qps: f64, burst: u32, metrics: KubeApiMetrics) -> Bucket {
        let burst = f64::from(burst.max(1));
        Bucket { qps, burst, state: Mutex::new((burst, Instant::now())), metrics }
    }

    /// Waits for a token. Waiters are served in order (the mutex is fair). A request that had
    /// to wait (for the lock or for the refill) is counted, with its wait.
    pub async fn acquire(&self) {
        let asked = Instant::now();
        let mut s = self.state.lock().await;
        let now = Instant::now();
        let (tokens, last) = *s;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.qps).min(self.burst);
        if tokens >= 1.0 {
            *s = (tokens - 1.0, now);
        } else {
            let wait = Duration::from_secs_f64((1.0 - tokens) / self.qps);
            tokio::time::sleep(wait).await;
            // The lock was held while waiting: the next waiter starts from an empty bucket.
            *s = (0.0, now + wait);
        }
        let waited = asked.elapsed();
        // Taking an uncontended lock is not waiting; a queue behind a sleeping waiter is.
        if waited >= Duration::from_millis(1) {
            self.metrics.limiter_waits.inc();
            self.metrics.limiter_wait_seconds.inc_by(waited.as_secs_f64());
        }
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

/// Counts the apiserver's 429 answers (see the module docs).
#[derive(Clone)]
pub struct CountThrottledLayer(pub Counter);

impl<S> Layer<S> for CountThrottledLayer {
    type Service = CountThrottled<S>;

    fn layer(&self, inner: S) -> CountThrottled<S> {
        CountThrottled { inner, throttled: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct CountThrottled<S> {
    inner: S,
    throttled: Counter,
}

impl<S, R, B> Service<R> for CountThrottled<S>
where
    S: Service<R, Response = Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let response = self.inner.call(req);
        let throttled = self.throttled.clone();
        Box::pin(async move {
            let response = response.await?;
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                throttled.inc();
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_then_qps() {
        let metrics = KubeApiMetrics::default();
        let b = Bucket::new(100.0, 5, metrics.clone());
        let start = Instant::now();
        for _ in 0..5 {
            b.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(20), "the burst is free: {:?}", start.elapsed());
        assert_eq!(metrics.limiter_waits.get(), 0, "the burst waits for nothing");
        for _ in 0..10 {
            b.acquire().await;
        }
        let took = start.elapsed();
        // 10 more at 100/s: 100 ms, give or take scheduling on a loaded machine.
        assert!(took >= Duration::from_millis(95) && took < Duration::from_millis(600), "{took:?}");
        assert_eq!(metrics.limiter_waits.get(), 10, "each request past the burst waited");
        let waited = metrics.limiter_wait_seconds.get();
        assert!(waited >= 0.09 && waited <= took.as_secs_f64(), "{waited} s of {took:?}");
    }
}
