//! Request counters by verb and resource, for tests and benchmarks ("how many status patches
//! did the controller send?").

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// A snapshot of request counts. Resource names are `plural` for the core group and
/// `plural.group` otherwise, with `/status` for the status subresource, e.g. `services`,
/// `services/status`, `events.events.k8s.io`, `leases.coordination.k8s.io`.
/// Verbs: get, list, watch, create, update, patch, delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub total: u64,
    pub by_verb: BTreeMap<String, u64>,
    pub by_resource: BTreeMap<String, u64>,
    pub by_verb_resource: BTreeMap<(String, String), u64>,
}

impl Stats {
    /// Requests with this verb on this resource (0 when none).
    pub fn count(&self, verb: &str, resource: &str) -> u64 {
        self.by_verb_resource.get(&(verb.to_string(), resource.to_string())).copied().unwrap_or(0)
    }
    /// Requests with this verb on any resource.
    pub fn verb(&self, verb: &str) -> u64 {
        self.by_verb.get(verb).copied().unwrap_or(0)
    }
}

#[derive(Debug, Default)]
pub struct Counters(Mutex<HashMap<(&'static str, String), u64>>);

impl Counters {
    pub fn record(&self, verb: &'static str, resource: String) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry((verb, resource)).or_insert(0) += 1;
        }
    }

    pub fn snapshot(&self) -> Stats {
        let mut s = Stats::default();
        if let Ok(m) = self.0.lock() {
            for ((verb, res), n) in m.iter() {
                s.total += n;
                *s.by_verb.entry(verb.to_string()).or_insert(0) += n;
                *s.by_resource.entry(res.clone()).or_insert(0) += n;
                s.by_verb_resource.insert((verb.to_string(), res.clone()), *n);
            }
        }
        s
    }
}
