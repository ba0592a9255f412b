//! The fake's whole state behind one mutex: stored resources (as JSON, keyed by collection,
//! location and name), instance-group membership, operations, the call log, faults, and the
//! settings tests may change at run time.
//!
//! Every handler runs to completion under the lock (nothing awaits while holding it), so each
//! request sees and leaves a consistent state. Mutations are not applied when requested: they
//! become a [`Change`] held by an operation and are applied ([`apply`]) when that operation
//! reaches `DONE`.

use crate::calls::Call;
use crate::collections::Coll;
use crate::config::Delivery;
use crate::errors::{ApiError, ApiResult};
use crate::faults::Faults;
use crate::ips::Pools;
use crate::links::Key;
use crate::ops::Ops;
use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub type Shared = Arc<Mutex<State>>;

/// The call log keeps at most this many calls (the oldest tenth is dropped when it is full), so a
/// long-running `gce-fake` does not grow without bound.
pub const CALLS_KEPT: usize = 200_000;

/// Settings a test can change while the fake runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub op_delay_polls: u32,
    pub settle_after: Option<Duration>,
    pub in_use: Delivery,
    pub require_patch_fingerprint: bool,
}

/// What a mutation does when its operation completes.
#[derive(Debug, Clone)]
pub enum Change {
    /// Store `value` at `key`; `create` = the key must not exist yet (insert), else must exist.
    Put { key: Key, value: Value, create: bool },
    /// Remove `key` (re-checking that nothing uses it).
    Delete { key: Key },
    /// Instance-group membership (`addInstances` / `removeInstances`).
    Members { key: Key, add: Vec<String>, remove: Vec<String> },
}

impl Change {
    pub fn key(&self) -> &Key {
        match self {
            Change::Put { key, .. } | Change::Delete { key } | Change::Members { key, .. } => key,
        }
    }
}

pub struct State {
    pub project: String,
    pub region: String,
    pub zones: Vec<String>,
    pub settings: Settings,
    pub pools: Pools,
    pub resources: BTreeMap<Key, Value>,
    /// Instance-group key → member instance self-links.
    pub members: BTreeMap<Key, BTreeSet<String>>,
    pub ops: Ops,
    /// Instance self-links a test marked unhealthy (`getHealth`).
    pub unhealthy: BTreeSet<String>,
    pub calls: Vec<Call>,
    /// Sequence number of the last logged call (the log keeps the newest [`CALLS_KEPT`]).
    pub call_seq: u64,
    pub faults: Faults,
    next_id: u64,
    fingerprint_counter: u64,
}

impl State {
    pub fn new(
        project: String,
        region: String,
        zones: Vec<String>,
        settings: Settings,
        pools: Pools,
        faults: Faults,
    ) -> State {
        State {
            project,
            region,
            zones,
            settings,
            pools,
            resources: BTreeMap::new(),
            members: BTreeMap::new(),
            ops: Ops::default(),
            unhealthy: BTreeSet::new(),
            calls: Vec::new(),
            call_seq: 0,
            faults,
            next_id: 1_000_000_000_000_000_000,
            fingerprint_counter: 0,
        }
    }

    /// Back to empty: resources, instances, operations, call log, faults and unhealthy marks.
    /// Settings and pools stay.
    pub fn reset(&mut self) {
        self.resources.clear();
        self.members.clear();
        self.ops = Ops::default();
        self.unhealthy.clear();
        self.calls.clear();
        self.faults.clear();
    }

    /// Appends to the call log, numbering the call.
    pub fn log_call(&mut self, mut call: Call) {
        self.call_seq += 1;
        call.seq = self.call_seq;
        if self.calls.len() >= CALLS_KEPT {
            self.calls.drain(..CALLS_KEPT / 10);
        }
        self.calls.push(call);
    }

    /// A fresh numeric id (19–20 digits, like GCE's; served as a decimal string).
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 7_919;
        self.next_id
    }

    /// A fresh `fingerprint`: 8 bytes, URL-safe base64 with padding (like `"--KE24GB4T0="`).
    pub fn next_fingerprint(&mut self) -> String {
        self.fingerprint_counter += 1;
        encode_fingerprint(splitmix64(self.fingerprint_counter ^ 0x5eed_f00d))
    }

    pub fn known_region(&self, r: &str) -> bool {
        r == self.region || self.zones.iter().any(|z| crate::links::region_of_zone(z) == r)
    }

    pub fn known_zone(&self, z: &str) -> bool {
        self.zones.iter().any(|x| x == z)
    }

    /// Is `key` reserved by an unfinished insert?
    pub fn pending_insert(&self, key: &Key) -> bool {
        self.ops.pending_changes().any(|c| matches!(c, Change::Put { key: k, create: true, .. } if k == key))
    }

    /// The operation that holds `key`, if one is unfinished.
    pub fn pending_op_for(&self, key: &Key) -> Option<&str> {
        self.ops.pending_for(key)
    }

    /// Values of unfinished inserts and updates (for in-use checks and IP bookkeeping).
    pub fn pending_puts(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.ops.pending_changes().filter_map(|c| match c {
            Change::Put { key, value, .. } => Some((key, value)),
            _ => None,
        })
    }

    /// Every IPv4 address held by an address, forwarding rule or instance, stored or pending.
    pub fn taken_ips(&self) -> BTreeSet<Ipv4Addr> {
        let mut out = BTreeSet::new();
        let mut add = |k: &Key, v: &Value| {
            let field = match k.coll {
                Coll::Address | Coll::GlobalAddress => v.get("address"),
                Coll::ForwardingRule | Coll::GlobalForwardingRule => v.get("IPAddress"),
                Coll::Instance => v.pointer("/networkInterfaces/0/networkIP"),
                _ => None,
            };
            if let Some(ip) = field.and_then(Value::as_str).and_then(|s| s.parse().ok()) {
                out.insert(ip);
            }
        };
        for (k, v) in &self.resources {
            add(k, v);
        }
        for (k, v) in self.pending_puts() {
            add(k, v);
        }
        out
    }

    /// Stored resources of one collection in one location, by name.
    pub fn list(&self, coll: Coll, loc: &str) -> impl Iterator<Item = (&Key, &Value)> {
        let lo = Key::new(coll, loc, "");
        self.resources.range(lo..).take_while(move |(k, _)| k.coll == coll && k.loc == loc)
    }

    /// A resource as clients see it: stored JSON plus the fields GCE computes
    /// (address `status`/`users`, instance-group `size`), minus secrets (`privateKey`).
    pub fn render(&self, key: &Key, v: &Value) -> Value {
        let mut out = v.clone();
        match key.coll {
            Coll::Address | Coll::GlobalAddress => {
                let users = crate::kinds::address::users(self, key, v);
                out["status"] = json!(if users.is_empty() { "RESERVED" } else { "IN_USE" });
                if users.is_empty() {
                    if let Some(o) = out.as_object_mut() {
                        o.remove("users");
                    }
                } else {
                    out["users"] = json!(users);
                }
            }
            Coll::InstanceGroup => {
                out["size"] = json!(self.members.get(key).map_or(0, BTreeSet::len));
            }
            Coll::SslCertificate => {
                if let Some(o) = out.as_object_mut() {
                    o.remove("privateKey");
                }
            }
            _ => {}
        }
        out
    }
}

/// Applies a change (operation reached `DONE`), re-checking what may have changed since the
/// request was accepted: name still free, resource still there, references still resolvable,
/// nothing started using a resource being deleted.
pub fn apply(st: &mut State, change: Change) -> ApiResult<()> {
    match change {
        Change::Put { key, value, create } => {
            let exists = st.resources.contains_key(&key);
            if create && exists {
                return Err(ApiError::already_exists(&key.path(&st.project)));
            }
            if !create && !exists {
                return Err(ApiError::not_found(&key.path(&st.project)));
            }
            crate::refs::check_still_exist(st, &key, &value)?;
            if create && key.coll == Coll::InstanceGroup {
                st.members.entry(key.clone()).or_default();
            }
            st.resources.insert(key, value);
            Ok(())
        }
        Change::Delete { key } => {
            if !st.resources.contains_key(&key) {
                return Err(ApiError::not_found(&key.path(&st.project)));
            }
            crate::refs::check_not_in_use(st, &key)?;
            st.resources.remove(&key);
            st.members.remove(&key);
            Ok(())
        }
        Change::Members { key, add, remove } => {
            if !st.resources.contains_key(&key) {
                return Err(ApiError::not_found(&key.path(&st.project)));
            }
            // An instance deleted while the operation ran is not added.
            let project = st.project.clone();
            let add: Vec<String> = add
                .into_iter()
                .filter(|i| crate::links::parse_ref(i, &project).is_some_and(|r| st.resources.contains_key(&r.key)))
                .collect();
            let set = st.members.entry(key).or_default();
            for i in remove {
                set.remove(&i);
            }
            set.extend(add);
            Ok(())
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn encode_fingerprint(x: u64) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(x.to_be_bytes())
}

/// A content fingerprint (labels, named ports): the same content always gives the same value,
/// and empty content gives `42WmSpB8rSM=`, which is what GCE returns for "no labels".
pub fn content_fingerprint(v: &Value) -> String {
    let empty = match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if empty {
        return "42WmSpB8rSM=".to_string();
    }
    // serde_json's Map is ordered (BTreeMap) without the preserve_order feature: canonical text.
    let text = v.to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    encode_fingerprint(splitmix64(h))
}

/// Decodes a client-sent fingerprint for comparison (clients may send either base64 alphabet).
pub fn same_fingerprint(sent: &str, current: &str) -> bool {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let a = URL_SAFE.decode(sent).or_else(|_| STANDARD.decode(sent));
    let b = URL_SAFE.decode(current);
    matches!((a, b), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_url_safe_base64_with_padding() {
        for i in 0..64u64 {
            let f = encode_fingerprint(splitmix64(i));
            assert_eq!(f.len(), 12);
            assert!(f.ends_with('='));
            assert!(!f.contains('+') && !f.contains('/'));
        }
        assert_eq!(content_fingerprint(&json!({})), "42WmSpB8rSM=");
        assert_ne!(content_fingerprint(&json!({"a": "b"})), content_fingerprint(&json!({"a": "c"})));
        assert_eq!(content_fingerprint(&json!({"a": "b"})), content_fingerprint(&json!({"a": "b"})));
        assert!(same_fingerprint("--KE24GB4T0=", "--KE24GB4T0="));
        assert!(same_fingerprint("++KE24GB4T0=", "--KE24GB4T0="));
        assert!(!same_fingerprint("AAAAAAAAAAA=", "--KE24GB4T0="));
    }
}
