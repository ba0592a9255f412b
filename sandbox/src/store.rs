//! The object store: one table per stored resource, a global resourceVersion counter and, per
//! table, a bounded history of changes that watches resume from.
//!
//! Objects are immutable `Arc<Value>`s: a list takes Arc clones under the lock and serialises
//! after releasing it; a change is recorded once and shared by every watcher (its encoded watch
//! line is cached on first use), so fan-out costs no per-watcher copies.
//! The history is per resource (like the apiserver's per-resource watch cache), so a burst of
//! Service writes never expires a Node watch.

use crate::kinds::services::Allocator;
use crate::resources;
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: ChangeKind,
    pub object: Arc<Value>,
    /// The state before a MODIFIED (for selector transitions).
    pub prev: Option<Arc<Value>>,
    line: OnceLock<Bytes>,
}

impl Change {
    /// `{"type":..,"object":..}\n`, encoded once and shared by all watchers.
    pub fn line(&self) -> Bytes {
        self.line.get_or_init(|| encode_event(self.kind.as_str(), &self.object)).clone()
    }
}

pub fn encode_event(kind: &str, object: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(kind.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    // Serialising a Value cannot fail.
    let _ = serde_json::to_writer(&mut buf, object);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

pub type Key = (String, String);

#[derive(Debug)]
pub struct Table {
    pub objects: BTreeMap<Key, Arc<Value>>,
    pub history: VecDeque<Arc<Change>>,
    /// Highest rv of a change that fell out of the history.
    pub dropped_upto: u64,
    pub notify: tokio::sync::watch::Sender<u64>,
}

/// Result of asking for the changes after a resourceVersion.
pub enum Since {
    Changes(Vec<Arc<Change>>),
    Expired { oldest: u64 },
}

#[derive(Debug)]
pub struct Inner {
    pub rv: u64,
    pub tables: HashMap<&'static str, Table>,
    pub alloc: Allocator,
    /// Server-side apply: last applied configuration per object, per (subresource, manager).
    pub applied: HashMap<(&'static str, String, String), HashMap<String, Value>>,
    pub history_cap: usize,
}

impl Inner {
    pub fn new(alloc: Allocator, history_cap: usize) -> Self {
        let tables = resources::storages()
            .into_iter()
            .map(|s| {
                let (tx, _) = tokio::sync::watch::channel(0);
                (s, Table { objects: BTreeMap::new(), history: VecDeque::new(), dropped_upto: 0, notify: tx })
            })
            .collect();
        Inner { rv: 0, tables, alloc, applied: HashMap::new(), history_cap: history_cap.max(1) }
    }

    pub fn table(&self, storage: &str) -> Option<&Table> {
        self.tables.get(storage)
    }

    pub fn get(&self, storage: &str, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.tables.get(storage)?.objects.get(&(ns.to_string(), name.to_string())).cloned()
    }

    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Stores (or removes, for Deleted) and records a change whose object already carries `rv`.
    pub fn record(
        &mut self,
        storage: &'static str,
        key: Key,
        kind: ChangeKind,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        let rv = self.rv;
        let cap = self.history_cap;
        let Some(t) = self.tables.get_mut(storage) else { return };
        match kind {
            ChangeKind::Deleted => {
                t.objects.remove(&key);
            }
            _ => {
                t.objects.insert(key, object.clone());
            }
        }
        t.history.push_back(Arc::new(Change { rv, kind, object, prev, line: OnceLock::new() }));
        while t.history.len() > cap {
            if let Some(c) = t.history.pop_front() {
                t.dropped_upto = c.rv;
            }
        }
        t.notify.send_replace(rv);
    }

    /// Changes of a table after `rv`, or Expired when some of them were already dropped.
    pub fn since(&self, storage: &str, rv: u64) -> Since {
        let Some(t) = self.tables.get(storage) else { return Since::Changes(Vec::new()) };
        if rv < t.dropped_upto {
            return Since::Expired { oldest: t.history.front().map(|c| c.rv).unwrap_or(self.rv) };
        }
        let start = t.history.partition_point(|c| c.rv <= rv);
        Since::Changes(t.history.range(start..).cloned().collect())
    }
}

pub type Shared = Arc<std::sync::RwLock<Inner>>;
