//! Secrets, as the apiserver handles them on every write:
//!
//! - `data` values are base64 (decoded by Go's JSON decoder: a bad value is a 400 before any
//!   validation, with Go's error text);
//! - `stringData` is write-only: merged into `data` (base64-encoded, winning over a `data` key of
//!   the same name) and never stored or returned — the v1→internal conversion does this;
//! - `type` defaults to `Opaque` and is immutable; `immutable: true` freezes `data`;
//! - `ValidateSecret`: data keys, the 1 MiB total, and the keys each well-known type requires
//!   (`kubernetes.io/tls` needs `tls.crt` and `tls.key`).
//!
//! A TLS-terminating controller depends on all of it: it watches `type=kubernetes.io/tls` and
//! trusts that such a Secret has both keys.

mod base64;

use super::Kind;
use crate::names;
use crate::status::{ApiError, ApiResult, FieldError, q};
use crate::store::Inner;
use serde_json::{Map, Value, json};

pub const TYPE_OPAQUE: &str = "Opaque";
pub const TYPE_TLS: &str = "kubernetes.io/tls";
const MAX_SECRET_SIZE: usize = 1024 * 1024;
const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";

pub struct Secrets;

impl Kind for Secrets {
    fn create(&self, _: &mut Inner, secret: &mut Value) -> ApiResult<()> {
        prepare(secret, None)
    }

    fn update(&self, _: &mut Inner, old: &Value, new: &mut Value) -> ApiResult<()> {
        prepare(new, Some(old))
    }
}

fn prepare(secret: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let sizes = decode_and_merge(secret)?;
    let obj = secret.as_object_mut().ok_or_else(|| ApiError::bad_request("the object must be a JSON object"))?;
    if obj.get("type").and_then(Value::as_str).unwrap_or_default().is_empty() {
        obj.insert("type".into(), json!(TYPE_OPAQUE));
    }
    let mut errs = validate(secret, &sizes);
    if let Some(old) = old {
        validate_update(old, secret, &mut errs);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        let name = secret.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        Err(ApiError::invalid("", "Secret", name, &errs))
    }
}

/// The decode error the apiserver answers before validation.
fn undecodable(why: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Secret in version \"v1\" cannot be handled as a Secret: {why}"))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `data` is base64, merges `stringData` into it; returns each key's decoded size.
fn decode_and_merge(secret: &mut Value) -> ApiResult<Vec<(String, usize)>> {
    let Some(obj) = secret.as_object_mut() else { return Ok(Vec::new()) };
    let mut data = match obj.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(undecodable(format!(
                "json: cannot unmarshal {} into Go struct field Secret.data of type map[string][]uint8",
                json_type(&other)
            )));
        }
    };
    let mut sizes = Vec::with_capacity(data.len());
    for (k, v) in &data {
        let n = match v {
            Value::Null => 0,
            Value::String(s) => base64::decode(s.as_bytes())
                .map_err(|at| undecodable(format!("illegal base64 data at input byte {at}")))?
                .len(),
            other => {
                return Err(undecodable(format!(
                    "json: cannot unmarshal {} into Go struct field Secret.data of type []uint8",
                    json_type(other)
                )));
            }
        };
        sizes.push((k.clone(), n));
    }
    match obj.remove("stringData") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let s = match v {
                    Value::Null => String::new(),
                    Value::String(s) => s,
                    other => {
                        return Err(undecodable(format!(
                            "json: cannot unmarshal {} into Go struct field Secret.stringData of type string",
                            json_type(&other)
                        )));
                    }
                };
                sizes.retain(|(key, _)| *key != k);
                sizes.push((k.clone(), s.len()));
                data.insert(k, json!(base64::encode(s.as_bytes())));
            }
        }
        Some(other) => {
            return Err(undecodable(format!(
                "json: cannot unmarshal {} into Go struct field Secret.stringData of type map[string]string",
                json_type(&other)
            )));
        }
    }
    // an empty map is omitted on the wire (`omitempty`), so it is not stored either
    if !data.is_empty() {
        obj.insert("data".into(), Value::Object(data));
    }
    Ok(sizes)
}

/// `ValidateSecret` (after defaulting and the stringData merge).
fn validate(secret: &Value, sizes: &[(String, usize)]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, _) in sizes {
        for msg in names::config_map_key_errors(key) {
            errs.push(FieldError::invalid(format!("data[{key}]"), q(key), msg));
        }
    }
    if sizes.iter().map(|(_, n)| n).sum::<usize>() > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let has = |k: &str| sizes.iter().any(|(key, _)| key == k);
    let non_empty = |k: &str| sizes.iter().any(|(key, n)| key == k && *n > 0);
    match secret.get("type").and_then(Value::as_str).unwrap_or_default() {
        TYPE_TLS => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    errs.push(FieldError::required(format!("data[{k}]"), ""));
                }
            }
        }
        "kubernetes.io/service-account-token" => {
            let annotated = secret
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty());
            if !annotated {
                errs.push(FieldError::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
            }
        }
        "kubernetes.io/dockercfg" if !has(".dockercfg") => errs.push(FieldError::required("data[.dockercfg]", "")),
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => {
            errs.push(FieldError::required("data[.dockerconfigjson]", ""))
        }
        // the odd field paths are the apiserver's own
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required("data[%s][username]", ""));
            errs.push(FieldError::required("data[%s][password]", ""));
        }
        "kubernetes.io/ssh-auth" if !non_empty("ssh-privatekey") => {
            errs.push(FieldError::required("data[%s][ssh-privatekey]", ""))
        }
        _ => {}
    }
    errs
}

/// `ValidateSecretUpdate`: `type` is immutable; `immutable: true` freezes itself and `data`.
fn validate_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    let ty = |s: &Value| s.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    if ty(old) != ty(new) {
        errs.push(FieldError::invalid("type", q(&ty(new)), "field is immutable"));
    }
    let frozen = |s: &Value| s.get("immutable").and_then(Value::as_bool) == Some(true);
    if frozen(old) {
        if !frozen(new) {
            errs.push(FieldError::forbidden("immutable", IMMUTABLE_SET));
        }
        if old.get("data") != new.get("data") {
            errs.push(FieldError::forbidden("data", IMMUTABLE_SET));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(v: Value) -> ApiResult<Value> {
        let mut v = v;
        prepare(&mut v, None).map(|()| v)
    }

    #[test]
    fn string_data_merges_and_type_defaults() {
        let s = prepared(json!({"metadata": {"name": "s"}, "data": {"a": "YQ==", "b": "Yg=="}, "stringData": {"b": "B", "c": "see"}}))
            .unwrap();
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], json!({"a": "YQ==", "b": "Qg==", "c": "c2Vl"}));
        assert!(s.get("stringData").is_none());
        let e = prepared(json!({"metadata": {"name": "s"}, "data": {"a": "YQ"}})).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (400, "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 0")
        );
        let e = prepared(json!({"metadata": {"name": "s"}, "data": {"a": 1}})).unwrap_err();
        assert_eq!(e.code, 400, "{}", e.message);
    }

    #[test]
    fn rules_per_type_and_update() {
        let e = prepared(json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}}))
            .unwrap_err();
        assert_eq!(e.message, "Secret \"t\" is invalid: data[tls.key]: Required value");
        let e = prepared(json!({"metadata": {"name": "k"}, "stringData": {"a/b": "x", "..c": "y"}})).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(e.message.contains("data[a/b]: Invalid value: \"a/b\": a valid config key"), "{}", e.message);
        assert!(e.message.contains("data[..c]: Invalid value: \"..c\": must not start with '..'"), "{}", e.message);
        let big = "x".repeat(MAX_SECRET_SIZE + 1);
        let e = prepared(json!({"metadata": {"name": "b"}, "stringData": {"big": big}})).unwrap_err();
        assert!(e.message.contains("data: Too long"), "{}", e.message);

        let old = prepared(json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "immutable": true,
            "stringData": {"tls.crt": "c", "tls.key": "k"}}))
        .unwrap();
        let mut new = old.clone();
        new["type"] = json!("Opaque");
        new["data"]["tls.crt"] = json!("eA==");
        let e = prepare(&mut new, Some(&old)).unwrap_err();
        assert!(e.message.contains("type: Invalid value: \"Opaque\": field is immutable"), "{}", e.message);
        assert!(e.message.contains("data: Forbidden: field is immutable when `immutable` is set"), "{}", e.message);
    }
}
