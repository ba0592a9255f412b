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
//! listener socket, so closing the listener really releases the port.
//!
//! A new flow first takes a slot of its load balancer (see `limits`): past `max_udp_flows` per
//! load balancer or `max_udp_flows_total` in the process, the datagram that would open it is
//! dropped and counted, and no socket is made; flows already open carry on. The slot is held
//! with the flow's socket (`Upstream`), so it comes back exactly when that socket closes. A
//! flow's reply task tells the receive loop when it ends, and the loop drops the flow at once,
//! so an ended flow does not hold its slot and descriptor until the next periodic sweep.
//!
//! Reply tasks read into one 64 KiB buffer per worker thread, not one per flow: a datagram is
//! read and relayed without an await in between, so the buffer is never held across flows.
//! An idle flow then costs its socket and under 2 KiB instead of up to 64 KiB more, which is
//! what lets the caps be high.
//!
//! UDP has no backpressure: a datagram that does not fit a full socket buffer is dropped and
//! counted. Sends are plain
//! non-blocking `send(2)` calls (through `socket2::SockRef`), not Tokio's `try_send`: Tokio only
//! tries a send once the reactor has seen the socket writable, which a flow socket created a
//! microsecond ago has not, and its first datagram would be dropped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use cloudlb_provider::ProviderError;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::activity::Activity;
use crate::balance::{Backend, Table};
use crate::limits::UdpSlot;
use crate::stats::{GaugeGuard, add, inc};
use crate::tasks::AbortOnDrop;

/// Largest datagram relayed (the IPv4 UDP maximum payload, rounded up).
const DATAGRAM: usize = 64 * 1024;

/// How often flows that ended without their end being reported are dropped (a safety net: the
/// reply task reports every end it sees).
const SWEEP: Duration = Duration::from_secs(5);

thread_local! {
    /// The reply tasks' receive buffer, one per worker thread (see the module docs).
    static REPLY_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0u8; DATAGRAM]);
}

/// Bind `addr` now (so that a conflict is reported by `ensure`); serve later with [`serve`].
pub(crate) fn bind(addr: SocketAddr) -> Result<UdpSocket, ProviderError> {
    let bound = (|| {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        UdpSocket::from_std(std)
    })();
    bound.map_err(|e| crate::bind_error(addr, "UDP", &e))
}

/// A flow's socket towards its target, with the flow's slot under the caps: both go together.
struct Upstream {
    socket: UdpSocket,
    _slot: UdpSlot,
}

struct Flow {
    upstream: Arc<Upstream>,
    backend: Arc<Backend>,
    state: Arc<FlowState>,
    _relay: AbortOnDrop,
}

struct FlowState {
    activity: Activity,
    closed: AtomicBool,
}

impl Flow {
    fn is_live(&self) -> bool {
        !self.state.closed.load(Ordering::Relaxed) && !self.backend.is_killed()
    }
}

/// The receive loop of one listener; runs until its task is aborted (which drops every flow).
pub(crate) async fn serve(socket: UdpSocket, table: Arc<ArcSwap<Table>>) {
    let socket = Arc::new(socket);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; DATAGRAM];
    let mut sweep = tokio::time::interval(SWEEP);
    // Reply tasks send their client's address here when their flow ends. Unbounded, but each
    // flow sends at most once and flows are capped.
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<SocketAddr>();
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
                if !flows.get(&peer).is_some_and(Flow::is_live) {
                    // Drop the ended flow (and its slot) before asking for a new one.
                    flows.remove(&peer);
                    // At a cap, this listener's flows whose end is reported but not yet handled
                    // still hold slots: drop them and ask once more, so that they never cause a
                    // refusal.
                    let slot = t.slots.udp().or_else(|why| match drop_ended(&mut flows, &mut ended) {
                        0 => Err(why),
                        _ => t.slots.udp(),
                    });
                    let slot = match slot {
                        Ok(slot) => slot,
                        Err(why) => { t.counters.udp_refused(why); continue; }
                    };
                    match open_flow(&t, &socket, peer, slot, &ended_tx) {
                        Some(f) => { flows.insert(peer, f); }
                        None => { inc(&t.counters.no_target); continue; }
                    }
                }
                let Some(flow) = flows.get(&peer) else { continue };
                flow.state.activity.touch();
                match socket2::SockRef::from(&flow.upstream.socket).send(&buf[..n]) {
                    Ok(sent) => add(&t.counters.bytes_in, sent as u64),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => inc(&t.counters.udp_datagrams_dropped),
                    Err(_) => { flow.state.closed.store(true, Ordering::Relaxed); }
                }
            }
            Some(peer) = ended.recv() => { drop_if_ended(&mut flows, peer); }
            _ = sweep.tick() => flows.retain(|_, f| f.is_live()),
        }
    }
}

/// Drop the flow of `peer` if it has ended (not a newer one for that client). Dropping it closes
/// its socket and gives its slot back.
fn drop_if_ended(flows: &mut HashMap<SocketAddr, Flow>, peer: SocketAddr) -> bool {
    let ended = flows.get(&peer).is_some_and(|f| !f.is_live());
    if ended {
        flows.remove(&peer);
    }
    ended
}

/// Handle every end reported so far; how many flows were dropped.
fn drop_ended(flows: &mut HashMap<SocketAddr, Flow>, ended: &mut mpsc::UnboundedReceiver<SocketAddr>) -> usize {
    let mut dropped = 0;
    while let Ok(peer) = ended.try_recv() {
        dropped += usize::from(drop_if_ended(flows, peer));
    }
    dropped
}

fn open_flow(
    t: &Arc<Table>,
    front: &Arc<UdpSocket>,
    client: SocketAddr,
    slot: UdpSlot,
    ended: &mpsc::UnboundedSender<SocketAddr>,
) -> Option<Flow> {
    // One retry on another target if the socket cannot even be set up for the first.
    let mut exclude = None;
    for _ in 0..2 {
        let backend = Arc::clone(t.pick(client.ip(), exclude)?);
        match connect_upstream(backend.addr) {
            Ok(socket) => {
                let upstream = Arc::new(Upstream { socket, _slot: slot });
                let state = Arc::new(FlowState { activity: Activity::new(), closed: AtomicBool::new(false) });
                let relay = tokio::spawn(relay_replies(
                    Arc::clone(&upstream),
                    Arc::downgrade(front),
                    client,
                    Arc::clone(&state),
                    Arc::clone(&backend),
                    Arc::clone(t),
                    ended.clone(),
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

/// Replies relayed per wake-up at most, so that a target flooding one flow cannot keep a
/// worker thread from its other tasks.
const REPLY_BATCH: usize = 64;

/// What a reply task found on its socket.
enum Replies {
    /// Nothing (more) to read now.
    Empty,
    /// The listener is gone, or the target refused: the flow is over.
    Over,
}

async fn relay_replies(
    upstream: Arc<Upstream>,
    front: Weak<UdpSocket>,
    client: SocketAddr,
    state: Arc<FlowState>,
    backend: Arc<Backend>,
    t: Arc<Table>,
    ended: mpsc::UnboundedSender<SocketAddr>,
) {
    let c = &*t.counters;
    // Decremented on every exit, also when the flow is dropped with its listener (abort).
    let _active = GaugeGuard::new(&c.udp_flows_active);
    // One timer for the flow's life: it re-checks the last activity when it runs out.
    let idle = state.activity.idle(t.timeouts.udp_idle);
    tokio::pin!(idle);
    loop {
        tokio::select! {
            r = upstream.socket.readable() => {
                if r.is_err() {
                    break;
                }
                match relay_ready(&upstream.socket, &front, client, &state, &t) {
                    Replies::Empty => {}
                    Replies::Over => break,
                }
            }
            _ = &mut idle => break,
            _ = backend.killed() => {
                inc(&c.drained_closed);
                break;
            }
        }
    }
    state.closed.store(true, Ordering::Relaxed);
    // This task's hold on the socket goes first: when the receive loop drops the flow on this
    // report, the socket and its slot are released right then.
    drop(upstream);
    // The receive loop may be gone (listener closed): then there is nobody left to tell.
    let _ = ended.send(client);
    // `_active` drops last, so a flow that no longer counts as active has been reported.
}

/// Relay the replies waiting on `upstream` to the client, at most `REPLY_BATCH` of them,
/// without awaiting (the buffer is the thread's).
fn relay_ready(
    upstream: &UdpSocket,
    front: &Weak<UdpSocket>,
    client: SocketAddr,
    state: &FlowState,
    t: &Table,
) -> Replies {
    let c = &*t.counters;
    REPLY_BUFFER.with_borrow_mut(|buf| {
        for _ in 0..REPLY_BATCH {
            let n = match upstream.try_recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Replies::Empty,
                // ECONNREFUSED (ICMP port unreachable) and friends: the flow is over; the next
                // datagram from this client opens a new one, possibly to another target.
                Err(_) => return Replies::Over,
            };
            state.activity.touch();
            let Some(front) = front.upgrade() else { return Replies::Over };
            match socket2::SockRef::from(&*front).send_to(&buf[..n], &client.into()) {
                Ok(sent) => add(&c.bytes_out, sent as u64),
                Err(_) => inc(&c.udp_datagrams_dropped),
            }
        }
        // More may be waiting: the next `readable()` is ready at once (after a yield if the
        // task's budget is spent).
        Replies::Empty
    })
}
