//! Publishing `events.k8s.io/v1` Events, with repeats folded into a series.
//!
//! kube-runtime's `Recorder` does the same, but keeps every event it published for six minutes
//! and scans that whole cache on each publish: at ten thousand Services that is tens of
//! megabytes and quadratic CPU in the hottest moment (everything being created at once). Here
//! the cache is bounded ([`CAP`] entries, oldest evicted first, [`TTL`]) and a publish touches
//! only its own entry. An evicted entry costs at most a new Event object instead of a series bump.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Entries kept for aggregation.
pub const CAP: usize = 4096;
/// How long a published event can still be continued as a series.
pub const TTL: Duration = Duration::from_secs(360);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// What makes two events one series (object uid, type, reason, action, note), as a 128-bit
/// digest: the cache holds thousands of them, and a collision would need 2^64 of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Key(u64, u64);

impl Key {
    fn new(uid: &str, warning: bool, reason: &str, action: &str, note: &str) -> Self {
        let digest = |salt: u8| {
            let mut h = DefaultHasher::new();
            (salt, uid, warning, reason, action, note).hash(&mut h);
            h.finish()
        };
        Key(digest(0), digest(1))
    }
}

struct Entry {
    namespace: String,
    name: String,
    count: i32,
    at: Instant,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<Key, Entry>,
    order: VecDeque<Key>,
}

impl Cache {
    fn live(&self, key: &Key) -> Option<(String, String, i32)> {
        self.entries.get(key).filter(|e| e.at.elapsed() < TTL).map(|e| (e.namespace.clone(), e.name.clone(), e.count))
    }

    fn put(&mut self, key: Key, entry: Entry) {
        if self.entries.insert(key, entry).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > CAP {
            if let Some(old) = self.order.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    cache: Mutex<Cache>,
}

impl Publisher {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self { client, controller: controller.into(), instance: instance.into(), cache: Mutex::default() }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let uid = regarding.uid.as_deref().unwrap_or_default();
        let key = Key::new(uid, type_ == EventType::Warning, reason, action, note);
        let now = MicroTime(Timestamp::now());
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let existing = self.cache().live(&key);
        if let Some((ns, name, count)) = existing {
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            let series = EventSeries { count: count + 1, last_observed_time: now.clone() };
            let patch = json!({ "series": series });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.cache().put(key, Entry { namespace: ns, name, count: count + 1, at: Instant::now() });
                    return Ok(());
                }
                // The event was garbage-collected meanwhile: start a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(&self.controller), now.0.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta { namespace: Some(namespace.clone()), name: Some(name.clone()), ..Default::default() },
            action: Some(action.into()),
            reason: Some(reason.into()),
            note: Some(note.into()),
            event_time: Some(now),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(match type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &namespace).create(&PostParams::default(), &event).await?;
        self.cache().put(key, Entry { namespace, name, count: 1, at: Instant::now() });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> Key {
        Key::new(&format!("u{i}"), false, "R", "A", "note")
    }

    #[test]
    fn every_part_of_the_key_tells_series_apart() {
        let base = Key::new("u", false, "R", "A", "n");
        assert_eq!(base, Key::new("u", false, "R", "A", "n"));
        for other in [
            Key::new("v", false, "R", "A", "n"),
            Key::new("u", true, "R", "A", "n"),
            Key::new("u", false, "S", "A", "n"),
            Key::new("u", false, "R", "B", "n"),
            Key::new("u", false, "R", "A", "m"),
        ] {
            assert_ne!(base, other);
        }
    }

    fn entry() -> Entry {
        Entry { namespace: "ns".into(), name: "n".into(), count: 1, at: Instant::now() }
    }

    #[test]
    fn cache_is_bounded_and_evicts_oldest() {
        let mut c = Cache::default();
        for i in 0..CAP + 10 {
            c.put(key(i), entry());
        }
        assert_eq!(c.entries.len(), CAP);
        assert_eq!(c.order.len(), CAP);
        assert!(c.live(&key(0)).is_none(), "oldest evicted");
        assert!(c.live(&key(CAP + 9)).is_some());
    }

    #[test]
    fn re_putting_a_key_does_not_grow_the_order() {
        let mut c = Cache::default();
        c.put(key(1), entry());
        c.put(key(1), Entry { count: 2, ..entry() });
        assert_eq!(c.order.len(), 1);
        assert_eq!(c.live(&key(1)).map(|e| e.2), Some(2));
    }
}
