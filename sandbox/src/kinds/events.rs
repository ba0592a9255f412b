//! Events are stored once, in the `events.k8s.io/v1` shape, and converted for the core/v1 view.
//!
//! The field mapping is the apiserver's own (`pkg/apis/events/v1/conversion.go`):
//!
//! | events.k8s.io/v1           | core/v1              |
//! |----------------------------|----------------------|
//! | regarding                  | involvedObject       |
//! | note                       | message              |
//! | reportingController        | reportingComponent   |
//! | deprecatedSource           | source               |
//! | deprecatedFirstTimestamp   | firstTimestamp       |
//! | deprecatedLastTimestamp    | lastTimestamp        |
//! | deprecatedCount            | count                |
//! | eventTime, series, action, reason, type, related, reportingInstance | same |
//!
//! Like the real API, `source.component` is NOT synthesised from `reportingController` and
//! `count` is not synthesised from `series.count` (kubectl reads both fields itself).

use super::Kind;
use crate::status::{ApiResult, FieldError};
use crate::store::Inner;
use serde_json::{Map, Value, json};

/// The core/v1 view (`/api/v1/.../events`): hooks see the stored (events.k8s.io/v1) shape.
pub struct CoreEvents;

impl Kind for CoreEvents {
    fn create(&self, _: &mut Inner, ev: &mut Value) -> ApiResult<()> {
        validate_core_view(ev)
    }

    fn update(&self, _: &mut Inner, _: &Value, ev: &mut Value) -> ApiResult<()> {
        validate_core_view(ev)
    }
}

/// events.k8s.io/v1: stricter on create (the fields a new-style event must carry).
pub struct Events;

impl Kind for Events {
    fn create(&self, _: &mut Inner, ev: &mut Value) -> ApiResult<()> {
        validate_v1(ev)
    }

    fn update(&self, _: &mut Inner, _: &Value, ev: &mut Value) -> ApiResult<()> {
        validate_core_view(ev)
    }
}

const PAIRS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];
const SAME: &[&str] = &["metadata", "eventTime", "series", "action", "reason", "type", "related", "reportingInstance"];

/// Stored (events.k8s.io/v1) -> core/v1.
pub fn to_core(ev: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("v1"));
    for k in SAME {
        if let Some(v) = ev.get(*k) {
            out.insert((*k).into(), v.clone());
        }
    }
    for (from, to) in PAIRS {
        if let Some(v) = ev.get(*from) {
            out.insert((*to).into(), v.clone());
        }
    }
    // core/v1 has non-pointer structs and timestamps: they always serialise.
    out.entry("involvedObject").or_insert_with(|| json!({}));
    out.entry("source").or_insert_with(|| json!({}));
    out.entry("firstTimestamp").or_insert(Value::Null);
    out.entry("lastTimestamp").or_insert(Value::Null);
    out.entry("eventTime").or_insert(Value::Null);
    out.entry("reportingComponent").or_insert_with(|| json!(""));
    out.entry("reportingInstance").or_insert_with(|| json!(""));
    Value::Object(out)
}

/// core/v1 -> stored (events.k8s.io/v1).
pub fn from_core(ev: &Value) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!("Event"));
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    for k in SAME {
        if let Some(v) = ev.get(*k).filter(|v| !v.is_null() && v.as_str() != Some("")) {
            out.insert((*k).into(), v.clone());
        }
    }
    for (to, from) in PAIRS {
        match ev.get(*from) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.is_empty() && *from == "source" => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::Number(n)) if n.as_i64() == Some(0) => {}
            Some(v) => {
                out.insert((*to).into(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Validation the apiserver applies to Events created through events.k8s.io/v1.
pub fn validate_v1(ev: &Value) -> ApiResult<()> {
    let mut errs = Vec::new();
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or_default();
    if ev.get("eventTime").is_none_or(Value::is_null) {
        errs.push(FieldError::required("eventTime", ""));
    }
    for (f, max) in [("reportingController", 0), ("reportingInstance", 128), ("action", 128), ("reason", 128)] {
        if s(f).is_empty() {
            errs.push(FieldError::required(f, ""));
        } else if max > 0 && s(f).len() > max {
            errs.push(FieldError::too_long(f, max));
        }
    }
    if s("note").len() > 1024 {
        errs.push(FieldError::too_long("note", 1024));
    }
    validate_type(ev, &mut errs);
    finish(ev, errs)
}

/// Lighter validation for core/v1 creates (the legacy API accepts much more).
pub fn validate_core_view(ev: &Value) -> ApiResult<()> {
    let mut errs = Vec::new();
    validate_type(ev, &mut errs);
    finish(ev, errs)
}

fn validate_type(ev: &Value, errs: &mut Vec<FieldError>) {
    let t = ev.get("type").and_then(Value::as_str).unwrap_or_default();
    if !t.is_empty() && t != "Normal" && t != "Warning" {
        errs.push(FieldError::not_supported("type", crate::status::q(t), &["Normal", "Warning"]));
    }
}

fn finish(ev: &Value, errs: Vec<FieldError>) -> ApiResult<()> {
    if errs.is_empty() {
        return Ok(());
    }
    let name = ev.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    Err(crate::status::ApiError::invalid("events.k8s.io", "Event", name, &errs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "a"},
            "regarding": {"kind": "Service", "name": "s"}, "note": "hi", "reason": "R", "type": "Normal",
            "reportingController": "c", "reportingInstance": "i", "action": "A", "eventTime": "2024-01-01T00:00:00.000000Z",
            "series": {"count": 2, "lastObservedTime": "2024-01-01T00:00:00.000000Z"}});
        let core = to_core(&ev);
        assert_eq!(core["involvedObject"]["name"], "s");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["reportingComponent"], "c");
        assert_eq!(from_core(&core), ev);
    }
}
