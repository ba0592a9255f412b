//! The local provider end to end: the real `cloudlb` binary forwards real traffic on
//! 127.0.0.0/8 to servers standing in for the nodes' node ports. Each test uses its own
//! address range and node IPs, so tests run in parallel without sharing a socket.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
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

    // Excluding node-b takes it out of rotation.
    c.patch_node(
        "node-b",
        json!({"metadata": {"labels": {"node.kubernetes.io/exclude-from-external-load-balancers": "true"}}}),
    )
    .await;
    c.wait_service("web", "1 target", |s| condition(s).is_some_and(|c| c.2.contains("1 targets"))).await;
    for _ in 0..10 {
        assert_eq!(ask(&addr).await.expect("answer"), "node=node-a\n");
    }

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
