//! Benchmark: cloudlb's local provider against HAProxy, forwarding the same ports to the same
//! backends over loopback, on the same machine, in one run.
//!
//! ```text
//!  load generator ─┬─▶ backend directly            (baseline)
//!  (this process)  ├─▶ haproxy  127.251.0.1:2000x ─▶ backends 127.0.0.2
//!                  └─▶ local LB 127.250.0.1:2000x ─▶ backends 127.0.0.2  (child process)
//! ```
//!
//! Both load balancers run in their own process with as many threads as cores (HAProxy
//! `nbthread`, Tokio worker threads), the backends and the load generator share this process.
//! Measured: throughput of large transfers (8 connections x 256 MiB into a discard backend),
//! rate of short connections (connect, 16-byte request, 16-byte reply, close; 64 concurrent
//! clients), and ping-pong latency over one persistent connection (p50/p99, added vs direct).
//!
//! Run: `cargo run --release -p cloudlb-provider-local --example bench_vs_haproxy`
//! (needs `haproxy` on PATH; env BENCH_SECONDS (default 5), BENCH_MIB (256), BENCH_ROUNDS (3)).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cloudlb_provider::{LoadBalancerId, Protocol, Provider};
use cloudlb_provider_local::{LocalConfig, LocalProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BACKEND_IP: &str = "127.0.0.2";
const LOCAL_IP: &str = "127.250.0.1";
const HAPROXY_IP: &str = "127.251.0.1";
/// Front ports: discard (throughput), short request/reply, echo (latency).
const PORTS: [u16; 3] = [20001, 20002, 20003];
const CONNS: usize = 8;
const CLIENTS: usize = 64;
const REQ: usize = 16;
const PINGS: usize = 20_000;

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
        let ports: Vec<u16> = args[2..].iter().filter_map(|p| p.parse().ok()).collect();
        return runtime()?.block_on(lb_child(ports));
    }
    let rt = runtime()?;
    let backend_ports = rt.block_on(start_backends())?;

    let mut children = Children(Vec::new());
    // The local LB, in its own process.
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--lb-child")
        .args(backend_ports.iter().map(|p| p.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    BufReader::new(child.stdout.take().ok_or("no child stdout")?).read_line(&mut ready)?;
    if !ready.starts_with("READY") {
        return Err(format!("local LB child did not start: {ready:?}").into());
    }
    children.0.push(child);

    // HAProxy with the same ports and backends.
    let dir = std::env::temp_dir().join(format!("cloudlb-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(&backend_ports))?;
    let haproxy = Command::new("haproxy").arg("-db").arg("-f").arg(&cfg).stdout(Stdio::null()).spawn()?;
    children.0.push(haproxy);
    wait_listening(SocketAddr::new(HAPROXY_IP.parse()?, PORTS[2]))?;
    wait_listening(SocketAddr::new(LOCAL_IP.parse()?, PORTS[2]))?;

    let targets = [
        ("direct", BACKEND_IP.to_string(), backend_ports),
        ("haproxy", HAPROXY_IP.to_string(), PORTS),
        ("cloudlb local", LOCAL_IP.to_string(), PORTS),
    ];
    let rounds = env_u64("BENCH_ROUNDS", 3).max(1);
    let secs = env_u64("BENCH_SECONDS", 5);
    let mib = env_u64("BENCH_MIB", 256);
    let mut runs: Vec<Vec<Measured>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, (name, ip, ports)) in targets.iter().enumerate() {
            eprintln!("round {}/{rounds}: {name}", round + 1);
            let ip: std::net::IpAddr = ip.parse()?;
            let m = rt.block_on(async {
                let tp = throughput(SocketAddr::new(ip, ports[0]), mib).await?;
                let cr = conn_rate(SocketAddr::new(ip, ports[1]), Duration::from_secs(secs)).await?;
                let (p50, p99) = latency(SocketAddr::new(ip, ports[2])).await?;
                Ok::<_, Error>(Measured { gbits: tp, conns: cr, p50, p99 })
            })?;
            eprintln!("  {m:?}");
            runs[i].push(m);
        }
    }
    drop(children);
    let _ = std::fs::remove_dir_all(&dir);

    let results: Vec<Measured> = runs.iter().map(|r| Measured::median(r)).collect();
    let (d, h, l) = (&results[0], &results[1], &results[2]);
    println!("| measurement | direct | haproxy | cloudlb local | local / haproxy |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| throughput, {CONNS} conns x {mib} MiB (Gbit/s) | {:.1} | {:.1} | {:.1} | {:.2}x |",
        d.gbits,
        h.gbits,
        l.gbits,
        l.gbits / h.gbits
    );
    println!(
        "| short connections, {CLIENTS} clients, {secs} s (conn/s) | {:.0} | {:.0} | {:.0} | {:.2}x |",
        d.conns,
        h.conns,
        l.conns,
        l.conns / h.conns
    );
    println!("| ping-pong p50 (µs) | {:.1} | {:.1} | {:.1} | |", d.p50, h.p50, l.p50);
    println!("| ping-pong p99 (µs) | {:.1} | {:.1} | {:.1} | |", d.p99, h.p99, l.p99);
    println!("| added p99 vs direct (µs) | | {:.1} | {:.1} | |", h.p99 - d.p99, l.p99 - d.p99);
    println!("\nmedian of {rounds} interleaved rounds; {} threads per load balancer", threads());
    Ok(())
}

#[derive(Debug, Default)]
struct Measured {
    gbits: f64,
    conns: f64,
    p50: f64,
    p99: f64,
}

impl Measured {
    /// Each figure's median over the rounds (rounds interleave the targets, so a burst of
    /// load from elsewhere on the machine hits all of them alike).
    fn median(runs: &[Measured]) -> Measured {
        let med = |f: fn(&Measured) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        Measured { gbits: med(|m| m.gbits), conns: med(|m| m.conns), p50: med(|m| m.p50), p99: med(|m| m.p99) }
    }
}

/// Child processes, killed (by their own handle) when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_listening(addr: SocketAddr) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{addr} is not listening").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn haproxy_config(backend_ports: &[u16; 3]) -> String {
    let mut cfg = format!(
        "global\n    nbthread {}\n    maxconn 9000\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n",
        threads()
    );
    for (front, back) in PORTS.iter().zip(backend_ports) {
        cfg.push_str(&format!(
            "\nlisten p{front}\n    bind {HAPROXY_IP}:{front}\n    server node1 {BACKEND_IP}:{back}\n"
        ));
    }
    cfg
}

/// The local provider as the load balancer, in this (child) process, until stdin closes.
async fn lb_child(backend_ports: Vec<u16>) -> Result<(), Error> {
    let provider =
        LocalProvider::new(LocalConfig { pools: vec!["127.250.0.0/24".parse()?], ..LocalConfig::default() })?;
    let mut spec = cloudlb_provider::conformance::spec(&[]);
    spec.listeners = PORTS
        .iter()
        .zip(&backend_ports)
        .map(|(port, node_port)| cloudlb_provider::Listener {
            port: *port,
            protocol: Protocol::Tcp,
            node_port: *node_port,
            name: None,
        })
        .collect();
    spec.targets = vec![cloudlb_provider::conformance::target("node1", BACKEND_IP)].into();
    let id = LoadBalancerId::new("bench", "default", "bench", "bench-uid");
    let st = provider.ensure(&id, &spec, None).await?;
    println!("READY {:?}", st.ingress);
    std::io::stdout().flush()?;
    // Parent gone (stdin closed) = stop.
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {}
    })
    .await?;
    let s = provider.stats();
    eprintln!(
        "local LB: accepted {} bytes in {} out {} connect failures {}",
        s.totals.connections_accepted, s.totals.bytes_in, s.totals.bytes_out, s.totals.connect_failures
    );
    Ok(())
}

async fn start_backends() -> Result<[u16; 3], Error> {
    let sink = TcpListener::bind((BACKEND_IP, 0)).await?;
    let short = TcpListener::bind((BACKEND_IP, 0)).await?;
    let echo = TcpListener::bind((BACKEND_IP, 0)).await?;
    let ports = [sink.local_addr()?.port(), short.local_addr()?.port(), echo.local_addr()?.port()];
    tokio::spawn(accept(sink, |mut s| async move {
        // Discard everything, then report how much arrived.
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(_) => return,
            }
        }
        let _ = s.write_all(&total.to_be_bytes()).await;
    }));
    tokio::spawn(accept(short, |mut s| async move {
        let mut req = [0u8; REQ];
        if s.read_exact(&mut req).await.is_ok() && s.write_all(&req).await.is_ok() {
            let mut rest = [0u8; 64];
            while matches!(s.read(&mut rest).await, Ok(n) if n > 0) {}
        }
    }));
    tokio::spawn(accept(echo, |mut s| async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    }));
    Ok(ports)
}

async fn accept<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        if let Ok((s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(serve(s));
        }
    }
}

/// `CONNS` connections each send `mib` MiB into the discard backend; Gbit/s of payload.
async fn throughput(addr: SocketAddr, mib: u64) -> Result<f64, Error> {
    let bytes = mib * 1024 * 1024;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNS {
        tasks.spawn(async move {
            let mut s = TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            let chunk = vec![0x5au8; 256 * 1024];
            let mut sent = 0u64;
            while sent < bytes {
                let n = chunk.len().min((bytes - sent) as usize);
                s.write_all(&chunk[..n]).await?;
                sent += n as u64;
            }
            s.shutdown().await?;
            let mut ack = [0u8; 8];
            s.read_exact(&mut ack).await?;
            let got = u64::from_be_bytes(ack);
            if got != bytes {
                return Err::<(), Error>(format!("backend got {got} of {bytes} bytes").into());
            }
            Ok(())
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok::<_, Error>(())
    });
    all.await.map_err(|_| "throughput run timed out")??;
    let secs = start.elapsed().as_secs_f64();
    Ok((bytes * CONNS as u64 * 8) as f64 / secs / 1e9)
}

/// `CLIENTS` clients doing connect / request / reply / close for `dur`; completed per second.
async fn conn_rate(addr: SocketAddr, dur: Duration) -> Result<f64, Error> {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for _ in 0..CLIENTS {
        let (done, errors, stop) = (Arc::clone(&done), Arc::clone(&errors), Arc::clone(&stop));
        tasks.spawn(async move {
            let req = [7u8; REQ];
            while !stop.load(Ordering::Relaxed) {
                let one = async {
                    let mut s = TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    s.write_all(&req).await?;
                    let mut reply = [0u8; REQ];
                    s.read_exact(&mut reply).await?;
                    Ok::<_, std::io::Error>(())
                };
                match tokio::time::timeout(Duration::from_secs(5), one).await {
                    Ok(Ok(())) => done.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
    }
    tokio::time::sleep(dur).await;
    let completed = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    let errs = errors.load(Ordering::Relaxed);
    if errs > 0 {
        eprintln!("  {addr}: {errs} failed short connections");
    }
    // Let TIME_WAIT and closing sockets settle before the next measurement.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(completed as f64 / elapsed)
}

/// 64-byte ping-pong over one connection: p50 and p99 in microseconds.
async fn latency(addr: SocketAddr) -> Result<(f64, f64), Error> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let ping = [1u8; 64];
    let mut pong = [0u8; 64];
    let mut samples = Vec::with_capacity(PINGS);
    for i in 0..PINGS + 1000 {
        let t = Instant::now();
        s.write_all(&ping).await?;
        s.read_exact(&mut pong).await?;
        if i >= 1000 {
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Ok((at(0.50), at(0.99)))
}
