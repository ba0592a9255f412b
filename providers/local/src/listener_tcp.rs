//! TCP listeners: accept, filter by source range, pick a target, connect (with a timeout and
//! one retry on another target), optionally send a PROXY v2 header, then copy both ways.
//!
//! ```text
//!  client ──▶ [accept loop: source filter, caps] ──spawn──▶ [connection task, holds its slot]
//!                                                            pick ─▶ connect (timeout) ─┐ refused?
//!                                                            ◀── retry once elsewhere ──┘
//!                                                            pipe both ways (bounded buffers,
//!                                                            half-close passed on)
//!                                                            | drain kill | idle timeout
//! ```
//!
//! Before anything is spawned, a connection takes a slot of its load balancer (see `limits`):
//! past `max_tcp_connections` (per load balancer) or `max_tcp_connections_per_source` it is
//! reset at once and counted, like a client outside the source ranges. The slot lives in the
//! connection task, which owns both sockets, so it is given back exactly when they close.
//! A connection without a byte either way for `tcp_idle_timeout` is closed (both sides): an
//! idle connection must not hold its slot and descriptors for ever.
//!
//! Every connection is its own task: its errors end it and nothing else. Each direction reads
//! into one bounded buffer and writes it out completely before reading again, so a slow reader
//! slows its writer (backpressure) instead of growing memory. Buffers start at `SMALL_BUFFER`
//! (short request/response connections, the common case, stay cheap to set up) and grow once to
//! `BUFFER` when a read fills them (bulk transfers then move 64 KiB per system call). When a
//! side reads EOF, the other side's write half is shut down and the other direction goes on
//! (half-close). Bytes are counted as they pass. TCP_NODELAY is set on both sides: the proxy
//! must not add Nagle delays to small request/response exchanges; it writes whole buffers anyway.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use cloudlb_provider::ProviderError;
use std::sync::atomic::AtomicU64;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::activity::Activity;
use crate::balance::{Backend, Table};
use crate::limits::TcpSlot;
use crate::proxy_protocol;
use crate::stats::{GaugeGuard, add, inc};

/// Largest buffer per direction per connection.
pub(crate) const BUFFER: usize = 64 * 1024;

/// Buffer a direction starts with.
pub(crate) const SMALL_BUFFER: usize = 4 * 1024;

/// Pending connections the kernel queues per listener.
const BACKLOG: u32 = 4096;

/// Bind `addr` now (so that a conflict is reported by `ensure`); serve later with [`serve`].
pub(crate) fn bind(addr: SocketAddr) -> Result<TcpListener, ProviderError> {
    let bound = (|| {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // Lets a new listener take the port while connections accepted by a previous one
        // (same address, e.g. after a delete and a re-create) are still open or in TIME_WAIT.
        // Two *listeners* still conflict.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(BACKLOG)
    })();
    bound.map_err(|e| crate::bind_error(addr, "TCP", &e))
}

/// The accept loop of one listener; runs until its task is aborted.
pub(crate) async fn serve(listener: TcpListener, table: Arc<ArcSwap<Table>>) {
    let local = listener.local_addr().ok();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let t = table.load_full();
                if !t.source.allows(peer.ip()) {
                    inc(&t.counters.connections_refused);
                    // Reset rather than FIN: the client learns at once, nothing lingers.
                    let _ = stream.set_zero_linger();
                    drop(stream);
                    continue;
                }
                let slot = match t.slots.tcp(peer.ip()) {
                    Ok(slot) => slot,
                    Err(why) => {
                        t.counters.tcp_refused(why);
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        continue;
                    }
                };
                inc(&t.counters.connections_accepted);
                let local = local.unwrap_or_else(|| stream.local_addr().unwrap_or(peer));
                tokio::spawn(connection(stream, peer, local, t, slot));
            }
            Err(e) => {
                // Per-connection errors (the client reset before accept) are nothing; running
                // out of descriptors is, but must not spin: pause briefly and go on.
                if !matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) {
                    tracing::warn!(?local, error = %e, "accept failed; pausing this listener for 50ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// One proxied connection. `_slot` is its place under the caps, given back when this returns.
async fn connection(mut client: TcpStream, peer: SocketAddr, local: SocketAddr, t: Arc<Table>, _slot: TcpSlot) {
    let c = &*t.counters;
    let _active = GaugeGuard::new(&c.connections_active);
    let _ = client.set_nodelay(true);
    let Some((backend, mut upstream)) = connect(&t, peer.ip()).await else {
        inc(&c.no_target);
        return;
    };
    let _to_backend = GaugeGuard::new(&backend.active);
    if backend.is_killed() {
        return;
    }
    if t.proxy_v2 {
        let header = proxy_protocol::Header::v2(peer, local);
        if upstream.write_all(header.as_bytes()).await.is_err() {
            return;
        }
    }
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let activity = Activity::new();
    let both = async {
        tokio::try_join!(
            pipe(&mut client_read, &mut upstream_write, &c.bytes_in, &activity),
            pipe(&mut upstream_read, &mut client_write, &c.bytes_out, &activity),
        )
    };
    tokio::select! {
        // An error either way ends the connection (both sockets close when this returns).
        _ = both => {}
        _ = backend.killed() => {}
        _ = activity.idle(t.timeouts.tcp_idle) => inc(&c.connections_idle_closed),
    }
}

/// Copy one direction until EOF, then shut down the writer's sending side (half-close). Every
/// read and every completed write is activity: a writer blocked on a peer that does not read
/// for the whole idle timeout is as idle as a silent connection.
async fn pipe<R, W>(from: &mut R, to: &mut W, bytes: &AtomicU64, activity: &Activity) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; SMALL_BUFFER];
    loop {
        let n = from.read(&mut buf).await?;
        activity.touch();
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buf[..n]).await?;
        activity.touch();
        add(bytes, n as u64);
        if n == buf.len() && buf.len() < BUFFER {
            buf.resize(BUFFER, 0);
        }
    }
}

/// Connect to a target for `client`; if it fails, once more to another one.
async fn connect(t: &Table, client: IpAddr) -> Option<(Arc<Backend>, TcpStream)> {
    let first = t.pick(client, None)?;
    match dial(first.addr, t.timeouts.connect).await {
        Ok(s) => return Some((Arc::clone(first), s)),
        Err(e) => {
            inc(&t.counters.connect_failures);
            tracing::debug!(backend = %first.addr, error = %e, "connect to target failed");
        }
    }
    let second = t.pick(client, Some(first.addr))?;
    inc(&t.counters.connect_retries);
    match dial(second.addr, t.timeouts.connect).await {
        Ok(s) => Some((Arc::clone(second), s)),
        Err(e) => {
            inc(&t.counters.connect_failures);
            tracing::debug!(backend = %second.addr, error = %e, "retry to another target failed");
            None
        }
    }
}

pub(crate) async fn dial(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_nodelay(true)?;
    match tokio::time::timeout(timeout, socket.connect(addr)).await {
        Ok(r) => r,
        Err(_) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect to {addr} timed out after {timeout:?}")))
        }
    }
}
