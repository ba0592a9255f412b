//! URL maps: the shape checks GCE makes on host rules, path matchers and path rules, so a
//! provider that builds a map GCE would reject is caught here too.
//!
//! * the map and every path matcher need a default (`defaultService`, `defaultUrlRedirect` or
//!   `defaultRouteAction`);
//! * path matcher names follow the name rule and are unique; every `hostRules[].pathMatcher`
//!   names one; a host appears in one host rule only;
//! * paths start with `/`, `*` may only end a path right after a `/`, and a path appears once per
//!   matcher; every path rule has `service`, `urlRedirect` or `routeAction`.
//!
//! Route rules and route actions are stored as sent (their backend services are still checked
//! as references).

use super::{Ctx, str_field};
use crate::errors::{ApiError, ApiResult};
use crate::names;
use serde_json::Value;
use std::collections::BTreeSet;

fn has_default(v: &Value) -> bool {
    ["defaultService", "defaultUrlRedirect", "defaultRouteAction"].iter().any(|f| v.get(*f).is_some())
}

pub fn check(_ctx: &mut Ctx, v: &mut Value) -> ApiResult<()> {
    if !has_default(v) {
        return Err(ApiError::invalid_field(
            "resource.defaultService",
            "",
            "A default service, default URL redirect or default route action is required.",
        ));
    }
    let mut matchers = BTreeSet::new();
    for (i, pm) in v.get("pathMatchers").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = str_field(pm, "name").unwrap_or("");
        if !names::is_valid_name(name) {
            return Err(ApiError::invalid_field(
                &format!("resource.pathMatchers[{i}].name"),
                name,
                "Invalid path matcher name.",
            ));
        }
        if !matchers.insert(name.to_string()) {
            return Err(ApiError::invalid_field(
                &format!("resource.pathMatchers[{i}].name"),
                name,
                "Duplicate path matcher name.",
            ));
        }
        if !has_default(pm) {
            return Err(ApiError::invalid_field(
                &format!("resource.pathMatchers[{i}].defaultService"),
                "",
                "A path matcher needs a default service, default URL redirect or default route action.",
            ));
        }
        let mut paths = BTreeSet::new();
        for (j, rule) in pm.get("pathRules").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let field = format!("resource.pathMatchers[{i}].pathRules[{j}]");
            if !["service", "urlRedirect", "routeAction"].iter().any(|f| rule.get(*f).is_some()) {
                return Err(ApiError::invalid_field(&format!("{field}.service"), "", "A path rule needs a service."));
            }
            let list = rule.get("paths").and_then(Value::as_array).cloned().unwrap_or_default();
            if list.is_empty() {
                return Err(ApiError::required(&format!("{field}.paths")));
            }
            for p in &list {
                let p = p.as_str().unwrap_or("");
                if !valid_path(p) {
                    return Err(ApiError::invalid_field(
                        &format!("{field}.paths"),
                        p,
                        "A path must start with '/' and may only end with '/*'.",
                    ));
                }
                if !paths.insert(p.to_string()) {
                    return Err(ApiError::invalid_field(
                        &format!("{field}.paths"),
                        p,
                        "Duplicate path pattern in a path matcher.",
                    ));
                }
            }
        }
    }
    let mut hosts = BTreeSet::new();
    for (i, hr) in v.get("hostRules").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let pm = str_field(hr, "pathMatcher").unwrap_or("");
        if !matchers.contains(pm) {
            return Err(ApiError::invalid_field(
                &format!("resource.hostRules[{i}].pathMatcher"),
                pm,
                "The path matcher is not defined in this URL map.",
            ));
        }
        let list = hr.get("hosts").and_then(Value::as_array).cloned().unwrap_or_default();
        if list.is_empty() {
            return Err(ApiError::required(&format!("resource.hostRules[{i}].hosts")));
        }
        for h in &list {
            let h = h.as_str().unwrap_or("");
            if !valid_host(h) {
                return Err(ApiError::invalid_field(
                    &format!("resource.hostRules[{i}].hosts"),
                    h,
                    "Invalid host pattern.",
                ));
            }
            if !hosts.insert(h.to_string()) {
                return Err(ApiError::invalid_field(
                    &format!("resource.hostRules[{i}].hosts"),
                    h,
                    "A host may appear in only one host rule.",
                ));
            }
        }
    }
    Ok(())
}

fn valid_path(p: &str) -> bool {
    if !p.starts_with('/') {
        return false;
    }
    match p.find('*') {
        None => true,
        Some(i) => i == p.len() - 1 && p[..i].ends_with('/'),
    }
}

fn valid_host(h: &str) -> bool {
    if h == "*" {
        return true;
    }
    let h = h.strip_prefix("*.").or_else(|| h.strip_prefix('*')).unwrap_or(h);
    let host = h.split_once(':').map_or(h, |(host, port)| if port.parse::<u16>().is_ok() { host } else { "" });
    !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') && !host.contains('*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_hosts() {
        for ok in ["/", "/*", "/a", "/a/*", "/a/b"] {
            assert!(valid_path(ok), "{ok}");
        }
        for bad in ["", "a", "/a*", "/*/b", "*"] {
            assert!(!valid_path(bad), "{bad}");
        }
        for ok in ["*", "foo.example.com", "*.example.com", "example.com:8080"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "foo bar", "a.*.com"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
