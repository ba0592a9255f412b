//! Benchmark: cloudlb's local L7 (HTTP) data plane against HAProxy (`mode http`) and nginx (as
//! a reverse proxy), in front of the same backend, on the same machine, in one run.
//!
//! ```text
//!  wrk / this process ─┬─▶ backend directly                      (baseline)
//!                      ├─▶ haproxy   127.253.0.1:20080 | :20443 ─▶ backend 127.0.0.2
//!                      ├─▶ nginx     127.254.0.1:20080 | :20443 ─▶ backend 127.0.0.2
//!                      └─▶ local L7  127.252.0.1:20080 | :20443 ─▶ backend 127.0.0.2 (child process)
//! ```
//!
//! Each proxy runs in its own process(es) with as many threads / workers as cores (the local
//! provider: its HTTP worker threads, `LocalProvider::with_http_workers`); all three
//! keep connections to the backend alive, add X-Forwarded-For/-Proto and pass Host. Measured,
//! rounds interleaving the targets (the table shows medians):
//! - keep-alive HTTP/1.1 requests/s: `wrk -t2 -c64` for BENCH_SECONDS, and wrk's p99;
//! - latency: one keep-alive connection, sequential GETs (1000 warm-up + 10000 samples),
//!   p50/p99, and the p99 added over going to the backend directly;
//! - TLS handshakes/s: 32 concurrent clients doing full TLS 1.3 handshakes (no resumption,
//!   ECDSA P-256 certificate, X25519), each followed by one GET;
//! - RSS of the proxy (all its processes) idle, and with 10,000 idle keep-alive connections
//!   that each made one request.
//!
//! Run: `cargo run --release -p cloudlb-provider-local --example bench_l7` (needs `haproxy`,
//! `nginx` and `wrk` on PATH; env BENCH_SECONDS (5), BENCH_ROUNDS (3), BENCH_IDLE (10000),
//! BENCH_HTTP_WORKERS (cores)).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cloudlb_provider::l7::{
    Backend, BackendRef, Certificate, HostMatch, L7Listener, L7Protocol, L7Timeouts, PathMatch, Route, RouteAction,
    RouteMatch, RouteOrigin, ServicePort, VirtualHost, WeightedBackend, WildcardSemantics,
};
use cloudlb_provider::{HealthCheck, HealthCheckProtocol, HealthTarget, L7Spec, LoadBalancerId, Provider, Scheme};
use cloudlb_provider_local::{LocalConfig, LocalProvider};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BACKEND_IP: &str = "127.0.0.2";
const LOCAL_IP: &str = "127.252.0.1";
const HAPROXY_IP: &str = "127.253.0.1";
const NGINX_IP: &str = "127.254.0.1";
const HTTP_PORT: u16 = 20080;
const HTTPS_PORT: u16 = 20443;
const SAMPLES: usize = 10_000;
const TLS_CLIENTS: usize = 32;
const BODY: &[u8] = b"hello from the backend\n";

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(threads()).enable_all().build()?)
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--lb-child") {
        let port: u16 = args.get(2).ok_or("backend port")?.parse()?;
        let dir = args.get(3).ok_or("cert dir")?.clone();
        return runtime()?.block_on(lb_child(port, dir));
    }
    let rt = runtime()?;
    let backend_port = rt.block_on(start_backend())?;

    let dir = std::env::temp_dir().join(format!("cloudlb-bench-l7-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cert = rcgen::generate_simple_self_signed(vec!["bench.example".to_string()])?;
    std::fs::write(dir.join("tls.crt"), cert.cert.pem())?;
    std::fs::write(dir.join("tls.key"), cert.signing_key.serialize_pem())?;
    std::fs::write(dir.join("combined.pem"), format!("{}{}", cert.cert.pem(), cert.signing_key.serialize_pem()))?;

    let mut children = Children(Vec::new());
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--lb-child")
        .arg(backend_port.to_string())
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    BufReader::new(child.stdout.take().ok_or("no child stdout")?).read_line(&mut ready)?;
    if !ready.starts_with("READY") {
        return Err(format!("local LB child did not start: {ready:?}").into());
    }
    let local_pid = child.id();
    children.0.push(child);

    std::fs::write(dir.join("haproxy.cfg"), haproxy_config(backend_port, &dir))?;
    let haproxy =
        Command::new("haproxy").arg("-db").arg("-f").arg(dir.join("haproxy.cfg")).stdout(Stdio::null()).spawn()?;
    let haproxy_pid = haproxy.id();
    children.0.push(haproxy);

    std::fs::write(dir.join("nginx.conf"), nginx_config(backend_port, &dir))?;
    let nginx = Command::new("nginx")
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .stdout(Stdio::null())
        .spawn()?;
    let nginx_pid = nginx.id();
    children.0.push(nginx);

    let addr = |ip: &str, port: u16| -> Result<SocketAddr, Error> { Ok(SocketAddr::new(ip.parse()?, port)) };
    for ip in [LOCAL_IP, HAPROXY_IP, NGINX_IP] {
        rt.block_on(wait_answering(addr(ip, HTTP_PORT)?))?;
    }

    let targets: Vec<(&str, SocketAddr, Option<SocketAddr>, Option<u32>)> = vec![
        ("direct", addr(BACKEND_IP, backend_port)?, None, None),
        ("haproxy", addr(HAPROXY_IP, HTTP_PORT)?, Some(addr(HAPROXY_IP, HTTPS_PORT)?), Some(haproxy_pid)),
        ("nginx", addr(NGINX_IP, HTTP_PORT)?, Some(addr(NGINX_IP, HTTPS_PORT)?), Some(nginx_pid)),
        ("cloudlb local", addr(LOCAL_IP, HTTP_PORT)?, Some(addr(LOCAL_IP, HTTPS_PORT)?), Some(local_pid)),
    ];
    let rounds = env_u64("BENCH_ROUNDS", 3).max(1);
    let secs = env_u64("BENCH_SECONDS", 5);
    let idle = env_u64("BENCH_IDLE", 10_000) as usize;
    let mut runs: Vec<Vec<Measured>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, (name, http, https, pid)) in targets.iter().enumerate() {
            eprintln!("round {}/{rounds}: {name}", round + 1);
            let cpu_before = pid.map(cpu_seconds);
            let (rps, wrk_p99) = wrk(*http, secs)?;
            // CPU the proxy used per request during the wrk run (all its threads / workers),
            // and the part of it spent in the kernel.
            let per_request = |seconds: f64| seconds * 1e6 / (rps * secs as f64);
            let (cpu_us, sys_us) = match (pid, cpu_before) {
                (Some(p), Some((user, sys))) => {
                    let (u, s) = cpu_seconds(*p);
                    (per_request(u - user + s - sys), per_request(s - sys))
                }
                _ => (f64::NAN, f64::NAN),
            };
            let (p50, p99) = rt.block_on(latency(*http))?;
            let tls = match https {
                Some(a) => rt.block_on(handshakes(*a, Duration::from_secs(secs)))?,
                None => f64::NAN,
            };
            let m = Measured { rps, wrk_p99, cpu_us, sys_us, p50, p99, tls };
            eprintln!("  {m:?}");
            runs[i].push(m);
        }
    }
    let mut memory = Vec::new();
    for (name, http, _, pid) in &targets {
        let Some(pid) = pid else {
            memory.push((f64::NAN, f64::NAN));
            continue;
        };
        eprintln!("memory: {name}, {idle} idle keep-alive connections");
        let before = rss_mib(*pid);
        let conns = rt.block_on(open_idle(*http, idle))?;
        std::thread::sleep(Duration::from_secs(1));
        let with = rss_mib(*pid);
        eprintln!("  {before:.1} MiB -> {with:.1} MiB ({} connections open)", conns.len());
        drop(conns);
        memory.push((before, with));
    }
    drop(children);
    let _ = std::fs::remove_dir_all(&dir);

    let r: Vec<Measured> = runs.iter().map(|r| Measured::median(r)).collect();
    let (d, h, n, l) = (&r[0], &r[1], &r[2], &r[3]);
    println!("| measurement | direct | haproxy | nginx | cloudlb local | local / haproxy |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| keep-alive HTTP/1.1, wrk -t2 -c64, {secs} s (req/s) | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}x |",
        d.rps,
        h.rps,
        n.rps,
        l.rps,
        l.rps / h.rps
    );
    println!(
        "| wrk p99 at that load (ms) | {:.2} | {:.2} | {:.2} | {:.2} | |",
        d.wrk_p99, h.wrk_p99, n.wrk_p99, l.wrk_p99
    );
    println!(
        "| proxy CPU per request under wrk (µs) | | {:.1} | {:.1} | {:.1} | {:.2}x |",
        h.cpu_us,
        n.cpu_us,
        l.cpu_us,
        l.cpu_us / h.cpu_us
    );
    println!("| of which in the kernel (µs) | | {:.1} | {:.1} | {:.1} | |", h.sys_us, n.sys_us, l.sys_us);
    println!("| sequential GET p50 (µs) | {:.1} | {:.1} | {:.1} | {:.1} | |", d.p50, h.p50, n.p50, l.p50);
    println!("| sequential GET p99 (µs) | {:.1} | {:.1} | {:.1} | {:.1} | |", d.p99, h.p99, n.p99, l.p99);
    println!(
        "| added p99 vs direct (µs) | | {:.1} | {:.1} | {:.1} | {:.2}x |",
        h.p99 - d.p99,
        n.p99 - d.p99,
        l.p99 - d.p99,
        (l.p99 - d.p99) / (h.p99 - d.p99)
    );
    println!(
        "| TLS 1.3 handshakes + GET, {TLS_CLIENTS} clients (/s) | | {:.0} | {:.0} | {:.0} | {:.2}x |",
        h.tls,
        n.tls,
        l.tls,
        l.tls / h.tls
    );
    println!("| RSS idle (MiB) | | {:.1} | {:.1} | {:.1} | |", memory[1].0, memory[2].0, memory[3].0);
    println!(
        "| RSS with {idle} idle keep-alive connections (MiB) | | {:.1} | {:.1} | {:.1} | {:.2}x |",
        memory[1].1,
        memory[2].1,
        memory[3].1,
        memory[3].1 / memory[1].1
    );
    Ok(())
}

#[derive(Clone, Copy, Debug)]
struct Measured {
    rps: f64,
    wrk_p99: f64,
    cpu_us: f64,
    sys_us: f64,
    p50: f64,
    p99: f64,
    tls: f64,
}

impl Measured {
    fn median(runs: &[Measured]) -> Measured {
        let med = |f: fn(&Measured) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        Measured {
            rps: med(|m| m.rps),
            wrk_p99: med(|m| m.wrk_p99),
            cpu_us: med(|m| m.cpu_us),
            sys_us: med(|m| m.sys_us),
            p50: med(|m| m.p50),
            p99: med(|m| m.p99),
            tls: med(|m| m.tls),
        }
    }
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            // nginx's master stops its workers on SIGQUIT/SIGTERM; kill() sends SIGKILL, which
            // would leave them: ask politely first.
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        }
        for c in &mut self.0 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// HAProxy in `mode http`. `maxconn 10500` (for the 10,000 idle connections) asks for more
/// descriptors than this container's hard limit of 20000; `no strict-limits` lets it run with
/// 20000, which is enough since idle client connections need no server connection.
fn haproxy_config(backend_port: u16, dir: &std::path::Path) -> String {
    let t = threads();
    format!(
        "global\n  nbthread {t}\n  maxconn 10500\n  no strict-limits\n\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  timeout http-keep-alive 60s\n\n\
         frontend fe\n  bind {HAPROXY_IP}:{HTTP_PORT}\n  bind {HAPROXY_IP}:{HTTPS_PORT} ssl crt {} alpn h2,http/1.1\n  \
         option forwardfor\n  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}\n  \
         http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}\n  default_backend be\n\n\
         backend be\n  http-reuse safe\n  server s1 {BACKEND_IP}:{backend_port}\n",
        dir.join("combined.pem").display()
    )
}

fn nginx_config(backend_port: u16, dir: &std::path::Path) -> String {
    let t = threads();
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process on;\nworker_processes {t};\nworker_rlimit_nofile 20000;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 10500; }}\n\
         http {{\n  access_log off;\n  keepalive_timeout 60s;\n  keepalive_requests 1000000;\n\
           upstream be {{ server {BACKEND_IP}:{backend_port}; keepalive 128; }}\n\
           server {{\n    listen {NGINX_IP}:{HTTP_PORT};\n    listen {NGINX_IP}:{HTTPS_PORT} ssl http2;\n\
             ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_certificate {d}/tls.crt;\n    ssl_certificate_key {d}/tls.key;\n\
             location / {{\n      proxy_pass http://be;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
               proxy_set_header Host $host;\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n\
               proxy_set_header X-Forwarded-Proto $scheme;\n    }}\n  }}\n}}\n"
    )
}

/// The local provider in this (child) process: one L7 load balancer, HTTP and HTTPS.
async fn lb_child(backend_port: u16, dir: String) -> Result<(), Error> {
    // BENCH_HTTP_WORKERS: threads of the HTTP data plane (default: one per core).
    let workers = env_u64("BENCH_HTTP_WORKERS", threads() as u64) as usize;
    let provider =
        LocalProvider::new(LocalConfig { pools: vec![format!("{LOCAL_IP}/32").parse()?], ..LocalConfig::default() })?
            .with_http_workers(workers);

    let id = LoadBalancerId::new("bench", "bench", "web", "bench-uid");
    let backend = BackendRef { namespace: "bench".into(), service: "web".into(), port: ServicePort::Number(80) };
    let chain = std::fs::read_to_string(format!("{dir}/tls.crt"))?;
    let key = std::fs::read_to_string(format!("{dir}/tls.key"))?;
    let spec = L7Spec {
        listeners: vec![
            L7Listener { port: HTTP_PORT, protocol: L7Protocol::Http, redirect_to_https: None },
            L7Listener { port: HTTPS_PORT, protocol: L7Protocol::Https, redirect_to_https: None },
        ],
        wildcards: WildcardSemantics::SingleLabel,
        virtual_hosts: vec![VirtualHost {
            host: HostMatch::Any,
            routes: vec![Route {
                matches: RouteMatch::path(PathMatch::Prefix("/".into())),
                action: RouteAction::Forward(vec![WeightedBackend { backend: backend.clone(), weight: 1 }]),
                origin: RouteOrigin {
                    kind: "Ingress".into(),
                    namespace: "bench".into(),
                    name: "web".into(),
                    rule: 0,
                    index: 0,
                },
            }],
        }],
        default_action: RouteAction::not_found(),
        backends: vec![Backend {
            id: backend,
            node_port: Some(backend_port),
            problem: None,
            health_check: HealthCheck {
                target: HealthTarget::KubeProxy,
                protocol: HealthCheckProtocol::Tcp,
                port: None,
                path: None,
                interval_seconds: 10,
                timeout_seconds: 5,
                healthy_threshold: 2,
                unhealthy_threshold: 3,
            },
        }],
        certificates: vec![Certificate::new("bench/tls".into(), Vec::new(), chain, key)],
        targets: vec![cloudlb_provider::conformance::target("node-a", BACKEND_IP)].into(),
        source_ranges: vec!["0.0.0.0/0".parse()?],
        requested_ip: None,
        scheme: Scheme::InternetFacing,
        timeouts: L7Timeouts::default(),
        options: Default::default(),
    };
    provider.ensure_l7(&id, &spec, None).await?;
    println!("READY");
    // Run until the parent closes our stdin.
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while stdin.read(&mut buf).await.unwrap_or(0) > 0 {}
    let s = provider.stats().http_totals;
    eprintln!(
        "local L7: {} requests, {} upstream connections, {} TLS handshakes",
        s.requests, s.upstream_connections, s.tls_handshakes
    );
    Ok(())
}

/// The backend: HTTP/1.1 keep-alive, a small fixed answer.
async fn start_backend() -> Result<u16, Error> {
    let listener = TcpListener::bind((BACKEND_IP, 0)).await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(port)
}

async fn wait_answering(addr: SocketAddr) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match get_once(addr).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(format!("{addr} does not answer: {e}").into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn get_once(addr: SocketAddr) -> Result<(), Error> {
    let mut c = client(addr).await?;
    let r = request(&mut c).await?;
    if r != 200 {
        return Err(format!("status {r}").into());
    }
    Ok(())
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn client(addr: SocketAddr) -> Result<Sender, Error> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
    tokio::spawn(conn);
    Ok(tx)
}

async fn request(tx: &mut Sender) -> Result<u16, Error> {
    tx.ready().await?;
    let req = hyper::Request::get("/").header("host", "bench.example").body(Full::default())?;
    let resp = tx.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

/// `wrk` keep-alive load: requests/s and p99 (ms).
fn wrk(addr: SocketAddr, secs: u64) -> Result<(f64, f64), Error> {
    let out = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{secs}s"), "--latency", "-H", "Host: bench.example"])
        .arg(format!("http://{addr}/"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| format!("no Requests/sec in wrk output: {text}"))?;
    let p99 =
        text.lines().find_map(|l| l.trim().strip_prefix("99%")).map(|v| duration_ms(v.trim())).unwrap_or(f64::NAN);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("  wrk reported errors: {text}");
    }
    Ok((rps, p99))
}

fn duration_ms(v: &str) -> f64 {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

/// Sequential GETs on one keep-alive connection: p50 and p99 in microseconds.
async fn latency(addr: SocketAddr) -> Result<(f64, f64), Error> {
    let mut c = client(addr).await?;
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES + 1000 {
        let t = Instant::now();
        let status = request(&mut c).await?;
        if status != 200 {
            return Err(format!("{addr}: status {status}").into());
        }
        if i >= 1000 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Ok((at(0.50), at(0.99)))
}

/// Full TLS handshakes (and one GET each) per second, `TLS_CLIENTS` at a time.
async fn handshakes(addr: SocketAddr, dur: Duration) -> Result<f64, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let start = Instant::now();
    for _ in 0..TLS_CLIENTS {
        let (connector, done, stop) = (connector.clone(), Arc::clone(&done), Arc::clone(&stop));
        let failed = Arc::clone(&failed);
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let one = async {
                    let s = TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    let name = rustls::pki_types::ServerName::try_from("bench.example")?;
                    let tls = connector.connect(name, s).await?;
                    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                    tokio::spawn(conn);
                    let req = hyper::Request::get("/").header("host", "bench.example").body(Full::<Bytes>::default())?;
                    let resp = tx.send_request(req).await?;
                    resp.into_body().collect().await?;
                    Ok::<_, Error>(())
                };
                match one.await {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if !failed.swap(true, Ordering::Relaxed) {
                            eprintln!("  TLS to {addr} failed: {e}");
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(dur).await;
    stop.store(true, Ordering::Relaxed);
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    Ok(n as f64 / elapsed)
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Open `n` keep-alive connections that each make one request and then stay idle.
async fn open_idle(addr: SocketAddr, n: usize) -> Result<Vec<TcpStream>, Error> {
    let mut out = Vec::with_capacity(n);
    let mut batch = tokio::task::JoinSet::new();
    let mut started = 0;
    while out.len() < n {
        while started < n && batch.len() < 256 {
            started += 1;
            batch.spawn(async move {
                let mut s = TcpStream::connect(addr).await?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: bench.example\r\n\r\n").await?;
                let mut buf = Vec::with_capacity(512);
                let mut chunk = [0u8; 512];
                while !buf.ends_with(BODY) {
                    let k = s.read(&mut chunk).await?;
                    if k == 0 {
                        return Err::<TcpStream, Error>("closed".into());
                    }
                    buf.extend_from_slice(&chunk[..k]);
                }
                Ok(s)
            });
        }
        match batch.join_next().await {
            Some(Ok(Ok(s))) => out.push(s),
            Some(Ok(Err(e))) => return Err(format!("opening idle connection {}: {e}", out.len()).into()),
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    Ok(out)
}

/// `pid` and its child processes (nginx's workers).
fn family(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.push(p);
            }
        }
    }
    pids
}

/// CPU time (user, system) used so far by `pid` and its children, in seconds.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    // clock ticks per second: 100 on Linux (USER_HZ)
    let (user, sys) = family(pid)
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|stat| {
            let rest = stat.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            // after "(comm)": state=0 ppid=1 ... utime=11 stime=12
            Some((rest.get(11)?.parse::<u64>().ok()?, rest.get(12)?.parse::<u64>().ok()?))
        })
        .fold((0, 0), |(u, s), (a, b)| (u + a, s + b));
    (user as f64 / 100.0, sys as f64 / 100.0)
}

/// Resident memory of `pid` and its children (nginx's workers), in MiB.
fn rss_mib(pid: u32) -> f64 {
    let pids = family(pid);
    let kib: u64 = pids
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .sum();
    kib as f64 / 1024.0
}
