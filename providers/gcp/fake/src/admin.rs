//! The admin side: seeding instances, marking them unhealthy, reading and clearing the call log,
//! faults, settings, settling operations, dumping state. Served over HTTP under `/_fake/` (for
//! people and scripts) and called directly by [`crate::GceFake`] (for Rust tests); both go through
//! the functions here.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /_fake/healthz` | | `{"ok":true}` |
//! | `POST /_fake/reset` | | empties resources, instances, operations, calls, faults |
//! | `GET /_fake/calls[?mutating=true]` | | `[Call]` in order |
//! | `DELETE /_fake/calls` | | clears the log |
//! | `GET /_fake/instances` | | `[instance]` |
//! | `POST /_fake/instances` | `{"name","zone","networkIp"?,"status"?,"tags"?,"labels"?}` | the instance |
//! | `DELETE /_fake/instances/{zone}/{name}` | | also leaves every instance group |
//! | `PUT /_fake/health/{zone}/{name}` | `{"healthy":false}` | `getHealth` answers UNHEALTHY |
//! | `GET /_fake/faults` | | `{"rules":[Fault],"random":{…}}` |
//! | `POST /_fake/faults` | `Fault` | adds a rule |
//! | `DELETE /_fake/faults` | | clears rules and random faults |
//! | `PUT /_fake/faults/random` | `{"rate":0.3,"inOperationShare":0.5}` | |
//! | `GET /_fake/settings` / `PATCH /_fake/settings` | `{"opDelayPolls","settleAfterMs" (null = never),"inUse":"sync"\|"inOperation","requirePatchFingerprint"}` | settings |
//! | `POST /_fake/settle` | | completes every unfinished operation: `{"completed":n}` |
//! | `GET /_fake/resources[?prefix=regions/r/]` | | `{"resources":{path:resource},"instanceGroupMembers":{…},"pendingOperations":n}` |

use crate::api::lock;
use crate::collections::Coll;
use crate::config::Delivery;
use crate::errors::{ApiError, ApiResult};
use crate::faults::{Fault, RandomFaults};
use crate::links::{self, Key};
use crate::ops;
use crate::store::{Shared, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

/// A VM to seed (instances are not created through the API in this fake).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    pub name: String,
    pub zone: String,
    /// Internal IP; allocated from the internal pool when absent.
    #[serde(default)]
    pub network_ip: Option<String>,
    /// `RUNNING` (default), `TERMINATED`, … (`listInstances` with `RUNNING` skips others).
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl InstanceSpec {
    pub fn new(zone: &str, name: &str) -> InstanceSpec {
        InstanceSpec {
            name: name.to_string(),
            zone: zone.to_string(),
            network_ip: None,
            status: None,
            tags: Vec::new(),
            labels: BTreeMap::new(),
        }
    }

    pub fn ip(mut self, ip: &str) -> InstanceSpec {
        self.network_ip = Some(ip.to_string());
        self
    }

    pub fn status(mut self, status: &str) -> InstanceSpec {
        self.status = Some(status.to_string());
        self
    }

    pub fn tags(mut self, tags: &[&str]) -> InstanceSpec {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }
}

pub fn add_instance(st: &mut State, spec: &InstanceSpec) -> ApiResult<Value> {
    if !st.known_zone(&spec.zone) {
        return Err(ApiError::invalid_field("zone", &spec.zone, "Unknown zone."));
    }
    crate::names::check_name(&spec.name)?;
    let key = Key::new(Coll::Instance, &spec.zone, &spec.name);
    if st.resources.contains_key(&key) {
        return Err(ApiError::already_exists(&key.path(&st.project)));
    }
    let taken = st.taken_ips();
    let ip = match &spec.network_ip {
        Some(text) => {
            let ip: Ipv4Addr =
                text.parse().map_err(|_| ApiError::invalid_field("networkIp", text, "Must be an IPv4 address."))?;
            if taken.contains(&ip) {
                return Err(ApiError::internal_ip_in_use(text));
            }
            ip
        }
        None => st
            .pools
            .allocate(crate::ips::Pool::Internal, &taken)
            .ok_or_else(|| ApiError::quota("INTERNAL_ADDRESSES", &st.region))?,
    };
    let project = st.project.clone();
    let region = links::region_of_zone(&spec.zone).to_string();
    let id = st.next_id();
    let fp = st.next_fingerprint();
    let tags_fp = crate::store::content_fingerprint(&json!(spec.tags));
    let mut v = json!({
        "kind": "compute#instance",
        "id": id.to_string(),
        "name": spec.name,
        "description": "",
        "zone": links::zone_link(&project, &spec.zone),
        "selfLink": key.self_link(&project),
        "creationTimestamp": crate::time::now_rfc3339(),
        "status": spec.status.clone().unwrap_or_else(|| "RUNNING".into()),
        "machineType": format!("{}/machineTypes/e2-medium", links::zone_link(&project, &spec.zone)),
        "fingerprint": fp,
        "networkInterfaces": [{
            "kind": "compute#networkInterface",
            "name": "nic0",
            "network": links::network_link(&project, "default"),
            "subnetwork": format!("{}projects/{project}/regions/{region}/subnetworks/default", links::API_PREFIX),
            "networkIP": ip.to_string(),
        }],
        "tags": { "items": spec.tags, "fingerprint": tags_fp },
        "labelFingerprint": crate::store::content_fingerprint(&json!(spec.labels)),
    });
    if spec.tags.is_empty()
        && let Some(t) = v.get_mut("tags").and_then(Value::as_object_mut)
    {
        t.remove("items");
    }
    if !spec.labels.is_empty() {
        v["labels"] = json!(spec.labels);
    }
    st.resources.insert(key, v.clone());
    Ok(v)
}

/// Removes an instance; like deleting a VM, it also leaves every unmanaged instance group.
pub fn remove_instance(st: &mut State, zone: &str, name: &str) -> ApiResult<()> {
    let key = Key::new(Coll::Instance, zone, name);
    if st.resources.remove(&key).is_none() {
        return Err(ApiError::not_found(&key.path(&st.project)));
    }
    let link = key.self_link(&st.project);
    for members in st.members.values_mut() {
        members.remove(&link);
    }
    st.unhealthy.remove(&link);
    Ok(())
}

pub fn set_health(st: &mut State, zone: &str, name: &str, healthy: bool) -> ApiResult<()> {
    let key = Key::new(Coll::Instance, zone, name);
    if !st.resources.contains_key(&key) {
        return Err(ApiError::not_found(&key.path(&st.project)));
    }
    let link = key.self_link(&st.project);
    if healthy {
        st.unhealthy.remove(&link);
    } else {
        st.unhealthy.insert(link);
    }
    Ok(())
}

pub fn settings_json(st: &State) -> Value {
    json!({
        "opDelayPolls": st.settings.op_delay_polls,
        "settleAfterMs": st.settings.settle_after.map(|d| d.as_millis() as u64),
        "inUse": st.settings.in_use,
        "requirePatchFingerprint": st.settings.require_patch_fingerprint,
    })
}

pub fn patch_settings(st: &mut State, body: &Value) -> ApiResult<()> {
    let bad = |f: &str| ApiError::invalid_field(f, &body[f].to_string(), "Bad value.");
    if let Some(v) = body.get("opDelayPolls") {
        st.settings.op_delay_polls = v.as_u64().ok_or_else(|| bad("opDelayPolls"))? as u32;
    }
    if let Some(v) = body.get("settleAfterMs") {
        st.settings.settle_after = match v {
            Value::Null => None,
            v => Some(Duration::from_millis(v.as_u64().ok_or_else(|| bad("settleAfterMs"))?)),
        };
    }
    if let Some(v) = body.get("inUse") {
        st.settings.in_use = serde_json::from_value::<Delivery>(v.clone()).map_err(|_| bad("inUse"))?;
    }
    if let Some(v) = body.get("requirePatchFingerprint") {
        st.settings.require_patch_fingerprint = v.as_bool().ok_or_else(|| bad("requirePatchFingerprint"))?;
    }
    Ok(())
}

/// Every stored resource (rendered as clients see it) keyed by project-relative path.
pub fn dump(st: &State, prefix: &str) -> Value {
    let rel = |k: &Key| k.path(&st.project).splitn(3, '/').nth(2).unwrap_or_default().to_string();
    let mut resources = serde_json::Map::new();
    for (k, v) in &st.resources {
        let path = rel(k);
        if path.starts_with(prefix) {
            resources.insert(path, st.render(k, v));
        }
    }
    let mut members = serde_json::Map::new();
    for (k, set) in &st.members {
        let path = rel(k);
        if path.starts_with(prefix) {
            members.insert(path, json!(set));
        }
    }
    json!({
        "resources": resources,
        "instanceGroupMembers": members,
        "pendingOperations": st.ops.pending_count(),
        "unhealthy": st.unhealthy,
    })
}

/// Serves `/_fake/…`.
pub fn handle(shared: &Shared, method: &str, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
    let mut st = lock(shared);
    ops::settle_due(&mut st);
    let rest = path.trim_start_matches("/_fake").trim_matches('/');
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return err(&ApiError::invalid(format!("Invalid JSON payload received. {e}"))),
        }
    };
    let params = crate::api::parse_query(query);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let res: ApiResult<Value> = match (method, segs.as_slice()) {
        ("GET", ["healthz"]) => Ok(json!({"ok": true})),
        ("POST", ["reset"]) => {
            st.reset();
            Ok(json!({}))
        }
        ("GET", ["calls"]) => {
            let only_mut = param("mutating") == Some("true");
            Ok(json!(st.calls.iter().filter(|c| !only_mut || c.mutating).collect::<Vec<_>>()))
        }
        ("DELETE", ["calls"]) => {
            st.calls.clear();
            Ok(json!({}))
        }
        ("GET", ["instances"]) => {
            Ok(json!(st.resources.iter().filter(|(k, _)| k.coll == Coll::Instance).map(|(_, v)| v).collect::<Vec<_>>()))
        }
        ("POST", ["instances"]) => serde_json::from_value::<InstanceSpec>(body)
            .map_err(|e| ApiError::invalid(format!("Bad instance spec: {e}")))
            .and_then(|spec| add_instance(&mut st, &spec)),
        ("DELETE", ["instances", zone, name]) => remove_instance(&mut st, zone, name).map(|()| json!({})),
        ("PUT", ["health", zone, name]) => {
            let healthy = body.get("healthy").and_then(Value::as_bool).unwrap_or(true);
            set_health(&mut st, zone, name, healthy).map(|()| json!({}))
        }
        ("GET", ["faults"]) => Ok(json!({ "rules": st.faults.rules, "random": st.faults.random })),
        ("POST", ["faults"]) => {
            serde_json::from_value::<Fault>(body).map_err(|e| ApiError::invalid(format!("Bad fault: {e}"))).map(|f| {
                st.faults.rules.push(f);
                json!({})
            })
        }
        ("DELETE", ["faults"]) => {
            st.faults.clear();
            Ok(json!({}))
        }
        ("PUT", ["faults", "random"]) => serde_json::from_value::<RandomFaults>(body)
            .map_err(|e| ApiError::invalid(format!("Bad random faults: {e}")))
            .map(|r| {
                st.faults.random = r;
                json!({})
            }),
        ("GET", ["settings"]) => Ok(settings_json(&st)),
        ("PATCH", ["settings"]) => patch_settings(&mut st, &body).map(|()| settings_json(&st)),
        ("POST", ["settle"]) => Ok(json!({ "completed": ops::settle_all(&mut st) })),
        ("GET", ["resources"]) => Ok(dump(&st, param("prefix").unwrap_or(""))),
        _ => Err(ApiError::new(404, "notFound", "RESOURCE_NOT_FOUND", format!("No admin endpoint {method} {path}"))),
    };
    match res {
        Ok(v) => (200, v),
        Err(e) => err(&e),
    }
}

fn err(e: &ApiError) -> (u16, Value) {
    (e.code, e.to_body())
}
