//! URL maps: the routing of one Ingress (built in `gclb/routing.rs`), and the redirect map an HTTP
//! listener uses when everything is redirected to HTTPS. Updated with a full `update` carrying the
//! fingerprint just read, so a concurrent change is a 412 and never overwritten blindly.

use cloudlb_provider::LoadBalancerId;
use google_cloud_compute_v1::model::UrlMap;
use google_cloud_lro::Poller;

use crate::clients::{Api, gone};
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};

pub const GET: &str = "compute.urlMaps.get";
pub const INSERT: &str = "compute.urlMaps.insert";
pub const UPDATE: &str = "compute.urlMaps.update";
pub const DELETE: &str = "compute.urlMaps.delete";

pub fn link(api: &Api<'_>, name: &str) -> String {
    links::global(api.config, "urlMaps", name)
}

pub async fn get(api: &Api<'_>, name: &str) -> Result<Option<UrlMap>, CallError> {
    let c = &api.clients.global.url_maps;
    api.read(GET, c.get().set_project(api.project()).set_url_map(name).send()).await
}

/// Where the hash of the spec a routing map implements is kept: in the map's description, next
/// to the ownership keys. Compute has no labels on URL maps, and the map is written on every
/// change of the routing anyway; a change of anything else (a certificate, a timeout) costs one
/// map update more, a change of the nodes none (those go to the instance groups only).
pub const SPEC_HASH: &str = "cloudlb.io/spec-hash";

/// The spec hash `map`'s description records.
pub fn spec_hash(map: &UrlMap) -> Option<String> {
    ownership::field(map.description.as_deref(), SPEC_HASH)
}

fn with_owner(id: &LoadBalancerId, map: &UrlMap, spec_hash: Option<&str>) -> UrlMap {
    let extra: Vec<(&'static str, &str)> = spec_hash.map(|h| (SPEC_HASH, h)).into_iter().collect();
    map.clone().set_description(ownership::description_with(Owner::Service(id), ownership::URL_MAP, &extra))
}

pub async fn insert(
    api: &Api<'_>,
    id: &LoadBalancerId,
    map: &UrlMap,
    spec_hash: Option<&str>,
) -> Result<(), CallError> {
    let c = &api.clients.global.url_maps;
    let req = c.insert().set_project(api.project()).set_body(with_owner(id, map, spec_hash)).poller().until_done();
    api.operate(INSERT, req).await.map(|_| ())
}

/// Replace the map named like `map` with it, with the fingerprint of `cur`.
pub async fn update(
    api: &Api<'_>,
    id: &LoadBalancerId,
    cur: &UrlMap,
    map: &UrlMap,
    spec_hash: Option<&str>,
) -> Result<(), CallError> {
    let c = &api.clients.global.url_maps;
    let body = with_owner(id, map, spec_hash).set_or_clear_fingerprint(cur.fingerprint.clone());
    let name = map.name.clone().unwrap_or_default();
    let req = c.update().set_project(api.project()).set_url_map(name).set_body(body).poller().until_done();
    api.operate(UPDATE, req).await.map(|_| ())
}

pub async fn delete(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.global.url_maps;
    gone(api.operate(DELETE, c.delete().set_project(api.project()).set_url_map(name).poller().until_done()).await)
}
