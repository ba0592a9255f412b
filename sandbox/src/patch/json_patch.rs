//! RFC 6902 JSON Patch with the apiserver's (evanphx/json-patch) semantics.
//!
//! Written by hand because of one deliberate deviation from the RFC that clients depend on:
//! `test` of a path whose parent exists but whose key is absent SUCCEEDS when the expected value
//! is `null`. kube-runtime's `finalizer()` sends `test /metadata/finalizers == null` before adding
//! the first finalizer; a strict RFC implementation would reject it forever.

use serde_json::Value;

#[derive(Debug)]
pub struct PatchError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, PatchError> {
    Err(PatchError(msg.into()))
}

fn parse_pointer(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return err(format!("invalid JSON pointer {path:?}"));
    };
    Ok(rest.split('/').map(|s| s.replace("~1", "/").replace("~0", "~")).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, tokens: &[String]) -> Option<&'a mut Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => {
                let i: usize = t.parse().ok()?;
                a.get_mut(i)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

fn get<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    let mut cur = doc;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let tokens = parse_pointer(path)?;
    let Some((last, parent)) = tokens.split_last() else {
        *doc = value;
        return Ok(());
    };
    let Some(p) = parent_mut(doc, parent) else {
        return err(format!("add operation does not apply: doc is missing path: {path:?}"));
    };
    match p {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
                return Ok(());
            }
            match last.parse::<usize>() {
                Ok(i) if i <= a.len() => {
                    a.insert(i, value);
                    Ok(())
                }
                _ => err(format!("add operation does not apply: index out of bounds: {path:?}")),
            }
        }
        _ => err(format!("add operation does not apply: doc is missing path: {path:?}")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let tokens = parse_pointer(path)?;
    let Some((last, parent)) = tokens.split_last() else {
        return err("remove operation does not apply: cannot remove the root");
    };
    let missing = || PatchError(format!("remove operation does not apply: doc is missing path: {path:?}"));
    match parent_mut(doc, parent).ok_or_else(missing)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Ok(a.remove(i)),
            _ => Err(missing()),
        },
        _ => Err(missing()),
    }
}

/// Applies a JSON Patch document (an array of operations) to `doc` in place.
pub fn apply(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let Some(ops) = patch.as_array() else {
        return err("json patch must be an array of operations");
    };
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op.get("path").and_then(Value::as_str);
        let Some(path) = path else {
            return err(format!("operation {kind:?} is missing path"));
        };
        let value = || op.get("value").cloned().ok_or_else(|| PatchError(format!("{kind} operation is missing value")));
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| PatchError(format!("{kind} operation is missing from")))
        };
        match kind {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                let tokens = parse_pointer(path)?;
                if tokens.is_empty() {
                    *doc = value()?;
                    continue;
                }
                if get(doc, &tokens).is_none() {
                    return err(format!("replace operation does not apply: doc is missing key: {path}"));
                }
                let v = value()?;
                match parent_mut(doc, &tokens).ok_or_else(|| PatchError(format!("missing path {path}"))) {
                    Ok(slot) => *slot = v,
                    Err(e) => return Err(e),
                }
            }
            "move" => {
                let from = from()?;
                if path.starts_with(&format!("{from}/")) {
                    return err("move operation cannot move a value into one of its children");
                }
                let v = remove(doc, from)?;
                add(doc, path, v)?;
            }
            "copy" => {
                let v = get(doc, &parse_pointer(from()?)?)
                    .cloned()
                    .ok_or_else(|| PatchError("copy operation does not apply: doc is missing from path".into()))?;
                add(doc, path, v)?;
            }
            "test" => {
                let tokens = parse_pointer(path)?;
                let want = op.get("value").unwrap_or(&Value::Null);
                let (parent, last) = match tokens.split_last() {
                    Some((l, p)) => (get(doc, p), Some(l)),
                    None => (Some(&*doc), None),
                };
                let Some(parent) = parent else {
                    return err(format!("test operation does not apply: is missing path: {path}"));
                };
                let got = match last {
                    None => Some(parent),
                    Some(l) => match parent {
                        Value::Object(m) => m.get(l),
                        Value::Array(a) => l.parse::<usize>().ok().and_then(|i| a.get(i)),
                        _ => None,
                    },
                };
                let ok = match got {
                    None | Some(Value::Null) => want.is_null(),
                    Some(v) => v == want,
                };
                if !ok {
                    return err(format!("testing value {path} failed"));
                }
            }
            other => return err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_null_on_missing_key_succeeds() {
        let mut doc = json!({"metadata": {"name": "a"}});
        let p = json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}
        ]);
        apply(&mut doc, &p).unwrap();
        assert_eq!(doc["metadata"]["finalizers"], json!(["x"]));
        // now the test with null fails
        assert!(apply(&mut doc, &json!([{"op": "test", "path": "/metadata/finalizers", "value": null}])).is_err());
        // missing parent fails
        assert!(apply(&mut doc, &json!([{"op": "test", "path": "/nope/x", "value": null}])).is_err());
    }

    #[test]
    fn ops() {
        let mut doc = json!({"a": [1, 2], "b": {"c": 1}});
        apply(
            &mut doc,
            &json!([
                {"op": "add", "path": "/a/-", "value": 3},
                {"op": "add", "path": "/a/0", "value": 0},
                {"op": "remove", "path": "/a/1"},
                {"op": "replace", "path": "/b/c", "value": 2},
                {"op": "copy", "from": "/b", "path": "/d"},
                {"op": "move", "from": "/d", "path": "/e"},
                {"op": "test", "path": "/e/c", "value": 2}
            ]),
        )
        .unwrap();
        assert_eq!(doc, json!({"a": [0, 2, 3], "b": {"c": 2}, "e": {"c": 2}}));
        assert!(apply(&mut doc, &json!([{"op": "replace", "path": "/zz", "value": 1}])).is_err());
        assert!(apply(&mut doc, &json!([{"op": "remove", "path": "/zz"}])).is_err());
    }
}
