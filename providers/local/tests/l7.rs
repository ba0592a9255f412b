//! The local provider's HTTP (L7) data plane against real sockets and real HTTP clients: the L7
//! conformance suite, routing compared with `L7Spec::select`, default backend and 404, 503 for
//! an unresolved backend, TLS by SNI (two certificates, a wildcard, the default), HTTP/2 over
//! TLS (ALPN) and h2c, WebSocket upgrade, certificate rotation and route swaps under load with
//! zero failed requests, node removal and health failover, connect retry, HTTP->HTTPS redirect,
//! X-Forwarded-* and hop-by-hop headers, request / connect / idle timeouts, parked idle
//! connections that keep working, source ranges, listeners converging in place, delete closing
//! connections, restarts keeping the address, weighted backends, and ensure's error paths.
//!
//! Every test has its own address pool (127.243.N.0/24, used by no other test); backends stand
//! in for node ports on 127.0.0.2..9 with ephemeral ports. Waits are bounded and wait for a
//! condition; the suite-wide bound is `common::LIMIT`.

mod common;
mod l7_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cloudlb_provider::l7::{L7Protocol, Request as RouteRequest, RouteAction, WeightedBackend, normalize_host};
use cloudlb_provider::{ErrorClass, IngressPoint, L7Spec, Provider, ProviderError, conformance};
use common::{bounded, eventually, ip, lb_addr, provider};
use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use l7_support::*;

const SECS: Duration = Duration::from_secs(10);

fn http_stats(p: &cloudlb_provider_local::LocalProvider) -> cloudlb_provider_local::HttpStats {
    p.stats().http_totals
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_l7() {
    bounded(async {
        let p = provider("127.243.0.0/24");
        let caps = p.capabilities().l7.expect("the local provider declares L7 capabilities");
        assert!(caps.https && caps.any_port && caps.redirect_to_https && caps.weighted_backends);
        assert_eq!(caps.ip_mode, cloudlb_provider::IpMode::Proxy);
        conformance::run_all_l7(&p).await;
        assert!(p.stats().load_balancers.is_empty(), "the suite cleans up after itself");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_exactly_like_select() {
    bounded(async {
        let p = provider("127.243.1.0/24");
        let names = ["root", "aaa", "aaa-exact", "bbb", "wild", "any", "default"];
        // Every backend has its own node port on the one node 127.0.0.2.
        let mut backends = Vec::new();
        for n in names {
            backends.push(HttpBackend::start(n, "127.0.0.2:0".parse().unwrap()).await.unwrap());
        }
        let hosts = vec![
            vhost(
                "foo.example",
                vec![
                    (prefix("/"), "root"),
                    (prefix("/aaa"), "aaa"),
                    (exact("/aaa"), "aaa-exact"),
                    (prefix("/aaa/bbb/"), "bbb"),
                ],
            ),
            vhost("*.foo.example", vec![(prefix("/"), "wild")]),
            vhost("", vec![(prefix("/any"), "any")]),
        ];
        let ports: Vec<(&str, Option<u16>)> =
            names.iter().zip(&backends).map(|(n, b)| (*n, Some(b.addr.port()))).collect();
        let mut spec = l7spec(&[18200], hosts, &ports, &["127.0.0.2"]);
        spec.default_action = forward("default");
        let id = conformance::id("routes");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        assert_eq!(st.spec_hash, Some(spec.hash()));
        let lb = lb_addr(&st, 18200);

        let requests = [
            ("foo.example", "/"),
            ("foo.example", "/aaa"),
            ("FOO.example:18200", "/aaa/"),
            ("foo.example", "/aaaccc"),
            ("foo.example", "/aaa/bbb"),
            ("foo.example", "/aaa/bbbxyz"),
            ("foo.example", "/aaa/bbb/ccc"),
            ("bar.foo.example", "/x"),
            ("baz.bar.foo.example", "/x"),
            ("foo.example.", "/aaa"),
            ("other.example", "/any"),
            ("other.example", "/any/thing"),
            ("other.example", "/anything"),
            ("other.example", "/"),
        ];
        let mut client = Client::h1(lb, None).await.unwrap();
        for (host, path) in requests {
            let h = normalize_host(host);
            let want = match spec.select(&RouteRequest { host: &h, path, method: "GET", headers: &[], query: &[] }) {
                RouteAction::Forward(b) => b[0].backend.service.clone(),
                RouteAction::Fixed { status } => status.to_string(),
            };
            let got = client.get(host, path).await.unwrap();
            assert_eq!(got.who(), want, "{host}{path}");
            assert_eq!(got.status, 200);
            assert_eq!(got.header("x-seen-host"), host, "Host is passed on as the client sent it");
        }
        let stats = http_stats(&p);
        assert_eq!(stats.requests, requests.len() as u64);
        assert_eq!(stats.responses_2xx, requests.len() as u64);
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_backend_404_and_unresolved_backend_503() {
    bounded(async {
        let p = provider("127.243.2.0/24");
        let a = HttpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let d = HttpBackend::start("d", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let hosts = vec![vhost("foo.example", vec![(prefix("/a"), "a"), (prefix("/missing"), "missing")])];
        let backends = [("a", Some(a.addr.port())), ("missing", None), ("d", Some(d.addr.port()))];
        let mut spec = l7spec(&[18201], hosts, &backends, &["127.0.0.2"]);
        spec.backends.retain(|b| b.id.service != "d");
        let id = conformance::id("fixed");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let lb = lb_addr(&st, 18201);

        let r = get(lb, "foo.example", "/a/1").await.unwrap();
        assert_eq!((r.status, r.who().as_str()), (200, "a"));
        let r = get(lb, "foo.example", "/nothing").await.unwrap();
        assert_eq!(r.status, 404);
        assert!(r.body.contains("foo.example/nothing"), "{}", r.body);
        let r = get(lb, "unknown.example", "/a").await.unwrap();
        assert_eq!(r.status, 404, "an unknown host without a default backend is 404");
        let r = get(lb, "foo.example", "/missing/x").await.unwrap();
        assert_eq!(r.status, 503);
        assert!(
            r.body.contains("test/missing:80") && r.body.contains("Service test/missing does not exist"),
            "{}",
            r.body
        );
        let r = get(lb, "foo.example", "/a").await.unwrap();
        assert_eq!(r.status, 200, "the rest keeps working next to an unresolved backend");

        // A default backend takes what no route matches.
        let mut with_default = spec.clone();
        with_default.backends.push(cloudlb_provider::l7::Backend {
            id: backend_ref("d"),
            node_port: Some(d.addr.port()),
            problem: None,
            health_check: fast_check(),
        });
        with_default.backends.sort_by(|x, y| x.id.cmp(&y.id));
        with_default.default_action = forward("d");
        p.ensure_l7(&id, &with_default, Some(&st.record)).await.unwrap();
        for (host, path) in [("foo.example", "/nothing"), ("unknown.example", "/a"), ("", "/")] {
            let r = get(lb, host, path).await.unwrap();
            assert_eq!((r.status, r.who()), (200, "d".to_string()), "{host}{path}");
        }
        let s = http_stats(&p);
        assert_eq!((s.not_found, s.unavailable, s.responses_4xx, s.responses_5xx), (2, 1, 2, 1));
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_picks_certificates_by_sni_and_speaks_http2() {
    bounded(async {
        let p = provider("127.243.3.0/24");
        let a = HttpBackend::start("a", "127.0.0.3:0".parse().unwrap()).await.unwrap();
        let ca = Ca::new();
        let foo = ca.leaf(&["foo.example"]);
        let wild = ca.leaf(&["*.wild.example"]);
        let default = ca.leaf(&["default.example"]);
        let hosts = vec![vhost("", vec![(prefix("/"), "a")])];
        let mut spec = l7spec(&[18210, 18211], hosts, &[("a", Some(a.addr.port()))], &["127.0.0.3"]);
        spec.listeners[1].protocol = L7Protocol::Https;
        spec.certificates = vec![
            default.certificate("test/default", &[]),
            foo.certificate("test/foo", &["foo.example"]),
            wild.certificate("test/wild", &["*.wild.example"]),
        ];
        spec.certificates.sort_by(|x, y| x.name.cmp(&y.name));
        assert!(p.validate_l7(&spec).is_empty(), "{:?}", p.validate_l7(&spec));
        let id = conformance::id("tls");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let lb = lb_addr(&st, 18211);

        // Verified by a real client against the CA: each name gets its own certificate.
        for (sni, want) in [
            ("foo.example", &foo.der),
            ("a.wild.example", &wild.der),
            ("b.wild.example", &wild.der),
            ("default.example", &default.der),
        ] {
            let t = tls(lb, sni, Some(ca.roots()), &[b"http/1.1"]).await.unwrap_or_else(|e| panic!("{sni}: {e}"));
            assert_eq!(&t.cert, want, "certificate for {sni}");
            let r = t.client().await.unwrap().get(sni, "/x").await.unwrap();
            assert_eq!((r.status, r.who().as_str(), r.header("x-seen-proto")), (200, "a", "https"));
            assert_eq!(r.header("x-seen-port"), "18211");
        }
        // A wildcard covers one label only; two labels and an IP (no SNI) get the default.
        let t = tls(lb, "x.y.wild.example", None, &[]).await.unwrap();
        assert_eq!(t.cert, default.der, "*.wild.example must not match x.y.wild.example");
        let t = tls(lb, &lb.ip().to_string(), None, &[]).await.unwrap();
        assert_eq!(t.cert, default.der, "no SNI gets the default certificate");
        // A client verifying the name rejects the default certificate for a name it lacks.
        assert!(tls(lb, "x.y.wild.example", Some(ca.roots()), &[]).await.is_err());

        // HTTP/2 over TLS by ALPN; the node still gets HTTP/1.1 with the Host from :authority.
        let t = tls(lb, "foo.example", Some(ca.roots()), &[b"h2", b"http/1.1"]).await.unwrap();
        assert_eq!(t.alpn.as_deref(), Some(&b"h2"[..]));
        let mut h2 = t.client().await.unwrap();
        for _ in 0..3 {
            let r = h2.get("foo.example", "/h2?q=1").await.unwrap();
            assert_eq!(r.version, http::Version::HTTP_2);
            assert_eq!((r.status, r.who().as_str()), (200, "a"));
            assert_eq!(r.header("x-seen-version"), "HTTP/1.1");
            assert_eq!(r.header("x-seen-host"), "foo.example");
            assert_eq!(r.header("x-seen-target"), "/h2?q=1");
            assert!(r.headers.get("connection").is_none() && r.headers.get("keep-alive").is_none());
        }
        // An idle HTTP/1.1 connection is parked (hyper's buffers freed) and keeps working,
        // over TLS and plain.
        let mut parked_tls =
            tls(lb, "foo.example", Some(ca.roots()), &[b"http/1.1"]).await.unwrap().client().await.unwrap();
        let mut parked_plain = Client::h1(lb_addr(&st, 18210), None).await.unwrap();
        assert_eq!(parked_tls.get("foo.example", "/1").await.unwrap().status, 200);
        assert_eq!(parked_plain.get("foo.example", "/1").await.unwrap().status, 200);
        let parks = http_stats(&p).parks;
        eventually("both connections parked", SECS, || http_stats(&p).parks >= parks + 2).await;
        for _ in 0..2 {
            assert_eq!(parked_tls.get("foo.example", "/2").await.unwrap().who(), "a");
            assert_eq!(parked_plain.get("foo.example", "/2").await.unwrap().who(), "a");
        }
        assert!(!parked_tls.is_closed() && !parked_plain.is_closed());

        // h2c (prior knowledge) on the plain listener.
        let mut h2c = Client::h2c(lb_addr(&st, 18210)).await.unwrap();
        let r = h2c.get("foo.example", "/plain").await.unwrap();
        assert_eq!((r.version, r.status, r.header("x-seen-proto")), (http::Version::HTTP_2, 200, "http"));

        let s = http_stats(&p);
        assert!(s.tls_handshakes >= 7, "{s:?}");
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_round_trip() {
    bounded(async {
        let p = provider("127.243.4.0/24");
        let a = HttpBackend::start("ws-node", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let hosts = vec![vhost("ws.example", vec![(prefix("/"), "a")])];
        let spec = l7spec(&[18220], hosts, &[("a", Some(a.addr.port()))], &["127.0.0.2"]);
        let id = conformance::id("ws");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let lb = lb_addr(&st, 18220);
        let stream = tcp(lb, None).await.unwrap();
        let (mut ws, resp) = tokio_tungstenite::client_async("ws://ws.example/ws", stream).await.unwrap();
        assert_eq!(resp.status(), 101);
        for i in 0..5 {
            ws.send(format!("hello {i}").into()).await.unwrap();
            let msg = ws.next().await.expect("an answer").unwrap();
            assert_eq!(msg.into_text().unwrap().as_str(), format!("ws-node:hello {i}"));
        }
        ws.close(None).await.unwrap();
        let s = http_stats(&p);
        assert_eq!((s.upgrades, s.responses_1xx), (1, 1));
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_request() {
    bounded(async {
        let p = provider("127.243.5.0/24");
        let a = HttpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let ca = Ca::new();
        let v1 = ca.leaf(&["foo.example"]);
        let v2 = ca.leaf(&["foo.example"]);
        let hosts = vec![vhost("foo.example", vec![(prefix("/"), "a")])];
        let mut spec = l7spec(&[18230], hosts, &[("a", Some(a.addr.port()))], &["127.0.0.2"]);
        spec.listeners[0].protocol = L7Protocol::Https;
        spec.certificates = vec![v1.certificate("test/foo", &["foo.example"])];
        let id = conformance::id("rotate");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let lb = lb_addr(&st, 18230);

        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let seen_v2 = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 0..4 {
            let (ok, failures, stop, seen_v2) = (ok.clone(), failures.clone(), stop.clone(), seen_v2.clone());
            let roots = ca.roots();
            let v2_der = v2.der.clone();
            workers.push(tokio::spawn(async move {
                // Half the workers keep one connection open across the rotation, the others
                // make a new handshake every few requests.
                let fresh_every = if w % 2 == 0 { u64::MAX } else { 5 };
                let mut client: Option<Client> = None;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if client.is_none() || n.is_multiple_of(fresh_every) {
                        match tls(lb, "foo.example", Some(roots.clone()), &[b"http/1.1"]).await {
                            Ok(t) => {
                                if t.cert == v2_der {
                                    seen_v2.store(true, Ordering::Relaxed);
                                }
                                client = Some(t.client().await.unwrap());
                            }
                            Err(e) => {
                                failures.lock().unwrap().push(format!("handshake: {e}"));
                                continue;
                            }
                        }
                    }
                    n += 1;
                    let c = client.as_mut().unwrap();
                    match c.get("foo.example", "/x").await {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures.lock().unwrap().push(format!("status {}: {}", r.status, r.body)),
                        Err(e) => failures.lock().unwrap().push(format!("request: {e}")),
                    }
                }
            }));
        }
        eventually("load running", SECS, || ok.load(Ordering::Relaxed) >= 50).await;
        let mut rotated = spec.clone();
        rotated.certificates = vec![v2.certificate("test/foo", &["foo.example"])];
        p.ensure_l7(&id, &rotated, Some(&st.record)).await.unwrap();
        eventually("new handshakes get the new certificate", SECS, || seen_v2.load(Ordering::Relaxed)).await;
        let after = ok.load(Ordering::Relaxed);
        eventually("load continues after the rotation", SECS, || ok.load(Ordering::Relaxed) >= after + 50).await;
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let failures = std::mem::take(&mut *failures.lock().unwrap());
        assert!(failures.is_empty(), "{} failed requests, first: {:?}", failures.len(), failures.first());
        // The connections kept open across the rotation were never dropped.
        let t = tls(lb, "foo.example", Some(ca.roots()), &[]).await.unwrap();
        assert_eq!(t.cert, v2.der);
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_swap_under_load_fails_no_request() {
    bounded(async {
        let p = provider("127.243.6.0/24");
        let a = HttpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let b = HttpBackend::start("b", "127.0.0.3:0".parse().unwrap()).await.unwrap();
        let backends = [("a", Some(a.addr.port())), ("b", Some(b.addr.port()))];
        let to = |backend: &str| {
            let hosts = vec![vhost("foo.example", vec![(prefix("/"), backend), (prefix("/pinned"), "a")])];
            l7spec(&[18240], hosts, &backends, &["127.0.0.2", "127.0.0.3"])
        };
        let id = conformance::id("swap");
        let st = p.ensure_l7(&id, &to("a"), None).await.unwrap();
        let lb = lb_addr(&st, 18240);
        // Each backend only listens on its own node: wait until health says so.
        eventually("each backend healthy on its node only", SECS, || {
            p.stats().load_balancers[0].backends.iter().all(|b| b.targets.iter().filter(|t| t.healthy).count() == 1)
        })
        .await;

        let ok = Arc::new(AtomicU64::new(0));
        let from_b = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for w in 0..6 {
            let (ok, from_b, failures, stop) = (ok.clone(), from_b.clone(), failures.clone(), stop.clone());
            workers.push(tokio::spawn(async move {
                let mut client = Client::h1(lb, None).await.unwrap();
                // Some requests are slow, so that swaps happen while they are in flight.
                let path = if w % 3 == 0 { "/slow?sleep_ms=150" } else { "/fast" };
                while !stop.load(Ordering::Relaxed) {
                    match client.get("foo.example", path).await {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if r.who() == "b" {
                                from_b.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(r) => failures.lock().unwrap().push(format!("status {}: {}", r.status, r.body)),
                        Err(e) => {
                            failures.lock().unwrap().push(format!("request: {e}"));
                            client = Client::h1(lb, None).await.unwrap();
                        }
                    }
                }
            }));
        }
        let mut record = st.record.clone();
        for round in 0..6 {
            let before = ok.load(Ordering::Relaxed);
            eventually("requests flow between swaps", SECS, || ok.load(Ordering::Relaxed) >= before + 30).await;
            let target = if round % 2 == 0 { "b" } else { "a" };
            record = p.ensure_l7(&id, &to(target), Some(&record)).await.unwrap().record;
        }
        // The last swap sent "/" to "a"; one more to "b" and it must take effect.
        p.ensure_l7(&id, &to("b"), Some(&record)).await.unwrap();
        let seen = from_b.load(Ordering::Relaxed);
        eventually("the new table is used", SECS, || from_b.load(Ordering::Relaxed) >= seen + 20).await;
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let failures = std::mem::take(&mut *failures.lock().unwrap());
        assert!(failures.is_empty(), "{} failed requests, first: {:?}", failures.len(), failures.first());
        assert!(ok.load(Ordering::Relaxed) > 200);
        let r = get(lb, "foo.example", "/pinned").await.unwrap();
        assert_eq!(r.who(), "a");
        // One keep-alive connection per node serves many requests.
        let s = http_stats(&p);
        assert!(s.upstream_connections < s.requests / 4, "{s:?}");
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_removal_health_failover_and_connect_retry() {
    bounded(async {
        let p = provider("127.243.7.0/24");
        let mut nodes = http_backends(&["127.0.0.2", "127.0.0.3"], &["n2", "n3"]).await;
        let port = nodes[0].addr.port();
        let hosts = vec![vhost("", vec![(prefix("/"), "svc")])];
        let spec = l7spec(&[18250], hosts.clone(), &[("svc", Some(port))], &["127.0.0.2", "127.0.0.3"]);
        let id = conformance::id("failover");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let lb = lb_addr(&st, 18250);
        let mut seen = std::collections::BTreeSet::new();
        let mut c = Client::h1(lb, None).await.unwrap();
        for _ in 0..20 {
            seen.insert(c.get("x", "/").await.unwrap().who());
        }
        assert_eq!(seen.len(), 2, "both nodes take requests: {seen:?}");

        // Node removal: only the remaining node gets requests, at once.
        let one = l7spec(&[18250], hosts.clone(), &[("svc", Some(port))], &["127.0.0.3"]);
        p.ensure_l7(&id, &one, Some(&st.record)).await.unwrap();
        for _ in 0..10 {
            assert_eq!(c.get("x", "/").await.unwrap().who(), "n3");
        }
        p.ensure_l7(&id, &spec, Some(&st.record)).await.unwrap();

        // A node that dies: requests keep succeeding (a refused connect is retried on the other
        // node) while the health check takes it out of rotation.
        let n2 = nodes.remove(0);
        n2.stop().await;
        for i in 0..30 {
            let r = get(lb, "x", "/").await.unwrap();
            assert_eq!((r.status, r.who().as_str()), (200, "n3"), "request {i}");
        }
        eventually("dead node marked unhealthy", SECS, || {
            p.stats().load_balancers[0].backends[0].targets.iter().any(|t| t.address == ip("127.0.0.2") && !t.healthy)
        })
        .await;
        let t = p.stats().totals;
        assert!(t.connect_failures >= 1 && t.connect_retries >= 1, "{t:?}");
        // Both dead: 503 once health says so (502 before).
        let n3 = nodes.remove(0);
        n3.stop().await;
        let r = get(lb, "x", "/").await.unwrap();
        assert!(r.status == 502 || r.status == 503, "{r:?}");
        eventually("no healthy node", SECS, || {
            p.stats().load_balancers[0].backends[0].targets.iter().all(|t| !t.healthy)
        })
        .await;
        let r = get(lb, "x", "/").await.unwrap();
        assert_eq!(r.status, 503);
        assert!(r.body.contains("test/svc:80") && r.body.contains("no healthy node"), "{}", r.body);
        // A node coming back is taken back in rotation.
        let back = HttpBackend::start("n3-again", SocketAddr::new(ip("127.0.0.3"), port)).await.unwrap();
        eventually("node back in rotation", SECS, || {
            p.stats().load_balancers[0].backends[0].targets.iter().any(|t| t.healthy)
        })
        .await;
        assert_eq!(get(lb, "x", "/").await.unwrap().who(), "n3-again");
        drop(back);
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_retry_reaches_the_live_node_before_health_notices() {
    bounded(async {
        let p = provider("127.243.8.0/24");
        let live = HttpBackend::start("live", "127.0.0.3:0".parse().unwrap()).await.unwrap();
        let hosts = vec![vhost("", vec![(prefix("/"), "svc")])];
        // Nothing listens on 127.0.0.2 at this port; health checks too slow to notice here.
        let mut spec = l7spec(&[18260], hosts, &[("svc", Some(live.addr.port()))], &["127.0.0.2", "127.0.0.3"]);
        spec.backends[0].health_check.interval_seconds = 3600;
        spec.backends[0].health_check.unhealthy_threshold = 100;
        let id = conformance::id("retry");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let lb = lb_addr(&st, 18260);
        for i in 0..20 {
            let r = get(lb, "x", &format!("/{i}")).await.unwrap();
            assert_eq!((r.status, r.who().as_str()), (200, "live"));
        }
        let t = p.stats().totals;
        assert!(t.connect_retries >= 1 && t.connect_retries == t.connect_failures, "{t:?}");
        // Both nodes refusing: 502 naming the backend; never retried more than once.
        let mut dead = spec.clone();
        dead.backends[0].node_port = Some(1);
        p.ensure_l7(&id, &dead, Some(&st.record)).await.unwrap();
        let before = p.stats().totals.connect_failures;
        let r = get(lb, "x", "/").await.unwrap();
        assert_eq!(r.status, 502);
        assert!(r.body.contains("test/svc:80"), "{}", r.body);
        assert_eq!(p.stats().totals.connect_failures, before + 2, "one connect and one retry");
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_redirects_to_https() {
    bounded(async {
        let p = provider("127.243.9.0/24");
        let a = HttpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let hosts = vec![vhost("", vec![(prefix("/"), "a")])];
        let mut spec = l7spec(&[18270, 18271], hosts, &[("a", Some(a.addr.port()))], &["127.0.0.2"]);
        spec.listeners[0].redirect_to_https = Some(18443);
        spec.listeners[1].redirect_to_https = Some(443);
        let id = conformance::id("redirect");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let r = get(lb_addr(&st, 18270), "Foo.Example:18270", "/p/q?x=1&y=2").await.unwrap();
        assert_eq!(r.status, 308);
        assert_eq!(r.header("location"), "https://foo.example:18443/p/q?x=1&y=2");
        let r = get(lb_addr(&st, 18271), "foo.example", "/").await.unwrap();
        assert_eq!((r.status, r.header("location")), (308, "https://foo.example/"));
        assert_eq!(a.requests.load(Ordering::Relaxed), 0, "a redirecting listener routes nothing");
        assert_eq!(http_stats(&p).redirects, 2);

        // Listeners converge in place: a removed one closes, one that stays keeps its socket
        // and its open connections, and now routes instead of redirecting.
        let mut kept = Client::h1(lb_addr(&st, 18271), None).await.unwrap();
        assert_eq!(kept.get("foo.example", "/").await.unwrap().status, 308);
        let mut fewer = spec.clone();
        fewer.listeners.remove(0);
        fewer.listeners[0].redirect_to_https = None;
        p.ensure_l7(&id, &fewer, Some(&st.record)).await.unwrap();
        assert!(tcp(lb_addr(&st, 18270), None).await.is_err(), "removed listener no longer accepts");
        let r = kept.get("foo.example", "/").await.unwrap();
        assert_eq!((r.status, r.who().as_str()), (200, "a"), "same connection, new table");
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_and_hop_by_hop_headers() {
    bounded(async {
        let p = provider("127.243.10.0/24");
        let a = HttpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let hosts = vec![vhost("", vec![(prefix("/"), "a")])];
        let spec = l7spec(&[18280], hosts, &[("a", Some(a.addr.port()))], &["127.0.0.2"]);
        let id = conformance::id("headers");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let lb = lb_addr(&st, 18280);
        let mut c = Client::h1(lb, Some("127.0.0.7")).await.unwrap();
        let req = http::Request::post("/submit?x=1")
            .header("host", "Foo.Example:18280")
            .header("x-forwarded-for", "203.0.113.9")
            .header("x-forwarded-proto", "gopher")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "not for the node")
            .header("keep-alive", "timeout=5")
            .header("te", "trailers")
            .header("proxy-authorization", "Basic Zm9vOmJhcg==")
            .header("x-app", "kept")
            .body(Full::new(Bytes::from_static(b"0123456789")))
            .unwrap();
        let r = c.send(req).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-seen-host"), "Foo.Example:18280", "Host is preserved as sent");
        assert_eq!(r.header("x-seen-xff"), "203.0.113.9, 127.0.0.7", "the client is appended");
        assert_eq!(r.header("x-seen-proto"), "http");
        assert_eq!(r.header("x-seen-port"), "18280");
        assert_eq!(r.header("x-seen-method"), "POST");
        assert_eq!(r.header("x-seen-target"), "/submit?x=1");
        assert_eq!(r.header("x-seen-body-len"), "10");
        let seen: Vec<&str> = r.header("x-seen-headers").split(',').collect();
        for gone in ["connection", "x-private", "keep-alive", "te", "proxy-authorization"] {
            assert!(!seen.contains(&gone), "{gone} reached the node: {seen:?}");
        }
        assert!(seen.contains(&"x-app"), "{seen:?}");
        // Response direction: the node's hop-by-hop headers do not reach the client.
        assert!(r.headers.get("x-hop").is_none(), "{:?}", r.headers);
        assert!(r.headers.get("keep-alive").is_none(), "{:?}", r.headers);
        assert_eq!(r.body, "a");
        // The client connection stays usable (keep-alive towards the client is the proxy's own).
        assert_eq!(c.get("foo.example", "/").await.unwrap().status, 200);
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_give_504_and_idle_clients_are_closed() {
    bounded(async {
        let p = provider("127.243.11.0/24");
        let a = HttpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let hosts = vec![vhost("", vec![(prefix("/"), "a")])];
        let mut spec = l7spec(&[18290], hosts, &[("a", Some(a.addr.port()))], &["127.0.0.2"]);
        spec.timeouts.request_seconds = 1;
        spec.timeouts.idle_seconds = 1;
        let id = conformance::id("timeouts");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let lb = lb_addr(&st, 18290);
        let r = get(lb, "x", "/slow?sleep_ms=3000").await.unwrap();
        assert_eq!(r.status, 504);
        assert!(r.body.contains("test/a:80"), "{}", r.body);
        assert_eq!(get(lb, "x", "/fast?sleep_ms=10").await.unwrap().status, 200);
        assert_eq!(http_stats(&p).upstream_timeouts, 1);

        // A client that sends nothing more is disconnected after the idle timeout.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tcp(lb, None).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let closed = tokio::time::timeout(SECS, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the idle connection was not closed");
        eventually("connection gauge back to zero", SECS, || p.stats().totals.connections_active == 0).await;
        let t = p.stats().totals;
        // Three requests of at least 27 bytes in, three answers of at least 60 bytes out.
        assert!(t.bytes_in >= 3 * 27 && t.bytes_out >= 3 * 60, "{t:?}");
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_ranges_are_enforced_per_connection() {
    bounded(async {
        let p = provider("127.243.12.0/24");
        let a = HttpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let hosts = vec![vhost("", vec![(prefix("/"), "a")])];
        let mut spec = l7spec(&[18300], hosts, &[("a", Some(a.addr.port()))], &["127.0.0.2"]);
        spec.source_ranges = vec!["127.0.0.5/32".parse().unwrap()];
        let id = conformance::id("ranges");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let lb = lb_addr(&st, 18300);
        let mut allowed = Client::h1(lb, Some("127.0.0.5")).await.unwrap();
        assert_eq!(allowed.get("x", "/").await.unwrap().status, 200);
        let refused = match Client::h1(lb, Some("127.0.0.6")).await {
            Ok(mut c) => c.get("x", "/").await.is_err(),
            Err(_) => true,
        };
        assert!(refused, "a client outside the source ranges must not get an answer");
        eventually("refusal counted", SECS, || p.stats().totals.connections_refused == 1).await;
        // Delete stops traffic: the idle keep-alive connection is closed, the port refuses.
        p.delete_l7(&id, None).await.unwrap();
        eventually("open connection closed by delete", SECS, || allowed.is_closed()).await;
        assert!(tcp(lb, Some("127.0.0.5")).await.is_err(), "nothing listens after delete");
        assert!(p.get_l7(&id, None).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_ensure_leaves_the_working_state_serving() {
    bounded(async {
        let p = provider("127.243.13.0/24");
        let a = HttpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let ca = Ca::new();
        let good = ca.leaf(&["foo.example"]);
        let other = ca.leaf(&["foo.example"]);
        let hosts = vec![vhost("", vec![(prefix("/"), "a")])];
        let mut spec = l7spec(&[18310, 18311], hosts, &[("a", Some(a.addr.port()))], &["127.0.0.2"]);
        spec.listeners[1].protocol = L7Protocol::Https;
        spec.certificates = vec![good.certificate("test/foo", &["foo.example"])];
        let id = conformance::id("failures");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let https = lb_addr(&st, 18311);

        // A port that cannot be bound: the same clear error as for L4, nothing changed.
        let squatter = std::net::TcpListener::bind(lb_addr(&st, 18312)).unwrap();
        let mut more = spec.clone();
        more.listeners.push(cloudlb_provider::l7::L7Listener {
            port: 18312,
            protocol: L7Protocol::Http,
            redirect_to_https: None,
        });
        more.virtual_hosts[0].routes.clear();
        let err = p.ensure_l7(&id, &more, Some(&st.record)).await.unwrap_err();
        assert!(matches!(err, ProviderError::Conflict { .. }), "{err}");
        assert!(err.to_string().contains(&format!("{}:18312", st_ip(&st))), "{err}");
        drop(squatter);
        assert_eq!(p.get_l7(&id, None).await.unwrap().unwrap().spec_hash, Some(spec.hash()));
        assert_eq!(get(lb_addr(&st, 18310), "x", "/").await.unwrap().who(), "a", "routes unchanged");

        // A certificate whose key does not match, or that is not PEM: reported by validate_l7
        // with the certificate's name, refused by ensure_l7, the working one still served.
        let mut mismatched = spec.clone();
        mismatched.certificates = vec![cloudlb_provider::l7::Certificate::new(
            "test/broken".into(),
            vec!["foo.example".into()],
            other.chain_pem.clone(),
            good.key_pem.clone(),
        )];
        let mut garbage = spec.clone();
        garbage.certificates =
            vec![cloudlb_provider::l7::Certificate::new("test/garbage".into(), vec![], "not pem".into(), "x".into())];
        for (bad, name) in [(&mismatched, "test/broken"), (&garbage, "test/garbage")] {
            let problems = p.validate_l7(bad);
            assert!(problems.iter().any(|m| m.contains(name)), "{problems:?}");
            let err = p.ensure_l7(&id, bad, Some(&st.record)).await.unwrap_err();
            assert!(matches!(err, ProviderError::Invalid { .. }) && err.to_string().contains(name), "{err}");
            assert_eq!(err.class(), ErrorClass::Permanent);
            let t = tls(https, "foo.example", Some(ca.roots()), &[]).await.unwrap();
            assert_eq!(t.cert, good.der, "the working certificate is still served");
        }
        assert!(p.validate_l7(&spec).is_empty());

        // Other problems validate_l7 reports before anything is built.
        let mut odd = spec.clone();
        odd.default_action = forward("nowhere");
        odd.options.insert("proxy-protocol".into(), "v2".into());
        odd.requested_ip = Some(ip("10.1.2.3"));
        let problems = p.validate_l7(&odd);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|m| m.contains("test/nowhere:80")), "{problems:?}");
        assert!(problems.iter().any(|m| m.contains("10.1.2.3")), "{problems:?}");
        let mut no_cert = spec.clone();
        no_cert.certificates.clear();
        assert!(p.warnings_l7(&no_cert).iter().any(|w| w.contains("HTTPS listener has no certificate")));
        let mut rr = spec.clone();
        rr.options.insert("balance".into(), "round-robin".into());
        assert!(p.validate_l7(&rr).is_empty());
        assert!(p.warnings_l7(&rr).iter().any(|w| w.contains("local.cloudlb.io/balance is ignored")));
        assert!(p.warnings_l7(&spec).is_empty());

        // An id is one kind only.
        let l4 = common::spec(&[(18313, cloudlb_provider::Protocol::Tcp, 1)], &["127.0.0.2"]);
        assert!(matches!(p.ensure(&id, &l4, None).await.unwrap_err(), ProviderError::Invalid { .. }));
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

fn st_ip(st: &cloudlb_provider::LoadBalancerStatus) -> std::net::IpAddr {
    match &st.ingress[0] {
        IngressPoint::Ip(ip) => *ip,
        other => panic!("unexpected ingress {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_recorded_address_and_weights_split() {
    bounded(async {
        let a = HttpBackend::start("a", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let b = HttpBackend::start("b", "127.0.0.2:0".parse().unwrap()).await.unwrap();
        let hosts = vec![vhost("", vec![(prefix("/"), "a")])];
        let mut spec: L7Spec =
            l7spec(&[18320], hosts, &[("a", Some(a.addr.port())), ("b", Some(b.addr.port()))], &["127.0.0.2"]);
        spec.virtual_hosts[0].routes[0].action = RouteAction::Forward(vec![
            WeightedBackend { backend: backend_ref("a"), weight: 3 },
            WeightedBackend { backend: backend_ref("b"), weight: 1 },
        ]);
        let id = conformance::id("restart");
        let first = provider("127.243.14.0/24");
        // Take addresses first so the kept one is not simply "the first"; L4 and L7 draw from
        // one pool.
        let f7 = first.ensure_l7(&conformance::id("filler-l7"), &spec, None).await.unwrap();
        let l4 = common::spec(&[(18321, cloudlb_provider::Protocol::Tcp, 1)], &["127.0.0.2"]);
        let f4 = first.ensure(&conformance::id("filler-l4"), &l4, None).await.unwrap();
        assert_eq!(f7.ingress, vec![IngressPoint::Ip(ip("127.243.14.1"))]);
        assert_eq!(f4.ingress, vec![IngressPoint::Ip(ip("127.243.14.2"))], "L4 and L7 share one pool");
        let st = first.ensure_l7(&id, &spec, None).await.unwrap();
        assert_eq!(st.ingress, vec![IngressPoint::Ip(ip("127.243.14.3"))]);
        let addr = lb_addr(&st, 18320);
        drop(first);
        eventually("old listener released", SECS, || std::net::TcpListener::bind(addr).is_ok()).await;
        let second = provider("127.243.14.0/24");
        let again = second.ensure_l7(&id, &spec, Some(&st.record)).await.unwrap();
        assert_eq!((again.ingress, again.record), (st.ingress.clone(), st.record.clone()));
        let mut c = Client::h1(addr, None).await.unwrap();
        let mut count_a = 0;
        for _ in 0..400 {
            if c.get("x", "/").await.unwrap().who() == "a" {
                count_a += 1;
            }
        }
        assert!((240..=360).contains(&count_a), "weights 3:1 over 400 requests gave {count_a} to a");
        second.delete_l7(&id, None).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_gives_504() {
    bounded(async {
        let p = provider("127.243.15.0/24");
        // A node port whose accept queue is full: the kernel drops new SYNs, connects hang.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.4:0".parse().unwrap()).unwrap();
        let full = socket.listen(0).unwrap();
        let port = full.local_addr().unwrap().port();
        let mut fillers = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(300), tokio::net::TcpStream::connect(("127.0.0.4", port)))
                .await
            {
                Ok(Ok(s)) => fillers.push(s),
                Ok(Err(e)) => panic!("filling the accept queue: {e}"),
                Err(_) => break, // this one hangs: the queue is full
            }
            assert!(fillers.len() < 64, "the accept queue never filled up");
        }
        let hosts = vec![vhost("", vec![(prefix("/"), "svc")])];
        let mut spec = l7spec(&[18330], hosts, &[("svc", Some(port))], &["127.0.0.4"]);
        spec.timeouts.connect_seconds = 1;
        // Health checks would take the node out (503); this checks the connect timeout.
        spec.backends[0].health_check.interval_seconds = 3600;
        spec.backends[0].health_check.unhealthy_threshold = 100;
        let id = conformance::id("connect-timeout");
        let st = p.ensure_l7(&id, &spec, None).await.unwrap();
        let started = tokio::time::Instant::now();
        let r = get(lb_addr(&st, 18330), "x", "/").await.unwrap();
        assert_eq!(r.status, 504, "{r:?}");
        assert!(r.body.contains("test/svc:80") && r.body.contains("timed out"), "{}", r.body);
        assert!(started.elapsed() >= Duration::from_millis(900), "answered before the connect timeout");
        assert_eq!(http_stats(&p).upstream_timeouts, 1);
        drop(full);
        p.delete_l7(&id, None).await.unwrap();
    })
    .await;
}
