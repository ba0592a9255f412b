//! The local provider against real sockets on 127.0.0.0/8: the conformance suite, then the data
//! plane (echo, balancing, affinity, health, source ranges, drain, PROXY v2, half-close) and the
//! control plane's error paths (bind conflicts, pool exhaustion, requested IPs, restarts).
//!
//! Every test has its own address pool (127.241.N.0/24 ...), so tests run in parallel without
//! sharing addresses; backends stand in for node ports on 127.0.0.2..9 with ephemeral ports.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cloudlb_provider::{
    ErrorClass, HealthCheckProtocol, HealthTarget, IngressPoint, Protocol, Provider, ProviderError, SessionAffinity,
    conformance,
};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

const SECS: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    bounded(async {
        // The suite listens on ports 80/443/8080: privileged unless running as root (as tests and
        // CI do here). As non-root the bind fails with a Permission error naming the port.
        let p = provider("127.241.0.0/24");
        conformance::run_all(&p).await;
        assert!(p.stats().load_balancers.is_empty(), "the suite cleans up after itself");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_and_udp_echo_on_one_port() {
    bounded(async {
        let p = provider("127.241.1.0/24");
        let tcp = TcpBackend::start("tcp-a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let udp = UdpBackend::start("udp-a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let s =
            spec(&[(18080, Protocol::Tcp, tcp.addr.port()), (18080, Protocol::Udp, udp.addr.port())], &["127.0.0.2"]);
        let id = conformance::id("echo");
        let st = p.ensure(&id, &s, None).await.unwrap();
        assert_eq!(st.ip_mode, cloudlb_provider::IpMode::Proxy);
        assert_eq!(st.spec_hash, Some(s.hash()));
        let lb = lb_addr(&st, 18080);

        let mut c = connect(lb, None).await.unwrap();
        c.write_all(b"hello through the LB").await.unwrap();
        let mut buf = [0u8; 20];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello through the LB");
        drop(c);

        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(lb).await.unwrap();
        for i in 0..3 {
            client.send(format!("ping{i}").as_bytes()).await.unwrap();
            let mut buf = [0u8; 64];
            let n = client.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], format!("udp-a:ping{i}").as_bytes());
        }
        eventually("tcp closed and counted", SECS, || {
            let t = p.stats().totals;
            t.connections_accepted == 1
                && t.connections_active == 0
                && t.bytes_in == 20 + 15
                && t.bytes_out == 20 + 3 * 11
        })
        .await;
        let t = p.stats().totals;
        assert_eq!(t.udp_flows, 1, "one client address is one flow");
        assert_eq!(t.udp_flows_active, 1);
        p.delete(&id, None).await.unwrap();
        assert!(p.get(&id, None).await.unwrap().is_none());
        // The listener is gone.
        assert!(connect(lb, None).await.is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_across_two_backends_and_client_ip_affinity_sticks() {
    bounded(async {
        let p = provider("127.241.2.0/24");
        let b = tcp_backends(&["127.0.0.2", "127.0.0.3"], &["a", "b"]).await;
        let mut s = spec(&[(18081, Protocol::Tcp, b[0].addr.port())], &["127.0.0.2", "127.0.0.3"]);
        let id = conformance::id("balance");
        let st = p.ensure(&id, &s, None).await.unwrap();
        let lb = lb_addr(&st, 18081);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..20 {
            *counts.entry(who(lb, None).await.unwrap()).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 2, "{counts:?}");
        assert!(counts.values().all(|n| *n >= 5), "both backends take a fair share: {counts:?}");

        s.session_affinity = SessionAffinity::ClientIp { timeout_seconds: 10800 };
        let st2 = p.ensure(&id, &s, Some(&st.record)).await.unwrap();
        assert_eq!(st2.ingress, st.ingress);
        let mut homes = std::collections::BTreeSet::new();
        for c in 10..26 {
            let from = format!("127.0.0.{c}");
            let home = who(lb, Some(&from)).await.unwrap();
            for _ in 0..4 {
                assert_eq!(who(lb, Some(&from)).await.unwrap(), home, "client {from} must stick to {home}");
            }
            homes.insert(home);
        }
        assert_eq!(homes.len(), 2, "16 clients should be spread over both backends");
        p.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_health_check_failover_and_recovery() {
    bounded(async {
        let p = provider("127.241.3.0/24");
        let mut b = tcp_backends(&["127.0.0.4", "127.0.0.5"], &["a", "b"]).await;
        let port = b[0].addr.port();
        let s = spec(&[(18082, Protocol::Tcp, port)], &["127.0.0.4", "127.0.0.5"]);
        let id = conformance::id("failover");
        let lb = lb_addr(&p.ensure(&id, &s, None).await.unwrap(), 18082);
        eventually("both probed healthy", SECS, || {
            let st = p.stats();
            st.load_balancers[0].targets.iter().all(|t| t.healthy && t.probes >= 1)
        })
        .await;

        let stopped = b.pop().unwrap();
        let b_addr = stopped.addr;
        stopped.stop().await;
        // Until the verdict flips, a refused connect is retried on the other target: no error.
        assert_eq!(who(lb, None).await.unwrap(), "a");
        eventually("b out of rotation after 2 failed probes", SECS, || {
            target_healthy(&p.stats(), "127.0.0.5") == Some(false)
        })
        .await;
        let failures = p.stats().load_balancers[0]
            .targets
            .iter()
            .find(|t| t.node.contains("127.0.0.5"))
            .unwrap()
            .consecutive_failures;
        assert!(failures >= 2, "{failures}");
        for _ in 0..10 {
            assert_eq!(who(lb, None).await.unwrap(), "a");
        }

        let _b = restart("b", b_addr).await;
        eventually("b back in rotation", SECS, || target_healthy(&p.stats(), "127.0.0.5") == Some(true)).await;
        let mut seen_b = false;
        for _ in 0..10 {
            seen_b |= who(lb, None).await.unwrap() == "b";
        }
        assert!(seen_b, "a recovered target takes traffic again");
        assert_eq!(p.stats().totals.panic_routes, 0);

        // Every target down: fail open (panic mode), counted.
        drop(_b);
        b.pop().unwrap().stop().await;
        eventually("both unhealthy", SECS, || p.stats().load_balancers[0].targets.iter().all(|t| !t.healthy)).await;
        assert!(who(lb, None).await.is_err(), "nothing listens: the client is closed");
        assert!(p.stats().totals.panic_routes >= 1);
        assert!(p.stats().totals.no_target >= 1);
        p.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_healthz_on_health_check_node_port() {
    bounded(async {
        let p = provider("127.241.4.0/24");
        let b = tcp_backends(&["127.0.0.6", "127.0.0.7"], &["a", "b"]).await;
        // Health endpoints on one port on both nodes, like healthCheckNodePort.
        let (ha, hb) = loop {
            let ha = HealthServer::start("127.0.0.6:0".parse().unwrap()).await.unwrap();
            if let Ok(hb) = HealthServer::start(SocketAddr::new(ip("127.0.0.7"), ha.addr.port())).await {
                break (ha, hb);
            }
        };
        let mut s = spec(&[(18083, Protocol::Tcp, b[0].addr.port())], &["127.0.0.6", "127.0.0.7"]);
        s.health_check.target = HealthTarget::ServiceHealthCheckNodePort;
        s.health_check.protocol = HealthCheckProtocol::Http;
        s.health_check.port = Some(ha.addr.port());
        s.health_check.path = Some("/healthz".into());
        let id = conformance::id("healthz");
        let lb = lb_addr(&p.ensure(&id, &s, None).await.unwrap(), 18083);
        eventually("probed", SECS, || p.stats().load_balancers[0].targets.iter().all(|t| t.probes >= 1)).await;
        assert_eq!(target_healthy(&p.stats(), "127.0.0.7"), Some(true));

        hb.ok.store(false, std::sync::atomic::Ordering::Relaxed);
        eventually("503 takes b out", SECS, || target_healthy(&p.stats(), "127.0.0.7") == Some(false)).await;
        for _ in 0..8 {
            assert_eq!(who(lb, None).await.unwrap(), "a", "b still accepts on its node port, but its healthz says no");
        }
        hb.ok.store(true, std::sync::atomic::Ordering::Relaxed);
        eventually("200 brings b back", SECS, || target_healthy(&p.stats(), "127.0.0.7") == Some(true)).await;
        assert_eq!(target_healthy(&p.stats(), "127.0.0.6"), Some(true));
        drop(ha);
        p.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ranges_refuse_outsiders_tcp_and_udp() {
    bounded(async {
        let p = provider("127.241.5.0/24");
        let tcp = TcpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let udp = UdpBackend::start("u", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let mut s =
            spec(&[(18084, Protocol::Tcp, tcp.addr.port()), (18084, Protocol::Udp, udp.addr.port())], &["127.0.0.2"]);
        s.source_ranges = vec!["127.0.0.20/32".parse().unwrap()];
        let id = conformance::id("ranges");
        let lb = lb_addr(&p.ensure(&id, &s, None).await.unwrap(), 18084);

        assert_eq!(who(lb, Some("127.0.0.20")).await.unwrap(), "a");
        assert!(who(lb, Some("127.0.0.21")).await.is_err(), "outside the range: closed at once");
        assert_eq!(
            tcp.served.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "the refused client never reached the backend"
        );

        let outsider = UdpSocket::bind("127.0.0.21:0").await.unwrap();
        outsider.send_to(b"x", lb).await.unwrap();
        eventually("refusals counted", SECS, || {
            let t = p.stats().totals;
            t.connections_refused == 1 && t.udp_datagrams_refused == 1
        })
        .await;
        let insider = UdpSocket::bind("127.0.0.20:0").await.unwrap();
        insider.send_to(b"y", lb).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, _) = insider.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"u:y");
        assert_eq!(p.stats().totals.udp_flows, 1);
        p.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_target_drains_then_closes_and_listeners_converge_in_place() {
    bounded(async {
        let p = provider("127.241.6.0/24");
        let b = tcp_backends(&["127.0.0.8", "127.0.0.9"], &["a", "b"]).await;
        let port = b[0].addr.port();
        let mut s = spec(&[(18085, Protocol::Tcp, port)], &["127.0.0.8"]);
        s.options.insert("drain-timeout-seconds".into(), "2".into());
        let id = conformance::id("drain");
        let st = p.ensure(&id, &s, None).await.unwrap();
        let lb = lb_addr(&st, 18085);
        let mut open = connect(lb, None).await.unwrap();
        assert_eq!(who_on(&mut open).await.unwrap(), "a");

        // Replace the target and add a listener: the open connection on the staying listener
        // keeps working, new connections go to the new target.
        let mut s2 = spec(&[(18085, Protocol::Tcp, port), (18086, Protocol::Tcp, port)], &["127.0.0.9"]);
        s2.options = s.options.clone();
        let st2 = p.ensure(&id, &s2, Some(&st.record)).await.unwrap();
        assert_eq!(st2.ingress, st.ingress);
        assert_eq!(who_on(&mut open).await.unwrap(), "a", "draining connection still served");
        assert_eq!(who(lb, None).await.unwrap(), "b");
        assert_eq!(who(lb_addr(&st2, 18086), None).await.unwrap(), "b");

        // After the drain timeout the old connection is closed.
        let mut buf = [0u8; 8];
        let closed = tokio::time::timeout(SECS, open.read(&mut buf)).await.expect("drain must close the connection");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        eventually("drain counted", SECS, || p.stats().totals.drained_closed == 1).await;

        // Removing a listener closes its port; the other one stays.
        let mut s3 = spec(&[(18086, Protocol::Tcp, port)], &["127.0.0.9"]);
        s3.options = s.options.clone();
        p.ensure(&id, &s3, None).await.unwrap();
        assert!(connect(lb, None).await.is_err(), "removed listener no longer accepts");
        assert_eq!(who(lb_addr(&st2, 18086), None).await.unwrap(), "b");
        p.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_address_and_requested_ip_moves_it() {
    bounded(async {
        let backend = TcpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let s = spec(&[(18087, Protocol::Tcp, backend.addr.port())], &["127.0.0.2"]);
        let id = conformance::id("restart");
        let first = provider("127.241.7.0/24");
        // Take a few addresses first so the kept one is not simply "the first".
        for i in 0..3 {
            first.ensure(&conformance::id(&format!("filler{i}")), &s, None).await.unwrap();
        }
        let st = first.ensure(&id, &s, None).await.unwrap();
        let addr = lb_addr(&st, 18087);
        drop(first);
        // The old process is gone once its port can be bound again.
        eventually("old listener released", SECS, || std::net::TcpListener::bind(addr).is_ok()).await;

        let second = provider("127.241.7.0/24");
        let again = second.ensure(&id, &s, Some(&st.record)).await.unwrap();
        assert_eq!(again.ingress, st.ingress, "a restarted provider keeps the recorded address");
        assert_eq!(again.record, st.record);
        assert_eq!(who(addr, None).await.unwrap(), "a");

        // Requested IP inside the pool moves the address; the old one is released.
        let mut moved = s.clone();
        moved.requested_ip = Some(ip("127.241.7.200"));
        let st2 = second.ensure(&id, &moved, Some(&again.record)).await.unwrap();
        assert_eq!(st2.ingress, vec![IngressPoint::Ip(ip("127.241.7.200"))]);
        assert_eq!(who(lb_addr(&st2, 18087), None).await.unwrap(), "a");
        assert!(connect(addr, None).await.is_err(), "old address no longer listens");
        second.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_conflict_is_a_clear_error_and_leaks_nothing() {
    bounded(async {
        let p = provider("127.241.8.0/30");
        let squatter = std::net::TcpListener::bind("127.241.8.1:18501").unwrap();
        let s = spec(&[(18500, Protocol::Tcp, 30000), (18501, Protocol::Tcp, 30001)], &["127.0.0.2"]);
        let id = conformance::id("conflict");
        let err = p.ensure(&id, &s, None).await.unwrap_err();
        assert!(matches!(err, ProviderError::Conflict { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("127.241.8.1:18501") && text.to_lowercase().contains("in use"), "{text}");
        // The port bound before the failure was closed, the address not kept.
        std::net::TcpListener::bind("127.241.8.1:18500").expect("nothing half-made may stay bound");
        assert!(p.get(&id, None).await.unwrap().is_none());
        assert!(p.stats().load_balancers.is_empty());
        drop(squatter);
        let st = p.ensure(&id, &s, None).await.unwrap();
        // The /30 has two addresses: both are free again (the failed ensure kept none).
        let other = conformance::id("conflict-other");
        p.ensure(&other, &spec(&[(18600, Protocol::Tcp, 30000)], &["127.0.0.2"]), None).await.unwrap();
        p.delete(&other, None).await.unwrap();

        // A bind conflict on update leaves the running load balancer as it was.
        let squatter = std::net::TcpListener::bind(lb_addr(&st, 18502)).unwrap();
        let bigger = spec(
            &[(18500, Protocol::Tcp, 30000), (18501, Protocol::Tcp, 30001), (18502, Protocol::Tcp, 30002)],
            &["127.0.0.2"],
        );
        assert!(p.ensure(&id, &bigger, None).await.is_err());
        assert_eq!(p.get(&id, None).await.unwrap().unwrap().spec_hash, Some(s.hash()));
        drop(squatter);
        p.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion_requested_ip_rules_and_validation() {
    bounded(async {
        let p = provider("127.241.9.0/30");
        let s = spec(&[(18090, Protocol::Tcp, 30000)], &["127.0.0.2"]);
        let (a, b, c) = (conformance::id("a"), conformance::id("b"), conformance::id("c"));
        p.ensure(&a, &s, None).await.unwrap();
        p.ensure(&b, &s, None).await.unwrap();
        let err = p.ensure(&c, &s, None).await.unwrap_err();
        assert!(matches!(err, ProviderError::Quota { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::Permanent);
        p.delete(&a, None).await.unwrap();
        p.ensure(&c, &s, None).await.unwrap();

        let mut outside = s.clone();
        outside.requested_ip = Some(ip("10.9.9.9"));
        let err = p.ensure(&conformance::id("d"), &outside, None).await.unwrap_err();
        assert!(matches!(err, ProviderError::Invalid { .. }) && err.to_string().contains("10.9.9.9"), "{err}");
        assert!(p.validate(&outside).iter().any(|m| m.contains("10.9.9.9") && m.contains("127.241.9.0/30")));

        let taken = p.get(&b, None).await.unwrap().unwrap().ingress[0].clone();
        let IngressPoint::Ip(taken) = taken else { panic!() };
        let mut steal = s.clone();
        steal.requested_ip = Some(taken);
        let err = p.ensure(&conformance::id("e"), &steal, None).await.unwrap_err();
        assert!(matches!(err, ProviderError::Conflict { .. }), "{err}");

        let mut bad = s.clone();
        bad.options.insert("proxy-protocol".into(), "v1".into());
        bad.options.insert("drain-timeout-seconds".into(), "soon".into());
        bad.options.insert("proxy-protocl".into(), "v2".into());
        let problems = p.validate(&bad);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|m| m.contains("local.cloudlb.io/proxy-protocol") && m.contains("\"v1\"") && m.contains("\"v2\""))
        );
        assert!(
            problems.iter().any(|m| m.contains("local.cloudlb.io/drain-timeout-seconds") && m.contains("\"soon\""))
        );
        assert!(problems.iter().any(|m| m.contains("local.cloudlb.io/proxy-protocl")));
        let err = p.ensure(&conformance::id("f"), &bad, None).await.unwrap_err();
        assert!(matches!(err, ProviderError::Invalid { .. }), "{err}");
        assert!(p.validate(&s).is_empty());

        let caps = p.capabilities();
        assert!(caps.check(&s).is_empty());
        assert_eq!(caps.ip_mode, cloudlb_provider::IpMode::Proxy);
        assert_eq!(p.name(), "local");
        p.delete(&b, None).await.unwrap();
        p.delete(&c, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_and_half_close() {
    bounded(async {
        let p = provider("127.241.10.0/24");
        let backend = TcpBackend::start("a", "127.0.0.3:0".parse().unwrap()).await.unwrap();
        let mut s = spec(&[(18091, Protocol::Tcp, backend.addr.port())], &["127.0.0.3"]);
        s.options.insert("proxy-protocol".into(), "v2".into());
        let id = conformance::id("proxy");
        let lb = lb_addr(&p.ensure(&id, &s, None).await.unwrap(), 18091);

        // Half-close: the client sends, shuts its write side; the backend sees EOF, echoes what it
        // got and closes; the client reads everything, then EOF.
        let mut c = connect(lb, Some("127.0.0.30")).await.unwrap();
        let client_addr = c.local_addr().unwrap();
        c.write_all(b"last words").await.unwrap();
        c.shutdown().await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"last words");

        let headers = backend.proxy_headers.lock().unwrap().clone();
        assert_eq!(headers, vec![(client_addr, lb)], "PROXY v2 carries the client and the LB address");
        p.delete(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_end_after_the_idle_timeout_and_count_per_client() {
    bounded(async {
        let p = cloudlb_provider_local::LocalProvider::new(cloudlb_provider_local::LocalConfig {
            pools: vec!["127.241.11.0/24".parse().unwrap()],
            udp_idle_timeout: Duration::from_secs(1),
            ..Default::default()
        })
        .unwrap();
        let udp = UdpBackend::start("u", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let s = spec(&[(18092, Protocol::Udp, udp.addr.port())], &["127.0.0.2"]);
        let id = conformance::id("udp-idle");
        let lb = lb_addr(&p.ensure(&id, &s, None).await.unwrap(), 18092);
        for from in ["127.0.0.40", "127.0.0.41"] {
            let c = UdpSocket::bind((from, 0)).await.unwrap();
            c.send_to(b"hi", lb).await.unwrap();
            let mut buf = [0u8; 16];
            let (n, src) = c.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], src), (&b"u:hi"[..], lb), "replies come from the LB address");
        }
        eventually("flows and bytes counted", SECS, || {
            let t = p.stats().totals;
            (t.udp_flows, t.bytes_in, t.bytes_out) == (2, 4, 8)
        })
        .await;
        eventually("idle flows closed", SECS, || p.stats().totals.udp_flows_active == 0).await;
        p.delete(&id, None).await.unwrap();
    })
    .await;
}
