//! The local provider end to end: the real `cloudlb` binary forwards real traffic on
//! 127.0.0.0/8 to servers standing in for the nodes' node ports. Each test uses its own
//! address range and node IPs, so tests run in parallel without sharing a socket.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A stand-in for a node's node port: answers each connection with `node=<name>` and closes.
async fn node_backend(ip: &str, port: u16, name: &str) -> tokio::task::JoinHandle<()> {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let name = name.to_string();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = listener.accept().await {
            let name = name.clone();
            tokio::spawn(async move {
                let _ = c.write_all(format!("node={name}\n").as_bytes()).await;
                let _ = c.shutdown().await;
            });
        }
    })
}

/// Connects to `addr` and reads the whole answer; `Err` when refused or nothing answers.
async fn ask(addr: &str) -> std::io::Result<String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(5), io).await.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// `curl http://addr/`: the whole reply, head and body.
async fn http_get(addr: &str) -> std::io::Result<String> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out)
    };
    tokio::time::timeout(Duration::from_secs(5), io).await.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

fn node_port(svc: &k8s_openapi::api::core::v1::Service) -> u16 {
    svc.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|p| p[0].node_port).expect("node port") as u16
}

#[tokio::test]
async fn local_provider_forwards_follows_nodes_and_survives_restart() {
    let c = Cluster::start().await;
    c.add_node("node-a", "127.0.31.1", &[]).await;
    c.add_node("node-b", "127.0.31.2", &[]).await;
    let args = ["--provider", "local", "--local-address-pool", "127.242.31.0/24", "--local-drain-timeout", "1s"];
    let ctl = Controller::start(&c, &args).await;
    let svc = c.add_service("web", &[(18080, "TCP")], json!({})).await;
    let np = node_port(&svc);
    let _a = node_backend("127.0.31.1", np, "node-a").await;
    let _b = node_backend("127.0.31.2", np, "node-b").await;
    let ip = c.wait_address("web").await;
    assert!(ip.starts_with("127.242.31."), "{ip}");
    let svc = c.get("web").await;
    let ingress = &svc.status.as_ref().unwrap().load_balancer.as_ref().unwrap().ingress.as_ref().unwrap()[0];
    assert_eq!(ingress.ip_mode.as_deref(), Some("Proxy"), "cloudlb proxies: ipMode Proxy");
    let addr = format!("{ip}:18080");

    // Both nodes get traffic.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(ask(&addr).await.expect("answer through the load balancer"));
    }
    assert_eq!(seen.len(), 2, "both nodes answer: {seen:?}");
    // The data plane's counters are on /metrics, per load balancer.
    let lb = [("namespace", "default"), ("name", "web"), ("kind", "l4")];
    let accepted = ctl.metric("cloudlb_local_connections_total", &lb).await;
    assert!(accepted >= 20.0, "20 connections went through: {accepted}");
    let bytes_out = ctl.metric("cloudlb_local_bytes_total", &[("name", "web"), ("direction", "out")]).await;
    assert!(bytes_out >= 20.0 * "node=node-a\n".len() as f64, "answers counted: {bytes_out}");
    assert_eq!(ctl.metric("cloudlb_local_targets", &lb).await, 2.0);
    assert_eq!(ctl.metric("cloudlb_build_info", &[("version", env!("CARGO_PKG_VERSION"))]).await, 1.0);

    // Excluding node-b takes it out of rotation.
    c.patch_node(
        "node-b",
        json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": "true"}}}),
    )
    .await;
    let _ = eventually(
        "node-b leaves rotation",
        || async {
            let mut answers = Vec::new();
            for _ in 0..10 {
                answers.push(ask(&addr).await.unwrap_or_default());
            }
            answers
        },
        |answers| answers.iter().all(|a| a == "node=node-a\n"),
    )
    .await;

    // A restarted controller rebuilds the listener on the same address before it is ready.
    ctl.stop().await;
    assert!(ask(&addr).await.is_err(), "the load balancer lives in the controller process");
    let ctl = Controller::start(&c, &args).await;
    assert_eq!(ask(&addr).await.expect("answer right after ready"), "node=node-a\n");
    assert_eq!(external_ip(&c.get("web").await), Some(ip.clone()), "same address");

    // Deleting the Service closes the listener.
    c.services().delete("web", &Default::default()).await.expect("delete");
    c.wait_gone("web").await;
    assert!(ask(&addr).await.is_err(), "nothing answers after delete");
    ctl.stop().await;
}

#[tokio::test]
async fn sandbox_demo_answers_through_the_load_balancer_until_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("sandbox.kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudlb"))
        .args(["sandbox", "--local-address-pool", "127.242.32.0/24", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cloudlb sandbox");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut out = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read stdout") {
            let done = line.contains("Press Ctrl-C");
            out.push(line);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(WAIT, read).await.expect("the demo finishes within 30 s");
    let text = out.join("\n");
    assert!(text.contains("EXTERNAL-IP"), "{text}");
    assert!(text.contains("Hello from the cloudlb sandbox!"), "the demo's curl went through the load balancer: {text}");
    assert!(text.contains("$ kubectl get ingress hello") && text.contains("hello.example"), "{text}");
    assert!(
        text.contains("Hello from hello-web!") && text.contains("Hello from hello-api!"),
        "the demo's curls went through the Ingress load balancer to both backends: {text}"
    );
    let ip = out
        .iter()
        .find(|l| l.starts_with("hello "))
        .and_then(|l| l.split_whitespace().nth(3))
        .expect("the hello row")
        .to_string();
    assert!(ip.starts_with("127.242.32."), "{ip}");
    let addr = format!("{ip}:8080");
    let reply = http_get(&addr).await.expect("curl through the load balancer");
    assert!(reply.starts_with("HTTP/1.1 200 OK") && reply.contains("Hello from the cloudlb sandbox!"), "{reply}");

    // kubectl's view, through the written kubeconfig.
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("config"),
    )
    .expect("client");
    let api: kube::Api<k8s_openapi::api::core::v1::Service> = kube::Api::namespaced(client, "default");
    api.delete("hello", &Default::default()).await.expect("delete hello");
    let gone = kube::runtime::wait::await_condition(api, "hello", |s: Option<&k8s_openapi::api::core::v1::Service>| {
        s.is_none()
    });
    tokio::time::timeout(WAIT, gone).await.expect("deleted").expect("watch");
    assert!(http_get(&addr).await.is_err(), "deleting the Service stops it answering");

    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    }
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits").expect("status");
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

/// A stand-in for a node's node port speaking HTTP: answers every request with
/// `<name> <path>` (one request per connection).
async fn http_backend(ip: &str, port: u16, name: &str) -> tokio::task::JoinHandle<()> {
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let name = name.to_string();
    tokio::spawn(async move {
        while let Ok((c, _)) = listener.accept().await {
            let name = name.clone();
            tokio::spawn(async move {
                let mut c = BufReader::new(c);
                let mut request_line = String::new();
                if c.read_line(&mut request_line).await.is_err() {
                    return;
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("?").to_string();
                let mut line = String::new();
                while c.read_line(&mut line).await.is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = format!("{name} {path}");
                let reply =
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                let _ = c.get_mut().write_all(reply.as_bytes()).await;
                let _ = c.get_mut().shutdown().await;
            });
        }
    })
}

/// One HTTP/1.1 request over `io`; returns (status, body).
async fn request<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
    host: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    io.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut out = Vec::new();
    io.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// `curl -H 'Host: host' http://addr/path`.
async fn get_with_host(addr: &str, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    let io = async { request(tokio::net::TcpStream::connect(addr).await?, host, path).await };
    tokio::time::timeout(Duration::from_secs(5), io).await.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// `curl --cacert <crt> https://host/path --connect-to host:443:addr`: TLS with SNI `host`,
/// trusting only `ca_pem`. Returns (status, body).
async fn https_get(addr: &str, host: &str, path: &str, ca_pem: &str) -> std::io::Result<(u16, String)> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(ca_pem.as_bytes()).expect("certificate PEM");
    roots.add(der).expect("trust the test certificate");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).expect("server name");
    let io = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = connector.connect(name, tcp).await?;
        request(tls, host, path).await
    };
    tokio::time::timeout(Duration::from_secs(5), io).await.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Retries `f` until it returns what `ok` accepts (the data plane converges after the status
/// is written only by a moment: listeners first, then the address), bounded by WAIT.
async fn eventually<T: std::fmt::Debug, F, Fut>(what: &str, mut f: F, ok: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = f().await;
        if ok(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: last answer {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn local_provider_serves_an_ingress_by_host_and_path_with_tls_rotation() {
    let c = Cluster::start().await;
    c.add_node("node-a", "127.0.33.1", &[]).await;
    c.add_node("node-b", "127.0.33.2", &[]).await;
    c.add_ingress_class("cloudlb", INGRESS_CONTROLLER, false).await;
    c.add_backend("app", 31080).await;
    c.add_backend("api", 31081).await;
    let _backends = [
        http_backend("127.0.33.1", 31080, "app@node-a").await,
        http_backend("127.0.33.2", 31080, "app@node-b").await,
        http_backend("127.0.33.1", 31081, "api@node-a").await,
        http_backend("127.0.33.2", 31081, "api@node-b").await,
        http_backend("127.0.33.1", 31082, "api-moved@node-a").await,
        http_backend("127.0.33.2", 31082, "api-moved@node-b").await,
    ];
    let (crt, key) = pem_pair(&["shop.example"]);
    c.add_tls_secret("shop-tls", &crt, &key).await;
    let args = [
        "--provider",
        "local",
        "--local-address-pool",
        "127.242.33.0/24",
        "--ingress-http-port",
        "18180",
        "--ingress-https-port",
        "18543",
    ];
    let ctl = Controller::start(&c, &args).await;
    c.add_ingress(
        "shop",
        json!({
            "ingressClassName": "cloudlb",
            "tls": [{"hosts": ["shop.example"], "secretName": "shop-tls"}],
            "rules": [{"host": "shop.example", "http": {"paths": [
                ingress_path("Prefix", "/", "app"),
                ingress_path("Prefix", "/api", "api")
            ]}}]
        }),
        json!({}),
    )
    .await;
    let ip = c.wait_ingress_address("shop").await;
    assert!(ip.starts_with("127.242.33."), "{ip}");
    let http = format!("{ip}:18180");
    let https = format!("{ip}:18543");

    // Host and path routing over plain HTTP, both nodes of each backend in rotation.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (status, body) =
            get_with_host(&http, "shop.example", "/api/orders").await.expect("HTTP through the Ingress");
        assert_eq!(status, 200, "{body}");
        seen.insert(body);
    }
    assert_eq!(
        seen,
        ["api@node-a /api/orders", "api@node-b /api/orders"].into_iter().map(String::from).collect(),
        "/api/orders goes to api on both nodes"
    );
    let (status, body) = get_with_host(&http, "shop.example", "/apix").await.expect("answer");
    assert!(status == 200 && body.starts_with("app@"), "/apix is not under /api: {status} {body}");
    let (status, _) = get_with_host(&http, "other.example", "/").await.expect("answer");
    assert_eq!(status, 404, "no rule for other.example and no default backend");
    let lb = [("name", "shop"), ("kind", "l7")];
    let requests = ctl.metric("cloudlb_local_http_requests_total", &lb).await;
    assert!(requests >= 22.0, "every request counted: {requests}");
    let ok = ctl.metric("cloudlb_local_http_responses_total", &[("name", "shop"), ("code", "2xx")]).await;
    assert!(ok >= 21.0, "2xx counted: {ok}");
    let not_found = ctl.metric("cloudlb_local_http_answered_total", &[("name", "shop"), ("reason", "not_found")]).await;
    assert!(not_found >= 1.0, "the 404 is counted as answered by the load balancer: {not_found}");

    // HTTPS with the Secret's certificate, chosen by SNI.
    let (status, body) = https_get(&https, "shop.example", "/", &crt).await.expect("HTTPS through the Ingress");
    assert!(status == 200 && body.starts_with("app@"), "{status} {body}");

    // The backend's nodePort changes: traffic follows.
    c.services()
        .patch(
            "api",
            &Default::default(),
            &kube::api::Patch::Merge(
                json!({"spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 31082}]}}),
            ),
        )
        .await
        .expect("patch api");
    let _ = eventually(
        "/api follows the new nodePort",
        || get_with_host(&http, "shop.example", "/api"),
        |r| r.as_ref().is_ok_and(|(s, b)| *s == 200 && b.starts_with("api-moved@")),
    )
    .await;

    // The Secret is rotated: new handshakes get the new certificate, the old one is no longer trusted.
    let (crt2, key2) = pem_pair(&["shop.example"]);
    c.replace_tls_secret("shop-tls", &crt2, &key2).await;
    let _ = eventually(
        "the rotated certificate is served",
        || https_get(&https, "shop.example", "/", &crt2),
        |r| r.as_ref().is_ok_and(|(s, _)| *s == 200),
    )
    .await;
    assert!(https_get(&https, "shop.example", "/", &crt).await.is_err(), "the old certificate is gone");

    // Deleting the Ingress closes its listeners and drops the finalizer.
    c.ingresses().delete("shop", &Default::default()).await.expect("delete");
    c.wait_ingress_gone("shop").await;
    assert!(get_with_host(&http, "shop.example", "/").await.is_err(), "nothing answers after delete");
    assert!(https_get(&https, "shop.example", "/", &crt2).await.is_err(), "nothing answers on HTTPS after delete");
    ctl.stop().await;
}
