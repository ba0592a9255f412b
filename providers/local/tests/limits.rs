//! The data plane's caps against real sockets on 127.0.0.0/8 (client sockets bound to distinct
//! loopback addresses are distinct sources): TCP connections per source address and per load
//! balancer, UDP flows per load balancer and in total, and the TCP idle timeout. Each test
//! checks that the connection or flow past a cap is refused and counted under its own reason,
//! that the ones already open keep passing data, and that a slot comes back when its
//! connection or flow ends.
//!
//! Pools 127.244.N.0/24; backends on 127.0.0.2; clients on 127.0.0.50 and up.

mod common;

use std::time::{Duration, Instant};

use cloudlb_provider::{Protocol, Provider, conformance};
use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::UdpSocket;

const SECS: Duration = Duration::from_secs(10);

/// How long a UDP client waits for an answer it expects.
const REPLY: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_per_source_cap_refuses_only_that_source_and_frees_on_close() {
    bounded(async {
        let p = provider_with("127.244.1.0/24", |c| {
            c.max_tcp_connections = 100;
            c.max_tcp_connections_per_source = 3;
        });
        let backend = TcpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let id = conformance::id("per-source");
        let lb = lb_addr(
            &p.ensure(&id, &spec(&[(18700, Protocol::Tcp, backend.addr.port())], &["127.0.0.2"]), None).await.unwrap(),
            18700,
        );

        let mut held = Vec::new();
        for _ in 0..3 {
            let mut c = connect(lb, Some("127.0.0.50")).await.unwrap();
            assert_eq!(who_on(&mut c).await.unwrap(), "a");
            held.push(c);
        }
        assert!(who(lb, Some("127.0.0.50")).await.is_err(), "a 4th connection from one source is reset");
        let t = p.stats().totals;
        assert_eq!((t.connections_refused_source_limit, t.connections_refused_lb_limit), (1, 0));
        assert_eq!(t.connections_accepted, 3);
        assert_eq!(
            backend.served.load(std::sync::atomic::Ordering::Relaxed),
            3,
            "the refused one never reached the target"
        );

        assert_eq!(who(lb, Some("127.0.0.51")).await.unwrap(), "a", "another source is not affected");
        for c in &mut held {
            assert_eq!(who_on(c).await.unwrap(), "a", "connections already open keep working");
        }

        // Closing one gives its slot back (once the load balancer has seen it close).
        drop(held.pop());
        let again = until_ok("a slot freed for 127.0.0.50", SECS, || who(lb, Some("127.0.0.50"))).await;
        assert_eq!(again, "a");
        drop(held);
        eventually("every connection closed", SECS, || p.stats().totals.connections_active == 0).await;
        // With all closed, the source has its full allowance again.
        let mut fresh = Vec::new();
        for _ in 0..3 {
            let mut c = connect(lb, Some("127.0.0.50")).await.unwrap();
            assert_eq!(who_on(&mut c).await.unwrap(), "a");
            fresh.push(c);
        }
        p.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_per_load_balancer_cap_spans_its_listeners() {
    bounded(async {
        let p = provider_with("127.244.2.0/24", |c| c.max_tcp_connections = 4);
        let backend = TcpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let port = backend.addr.port();
        let id = conformance::id("per-lb");
        let st = p
            .ensure(&id, &spec(&[(18710, Protocol::Tcp, port), (18711, Protocol::Tcp, port)], &["127.0.0.2"]), None)
            .await
            .unwrap();
        let (one, two) = (lb_addr(&st, 18710), lb_addr(&st, 18711));

        let mut held = Vec::new();
        for (to, from) in [(one, "127.0.0.70"), (one, "127.0.0.71"), (two, "127.0.0.72"), (two, "127.0.0.73")] {
            let mut c = connect(to, Some(from)).await.unwrap();
            assert_eq!(who_on(&mut c).await.unwrap(), "a");
            held.push(c);
        }
        assert!(who(two, Some("127.0.0.74")).await.is_err(), "a 5th connection is reset");
        assert!(who(one, Some("127.0.0.75")).await.is_err(), "on either listener: the cap is the load balancer's");
        let t = p.stats().totals;
        assert_eq!((t.connections_refused_lb_limit, t.connections_refused_source_limit), (2, 0));
        for c in &mut held {
            assert_eq!(who_on(c).await.unwrap(), "a", "connections already open keep working");
        }

        drop(held.swap_remove(0));
        assert_eq!(until_ok("a slot freed", SECS, || who(two, Some("127.0.0.74"))).await, "a");
        p.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_caps_per_load_balancer_and_in_total() {
    bounded(async {
        let p = provider_with("127.244.3.0/24", |c| {
            c.max_udp_flows = 3;
            c.max_udp_flows_total = 5;
        });
        let udp = UdpBackend::start("u", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let s = spec(&[(18720, Protocol::Udp, udp.addr.port())], &["127.0.0.2"]);
        let (id1, id2) = (conformance::id("udp-cap-1"), conformance::id("udp-cap-2"));
        let lb1 = lb_addr(&p.ensure(&id1, &s, None).await.unwrap(), 18720);
        let lb2 = lb_addr(&p.ensure(&id2, &s, None).await.unwrap(), 18720);
        let traffic = |lb: std::net::SocketAddr| {
            p.stats().load_balancers.into_iter().find(|l| l.address == lb.ip()).map(|l| l.traffic).unwrap()
        };

        let mut clients = Vec::new();
        for from in ["127.0.0.80", "127.0.0.81", "127.0.0.82"] {
            let c = UdpSocket::bind((from, 0)).await.unwrap();
            assert_eq!(udp_ask(&c, lb1, b"hi", REPLY).await.unwrap(), b"u:hi");
            clients.push(c);
        }
        // A 4th flow on the first load balancer: its cap.
        let over = UdpSocket::bind("127.0.0.83:0").await.unwrap();
        over.send_to(b"x", lb1).await.unwrap();
        eventually("refused by the load balancer's cap", SECS, || traffic(lb1).udp_datagrams_refused_lb_limit == 1)
            .await;
        let mut buf = [0u8; 16];
        assert!(over.try_recv_from(&mut buf).is_err(), "a refused datagram gets no answer");

        // Two flows on the second one, then the process's total (3 + 2) is reached.
        for from in ["127.0.0.84", "127.0.0.85"] {
            let c = UdpSocket::bind((from, 0)).await.unwrap();
            assert_eq!(udp_ask(&c, lb2, b"hi", REPLY).await.unwrap(), b"u:hi");
            clients.push(c);
        }
        let late = UdpSocket::bind("127.0.0.86:0").await.unwrap();
        late.send_to(b"x", lb2).await.unwrap();
        eventually("refused by the total cap", SECS, || traffic(lb2).udp_datagrams_refused_total_limit == 1).await;
        let (t1, t2) = (traffic(lb1), traffic(lb2));
        assert_eq!((t1.udp_flows, t1.udp_flows_active, t2.udp_flows, t2.udp_flows_active), (3, 3, 2, 2));
        assert_eq!((t1.udp_datagrams_refused_total_limit, t2.udp_datagrams_refused_lb_limit), (0, 0));

        // Flows already open keep working on both.
        for (c, lb) in clients.iter().zip([lb1, lb1, lb1, lb2, lb2]) {
            assert_eq!(udp_ask(c, lb, b"again", REPLY).await.unwrap(), b"u:again");
        }

        // Deleting the first load balancer ends its flows: their slots in the total come back.
        p.delete(&id1, None).await.unwrap();
        let reply =
            until_ok("a total slot freed", SECS, || udp_ask(&late, lb2, b"now", Duration::from_millis(200))).await;
        assert_eq!(reply, b"u:now");
        assert_eq!(traffic(lb2).udp_flows_active, 3);
        p.delete(&id2, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_slot_comes_back_as_soon_as_its_flow_idles_out() {
    bounded(async {
        let p = provider_with("127.244.4.0/24", |c| {
            c.max_udp_flows = 1;
            c.udp_idle_timeout = Duration::from_secs(2);
        });
        let udp = UdpBackend::start("u", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let id = conformance::id("udp-idle-slot");
        let lb = lb_addr(
            &p.ensure(&id, &spec(&[(18730, Protocol::Udp, udp.addr.port())], &["127.0.0.2"]), None).await.unwrap(),
            18730,
        );

        let first = UdpSocket::bind("127.0.0.90:0").await.unwrap();
        assert_eq!(udp_ask(&first, lb, b"1", REPLY).await.unwrap(), b"u:1");
        let second = UdpSocket::bind("127.0.0.91:0").await.unwrap();
        second.send_to(b"x", lb).await.unwrap();
        eventually("second flow refused", SECS, || p.stats().totals.udp_datagrams_refused_lb_limit == 1).await;

        eventually("first flow idled out", SECS, || p.stats().totals.udp_flows_active == 0).await;
        // No retry: the slot is free the moment the flow no longer counts as active (not at the
        // next periodic sweep).
        assert_eq!(udp_ask(&second, lb, b"2", REPLY).await.unwrap(), b"u:2");
        assert_eq!(p.stats().totals.udp_datagrams_refused_lb_limit, 1);
        p.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_idle_timeout_closes_idle_connections_only() {
    bounded(async {
        let timeout = Duration::from_secs(1);
        let p = provider_with("127.244.5.0/24", |c| c.tcp_idle_timeout = timeout);
        let backend = TcpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let id = conformance::id("tcp-idle");
        let lb = lb_addr(
            &p.ensure(&id, &spec(&[(18740, Protocol::Tcp, backend.addr.port())], &["127.0.0.2"]), None).await.unwrap(),
            18740,
        );

        let mut idle = connect(lb, Some("127.0.0.100")).await.unwrap();
        let mut busy = connect(lb, Some("127.0.0.101")).await.unwrap();
        assert_eq!(who_on(&mut idle).await.unwrap(), "a");
        let idle_since = Instant::now();
        // The busy one talks every 250 ms for twice the timeout: never idle that long.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert_eq!(who_on(&mut busy).await.unwrap(), "a", "an active connection is not closed");
        }
        let mut buf = [0u8; 8];
        let closed = tokio::time::timeout(SECS, idle.read(&mut buf)).await.expect("the idle connection must be closed");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        assert!(idle_since.elapsed() >= timeout, "closed before the timeout: {:?}", idle_since.elapsed());
        eventually("idle close counted, both sides closed", SECS, || {
            let t = p.stats().totals;
            t.connections_idle_closed == 1 && t.connections_active == 1
        })
        .await;

        // Once quiet, the busy one goes the same way.
        let closed = tokio::time::timeout(SECS, busy.read(&mut buf)).await.expect("idle after its last exchange");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        eventually("both counted", SECS, || {
            let t = p.stats().totals;
            t.connections_idle_closed == 2 && t.connections_active == 0
        })
        .await;
        p.delete(&id, None).await.unwrap();
    })
    .await;
}
