//! RFC 7386 JSON Merge Patch: objects merge recursively, `null` deletes, everything else
//! (arrays included) replaces.

use serde_json::Value;

pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                apply(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1]});
        super::apply(&mut t, &json!({"a": "z", "c": {"f": null}, "l": [2], "n": {"x": null, "y": 1}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "l": [2], "n": {"y": 1}}));
    }
}
