//! Strategic merge patch (what `kubectl apply`/`kubectl patch` send) and the approximation of
//! server-side apply built on it.
//!
//! Lists are merged according to the patch strategy the Go types declare for the fields in use:
//!
//! | field                          | strategic merge patch | server-side apply (listMapKeys) |
//! |--------------------------------|-----------------------|---------------------------------|
//! | `spec.ports` (Service)         | merge key `port`      | `port` + `protocol`             |
//! | `status.conditions`            | merge key `type`      | `type`                          |
//! | `status.addresses` (Node)      | merge key `type`      | `type`                          |
//! | `metadata.finalizers`          | set union             | set                             |
//! | `metadata.ownerReferences`     | merge key `uid`       | `uid`                           |
//! | `*.containers`, `env`          | merge key `name`      | `name`                          |
//! | anything else (ingress, taints, sourceRanges) | replace (atomic) | atomic              |
//!
//! Note `spec.taints` is atomic in the real API (no patch strategy), and `spec.ports` merges on
//! `port` only under strategic merge patch — both faithfully reproduced here.
//! Directives: `$patch: replace|delete|merge`, `$setElementOrder/<f>`,
//! `$deleteFromPrimitiveList/<f>`, `$retainKeys`.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Strategic,
    Apply,
}

#[derive(Debug, Clone, Copy)]
enum ListStrategy {
    Replace,
    Set,
    /// merge keys with a default value for absent keys
    Keyed(&'static [(&'static str, Option<&'static str>)]),
}

fn strategy(path: &str, mode: Mode) -> ListStrategy {
    let last = path.rsplit('.').next().unwrap_or(path);
    match (path, last) {
        ("spec.ports", _) => match mode {
            Mode::Strategic => ListStrategy::Keyed(&[("port", None)]),
            Mode::Apply => ListStrategy::Keyed(&[("port", None), ("protocol", Some("TCP"))]),
        },
        ("status.conditions", _) | ("status.addresses", _) => ListStrategy::Keyed(&[("type", None)]),
        ("metadata.finalizers", _) => ListStrategy::Set,
        ("metadata.ownerReferences", _) => ListStrategy::Keyed(&[("uid", None)]),
        (_, "containers") | (_, "initContainers") | (_, "env") | (_, "volumes") | (_, "volumeMounts") => {
            ListStrategy::Keyed(&[("name", None)])
        }
        _ => ListStrategy::Replace,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn is_directive(k: &str) -> bool {
    k.starts_with('$')
}

/// Removes directives and null map entries from a value that is inserted as a whole.
pub fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter().filter(|(k, v)| !is_directive(k) && !v.is_null()).map(|(k, v)| (k.clone(), clean(v))).collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|e| {
                    !(e.is_object() && e.get("$patch").is_some() && e.as_object().is_some_and(|m| m.len() == 1))
                })
                .map(clean)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn key_of(el: &Value, keys: &[(&str, Option<&str>)]) -> Option<Vec<Value>> {
    keys.iter()
        .map(|(k, default)| match el.get(*k) {
            Some(v) if !v.is_null() => Some(v.clone()),
            _ => default.map(|d| Value::String(d.to_string())),
        })
        .collect()
}

/// Merges `patch` into `target` (both maps at `path`).
pub fn merge(target: &mut Value, patch: &Value, mode: Mode) {
    merge_at(target, patch, "", mode)
}

fn merge_at(target: &mut Value, patch: &Value, path: &str, mode: Mode) {
    let Value::Object(p) = patch else {
        *target = clean(patch);
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = clean(patch);
            return;
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    if let Some(Value::Array(retain)) = p.get("$retainKeys") {
        let keep: Vec<&str> = retain.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if is_directive(k) {
            continue;
        }
        let sub = join(path, k);
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(vm) => {
                if vm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    t.remove(k);
                    continue;
                }
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                merge_at(slot, v, &sub, mode);
            }
            Value::Array(items) => {
                let slot = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(slot, items, &sub, mode);
            }
            other => {
                t.insert(k.clone(), other.clone());
            }
        }
    }
    // list directives that refer to sibling fields
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
            && let (Some(Value::Array(cur)), Value::Array(del)) = (t.get_mut(field), v)
        {
            cur.retain(|x| !del.contains(x));
        }
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$setElementOrder/")
            && let (Some(Value::Array(cur)), Value::Array(order)) = (t.get_mut(field), v)
        {
            let strat = strategy(&join(path, field), mode);
            reorder(cur, order, strat);
        }
    }
}

fn reorder(cur: &mut Vec<Value>, order: &[Value], strat: ListStrategy) {
    let mut rest: Vec<Option<Value>> = std::mem::take(cur).into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(rest.len());
    for o in order {
        let pos = rest.iter().position(|e| {
            e.as_ref().is_some_and(|e| match strat {
                ListStrategy::Keyed(keys) => key_of(e, keys).is_some() && key_of(e, keys) == key_of(o, keys),
                _ => e == o,
            })
        });
        if let Some(i) = pos
            && let Some(e) = rest[i].take()
        {
            out.push(e);
        }
    }
    out.extend(rest.into_iter().flatten());
    *cur = out;
}

fn merge_list(slot: &mut Value, items: &[Value], path: &str, mode: Mode) {
    let replace_directive = items.iter().any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"));
    let strat = strategy(path, mode);
    if replace_directive || matches!(strat, ListStrategy::Replace) || !slot.is_array() {
        *slot = clean(&Value::Array(items.to_vec()));
        return;
    }
    let Value::Array(cur) = slot else { return };
    match strat {
        ListStrategy::Replace => {}
        ListStrategy::Set => {
            for it in items {
                if !cur.contains(it) {
                    cur.push(it.clone());
                }
            }
        }
        ListStrategy::Keyed(keys) => {
            for it in items {
                let Some(k) = key_of(it, keys) else {
                    cur.push(clean(it));
                    continue;
                };
                let pos = cur.iter().position(|e| key_of(e, keys).as_ref() == Some(&k));
                if it.get("$patch").and_then(Value::as_str) == Some("delete") {
                    cur.retain(|e| key_of(e, keys).as_ref() != Some(&k));
                    continue;
                }
                match pos {
                    Some(i) => merge_at(&mut cur[i], it, path, mode),
                    None => cur.push(clean(it)),
                }
            }
        }
    }
}

/// Server-side apply, approximated: fields that the same field manager applied last time but
/// no longer applies are removed from `live` (`prev` is that manager's previous applied
/// configuration), then the applied configuration is merged in with listMapKey semantics.
pub fn apply(live: &mut Value, applied: &Value, prev: Option<&Value>) {
    if let Some(prev) = prev {
        prune(live, prev, applied, "");
    }
    merge_at(live, applied, "", Mode::Apply);
}

fn prune(live: &mut Value, prev: &Value, now: &Value, path: &str) {
    let (Value::Object(l), Value::Object(p)) = (live, prev) else { return };
    for (k, pv) in p {
        let sub = join(path, k);
        let nv = now.get(k);
        match nv {
            None | Some(Value::Null) => {
                if path == "metadata" && (k == "name" || k == "namespace") {
                    continue;
                }
                l.remove(k);
            }
            Some(nv) => {
                let Some(lv) = l.get_mut(k) else { continue };
                match (pv, nv) {
                    (Value::Object(_), Value::Object(_)) => prune(lv, pv, nv, &sub),
                    (Value::Array(pa), Value::Array(na)) => match strategy(&sub, Mode::Apply) {
                        ListStrategy::Set => {
                            if let Value::Array(la) = lv {
                                la.retain(|x| !pa.contains(x) || na.contains(x));
                            }
                        }
                        ListStrategy::Keyed(keys) => {
                            if let Value::Array(la) = lv {
                                let gone: Vec<Vec<Value>> = pa
                                    .iter()
                                    .filter_map(|e| key_of(e, keys))
                                    .filter(|k| !na.iter().any(|n| key_of(n, keys).as_ref() == Some(k)))
                                    .collect();
                                la.retain(|e| key_of(e, keys).is_none_or(|k| !gone.contains(&k)));
                                for e in la.iter_mut() {
                                    let Some(k) = key_of(e, keys) else { continue };
                                    let pe = pa.iter().find(|x| key_of(x, keys).as_ref() == Some(&k));
                                    let ne = na.iter().find(|x| key_of(x, keys).as_ref() == Some(&k));
                                    if let (Some(pe), Some(ne)) = (pe, ne) {
                                        prune(e, pe, ne, &sub);
                                    }
                                }
                            }
                        }
                        ListStrategy::Replace => {}
                    },
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_merge_by_port_and_directives() {
        let mut svc = json!({"metadata": {"finalizers": ["a"], "labels": {"x": "1"}},
            "spec": {"ports": [{"port": 80, "nodePort": 30001}, {"port": 443, "nodePort": 30002}]}});
        merge(
            &mut svc,
            &json!({"metadata": {"finalizers": ["b"], "labels": {"x": null}},
                "$setElementOrder/ports": [{"port": 443}, {"port": 80}],
                "spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}],
                         "ports": [{"port": 80, "name": "http"}]}}),
            Mode::Strategic,
        );
        assert_eq!(svc["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(svc["metadata"]["labels"], json!({}));
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 443, "nodePort": 30002}, {"port": 80, "nodePort": 30001, "name": "http"}])
        );
        merge(&mut svc, &json!({"spec": {"ports": [{"port": 443, "$patch": "delete"}]}}), Mode::Strategic);
        assert_eq!(svc["spec"]["ports"], json!([{"port": 80, "nodePort": 30001, "name": "http"}]));
        merge(&mut svc, &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}), Mode::Strategic);
        assert_eq!(svc["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn conditions_by_type_ingress_atomic() {
        let mut s = json!({"status": {"conditions": [{"type": "A", "status": "True"}],
            "loadBalancer": {"ingress": [{"ip": "1.1.1.1"}, {"ip": "2.2.2.2"}]}}});
        merge(
            &mut s,
            &json!({"status": {"conditions": [{"type": "B", "status": "False"}, {"type": "A", "status": "False"}],
                "loadBalancer": {"ingress": [{"ip": "3.3.3.3"}]}}}),
            Mode::Strategic,
        );
        assert_eq!(
            s["status"]["conditions"],
            json!([{"type": "A", "status": "False"}, {"type": "B", "status": "False"}])
        );
        assert_eq!(s["status"]["loadBalancer"]["ingress"], json!([{"ip": "3.3.3.3"}]));
    }

    #[test]
    fn apply_prunes_what_the_manager_dropped() {
        let mut live = json!({"status": {"conditions": [{"type": "A"}, {"type": "B"}, {"type": "C"}],
            "loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}}});
        let prev = json!({"status": {"conditions": [{"type": "A"}, {"type": "B"}], "loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]}}});
        let now = json!({"status": {"conditions": [{"type": "A", "status": "True"}]}});
        apply(&mut live, &now, Some(&prev));
        assert_eq!(live, json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "C"}]}}));
    }
}
