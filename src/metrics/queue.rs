//! What waits in the controllers' work queues: how many objects, and for how long.
//!
//! The queues are kube-runtime's `Controller`s', which keep them to themselves: a scheduler that
//! merges the requests for one object into one, and a runner that starts at most
//! `--concurrency` passes and holds back an object whose pass is still running. So they are
//! measured at their edges, by object (`namespace/name`) and kind:
//!
//! ```text
//!  trigger ──queued()──▶ [ Controller: scheduler ─▶ runner ] ──started()──▶ reconcile
//!  (watch event, Ingress fan-out,          │
//!   failed sweep pass)                     └── object gone before its turn ──dropped()
//! ```
//!
//! - **depth** (`cloudlb_workqueue_depth{kind}`): objects a trigger reached and whose pass has
//!   not started yet. Like the controller, an object triggered again while it waits counts
//!   once; one triggered while its pass runs waits again (the controller runs it once more).
//! - **wait** (`cloudlb_workqueue_wait_seconds{kind}`): from the first trigger that queued an
//!   object to the start of its pass: the backlog ahead of it plus, for an object whose previous
//!   pass was still running, the rest of that pass. After a restart, every object of the first
//!   list is queued at once: the depth is the backlog, the wait how long the last one waited.
//!
//! Not counted: the requeues a pass schedules for itself (the backoff after a failure, polling
//! while a load balancer is provisioning, the look at a permanent error after a resync period):
//! those are timers the controller holds, not work waiting for a free slot, and the object is
//! not in the depth while its timer runs. Nor the node and drift sweeps (`controller::sweep`),
//! which run outside the queues on purpose. A pass that starts then waits for the object's lock
//! (the sweeper holds it) has started: that wait is in `cloudlb_reconcile_duration_seconds`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    /// `Service` or `Ingress` (a front end's `KIND`).
    kind: &'static str,
}

/// Waits from 1 ms to about 4.5 min.
fn wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 19))
}

pub struct WorkQueue {
    /// When each waiting object was first queued, by (kind, `namespace/name`).
    waiting: Mutex<HashMap<(&'static str, String), Instant>>,
    depth: Family<KindLabels, Gauge>,
    wait: Family<KindLabels, Histogram, fn() -> Histogram>,
}

impl Default for WorkQueue {
    fn default() -> Self {
        Self {
            waiting: Default::default(),
            depth: Default::default(),
            wait: Family::new_with_constructor(wait_histogram),
        }
    }
}

impl WorkQueue {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "workqueue_depth",
            "Objects triggered and waiting for their pass to start, by kind",
            self.depth.clone(),
        );
        registry.register(
            "workqueue_wait_seconds",
            "Time from an object's first trigger to the start of its pass, by kind",
            self.wait.clone(),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String), Instant>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A trigger for `namespace/name` reached the controller of `kind`.
    pub fn queued(&self, kind: &'static str, namespace: &str, name: &str) {
        self.queued_at(kind, namespace, name, Instant::now());
    }

    fn queued_at(&self, kind: &'static str, namespace: &str, name: &str, now: Instant) {
        if let Entry::Vacant(waiting) = self.lock().entry((kind, format!("{namespace}/{name}"))) {
            waiting.insert(now);
            self.depth.get_or_create(&KindLabels { kind }).inc();
        }
    }

    /// The controller of `kind` started a pass over `namespace/name`.
    pub fn started(&self, kind: &'static str, namespace: &str, name: &str) {
        self.started_at(kind, namespace, name, Instant::now());
    }

    fn started_at(&self, kind: &'static str, namespace: &str, name: &str, now: Instant) {
        if let Some(since) = self.remove(kind, namespace, name) {
            let waited = now.saturating_duration_since(since);
            self.wait.get_or_create(&KindLabels { kind }).observe(waited.as_secs_f64());
        }
    }

    /// `namespace/name` is gone before its pass could start: it no longer waits.
    pub fn dropped(&self, kind: &'static str, namespace: &str, name: &str) {
        self.remove(kind, namespace, name);
    }

    fn remove(&self, kind: &'static str, namespace: &str, name: &str) -> Option<Instant> {
        let since = self.lock().remove(&(kind, format!("{namespace}/{name}")))?;
        self.depth.get_or_create(&KindLabels { kind }).dec();
        Some(since)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn text(q: &WorkQueue) -> String {
        let mut registry = Registry::with_prefix("cloudlb");
        q.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        out
    }

    fn sample(text: &str, prefix: &str) -> f64 {
        let line = text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in {text}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("value")
    }

    #[test]
    fn depth_counts_waiting_objects_once_and_wait_is_observed_when_a_pass_starts() {
        let q = WorkQueue::default();
        q.queued("Service", "default", "a");
        q.queued("Service", "default", "a"); // merged, as the controller does
        q.queued("Service", "default", "b");
        q.queued("Ingress", "default", "a");
        let t = text(&q);
        assert_eq!(sample(&t, "cloudlb_workqueue_depth{kind=\"Service\"}"), 2.0);
        assert_eq!(sample(&t, "cloudlb_workqueue_depth{kind=\"Ingress\"}"), 1.0);

        q.started("Service", "default", "a");
        q.started("Service", "default", "a"); // a second pass nobody queued: not a wait
        q.dropped("Service", "default", "b");
        let t = text(&q);
        assert_eq!(sample(&t, "cloudlb_workqueue_depth{kind=\"Service\"}"), 0.0);
        assert_eq!(sample(&t, "cloudlb_workqueue_wait_seconds_count{kind=\"Service\"}"), 1.0);
        assert!(!t.contains("cloudlb_workqueue_wait_seconds_count{kind=\"Ingress\"}"), "{t}");

        // Queued again while (or after) its pass ran: it waits again.
        q.queued("Service", "default", "a");
        assert_eq!(sample(&text(&q), "cloudlb_workqueue_depth{kind=\"Service\"}"), 1.0);
    }

    #[test]
    fn the_wait_runs_from_the_first_trigger() {
        let q = WorkQueue::default();
        let t0 = Instant::now();
        q.queued_at("Service", "ns", "x", t0);
        q.queued_at("Service", "ns", "x", t0 + Duration::from_millis(40)); // does not restart the clock
        q.started_at("Service", "ns", "x", t0 + Duration::from_millis(100));
        let t = text(&q);
        let sum = sample(&t, "cloudlb_workqueue_wait_seconds_sum{kind=\"Service\"}");
        assert!((sum - 0.1).abs() < 1e-9, "{t}");
    }
}
