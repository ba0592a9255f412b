//! Reference fields: walking them, normalizing them to absolute self-links, checking that what
//! they name exists, and finding who uses a resource (the in-use graph).
//!
//! The graph is not stored: the referrers of a resource are found by scanning the reference
//! fields of every stored (and every pending) resource. That keeps deletes, updates and
//! `setTarget`/`setUrlMap` trivially consistent with in-use checks, at a cost that is irrelevant
//! at test sizes.

use crate::collections::{Coll, RefSpec, Scope};
use crate::errors::{ApiError, ApiResult};
use crate::links::{self, Key};
use crate::store::State;
use serde_json::Value;

/// Calls `f(field_name, value)` for every string at `path` (see [`RefSpec`]).
pub fn visit<'a>(v: &'a Value, path: &str, f: &mut dyn FnMut(String, &'a str)) {
    visit_inner(v, path, "resource".to_string(), f);
}

fn visit_inner<'a>(v: &'a Value, path: &str, prefix: String, f: &mut dyn FnMut(String, &'a str)) {
    let (seg, rest) = match path.split_once('.') {
        Some((s, r)) => (s, Some(r)),
        None => (path, None),
    };
    let (name, is_array) = match seg.strip_suffix("[]") {
        Some(n) => (n, true),
        None => (seg, false),
    };
    let Some(child) = v.get(name) else { return };
    let field = format!("{prefix}.{name}");
    let mut step = |item: &'a Value, field: String| match rest {
        Some(r) => visit_inner(item, r, field, f),
        None => {
            if let Some(s) = item.as_str() {
                f(field, s)
            }
        }
    };
    if is_array {
        if let Some(items) = child.as_array() {
            for (i, item) in items.iter().enumerate() {
                step(item, format!("{field}[{i}]"));
            }
        }
    } else {
        step(child, field);
    }
}

/// Mutable twin of [`visit`]: replaces every string at `path` with `f(field, value)?`.
pub fn rewrite(v: &mut Value, path: &str, f: &mut dyn FnMut(&str, &str) -> ApiResult<String>) -> ApiResult<()> {
    rewrite_inner(v, path, "resource".to_string(), f)
}

fn rewrite_inner(
    v: &mut Value,
    path: &str,
    prefix: String,
    f: &mut dyn FnMut(&str, &str) -> ApiResult<String>,
) -> ApiResult<()> {
    let (seg, rest) = match path.split_once('.') {
        Some((s, r)) => (s, Some(r)),
        None => (path, None),
    };
    let (name, is_array) = match seg.strip_suffix("[]") {
        Some(n) => (n, true),
        None => (seg, false),
    };
    let Some(child) = v.get_mut(name) else { return Ok(()) };
    let field = format!("{prefix}.{name}");
    let mut step = |item: &mut Value, field: String| -> ApiResult<()> {
        match rest {
            Some(r) => rewrite_inner(item, r, field, f),
            None => {
                if let Some(s) = item.as_str() {
                    let new = f(&field, s)?;
                    *item = Value::String(new);
                }
                Ok(())
            }
        }
    };
    if is_array {
        if let Some(items) = child.as_array_mut() {
            for (i, item) in items.iter_mut().enumerate() {
                step(item, format!("{field}[{i}]"))?;
            }
        }
        Ok(())
    } else {
        step(child, field)
    }
}

/// Normalizes every reference of a resource of `owner` to an absolute self-link and checks it:
/// malformed or of the wrong kind → 400 `invalid`; another region → 400 `invalid`; still being
/// created → 400 `resourceNotReady`; missing → 404 `notFound` naming the referenced resource.
pub fn normalize_and_check(st: &State, owner: &Key, v: &mut Value) -> ApiResult<()> {
    for spec in owner.coll.def().refs {
        rewrite(v, spec.path, &mut |field, text| check_one(st, owner, spec, field, text))?;
    }
    Ok(())
}

fn check_one(st: &State, owner: &Key, spec: &RefSpec, field: &str, text: &str) -> ApiResult<String> {
    let r = links::parse_ref(text, &st.project)
        .ok_or_else(|| ApiError::invalid_field(field, text, "The URL is malformed."))?;
    if !spec.targets.contains(&r.key.coll) {
        return Err(ApiError::invalid_field(
            field,
            text,
            &format!("Expected a reference to a {} resource.", expected_nouns(spec.targets)),
        ));
    }
    if r.project != st.project {
        return Err(ApiError::not_found(&r.key.path(&r.project)));
    }
    same_region(owner, &r.key).map_err(|why| ApiError::invalid_field(field, text, &why))?;
    if !st.resources.contains_key(&r.key) {
        if st.pending_insert(&r.key) {
            return Err(ApiError::not_ready(&r.key.path(&st.project)));
        }
        return Err(ApiError::not_found(&r.key.path(&st.project)));
    }
    Ok(r.key.self_link(&st.project))
}

fn expected_nouns(targets: &[Coll]) -> String {
    let mut nouns: Vec<&str> = targets.iter().map(|c| c.def().noun).collect();
    nouns.dedup();
    nouns.join(" or ")
}

/// A regional resource may only name regional resources of its own region (and zonal ones in
/// that region's zones).
fn same_region(owner: &Key, target: &Key) -> Result<(), String> {
    if owner.coll.def().scope != Scope::Regional {
        return Ok(());
    }
    let target_region = match target.coll.def().scope {
        Scope::Global => return Ok(()),
        Scope::Regional => target.loc.as_str(),
        Scope::Zonal => links::region_of_zone(&target.loc),
    };
    if target_region == owner.loc {
        Ok(())
    } else {
        Err(format!("Resource must be in region '{}' but is in '{target_region}'.", owner.loc))
    }
}

/// Re-checks, at commit time, that every reference of `v` still names a stored resource.
pub fn check_still_exist(st: &State, owner: &Key, v: &Value) -> ApiResult<()> {
    for spec in owner.coll.def().refs {
        let mut missing = None;
        visit(v, spec.path, &mut |_, text| {
            if missing.is_none()
                && let Some(r) = links::parse_ref(text, &st.project)
                && !st.resources.contains_key(&r.key)
            {
                missing = Some(r.key);
            }
        });
        if let Some(k) = missing {
            return Err(ApiError::not_found(&k.path(&st.project)));
        }
    }
    Ok(())
}

/// Every resource (stored, or pending in an unfinished operation) whose reference fields name
/// `target`, as relative paths, sorted.
pub fn referrers(st: &State, target: &Key) -> Vec<String> {
    let link = target.self_link(&st.project);
    let mut out = Vec::new();
    let mut scan = |key: &Key, v: &Value| {
        if key == target {
            return;
        }
        for spec in key.coll.def().refs {
            if !spec.targets.contains(&target.coll) {
                continue;
            }
            let mut hit = false;
            visit(v, spec.path, &mut |_, text| hit |= text == link);
            if hit {
                out.push(key.path(&st.project));
                return;
            }
        }
    };
    for (k, v) in &st.resources {
        scan(k, v);
    }
    for (k, v) in st.pending_puts() {
        scan(k, v);
    }
    out.sort();
    out.dedup();
    out
}

/// 400 `resourceInUseByAnotherResource` when something uses `target`.
pub fn check_not_in_use(st: &State, target: &Key) -> ApiResult<()> {
    match referrers(st, target).first() {
        None => Ok(()),
        Some(user) => Err(ApiError::in_use(target.coll.def().noun, &target.path(&st.project), user)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn visits_nested_arrays_with_field_names() {
        let v = json!({"pathMatchers": [
            {"defaultService": "a", "pathRules": [{"service": "b"}, {"service": "c"}]},
            {"pathRules": [{"service": "d"}]}
        ]});
        let mut seen = Vec::new();
        visit(&v, "pathMatchers[].pathRules[].service", &mut |f, s| seen.push(format!("{f}={s}")));
        assert_eq!(
            seen,
            vec![
                "resource.pathMatchers[0].pathRules[0].service=b",
                "resource.pathMatchers[0].pathRules[1].service=c",
                "resource.pathMatchers[1].pathRules[0].service=d"
            ]
        );
    }

    #[test]
    fn rewrites_in_place() {
        let mut v = json!({"healthChecks": ["x", "y"], "backends": [{"group": "g"}]});
        rewrite(&mut v, "healthChecks[]", &mut |_, s| Ok(format!("/{s}"))).unwrap();
        rewrite(&mut v, "backends[].group", &mut |_, s| Ok(s.to_uppercase())).unwrap();
        assert_eq!(v, json!({"healthChecks": ["/x", "/y"], "backends": [{"group": "G"}]}));
    }
}
