//! HTTP(S) listeners: accept, filter by source range, terminate TLS, serve HTTP/1.1 and HTTP/2
//! on the connection, and close it when idle or when the listener goes away.
//!
//! ```text
//!  accept ─▶ source range? ─no─▶ reset
//!          ─▶ [connection task] count bytes ─▶ TLS (HTTPS listener; SNI picks the certificate)
//!             ─▶ HTTP/2 (ALPN h2, or the h2c preface on plain HTTP) ─▶ hyper http2
//!             ─▶ HTTP/1.1 ─▶ hyper http1, in rounds:
//!                  serve requests ─ quiet for PARK_AFTER ─▶ park: hyper hands the socket back
//!                  (and its buffers go); wait until the client sends again ─▶ next round
//!                  101 Switching Protocols ─▶ tunnel both ways (WebSocket)
//!             ◀─ idle (no request in flight for `idle_seconds`) or shutdown: graceful close
//!                (in-flight requests finish; cut after the drain time)
//! ```
//!
//! **Parking.** hyper keeps about 16 KiB of buffers per HTTP/1.1 connection for as long as it
//! serves it. Most keep-alive connections are idle most of the time, so an idle one is handed
//! back by hyper (`poll_without_shutdown`, `into_parts`: nothing is closed, nothing read is
//! lost) and waits for readability holding only its socket; the next request starts a new
//! round. Busy connections never park, so requests pay nothing for it.
//!
//! Whether a port speaks HTTP or HTTPS, who may connect, and the timeouts are read from the
//! load balancer's current snapshot at accept, so `ensure` changes them without re-binding.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cloudlb_provider::l7::L7Protocol;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::proxy::{self, ConnCx};
use super::transport::{Counted, Rewind, Transport};
use super::{Shared, workers};
use crate::stats::{GaugeGuard, inc};

/// The accept loop of one listener port; runs until its task is aborted.
pub(crate) async fn serve(listener: TcpListener, port: u16, lb: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    let local = listener.local_addr().ok();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let snap = lb.snapshot.load();
                if !snap.source.allows(peer.ip()) {
                    inc(&lb.counters.connections_refused);
                    let _ = stream.set_zero_linger();
                    continue;
                }
                inc(&lb.counters.connections_accepted);
                let https = snap.listener(port).is_some_and(|l| l.protocol == L7Protocol::Https);
                let here = workers::current().unwrap_or(0);
                let target = lb.workers.place(here);
                let (lb, shutdown) = (Arc::clone(&lb), shutdown.clone());
                let handover = lb.workers.handles().get(target).filter(|_| target != here).cloned();
                match handover {
                    None => {
                        tokio::spawn(connection(stream, peer, port, https, lb, shutdown));
                    }
                    // Hand over to a less loaded worker: the socket joins that worker's reactor.
                    Some(worker) => match stream.into_std() {
                        Ok(std) => {
                            worker.spawn(async move {
                                if let Ok(stream) = TcpStream::from_std(std) {
                                    connection(stream, peer, port, https, lb, shutdown).await;
                                }
                            });
                        }
                        Err(e) => tracing::debug!(%peer, error = %e, "cannot hand a connection over"),
                    },
                }
            }
            Err(e) => {
                if !matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) {
                    tracing::warn!(?local, error = %e, "accept failed; pausing this listener for 50ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    port: u16,
    https: bool,
    lb: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let _active = GaugeGuard::new(&lb.counters.connections_active);
    let _load = lb.workers.enter();
    let _ = stream.set_nodelay(true);
    let io = Counted::new(stream, Arc::clone(&lb.counters));
    let idle = lb.snapshot.load().idle;
    let cx = Arc::new(ConnCx::new(Arc::clone(&lb), peer, port, https, shutdown));
    if https {
        // Boxed: a TLS connection's state (rustls, the handshake) is no part of a plain one's.
        Box::pin(serve_tls(io, idle, cx)).await;
    } else {
        // HTTP/2 with prior knowledge (h2c) starts with the connection preface.
        let Ok(Ok(Some((io, first)))) = tokio::time::timeout(idle, sniff(io)).await else {
            return;
        };
        if first.starts_with(PREFACE) {
            Box::pin(serve_h2(io, first, cx)).await;
        } else {
            serve_h1(io, first, cx).await;
        }
    }
}

async fn serve_tls(io: Counted, idle: Duration, cx: Arc<ConnCx>) {
    let lb = Arc::clone(&cx.lb);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&lb.tls));
    // Boxed, like every phase that is not idle: the connection's task keeps only what the
    // phase it is in needs (an idle connection is its socket and a few hundred bytes, not a
    // handshake's or an HTTP connection's worth of state).
    match Box::pin(tokio::time::timeout(idle, acceptor.accept(io))).await {
        Ok(Ok(tls)) => {
            inc(&lb.http.tls_handshakes);
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                Box::pin(serve_h2(tls, Bytes::new(), cx)).await;
            } else {
                serve_h1(tls, Bytes::new(), cx).await;
            }
        }
        Ok(Err(e)) => {
            inc(&lb.http.tls_handshake_failures);
            tracing::debug!(peer = %cx.peer, error = %e, "TLS handshake failed");
        }
        Err(_) => inc(&lb.http.tls_handshake_failures),
    }
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An HTTP/1.1 connection without a request for this long gives its buffers back (see Parking).
/// Short, so that a burst of new connections that go quiet does not hold a burst of buffers
/// (measured: 10,000 idle connections, 101 MiB with 200 ms, 51 MiB with 50 ms); a connection
/// busy enough never to pause that long never parks. A client that pauses for longer in the
/// middle of a request *head* gets that request answered with `Connection: close`.
const PARK_AFTER: Duration = Duration::from_millis(50);

/// Read until the first bytes tell the HTTP/2 preface from anything else; `None` when the
/// client closed first.
async fn sniff<T: Transport>(mut io: T) -> io::Result<Option<(T, Bytes)>> {
    let mut buf = BytesMut::with_capacity(PREFACE.len());
    loop {
        if io.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
        if buf.len() >= PREFACE.len() || !PREFACE.starts_with(&buf) {
            return Ok(Some((io, buf.freeze())));
        }
    }
}

type Handler = Pin<Box<dyn Future<Output = Result<hyper::Response<proxy::ProxyBody>, Infallible>> + Send>>;

fn service(
    cx: &Arc<ConnCx>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<proxy::ProxyBody>,
    Error = Infallible,
    Future = Handler,
> + Clone {
    let cx = Arc::clone(cx);
    service_fn(move |req| -> Handler { Box::pin(proxy::handle(req, Arc::clone(&cx))) })
}

fn after(d: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + d
}

/// HTTP/2: one hyper connection for the whole TCP connection (streams run as tasks of this
/// worker); closed gracefully (GOAWAY) when idle or on shutdown.
async fn serve_h2<T: Transport>(io: T, prefix: Bytes, cx: Arc<ConnCx>) {
    let lb = Arc::clone(&cx.lb);
    let mut shutdown = cx.shutdown.clone();
    let conn = lb.h2.serve_connection(TokioIo::new(Rewind::new(io, prefix)), service(&cx));
    tokio::pin!(conn);
    let idle = lb.snapshot.load().idle;
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = timer.as_mut() => {
                if closing {
                    return;
                }
                match cx.idle_for() {
                    Some(quiet) if quiet >= idle => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                        timer.as_mut().reset(after(lb.snapshot.load().drain));
                    }
                    Some(quiet) => timer.as_mut().reset(after(idle - quiet)),
                    None => timer.as_mut().reset(after(idle)),
                }
            }
            _ = shutdown.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
                timer.as_mut().reset(after(lb.snapshot.load().drain));
            }
        }
    }
}

/// Why the serving loop asked hyper to stop a round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// It did not: the client closed, or asked to (`Connection: close`), or an error.
    No,
    /// Idle: hand the socket back and wait for the next request.
    Park,
    /// Idle too long, or shutting down: close once in-flight requests are answered.
    Close,
}

/// HTTP/1.1 in rounds (see Parking). Each round runs boxed, so a parked connection holds
/// only its socket and this loop's few locals.
async fn serve_h1<T: Transport>(mut io: T, mut prefix: Bytes, cx: Arc<ConnCx>) {
    let mut shutdown = cx.shutdown.clone();
    let idle = cx.lb.snapshot.load().idle;
    loop {
        let Some((rest_io, pending)) = Box::pin(round(io, prefix, &cx)).await else {
            return;
        };
        inc(&cx.lb.http.parks);
        io = rest_io;
        prefix = pending;
        if prefix.is_empty() && !io.has_buffered() {
            let Some(quiet) = cx.idle_for() else { return };
            let deadline = after(idle.saturating_sub(quiet));
            let done = tokio::select! {
                r = io.readable() => if r.is_err() { return } else { false },
                _ = tokio::time::sleep_until(deadline) => true,
                _ = shutdown.wait_for(|s| *s) => true,
            };
            if done {
                return close(io).await;
            }
        }
    }
}

/// One round of HTTP/1.1: serve requests until the connection is idle for `PARK_AFTER` (then
/// hand back the socket and the bytes read but not used), or closes, or upgrades (then tunnel
/// here). `None`: the connection is done.
async fn round<T: Transport>(io: T, prefix: Bytes, cx: &Arc<ConnCx>) -> Option<(T, Bytes)> {
    let lb = &cx.lb;
    let mut shutdown = cx.shutdown.clone();
    let idle = lb.snapshot.load().idle;
    let mut conn = lb.h1.serve_connection(TokioIo::new(Rewind::new(io, prefix)), service(cx));
    let mut stop = Stop::No;
    let timer = tokio::time::sleep(PARK_AFTER.min(idle));
    tokio::pin!(timer);
    let served = loop {
        tokio::select! {
            r = std::future::poll_fn(|c| conn.poll_without_shutdown(c)) => break r,
            _ = timer.as_mut() => {
                if stop != Stop::No {
                    // The drain time ran out (or parking did not complete): cut.
                    return None;
                }
                match cx.idle_for() {
                    Some(quiet) if quiet >= idle => {
                        Pin::new(&mut conn).graceful_shutdown();
                        stop = Stop::Close;
                        timer.as_mut().reset(after(lb.snapshot.load().drain));
                    }
                    Some(quiet) if quiet >= PARK_AFTER => {
                        Pin::new(&mut conn).graceful_shutdown();
                        stop = Stop::Park;
                        timer.as_mut().reset(after(lb.snapshot.load().drain));
                    }
                    Some(quiet) => timer.as_mut().reset(after(PARK_AFTER.min(idle) - quiet)),
                    None => timer.as_mut().reset(after(PARK_AFTER.min(idle))),
                }
            }
            _ = shutdown.wait_for(|s| *s), if stop != Stop::Close => {
                Pin::new(&mut conn).graceful_shutdown();
                stop = Stop::Close;
                timer.as_mut().reset(after(lb.snapshot.load().drain));
            }
        }
    };
    served.ok()?;
    // The round is over without closing the socket: take it back, with any bytes hyper (or
    // the rewind) had read but not used.
    let parts = conn.into_parts();
    let (rest_io, unread) = parts.io.into_inner().into_parts();
    let pending = if parts.read_buf.is_empty() {
        unread
    } else if unread.is_empty() {
        parts.read_buf
    } else {
        let mut b = BytesMut::from(&parts.read_buf[..]);
        b.extend_from_slice(&unread);
        b.freeze()
    };
    if let Some(t) = cx.take_tunnel() {
        tunnel(Rewind::new(rest_io, pending), t, shutdown).await;
        return None;
    }
    if stop == Stop::Park {
        return Some((rest_io, pending));
    }
    close(rest_io).await;
    None
}

/// How long closing a connection may wait for the client to take our last bytes.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Closes a connection that is done (the client asked for it, it was idle, or the load balancer
/// stops): on TLS this sends `close_notify` first, without which strict clients (rustls, curl
/// with OpenSSL 3) report the response as truncated. Bounded: a client that stopped reading
/// does not hold the task.
async fn close<T: AsyncWrite + Unpin + Send>(mut io: T) {
    use tokio::io::AsyncWriteExt;
    let _ = tokio::time::timeout(CLOSE_GRACE, io.shutdown()).await;
}

/// Copy both ways between the client's connection and the node's upgraded one until either
/// closes; when the load balancer (or listener) goes away, after the drain time.
async fn tunnel<C>(mut client: C, t: proxy::PendingTunnel, mut shutdown: watch::Receiver<bool>)
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let proxy::PendingTunnel { node, lease, drain } = t;
    let Ok(node) = node.await else {
        return;
    };
    let mut node = TokioIo::new(node);
    let stop = async {
        let _ = shutdown.wait_for(|s| *s).await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut node) => {
            if let Err(e) = r {
                tracing::debug!(node = %lease.endpoint().addr, error = %e, "upgraded connection ended");
            }
        }
        _ = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size<F>(_: &F) -> usize {
        std::mem::size_of::<F>()
    }

    /// What an idle connection costs is mostly its task: keep the long-lived state small.
    #[tokio::test]
    async fn connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let workers = super::super::Workers::start(1).unwrap();
        let id = cloudlb_provider::LoadBalancerId::new("c", "n", "x", "u");
        let lb =
            super::super::L7Lb::new(id, "127.0.0.1".parse().unwrap(), Arc::default(), Arc::default(), workers).unwrap();
        let (_tx, rx) = watch::channel(false);
        let fut = connection(stream, peer, 80, false, Arc::clone(&lb.shared), rx);
        let n = size(&fut);
        assert!(n < 1024, "the connection task's future is {n} bytes");
        drop(client);
    }
}
