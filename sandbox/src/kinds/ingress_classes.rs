//! IngressClasses (`networking.k8s.io/v1`, cluster-scoped): `spec.controller` is required, a
//! domain-prefixed path, and immutable; `spec.parameters` is a reference whose `scope` defaults to
//! `Cluster`. Which class is the default (`ingressclass.kubernetes.io/is-default-class`) is read
//! by the Ingress admission (`ingresses/admission.rs`), not checked here: the apiserver accepts
//! any number of default classes.

use super::Kind;
use crate::names;
use crate::status::{ApiError, ApiResult, FieldError, q};
use crate::store::Inner;
use serde_json::{Value, json};

pub const GROUP: &str = "networking.k8s.io";
const MAX_CONTROLLER_LEN: usize = 250;
/// `httpPathFmt`: the path part of a domain-prefixed path.
const HTTP_PATH_MSG: &str = "Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')";

pub struct IngressClasses;

impl Kind for IngressClasses {
    fn create(&self, _: &mut Inner, class: &mut Value) -> ApiResult<()> {
        default(class);
        finish(class, validate(class))
    }

    fn update(&self, _: &mut Inner, old: &Value, new: &mut Value) -> ApiResult<()> {
        default(new);
        let mut errs = Vec::new();
        let controller =
            |c: &Value| c.pointer("/spec/controller").and_then(Value::as_str).unwrap_or_default().to_string();
        if controller(old) != controller(new) {
            errs.push(FieldError::invalid("spec.controller", q(&controller(new)), "field is immutable"));
        }
        errs.extend(validate(new));
        finish(new, errs)
    }
}

fn finish(class: &Value, errs: Vec<FieldError>) -> ApiResult<()> {
    if errs.is_empty() {
        return Ok(());
    }
    let name = class.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    Err(ApiError::invalid(GROUP, "IngressClass", name, &errs))
}

/// `SetDefaults_IngressClass`: a parameters reference without a scope is cluster-scoped.
fn default(class: &mut Value) {
    if let Some(Value::Object(p)) = class.pointer_mut("/spec/parameters")
        && p.get("scope").is_none_or(Value::is_null)
    {
        p.insert("scope".into(), json!("Cluster"));
    }
}

/// `IsDomainPrefixedPath`, e.g. `cloudlb.io/ingress-controller`.
fn domain_prefixed_path_errors(field: &str, v: &str, errs: &mut Vec<FieldError>) {
    let Some((host, path)) = v.split_once('/').filter(|(h, p)| !h.is_empty() && !p.is_empty()) else {
        errs.push(FieldError::invalid(field, q(v), "must be a domain-prefixed path (such as \"acme.io/foo\")"));
        return;
    };
    for msg in names::dns1123_subdomain_errors(host) {
        errs.push(FieldError::invalid(field, q(host), msg));
    }
    let ok = path.bytes().all(|c| c.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&c));
    if !ok {
        errs.push(FieldError::invalid(field, q(path), HTTP_PATH_MSG));
    }
}

/// `validateIngressClassSpec`.
fn validate(class: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let controller = class.pointer("/spec/controller").and_then(Value::as_str).unwrap_or_default();
    if controller.is_empty() {
        errs.push(FieldError::required("spec.controller", ""));
    } else {
        if controller.len() > MAX_CONTROLLER_LEN {
            errs.push(FieldError::too_long("spec.controller", MAX_CONTROLLER_LEN));
        }
        domain_prefixed_path_errors("spec.controller", controller, &mut errs);
    }
    let Some(p) = class.pointer("/spec/parameters").filter(|p| !p.is_null()) else { return errs };
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    if let Some(g) = s("apiGroup") {
        for msg in names::dns1123_subdomain_errors(g) {
            errs.push(FieldError::invalid("spec.parameters.apiGroup", q(g), msg));
        }
    }
    for k in ["kind", "name"] {
        let f = format!("spec.parameters.{k}");
        match s(k).unwrap_or_default() {
            "" => errs.push(FieldError::required(f, "")),
            v => {
                for msg in names::path_segment_name_errors(v) {
                    errs.push(FieldError::invalid(&f, q(v), msg));
                }
            }
        }
    }
    match (s("scope").unwrap_or_default(), s("namespace")) {
        ("Namespace", None) => {
            errs.push(FieldError::required("spec.parameters.namespace", "`parameters.scope` is set to 'Namespace'"))
        }
        ("Namespace", Some(ns)) if !names::is_dns1123_label(ns) => {
            errs.push(FieldError::invalid("spec.parameters.namespace", q(ns), names::DNS1123_LABEL_MSG))
        }
        ("Cluster", Some(_)) => {
            errs.push(FieldError::forbidden("spec.parameters.namespace", "`parameters.scope` is set to 'Cluster'"))
        }
        ("Namespace" | "Cluster", _) => {}
        (other, _) => {
            errs.push(FieldError::not_supported("spec.parameters.scope", q(other), &["Cluster", "Namespace"]))
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_and_parameters() {
        let ok = json!({"spec": {"controller": "cloudlb.io/ingress-controller", "parameters": {"kind": "Params", "name": "p"}}});
        let mut c = ok.clone();
        default(&mut c);
        assert_eq!(c["spec"]["parameters"]["scope"], "Cluster");
        assert!(validate(&c).is_empty());
        let fields = |v: Value| validate(&v).iter().map(|e| e.to_string()).collect::<Vec<_>>();
        assert_eq!(fields(json!({"spec": {}})), ["spec.controller: Required value"]);
        assert_eq!(
            fields(json!({"spec": {"controller": "nope"}})),
            ["spec.controller: Invalid value: \"nope\": must be a domain-prefixed path (such as \"acme.io/foo\")"]
        );
        assert_eq!(fields(json!({"spec": {"controller": "a.io/x y"}})).len(), 1);
        let e = fields(
            json!({"spec": {"controller": "a.io/c", "parameters": {"kind": "K", "name": "a/b", "scope": "Namespace"}}}),
        );
        assert_eq!(e.len(), 2, "{e:?}");
    }
}
