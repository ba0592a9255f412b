//! The status subresource of a Service: `status.loadBalancer.ingress` (defaulting `ipMode` to
//! `VIP` when an IP is set, see DESIGN §8) and `status.conditions`, validated like the
//! apiserver does before a controller's write is accepted.

use super::spec::str_at;
use crate::kinds::load_balancer_point;
use crate::names::is_qualified_name;
use crate::status::{ApiError, ApiResult, FieldError, q};
use serde_json::{Value, json};
use std::collections::HashSet;

/// Status-subresource hook: defaulting (`ipMode: VIP`) and validation.
pub(super) fn prepare_status(svc: &mut Value) -> ApiResult<()> {
    let name = str_at(svc, "/metadata/name").to_string();
    let mut errs = Vec::new();
    if let Some(Value::Array(ing)) = svc.pointer_mut("/status/loadBalancer/ingress") {
        for (i, e) in ing.iter_mut().enumerate() {
            let f = format!("status.loadBalancer.ingress[{i}]");
            let ip = str_at(e, "/ip").to_string();
            if !ip.is_empty() && e.get("ipMode").is_none_or(Value::is_null) {
                e["ipMode"] = json!("VIP");
            }
            load_balancer_point::validate(e, &f, &mut errs);
            match e.get("ipMode").and_then(Value::as_str) {
                None => {}
                Some(_) if ip.is_empty() => {
                    errs.push(FieldError::forbidden(format!("{f}.ipMode"), "may not be specified when `ip` is not set"))
                }
                Some("VIP" | "Proxy") => {}
                Some(m) => errs.push(FieldError::not_supported(format!("{f}.ipMode"), q(m), &["Proxy", "VIP"])),
            }
        }
    }
    if let Some(Value::Array(conds)) = svc.pointer("/status/conditions") {
        validate_conditions(conds, "status.conditions", &mut errs);
    }
    if errs.is_empty() { Ok(()) } else { Err(ApiError::invalid("", "Service", &name, &errs)) }
}

fn is_reason(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':'))
        && (b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'_')
}

/// `metav1validation.ValidateConditions`.
pub fn validate_conditions(conds: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (i, c) in conds.iter().enumerate() {
        let f = format!("{path}[{i}]");
        let t = str_at(c, "/type");
        if t.is_empty() {
            errs.push(FieldError::required(format!("{f}.type"), "must be set"));
        } else if !is_qualified_name(t) {
            errs.push(FieldError::invalid(format!("{f}.type"), q(t), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
        } else if !seen.insert(t.to_string()) {
            errs.push(FieldError::duplicate(format!("{f}.type"), q(t)));
        }
        let st = str_at(c, "/status");
        if !matches!(st, "True" | "False" | "Unknown") {
            errs.push(FieldError::not_supported(format!("{f}.status"), q(st), &["False", "True", "Unknown"]));
        }
        if c.get("observedGeneration").and_then(Value::as_i64).unwrap_or(0) < 0 {
            errs.push(FieldError::invalid(
                format!("{f}.observedGeneration"),
                c["observedGeneration"].clone(),
                "must be greater than or equal to zero",
            ));
        }
        if str_at(c, "/lastTransitionTime").is_empty() {
            errs.push(FieldError::required(format!("{f}.lastTransitionTime"), "must be set"));
        }
        let r = str_at(c, "/reason");
        if r.is_empty() {
            errs.push(FieldError::required(format!("{f}.reason"), "must be set"));
        } else if !is_reason(r) {
            errs.push(FieldError::invalid(format!("{f}.reason"), q(r), "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName',  or 'ReasonA,ReasonB',  or 'ReasonA:ReasonB', regex used for validation is '[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?')"));
        } else if r.len() > 1024 {
            errs.push(FieldError::too_long(format!("{f}.reason"), 1024));
        }
        if str_at(c, "/message").len() > 32768 {
            errs.push(FieldError::too_long(format!("{f}.message"), 32768));
        }
    }
}
