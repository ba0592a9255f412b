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
//! Workers are threads owned by the provider; dropping the provider stops them, which drops
//! every task (and socket) on them.

use std::cell::Cell;
use std::io;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The data plane's runtimes.
pub(crate) struct Workers {
    handles: Vec<Handle>,
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
        Ok(Arc::new(Self { handles, _stops: stops }))
    }

    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
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
