//! Upstream: the nodes behind each backend, their health, and keep-alive connections to them.
//!
//! ```text
//!  BackendPool (a Service port)          Endpoint (node IP : node port)
//!   node_port | problem                   health (probe verdict, shared)
//!   endpoints ─────────────────────────▶  idle: [SendRequest] (LIFO, keep-alive)
//!   pick(): least requests in flight       active: requests in flight
//!           among healthy nodes
//! ```
//!
//! A request takes an idle connection of its node if there is one, else opens one. Only a
//! **connect** that fails is retried, once, on another node: once a request has been written
//! it is never sent again (it may not be idempotent). The one exception is a pooled connection
//! that the node had already closed: hyper hands the request back unsent, and it goes out on a
//! fresh connection. A connection goes back to the pool when its response body has been read
//! to the end ([`Lease::release`]); a response abandoned half-way closes it instead, since its
//! framing state is lost.
//!
//! Endpoints are kept across `ensure` calls while their node, port and probe stay, so a route
//! change keeps the warm connections. A removed endpoint's in-flight requests keep their
//! `Arc` and finish; its idle connections close when the last of them is gone.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::{Duration, Instant};

use cloudlb_provider::l7::Backend;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::health::TargetHealth;
use crate::listener_tcp;
use crate::stats::{Counters, HttpCounters, inc};

/// How long an idle pooled connection may be reused. Backends commonly close idle keep-alive
/// connections after 5 s (Node.js's default); reusing one just as it closes loses the request,
/// so connections idle longer than this are closed instead.
const POOL_IDLE: Duration = Duration::from_secs(4);

/// Most idle connections kept per node.
const POOL_MAX_IDLE: usize = 1024;

/// One Service port of an HTTP load balancer: its node port on every node.
#[derive(Debug)]
pub(crate) struct BackendPool {
    /// `namespace/service:port`, for messages.
    pub name: String,
    pub node_port: Option<u16>,
    pub problem: Option<String>,
    pub endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
}

/// Why a backend cannot take a request (the answer is 503).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unusable<'a> {
    /// The Service or port does not resolve to a node port.
    Unresolved(&'a str),
    NoNodes,
    NoHealthyNode,
}

impl BackendPool {
    pub(crate) fn new(b: &Backend, endpoints: Vec<Arc<Endpoint>>) -> Self {
        Self {
            name: b.id.to_string(),
            node_port: b.node_port,
            problem: b.problem.clone(),
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    #[cfg(test)]
    pub(crate) fn unresolved_for_test(b: &Backend) -> Self {
        Self::new(b, Vec::new())
    }

    /// The node for a request: the healthy one with the fewest requests in flight, ties taken
    /// in turn; `exclude` is the node whose connect just failed (for the one retry).
    pub(crate) fn pick(&self, exclude: Option<&Endpoint>) -> Result<&Arc<Endpoint>, Unusable<'_>> {
        if self.node_port.is_none() {
            return Err(Unusable::Unresolved(self.problem.as_deref().unwrap_or("its Service port has no node port")));
        }
        let n = self.endpoints.len();
        if n == 0 {
            return Err(Unusable::NoNodes);
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.endpoints[(start + i) % n])
            .filter(|e| e.health.is_healthy() && !exclude.is_some_and(|x| std::ptr::eq(x, e.as_ref())))
            .min_by_key(|e| e.active.load(Ordering::Relaxed))
            .ok_or(Unusable::NoHealthyNode)
    }
}

/// One node of a backend: where requests go, and the idle connections to it.
pub(crate) struct Endpoint {
    pub addr: SocketAddr,
    pub node: String,
    pub health: Arc<TargetHealth>,
    /// Requests in flight to this node.
    pub active: AtomicU64,
    /// Idle connections, one list per worker thread (and a last one for any other thread): a
    /// connection is only reused on the runtime whose reactor it is registered with.
    idle: Box<[Slot]>,
}

/// One worker's idle list, on a cache line of its own (workers must not share the line the
/// other one locks on every request).
#[repr(align(128))]
struct Slot(Mutex<Vec<Idle>>);

struct Idle {
    conn: Conn,
    since: Instant,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint").field("addr", &self.addr).field("node", &self.node).finish_non_exhaustive()
    }
}

type Io = TokioIo<TcpStream>;

/// One HTTP/1.1 connection to a node, **driven by the request that uses it**.
///
/// hyper's client connection is a future that does the I/O; the usual pattern spawns it as a
/// task of its own, which costs two task hand-offs (and, on a multi-threaded runtime, thread
/// wake-ups) per request: request -> connection task -> response. Here the request's own task
/// polls it (while waiting for the response head, and while its body is read), so a request
/// and both of its sockets are served by one task, as an event-driven proxy does. An idle
/// pooled connection is polled by nobody: the next request polls it first, which is also when
/// a connection the node closed meanwhile is noticed (its request then goes out on a new one).
pub(crate) struct Conn {
    tx: SendRequest<Incoming>,
    /// `None` once the connection has ended (closed or failed). It is dropped then, not kept
    /// finished: only dropping it tells `tx` (and a pending request) that it is gone.
    io: Option<Pin<Box<http1::Connection<Io, Incoming>>>>,
}

impl Conn {
    /// Do the connection's pending I/O.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(io) = &mut self.io
            && io.as_mut().poll(cx).is_ready()
        {
            self.io = None;
        }
    }

    fn ended(&self) -> bool {
        self.io.is_none()
    }
}

impl Endpoint {
    /// `workers`: how many worker threads may use it.
    pub(crate) fn new(addr: SocketAddr, node: String, health: Arc<TargetHealth>, workers: usize) -> Arc<Self> {
        let idle = (0..=workers).map(|_| Slot(Mutex::new(Vec::new()))).collect();
        Arc::new(Self { addr, node, health, active: AtomicU64::new(0), idle })
    }

    /// This thread's idle list.
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        let last = self.idle.len() - 1;
        let slot = super::workers::current().map_or(last, |w| w.min(last));
        // Nothing panics while the lock is held: a poisoned pool is still a consistent list.
        self.idle[slot].0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection that is fresh enough.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle();
        while let Some(c) = idle.pop() {
            if !c.conn.ended() && c.since.elapsed() < POOL_IDLE {
                return Some(c.conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        if conn.ended() || conn.tx.is_closed() {
            return;
        }
        let mut idle = self.idle();
        if idle.len() < POOL_MAX_IDLE {
            idle.push(Idle { conn, since: Instant::now() });
        }
    }

    async fn dial(
        &self,
        timeout: Duration,
        http: &HttpCounters,
    ) -> io::Result<(SendRequest<Incoming>, http1::Connection<Io, Incoming>)> {
        let stream = listener_tcp::dial(self.addr, timeout).await?;
        let handshake = http1::Builder::new().handshake(TokioIo::new(stream));
        let parts = handshake.await.map_err(io::Error::other)?;
        inc(&http.upstream_connections);
        Ok(parts)
    }

    /// A new pooled connection, driven by the requests that use it.
    async fn connect(&self, timeout: Duration, http: &HttpCounters) -> io::Result<Upstream> {
        let (tx, io) = self.dial(timeout, http).await?;
        Ok(Upstream::Pooled(Conn { tx, io: Some(Box::pin(io)) }))
    }

    /// A new connection for an `Upgrade` request: it may become a tunnel, so it runs as its own
    /// task (hyper hands the upgraded socket over when the 101 arrives) and is never pooled.
    async fn connect_for_upgrade(&self, timeout: Duration, http: &HttpCounters) -> io::Result<Upstream> {
        let (tx, io) = self.dial(timeout, http).await?;
        tokio::spawn(async move {
            // Errors end the connection; the request that sees them reports them.
            let _ = io.with_upgrades().await;
        });
        Ok(Upstream::Upgrade(tx))
    }
}

/// A connection as one request uses it.
pub(crate) enum Upstream {
    Pooled(Conn),
    Upgrade(SendRequest<Incoming>),
}

impl Upstream {
    fn tx(&mut self) -> &mut SendRequest<Incoming> {
        match self {
            Upstream::Pooled(c) => &mut c.tx,
            Upstream::Upgrade(tx) => tx,
        }
    }

    fn drive(&mut self, cx: &mut Context<'_>) {
        if let Upstream::Pooled(c) = self {
            c.drive(cx);
        }
    }
}

/// A connection in use by one request, and that request's place in its node's count.
pub(crate) struct Lease {
    conn: Option<Upstream>,
    endpoint: Arc<Endpoint>,
}

impl Lease {
    fn new(endpoint: &Arc<Endpoint>, conn: Upstream) -> Self {
        endpoint.active.fetch_add(1, Ordering::Relaxed);
        Self { conn: Some(conn), endpoint: Arc::clone(endpoint) }
    }

    /// Do the connection's pending I/O (the response body arrives through it).
    pub(crate) fn drive(&mut self, cx: &mut Context<'_>) {
        if let Some(c) = &mut self.conn {
            c.drive(cx);
        }
    }

    /// The response has been read to the end: the connection can serve another request.
    pub(crate) fn release(mut self) {
        if let Some(Upstream::Pooled(conn)) = self.conn.take() {
            self.endpoint.checkin(conn);
        }
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a request got no response from its backend.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No connection could be opened (on the first node nor on the retry).
    Connect { addr: SocketAddr, error: io::Error },
    /// The backend did not answer within the request timeout.
    Timeout,
    /// The exchange failed after the request was (possibly) written.
    Exchange(String),
}

impl Failure {
    /// 504 for timeouts (connect or answer), 502 otherwise.
    pub(crate) fn is_timeout(&self) -> bool {
        match self {
            Failure::Connect { error, .. } => error.kind() == io::ErrorKind::TimedOut,
            Failure::Timeout => true,
            Failure::Exchange(_) => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Connect { addr, error } => write!(f, "cannot connect to {addr}: {error}"),
            Failure::Timeout => f.write_str("no response in time"),
            Failure::Exchange(e) => write!(f, "exchange failed: {e}"),
        }
    }
}

/// Timeouts towards the nodes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UpstreamTimeouts {
    pub connect: Duration,
    pub request: Duration,
}

/// Send `req` to `first` (a node of `pool`) and wait for the response head. `upgrade`: the
/// request asks for a protocol switch (it gets a connection of its own).
pub(crate) async fn send(
    pool: &BackendPool,
    first: &Arc<Endpoint>,
    mut req: Request<Incoming>,
    upgrade: bool,
    t: UpstreamTimeouts,
    counters: &Counters,
    http: &HttpCounters,
) -> Result<(Response<Incoming>, Lease), Failure> {
    // 1. A pooled connection: requests it hands back unsent go out on a fresh one below.
    while let Some(conn) = first.checkout().filter(|_| !upgrade) {
        let mut lease = Lease::new(first, Upstream::Pooled(conn));
        match exchange(&mut lease, req, t.request).await {
            Ok(resp) => return Ok((resp, lease)),
            Err(Unsent(r)) => req = *r,
            Err(other) => return Err(other.into_failure()),
        }
    }
    // 2. A new connection; a failed connect is retried once on another node.
    // Boxed: connecting is the rare path, and its state would otherwise make every request's
    // future (allocated per request) larger.
    let open = |e: &Arc<Endpoint>| {
        let e = Arc::clone(e);
        Box::pin(async move {
            if upgrade { e.connect_for_upgrade(t.connect, http).await } else { e.connect(t.connect, http).await }
        })
    };
    let (endpoint, conn) = match open(first).await {
        Ok(c) => (first, c),
        Err(error) => {
            inc(&counters.connect_failures);
            tracing::debug!(backend = %pool.name, node = %first.node, addr = %first.addr, %error, "connect failed");
            let Ok(second) = pool.pick(Some(first)) else {
                return Err(Failure::Connect { addr: first.addr, error });
            };
            inc(&counters.connect_retries);
            match open(second).await {
                Ok(c) => (second, c),
                Err(error) => {
                    inc(&counters.connect_failures);
                    return Err(Failure::Connect { addr: second.addr, error });
                }
            }
        }
    };
    let mut lease = Lease::new(endpoint, conn);
    match exchange(&mut lease, req, t.request).await {
        Ok(resp) => Ok((resp, lease)),
        Err(e) => Err(e.into_failure()),
    }
}

enum ExchangeError {
    /// The connection was closed before the request was written: it can go elsewhere.
    Unsent(Box<Request<Incoming>>),
    Sent(hyper::Error),
    Timeout,
}
use ExchangeError::Unsent;

impl ExchangeError {
    fn into_failure(self) -> Failure {
        match self {
            ExchangeError::Unsent(_) => Failure::Exchange("the node closed the new connection at once".into()),
            ExchangeError::Sent(e) => Failure::Exchange(e.to_string()),
            ExchangeError::Timeout => Failure::Timeout,
        }
    }
}

async fn exchange(
    lease: &mut Lease,
    req: Request<Incoming>,
    timeout: Duration,
) -> Result<Response<Incoming>, ExchangeError> {
    let Some(conn) = lease.conn.as_mut() else {
        return Err(Unsent(Box::new(req)));
    };
    // Ready: the previous exchange on this connection is complete (or it was closed).
    let ready = std::future::poll_fn(|cx| {
        conn.drive(cx);
        conn.tx().poll_ready(cx)
    });
    if ready.await.is_err() {
        return Err(Unsent(Box::new(req)));
    }
    let mut response = std::pin::pin!(conn.tx().try_send_request(req));
    let exchange = std::future::poll_fn(|cx| {
        conn.drive(cx);
        response.as_mut().poll(cx)
    });
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(ExchangeError::Timeout),
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(mut e)) => match e.take_message() {
            Some(req) => Err(Unsent(Box::new(req))),
            None => Err(ExchangeError::Sent(e.into_error())),
        },
    }
}
