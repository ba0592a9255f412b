//! HTTP(S) listeners: accept, filter by source range, terminate TLS, serve HTTP/1.1 and HTTP/2
//! on the connection, and close it when idle or when the listener goes away.
//!
//! ```text
//!  accept ─▶ source range? ─no─▶ reset
//!          ─▶ [connection task] count bytes ─▶ TLS (HTTPS listener; SNI picks the certificate,
//!             ALPN h2 | http/1.1) ─▶ hyper auto: HTTP/1.1 (with Upgrade) or HTTP/2 (ALPN, or
//!             prior knowledge on plain HTTP) ─▶ proxy::handle per request
//!             ◀─ idle (no request in flight for `idle_seconds`) or shutdown: graceful close
//!                (in-flight requests finish; cut after the drain time)
//! ```
//!
//! Whether a port speaks HTTP or HTTPS, who may connect, and the timeouts are read from the
//! load balancer's current snapshot at accept, so `ensure` changes them without re-binding.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::Duration;

use cloudlb_provider::l7::L7Protocol;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::Shared;
use super::proxy::{self, ConnCx};
use crate::stats::{Counters, GaugeGuard, add, inc};

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
                tokio::spawn(connection(stream, peer, port, https, Arc::clone(&lb), shutdown.clone()));
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
    let _ = stream.set_nodelay(true);
    let io = Counted::new(stream, Arc::clone(&lb.counters));
    let idle = lb.snapshot.load().idle;
    let cx = Arc::new(ConnCx::new(Arc::clone(&lb), peer, port, https, shutdown));
    if https {
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&lb.tls));
        match tokio::time::timeout(idle, acceptor.accept(io)).await {
            Ok(Ok(tls)) => {
                inc(&lb.http.tls_handshakes);
                serve_http(tls, cx).await;
            }
            Ok(Err(e)) => {
                inc(&lb.http.tls_handshake_failures);
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
            }
            Err(_) => inc(&lb.http.tls_handshake_failures),
        }
    } else {
        serve_http(io, cx).await;
    }
}

/// Serve HTTP on one connection until the client closes it, it stays idle too long, or the
/// listener shuts down (then in-flight requests get the drain time to finish).
async fn serve_http<I>(io: I, cx: Arc<ConnCx>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let lb = Arc::clone(&cx.lb);
    let mut shutdown = cx.shutdown.clone();
    let service_cx = Arc::clone(&cx);
    let service = service_fn(move |req| proxy::handle(req, Arc::clone(&service_cx)));
    let conn = lb.server.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);

    let idle = lb.snapshot.load().idle;
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    // When set: closing gracefully, cut at this deadline.
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
                        timer.as_mut().reset(tokio::time::Instant::now() + lb.snapshot.load().drain);
                    }
                    Some(quiet) => timer.as_mut().reset(tokio::time::Instant::now() + (idle - quiet)),
                    None => timer.as_mut().reset(tokio::time::Instant::now() + idle),
                }
            }
            _ = shutdown.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
                timer.as_mut().reset(tokio::time::Instant::now() + lb.snapshot.load().drain);
            }
        }
    }
}

/// A client socket that counts the bytes it moves (both directions, TLS included). It adds to
/// the load balancer's shared counters every `FLUSH` bytes and when it closes, not on every
/// read and write: those counters are shared by every connection on every thread.
struct Counted {
    inner: TcpStream,
    counters: Arc<Counters>,
    pending_in: u64,
    pending_out: u64,
}

const FLUSH: u64 = 64 * 1024;

impl Counted {
    fn new(inner: TcpStream, counters: Arc<Counters>) -> Self {
        Self { inner, counters, pending_in: 0, pending_out: 0 }
    }
}

fn count(pending: &mut u64, c: &AtomicU64, n: usize) {
    *pending += n as u64;
    if *pending >= FLUSH {
        add(c, std::mem::take(pending));
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        add(&self.counters.bytes_in, self.pending_in);
        add(&self.counters.bytes_out, self.pending_out);
    }
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let me = &mut *self;
            count(&mut me.pending_in, &me.counters.bytes_in, buf.filled().len() - before);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            let me = &mut *self;
            count(&mut me.pending_out, &me.counters.bytes_out, n);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            let me = &mut *self;
            count(&mut me.pending_out, &me.counters.bytes_out, n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
