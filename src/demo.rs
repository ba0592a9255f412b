//! `cloudlb sandbox`: try cloudlb with no cluster and no cloud account.
//!
//! Starts the in-memory Kubernetes API (crate `cloudlb-sandbox`) on 127.0.0.1, writes a
//! kubeconfig for kubectl, runs the real controller against it over HTTP (local provider by
//! default: cloudlb itself forwards the traffic), creates a demo Node and a demo
//! `type: LoadBalancer` Service, prints what `kubectl get svc` shows once the Service has its
//! EXTERNAL-IP, and keeps serving so that `kubectl apply` of your own Services works.
//!
//! There is no kubelet or kube-proxy in the sandbox, so nothing would answer on the demo
//! Service's node port: the demo starts a small HTTP server there, standing in for the node
//! (and the pod behind it). With the local provider, `curl http://<EXTERNAL-IP>:8080/` then goes
//! through cloudlb's real load balancer to that server.
//!
//! The Ingress half does the same at L7: an IngressClass of ours (the sandbox's default class),
//! two NodePort Services with stand-in servers, and an Ingress routing two paths of
//! `hello.example` to them; `curl -H 'Host: hello.example' http://<ADDRESS>:8080/api/...` then goes
//! through cloudlb's HTTP proxy.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt};
use serde_json::json;
use tracing::info;

use crate::app;
use crate::args::SandboxArgs;
use crate::error::{Error, Result};

const DEMO_SERVICE: &str = "hello";
/// The demo Ingress, its host, its class, and its two backends (path, Service).
const DEMO_INGRESS: &str = "hello";
const DEMO_HOST: &str = "hello.example";
const DEMO_INGRESS_CLASS: &str = "cloudlb";
const DEMO_BACKENDS: [(&str, &str); 2] = [("/", "hello-web"), ("/api", "hello-api")];
/// Above 1024, so the local provider can bind it without privileges.
const DEMO_PORT: u16 = 8080;
const DEMO_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn sandbox(args: SandboxArgs) -> Result<()> {
    let provider = crate::providers::build(&args.controller).await?;
    let bind: SocketAddr = ([127, 0, 0, 1], args.port).into();
    let sandbox = cloudlb_sandbox::Sandbox::start(cloudlb_sandbox::SandboxConfig { bind, ..Default::default() })
        .await
        .map_err(|e| Error::Sandbox(Box::new(e)))?;
    let path = &args.kubeconfig_out;
    sandbox.write_kubeconfig(path).map_err(|source| Error::Write { path: path.display().to_string(), source })?;
    info!(url = %sandbox.url(), kubeconfig = %path.display(), "sandbox Kubernetes API serving");
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let client = app::client(Some(path), args.controller.api_limit(), &metrics).await?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    if !args.no_demo {
        // Before the controller starts: its first reconcile then sees the node and the
        // backends, instead of the demo's request racing the watches that deliver them.
        prepare(&client, &args).await?;
    }
    let controller_client = client.clone();
    let controller_args = args.controller.clone();
    let mut controller = tokio::spawn(async move {
        let stop = async move {
            let _ = stop_rx.await;
        };
        app::start(controller_client, provider, &controller_args, app::Mode::Sandbox, metrics, stop).await
    });

    if !args.no_demo {
        let result = tokio::select! {
            r = demo(&client, &args) => r,
            // The controller ended early: report why instead of waiting for the timeout.
            r = wait_controller(&mut controller) => return r,
        };
        result?;
        println!();
        println!("cloudlb is running against a sandbox Kubernetes API at {}.", sandbox.url());
        println!("Try it with kubectl:");
        println!("  kubectl --kubeconfig {} get svc", path.display());
        println!("  kubectl --kubeconfig {} describe svc {DEMO_SERVICE}", path.display());
        println!(
            "  kubectl --kubeconfig {} apply -f your-service.yaml   # type: LoadBalancer, loadBalancerClass: {DEMO_CLASS}",
            path.display(),
            DEMO_CLASS = args.controller.load_balancer_class
        );
        let ingresses = args.controller.controllers.contains(&crate::args::ControllerKind::Ingress);
        if ingresses {
            println!("  kubectl --kubeconfig {} get ingress", path.display());
        }
        if args.controller.provider == crate::args::ProviderKind::Local {
            println!("  curl http://<EXTERNAL-IP>:{DEMO_PORT}/   # through cloudlb's load balancer to the demo node");
            if ingresses {
                println!(
                    "  curl -H 'Host: {DEMO_HOST}' http://<ADDRESS>:{}/api   # through cloudlb's HTTP load balancer",
                    args.controller.ingress_http_port.unwrap_or(app::Mode::Sandbox.ingress_ports().0)
                );
            }
        }
        if !args.exit_after_demo {
            println!("Press Ctrl-C to stop.");
        }
    }
    if !args.exit_after_demo {
        tokio::select! {
            _ = app::shutdown_signal() => {}
            r = wait_controller(&mut controller) => return r,
        }
    }
    // Stop the controller first, while the API it talks to is still up.
    let _ = stop_tx.send(());
    let result = wait_controller(&mut controller).await;
    sandbox.shutdown().await;
    result
}

async fn wait_controller(handle: &mut tokio::task::JoinHandle<Result<()>>) -> Result<()> {
    match handle.await {
        Ok(r) => r,
        Err(e) => Err(Error::Sandbox(Box::new(e))),
    }
}

/// What the demo's load balancers route to: the Node and, for the Ingress half, our
/// IngressClass and the two backend Services with stand-in servers on their node ports.
async fn prepare(client: &Client, args: &SandboxArgs) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "sandbox-node-1", "labels": {"kubernetes.io/hostname": "sandbox-node-1"}},
        "spec": {"providerID": "sandbox:///sandbox-node-1"},
        "status": {"addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": "sandbox-node-1"}
        ]}
    }))
    .map_err(|e| Error::Demo(kube::Error::SerdeError(e)))?;
    create_if_absent(&nodes, &node).await?;
    if args.controller.controllers.contains(&crate::args::ControllerKind::Ingress) {
        ingress_backends(client, args).await?;
    }
    Ok(())
}

async fn demo(client: &Client, args: &SandboxArgs) -> Result<()> {
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": DEMO_SERVICE, "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": args.controller.load_balancer_class,
            "selector": {"app": DEMO_SERVICE},
            "ports": [{"name": "http", "port": DEMO_PORT, "targetPort": 8080, "protocol": "TCP"}]
        }
    }))
    .map_err(|e| Error::Demo(kube::Error::SerdeError(e)))?;
    create_if_absent(&services, &svc).await?;
    if let Some(port) = node_port(&services, DEMO_SERVICE).await? {
        serve_backend(([127, 0, 0, 1], port).into(), "Hello from the cloudlb sandbox!").await;
    }

    let Some(svc) = wait_addressed(services, DEMO_SERVICE, service_address).await? else {
        return Ok(());
    };
    println!("$ kubectl get svc {DEMO_SERVICE}");
    print!("{}", table(std::slice::from_ref(&svc)));
    if args.controller.provider == crate::args::ProviderKind::Local
        && let Some(ip) = service_address(&svc)
    {
        let addr = format!("{ip}:{DEMO_PORT}");
        println!("\n$ curl http://{addr}/");
        match http_get(&addr, &addr, "/").await {
            Ok(body) => print!("{body}"),
            Err(e) => println!("(no answer yet: {e})"),
        }
    }
    if args.controller.controllers.contains(&crate::args::ControllerKind::Ingress) {
        ingress_demo(client, args).await?;
    }
    Ok(())
}

/// What the Ingress half routes to: our IngressClass (the sandbox's default class, so your own
/// Ingresses need no class) and two NodePort Services with stand-in servers on their node ports.
async fn ingress_backends(client: &Client, args: &SandboxArgs) -> Result<()> {
    let demo_err = |e: serde_json::Error| Error::Demo(kube::Error::SerdeError(e));
    let classes: Api<IngressClass> = Api::all(client.clone());
    let class: IngressClass = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": DEMO_INGRESS_CLASS, "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": args.controller.ingress_controller_name}
    }))
    .map_err(demo_err)?;
    create_if_absent(&classes, &class).await?;

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    for (_, name) in DEMO_BACKENDS {
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }))
        .map_err(demo_err)?;
        create_if_absent(&services, &svc).await?;
        if let Some(port) = node_port(&services, name).await? {
            let greeting = if name.ends_with("web") { "Hello from hello-web!" } else { "Hello from hello-api!" };
            serve_backend(([127, 0, 0, 1], port).into(), greeting).await;
        }
    }
    Ok(())
}

/// The Ingress half: an Ingress routing `/` and `/api` of `hello.example` to the two backends,
/// then `kubectl get ingress` and a request through each path.
async fn ingress_demo(client: &Client, args: &SandboxArgs) -> Result<()> {
    let demo_err = |e: serde_json::Error| Error::Demo(kube::Error::SerdeError(e));
    let paths: Vec<_> = DEMO_BACKENDS
        .iter()
        .map(|(path, name)| {
            json!({"path": path, "pathType": "Prefix",
                   "backend": {"service": {"name": name, "port": {"name": "http"}}}})
        })
        .collect();

    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
    let ing: Ingress = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": DEMO_INGRESS, "namespace": "default"},
        "spec": {"ingressClassName": DEMO_INGRESS_CLASS, "rules": [{"host": DEMO_HOST, "http": {"paths": paths}}]}
    }))
    .map_err(demo_err)?;
    create_if_absent(&ingresses, &ing).await?;
    let Some(ing) = wait_addressed(ingresses, DEMO_INGRESS, ingress_address).await? else {
        return Ok(());
    };
    println!("\n$ kubectl get ingress {DEMO_INGRESS}");
    print!("{}", ingress_table(std::slice::from_ref(&ing)));
    if args.controller.provider == crate::args::ProviderKind::Local
        && let Some(ip) = ingress_address(&ing)
    {
        let port = args.controller.ingress_http_port.unwrap_or(app::Mode::Sandbox.ingress_ports().0);
        let addr = format!("{ip}:{port}");
        for (path, _) in DEMO_BACKENDS {
            let path = if path == "/" { "/" } else { "/api/orders" };
            println!("\n$ curl -H 'Host: {DEMO_HOST}' http://{addr}{path}");
            match http_get(&addr, DEMO_HOST, path).await {
                Ok(body) => print!("{body}"),
                Err(e) => println!("(no answer yet: {e})"),
            }
        }
    }
    Ok(())
}

/// The stand-in for the demo node (and the pods behind its node port): answers every HTTP
/// request with `greeting`, where it was served and the path asked for.
async fn serve_backend(addr: SocketAddr, greeting: &'static str) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            println!(
                "(could not start the demo backend on {addr}: {e}; the load balancer will have no working target)"
            );
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, peer)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                let mut got = 0;
                // Read the request head (bounded); health checks connect and close at once.
                while got < buf.len() {
                    match conn.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                    if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..got]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let body = format!("{greeting} Served by node sandbox-node-1 ({addr}) to {peer}, path {path}.\n");
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
}

/// A one-shot HTTP GET of `path` with `Host: host`, returning the body.
pub async fn http_get(addr: &str, host: &str, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        let text = String::from_utf8_lossy(&out).to_string();
        Ok(text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(text))
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 5s")))
}

/// The first node port of Service `name`.
async fn node_port(services: &Api<Service>, name: &str) -> Result<Option<u16>> {
    let svc = services.get(name).await.map_err(Error::Demo)?;
    Ok(svc
        .spec
        .and_then(|s| s.ports)
        .and_then(|p| p.first().and_then(|p| p.node_port))
        .and_then(|p| u16::try_from(p).ok()))
}

/// The first address (ip, else hostname) in a Service's status.
fn service_address(svc: &Service) -> Option<String> {
    let first = svc.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?.first()?;
    first.ip.clone().or_else(|| first.hostname.clone())
}

/// The first address (ip, else hostname) in an Ingress's status.
fn ingress_address(ing: &Ingress) -> Option<String> {
    let first = ing.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?.first()?;
    first.ip.clone().or_else(|| first.hostname.clone())
}

/// Waits (bounded) until `name` shows an address; `None` after saying it did not.
async fn wait_addressed<K>(api: Api<K>, name: &str, address: fn(&K) -> Option<String>) -> Result<Option<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let has_address = move |o: Option<&K>| o.is_some_and(|o| address(o).is_some());
    match tokio::time::timeout(DEMO_TIMEOUT, await_condition(api, name, has_address)).await {
        Ok(Ok(Some(obj))) => Ok(Some(obj)),
        Ok(Ok(None)) => Err(Error::Demo(not_found(name))),
        Ok(Err(e)) => Err(Error::Demo(kube::Error::Service(Box::new(e)))),
        Err(_) => {
            let kind = K::kind(&()).to_string();
            println!("The demo {kind} did not get an address within {DEMO_TIMEOUT:?}; see the log above.");
            Ok(None)
        }
    }
}

fn not_found(name: &str) -> kube::Error {
    kube::Error::Api(Box::new(kube::core::Status::failure(&format!("{name} disappeared"), "NotFound").with_code(404)))
}

async fn create_if_absent<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::Demo(e)),
    }
}

/// The columns of `kubectl get ingress`.
pub fn ingress_table(ingresses: &[Ingress]) -> String {
    let mut rows = vec![["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS"].map(String::from).to_vec()];
    for i in ingresses {
        let spec = i.spec.clone().unwrap_or_default();
        let hosts: Vec<String> = spec.rules.iter().flatten().filter_map(|r| r.host.clone()).collect();
        let address: Vec<String> = i
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| a.ip.or(a.hostname))
            .collect();
        let ports: Vec<String> = i
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|a| a.first())
            .and_then(|a| a.ports.clone())
            .unwrap_or_default()
            .iter()
            .map(|p| p.port.to_string())
            .collect();
        rows.push(vec![
            i.name_any(),
            spec.ingress_class_name.unwrap_or_else(|| "<none>".into()),
            if hosts.is_empty() { "*".into() } else { hosts.join(",") },
            address.join(","),
            ports.join(", "),
        ]);
    }
    render(rows)
}

/// Left-aligned columns separated by three spaces, like kubectl.
fn render(rows: Vec<Vec<String>>) -> String {
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// The columns of `kubectl get svc`.
pub fn table(services: &[Service]) -> String {
    let mut rows = vec![["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"].map(String::from).to_vec()];
    for s in services {
        let spec = s.spec.clone().unwrap_or_default();
        let external: Vec<String> = s
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.clone())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| i.ip.or(i.hostname))
            .collect();
        let external = if external.is_empty() { "<pending>".to_string() } else { external.join(",") };
        let ports: Vec<String> = spec
            .ports
            .unwrap_or_default()
            .iter()
            .map(|p| match p.node_port {
                Some(np) => format!("{}:{}/{}", p.port, np, p.protocol.as_deref().unwrap_or("TCP")),
                None => format!("{}/{}", p.port, p.protocol.as_deref().unwrap_or("TCP")),
            })
            .collect();
        rows.push(vec![
            s.name_any(),
            spec.type_.unwrap_or_default(),
            spec.cluster_ip.unwrap_or_else(|| "<none>".into()),
            external,
            ports.join(","),
        ]);
    }
    render(rows)
}
