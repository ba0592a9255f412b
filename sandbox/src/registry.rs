//! Verbs on stored objects with the apiserver's semantics: create (generateName, uid,
//! timestamps, AlreadyExists), update and the four patch types (status subresource kept apart,
//! stale-resourceVersion Conflict, no-op writes that change nothing — not even the
//! resourceVersion), graceful deletion with finalizers, and paginated, filtered lists.
//!
//! What differs per kind (defaulting, admission, validation, allocation) is behind the kind's
//! hooks (`kinds/`, named in the resource table); this module never matches on a kind.
//!
//! Every function runs under the store's write (or read) lock and does no I/O.

use crate::kinds::{NameRule, events};
use crate::names;
use crate::patch::{PatchType, json_patch, merge, strategic};
use crate::resources::{self, ResourceDef, View};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult, FieldError, q};
use crate::store::{ChangeKind, Inner, Key};
use crate::time;
use serde_json::{Map, Value, json};
use std::ops::Bound;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Main,
    Status,
}

fn meta(v: &Value) -> Option<&Map<String, Value>> {
    v.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(v: &'a Value, k: &str) -> &'a str {
    meta(v).and_then(|m| m.get(k)).and_then(Value::as_str).unwrap_or_default()
}

fn meta_mut(v: &mut Value) -> ApiResult<&mut Map<String, Value>> {
    let obj = v.as_object_mut().ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
    let m = obj.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().ok_or_else(|| ApiError::internal("metadata is not an object"))
}

fn finalizers(v: &Value) -> Vec<String> {
    meta(v)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn is_deleting(v: &Value) -> bool {
    meta(v).and_then(|m| m.get("deletionTimestamp")).is_some_and(|d| !d.is_null())
}

fn key(ns: &str, name: &str) -> Key {
    (ns.to_string(), name.to_string())
}

fn native(def: &'static ResourceDef) -> &'static ResourceDef {
    resources::by_storage_native(def.storage).unwrap_or(def)
}

/// Stored shape -> served shape.
pub fn view_out(def: &ResourceDef, obj: &Arc<Value>) -> Arc<Value> {
    match def.view {
        View::Native => obj.clone(),
        View::CoreEvent => Arc::new(events::to_core(obj)),
    }
}

fn view_in(def: &ResourceDef, obj: Value) -> Value {
    match def.view {
        View::Native => obj,
        View::CoreEvent => events::from_core(&obj),
    }
}

fn uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:x}{:02x}-{:x}{:x}{:02x}-{}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6] & 0x0f,
        b[7],
        8 | (b[8] & 0x3),
        b[8] >> 4,
        b[9],
        b[10..16].iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

fn validate_name(def: &ResourceDef, name: &str) -> ApiResult<()> {
    let ok = match def.hooks.name_rule() {
        NameRule::OwnHook => return Ok(()),
        NameRule::Label => names::is_dns1123_label(name),
        NameRule::Subdomain => names::is_dns1123_subdomain(name),
    };
    if ok {
        return Ok(());
    }
    Err(ApiError::invalid(
        def.group,
        def.kind,
        name,
        &[FieldError::invalid(
            "metadata.name",
            q(name),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )],
    ))
}

fn check_namespace(inner: &Inner, ns: &str) -> ApiResult<()> {
    match inner.get("namespaces", "", ns) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if is_deleting(&n) => Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ))),
        Some(_) => Ok(()),
    }
}

/// POST. `path_ns` is "" for cluster-scoped resources.
pub fn create(inner: &mut Inner, def: &'static ResourceDef, path_ns: &str, mut body: Value) -> ApiResult<Arc<Value>> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    body = view_in(def, body);
    let store_def = native(def);
    body["apiVersion"] = json!(store_def.api_version());
    body["kind"] = json!(store_def.kind);
    let m = meta_mut(&mut body)?;
    if def.namespaced {
        let body_ns = m.get("namespace").and_then(Value::as_str).unwrap_or_default();
        if !body_ns.is_empty() && body_ns != path_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        m.insert("namespace".into(), json!(path_ns));
    } else {
        m.remove("namespace");
    }
    let mut name = m.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let generate = m.get("generateName").and_then(Value::as_str).unwrap_or_default().to_string();
    if name.is_empty() {
        if generate.is_empty() {
            return Err(ApiError::invalid(
                def.group,
                def.kind,
                "",
                &[FieldError::required("metadata.name", "name or generateName is required")],
            ));
        }
        for _ in 0..8 {
            name = format!("{generate}{}", random_suffix());
            if inner.get(def.storage, path_ns, &name).is_none() {
                break;
            }
        }
        m.insert("name".into(), json!(name));
    }
    for k in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
        "generation",
    ] {
        m.remove(k);
    }
    m.insert("uid".into(), json!(uid()));
    m.insert("creationTimestamp".into(), json!(time::now_rfc3339()));
    if def.generation {
        m.insert("generation".into(), json!(1));
    }
    validate_name(def, &name)?;
    if def.namespaced {
        check_namespace(inner, path_ns)?;
    }
    if inner.get(def.storage, path_ns, &name).is_some() {
        return Err(ApiError::already_exists(def.group, def.plural, &name));
    }
    def.hooks.create(inner, &mut body)?;
    let rv = inner.next_rv();
    meta_mut(&mut body)?.insert("resourceVersion".into(), json!(rv.to_string()));
    let obj = Arc::new(body);
    inner.record(def.storage, key(path_ns, &name), ChangeKind::Added, obj.clone(), None);
    Ok(obj)
}

/// The shared tail of PUT and PATCH: keep what the client may not change, apply resource
/// hooks, skip no-op writes, bump generation on spec changes, finish deletions.
fn finish_update(
    inner: &mut Inner,
    def: &'static ResourceDef,
    sub: Sub,
    old: &Arc<Value>,
    mut new: Value,
) -> ApiResult<Arc<Value>> {
    if !new.is_object() {
        return Err(ApiError::bad_request("the object must be a JSON object"));
    }
    let store_def = native(def);
    new["apiVersion"] = json!(store_def.api_version());
    new["kind"] = json!(store_def.kind);
    let old_meta = meta(old).cloned().unwrap_or_default();
    {
        let m = meta_mut(&mut new)?;
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(k) {
                Some(v) => {
                    m.insert(k.into(), v.clone());
                }
                None => {
                    m.remove(k);
                }
            }
        }
        m.remove("managedFields");
        m.remove("selfLink");
    }
    match sub {
        Sub::Status => {
            let status = new.get("status").cloned();
            new = (**old).clone();
            match status {
                Some(s) if !s.is_null() => new["status"] = s,
                _ => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
        }
        Sub::Main if def.status_subresource => {
            if let Some(o) = new.as_object_mut() {
                match old.get("status") {
                    Some(s) => {
                        o.insert("status".into(), s.clone());
                    }
                    None => {
                        o.remove("status");
                    }
                }
            }
        }
        Sub::Main => {}
    }
    let name = meta_str(old, "name").to_string();
    let ns = meta_str(old, "namespace").to_string();
    if is_deleting(old) {
        let before = finalizers(old);
        let added: Vec<String> = finalizers(&new).into_iter().filter(|f| !before.contains(f)).collect();
        if !added.is_empty() {
            return Err(ApiError::invalid(
                store_def.group,
                store_def.kind,
                &name,
                &[FieldError::forbidden(
                    "metadata.finalizers",
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                )],
            ));
        }
    }
    match sub {
        Sub::Main => def.hooks.update(inner, old, &mut new)?,
        Sub::Status => def.hooks.update_status(inner, old, &mut new)?,
    }
    if new == **old {
        return Ok(old.clone());
    }
    if def.generation && new.get("spec") != old.get("spec") {
        let g = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        meta_mut(&mut new)?.insert("generation".into(), json!(g));
    }
    if is_deleting(&new) && finalizers(&new).is_empty() {
        return Ok(remove(inner, def.storage, &ns, &name, new, Some(old.clone())));
    }
    let rv = inner.next_rv();
    meta_mut(&mut new)?.insert("resourceVersion".into(), json!(rv.to_string()));
    let obj = Arc::new(new);
    inner.record(def.storage, key(&ns, &name), ChangeKind::Modified, obj.clone(), Some(old.clone()));
    Ok(obj)
}

/// Removes an object for good: DELETED event, allocations released.
fn remove(
    inner: &mut Inner,
    storage: &'static str,
    ns: &str,
    name: &str,
    mut last: Value,
    prev: Option<Arc<Value>>,
) -> Arc<Value> {
    let rv = inner.next_rv();
    if let Some(Value::Object(m)) = last.get_mut("metadata") {
        m.insert("resourceVersion".into(), json!(rv.to_string()));
    }
    if let Some(def) = resources::by_storage_native(storage) {
        def.hooks.removed(inner, &last);
    }
    inner.applied.remove(&(storage, ns.to_string(), name.to_string()));
    let obj = Arc::new(last);
    inner.record(storage, key(ns, name), ChangeKind::Deleted, obj.clone(), prev);
    if !ns.is_empty() {
        maybe_finish_namespace(inner, ns);
    }
    obj
}

fn namespace_empty(inner: &Inner, ns: &str) -> bool {
    inner.tables.iter().all(|(_, t)| {
        t.objects.range((Bound::Included(key(ns, "")), Bound::Unbounded)).next().is_none_or(|((n, _), _)| n != ns)
    })
}

fn maybe_finish_namespace(inner: &mut Inner, ns: &str) {
    if let Some(n) = inner.get("namespaces", "", ns)
        && is_deleting(&n)
        && namespace_empty(inner, ns)
    {
        remove(inner, "namespaces", "", ns, (*n).clone(), None);
    }
}

/// PUT (main resource or status).
pub fn update(
    inner: &mut Inner,
    def: &'static ResourceDef,
    ns: &str,
    name: &str,
    sub: Sub,
    body: Value,
) -> ApiResult<Arc<Value>> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let body_name = meta_str(&body, "name");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let old = inner.get(def.storage, ns, name).ok_or_else(|| ApiError::not_found(def.group, def.plural, name))?;
    let rv = meta_str(&body, "resourceVersion");
    if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
        return Err(ApiError::stale(def.group, def.plural, name));
    }
    let new = view_in(def, body);
    finish_update(inner, def, sub, &old, new)
}

/// Query parameters that affect a PATCH.
#[derive(Debug, Default, Clone)]
pub struct PatchOptions {
    pub field_manager: Option<String>,
}

pub fn parse_body(body: &[u8], yaml_ok: bool) -> ApiResult<Value> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(e) if yaml_ok => serde_yaml::from_slice::<Value>(body)
            .map_err(|y| ApiError::bad_request(format!("error decoding YAML: {y} (as JSON: {e})"))),
        Err(e) => Err(ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

/// PATCH; returns the object and whether it was created (server-side apply of a new object).
#[allow(clippy::too_many_arguments)]
pub fn patch(
    inner: &mut Inner,
    def: &'static ResourceDef,
    ns: &str,
    name: &str,
    sub: Sub,
    ptype: PatchType,
    body: &[u8],
    opts: &PatchOptions,
) -> ApiResult<(Arc<Value>, bool)> {
    let patch = parse_body(body, ptype == PatchType::Apply)?;
    let manager_key = || {
        let sub = if sub == Sub::Status { "status" } else { "" };
        format!("{sub}/{}", opts.field_manager.clone().unwrap_or_default())
    };
    if ptype == PatchType::Apply {
        if opts.field_manager.as_deref().unwrap_or_default().is_empty() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        let applied_name = meta_str(&patch, "name");
        if applied_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({applied_name}) does not match the name on the URL ({name})"
            )));
        }
    } else if ptype != PatchType::Json && !patch.is_object() {
        return Err(ApiError::bad_request("the patch must be a JSON object"));
    }
    let Some(old) = inner.get(def.storage, ns, name) else {
        if ptype == PatchType::Apply && sub == Sub::Main {
            let obj = create(inner, def, ns, strategic::clean(&patch))?;
            inner
                .applied
                .entry((def.storage, ns.to_string(), name.to_string()))
                .or_default()
                .insert(manager_key(), patch);
            return Ok((obj, true));
        }
        return Err(ApiError::not_found(def.group, def.plural, name));
    };
    let mut cur: Value = (*view_out(def, &old)).clone();
    match ptype {
        PatchType::Json => json_patch::apply(&mut cur, &patch).map_err(|e| ApiError::new(422, "Invalid", e.0))?,
        PatchType::Merge => merge::apply(&mut cur, &patch),
        PatchType::Strategic => strategic::merge(&mut cur, &patch, strategic::Mode::Strategic),
        PatchType::Apply => {
            let prev =
                inner.applied.get(&(def.storage, ns.to_string(), name.to_string())).and_then(|m| m.get(&manager_key()));
            strategic::apply(&mut cur, &patch, prev);
        }
    }
    let rv = meta_str(&cur, "resourceVersion");
    if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
        return Err(ApiError::stale(def.group, def.plural, name));
    }
    let new = view_in(def, cur);
    let obj = finish_update(inner, def, sub, &old, new)?;
    if ptype == PatchType::Apply {
        inner.applied.entry((def.storage, ns.to_string(), name.to_string())).or_default().insert(manager_key(), patch);
    }
    Ok((obj, false))
}

pub enum Deleted {
    /// Removed now; the final state.
    Gone(Arc<Value>),
    /// Finalizers pending: deletionTimestamp set, object kept.
    Pending(Arc<Value>),
}

/// DELETE with optional DeleteOptions body (preconditions honoured).
pub fn delete(
    inner: &mut Inner,
    def: &'static ResourceDef,
    ns: &str,
    name: &str,
    opts: Option<&Value>,
) -> ApiResult<Deleted> {
    let old = inner.get(def.storage, ns, name).ok_or_else(|| ApiError::not_found(def.group, def.plural, name))?;
    if let Some(pre) = opts.and_then(|o| o.get("preconditions")) {
        let uid = pre.get("uid").and_then(Value::as_str).unwrap_or_default();
        if !uid.is_empty() && uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict(
                def.group,
                def.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        let rv = pre.get("resourceVersion").and_then(Value::as_str).unwrap_or_default();
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(
                def.group,
                def.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion")
                ),
            ));
        }
    }
    if def.storage == "namespaces" {
        return Ok(delete_namespace(inner, name, old));
    }
    if !finalizers(&old).is_empty() {
        if is_deleting(&old) {
            return Ok(Deleted::Pending(view_out(def, &old)));
        }
        let mut new = (*old).clone();
        let rv = inner.next_rv();
        if let Some(Value::Object(m)) = new.get_mut("metadata") {
            m.insert("deletionTimestamp".into(), json!(time::now_rfc3339()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            m.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        let obj = Arc::new(new);
        inner.record(def.storage, key(ns, name), ChangeKind::Modified, obj.clone(), Some(old));
        return Ok(Deleted::Pending(view_out(def, &obj)));
    }
    let gone = remove(inner, def.storage, ns, name, (*old).clone(), None);
    Ok(Deleted::Gone(view_out(def, &gone)))
}

fn delete_namespace(inner: &mut Inner, ns: &str, old: Arc<Value>) -> Deleted {
    if !is_deleting(&old) {
        let mut new = (*old).clone();
        let rv = inner.next_rv();
        if let Some(Value::Object(m)) = new.get_mut("metadata") {
            m.insert("deletionTimestamp".into(), json!(time::now_rfc3339()));
            m.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        new["status"] = json!({ "phase": "Terminating" });
        let obj = Arc::new(new);
        inner.record("namespaces", key("", ns), ChangeKind::Modified, obj, Some(old.clone()));
    }
    // delete the contents the way the namespace controller would
    let mut victims = Vec::new();
    for def in resources::RESOURCES.iter().filter(|d| d.namespaced && d.view == View::Native) {
        if let Some(t) = inner.table(def.storage) {
            for ((n, name), _) in t.objects.range((Bound::Included(key(ns, "")), Bound::Unbounded)) {
                if n != ns {
                    break;
                }
                victims.push((def, name.clone()));
            }
        }
    }
    victims.dedup_by(|a, b| a.0.storage == b.0.storage && a.1 == b.1);
    for (def, name) in victims {
        let _ = delete(inner, def, ns, &name, None);
    }
    maybe_finish_namespace(inner, ns);
    match inner.get("namespaces", "", ns) {
        Some(n) => Deleted::Pending(n),
        None => Deleted::Gone(old),
    }
}

pub fn get(inner: &Inner, def: &'static ResourceDef, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
    inner
        .get(def.storage, ns, name)
        .map(|o| view_out(def, &o))
        .ok_or_else(|| ApiError::not_found(def.group, def.plural, name))
}

pub struct ListQuery<'a> {
    pub ns: Option<&'a str>,
    pub labels: &'a LabelSelector,
    pub fields: &'a FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<&'a str>,
}

pub struct ListResult {
    pub items: Vec<Arc<Value>>,
    pub rv: u64,
    pub continue_token: Option<String>,
}

fn encode_continue(rv: u64, k: &Key) -> String {
    let raw = format!("{rv}\u{0}{}\u{0}{}", k.0, k.1);
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(tok: &str) -> Option<(u64, Key)> {
    if !tok.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..tok.len()).step_by(2).map(|i| u8::from_str_radix(tok.get(i..i + 2)?, 16).ok()).collect();
    let s = String::from_utf8(bytes?).ok()?;
    let mut it = s.split('\u{0}');
    let rv = it.next()?.parse().ok()?;
    Some((rv, (it.next()?.to_string(), it.next()?.to_string())))
}

/// Does this (served-shape) object pass the selectors?
pub fn matches(obj: &Value, labels: &LabelSelector, fields: &FieldSelector) -> bool {
    labels.matches(obj) && fields.matches(obj)
}

pub fn list(inner: &Inner, def: &'static ResourceDef, q: &ListQuery) -> ApiResult<ListResult> {
    let mut rv = inner.rv;
    let Some(t) = inner.table(def.storage) else {
        return Ok(ListResult { items: Vec::new(), rv, continue_token: None });
    };
    let mut start: Bound<Key> = match q.ns {
        Some(ns) if def.namespaced => Bound::Included(key(ns, "")),
        _ => Bound::Unbounded,
    };
    if let Some(tok) = q.continue_token.filter(|t| !t.is_empty()) {
        let (trv, k) = decode_continue(tok).ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
        rv = trv;
        start = Bound::Excluded(k);
    }
    let ns_filter = q.ns.filter(|_| def.namespaced);
    // point lookup for `metadata.name=X` in one namespace (kubectl wait/delete do this)
    if let (Some(name), Some(ns)) = (q.fields.exact_name(), ns_filter.or(if def.namespaced { None } else { Some("") }))
    {
        let items = t
            .objects
            .get(&key(ns, name))
            .map(|o| view_out(def, o))
            .filter(|o| matches(o, q.labels, q.fields))
            .into_iter()
            .collect();
        return Ok(ListResult { items, rv, continue_token: None });
    }
    let limit = q.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut last: Option<&Key> = None;
    let mut more = false;
    for (k, o) in t.objects.range((start, Bound::Unbounded)) {
        if let Some(ns) = ns_filter
            && k.0 != ns
        {
            break;
        }
        let view = view_out(def, o);
        if !matches(&view, q.labels, q.fields) {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(view);
        last = Some(k);
    }
    let continue_token = if more { last.map(|k| encode_continue(rv, k)) } else { None };
    Ok(ListResult { items, rv, continue_token })
}

/// The namespaces a fresh cluster has.
pub fn bootstrap(inner: &mut Inner) {
    if let Some(def) = resources::find("", "v1", "namespaces") {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = create(inner, def, "", json!({ "metadata": { "name": ns } }));
        }
    }
}
