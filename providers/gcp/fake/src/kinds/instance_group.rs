//! Unmanaged instance groups: membership (`addInstances`, `removeInstances`, `listInstances`,
//! which is a POST) and named ports with their fingerprint.
//!
//! Members are instance self-links of the group's zone: an instance of another zone or one that
//! does not exist answers 400 `invalid`; adding a member twice answers 400 `memberAlreadyExists`
//! (CPG and ingress-gce ignore exactly that); removing a non-member is accepted. The group's
//! `fingerprint` is the fingerprint of its named ports (`setNamedPorts` accepts an absent one and
//! rejects a stale one with 412); membership changes do not change it.

use super::{Ctx, Outcome, str_field};
use crate::collections::Coll;
use crate::errors::{ApiError, ApiResult};
use crate::links::{self, Key};
use crate::names;
use crate::ops::Prepared;
use crate::store::{self, Change, State};
use serde_json::{Value, json};

pub fn check(ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    check_named_ports(v.get("namedPorts"))?;
    super::normalize_networks(ctx, v);
    Ok(())
}

fn check_named_ports(ports: Option<&Value>) -> ApiResult<()> {
    for (i, p) in ports.and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = str_field(p, "name").unwrap_or("");
        if !names::is_valid_name(name) {
            return Err(ApiError::invalid_field(
                &format!("resource.namedPorts[{i}].name"),
                name,
                "Invalid named port name.",
            ));
        }
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            return Err(ApiError::invalid_field(
                &format!("resource.namedPorts[{i}].port"),
                &port.to_string(),
                "Must be between 1 and 65535.",
            ));
        }
    }
    Ok(())
}

pub fn named_ports_fingerprint(v: &Value) -> String {
    store::content_fingerprint(v.get("namedPorts").unwrap_or(&Value::Null))
}

/// Parses the `instances[].instance` of a membership request.
fn instance_refs(st: &State, key: &Key, body: Option<&Value>, must_exist: bool) -> ApiResult<Vec<String>> {
    let items = body.and_then(|b| b.get("instances")).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("instances[{i}].instance");
        let text = str_field(item, "instance").ok_or_else(|| ApiError::required(&field))?;
        let r = links::parse_ref(text, &st.project)
            .filter(|r| r.key.coll == Coll::Instance)
            .ok_or_else(|| ApiError::invalid_field(&field, text, "The URL is malformed."))?;
        if r.key.loc != key.loc {
            return Err(ApiError::invalid_field(
                &field,
                text,
                &format!("Resource '{}' is expected to be in zone '{}'.", r.key.path(&r.project), key.loc),
            ));
        }
        if must_exist && (r.project != st.project || !st.resources.contains_key(&r.key)) {
            return Err(ApiError::invalid_field(
                &field,
                text,
                &format!("The resource '{}' was not found", r.key.path(&r.project)),
            ));
        }
        out.push(r.key.self_link(&st.project));
    }
    Ok(out)
}

pub fn add_instances(st: &mut State, key: &Key, body: Option<Value>) -> ApiResult<Prepared> {
    let add = instance_refs(st, key, body.as_ref(), true)?;
    let members = st.members.get(key).cloned().unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    for inst in &add {
        if members.contains(inst) || !seen.insert(inst.clone()) {
            let path = links::parse_ref(inst, &st.project).map(|r| r.key.path(&st.project)).unwrap_or_default();
            return Err(ApiError::member_exists(&path, &key.path(&st.project)));
        }
    }
    Ok(membership(st, key, add, Vec::new(), "addInstances"))
}

pub fn remove_instances(st: &mut State, key: &Key, body: Option<Value>) -> ApiResult<Prepared> {
    let remove = instance_refs(st, key, body.as_ref(), false)?;
    Ok(membership(st, key, Vec::new(), remove, "removeInstances"))
}

fn membership(st: &State, key: &Key, add: Vec<String>, remove: Vec<String>, op_type: &'static str) -> Prepared {
    let target_id = st.resources.get(key).and_then(|v| str_field(v, "id")).and_then(|s| s.parse().ok()).unwrap_or(0);
    Prepared {
        change: Some(Change::Members { key: key.clone(), add, remove }),
        op_type,
        target: key.clone(),
        target_id,
        immediate: false,
        deferred: None,
    }
}

pub fn set_named_ports(st: &mut State, key: &Key, body: Option<Value>) -> ApiResult<Prepared> {
    let old = st.resources.get(key).cloned().ok_or_else(|| ApiError::not_found(&key.path(&st.project)))?;
    let body = body.unwrap_or_else(|| json!({}));
    let current = str_field(&old, "fingerprint").unwrap_or("");
    if let Some(sent) = str_field(&body, "fingerprint")
        && !store::same_fingerprint(sent, current)
    {
        return Err(ApiError::fingerprint_mismatch());
    }
    let ports = body.get("namedPorts").cloned().unwrap_or_else(|| json!([]));
    check_named_ports(Some(&ports))?;
    let mut v = old;
    if ports.as_array().is_some_and(|a| a.is_empty()) {
        if let Some(o) = v.as_object_mut() {
            o.remove("namedPorts");
        }
    } else {
        v["namedPorts"] = ports;
    }
    v["fingerprint"] = json!(named_ports_fingerprint(&v));
    super::replace_with(st, key, v, "setNamedPorts", false)
}

/// `listInstances` with `{instanceState: ALL|RUNNING}`: `{instance, status}` per member, in
/// name order (the HTTP layer applies `filter`, `maxResults` and `pageToken`).
pub fn list_instances(st: &State, key: &Key, body: Option<Value>) -> ApiResult<Outcome> {
    let state = body.as_ref().and_then(|b| str_field(b, "instanceState")).unwrap_or("ALL").to_string();
    if state != "ALL" && state != "RUNNING" {
        return Err(ApiError::invalid_field("instanceState", &state, "Must be one of [ALL, RUNNING]."));
    }
    let mut items = Vec::new();
    for inst in st.members.get(key).into_iter().flatten() {
        let status = links::parse_ref(inst, &st.project)
            .and_then(|r| st.resources.get(&r.key))
            .and_then(|i| str_field(i, "status"))
            .unwrap_or("RUNNING")
            .to_string();
        if state == "RUNNING" && status != "RUNNING" {
            continue;
        }
        items.push(json!({ "instance": inst, "status": status }));
    }
    Ok(Outcome::ReadList {
        kind: "compute#instanceGroupsListInstances",
        id: format!("{}/listInstances", key.path(&st.project)),
        self_link: format!("{}/listInstances", key.self_link(&st.project)),
        items,
    })
}
