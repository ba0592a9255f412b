//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas can run and only
//! one reconciles.
//!
//! The algorithm is client-go's: the lease is taken or renewed with an update carrying the
//! `resourceVersion` read just before (a concurrent writer gets 409 and loses); another holder's
//! lease counts as expired only after `lease_duration` has passed *on our clock* since we last saw
//! it change, so clock skew between nodes cannot make two leaders. A leader that shuts down
//! cleanly releases the lease so a standby takes over at once.
//!
//! # Deadlines
//! A connection that silently drops everything makes requests hang rather than fail, so nothing
//! here waits on the API without a deadline. Every attempt (acquiring or renewing) runs under a
//! timeout that ends `renew_deadline` after the start of the last successful attempt: the start,
//! because the `renewTime` others see was read from our clock before the request went out. Past
//! that point the leader gives up, although a standby can take over only `lease_duration` after
//! it saw that renewal: the difference (5 s by default) is the safety margin, for a cloud call
//! already on the wire and for clocks running at slightly different rates.
//!
//! Giving up closes the [`Fence`] (no provider mutation starts, none in flight completes) before
//! anything else, then signals the loss; the process then exits (see `app`) and is restarted as
//! a standby by its Deployment. The fence also closes by itself at the deadline, should the
//! renewal task be starved.
//!
//! # Guarantees
//! - At most one holder at a time, as long as clocks advance at about the same *rate*.
//! - `acquire` returns only once this process holds the lease.
//! - No provider mutation of this process runs past `renew_deadline` after its last successful
//!   renewal started, nor after `lost` resolves or `release` is called.

pub mod fence;

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{error, info, warn};

pub use fence::{Fence, FencedProvider};

/// How long giving the lease up on a clean shutdown may take.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    /// Must be shorter than `lease_duration` (see the module docs).
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What we last saw of someone else's lease, and when (on our clock).
struct Observed {
    holder: String,
    renew: Option<MicroTime>,
    at: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    cfg: LeaderConfig,
    observed: Option<Observed>,
}

/// Held leadership. Provider calls must go through [`Leadership::fence`].
pub struct Leadership {
    lost: watch::Receiver<bool>,
    fence: Fence,
    release: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// The fence provider mutations must pass while this process leads.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Resolves once leadership is lost; the fence is closed by then.
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        // An error means the renewal task is gone without saying: as good as lost.
        let _ = lost.wait_for(|l| *l).await;
    }

    /// Stops mutations, stops renewing and gives the lease up so a standby can take over at once.
    pub async fn release(mut self) {
        self.fence.close();
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(RELEASE_TIMEOUT + Duration::from_secs(1), &mut self.task).await;
    }
}

#[derive(Debug)]
enum Attempt {
    Held,
    Busy(String),
}

/// One acquire-or-renew attempt on the Lease: the [`Elector`], or a script in tests.
#[async_trait]
trait Renew: Send {
    async fn attempt(&mut self) -> Result<Attempt, kube::Error>;
}

#[async_trait]
impl Renew for Elector {
    async fn attempt(&mut self) -> Result<Attempt, kube::Error> {
        self.try_acquire_or_renew().await
    }
}

#[derive(Clone, Copy, Debug)]
struct Timing {
    renew_deadline: Duration,
    retry_period: Duration,
}

/// Why [`hold`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Released,
    Lost(String),
}

/// Renews every `retry_period` until released or lost, moving the fence's deadline forward after
/// each success. `renewed` is when the attempt that last succeeded started. Closes the fence
/// before returning, whatever the reason.
async fn hold(
    lease: &mut impl Renew,
    timing: Timing,
    fence: &Fence,
    renewed: Instant,
    release: &mut oneshot::Receiver<()>,
) -> Ended {
    let ended = renew_until_lost(lease, timing, fence, renewed, release).await;
    fence.close();
    ended
}

async fn renew_until_lost(
    lease: &mut impl Renew,
    timing: Timing,
    fence: &Fence,
    mut renewed: Instant,
    release: &mut oneshot::Receiver<()>,
) -> Ended {
    let missed =
        || Ended::Lost(format!("the lease was not renewed within the renew deadline ({:?})", timing.renew_deadline));
    loop {
        let deadline = renewed + timing.renew_deadline;
        // A dropped sender (the holder of `Leadership` is gone) counts as a release too.
        tokio::select! {
            biased;
            _ = &mut *release => return Ended::Released,
            () = tokio::time::sleep_until((Instant::now() + timing.retry_period).min(deadline)) => {}
        }
        let started = Instant::now();
        if started >= deadline {
            return missed();
        }
        tokio::select! {
            biased;
            _ = &mut *release => return Ended::Released,
            result = tokio::time::timeout_at(deadline, lease.attempt()) => match result {
                Ok(Ok(Attempt::Held)) => {
                    // Completed at the deadline, a hair too late: the fence may have closed.
                    if !fence.extend(started + timing.renew_deadline) {
                        return missed();
                    }
                    renewed = started;
                }
                Ok(Ok(Attempt::Busy(holder))) => return Ended::Lost(format!("the lease is held by {holder}")),
                Ok(Err(e)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    warn!(error = %e, ?left, "renewing the lease failed; retrying until the renew deadline");
                }
                Err(_) => return missed(),
            },
        }
    }
}

impl Elector {
    pub fn new(client: Client, cfg: LeaderConfig) -> Self {
        Self { api: Api::namespaced(client, &cfg.namespace), cfg, observed: None }
    }

    fn timing(&self) -> Timing {
        Timing { renew_deadline: self.cfg.renew_deadline, retry_period: self.cfg.retry_period }
    }

    /// Waits until this process holds the lease, then keeps renewing it in the background.
    /// `standby` is called each time another holder keeps it.
    pub async fn acquire(mut self, standby: impl Fn()) -> Leadership {
        let timing = self.timing();
        let mut last_holder = String::new();
        let acquired = loop {
            let started = Instant::now();
            // Time-boxed like a renewal: a success that took longer would start a leadership
            // whose deadline has already passed.
            match tokio::time::timeout(timing.renew_deadline, self.try_acquire_or_renew()).await {
                Ok(Ok(Attempt::Held)) => break started,
                Ok(Ok(Attempt::Busy(holder))) => {
                    standby();
                    if holder != last_holder {
                        info!(lease = %self.cfg.name, %holder, "waiting for leadership");
                        last_holder = holder;
                    }
                }
                Ok(Err(e)) => warn!(lease = %self.cfg.name, error = %e, "leader election attempt failed"),
                Err(_) => {
                    warn!(lease = %self.cfg.name, timeout = ?timing.renew_deadline, "leader election attempt timed out")
                }
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        };
        info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
        let fence = Fence::until(acquired + timing.renew_deadline);
        let (lost_tx, lost) = watch::channel(false);
        let (release_tx, mut release_rx) = oneshot::channel();
        let held = fence.clone();
        let task = tokio::spawn(async move {
            match hold(&mut self, timing, &held, acquired, &mut release_rx).await {
                Ended::Released => {
                    if tokio::time::timeout(RELEASE_TIMEOUT, self.release()).await.is_err() {
                        warn!(lease = %self.cfg.name, "releasing the lease timed out; a standby takes over when it expires");
                    }
                }
                Ended::Lost(why) => {
                    error!(lease = %self.cfg.name, %why, "lost leadership: provider mutations stopped");
                    let _ = lost_tx.send(true);
                }
            }
        });
        Leadership { lost, fence, release: Some(release_tx), task }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration = i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(15);
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.cfg.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Held),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Busy("(just created by another)".into())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.cfg.identity;
        if !mine && !holder.is_empty() {
            let changed = self.observed.as_ref().is_none_or(|o| o.holder != holder || o.renew != spec.renew_time);
            if changed {
                self.observed =
                    Some(Observed { holder: holder.clone(), renew: spec.renew_time.clone(), at: Instant::now() });
            }
            let held_for =
                spec.lease_duration_seconds.map_or(self.cfg.lease_duration, |s| Duration::from_secs(s.max(1) as u64));
            let seen = self.observed.as_ref().map_or_else(Instant::now, |o| o.at);
            if seen.elapsed() < held_for {
                return Ok(Attempt::Busy(holder));
            }
        }
        let mut next = spec.clone();
        next.holder_identity = Some(self.cfg.identity.clone());
        next.lease_duration_seconds = Some(duration);
        next.renew_time = Some(now.clone());
        if !mine {
            next.acquire_time = Some(now);
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(next);
        // `replace` sends the resourceVersion we read: a concurrent writer makes this a 409.
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Attempt::Held),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Busy(holder)),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (empty holder) if we still hold it.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await else { return };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => info!(lease = %self.cfg.name, "released leadership"),
            Err(e) => warn!(error = %e, "releasing the lease failed; a standby takes over when it expires"),
        }
    }
}

/// 8 random hex characters.
pub fn random_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// The time unit of these tests (real time: tokio's test-util is not enabled in this
    /// workspace). Timers never fire early; `SLACK` allows for a loaded machine waking us late.
    const U: Duration = Duration::from_millis(200);
    const SLACK: Duration = Duration::from_millis(150);
    const TIMING: Timing = Timing { renew_deadline: U.saturating_mul(10), retry_period: U.saturating_mul(2) };

    fn u(n: u32) -> Duration {
        U * n
    }

    /// What the next renewal attempt does.
    enum Step {
        /// Succeeds after this long.
        Held(Duration),
        /// Fails after this long.
        Fail(Duration),
        Busy,
        /// Never completes: the connection is silently dropping everything.
        Hang,
    }

    struct Script {
        steps: VecDeque<Step>,
        /// When each attempt started, from the start of the test.
        started: Vec<Duration>,
        t0: Instant,
    }

    impl Script {
        fn new(steps: impl IntoIterator<Item = Step>) -> Script {
            Script { steps: steps.into_iter().collect(), started: Vec::new(), t0: Instant::now() }
        }

        /// Attempts started when expected (each late by less than the slack, which adds up).
        fn assert_started(&self, expected: &[Duration]) {
            assert_eq!(self.started.len(), expected.len(), "attempts at {:?}, expected {expected:?}", self.started);
            for (i, (a, e)) in self.started.iter().zip(expected).enumerate() {
                let late = SLACK * (i as u32 + 1);
                assert!(a >= e && *a < *e + late, "attempts at {:?}, expected {expected:?}", self.started);
            }
        }
    }

    #[async_trait]
    impl Renew for Script {
        async fn attempt(&mut self) -> Result<Attempt, kube::Error> {
            self.started.push(self.t0.elapsed());
            match self.steps.pop_front().unwrap_or(Step::Hang) {
                Step::Held(d) => {
                    tokio::time::sleep(d).await;
                    Ok(Attempt::Held)
                }
                Step::Fail(d) => {
                    tokio::time::sleep(d).await;
                    Err(kube::Error::Service("connection refused".into()))
                }
                Step::Busy => Ok(Attempt::Busy("other".into())),
                Step::Hang => std::future::pending().await,
            }
        }
    }

    /// Runs `hold` from "acquired at t = 0"; returns how it ended, when, and the fence.
    async fn run(script: &mut Script) -> (Ended, Duration, Fence) {
        let fence = Fence::until(script.t0 + TIMING.renew_deadline);
        let (_keep, mut release) = oneshot::channel();
        let t0 = script.t0;
        let ended = hold(script, TIMING, &fence, t0, &mut release).await;
        (ended, script.t0.elapsed(), fence)
    }

    fn assert_lost_at(ended: &Ended, at: Duration, expected: Duration) {
        assert!(matches!(ended, Ended::Lost(_)), "{ended:?}");
        assert!(at >= expected && at < expected + SLACK, "lost at {at:?}, expected {expected:?}");
    }

    /// The failure: a renewal that neither fails nor completes. Leadership ends exactly
    /// at the renew deadline counted from the *start* of the last successful attempt (it took
    /// 3 units to complete), not from its end nor from the start of the hung attempt.
    #[tokio::test]
    async fn a_hung_renewal_is_cut_at_the_deadline_counted_from_the_last_success_start() {
        let mut script = Script::new([Step::Held(u(0)), Step::Held(u(3)), Step::Hang]);
        let (ended, at, fence) = run(&mut script).await;
        script.assert_started(&[u(2), u(4), u(9)]);
        assert_lost_at(&ended, at, script.started[1] + TIMING.renew_deadline);
        assert!(!fence.is_open());
    }

    /// Fast failures are retried every retry period; the deadline still counts from the last
    /// success (here: the acquisition), and no attempt starts past it.
    #[tokio::test]
    async fn failures_are_retried_until_the_deadline() {
        let mut script = Script::new(std::iter::repeat_with(|| Step::Fail(u(0))).take(100));
        let (ended, at, fence) = run(&mut script).await;
        script.assert_started(&[u(2), u(4), u(6), u(8)]);
        assert_lost_at(&ended, at, u(10));
        assert!(!fence.is_open());
    }

    /// A slow failure eats into the budget: the next attempt gets only what is left of it.
    #[tokio::test]
    async fn a_slow_failure_leaves_the_next_attempt_only_the_rest_of_the_budget() {
        let mut script = Script::new([Step::Fail(u(5)), Step::Hang]);
        let (ended, at, _) = run(&mut script).await;
        script.assert_started(&[u(2), u(9)]);
        assert_lost_at(&ended, at, u(10));
    }

    /// A success after failures moves the deadline (and the fence) forward.
    #[tokio::test]
    async fn a_success_after_failures_extends_leadership_and_the_fence() {
        let mut script = Script::new([Step::Fail(u(0)), Step::Fail(u(1)), Step::Held(u(1)), Step::Hang]);
        let fence = Fence::until(script.t0 + TIMING.renew_deadline);
        let probe = fence.clone();
        let t0 = script.t0;
        let check = tokio::spawn(async move {
            tokio::time::sleep_until(t0 + u(13)).await;
            probe.is_open()
        });
        let (_keep, mut release) = oneshot::channel();
        let ended = hold(&mut script, TIMING, &fence, t0, &mut release).await;
        script.assert_started(&[u(2), u(4), u(7), u(10)]);
        assert_lost_at(&ended, t0.elapsed(), script.started[2] + TIMING.renew_deadline);
        assert!(check.await.expect("probe"), "the fence was still open past the first deadline");
        assert!(!fence.is_open());
    }

    #[tokio::test]
    async fn another_holder_ends_leadership_at_once() {
        let mut script = Script::new([Step::Held(u(0)), Step::Busy]);
        let (ended, at, fence) = run(&mut script).await;
        assert_eq!(ended, Ended::Lost("the lease is held by other".into()));
        assert!(at >= u(4) && at < u(4) + SLACK * 2, "{at:?}");
        assert!(!fence.is_open(), "closed before its deadline");
    }

    /// A release (clean shutdown) does not wait for a hung renewal, and closes the fence.
    #[tokio::test]
    async fn a_release_interrupts_a_hung_renewal() {
        let mut script = Script::new([Step::Hang]);
        let fence = Fence::until(script.t0 + TIMING.renew_deadline);
        let (tx, mut release) = oneshot::channel();
        tokio::spawn(async move {
            tokio::time::sleep(u(3)).await;
            let _ = tx.send(());
        });
        let t0 = script.t0;
        let ended = hold(&mut script, TIMING, &fence, t0, &mut release).await;
        assert_eq!(ended, Ended::Released);
        assert!(script.t0.elapsed() < u(3) + SLACK);
        assert!(!fence.is_open());
    }
}
