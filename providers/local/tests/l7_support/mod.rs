//! Helpers for the L7 tests: real HTTP backends standing in for node ports on 127.0.0.x (they
//! answer with their name and report the request they saw), real HTTP/1.1, HTTP/2 and TLS
//! clients, generated certificates, and L7 specs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cloudlb_provider::l7::{
    Backend, BackendRef, Certificate, HostMatch, L7Listener, L7Protocol, L7Timeouts, PathMatch, Route, RouteAction,
    RouteMatch, RouteOrigin, ServicePort, VirtualHost, WeightedBackend, WildcardSemantics,
};
use cloudlb_provider::{HealthCheck, HealthCheckProtocol, HealthTarget, L7Spec, Scheme};
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// Backends

/// An HTTP/1.1 server standing in for a node port. Every answer carries `x-backend: <name>` and
/// what it saw (`x-seen-*`); `?sleep_ms=N` delays the answer; `/healthz` answers 200 or 503 by
/// `healthy`; `/ws` accepts a WebSocket and echoes `<name>:<message>`.
pub struct HttpBackend {
    pub name: String,
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
    pub healthy: Arc<AtomicBool>,
    /// Request headers of every request, in order.
    pub seen: Arc<Mutex<Vec<HeaderMap>>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for HttpBackend {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

#[derive(Clone)]
struct BackendState {
    name: Arc<str>,
    requests: Arc<AtomicU64>,
    healthy: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl HttpBackend {
    pub async fn start(name: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = BackendState {
            name: name.into(),
            requests: Arc::clone(&requests),
            healthy: Arc::clone(&healthy),
            seen: Arc::clone(&seen),
        };
        let conns = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            // Connections live in this set: stopping the backend closes them too.
            let mut set = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                conns.fetch_add(1, Ordering::Relaxed);
                let st = state.clone();
                set.spawn(async move {
                    let svc = service_fn(move |req| answer(req, st.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
                while set.try_join_next().is_some() {}
            }
        });
        Ok(Self { name: name.into(), addr, requests, connections, healthy, seen, task: Some(task) })
    }

    /// Stop: the listening socket and every connection are closed once this returns.
    pub async fn stop(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

async fn answer(mut req: Request<Incoming>, st: BackendState) -> Result<Response<Full<Bytes>>, Infallible> {
    st.requests.fetch_add(1, Ordering::Relaxed);
    st.seen.lock().unwrap().push(req.headers().clone());
    if req.uri().path() == "/healthz" {
        let status = if st.healthy.load(Ordering::Relaxed) { 200 } else { 503 };
        return Ok(Response::builder().status(status).body(Full::new(Bytes::from_static(b"healthz"))).unwrap());
    }
    if req.uri().path() == "/ws" {
        let key = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()).unwrap_or_default();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
        let upgrade = hyper::upgrade::on(&mut req);
        let name = Arc::clone(&st.name);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() {
                    let reply = format!("{name}:{}", msg.into_text().unwrap());
                    if ws.send(reply.into()).await.is_err() {
                        break;
                    }
                } else if msg.is_close() {
                    break;
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", accept)
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    let sleep_ms = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("sleep_ms=")))
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    if let Some(ms) = sleep_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let h = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let names: Vec<&str> = parts.headers.keys().map(|k| k.as_str()).collect();
    let resp = Response::builder()
        .header("x-backend", &*st.name)
        .header("x-seen-host", h("host"))
        .header("x-seen-xff", h("x-forwarded-for"))
        .header("x-seen-proto", h("x-forwarded-proto"))
        .header("x-seen-port", h("x-forwarded-port"))
        .header("x-seen-version", format!("{:?}", parts.version))
        .header("x-seen-target", parts.uri.to_string())
        .header("x-seen-method", parts.method.as_str())
        .header("x-seen-body-len", body.len().to_string())
        .header("x-seen-headers", names.join(","))
        // Hop-by-hop headers the proxy must not pass on to the client.
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=60")
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(st.name.to_string())))
        .unwrap();
    Ok(resp)
}

/// Backends named `names[i]` on `ips[i]`, all on one port (what a node port looks like).
pub async fn http_backends(ips: &[&str], names: &[&str]) -> Vec<HttpBackend> {
    for _ in 0..50 {
        let first = HttpBackend::start(names[0], SocketAddr::new(ips[0].parse().unwrap(), 0)).await.unwrap();
        let port = first.addr.port();
        let mut all = vec![first];
        for (i, a) in ips.iter().enumerate().skip(1) {
            match HttpBackend::start(names[i], SocketAddr::new(a.parse().unwrap(), port)).await {
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

// ---------------------------------------------------------------------------------------------
// Specs

pub fn backend_ref(name: &str) -> BackendRef {
    BackendRef { namespace: "test".into(), service: name.into(), port: ServicePort::Number(80) }
}

/// A fast TCP health check (1 s, 1 healthy / 2 unhealthy) on the node port.
pub fn fast_check() -> HealthCheck {
    HealthCheck {
        target: HealthTarget::KubeProxy,
        protocol: HealthCheckProtocol::Tcp,
        port: None,
        path: None,
        interval_seconds: 1,
        timeout_seconds: 1,
        healthy_threshold: 1,
        unhealthy_threshold: 2,
    }
}

pub fn forward(to: &str) -> RouteAction {
    RouteAction::Forward(vec![WeightedBackend { backend: backend_ref(to), weight: 1 }])
}

pub fn prefix(p: &str) -> RouteMatch {
    RouteMatch::path(PathMatch::Prefix(p.into()))
}

pub fn exact(p: &str) -> RouteMatch {
    RouteMatch::path(PathMatch::Exact(p.into()))
}

/// A virtual host `host` ("" = any) with `(match, backend)` routes, sorted into precedence.
pub fn vhost(host: &str, routes: Vec<(RouteMatch, &str)>) -> VirtualHost {
    let mut v = VirtualHost {
        host: HostMatch::parse(host),
        routes: routes
            .into_iter()
            .enumerate()
            .map(|(i, (m, to))| Route {
                matches: m,
                action: forward(to),
                origin: RouteOrigin {
                    kind: "Ingress".into(),
                    namespace: "test".into(),
                    name: "web".into(),
                    rule: 0,
                    index: i as u32,
                },
            })
            .collect(),
    };
    v.sort_routes();
    v
}

/// An L7 spec: HTTP `listeners`, `hosts`, backends (name, node port), nodes; 404 by default.
pub fn l7spec(listeners: &[u16], hosts: Vec<VirtualHost>, backends: &[(&str, Option<u16>)], nodes: &[&str]) -> L7Spec {
    let mut backends: Vec<Backend> = backends
        .iter()
        .map(|(name, port)| Backend {
            id: backend_ref(name),
            node_port: *port,
            problem: port.is_none().then(|| format!("Service test/{name} does not exist")),
            health_check: fast_check(),
        })
        .collect();
    backends.sort_by(|a, b| a.id.cmp(&b.id));
    let mut spec = L7Spec {
        listeners: listeners
            .iter()
            .map(|p| L7Listener { port: *p, protocol: L7Protocol::Http, redirect_to_https: None })
            .collect(),
        wildcards: WildcardSemantics::SingleLabel,
        virtual_hosts: hosts,
        default_action: RouteAction::not_found(),
        backends,
        certificates: Vec::new(),
        targets: nodes
            .iter()
            .enumerate()
            .map(|(i, a)| cloudlb_provider::conformance::target(&format!("node-{i}-{a}"), a))
            .collect::<Vec<_>>()
            .into(),
        source_ranges: vec!["0.0.0.0/0".parse().unwrap()],
        requested_ip: None,
        scheme: Scheme::InternetFacing,
        timeouts: L7Timeouts::default(),
        options: BTreeMap::new(),
    };
    spec.sort_virtual_hosts();
    spec
}

// ---------------------------------------------------------------------------------------------
// Certificates

/// A test CA that signs leaf certificates.
pub struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate: its PEM (for the spec) and DER (to recognise it on the wire).
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "cloudlb test CA");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { chain_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        roots
    }
}

impl Leaf {
    /// The spec's certificate for `hosts` (empty = the default certificate).
    pub fn certificate(&self, name: &str, hosts: &[&str]) -> Certificate {
        Certificate::new(
            name.into(),
            hosts.iter().map(|h| h.to_string()).collect(),
            self.chain_pem.clone(),
            self.key_pem.clone(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The backend that answered, or `<status>` when the proxy answered itself.
    pub fn who(&self) -> String {
        match self.headers.get("x-backend") {
            Some(b) => b.to_str().unwrap_or("?").to_string(),
            None => self.status.to_string(),
        }
    }
}

/// An HTTP/1.1 or HTTP/2 client connection (keep-alive).
pub enum Client {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Client {
    /// HTTP/1.1 over a new TCP connection to `to` (from `from` when given).
    pub async fn h1(to: SocketAddr, from: Option<&str>) -> Result<Self, Error> {
        let s = tcp(to, from).await?;
        Self::h1_over(TokioIo::new(s)).await
    }

    /// HTTP/2 with prior knowledge (h2c) over a new TCP connection.
    pub async fn h2c(to: SocketAddr) -> Result<Self, Error> {
        let s = tcp(to, None).await?;
        Self::h2_over(TokioIo::new(s)).await
    }

    pub async fn h1_over<I>(io: I) -> Result<Self, Error>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (tx, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(Client::H1(tx))
    }

    pub async fn h2_over<I>(io: I) -> Result<Self, Error>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (tx, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client::H2(tx))
    }

    /// Whether the server closed this connection.
    pub fn is_closed(&self) -> bool {
        match self {
            Client::H1(tx) => tx.is_closed(),
            Client::H2(tx) => tx.is_closed(),
        }
    }

    /// `GET path` with `Host: host` (HTTP/2: `:authority`).
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Resp, Error> {
        self.send(Request::get(path).header("host", host).body(Full::default())?).await
    }

    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Resp, Error> {
        let resp = match self {
            Client::H1(tx) => {
                tx.ready().await?;
                tx.send_request(req).await?
            }
            Client::H2(tx) => {
                // HTTP/2 carries the host in the URI (`:authority`), not in a Host header.
                let (mut parts, body) = req.into_parts();
                let host = parts.headers.remove("host").and_then(|h| h.to_str().ok().map(str::to_string));
                if let Some(host) = host {
                    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
                    parts.uri = format!("https://{host}{pq}").parse()?;
                }
                tx.ready().await?;
                tx.send_request(Request::from_parts(parts, body)).await?
            }
        };
        read(resp).await
    }
}

async fn read(resp: Response<Incoming>) -> Result<Resp, Error> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Resp {
        status: parts.status.as_u16(),
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// One request on a new HTTP/1.1 connection.
pub async fn get(to: SocketAddr, host: &str, path: &str) -> Result<Resp, Error> {
    Client::h1(to, None).await?.get(host, path).await
}

pub async fn tcp(to: SocketAddr, from: Option<&str>) -> std::io::Result<tokio::net::TcpStream> {
    let s = TcpSocket::new_v4()?;
    if let Some(f) = from {
        s.bind(SocketAddr::new(f.parse::<IpAddr>().map_err(std::io::Error::other)?, 0))?;
    }
    let s = s.connect(to).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A TLS connection: the certificate the server presented and the ALPN protocol agreed.
pub struct Tls {
    pub stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    pub cert: CertificateDer<'static>,
    pub alpn: Option<Vec<u8>>,
}

impl Tls {
    /// HTTP over this connection: HTTP/2 when ALPN agreed on it, HTTP/1.1 otherwise.
    pub async fn client(self) -> Result<Client, Error> {
        if self.alpn.as_deref() == Some(b"h2") {
            Client::h2_over(TokioIo::new(self.stream)).await
        } else {
            Client::h1_over(TokioIo::new(self.stream)).await
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// TLS to `to` with SNI `server_name`, verifying the certificate against `roots` (`None`: accept
/// any certificate, for checking which one is served where verification cannot succeed).
pub async fn tls(
    to: SocketAddr,
    server_name: &str,
    roots: Option<rustls::RootCertStore>,
    alpn: &[&[u8]],
) -> Result<Tls, Error> {
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let mut config = match roots {
        Some(r) => builder.with_root_certificates(r).with_no_client_auth(),
        None => builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny)).with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(server_name.to_string())?;
    let stream = connector.connect(name, tcp(to, None).await?).await?;
    let (_, conn) = stream.get_ref();
    let cert = conn.peer_certificates().and_then(|c| c.first()).ok_or("no server certificate")?.clone().into_owned();
    let alpn = conn.alpn_protocol().map(|p| p.to_vec());
    Ok(Tls { stream, cert, alpn })
}

#[derive(Debug)]
struct AcceptAny;

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}
