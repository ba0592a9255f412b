//! The fence between leadership and the cloud: once this process may no longer be the leader,
//! no provider mutation starts and none in flight is let finish.
//!
//! Why a fence and not just "stop the controllers": stopping drains in-flight reconciles, and a
//! reconcile in flight goes on to make its next cloud call (an AWS ensure is a dozen of them)
//! while a standby already leads. Every mutating call ([`Provider::ensure`],
//! [`Provider::update_targets`], [`Provider::delete`] and their L7 variants) passes
//! [`FencedProvider`], which refuses it once the fence is closed and abandons (drops) a call in
//! flight the moment it closes. Dropping a cloud call mid-way is what a crash does too: the next
//! leader's ensure converges from whatever was left, which every provider must handle anyway.
//! Reads (`get`) are not fenced: they change nothing.
//!
//! The fence closes by itself at its deadline: the renewal loop moves the deadline forward after
//! each successful renewal (to the start of that attempt plus the renew deadline), so even a
//! renewal loop that is starved or stuck cannot leave mutations allowed past the point where
//! the lease may be someone else's. The margin between the renew deadline and the lease
//! duration (5 s by default) covers a cloud request already on the wire when the fence closed.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use cloudlb_provider::{
    Capabilities, L7Spec, LoadBalancerId, LoadBalancerSpec, LoadBalancerStatus, Provider, ProviderError, Record,
    Result as PResult,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Mutations allowed until this instant (unless moved forward).
    Until(Instant),
    /// For good.
    Closed,
}

/// Cheap to clone; every clone sees the same state.
#[derive(Clone, Debug)]
pub struct Fence {
    state: Arc<watch::Sender<State>>,
}

impl Fence {
    /// Open until `deadline`.
    pub fn until(deadline: Instant) -> Fence {
        Fence { state: Arc::new(watch::Sender::new(State::Until(deadline))) }
    }

    /// Moves the deadline forward (never back). A fence whose deadline has passed is closed for
    /// good, like a closed one: returns whether the fence is still open.
    pub fn extend(&self, deadline: Instant) -> bool {
        let now = Instant::now();
        self.state.send_if_modified(|s| match *s {
            State::Until(t) if t <= now => {
                *s = State::Closed;
                true
            }
            State::Until(t) if t < deadline => {
                *s = State::Until(deadline);
                true
            }
            _ => false,
        });
        self.is_open()
    }

    pub fn close(&self) {
        self.state.send_if_modified(|s| std::mem::replace(s, State::Closed) != State::Closed);
    }

    /// Whether a mutation may start now.
    pub fn is_open(&self) -> bool {
        match *self.state.borrow() {
            State::Until(t) => Instant::now() < t,
            State::Closed => false,
        }
    }

    /// Resolves once the fence is closed or its deadline has passed.
    pub async fn closed(&self) {
        let mut rx = self.state.subscribe();
        loop {
            let state = *rx.borrow_and_update();
            let State::Until(deadline) = state else { return };
            if Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                // The sender lives as long as `self`: this cannot fail while we wait.
                _ = rx.changed() => {}
            }
        }
    }

    /// Runs a mutating provider call unless the fence is closed; abandons it if the fence
    /// closes while it runs.
    pub async fn guard<T>(
        &self,
        call: &'static str,
        id: &LoadBalancerId,
        mutation: impl Future<Output = PResult<T>>,
    ) -> PResult<T> {
        if !self.is_open() {
            warn!(call, load_balancer = %id.name, "provider call refused: leadership lost");
            return Err(refused(call));
        }
        tokio::select! {
            biased;
            result = mutation => result,
            () = self.closed() => {
                warn!(call, load_balancer = %id.name, "provider call abandoned in flight: leadership lost");
                Err(refused(call))
            }
        }
    }
}

fn refused(call: &'static str) -> ProviderError {
    ProviderError::Retryable { call, message: "not leader any more: provider mutations are fenced".into() }
}

/// Wraps the provider of a leader: mutations pass the [`Fence`], reads go straight through.
pub struct FencedProvider {
    pub inner: Arc<dyn Provider>,
    pub fence: Fence,
}

#[async_trait]
impl Provider for FencedProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn metrics(&self) -> Vec<cloudlb_provider::ProviderMetric> {
        self.inner.metrics()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn validate(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        self.inner.validate(spec)
    }

    fn warnings(&self, spec: &LoadBalancerSpec) -> Vec<String> {
        self.inner.warnings(spec)
    }

    async fn ensure(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> PResult<LoadBalancerStatus> {
        self.fence.guard("ensure", id, self.inner.ensure(id, spec, record)).await
    }

    async fn update_targets(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> PResult<()> {
        self.fence.guard("update_targets", id, self.inner.update_targets(id, spec, record)).await
    }

    async fn delete(&self, id: &LoadBalancerId, record: Option<&Record>) -> PResult<()> {
        self.fence.guard("delete", id, self.inner.delete(id, record)).await
    }

    async fn get(&self, id: &LoadBalancerId, record: Option<&Record>) -> PResult<Option<LoadBalancerStatus>> {
        self.inner.get(id, record).await
    }

    async fn observe(
        &self,
        id: &LoadBalancerId,
        record: Option<&Record>,
    ) -> PResult<Option<cloudlb_provider::Observed>> {
        self.inner.observe(id, record).await
    }

    fn validate_l7(&self, spec: &L7Spec) -> Vec<String> {
        self.inner.validate_l7(spec)
    }

    fn warnings_l7(&self, spec: &L7Spec) -> Vec<String> {
        self.inner.warnings_l7(spec)
    }

    async fn ensure_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> PResult<LoadBalancerStatus> {
        self.fence.guard("ensure_l7", id, self.inner.ensure_l7(id, spec, record)).await
    }

    async fn update_targets_l7(&self, id: &LoadBalancerId, spec: &L7Spec, record: Option<&Record>) -> PResult<()> {
        self.fence.guard("update_targets_l7", id, self.inner.update_targets_l7(id, spec, record)).await
    }

    async fn delete_l7(&self, id: &LoadBalancerId, record: Option<&Record>) -> PResult<()> {
        self.fence.guard("delete_l7", id, self.inner.delete_l7(id, record)).await
    }

    async fn plan(
        &self,
        id: &LoadBalancerId,
        spec: &LoadBalancerSpec,
        record: Option<&Record>,
    ) -> PResult<cloudlb_provider::Plan> {
        self.inner.plan(id, spec, record).await
    }

    async fn plan_l7(
        &self,
        id: &LoadBalancerId,
        spec: &L7Spec,
        record: Option<&Record>,
    ) -> PResult<cloudlb_provider::Plan> {
        self.inner.plan_l7(id, spec, record).await
    }

    async fn list_owned(&self, cluster: &str) -> PResult<Vec<cloudlb_provider::OwnedLoadBalancer>> {
        self.inner.list_owned(cluster).await
    }

    async fn get_l7(&self, id: &LoadBalancerId, record: Option<&Record>) -> PResult<Option<LoadBalancerStatus>> {
        self.inner.get_l7(id, record).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cloudlb_provider::conformance::{id, spec};
    use cloudlb_provider::memory::{MemoryConfig, MemoryProvider};

    use super::*;

    /// The time unit of these tests (real time: tokio's test-util is not enabled in this
    /// workspace). Timers never fire early; `SLACK` allows for a loaded machine waking us late.
    const U: Duration = Duration::from_millis(200);
    const SLACK: Duration = Duration::from_millis(150);

    fn assert_near(actual: Duration, expected: Duration, what: &str) {
        assert!(actual >= expected && actual < expected + SLACK, "{what}: {actual:?}, expected {expected:?}");
    }

    #[tokio::test]
    async fn closes_at_its_deadline_unless_extended_and_stays_closed() {
        let start = Instant::now();
        let fence = Fence::until(start + 2 * U);
        assert!(fence.is_open());
        tokio::time::sleep(U).await;
        assert!(fence.extend(start + 4 * U));
        assert!(fence.extend(start + 3 * U), "still open"); // but never moves back
        tokio::time::sleep_until(start + 3 * U).await;
        assert!(fence.is_open(), "extended past its first deadline");
        fence.closed().await;
        assert_near(start.elapsed(), 4 * U, "closes by itself at its deadline");
        assert!(!fence.is_open());
        assert!(!fence.extend(Instant::now() + 10 * U), "a deadline that passed is not revived by a late renewal");
        assert!(!fence.is_open());

        let fence = Fence::until(Instant::now() + 100 * U);
        let started = Instant::now();
        fence.close();
        assert!(!fence.extend(Instant::now() + 200 * U));
        assert!(!fence.is_open(), "closed for good");
        fence.closed().await;
        assert!(started.elapsed() < SLACK, "closed() resolves at once when closed");
    }

    /// A mutation in flight when the fence closes never completes; later ones never reach the
    /// provider; reads still pass.
    #[tokio::test]
    async fn abandons_mutations_in_flight_and_refuses_new_ones() {
        let memory = Arc::new(
            MemoryProvider::new(MemoryConfig { latency: 5 * U, ..Default::default() }).expect("memory provider"),
        );
        let fence = Fence::until(Instant::now() + U);
        let fenced = FencedProvider { inner: memory.clone(), fence: fence.clone() };
        let spec = spec(&[80]);
        let (a, b) = (id("a"), id("b"));
        let started = Instant::now();
        let err = fenced.ensure(&a, &spec, None).await.expect_err("abandoned");
        assert_near(started.elapsed(), U, "stopped when the fence closed, not after the call's latency");
        assert!(err.to_string().contains("fenced"), "{err}");
        assert_eq!(memory.implemented(&a), None, "the abandoned ensure changed nothing");
        assert_eq!(memory.calls().ensure, 1);

        for result in [
            fenced.ensure(&b, &spec, None).await.map(|_| ()),
            fenced.update_targets(&b, &spec, None).await,
            fenced.delete(&b, None).await,
            fenced.delete_l7(&b, None).await,
        ] {
            assert!(result.is_err(), "refused once closed");
        }
        let calls = memory.calls();
        assert_eq!((calls.ensure, calls.delete), (1, 0), "nothing more reached the provider");
        assert_eq!(fenced.get(&b, None).await.expect("reads pass"), None);
    }
}
