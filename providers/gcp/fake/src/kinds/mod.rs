//! What each verb does, generically, and where each collection's own rules plug in.
//!
//! Every mutation is *prepared* under the state lock: it is validated against the stored state
//! (name rule, 409 on a taken name, 404, 412 on a stale fingerprint, reference checks, in-use,
//! per-collection rules), normalized (absolute references, defaults, output-only fields) and
//! turned into a [`Change`] held by a new operation. Nothing is stored until that operation
//! completes. Per-collection rules live in one module each and are called through [`check`].
//!
//! Fingerprint policy (see the crate docs): `PUT` requires an up-to-date `fingerprint` (absent or
//! stale → 412), `PATCH` accepts an absent one and rejects a stale one, `setLabels` requires an
//! up-to-date `labelFingerprint`, `setNamedPorts` accepts an absent one.

pub mod address;
pub mod backend_service;
pub mod firewall;
pub mod forwarding_rule;
pub mod health_check;
pub mod instance_group;
pub mod proxy;
pub mod ssl_certificate;
pub mod target_pool;
pub mod url_map;

use crate::collections::{Coll, Scope};
use crate::config::Delivery;
use crate::errors::{ApiError, ApiResult};
use crate::links::{self, Key};
use crate::ops::Prepared;
use crate::store::{self, Change, State};
use serde_json::{Map, Value, json};

/// Fields a client may send but the server owns.
const OUTPUT_ONLY: &[&str] = &[
    "id",
    "selfLink",
    "selfLinkWithId",
    "creationTimestamp",
    "kind",
    "fingerprint",
    "labelFingerprint",
    "region",
    "zone",
    "status",
    "users",
    "size",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Insert,
    Update,
    Patch,
}

/// What a per-collection check sees.
pub struct Ctx<'a> {
    pub st: &'a State,
    pub key: &'a Key,
    pub mode: Mode,
    pub old: Option<&'a Value>,
    /// A failure to report inside the operation (e.g. an internal IP conflict).
    pub deferred: Option<ApiError>,
}

impl Ctx<'_> {
    pub fn project(&self) -> &str {
        &self.st.project
    }
    pub fn global(&self) -> bool {
        self.key.coll.def().scope == Scope::Global
    }
}

/// The answer of a custom method: a mutation to run as an operation, or a read.
pub enum Outcome {
    Mutation(Prepared),
    Read(Value),
    /// A paged read (`listInstances`): the HTTP layer applies `filter`, `maxResults`, `pageToken`.
    ReadList {
        kind: &'static str,
        id: String,
        self_link: String,
        items: Vec<Value>,
    },
}

fn check(ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    match ctx.key.coll {
        Coll::Address | Coll::GlobalAddress => address::check(ctx, v),
        Coll::ForwardingRule | Coll::GlobalForwardingRule => forwarding_rule::check(ctx, v),
        Coll::RegionBackendService | Coll::BackendService => backend_service::check(ctx, v),
        Coll::RegionHealthCheck | Coll::HealthCheck => health_check::check(ctx, v),
        Coll::HttpHealthCheck => health_check::check_legacy(ctx, v),
        Coll::TargetPool => target_pool::check(ctx, v),
        Coll::Firewall => firewall::check(ctx, v),
        Coll::UrlMap => url_map::check(ctx, v),
        Coll::TargetHttpProxy | Coll::TargetHttpsProxy => proxy::check(ctx, v),
        Coll::SslCertificate => ssl_certificate::check(ctx, v),
        Coll::InstanceGroup => instance_group::check(ctx, v),
        Coll::Instance => Ok(()),
    }
}

fn body_object(body: Option<Value>) -> ApiResult<Map<String, Value>> {
    match body {
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(ApiError::invalid("Invalid JSON payload received. Expected an object.")),
        None => Err(ApiError::required("resource")),
    }
}

fn strip_output_only(m: &mut Map<String, Value>) {
    for f in OUTPUT_ONLY {
        m.remove(*f);
    }
}

/// 400 when another operation on `key` has not finished (real GCE: `resourceNotReady`).
fn check_not_busy(st: &State, key: &Key) -> ApiResult<()> {
    match st.pending_op_for(key) {
        Some(_) => Err(ApiError::not_ready(&key.path(&st.project))),
        None => Ok(()),
    }
}

fn existing<'a>(st: &'a State, key: &Key) -> ApiResult<&'a Value> {
    st.resources.get(key).ok_or_else(|| ApiError::not_found(&key.path(&st.project)))
}

fn id_of(v: &Value) -> u64 {
    v.get("id").and_then(Value::as_str).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Server-owned fields of a new resource.
fn finalize_new(st: &mut State, key: &Key, v: &mut Value) -> u64 {
    let def = key.coll.def();
    let id = st.next_id();
    let project = st.project.clone();
    v["kind"] = json!(def.kind);
    v["id"] = json!(id.to_string());
    v["name"] = json!(key.name);
    v["selfLink"] = json!(key.self_link(&project));
    v["creationTimestamp"] = json!(crate::time::now_rfc3339());
    default(v, "description", json!(""));
    match def.scope {
        Scope::Regional => v["region"] = json!(links::region_link(&project, &key.loc)),
        Scope::Zonal => v["zone"] = json!(links::zone_link(&project, &key.loc)),
        Scope::Global => {}
    }
    if def.labels {
        let labels = v.get("labels").cloned().unwrap_or_else(|| json!({}));
        v["labelFingerprint"] = json!(store::content_fingerprint(&labels));
    }
    if def.fingerprint {
        v["fingerprint"] = json!(if key.coll == Coll::InstanceGroup {
            instance_group::named_ports_fingerprint(v)
        } else {
            st.next_fingerprint()
        });
    }
    id
}

/// Server-owned fields carried over from the stored resource on update/patch, plus a new
/// fingerprint.
fn finalize_replace(st: &mut State, key: &Key, old: &Value, v: &mut Value) {
    for f in ["kind", "id", "name", "selfLink", "creationTimestamp", "region", "zone", "labels", "labelFingerprint"] {
        match old.get(f) {
            Some(x) => v[f] = x.clone(),
            None => {
                if let Some(m) = v.as_object_mut() {
                    m.remove(f);
                }
            }
        }
    }
    default(v, "description", json!(""));
    if key.coll.def().fingerprint {
        v["fingerprint"] = json!(st.next_fingerprint());
    }
}

/// `POST …/{collection}`.
pub fn insert(st: &mut State, coll: Coll, loc: &str, body: Option<Value>) -> ApiResult<Prepared> {
    let mut m = body_object(body)?;
    let name = match m.get("name") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(ApiError::required("resource.name")),
    };
    crate::names::check_name(&name)?;
    let key = Key::new(coll, loc, &name);
    if st.resources.contains_key(&key) || st.pending_insert(&key) {
        return Err(ApiError::already_exists(&key.path(&st.project)));
    }
    strip_output_only(&mut m);
    let mut v = Value::Object(m);
    let deferred = {
        let st_ref: &State = st;
        crate::refs::normalize_and_check(st_ref, &key, &mut v)?;
        let mut ctx = Ctx { st: st_ref, key: &key, mode: Mode::Insert, old: None, deferred: None };
        check(&mut ctx, &mut v)?;
        ctx.deferred
    };
    let id = finalize_new(st, &key, &mut v);
    Ok(Prepared {
        change: Some(Change::Put { key: key.clone(), value: v, create: true }),
        op_type: "insert",
        target: key,
        target_id: id,
        immediate: false,
        deferred,
    })
}

fn check_fingerprint(old: &Value, sent: Option<&Value>, required: bool) -> ApiResult<()> {
    let current = old.get("fingerprint").and_then(Value::as_str).unwrap_or("");
    match sent.and_then(Value::as_str) {
        None | Some("") if required => Err(ApiError::fingerprint_mismatch()),
        None | Some("") => Ok(()),
        Some(s) if store::same_fingerprint(s, current) => Ok(()),
        Some(_) => Err(ApiError::fingerprint_mismatch()),
    }
}

fn check_body_name(m: &Map<String, Value>, key: &Key) -> ApiResult<()> {
    match m.get("name").and_then(Value::as_str) {
        Some(n) if n != key.name => Err(ApiError::invalid_field(
            "resource.name",
            n,
            &format!("The name must match the resource name in the URL ('{}').", key.name),
        )),
        _ => Ok(()),
    }
}

/// `PUT …/{name}`: full replace.
pub fn update(st: &mut State, key: &Key, body: Option<Value>) -> ApiResult<Prepared> {
    let old = existing(st, key)?.clone();
    check_not_busy(st, key)?;
    let mut m = body_object(body)?;
    check_body_name(&m, key)?;
    if key.coll.def().fingerprint {
        check_fingerprint(&old, m.get("fingerprint"), true)?;
    }
    strip_output_only(&mut m);
    m.insert("name".into(), json!(key.name));
    let mut v = Value::Object(m);
    let deferred = {
        let st_ref: &State = st;
        crate::refs::normalize_and_check(st_ref, key, &mut v)?;
        let mut ctx = Ctx { st: st_ref, key, mode: Mode::Update, old: Some(&old), deferred: None };
        check(&mut ctx, &mut v)?;
        ctx.deferred
    };
    finalize_replace(st, key, &old, &mut v);
    Ok(Prepared {
        change: Some(Change::Put { key: key.clone(), value: v, create: false }),
        op_type: "update",
        target: key.clone(),
        target_id: id_of(&old),
        immediate: false,
        deferred,
    })
}

/// RFC 7396 JSON merge patch (Compute's documented PATCH semantics: objects merge, arrays and
/// scalars replace, `null` removes).
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(pm) => {
            if !target.is_object() {
                *target = json!({});
            }
            if let Some(tm) = target.as_object_mut() {
                for (k, pv) in pm {
                    if pv.is_null() {
                        tm.remove(k);
                    } else {
                        merge_patch(tm.entry(k.clone()).or_insert(Value::Null), pv);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// `PATCH …/{name}`: JSON merge patch.
pub fn patch(st: &mut State, key: &Key, body: Option<Value>) -> ApiResult<Prepared> {
    let old = existing(st, key)?.clone();
    check_not_busy(st, key)?;
    let mut m = body_object(body)?;
    check_body_name(&m, key)?;
    if key.coll.def().fingerprint {
        check_fingerprint(&old, m.get("fingerprint"), st.settings.require_patch_fingerprint)?;
    }
    strip_output_only(&mut m);
    m.remove("name");
    let mut v = old.clone();
    if let Some(o) = v.as_object_mut() {
        for f in OUTPUT_ONLY {
            o.remove(*f);
        }
    }
    merge_patch(&mut v, &Value::Object(m));
    let deferred = {
        let st_ref: &State = st;
        crate::refs::normalize_and_check(st_ref, key, &mut v)?;
        let mut ctx = Ctx { st: st_ref, key, mode: Mode::Patch, old: Some(&old), deferred: None };
        check(&mut ctx, &mut v)?;
        ctx.deferred
    };
    finalize_replace(st, key, &old, &mut v);
    Ok(Prepared {
        change: Some(Change::Put { key: key.clone(), value: v, create: false }),
        op_type: "patch",
        target: key.clone(),
        target_id: id_of(&old),
        immediate: false,
        deferred,
    })
}

/// `DELETE …/{name}`. Something that uses the resource → 400 `resourceInUseByAnotherResource`,
/// synchronously or inside the operation per [`crate::store::Settings::in_use`].
pub fn delete(st: &mut State, key: &Key) -> ApiResult<Prepared> {
    let old = existing(st, key)?;
    let target_id = id_of(old);
    check_not_busy(st, key)?;
    let deferred = match crate::refs::check_not_in_use(st, key) {
        Ok(()) => None,
        Err(e) if st.settings.in_use == Delivery::InOperation => Some(e),
        Err(e) => return Err(e),
    };
    Ok(Prepared {
        change: Some(Change::Delete { key: key.clone() }),
        op_type: "delete",
        target: key.clone(),
        target_id,
        immediate: false,
        deferred,
    })
}

/// A custom method (`POST …/{name}/{action}`).
pub fn action(st: &mut State, key: &Key, action: &str, body: Option<Value>) -> ApiResult<Outcome> {
    existing(st, key)?;
    let read_only = crate::collections::READ_ONLY_ACTIONS.contains(&action);
    if !read_only {
        check_not_busy(st, key)?;
    }
    match (key.coll, action) {
        (_, "setLabels") => set_labels(st, key, body).map(Outcome::Mutation),
        (Coll::ForwardingRule | Coll::GlobalForwardingRule, "setTarget") => {
            forwarding_rule::set_target(st, key, body).map(Outcome::Mutation)
        }
        (Coll::TargetHttpProxy | Coll::TargetHttpsProxy, "setUrlMap") => {
            proxy::set_url_map(st, key, body).map(Outcome::Mutation)
        }
        (Coll::TargetHttpsProxy, "setSslCertificates") => {
            proxy::set_ssl_certificates(st, key, body).map(Outcome::Mutation)
        }
        (Coll::InstanceGroup, "addInstances") => instance_group::add_instances(st, key, body).map(Outcome::Mutation),
        (Coll::InstanceGroup, "removeInstances") => {
            instance_group::remove_instances(st, key, body).map(Outcome::Mutation)
        }
        (Coll::InstanceGroup, "setNamedPorts") => instance_group::set_named_ports(st, key, body).map(Outcome::Mutation),
        (Coll::InstanceGroup, "listInstances") => instance_group::list_instances(st, key, body),
        (Coll::RegionBackendService | Coll::BackendService, "getHealth") => {
            backend_service::get_health(st, key, body).map(Outcome::Read)
        }
        (Coll::TargetPool, "getHealth") => target_pool::get_health(st, key, body).map(Outcome::Read),
        (Coll::TargetPool, a) => target_pool::action(st, key, a, body).map(Outcome::Mutation),
        _ => Err(ApiError::new(404, "notFound", "RESOURCE_NOT_FOUND", format!("Unknown method {action}"))),
    }
}

/// A mutation that replaces the stored value with `v` (custom methods), re-checking references.
pub fn replace_with(
    st: &mut State,
    key: &Key,
    mut v: Value,
    op_type: &'static str,
    new_fingerprint: bool,
) -> ApiResult<Prepared> {
    crate::refs::normalize_and_check(st, key, &mut v)?;
    if new_fingerprint && key.coll.def().fingerprint {
        v["fingerprint"] = json!(st.next_fingerprint());
    }
    let target_id = id_of(&v);
    Ok(Prepared {
        change: Some(Change::Put { key: key.clone(), value: v, create: false }),
        op_type,
        target: key.clone(),
        target_id,
        immediate: false,
        deferred: None,
    })
}

/// `setLabels` on addresses and forwarding rules: requires the current `labelFingerprint`;
/// finishes at once, as on real GCE.
fn set_labels(st: &mut State, key: &Key, body: Option<Value>) -> ApiResult<Prepared> {
    let old = existing(st, key)?.clone();
    let m = body_object(body)?;
    let current = old.get("labelFingerprint").and_then(Value::as_str).unwrap_or("");
    match m.get("labelFingerprint").and_then(Value::as_str) {
        Some(s) if store::same_fingerprint(s, current) => {}
        _ => return Err(ApiError::label_fingerprint_mismatch()),
    }
    let labels = m.get("labels").cloned().unwrap_or_else(|| json!({}));
    let Some(lm) = labels.as_object() else {
        return Err(ApiError::invalid_field("labels", &labels.to_string(), "Labels must be a map."));
    };
    for (k, val) in lm {
        let ok_key = !k.is_empty()
            && k.len() <= 63
            && k.starts_with(|c: char| c.is_ascii_lowercase())
            && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        let ok_val = val.as_str().is_some_and(|s| {
            s.len() <= 63 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        });
        if !ok_key || !ok_val {
            return Err(ApiError::invalid_field(&format!("labels.{k}"), &val.to_string(), "Invalid label."));
        }
    }
    let mut v = old.clone();
    if lm.is_empty() {
        if let Some(o) = v.as_object_mut() {
            o.remove("labels");
        }
    } else {
        v["labels"] = labels.clone();
    }
    v["labelFingerprint"] = json!(store::content_fingerprint(&labels));
    Ok(Prepared {
        change: Some(Change::Put { key: key.clone(), value: v, create: false }),
        op_type: "setLabels",
        target: key.clone(),
        target_id: id_of(&old),
        immediate: true,
        deferred: None,
    })
}

// ---- small helpers shared by the per-collection modules ----

/// Sets `field` to `value` when absent (or null).
pub fn default(v: &mut Value, field: &str, value: Value) {
    if v.get(field).is_none_or(Value::is_null) {
        v[field] = value;
    }
}

pub fn str_field<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// 400 unless `field` (when present) is one of `allowed`.
pub fn one_of(v: &Value, field: &str, allowed: &[&str]) -> ApiResult<()> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
        Some(other) => Err(ApiError::invalid_field(
            &format!("resource.{field}"),
            other.as_str().unwrap_or(&other.to_string()),
            &format!("Must be one of [{}].", allowed.join(", ")),
        )),
    }
}

/// An integer field within `lo..=hi` (when present).
pub fn int_in(v: &Value, field: &str, lo: i64, hi: i64) -> ApiResult<()> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(x) => match x.as_i64().or_else(|| x.as_str().and_then(|s| s.parse().ok())) {
            Some(n) if (lo..=hi).contains(&n) => Ok(()),
            _ => Err(ApiError::invalid_field(
                &format!("resource.{field}"),
                &x.to_string(),
                &format!("Must be between {lo} and {hi}."),
            )),
        },
    }
}

/// Normalizes `network` / `subnetwork` (not collections of the fake) to absolute links.
pub fn normalize_networks(ctx: &Ctx, v: &mut Value) {
    let project = ctx.project().to_string();
    if let Some(n) = str_field(v, "network").map(str::to_string) {
        v["network"] = json!(links::normalize_network(&n, &project, false));
    }
    if let Some(n) = str_field(v, "subnetwork").map(str::to_string) {
        v["subnetwork"] = json!(links::normalize_network(&n, &project, true));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_semantics() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1, 2]});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}, "e": [9], "f": "x"}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}, "e": [9], "f": "x"}));
    }
}
