//! Per-object exponential backoff with jitter (about 5 s -> 5 min), reset on success.
//!
//! Kept per object so that one broken Service does not slow down the others, and jittered so
//! that many Services failing together (a cloud outage) do not retry in lockstep.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

pub const BASE: Duration = Duration::from_secs(5);
pub const MAX: Duration = Duration::from_secs(300);

/// The delay after the `failures`-th consecutive failure (1-based), before jitter.
pub fn delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    BASE.saturating_mul(1u32 << exp).min(MAX)
}

/// `d` scaled by a random factor in [0.8, 1.2).
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.8 + rand::random::<f64>() * 0.4)
}

#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        jitter(delay(*n))
    }

    pub fn succeeded(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }

    pub fn failures(&self, key: &str) -> u32 {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap() {
        assert_eq!(delay(1), Duration::from_secs(5));
        assert_eq!(delay(2), Duration::from_secs(10));
        assert_eq!(delay(4), Duration::from_secs(40));
        assert_eq!(delay(7), MAX);
        assert_eq!(delay(u32::MAX), MAX);
    }

    #[test]
    fn jitter_stays_in_band_and_reset_works() {
        let b = Backoff::default();
        for _ in 0..3 {
            b.failed("a");
        }
        let d = b.failed("a");
        assert!(d >= Duration::from_secs(32) && d < Duration::from_secs(48), "{d:?}");
        assert_eq!(b.failures("a"), 4);
        assert_eq!(b.failures("b"), 0);
        b.succeeded("a");
        assert_eq!(b.failures("a"), 0);
    }
}
