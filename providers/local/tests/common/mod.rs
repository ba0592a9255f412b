//! Test helpers: backends standing in for node ports on 127.0.0.x, specs, and waiting on
//! conditions with a deadline (never a bare sleep as synchronisation).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloudlb_provider::{
    HealthCheck, HealthCheckProtocol, HealthTarget, IpFamily, Listener, LoadBalancerSpec, Protocol, Scheme,
    SessionAffinity,
};
use cloudlb_provider_local::{LocalConfig, LocalProvider, LocalStats};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

pub const LIMIT: Duration = Duration::from_secs(40);

/// Run a test body bounded in time.
pub async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(LIMIT, f).await.expect("test exceeded its time bound");
}

pub fn provider(pool: &str) -> LocalProvider {
    LocalProvider::new(LocalConfig {
        pools: vec![pool.parse().unwrap()],
        connect_timeout: Duration::from_secs(1),
        ..LocalConfig::default()
    })
    .unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A spec with fast health checks (1 s interval, 1 healthy / 2 unhealthy).
pub fn spec(listeners: &[(u16, Protocol, u16)], targets: &[&str]) -> LoadBalancerSpec {
    let mut listeners: Vec<Listener> = listeners
        .iter()
        .map(|(port, protocol, node_port)| Listener {
            port: *port,
            protocol: *protocol,
            node_port: *node_port,
            name: None,
        })
        .collect();
    listeners.sort();
    LoadBalancerSpec {
        listeners,
        targets: targets
            .iter()
            .enumerate()
            .map(|(i, a)| cloudlb_provider::conformance::target(&format!("node-{i}-{a}"), a))
            .collect::<Vec<_>>()
            .into(),
        health_check: HealthCheck {
            target: HealthTarget::KubeProxy,
            protocol: HealthCheckProtocol::Tcp,
            port: None,
            path: None,
            interval_seconds: 1,
            timeout_seconds: 1,
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        },
        source_ranges: vec!["0.0.0.0/0".parse().unwrap()],
        requested_ip: None,
        scheme: Scheme::InternetFacing,
        session_affinity: SessionAffinity::None,
        ip_families: vec![IpFamily::IPv4],
        options: BTreeMap::new(),
    }
}

pub fn lb_addr(st: &cloudlb_provider::LoadBalancerStatus, port: u16) -> SocketAddr {
    match &st.ingress[0] {
        cloudlb_provider::IngressPoint::Ip(ip) => SocketAddr::new(*ip, port),
        other => panic!("unexpected ingress {other:?}"),
    }
}

/// Poll `cond` every 20 ms until it holds; panics after `within`.
pub async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn target_healthy(stats: &LocalStats, addr: &str) -> Option<bool> {
    stats.load_balancers.iter().flat_map(|lb| &lb.targets).find(|t| t.address == ip(addr)).map(|t| t.healthy)
}

/// A TCP backend: answers `who?\n` with its name, echoes everything else, passes half-close on
/// (shuts its write side when the client's EOF arrives), and records PROXY v2 headers.
pub struct TcpBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub proxy_headers: Arc<Mutex<Vec<(SocketAddr, SocketAddr)>>>,
    pub served: Arc<AtomicU64>,
    task: Option<JoinHandle<()>>,
}

impl Drop for TcpBackend {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl TcpBackend {
    pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let proxy_headers = Arc::new(Mutex::new(Vec::new()));
        let served = Arc::new(AtomicU64::new(0));
        let (n, h, s) = (name.to_string(), Arc::clone(&proxy_headers), Arc::clone(&served));
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.spawn(serve_tcp(stream, n.clone(), Arc::clone(&h), Arc::clone(&s)));
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Self { name: name.into(), addr, proxy_headers, served, task: Some(task) })
    }

    /// Stop: the listening socket is closed once this returns.
    pub async fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Backends named `names[i]` on `ips[i]`, all on one port (what a node port looks like).
pub async fn tcp_backends(ips: &[&str], names: &[&str]) -> Vec<TcpBackend> {
    for _ in 0..50 {
        let first = TcpBackend::start(names[0], SocketAddr::new(ip(ips[0]), 0)).await.unwrap();
        let port = first.addr.port();
        let mut all = vec![first];
        for (i, a) in ips.iter().enumerate().skip(1) {
            match TcpBackend::start(names[i], SocketAddr::new(ip(a), port)).await {
                Ok(b) => all.push(b),
                Err(_) => break,
            }
        }
        if all.len() == ips.len() {
            return all;
        }
    }
    panic!("could not bind backends on one port");
}

/// Bind again where a stopped backend was (its port may take a moment to be released).
pub async fn restart(name: &str, addr: SocketAddr) -> TcpBackend {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match TcpBackend::start(name, addr).await {
            Ok(b) => return b,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "rebinding {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Connect to `to`, from `from` when given.
pub async fn connect(to: SocketAddr, from: Option<&str>) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    if let Some(f) = from {
        s.bind(SocketAddr::new(ip(f), 0))?;
    }
    s.connect(to).await
}

/// Ask the load balancer which backend answers a new connection.
pub async fn who(to: SocketAddr, from: Option<&str>) -> std::io::Result<String> {
    let s = connect(to, from).await?;
    let mut r = BufReader::new(s);
    r.get_mut().write_all(b"who?\n").await?;
    let mut line = String::new();
    r.read_line(&mut line).await?;
    if line.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed without an answer"));
    }
    Ok(line.trim().to_string())
}

/// Ask `who` on an open connection.
pub async fn who_on(s: &mut TcpStream) -> std::io::Result<String> {
    s.write_all(b"who?\n").await?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await?;
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// A UDP backend answering `<name>:<datagram>`.
pub struct UdpBackend {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for UdpBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpBackend {
    pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let sock = UdpSocket::bind(addr).await?;
        let addr = sock.local_addr()?;
        let name = name.to_string();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                    continue;
                };
                let mut reply = format!("{name}:").into_bytes();
                reply.extend_from_slice(&buf[..n]);
                let _ = sock.send_to(&reply, peer).await;
            }
        });
        Ok(Self { addr, task })
    }
}

/// An HTTP health endpoint answering 200 or 503 on every path, as kube-proxy's healthz does.
pub struct HealthServer {
    pub addr: SocketAddr,
    pub ok: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HealthServer {
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let ok = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&ok);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let flag = Arc::clone(&flag);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let mut n = 0;
                    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                        match s.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(r) => n += r,
                        }
                    }
                    let healthy = flag.load(Ordering::Relaxed) && buf[..n].starts_with(b"GET /healthz ");
                    let reply: &[u8] = if healthy {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    } else {
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfail"
                    };
                    let _ = s.write_all(reply).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Ok(Self { addr, ok, task })
    }
}

async fn serve_tcp(
    mut s: TcpStream,
    name: String,
    headers: Arc<Mutex<Vec<(SocketAddr, SocketAddr)>>>,
    served: Arc<AtomicU64>,
) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = true;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut data = &buf[..n];
        if first {
            first = false;
            served.fetch_add(1, Ordering::Relaxed);
            if let Some((src, dst, len)) = cloudlb_provider_local::proxy_protocol::parse_v2(data) {
                headers.lock().unwrap().push((src, dst));
                data = &data[len..];
            }
        }
        let reply = if data.starts_with(b"who?\n") { format!("{name}\n").into_bytes() } else { data.to_vec() };
        if s.write_all(&reply).await.is_err() {
            break;
        }
    }
    let _ = s.shutdown().await;
}

/// A provider on `pool` with `configure` applied to the test defaults of [`provider`].
pub fn provider_with(pool: &str, configure: impl FnOnce(&mut LocalConfig)) -> LocalProvider {
    let mut config = LocalConfig {
        pools: vec![pool.parse().unwrap()],
        connect_timeout: Duration::from_secs(1),
        ..LocalConfig::default()
    };
    configure(&mut config);
    LocalProvider::new(config).unwrap()
}

/// Keep trying `attempt` every 20 ms until it succeeds; panics after `within`.
pub async fn until_ok<T, E: std::fmt::Debug, F: Future<Output = Result<T, E>>>(
    what: &str,
    within: Duration,
    mut attempt: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what} (last error: {e:?})");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Send `msg` to `to` from `sock` and wait up to `within` for one reply.
pub async fn udp_ask(sock: &UdpSocket, to: SocketAddr, msg: &[u8], within: Duration) -> std::io::Result<Vec<u8>> {
    sock.send_to(msg, to).await?;
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Ok(buf[..n].to_vec()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no reply")),
    }
}

/// Descriptors open in this process now.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// This process's resident set size, in KiB (`VmRSS` of /proc/self/status).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB")
}
