//! Parsing Compute REST paths into what a request addresses.
//!
//! Paths are parsed by hand rather than with one axum route per shape: the grammar is small
//! (`projects/{p}/` then `global/…`, `regions/{r}/…`, `zones/{z}/…`, or the project-level
//! `targetHttp(s)Proxies/{n}/setUrlMap|setSslCertificates` quirk) and one parser gives the call
//! log the same view of a request whether or not it is valid.

use crate::collections::{self, Coll, Scope};
use crate::errors::ApiError;
use crate::links::Key;
use crate::ops::OpScope;

pub const PATH_PREFIX: &str = "/compute/v1/projects/";

/// The syntactic view of a path (also what the call log records).
#[derive(Debug, Clone, Default)]
pub struct Shape {
    pub project: String,
    /// Project-relative path (`regions/r/addresses/a`).
    pub rel: String,
    pub scope: String,
    pub collection: String,
    pub name: Option<String>,
    pub action: Option<String>,
}

/// What a request addresses, once checked against the collection table.
#[derive(Debug, Clone)]
pub enum Route {
    List { coll: Coll, loc: String },
    Insert { coll: Coll, loc: String },
    Get(Key),
    Delete(Key),
    Update(Key),
    Patch(Key),
    Action { key: Key, action: String },
    OpList(OpScope),
    OpGet(OpScope, String),
    OpWait(OpScope, String),
    Zones,
    Zone(String),
    Regions,
    Region(String),
}

impl Shape {
    pub fn verb(&self, method: &str) -> String {
        if let Some(a) = &self.action {
            return a.clone();
        }
        match (method, self.name.is_some()) {
            ("GET", false) => "list",
            ("GET", true) => "get",
            ("POST", false) => "insert",
            ("DELETE", _) => "delete",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            _ => "unknown",
        }
        .to_string()
    }
}

fn unknown_url(path: &str) -> ApiError {
    ApiError::new(
        404,
        "notFound",
        "RESOURCE_NOT_FOUND",
        format!("The requested URL {path} was not found on this server."),
    )
}

/// Splits `/compute/v1/projects/{p}/…` into a [`Shape`].
pub fn shape(path: &str) -> Result<Shape, ApiError> {
    let rest = path.strip_prefix(PATH_PREFIX).ok_or_else(|| unknown_url(path))?;
    let (project, rel) = rest.split_once('/').unwrap_or((rest, ""));
    let rel = rel.trim_end_matches('/');
    let segs: Vec<&str> = if rel.is_empty() { vec![] } else { rel.split('/').collect() };
    let mut s = Shape { project: project.to_string(), rel: rel.to_string(), ..Shape::default() };
    let tail: &[&str] = match segs.as_slice() {
        ["global", tail @ ..] => {
            s.scope = "global".into();
            tail
        }
        ["regions"] | ["zones"] => {
            s.collection = segs[0].to_string();
            return Ok(s);
        }
        ["regions" | "zones", loc] => {
            s.collection = segs[0].to_string();
            s.name = Some(loc.to_string());
            return Ok(s);
        }
        [kind @ ("regions" | "zones"), loc, tail @ ..] => {
            s.scope = format!("{kind}/{loc}");
            tail
        }
        tail => tail,
    };
    match tail {
        [coll] => s.collection = coll.to_string(),
        [coll, name] => {
            s.collection = coll.to_string();
            s.name = Some(name.to_string());
        }
        [coll, name, action] => {
            s.collection = coll.to_string();
            s.name = Some(name.to_string());
            s.action = Some(action.to_string());
        }
        _ => return Err(unknown_url(path)),
    }
    Ok(s)
}

/// Resolves a [`Shape`] and method against the collection table and the served locations.
pub fn resolve(
    s: &Shape,
    method: &str,
    path: &str,
    known_region: impl Fn(&str) -> bool,
    known_zone: impl Fn(&str) -> bool,
) -> Result<Route, ApiError> {
    let (scope, loc) = match s.scope.split_once('/') {
        Some(("regions", r)) => {
            if !known_region(r) {
                return Err(ApiError::invalid_field("region", r, "Unknown region."));
            }
            (Some(Scope::Regional), r.to_string())
        }
        Some(("zones", z)) => {
            if !known_zone(z) {
                return Err(ApiError::invalid_field("zone", z, "Unknown zone."));
            }
            (Some(Scope::Zonal), z.to_string())
        }
        _ if s.scope == "global" => (Some(Scope::Global), String::new()),
        _ => (None, String::new()),
    };
    let not_allowed = || ApiError::method_not_allowed(method, path);
    // Locations themselves.
    if scope.is_none() && (s.collection == "zones" || s.collection == "regions") {
        if method != "GET" || s.action.is_some() {
            return Err(not_allowed());
        }
        return Ok(match (s.collection.as_str(), &s.name) {
            ("zones", None) => Route::Zones,
            ("zones", Some(z)) => Route::Zone(z.clone()),
            ("regions", None) => Route::Regions,
            (_, Some(r)) => Route::Region(r.clone()),
            _ => return Err(unknown_url(path)),
        });
    }
    // Operations.
    if s.collection == "operations" {
        let op_scope = match scope {
            Some(Scope::Global) => OpScope::Global,
            Some(Scope::Regional) => OpScope::Region(loc),
            Some(Scope::Zonal) => OpScope::Zone(loc),
            None => return Err(unknown_url(path)),
        };
        return match (method, &s.name, s.action.as_deref()) {
            ("GET", None, None) => Ok(Route::OpList(op_scope)),
            ("GET", Some(n), None) => Ok(Route::OpGet(op_scope, n.clone())),
            ("POST", Some(n), Some("wait")) => Ok(Route::OpWait(op_scope, n.clone())),
            ("DELETE", Some(_), None) => Err(not_allowed()),
            _ => Err(unknown_url(path)),
        };
    }
    // The project-level proxy actions (no `/global/`).
    let Some(scope) = scope else {
        let (Some(name), Some(action)) = (&s.name, &s.action) else { return Err(unknown_url(path)) };
        let allowed = collections::ROOT_PROXY_ACTIONS
            .iter()
            .any(|(seg, acts)| *seg == s.collection && acts.contains(&action.as_str()));
        if !allowed {
            return Err(unknown_url(path));
        }
        if method != "POST" {
            return Err(not_allowed());
        }
        let def = collections::lookup(Scope::Global, &s.collection).ok_or_else(|| unknown_url(path))?;
        return Ok(Route::Action { key: Key::new(def.coll, "", name), action: action.clone() });
    };
    let def = collections::lookup(scope, &s.collection).ok_or_else(|| unknown_url(path))?;
    let coll = def.coll;
    match (&s.name, &s.action) {
        (None, _) => match method {
            "GET" => Ok(Route::List { coll, loc }),
            "POST" if def.writable => Ok(Route::Insert { coll, loc }),
            _ => Err(not_allowed()),
        },
        (Some(name), None) => {
            let key = Key::new(coll, &loc, name);
            match method {
                "GET" => Ok(Route::Get(key)),
                "DELETE" if def.writable => Ok(Route::Delete(key)),
                "PUT" if def.update => Ok(Route::Update(key)),
                "PATCH" if def.patch => Ok(Route::Patch(key)),
                _ => Err(not_allowed()),
            }
        }
        (Some(name), Some(action)) => {
            if !def.actions.contains(&action.as_str()) {
                return Err(unknown_url(path));
            }
            if method != "POST" {
                return Err(not_allowed());
            }
            Ok(Route::Action { key: Key::new(coll, &loc, name), action: action.clone() })
        }
    }
}

/// Does this request ask for a change? (Used by the call log and for fault delivery.)
pub fn is_mutating(method: &str, s: &Shape) -> bool {
    if method == "GET" {
        return false;
    }
    if s.collection == "operations" {
        return false;
    }
    !matches!(&s.action, Some(a) if collections::READ_ONLY_ACTIONS.contains(&a.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: &str, path: &str) -> Result<Route, ApiError> {
        let s = shape(path)?;
        resolve(&s, method, path, |r| r == "us-central1", |z| z.starts_with("us-central1-"))
    }

    #[test]
    fn resolves_scopes_and_verbs() {
        let p = "/compute/v1/projects/p/";
        assert!(matches!(
            r("GET", &format!("{p}regions/us-central1/addresses")),
            Ok(Route::List { coll: Coll::Address, .. })
        ));
        assert!(matches!(
            r("POST", &format!("{p}global/addresses")),
            Ok(Route::Insert { coll: Coll::GlobalAddress, .. })
        ));
        assert!(matches!(r("PUT", &format!("{p}regions/us-central1/backendServices/b")), Ok(Route::Update(_))));
        assert!(matches!(r("PUT", &format!("{p}regions/us-central1/forwardingRules/f")), Err(e) if e.code == 405));
        assert!(matches!(
            r("POST", &format!("{p}zones/us-central1-a/instanceGroups/g/listInstances")),
            Ok(Route::Action { .. })
        ));
        assert!(matches!(r("POST", &format!("{p}zones/us-central1-a/instances")), Err(e) if e.code == 405));
        assert!(matches!(r("GET", &format!("{p}regions/europe-west1/addresses")), Err(e) if e.code == 400));
        assert!(matches!(r("GET", &format!("{p}global/operations/op-1")), Ok(Route::OpGet(OpScope::Global, _))));
        assert!(matches!(r("POST", &format!("{p}regions/us-central1/operations/o/wait")), Ok(Route::OpWait(..))));
        assert!(matches!(r("GET", &format!("{p}zones")), Ok(Route::Zones)));
    }

    #[test]
    fn proxy_actions_live_without_global() {
        let p = "/compute/v1/projects/p/";
        let ok = r("POST", &format!("{p}targetHttpProxies/x/setUrlMap")).unwrap();
        assert!(
            matches!(ok, Route::Action { ref key, ref action } if key.coll == Coll::TargetHttpProxy && action == "setUrlMap")
        );
        assert!(r("POST", &format!("{p}targetHttpsProxies/x/setSslCertificates")).is_ok());
        assert_eq!(r("POST", &format!("{p}global/targetHttpProxies/x/setUrlMap")).unwrap_err().code, 404);
        assert_eq!(r("POST", &format!("{p}targetHttpProxies/x/setSslCertificates")).unwrap_err().code, 404);
    }

    #[test]
    fn mutating_flag() {
        let s = shape("/compute/v1/projects/p/zones/z/instanceGroups/g/listInstances").unwrap();
        assert!(!is_mutating("POST", &s));
        let s = shape("/compute/v1/projects/p/zones/z/instanceGroups/g/addInstances").unwrap();
        assert!(is_mutating("POST", &s));
        let s = shape("/compute/v1/projects/p/global/operations/o/wait").unwrap();
        assert!(!is_mutating("POST", &s));
        assert_eq!(s.verb("POST"), "wait");
    }
}
