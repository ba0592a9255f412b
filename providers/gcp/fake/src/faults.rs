//! Fault injection: rules for "the next N calls to METHOD path-pattern fail with X" and a
//! random rate of rate-limit and server errors, each delivered synchronously or inside the
//! operation.
//!
//! Paths are matched relative to the project (`regions/us-central1/backendServices/bs`,
//! `targetHttpProxies/p/setUrlMap`, `global/operations/operation-…`); in patterns `*` matches
//! within one segment and `**` across segments. Random faults never hit operation polls and
//! waits (a client's poller would need its own retry policy for that), deterministic rules hit
//! whatever they match. A fault delivered "in the operation" on a request that has no operation
//! (a `GET`, a list) is answered synchronously.

use crate::config::Delivery;
use crate::errors::ApiError;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// What an injected fault answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultKind {
    /// 403 `rateLimitExceeded`, domain `usageLimits` ("Rate Limit Exceeded").
    RateLimited,
    /// 429 `rateLimitExceeded` (quota per minute).
    TooManyRequests,
    /// 500 `backendError`.
    Internal,
    /// 503 `backendError`.
    Unavailable,
    /// Anything else, e.g. `{"code":403,"reason":"forbidden","message":"Required 'compute.firewalls.create' permission"}`.
    Custom { code: u16, reason: String, message: String },
}

impl FaultKind {
    pub fn error(&self) -> ApiError {
        let mut e = match self {
            FaultKind::RateLimited => {
                ApiError::new(403, "rateLimitExceeded", "RATE_LIMIT_EXCEEDED", "Rate Limit Exceeded")
            }
            FaultKind::TooManyRequests => ApiError::new(
                429,
                "rateLimitExceeded",
                "RATE_LIMIT_EXCEEDED",
                "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com'.",
            ),
            FaultKind::Internal => ApiError::new(
                500,
                "backendError",
                "INTERNAL_ERROR",
                "Internal error. Please try again or contact Google Support. (Code: 'gce-fake')",
            ),
            FaultKind::Unavailable => {
                ApiError::new(503, "backendError", "SERVICE_UNAVAILABLE", "The service is currently unavailable.")
            }
            FaultKind::Custom { code, reason, message } => {
                ApiError::new(*code, reason, &reason.to_uppercase(), message.clone())
            }
        };
        if matches!(self, FaultKind::RateLimited | FaultKind::TooManyRequests) {
            e.domain = "usageLimits".into();
        }
        e
    }
}

/// A deterministic fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// `GET`, `POST`, …; `None` = any method.
    #[serde(default)]
    pub method: Option<String>,
    /// Glob over the project-relative path (`regions/*/backendServices/**`).
    pub path: String,
    pub kind: FaultKind,
    #[serde(default)]
    pub delivery: Delivery,
    /// Fire this many times, then disappear; `None` = every matching call until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

impl Fault {
    /// A rule that fires once, synchronously.
    pub fn once(method: &str, path: &str, kind: FaultKind) -> Fault {
        Fault {
            method: Some(method.to_string()),
            path: path.to_string(),
            kind,
            delivery: Delivery::Sync,
            times: Some(1),
        }
    }

    pub fn times(mut self, n: u32) -> Fault {
        self.times = Some(n);
        self
    }

    pub fn forever(mut self) -> Fault {
        self.times = None;
        self
    }

    pub fn in_operation(mut self) -> Fault {
        self.delivery = Delivery::InOperation;
        self
    }
}

/// Random faults: each eligible call fails with probability `rate`, with one of 403
/// rate-limit, 429, 500, 503; a failing mutation has it reported inside its operation with
/// probability `in_operation_share`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RandomFaults {
    pub rate: f64,
    pub in_operation_share: f64,
}

pub struct Faults {
    pub rules: Vec<Fault>,
    pub random: RandomFaults,
    /// Requests held back before they are served, for tests that need a call to be in flight
    /// while something else happens (the real API is never instant either).
    pub delays: Vec<Delay>,
    rng: StdRng,
}

/// Hold matching requests for `by` before serving them.
#[derive(Debug, Clone, PartialEq)]
pub struct Delay {
    /// `GET`, `POST`, …; `None` = any method.
    pub method: Option<String>,
    /// Glob over the project-relative path, as for [`Fault`].
    pub path: String,
    pub by: std::time::Duration,
    /// Hold this many requests, then disappear; `None` = every matching one until cleared.
    pub times: Option<u32>,
}

impl Faults {
    pub fn new(random: RandomFaults, seed: u64) -> Faults {
        Faults { rules: Vec::new(), random, delays: Vec::new(), rng: StdRng::seed_from_u64(seed) }
    }

    pub fn clear(&mut self) {
        self.rules.clear();
        self.delays.clear();
        self.random = RandomFaults::default();
    }

    /// How long to hold this request back, if a [`Delay`] matches it (first match first).
    pub fn delay_for(&mut self, method: &str, rel_path: &str) -> Option<std::time::Duration> {
        let i = self.delays.iter().position(|d| {
            d.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)) && glob_match(&d.path, rel_path)
        })?;
        let by = self.delays[i].by;
        if let Some(n) = self.delays[i].times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.delays.remove(i);
            }
        }
        Some(by)
    }

    /// The fault for this call, if any: (error, delivery).
    pub fn check(&mut self, method: &str, rel_path: &str, is_operation: bool) -> Option<(ApiError, Delivery)> {
        if let Some(i) = self.rules.iter().position(|r| {
            r.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)) && glob_match(&r.path, rel_path)
        }) {
            let rule = self.rules[i].clone();
            if let Some(n) = self.rules[i].times.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.rules.remove(i);
                }
            }
            return Some((rule.kind.error(), rule.delivery));
        }
        if is_operation || self.random.rate <= 0.0 || self.rng.random::<f64>() >= self.random.rate {
            return None;
        }
        let kind = match self.rng.random_range(0..4u8) {
            0 => FaultKind::RateLimited,
            1 => FaultKind::TooManyRequests,
            2 => FaultKind::Internal,
            _ => FaultKind::Unavailable,
        };
        let delivery = if self.rng.random::<f64>() < self.random.in_operation_share {
            Delivery::InOperation
        } else {
            Delivery::Sync
        };
        Some((kind.error(), delivery))
    }
}

/// `*` = any run of characters except `/`; `**` = any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn rec(p: &[u8], t: &[u8]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') if p.get(1) == Some(&b'*') => (0..=t.len()).any(|i| rec(&p[2..], &t[i..])),
            Some(b'*') => {
                let mut i = 0;
                loop {
                    if rec(&p[1..], &t[i..]) {
                        return true;
                    }
                    if i == t.len() || t[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some(c) => t.first() == Some(c) && rec(&p[1..], &t[1..]),
        }
    }
    rec(pattern.trim_start_matches('/').as_bytes(), text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("regions/*/backendServices", "regions/r/backendServices"));
        assert!(glob_match("regions/*/backendServices/*", "regions/r/backendServices/bs"));
        assert!(!glob_match("regions/*/backendServices", "regions/r/backendServices/bs"));
        assert!(glob_match("**/setUrlMap", "targetHttpProxies/p/setUrlMap"));
        assert!(glob_match("**", "anything/at/all"));
        assert!(!glob_match("global/*", "regions/r/x"));
    }

    #[test]
    fn rules_fire_n_times_then_vanish() {
        let mut f = Faults::new(RandomFaults::default(), 1);
        f.rules.push(Fault::once("POST", "global/firewalls", FaultKind::RateLimited).times(2));
        assert_eq!(f.check("GET", "global/firewalls", false), None);
        let (e, d) = f.check("post", "global/firewalls", false).unwrap();
        assert_eq!(
            (e.code, e.reason.as_str(), e.domain.as_str(), d),
            (403, "rateLimitExceeded", "usageLimits", Delivery::Sync)
        );
        assert!(f.check("POST", "global/firewalls", false).is_some());
        assert_eq!(f.check("POST", "global/firewalls", false), None);
    }

    #[test]
    fn random_rate_is_roughly_honoured_and_skips_operations() {
        let mut f = Faults::new(RandomFaults { rate: 0.3, in_operation_share: 0.5 }, 7);
        let hits = (0..1000).filter(|_| f.check("GET", "global/firewalls/x", false).is_some()).count();
        assert!((200..400).contains(&hits), "{hits}");
        assert!((0..100).all(|_| f.check("GET", "global/operations/o", true).is_none()));
    }
}
