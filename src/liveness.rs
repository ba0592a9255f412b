//! What `/healthz` answers: whether this process still makes progress, so that the kubelet
//! restarts a wedged pod instead of trusting one that only answers HTTP.
//!
//! Two things can wedge a controller while its HTTP server keeps answering:
//! - a reconcile that never finishes (a call that hangs and ignores its own timeout, a blocked
//!   runtime thread): every reconcile is bounded by `--reconcile-timeout`, so one that is still
//!   running well past it means the bound itself did not work;
//! - a cache whose watch task ended (a panic in its consumer): the controller then works from a
//!   cache that never changes again, silently.
//!
//! A watch that is merely failing (the API unreachable) is not a liveness failure: restarting
//! would not help, and the watch retries with backoff on its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far past its deadline a reconcile may still run before the process counts as wedged
/// (cancellation is cooperative: a call finishing its current step may overrun a little).
pub const GRACE: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Liveness {
    next: AtomicU64,
    /// Reconciles in flight: start time and what they work on.
    inflight: Mutex<HashMap<u64, (Instant, String)>>,
    /// Caches whose watch task ended.
    ended: Mutex<Vec<&'static str>>,
    /// The per-reconcile deadline (`None` until a controller runs).
    deadline: Mutex<Option<Duration>>,
}

/// A reconcile in flight; dropping it (however the reconcile ends) takes it off the list.
pub struct InFlight<'a> {
    liveness: &'a Liveness,
    id: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.liveness.inflight).remove(&self.id);
    }
}

/// Marks a cache's watch task as ended when dropped (the task returned, panicked or was aborted);
/// the task owns it.
pub struct WatchAlive {
    pub liveness: Arc<Liveness>,
    pub what: &'static str,
}

impl Drop for WatchAlive {
    fn drop(&mut self) {
        lock(&self.liveness.ended).push(self.what);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Liveness {
    pub fn set_deadline(&self, deadline: Duration) {
        *lock(&self.deadline) = Some(deadline);
    }

    /// Registers a reconcile of `what` starting now.
    pub fn reconcile(&self, what: String) -> InFlight<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.inflight).insert(id, (Instant::now(), what));
        InFlight { liveness: self, id }
    }

    /// `Ok` while alive; else what is wedged, for the probe's body and the log.
    pub fn check(&self) -> Result<(), String> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), String> {
        if let Some(what) = lock(&self.ended).first() {
            return Err(format!("the watch of {what} ended; the cache no longer follows the cluster"));
        }
        let Some(deadline) = *lock(&self.deadline) else { return Ok(()) };
        let limit = deadline + GRACE;
        let inflight = lock(&self.inflight);
        let oldest = inflight.values().max_by_key(|(started, _)| now.saturating_duration_since(*started));
        match oldest {
            Some((started, what)) if now.saturating_duration_since(*started) > limit => Err(format!(
                "the reconcile of {what} has run for {:?}, past its deadline of {deadline:?}",
                now.saturating_duration_since(*started)
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconcile_running_past_its_deadline_is_wedged_and_a_finished_one_is_not() {
        let l = Liveness::default();
        assert!(l.check().is_ok(), "nothing running");
        l.set_deadline(Duration::from_secs(10));
        let running = l.reconcile("Service default/web".into());
        let now = Instant::now();
        assert!(l.check_at(now + Duration::from_secs(10) + GRACE - Duration::from_secs(1)).is_ok());
        let err = l.check_at(now + Duration::from_secs(10) + GRACE + Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("default/web"), "{err}");
        drop(running);
        assert!(l.check_at(now + Duration::from_secs(3600)).is_ok(), "it finished");
    }

    #[test]
    fn an_ended_watch_is_a_liveness_failure() {
        let l = Arc::new(Liveness::default());
        {
            let _alive = WatchAlive { liveness: l.clone(), what: "Services" };
            assert!(l.check().is_ok());
        }
        assert!(l.check().unwrap_err().contains("Services"));
    }
}
