//! UDP listeners: one socket on `address:port` receives every client's datagrams; each client
//! address gets a *flow*: its own connected socket towards the chosen target, whose replies are
//! relayed back from the listener's address. Flows end after `udp_idle_timeout` without traffic
//! either way, when their target's drain runs out, or when the target refuses (ICMP unreachable).
//!
//! ```text
//!  client A ─┐                    ┌─ flow A: socket ─▶ node1:nodePort ─┐
//!  client B ─┼─▶ listener socket ─┤                                     ├─ replies ─▶ listener ─▶ client
//!            │   (recv loop)      └─ flow B: socket ─▶ node2:nodePort ─┘
//! ```
//!
//! The flow map belongs to the receive loop alone (no lock). Flows hold only a `Weak` to the
//! listener socket, so closing the listener really releases the port. UDP has no backpressure:
//! a datagram that does not fit a full socket buffer is dropped and counted. Sends are plain
//! non-blocking `send(2)` calls (through `socket2::SockRef`), not Tokio's `try_send`: Tokio only
//! tries a send once the reactor has seen the socket writable, which a flow socket created a
//! microsecond ago has not, and its first datagram would be dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use cloudlb_provider::ProviderError;
use tokio::net::UdpSocket;

use crate::balance::{Backend, Table};
use crate::stats::{GaugeGuard, add, inc};
use crate::tasks::AbortOnDrop;

/// Largest datagram relayed (the IPv4 UDP maximum payload, rounded up).
const DATAGRAM: usize = 64 * 1024;

/// Bind `addr` now (so that a conflict is reported by `ensure`); serve later with [`serve`].
pub(crate) fn bind(addr: SocketAddr) -> Result<UdpSocket, ProviderError> {
    let bound = (|| {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        UdpSocket::from_std(std)
    })();
    bound.map_err(|e| crate::bind_error(addr, "UDP", &e))
}

struct Flow {
    upstream: Arc<UdpSocket>,
    backend: Arc<Backend>,
    state: Arc<FlowState>,
    _relay: AbortOnDrop,
}

struct FlowState {
    /// Milliseconds since `epoch` of the last datagram either way.
    last: AtomicU64,
    closed: AtomicBool,
    epoch: Instant,
}

impl FlowState {
    fn touch(&self) {
        self.last.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// The receive loop of one listener; runs until its task is aborted (which drops every flow).
pub(crate) async fn serve(socket: UdpSocket, table: Arc<ArcSwap<Table>>) {
    let socket = Arc::new(socket);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; DATAGRAM];
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            r = socket.recv_from(&mut buf) => {
                let (n, peer) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive failed");
                        continue;
                    }
                };
                let t = table.load();
                if !t.source.allows(peer.ip()) {
                    inc(&t.counters.udp_datagrams_refused);
                    continue;
                }
                let live = flows.get(&peer).is_some_and(|f| !f.state.closed.load(Ordering::Relaxed) && !f.backend.is_killed());
                if !live {
                    flows.remove(&peer);
                    match open_flow(&t, &socket, peer) {
                        Some(f) => { flows.insert(peer, f); }
                        None => { inc(&t.counters.no_target); continue; }
                    }
                }
                let Some(flow) = flows.get(&peer) else { continue };
                flow.state.touch();
                match socket2::SockRef::from(&*flow.upstream).send(&buf[..n]) {
                    Ok(sent) => add(&t.counters.bytes_in, sent as u64),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => inc(&t.counters.udp_datagrams_dropped),
                    Err(_) => { flow.state.closed.store(true, Ordering::Relaxed); }
                }
            }
            _ = sweep.tick() => flows.retain(|_, f| !f.state.closed.load(Ordering::Relaxed)),
        }
    }
}

fn open_flow(t: &Arc<Table>, front: &Arc<UdpSocket>, client: SocketAddr) -> Option<Flow> {
    // One retry on another target if the socket cannot even be set up for the first.
    let mut exclude = None;
    for _ in 0..2 {
        let backend = Arc::clone(t.pick(client.ip(), exclude)?);
        match connect_upstream(backend.addr) {
            Ok(upstream) => {
                let upstream = Arc::new(upstream);
                let state = Arc::new(FlowState {
                    last: AtomicU64::new(0),
                    closed: AtomicBool::new(false),
                    epoch: Instant::now(),
                });
                let relay = tokio::spawn(relay_replies(
                    Arc::clone(&upstream),
                    Arc::downgrade(front),
                    client,
                    Arc::clone(&state),
                    Arc::clone(&backend),
                    Arc::clone(t),
                ));
                inc(&t.counters.udp_flows);
                return Some(Flow { upstream, backend, state, _relay: AbortOnDrop::new(relay) });
            }
            Err(e) => {
                inc(&t.counters.connect_failures);
                tracing::debug!(backend = %backend.addr, error = %e, "udp flow setup failed");
                exclude = Some(backend.addr);
            }
        }
    }
    None
}

fn connect_upstream(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let any: SocketAddr = if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let std = std::net::UdpSocket::bind(any)?;
    std.connect(addr)?;
    std.set_nonblocking(true)?;
    UdpSocket::from_std(std)
}

async fn relay_replies(
    upstream: Arc<UdpSocket>,
    front: Weak<UdpSocket>,
    client: SocketAddr,
    state: Arc<FlowState>,
    backend: Arc<Backend>,
    t: Arc<Table>,
) {
    let c = &*t.counters;
    // Decremented on every exit, also when the flow is dropped with its listener (abort).
    let _active = GaugeGuard::new(&c.udp_flows_active);
    let idle = t.udp_idle_timeout;
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let wait = idle.saturating_sub(state.idle_for()).max(Duration::from_millis(1));
        tokio::select! {
            r = tokio::time::timeout(wait, upstream.recv(&mut buf)) => match r {
                Ok(Ok(n)) => {
                    state.touch();
                    let Some(front) = front.upgrade() else { break };
                    match socket2::SockRef::from(&*front).send_to(&buf[..n], &client.into()) {
                        Ok(sent) => add(&c.bytes_out, sent as u64),
                        Err(_) => inc(&c.udp_datagrams_dropped),
                    }
                }
                // ECONNREFUSED (ICMP port unreachable) and friends: the flow is over; the next
                // datagram from this client opens a new one, possibly to another target.
                Ok(Err(_)) => break,
                Err(_) => {
                    if state.idle_for() >= idle {
                        break;
                    }
                }
            },
            _ = backend.killed() => {
                inc(&c.drained_closed);
                break;
            }
        }
    }
    state.closed.store(true, Ordering::Relaxed);
}
