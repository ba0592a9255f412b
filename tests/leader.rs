//! Leader safety when the leader's connection to the API hangs (issue 13, item 1).
//!
//! A refused connection is easy: every request fails at once. The dangerous failure is a
//! connection that silently drops everything: requests neither fail nor complete, so a leader
//! without deadlines never learns that its lease is gone while a standby takes over, and two
//! replicas mutate the same load balancers. Here replica A reaches the API through a
//! [`FreezeProxy`]; freezing it must make A stop every provider mutation and exit non-zero
//! before replica B could possibly hold the lease, and B must then converge everything.

mod support;

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::json;
use support::freeze_proxy::FreezeProxy;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The controller's lease timings (`leader_config` in src/app.rs).
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Slack for a loaded test machine between a deadline and the process being gone.
const EXIT_MARGIN: Duration = Duration::from_secs(3);
/// Replica A's provider latency: a call in flight when the proxy freezes would complete after
/// B could hold the lease (at most `LEASE_DURATION` after A's last renewal) unless A stops it.
const LATENCY: Duration = Duration::from_secs(20);
const LEASE: &str = "cloudlb";

/// Mutating provider calls (any layer, any result) in a `/metrics` body.
fn mutations(body: &str) -> u64 {
    body.lines()
        .filter(|l| l.starts_with("cloudlb_provider_calls_total{"))
        .filter(|l| ["ensure", "update_targets", "delete"].iter().any(|c| l.contains(&format!("call=\"{c}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn at(t: SystemTime, since: SystemTime) -> String {
    match t.duration_since(since) {
        Ok(d) => format!("+{:.2}s", d.as_secs_f64()),
        Err(e) => format!("-{:.2}s", e.duration().as_secs_f64()),
    }
}

/// One look at A's counters: sent, answered, mutating calls so far.
struct Scrape {
    sent: SystemTime,
    answered: SystemTime,
    mutations: u64,
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_stops_mutating_and_exits_before_a_standby_can_lead() {
    let mut c = Cluster::start().await;
    c.add_node("node-a", "10.0.0.1", &[]).await;
    let (proxy, proxied) = FreezeProxy::in_front_of(&c).await;
    // Only A goes through the proxy (the harness passes `cluster.kubeconfig`).
    let direct = std::mem::replace(&mut c.kubeconfig, proxied);
    let latency = format!("{}s", LATENCY.as_secs());
    let mut a =
        Controller::start_full(&c, &["--memory-latency", &latency], "info,cloudlb=debug", &[("POD_NAME", "replica-a")])
            .await;
    c.kubeconfig = direct;
    a.wait_metric("cloudlb_leader", &[], "A leads", |v| v == 1.0).await;
    let b = Controller::start_full(&c, &[], "info,cloudlb=debug", &[("POD_NAME", "replica-b")]).await;
    assert_eq!(b.metric("cloudlb_leader", &[]).await, 0.0, "B is a standby");

    // A is working: its ensures are in flight (for LATENCY) when the API goes silent.
    let names = ["s1", "s2", "s3"];
    for n in names {
        c.add_service(n, &[(80, "TCP")], json!({})).await;
    }
    for n in names {
        let object = format!("\"default/{n}\"");
        let deadline = Instant::now() + WAIT;
        while !a.logs.lock().expect("logs").iter().any(|l| l.contains("ensuring load balancer") && l.contains(&object))
        {
            assert!(Instant::now() < deadline, "A never started ensuring {n}; log: {:#?}", a.log_tail(30));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(a.calls("ensure").await, 0, "the ensures are still in flight");

    let frozen_wall = SystemTime::now();
    let frozen = Instant::now();
    proxy.freeze();

    // Watch A until it exits: its metrics are served locally, not through the proxy. Watch the
    // lease too, for A's last renewal (one already forwarded may land just after the freeze).
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "default");
    let http = plain_http::Client::new();
    let mut last_renew: Option<SystemTime> = None;
    let mut scrapes: Vec<Scrape> = Vec::new();
    let mut exit = None;
    let bound = frozen + LEASE_DURATION + LATENCY + EXIT_MARGIN;
    while Instant::now() < bound {
        let lease = leases.get_opt(LEASE).await.expect("read the lease").and_then(|l| l.spec).unwrap_or_default();
        if lease.holder_identity.as_deref().is_some_and(|h| h.starts_with("replica-a_"))
            && let Some(renewed) = lease.renew_time
        {
            let renewed = SystemTime::from(renewed.0);
            last_renew = Some(last_renew.map_or(renewed, |l| l.max(renewed)));
        }
        if let Some(status) = a.try_exit() {
            exit = Some((status, SystemTime::now(), frozen.elapsed()));
            break;
        }
        let sent = SystemTime::now();
        if let Ok((200, body)) = http.get(a.metrics, "/metrics").await {
            scrapes.push(Scrape { sent, answered: SystemTime::now(), mutations: mutations(&body) });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // The earliest moment B could hold the lease: A's last renewal (written with A's clock at
    // the start of that attempt) plus the lease duration; B counts from when it saw it change.
    let last_renew = last_renew.expect("A held the lease after the freeze");
    let b_could_lead = last_renew + LEASE_DURATION;
    let show = |t: SystemTime| at(t, frozen_wall);
    let late: Vec<String> = scrapes
        .windows(2)
        .filter(|w| w[1].mutations > w[0].mutations && w[1].answered >= b_could_lead)
        .map(|w| {
            format!("{} more between {} and {}", w[1].mutations - w[0].mutations, show(w[0].sent), show(w[1].answered))
        })
        .collect();
    assert!(
        late.is_empty(),
        "A made provider mutations after B could hold the lease (A last renewed at {}, so from {}; times from \
         the freeze): {late:?}; A's last log lines: {:#?}",
        show(last_renew),
        show(b_could_lead),
        a.log_tail(20)
    );
    let Some((status, exited, after)) = exit else {
        panic!(
            "A still runs {:?} after its API connection froze (renew deadline {RENEW_DEADLINE:?}); last log lines: {:#?}",
            frozen.elapsed(),
            a.log_tail(20)
        );
    };
    assert!(!status.success(), "losing the lease must exit non-zero: {status}");
    assert!(after <= RENEW_DEADLINE + EXIT_MARGIN, "A exited {after:?} after the freeze; log: {:#?}", a.log_tail(20));
    assert!(
        exited < b_could_lead,
        "A was still running at {} when B could lead from {}",
        show(exited),
        show(b_could_lead)
    );
    assert!(a.log_contains("lost leadership"), "A says why it exits; log: {:#?}", a.log_tail(20));

    // B takes over once the lease expired on its clock, never before, and converges everything.
    b.wait_metric("cloudlb_leader", &[], "B leads", |v| v == 1.0).await;
    let lease = leases.get(LEASE).await.expect("lease").spec.unwrap_or_default();
    assert!(lease.holder_identity.as_deref().is_some_and(|h| h.starts_with("replica-b_")), "{lease:?}");
    let acquired = SystemTime::from(lease.acquire_time.expect("acquire time").0);
    assert!(
        acquired >= b_could_lead,
        "B acquired at {}, before A's lease could have expired ({})",
        show(acquired),
        show(b_could_lead)
    );
    for n in names {
        c.wait_address(n).await;
    }
    assert!(b.calls("ensure").await >= names.len() as u64);
    eprintln!(
        "from the freeze: A last renewed {}, exited {} ({status}); B could lead from {}, acquired {}; \
         A's mutating calls ended: {}",
        show(last_renew),
        show(exited),
        show(b_could_lead),
        show(acquired),
        scrapes.last().map_or(0, |s| s.mutations)
    );
    b.stop().await;
}

/// SIGTERM to a replica that never led ends it cleanly, holding nothing.
#[tokio::test]
async fn a_standby_stops_cleanly_on_sigterm() {
    let c = Cluster::start().await;
    c.add_node("node-a", "10.0.0.1", &[]).await;
    let a = Controller::start(&c, &[]).await;
    a.wait_metric("cloudlb_leader", &[], "A leads", |v| v == 1.0).await;
    let b = Controller::start(&c, &[]).await;
    assert_eq!(b.metric("cloudlb_leader", &[]).await, 0.0, "B is a standby");
    b.stop().await;
    a.stop().await;
}

/// The proxy itself: bytes flow, stop while frozen with the connection still open (and new
/// connections accepted but silent), and flow again after a thaw.
#[tokio::test]
async fn the_freeze_proxy_holds_bytes_but_keeps_sockets_open() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let echo_addr = echo.local_addr().expect("echo address");
    tokio::spawn(async move {
        while let Ok((s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let proxy = FreezeProxy::start(echo_addr).await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.expect("connect");
    let mut got = [0u8; 4];
    s.write_all(b"ping").await.expect("write");
    tokio::time::timeout(WAIT, s.read_exact(&mut got)).await.expect("echo").expect("read");
    assert_eq!(&got, b"ping");

    proxy.freeze();
    s.write_all(b"held").await.expect("writes still succeed: the socket is open");
    let held = tokio::time::timeout(Duration::from_millis(300), s.read(&mut got)).await;
    assert!(held.is_err(), "nothing comes back while frozen: {held:?}");
    let mut fresh = tokio::net::TcpStream::connect(proxy.addr()).await.expect("connect while frozen");
    fresh.write_all(b"new!").await.expect("write");

    proxy.thaw();
    tokio::time::timeout(WAIT, s.read_exact(&mut got)).await.expect("resumed").expect("read");
    assert_eq!(&got, b"held");
    tokio::time::timeout(WAIT, fresh.read_exact(&mut got)).await.expect("resumed").expect("read");
    assert_eq!(&got, b"new!");
}
