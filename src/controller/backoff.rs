//! Per-object exponential backoff with jitter (about 5 s -> 5 min), reset on success.
//!
//! Kept per object so that one broken Service does not slow down the others, and jittered so
//! that many Services failing together (a cloud outage) do not retry in lockstep.
//!
//! The backoff is also a *gate*: a failed pass writes a condition, and that write comes back as
//! a watch event that would re-run the reconcile at once. While the object wants the same thing
//! that failed (same spec hash), [`Backoff::gate`] says how long to wait instead; a changed spec
//! goes through immediately.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

struct Entry {
    failures: u32,
    until: Instant,
    /// What was being attempted (spec hash, or "delete").
    attempt: String,
}

#[derive(Default)]
pub struct Backoff {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Backoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a failure of `attempt` for `key`; returns how long to wait before retrying, at
    /// least `min` (a provider's retry-after).
    pub fn failed(&self, key: &str, attempt: &str, min: Option<Duration>) -> Duration {
        let mut map = self.lock();
        let e =
            map.entry(key.to_string()).or_insert(Entry { failures: 0, until: Instant::now(), attempt: String::new() });
        e.failures = e.failures.saturating_add(1);
        let wait = jitter(delay(e.failures)).max(min.unwrap_or_default());
        e.until = Instant::now() + wait;
        e.attempt = attempt.to_string();
        wait
    }

    /// How long `key` must still wait before trying `attempt` again, if it is backing off.
    pub fn gate(&self, key: &str, attempt: &str) -> Option<Duration> {
        let map = self.lock();
        let e = map.get(key).filter(|e| e.attempt == attempt)?;
        e.until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())
    }

    pub fn succeeded(&self, key: &str) {
        self.lock().remove(key);
    }

    pub fn failures(&self, key: &str) -> u32 {
        self.lock().get(key).map_or(0, |e| e.failures)
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
            b.failed("a", "h1", None);
        }
        let d = b.failed("a", "h1", None);
        assert!(d >= Duration::from_secs(32) && d < Duration::from_secs(48), "{d:?}");
        assert_eq!(b.failures("a"), 4);
        assert_eq!(b.failures("b"), 0);
        b.succeeded("a");
        assert_eq!(b.failures("a"), 0);
    }

    #[test]
    fn gate_holds_the_same_attempt_only() {
        let b = Backoff::default();
        assert_eq!(b.gate("a", "h1"), None);
        b.failed("a", "h1", None);
        assert!(b.gate("a", "h1").is_some_and(|d| d > Duration::from_secs(3)));
        assert_eq!(b.gate("a", "h2"), None, "a changed spec is tried at once");
        let d = b.failed("b", "h1", Some(Duration::from_secs(60)));
        assert!(d >= Duration::from_secs(60), "provider retry-after is honoured");
    }
}
