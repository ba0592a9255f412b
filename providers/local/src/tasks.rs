//! Task ownership: every background task (accept loop, health probe, UDP flow) is owned by the
//! object it serves, and dies with it.
//!
//! Without this, dropping a load balancer would leave its tasks running and its sockets bound
//! (the "nothing leaks" guarantee of `delete` and of a failed `ensure`).

use tokio::task::JoinHandle;

/// A task aborted when this handle is dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(Option<JoinHandle<()>>);

impl AbortOnDrop {
    pub(crate) fn new(handle: JoinHandle<()>) -> Self {
        Self(Some(handle))
    }

    /// Abort the task and hand back its handle, so the caller can await the moment its future
    /// (and the sockets it owns) has been dropped.
    pub(crate) fn abort_and_take(mut self) -> Option<JoinHandle<()>> {
        let handle = self.0.take();
        if let Some(h) = &handle {
            h.abort();
        }
        handle
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}
