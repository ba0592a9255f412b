//! Keeps the scale benchmark's harness working: its scenarios at N = 50, checking the counts
//! the benchmark reports (never the timings, which mean nothing at this size or on CI).

#[path = "../benches/scale/scenarios.rs"]
mod scenarios;
mod support;

use std::time::Duration;

/// The scale scenarios at N = 50 of `front`, with the counts the benchmark reports checked.
async fn scale_at_n_50(front: scenarios::Front) {
    let p = scenarios::Params { front, n: 50, nodes: 3, latency: Duration::from_millis(5), concurrency: 16 };
    let r = scenarios::scale(&p).await;
    assert_eq!(r.restart_mutating_calls, 0, "a restart on converged state makes no mutating call");
    assert_eq!(r.add_node_calls, 50, "one call per load balancer whose targets change");
    assert_eq!(r.exclude_node_calls, 50, "one call per load balancer whose targets change");
    assert!(r.create_p99 >= r.create_p50);
    // API writes (issue 12): a new load balancer <= 4, a restart 0, a node change no write to
    // any Service or Ingress and at most one event per load balancer, a delete <= 3.
    let w = scenarios::Writes { objects: 100, status: 50, events: 50 };
    assert_eq!(r.create_writes, w, "finalizer + record patches, one status patch, one event each");
    assert_eq!(r.restart_writes.total(), 0, "{:?}", r.restart_writes);
    for (what, w) in [("add", r.add_node_writes), ("exclude", r.exclude_node_writes)] {
        assert_eq!((w.objects, w.status), (0, 0), "node {what}: no object or status write: {w:?}");
        assert!(w.events <= 50, "node {what}: at most one event per load balancer: {w:?}");
    }
    assert_eq!(r.delete_writes.status, 0, "{:?}", r.delete_writes);
    assert!(r.delete_writes.total() <= 150, "at most 3 writes per deleted load balancer: {:?}", r.delete_writes);
}

#[tokio::test]
async fn scale_scenarios_at_n_50() {
    scale_at_n_50(scenarios::Front::Services).await;
}

#[tokio::test]
async fn ingress_scale_scenarios_at_n_50() {
    scale_at_n_50(scenarios::Front::Ingresses).await;
}

#[tokio::test]
async fn latency_and_footprint_scenarios_run() {
    let l = scenarios::latency(5).await;
    assert_eq!(l.samples, 5);
    let f = scenarios::footprint(20, 20, 10, Duration::ZERO).await;
    assert!(f.peak_rss_mib > 0.0 && f.cpu_seconds > 0.0, "{f:?}");
    assert!(f.peak_anon_mib > 0.0 && f.peak_file_mib > 0.0 && f.peak_anon_mib <= f.peak_rss_mib, "{f:?}");
}
