//! One request through the proxy: redirect, route, forward, answer.
//!
//! ```text
//!  request ─▶ listener redirects to HTTPS? ──▶ 308 https://host[:port]/path?query
//!          ─▶ Router::route (host, path, method, headers, query)
//!               Fixed(status) ───────────────▶ 404 (or the status) with a short body
//!               backend ─▶ pick a healthy node ─ none ─▶ 503 naming the backend (and why)
//!                        ─▶ headers: hop-by-hop out, X-Forwarded-* set, Host kept
//!                        ─▶ upstream::send (pooled connection, connect retry on another node)
//!                              timeout ─▶ 504   failure ─▶ 502   101 ─▶ tunnel both ways
//!                        ─▶ response: hop-by-hop out, body streamed back (connection returns
//!                           to the pool when the body ends)
//! ```
//!
//! The routing table is read once per request from the snapshot (`ArcSwap`): a request keeps
//! the snapshot, backends and connection it started with, so swapping the table never fails a
//! request in flight. Every answer the proxy makes itself is short `text/plain` naming what
//! failed, never a stack of internals.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cloudlb_provider::l7::{Request as RouteRequest, normalize_host};
use http::header::{self, HeaderValue};
use http::{StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::sync::watch;

use super::router::Action;
use super::upstream::{self, Lease, Unusable};
use super::{Shared, Snapshot, headers};
use crate::stats::inc;

/// One client connection, as its requests see it.
pub(crate) struct ConnCx {
    pub lb: Arc<Shared>,
    pub peer: SocketAddr,
    /// The listener port the client connected to.
    pub port: u16,
    /// Closes upgraded tunnels when the listener or load balancer goes away.
    pub shutdown: watch::Receiver<bool>,
    /// The X-Forwarded-* values of this connection.
    forwarded: headers::Forwarded,
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` of the last request start or end.
    last_activity_ms: AtomicU64,
    /// A node that switched protocols: the connection becomes a tunnel once the 101 is out.
    tunnel: Mutex<Option<PendingTunnel>>,
}

/// The node's side of an upgrade, waiting for the client's side (the connection loop owns it).
pub(crate) struct PendingTunnel {
    pub node: hyper::upgrade::OnUpgrade,
    pub lease: Lease,
    pub drain: Duration,
}

impl ConnCx {
    pub(crate) fn new(
        lb: Arc<Shared>,
        peer: SocketAddr,
        port: u16,
        https: bool,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            lb,
            peer,
            port,
            shutdown,
            forwarded: headers::Forwarded::new(peer.ip(), https, port),
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_activity_ms: AtomicU64::new(0),
            tunnel: Mutex::new(None),
        }
    }

    /// The upgrade a response just agreed to, if any.
    pub(crate) fn take_tunnel(&self) -> Option<PendingTunnel> {
        self.tunnel.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the connection has had no request in flight; `None` while one is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        Some(self.started.elapsed().saturating_sub(last))
    }
}

/// A request in flight on its connection (until its response body is done).
pub(crate) struct InFlight(Arc<ConnCx>);

impl InFlight {
    fn new(cx: &Arc<ConnCx>) -> Self {
        cx.in_flight.fetch_add(1, Ordering::Relaxed);
        cx.touch();
        Self(Arc::clone(cx))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The hyper service: never fails (every problem is an HTTP answer).
pub(crate) async fn handle(req: Request<Incoming>, cx: Arc<ConnCx>) -> Result<Response<ProxyBody>, Infallible> {
    let in_flight = InFlight::new(&cx);
    let lb = &cx.lb;
    inc(&lb.http.requests);
    let version = req.version();
    let snap = lb.snapshot.load_full();
    let mut resp = respond(req, &cx, &snap, in_flight).await;
    lb.http.response(resp.status().as_u16());
    *resp.version_mut() = version;
    Ok(resp)
}

async fn respond(req: Request<Incoming>, cx: &Arc<ConnCx>, snap: &Snapshot, guard: InFlight) -> Response<ProxyBody> {
    let lb = &cx.lb;
    let host = routing_host(
        req.uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or(""),
    );
    if let Some(https_port) = snap.listener(cx.port).and_then(|l| l.redirect_to_https) {
        inc(&lb.http.redirects);
        return redirect(&host, https_port, req.uri(), lb.ip, guard);
    }

    let action = {
        let headers: Vec<(&str, &str)> = if snap.router.needs_headers {
            req.headers().iter().filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))).collect()
        } else {
            Vec::new()
        };
        let query: Vec<(&str, &str)> = match req.uri().query() {
            Some(q) if snap.router.needs_query => {
                q.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect()
            }
            _ => Vec::new(),
        };
        let r = RouteRequest {
            host: &host,
            path: req.uri().path(),
            method: req.method().as_str(),
            headers: &headers,
            query: &query,
        };
        snap.router.route(&r)
    };
    let pool = match action {
        Action::Fixed(status) => {
            if *status == StatusCode::NOT_FOUND {
                inc(&lb.http.not_found);
                let msg = format!("no route for {}{}\n", display_host(&host), req.uri().path());
                return text(StatusCode::NOT_FOUND, msg, guard);
            }
            let msg = format!("{}\n", status.canonical_reason().unwrap_or("fixed response"));
            return text(*status, msg, guard);
        }
        Action::Missing(id) => {
            inc(&lb.http.unavailable);
            return text(StatusCode::SERVICE_UNAVAILABLE, format!("backend {id} is not defined\n"), guard);
        }
        other => match other.backend() {
            Some(b) => Arc::clone(b),
            None => return text(StatusCode::SERVICE_UNAVAILABLE, "no backend\n".into(), guard),
        },
    };
    let first = match pool.pick(None) {
        Ok(e) => Arc::clone(e),
        Err(why) => {
            inc(&lb.http.unavailable);
            inc(&lb.counters.no_target);
            let msg = match why {
                Unusable::Unresolved(problem) => format!("backend {} is unavailable: {problem}\n", pool.name),
                Unusable::NoNodes => format!("backend {} is unavailable: no nodes\n", pool.name),
                Unusable::NoHealthyNode => format!("backend {} is unavailable: no healthy node\n", pool.name),
            };
            return text(StatusCode::SERVICE_UNAVAILABLE, msg, guard);
        }
    };

    // The request as the node gets it.
    let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, upgrade);
    if let Some(authority) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str().rsplit('@').next().unwrap_or(""))
    {
        parts.headers.insert(header::HOST, v);
    }
    cx.forwarded.apply(&mut parts.headers);
    parts.uri = parts.uri.path_and_query().map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    parts.version = Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, body);

    match upstream::send(&pool, &first, upstream_req, upgrade, snap.upstream, &lb.counters, &lb.http).await {
        Err(failure) => {
            tracing::debug!(backend = %pool.name, %failure, "upstream failed");
            let (status, counter) = if failure.is_timeout() {
                (StatusCode::GATEWAY_TIMEOUT, &lb.http.upstream_timeouts)
            } else {
                (StatusCode::BAD_GATEWAY, &lb.http.upstream_errors)
            };
            inc(counter);
            text(status, format!("backend {}: {failure}\n", pool.name), guard)
        }
        Ok((mut resp, lease)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            if !upgrade {
                inc(&lb.http.upstream_errors);
                let msg = format!("backend {}: switched protocols without being asked\n", pool.name);
                return text(StatusCode::BAD_GATEWAY, msg, guard);
            }
            inc(&lb.http.upgrades);
            // The connection loop takes the client's side once hyper has sent the 101.
            let node = hyper::upgrade::on(&mut resp);
            *cx.tunnel.lock().unwrap_or_else(|p| p.into_inner()) =
                Some(PendingTunnel { node, lease, drain: snap.drain });
            let (parts, _) = resp.into_parts();
            Response::from_parts(parts, ProxyBody::full(Bytes::new(), guard))
        }
        Ok((mut resp, lease)) => {
            headers::strip_hop_by_hop(resp.headers_mut(), false);
            resp.map(|body| ProxyBody::upstream(body, lease, guard))
        }
    }
}

/// The host as routing sees it: exactly `normalize_host`, without allocating for a host that
/// is already normal (lowercase, no port, no trailing dot), the common case.
fn routing_host(raw: &str) -> Cow<'_, str> {
    let normal =
        raw.bytes().all(|b| !b.is_ascii_uppercase() && !matches!(b, b':' | b'[' | b' ' | b'\t')) && !raw.ends_with('.');
    if normal { Cow::Borrowed(raw) } else { Cow::Owned(normalize_host(raw)) }
}

fn display_host(host: &str) -> &str {
    if host.is_empty() { "<no host>" } else { host }
}

/// 308 to the same host and path on HTTPS (`:port` left out when it is 443).
fn redirect(host: &str, port: u16, uri: &Uri, lb_ip: IpAddr, guard: InFlight) -> Response<ProxyBody> {
    let host = match host {
        "" => bracketed(lb_ip),
        h if h.parse::<std::net::Ipv6Addr>().is_ok() => format!("[{h}]"),
        h => h.to_string(),
    };
    let port = if port == 443 { String::new() } else { format!(":{port}") };
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let location = format!("https://{host}{port}{pq}");
    let mut resp = text(StatusCode::PERMANENT_REDIRECT, format!("redirecting to {location}\n"), guard);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn bracketed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// A short plain-text answer made by the proxy itself.
fn text(status: StatusCode, body: String, guard: InFlight) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(Bytes::from(body), guard));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

/// The response body: a short answer of the proxy's own, or the node's body streamed through.
///
/// It holds the request's [`InFlight`] mark and, for a node's body, the connection's
/// [`Lease`]: when the body has been read to its end the connection goes back to the pool;
/// dropped before that, the connection closes (its framing state is unknown).
pub(crate) struct ProxyBody {
    inner: Inner,
    lease: Option<Lease>,
    _in_flight: InFlight,
}

enum Inner {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

impl ProxyBody {
    fn full(bytes: Bytes, in_flight: InFlight) -> Self {
        let data = if bytes.is_empty() { None } else { Some(bytes) };
        Self { inner: Inner::Full(data), lease: None, _in_flight: in_flight }
    }

    fn upstream(body: Incoming, lease: Lease, in_flight: InFlight) -> Self {
        let mut me = Self { inner: Inner::Upstream(body), lease: Some(lease), _in_flight: in_flight };
        me.release_if_done();
        me
    }

    fn release_if_done(&mut self) {
        if let Inner::Upstream(b) = &self.inner
            && b.is_end_stream()
            && let Some(lease) = self.lease.take()
        {
            lease.release();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match &mut this.inner {
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Inner::Upstream(body) => {
                // The node's connection is driven by this task: let it read what arrived.
                if let Some(lease) = &mut this.lease {
                    lease.drive(cx);
                }
                let frame = ready!(Pin::new(body).poll_frame(cx));
                match &frame {
                    None => {
                        if let Some(lease) = this.lease.take() {
                            lease.release();
                        }
                    }
                    Some(Ok(_)) => this.release_if_done(),
                    // The node's connection failed: it is not reusable (dropping the lease
                    // closes it).
                    Some(Err(_)) => this.lease = None,
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(data) => data.is_none(),
            Inner::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Inner::Upstream(body) => body.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        self.release_if_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_host_is_normalize_host() {
        for h in ["foo.com", "Foo.com", "foo.com:80", "foo.com.", "[::1]:80", "::1", " foo.com ", "", "a.b.c", "x:y:z"]
        {
            assert_eq!(routing_host(h), normalize_host(h), "{h:?}");
        }
        assert!(matches!(routing_host("foo.com"), Cow::Borrowed(_)));
    }
}
