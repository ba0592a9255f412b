//! Discovery documents (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`) and the
//! minimal OpenAPI the clients need.
//!
//! Only the legacy (unaggregated) discovery format is served: kubectl asks for aggregated
//! discovery first and falls back when the Content-Type says plain `application/json`.
//! OpenAPI: `/openapi/v3` lists the group-versions with documents that declare no paths, so
//! kubectl concludes server-side field validation is unsupported and validates client-side
//! against `/openapi/v2`, which is served as an empty protobuf document (no schemas -> every
//! object passes); for strategic merge patches kubectl then uses its compiled-in types.

use crate::resources::{self, GROUPS, ResourceDef};
use serde_json::{Value, json};

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-sandbox",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub fn api_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server }],
    })
}

fn group_doc(g: &str) -> Value {
    let gv = json!({ "groupVersion": format!("{g}/v1"), "version": "v1" });
    json!({ "name": g, "versions": [gv.clone()], "preferredVersion": gv })
}

pub fn api_group_list() -> Value {
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": GROUPS.iter().map(|g| group_doc(g)).collect::<Vec<_>>() })
}

pub fn api_group(g: &str) -> Option<Value> {
    GROUPS.contains(&g).then(|| {
        let mut d = group_doc(g);
        d["kind"] = json!("APIGroup");
        d["apiVersion"] = json!("v1");
        d
    })
}

fn resource_entry(r: &ResourceDef) -> Value {
    let mut e = json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": resources::verbs(),
    });
    if !r.short_names.is_empty() {
        e["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        e["categories"] = json!(r.categories);
    }
    e
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let defs: Vec<&ResourceDef> = resources::in_group_version(group, version).collect();
    if defs.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for r in defs {
        out.push(resource_entry(r));
        if r.status_subresource {
            out.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": resources::STATUS_VERBS,
            }));
        }
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out }))
}

pub fn openapi_v3_root() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert("api/v1".into(), json!({ "serverRelativeURL": "/openapi/v3/api/v1?hash=0" }));
    for g in GROUPS {
        paths.insert(format!("apis/{g}/v1"), json!({ "serverRelativeURL": format!("/openapi/v3/apis/{g}/v1?hash=0") }));
    }
    json!({ "paths": paths })
}

pub fn openapi_v3_doc() -> Value {
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0-sandbox" },
        "paths": {},
        "components": { "schemas": {} },
    })
}
