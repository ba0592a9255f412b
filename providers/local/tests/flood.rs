//! A flood against one load balancer stays within its caps: thousands of new UDP flows and
//! over a thousand TCP connection attempts from many loopback source addresses leave the
//! process's descriptors, its live flows and connections, and its memory under bounds computed
//! from the caps, while a TCP connection and a UDP flow opened before the flood keep working
//! throughout. Its own test binary, so that no other test opens descriptors or allocates
//! meanwhile.
//!
//! Everything runs in this process (clients, load balancer, backends), so the descriptor bound
//! counts every side: the test's own client sockets (known), and per proxied TCP connection the
//! load balancer's two sockets plus the backend's one; per UDP flow the load balancer's socket
//! towards the backend.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cloudlb_provider::{Protocol, Provider, conformance};
use cloudlb_provider_local::{LocalProvider, TrafficStats};
use common::*;
use tokio::net::{TcpStream, UdpSocket};

const TCP_CAP: usize = 200;
const TCP_PER_SOURCE: usize = 20;
const UDP_CAP: usize = 300;

/// UDP: sources x sockets per source, sent in batches small enough for the listener's receive
/// buffer (so that every datagram is accounted, none lost in the kernel).
const UDP_SOURCES: u8 = 50;
const UDP_PER_SOURCE: usize = 80;
const UDP_BATCH: usize = 100;

/// TCP: one greedy source first (it meets its per-source cap), then many sources at once.
const GREEDY_ATTEMPTS: usize = 60;
const TCP_SOURCES: u8 = 40;
const TCP_PER_SOURCE_ATTEMPTS: usize = 30;

/// Descriptors the runtime, timers and the like may open besides (generous).
const FD_SLACK: usize = 32;

/// Memory per proxied TCP connection in this process: the load balancer's task with its two
/// 4 KiB starting buffers (idle connections never grow them), the backend's task and the pages
/// of its buffer it touched, the test's client. Measured here at about 25 KiB; without the caps
/// the flood's 1,260 connections grow RSS by about 30 MiB.
const TCP_CONN_BYTES: u64 = 32 * 1024;
/// Per UDP flow: its reply task, map entry and socket object (measured about 1.7 KiB: reply
/// tasks share their thread's receive buffer).
const UDP_FLOW_BYTES: u64 = 4 * 1024;
/// The test's own transient clients and address set, and allocator slack.
const RSS_SLACK_BYTES: u64 = 8 * 1024 * 1024;

fn totals(p: &LocalProvider) -> TrafficStats {
    p.stats().totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_from_many_sources_stays_within_the_caps() {
    bounded(async {
        let p = Arc::new(provider_with("127.244.20.0/24", |c| {
            c.max_tcp_connections = TCP_CAP;
            c.max_tcp_connections_per_source = TCP_PER_SOURCE;
            c.max_udp_flows = UDP_CAP;
            c.max_udp_flows_total = 10 * UDP_CAP;
        }));
        let tcp = TcpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let udp = UdpBackend::start("u", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let mut s = spec(&[(18800, Protocol::Tcp, tcp.addr.port()), (18800, Protocol::Udp, udp.addr.port())], &["127.0.0.2"]);
        s.health_check.interval_seconds = 3600;
        let id = conformance::id("flood");
        let st = p.ensure(&id, &s, None).await.unwrap();
        let lb = lb_addr(&st, 18800);

        // The connection and the flow opened before the flood.
        let mut existing = connect(lb, Some("127.0.0.3")).await.unwrap();
        assert_eq!(who_on(&mut existing).await.unwrap(), "a");
        let existing_udp = UdpSocket::bind("127.0.0.3:0").await.unwrap();
        assert_eq!(udp_ask(&existing_udp, lb, b"before", Duration::from_secs(2)).await.unwrap(), b"u:before");

        let fds_before = open_fds();
        let rss_before = rss_kib();

        // Both keep answering every 50 ms for as long as the flood lasts.
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let checker = {
            let (stop, answered) = (Arc::clone(&stop), Arc::clone(&answered));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(who_on(&mut existing).await.unwrap(), "a", "existing TCP connection during the flood");
                    // UDP may lose a datagram in a full socket buffer: a few tries, each bounded.
                    let mut ok = false;
                    for _ in 0..5 {
                        if let Ok(r) = udp_ask(&existing_udp, lb, b"during", Duration::from_millis(500)).await {
                            assert_eq!(r, b"u:during");
                            ok = true;
                            break;
                        }
                    }
                    assert!(ok, "existing UDP flow during the flood");
                    answered.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                (existing, existing_udp)
            })
        };

        // UDP: thousands of new flows from UDP_SOURCES addresses. Each batch is sent, then waited
        // for until the load balancer has accounted every datagram (as a flow or a refusal).
        let mut seen: HashSet<SocketAddr> = HashSet::new();
        let accounted = |t: &TrafficStats| {
            t.udp_flows + t.udp_datagrams_refused_lb_limit + t.udp_datagrams_refused_total_limit
        };
        let mut expected = accounted(&totals(&p));
        let mut batch = Vec::with_capacity(UDP_BATCH);
        for round in 0..UDP_PER_SOURCE {
            for src in 1..=UDP_SOURCES {
                let sock = UdpSocket::bind((Ipv4Addr::new(127, 1, 0, src), 0)).await.unwrap();
                // A port used before would be an existing flow, not a new one: skip it.
                if seen.insert(sock.local_addr().unwrap()) {
                    batch.push(sock);
                }
            }
            if batch.len() >= UDP_BATCH || round == UDP_PER_SOURCE - 1 {
                for sock in &batch {
                    sock.send_to(b"f", lb).await.unwrap();
                }
                expected += batch.len() as u64;
                eventually("every flood datagram accounted", Duration::from_secs(10), || {
                    accounted(&totals(&p)) == expected
                })
                .await;
                batch.clear();
            }
        }
        let new_flows = seen.len() as u64;
        assert!(new_flows > 3000, "{new_flows} distinct flood sources");
        let t = totals(&p);
        // The existing flow is one of the UDP_CAP.
        assert_eq!(t.udp_flows, UDP_CAP as u64, "flows opened: exactly up to the cap");
        assert_eq!(t.udp_datagrams_refused_lb_limit, new_flows - (UDP_CAP as u64 - 1));
        assert_eq!(t.udp_datagrams_refused_total_limit, 0);
        assert!(t.udp_flows_active <= UDP_CAP as u64, "live flows {} over the cap", t.udp_flows_active);

        // TCP: a greedy source, then many at once. Accepted connections are held open.
        let greedy = attempts(lb, IpAddr::from([127, 2, 1, 1]), GREEDY_ATTEMPTS).await;
        assert_eq!(greedy.len(), TCP_PER_SOURCE, "one source gets exactly its cap");
        let mut wave = tokio::task::JoinSet::new();
        for src in 1..=TCP_SOURCES {
            wave.spawn(attempts(lb, IpAddr::from([127, 2, 0, src]), TCP_PER_SOURCE_ATTEMPTS));
        }
        let mut held = greedy;
        while let Some(r) = wave.join_next().await {
            held.extend(r.unwrap());
        }
        let total_attempts = (GREEDY_ATTEMPTS + TCP_SOURCES as usize * TCP_PER_SOURCE_ATTEMPTS) as u64;
        assert_eq!(held.len(), TCP_CAP - 1, "the load balancer holds exactly its cap (with the existing one)");
        let t = totals(&p);
        assert_eq!(t.connections_accepted, TCP_CAP as u64);
        assert_eq!(t.connections_active, TCP_CAP as u64);
        assert!(t.connections_refused_source_limit >= (GREEDY_ATTEMPTS - TCP_PER_SOURCE) as u64, "{t:?}");
        assert_eq!(
            t.connections_refused_lb_limit + t.connections_refused_source_limit,
            total_attempts - (TCP_CAP as u64 - 1),
            "every other attempt refused and counted"
        );

        // Descriptors: the test's own held clients, then per connection and per flow at most
        // what the caps allow.
        let fds = open_fds();
        let bound = fds_before + held.len() + 3 * TCP_CAP + UDP_CAP + FD_SLACK;
        assert!(fds <= bound, "{fds} descriptors open, bound {bound} (before the flood: {fds_before})");
        // Memory.
        let rss = rss_kib();
        let grew = rss.saturating_sub(rss_before) * 1024;
        let rss_bound = TCP_CAP as u64 * TCP_CONN_BYTES + UDP_CAP as u64 * UDP_FLOW_BYTES + RSS_SLACK_BYTES;
        assert!(
            grew <= rss_bound,
            "RSS grew by {} KiB (from {rss_before} KiB), bound {} KiB",
            grew / 1024,
            rss_bound / 1024
        );
        eprintln!(
            "flood: {new_flows} new UDP flows and {total_attempts} TCP attempts; descriptors {fds_before} -> {fds} (bound {bound}); RSS {rss_before} -> {rss} KiB (bound +{} KiB)",
            rss_bound / 1024
        );

        stop.store(true, Ordering::Relaxed);
        let (mut existing, existing_udp) = checker.await.expect("the existing connection and flow kept working");
        assert!(answered.load(Ordering::Relaxed) >= 3, "checked during the flood");
        assert_eq!(who_on(&mut existing).await.unwrap(), "a");
        assert_eq!(udp_ask(&existing_udp, lb, b"after", Duration::from_secs(2)).await.unwrap(), b"u:after");

        // Closing the flood's connections gives their slots back: new ones are accepted again.
        drop(held);
        eventually("flood connections closed", Duration::from_secs(10), || totals(&p).connections_active == 1).await;
        assert_eq!(who(lb, Some("127.2.1.1")).await.unwrap(), "a");
        p.delete(&id, None).await.unwrap();
        drop((existing, existing_udp));
        eventually("descriptors back to where they were", Duration::from_secs(10), || open_fds() <= fds_before).await;
    })
    .await;
}

/// `n` connection attempts from `source`, one after another; the ones the load balancer
/// accepted (they answer) are returned open, the refused ones (reset) are closed at once.
async fn attempts(lb: SocketAddr, source: IpAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        let Ok(mut c) = connect(lb, Some(&source.to_string())).await else { continue };
        if let Ok(Ok(who)) = tokio::time::timeout(Duration::from_secs(5), who_on(&mut c)).await {
            assert_eq!(who, "a");
            held.push(c);
        }
    }
    held
}
