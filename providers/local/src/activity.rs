//! When a TCP connection or UDP flow last moved data, and waiting until it has been idle long
//! enough to be closed.
//!
//! A connection touches its `Activity` on every read and write (a relaxed store of a
//! millisecond count: no lock, no timer reset per byte); one timer per connection sleeps until
//! the earliest moment the timeout could run out, then checks again. So an active connection
//! costs one timer wake-up per timeout period, not one per read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    /// Milliseconds since `epoch` of the last data either way.
    last: AtomicU64,
}

impl Activity {
    /// Active now.
    pub(crate) fn new() -> Self {
        Self { epoch: Instant::now(), last: AtomicU64::new(0) }
    }

    pub(crate) fn touch(&self) {
        self.last.store(self.millis(), Ordering::Relaxed);
    }

    pub(crate) fn idle_for(&self) -> Duration {
        Duration::from_millis(self.millis().saturating_sub(self.last.load(Ordering::Relaxed)))
    }

    /// Resolves once nothing has touched this for `timeout`.
    pub(crate) async fn idle(&self, timeout: Duration) {
        loop {
            let idle = self.idle_for();
            if idle >= timeout {
                return;
            }
            tokio::time::sleep(timeout - idle).await;
        }
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_the_last_touch_plus_the_timeout() {
        let a = Activity::new();
        let timeout = Duration::from_millis(300);
        let start = Instant::now();
        let toucher = async {
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                a.touch();
            }
        };
        let ((), ()) = tokio::join!(toucher, a.idle(timeout));
        // Last touch at ~400 ms: idle no earlier than ~700 ms.
        assert!(start.elapsed() >= Duration::from_millis(650), "{:?}", start.elapsed());
        assert!(tokio::time::timeout(Duration::from_secs(5), a.idle(timeout)).await.is_ok());
    }
}
