//! `ValidateIngressSpec` (and the create-only class annotation check) with the apiserver's field
//! paths and messages: rules and hosts, paths per `pathType`, backends, TLS, class name.
//!
//! Not reproduced: the update-time leniency for objects stored before a rule existed
//! (invalid TLS secret names, invalid rules under wildcard hosts) — nothing here stores such
//! objects — and the feature-gated relaxed (DNS-1123 label) Service name rule.

use super::INGRESS_CLASS_ANNOTATION;
use crate::names;
use crate::status::{FieldError, q};
use serde_json::Value;

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// A rule or TLS host: an IP is refused, `*` makes it a wildcard subdomain.
fn host(field: &str, h: &str, errs: &mut Vec<FieldError>, refuse_ip: bool) {
    if refuse_ip && names::is_ip_sloppy(h) {
        errs.push(FieldError::invalid(field, q(h), "must be a DNS name, not an IP address"));
    }
    let msgs =
        if h.contains('*') { names::wildcard_dns1123_subdomain_errors(h) } else { names::dns1123_subdomain_errors(h) };
    for msg in msgs {
        errs.push(FieldError::invalid(field, q(h), msg));
    }
}

pub(super) fn spec(ing: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let empty = Value::Null;
    let spec = present(ing, "spec").unwrap_or(&empty);
    let rules = present(spec, "rules");
    let default_backend = present(spec, "defaultBackend");
    if rules.and_then(Value::as_array).is_none_or(Vec::is_empty) && default_backend.is_none() {
        let shown = if rules.is_some() { "[]networking.IngressRule{}" } else { "[]networking.IngressRule(nil)" };
        errs.push(FieldError::invalid("spec", shown, "either `defaultBackend` or `rules` must be specified"));
    }
    if let Some(b) = default_backend {
        backend("spec.defaultBackend", b, &mut errs);
    }
    for (i, rule) in array(spec, "rules").iter().enumerate() {
        let f = format!("spec.rules[{i}]");
        let h = str_at(rule, "/host");
        if !h.is_empty() {
            host(&format!("{f}.host"), h, &mut errs, true);
        }
        let Some(http) = present(rule, "http") else { continue };
        let paths = array(http, "paths");
        if paths.is_empty() {
            errs.push(FieldError::required(format!("{f}.http.paths"), ""));
        }
        for (j, p) in paths.iter().enumerate() {
            path(&format!("{f}.http.paths[{j}]"), p, &mut errs);
        }
    }
    for (i, tls) in array(spec, "tls").iter().enumerate() {
        for (j, h) in array(tls, "hosts").iter().enumerate() {
            host(&format!("spec.tls[{i}].hosts[{j}]"), h.as_str().unwrap_or_default(), &mut errs, false);
        }
        let secret = str_at(tls, "/secretName");
        if !secret.is_empty() {
            for msg in names::dns1123_subdomain_errors(secret) {
                errs.push(FieldError::invalid(format!("spec.tls[{i}].secretName"), q(secret), msg));
            }
        }
    }
    if let Some(class) = present(spec, "ingressClassName") {
        let class = class.as_str().unwrap_or_default();
        for msg in names::dns1123_subdomain_errors(class) {
            errs.push(FieldError::invalid("spec.ingressClassName", q(class), msg));
        }
    }
    errs
}

/// `validateHTTPIngressPath`.
fn path(f: &str, p: &Value, errs: &mut Vec<FieldError>) {
    let Some(path_type) = present(p, "pathType") else {
        errs.push(FieldError::required(format!("{f}.pathType"), "pathType must be specified"));
        return;
    };
    let path = str_at(p, "/path");
    let absolute = || FieldError::invalid(format!("{f}.path"), q(path), "must be an absolute path");
    match path_type.as_str().unwrap_or_default() {
        "Exact" | "Prefix" => {
            if !path.starts_with('/') {
                errs.push(absolute());
            }
            for seq in INVALID_PATH_SEQUENCES.iter().filter(|s| path.contains(*s)) {
                errs.push(FieldError::invalid(format!("{f}.path"), q(path), format!("must not contain '{seq}'")));
            }
            for suffix in INVALID_PATH_SUFFIXES.iter().filter(|s| path.ends_with(*s)) {
                errs.push(FieldError::invalid(format!("{f}.path"), q(path), format!("cannot end with '{suffix}'")));
            }
        }
        "ImplementationSpecific" => {
            if !path.is_empty() && !path.starts_with('/') {
                errs.push(absolute());
            }
        }
        other => errs.push(FieldError::not_supported(format!("{f}.pathType"), q(other), PATH_TYPES)),
    }
    let empty = Value::Null;
    backend(&format!("{f}.backend"), present(p, "backend").unwrap_or(&empty), errs);
}

/// `validateIngressBackend`: exactly one of service/resource; a service port by number or name.
fn backend(f: &str, b: &Value, errs: &mut Vec<FieldError>) {
    match (present(b, "service"), present(b, "resource")) {
        (Some(_), Some(_)) => {
            errs.push(FieldError::invalid(f, q(""), "cannot set both resource and service backends"));
        }
        (None, Some(r)) => {
            if let Some(g) = present(r, "apiGroup") {
                let g = g.as_str().unwrap_or_default();
                for msg in names::dns1123_subdomain_errors(g) {
                    errs.push(FieldError::invalid(format!("{f}.resource.apiGroup"), q(g), msg));
                }
            }
            for k in ["kind", "name"] {
                match str_at(r, &format!("/{k}")) {
                    "" => errs.push(FieldError::required(format!("{f}.resource.{k}"), "")),
                    v => {
                        for msg in names::path_segment_name_errors(v) {
                            errs.push(FieldError::invalid(format!("{f}.resource.{k}"), q(v), msg));
                        }
                    }
                }
            }
        }
        (Some(svc), None) => {
            match str_at(svc, "/name") {
                "" => errs.push(FieldError::required(format!("{f}.service.name"), "")),
                name => {
                    for msg in names::dns1035_label_errors(name) {
                        errs.push(FieldError::invalid(format!("{f}.service.name"), q(name), msg));
                    }
                }
            }
            let port_name = str_at(svc, "/port/name");
            let number = svc.pointer("/port/number").and_then(Value::as_i64).unwrap_or(0);
            match (port_name.is_empty(), number != 0) {
                (false, true) => errs.push(FieldError::invalid(f, q(""), "cannot set both port name & port number")),
                (false, false) => {
                    for msg in names::port_name_errors(port_name) {
                        errs.push(FieldError::invalid(format!("{f}.service.port.name"), q(port_name), msg));
                    }
                }
                (true, true) => {
                    if !(1..=65535).contains(&number) {
                        errs.push(FieldError::invalid(
                            format!("{f}.service.port.number"),
                            number,
                            "must be between 1 and 65535, inclusive",
                        ));
                    }
                }
                (true, false) => errs.push(FieldError::required(f, "port name or number is required")),
            }
        }
        (None, None) => errs.push(FieldError::invalid(f, q(""), "resource or service backend is required")),
    }
}

/// `ValidateIngressCreate`: the legacy annotation, when set with `ingressClassName`, must agree.
pub(super) fn class_annotation(ing: &Value, errs: &mut Vec<FieldError>) {
    let annotation = ing.pointer("/metadata/annotations").and_then(|a| a.get(INGRESS_CLASS_ANNOTATION));
    let class = ing.pointer("/spec/ingressClassName").filter(|c| !c.is_null());
    if let (Some(a), Some(c)) = (annotation, class) {
        let a = a.as_str().unwrap_or_default();
        if Some(a) != c.as_str() {
            errs.push(FieldError::invalid(
                format!("annotations.{INGRESS_CLASS_ANNOTATION}"),
                q(a),
                "must match `ingressClassName` when both are specified",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(spec: Value) -> Vec<String> {
        super::spec(&json!({ "spec": spec })).iter().map(|e| e.to_string()).collect()
    }

    fn rule_path(path: &str, path_type: &str) -> Value {
        json!({"rules": [{"http": {"paths": [{"path": path, "pathType": path_type,
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]})
    }

    #[test]
    fn paths() {
        assert!(errors(rule_path("/a/b", "Prefix")).is_empty());
        assert!(errors(rule_path("", "ImplementationSpecific")).is_empty());
        assert!(errors(rule_path("/a/.well-known", "Exact")).is_empty());
        for (path, want) in [
            ("a", "must be an absolute path"),
            ("/a//b", "must not contain '//'"),
            ("/a/./b", "must not contain '/./'"),
            ("/a/../b", "must not contain '/../'"),
            ("/a%2fb", "must not contain '%2f'"),
            ("/a%2Fb", "must not contain '%2F'"),
            ("/a/..", "cannot end with '/..'"),
            ("/a/.", "cannot end with '/.'"),
        ] {
            for pt in ["Exact", "Prefix"] {
                let e = errors(rule_path(path, pt));
                assert_eq!(e.len(), 1, "{path} {pt}: {e:?}");
                assert_eq!(e[0], format!("spec.rules[0].http.paths[0].path: Invalid value: {}: {want}", q(path)));
            }
        }
        assert_eq!(errors(rule_path("/a//b", "ImplementationSpecific")).len(), 0);
        assert_eq!(errors(rule_path("a", "ImplementationSpecific")).len(), 1);
        let e = errors(rule_path("/", "Regex"));
        assert_eq!(
            e,
            [
                "spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""
            ]
        );
        let e = errors(json!({"rules": [{"http": {"paths": [{"path": "/", "backend": {}}]}}]}));
        assert_eq!(e, ["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"]);
    }

    #[test]
    fn backends_hosts_tls_class() {
        let b = |backend: Value| errors(json!({ "defaultBackend": backend }));
        assert!(b(json!({"service": {"name": "web", "port": {"name": "http"}}})).is_empty());
        assert!(b(json!({"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "static"}})).is_empty());
        assert_eq!(b(json!({})), ["spec.defaultBackend: Invalid value: \"\": resource or service backend is required"]);
        assert_eq!(
            b(json!({"service": {"name": "web", "port": {"number": 80}}, "resource": {"kind": "K", "name": "n"}})),
            ["spec.defaultBackend: Invalid value: \"\": cannot set both resource and service backends"]
        );
        assert_eq!(
            b(json!({"service": {"name": "web", "port": {"number": 80, "name": "http"}}})),
            ["spec.defaultBackend: Invalid value: \"\": cannot set both port name & port number"]
        );
        assert_eq!(
            b(json!({"service": {"name": "web", "port": {}}})),
            ["spec.defaultBackend: Required value: port name or number is required"]
        );
        assert_eq!(b(json!({"service": {"name": "web", "port": {"number": 70000}}})).len(), 1);
        assert_eq!(b(json!({"service": {"name": "1web", "port": {"number": 80}}})).len(), 1);
        assert_eq!(b(json!({"resource": {"name": "a/b"}})).len(), 2);
        assert_eq!(
            errors(json!({})),
            [
                "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"
            ]
        );

        let with_host = |h: &str| {
            let mut s = rule_path("/", "Prefix");
            s["rules"][0]["host"] = json!(h);
            errors(s)
        };
        assert!(with_host("foo.example.com").is_empty() && with_host("*.example.com").is_empty());
        assert_eq!(
            with_host("10.0.0.1"),
            ["spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"]
        );
        assert_eq!(with_host("Foo.com").len(), 1);
        assert_eq!(with_host("foo.*.com").len(), 1);
        let e = errors(json!({"defaultBackend": {"service": {"name": "w", "port": {"number": 1}}},
            "tls": [{"hosts": ["a.example.com", "*.b.example.com", "bad_host"], "secretName": "Bad"}], "ingressClassName": "A"}));
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("spec.tls[0].hosts[2]: Invalid value: \"bad_host\""));
        assert!(e[1].starts_with("spec.tls[0].secretName: Invalid value: \"Bad\""));
        assert!(e[2].starts_with("spec.ingressClassName: Invalid value: \"A\""));
    }
}
