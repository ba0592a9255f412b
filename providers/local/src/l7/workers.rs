//! Thread-per-core for the HTTP data plane: its connections run on a few single-threaded Tokio
//! runtimes of their own, one per core, each accepting from every listener.
//!
//! ```text
//!  listener socket ──dup──▶ worker 0 (current-thread runtime): accept ▸ TLS ▸ HTTP ▸ upstream
//!                  └─dup──▶ worker 1 (current-thread runtime): accept ▸ TLS ▸ HTTP ▸ upstream
//!  controller runtime: ensure / delete / health checks (not on the request path)
//! ```
//!
//! **Why.** A proxied request is a chain of small steps on two sockets. On a work-stealing
//! runtime those steps hop between threads (a wake-up from the I/O driver lands on one worker,
//! the other is unparked to steal, ...): measured on 2 cores, that cost about a third more CPU
//! per request than the same code on one thread (`BENCHMARKS.md`). HAProxy and nginx avoid it
//! the same way: a connection lives and dies on the thread that accepted it. The controller's
//! own work (and the L4 data plane) stays on the caller's runtime and cannot slow requests down,
//! nor requests the controller.
//!
//! **Balance.** Every worker accepts from every listener, but a connection stays where it
//! starts, so a burst of connections can land unevenly (epoll wakes whichever worker it
//! likes). A worker that accepts a connection while it serves more than the least loaded one
//! (by more than one) hands it over: the socket leaves its reactor and joins the other's,
//! before a byte is read. HAProxy balances its threads the same way.
//!
//! Workers are threads owned by the provider; dropping the provider stops them, which drops
//! every task (and socket) on them.

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The data plane's runtimes.
pub(crate) struct Workers {
    handles: Vec<Handle>,
    /// Client connections each worker serves now.
    load: Box<[Load]>,
    /// Dropping these stops the threads (each waits on its receiver).
    _stops: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Start `n` (at least one) worker threads.
    pub(crate) fn start(n: usize) -> io::Result<Arc<Self>> {
        let mut handles = Vec::with_capacity(n.max(1));
        let mut stops = Vec::with_capacity(n.max(1));
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new().name(format!("cloudlb-http-{i}")).spawn(move || {
                WORKER.with(|w| w.set(Some(i)));
                // Returns when the sender is dropped; the runtime (and its tasks) drop here, on
                // its own thread, which is the only place a runtime may be dropped safely.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        }
        let load = (0..handles.len()).map(|_| Load(AtomicUsize::new(0))).collect();
        Ok(Arc::new(Self { handles, load, _stops: stops }))
    }

    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Where a connection accepted on worker `here` should run: here, unless another worker
    /// serves at least two connections fewer.
    pub(crate) fn place(&self, here: usize) -> usize {
        let load = |w: usize| self.load.get(w).map_or(usize::MAX, |l| l.0.load(Ordering::Relaxed));
        let (least, least_load) =
            (0..self.load.len()).map(|w| (w, load(w))).min_by_key(|(_, l)| *l).unwrap_or((here, 0));
        if load(here) > least_load + 1 { least } else { here }
    }

    /// Count a connection on the current worker until the guard drops.
    pub(crate) fn enter(self: &Arc<Self>) -> Option<LoadGuard> {
        let w = current()?;
        self.load.get(w)?.0.fetch_add(1, Ordering::Relaxed);
        Some(LoadGuard { workers: Arc::clone(self), worker: w })
    }
}

/// One worker's connection count, on a cache line of its own.
#[repr(align(128))]
struct Load(AtomicUsize);

/// A connection counted on its worker.
pub(crate) struct LoadGuard {
    workers: Arc<Workers>,
    worker: usize,
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        if let Some(l) = self.workers.load.get(self.worker) {
            l.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker this thread is, if it is one. Upstream connections are kept per
/// worker: a socket is registered with the reactor of the runtime that opened it, and a
/// connection used from another worker would get its readiness from that other thread.
pub(crate) fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Worker threads by default: one per core.
pub(crate) fn default_count() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
