//! The regional backend service: scheme (EXTERNAL / INTERNAL), protocol, session affinity, the
//! health check and the zones' instance groups as backends.
//!
//! Updates are in place with a full `update` (PUT) carrying the fingerprint read just before:
//! Compute refuses a stale one with 412 `conditionNotMet` (someone changed it in between), which
//! is retried by the next pass with a fresh read. The scheme cannot change: a flip between
//! external and internal re-creates the load balancer (see `ensure.rs`).

use cloudlb_provider::LoadBalancerId;
use google_cloud_compute_v1::model::{Backend, BackendService, backend, backend_service};
use google_cloud_lro::Poller;

use crate::clients::Api;
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};

pub const GET: &str = "compute.regionBackendServices.get";
pub const INSERT: &str = "compute.regionBackendServices.insert";
pub const UPDATE: &str = "compute.regionBackendServices.update";
pub const DELETE: &str = "compute.regionBackendServices.delete";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub scheme: &'static str,
    pub protocol: &'static str,
    pub session_affinity: &'static str,
    pub health_check: String,
    /// Instance-group links, sorted.
    pub groups: Vec<String>,
    /// Internal only.
    pub network: Option<String>,
}

pub fn link(api: &Api<'_>, name: &str) -> String {
    links::regional(api.config, "backendServices", name)
}

pub async fn get(api: &Api<'_>, name: &str) -> Result<Option<BackendService>, CallError> {
    let c = &api.clients.backend_services;
    api.read(GET, c.get().set_project(api.project()).set_region(api.region()).set_backend_service(name).send()).await
}

pub fn scheme(cur: &BackendService) -> &str {
    cur.load_balancing_scheme.as_ref().and_then(|s| s.name()).unwrap_or("")
}

pub fn protocol(cur: &BackendService) -> &str {
    cur.protocol.as_ref().and_then(|s| s.name()).unwrap_or("")
}

/// The instance-group links of the backends, sorted.
pub fn groups(cur: &BackendService) -> Vec<String> {
    let mut g: Vec<String> = cur.backends.iter().filter_map(|b| b.group.clone()).collect();
    g.sort_by(|a, b| links::tail(a).cmp(links::tail(b)));
    g
}

pub fn health_checks(cur: &BackendService) -> &[String] {
    &cur.health_checks
}

pub fn matches(cur: &BackendService, d: &Desired) -> bool {
    let same_links = |a: &[String], b: &[String]| {
        let mut a: Vec<&str> = a.iter().map(|l| links::tail(l)).collect();
        let mut b: Vec<&str> = b.iter().map(|l| links::tail(l)).collect();
        a.sort_unstable();
        b.sort_unstable();
        a == b
    };
    scheme(cur) == d.scheme
        && protocol(cur) == d.protocol
        && cur.session_affinity.as_ref().and_then(|s| s.name()).unwrap_or("NONE") == d.session_affinity
        && same_links(&cur.health_checks, std::slice::from_ref(&d.health_check))
        && same_links(&groups(cur), &d.groups)
        && cur.backends.iter().all(|b| b.balancing_mode.as_ref().and_then(|m| m.name()) == Some("CONNECTION"))
}

fn body(id: &LoadBalancerId, d: &Desired) -> BackendService {
    let backends = d
        .groups
        .iter()
        .map(|g| Backend::new().set_group(g.clone()).set_balancing_mode(backend::BalancingMode::Connection));
    let mut b = BackendService::new()
        .set_name(d.name.clone())
        .set_description(ownership::description(Owner::Service(id), ownership::BACKEND_SERVICE))
        .set_load_balancing_scheme(backend_service::LoadBalancingScheme::from(d.scheme))
        .set_protocol(backend_service::Protocol::from(d.protocol))
        .set_session_affinity(backend_service::SessionAffinity::from(d.session_affinity))
        .set_health_checks([d.health_check.clone()])
        .set_backends(backends);
    if let Some(n) = &d.network {
        b = b.set_network(n.clone());
    }
    b
}

pub async fn insert(api: &Api<'_>, id: &LoadBalancerId, d: &Desired) -> Result<(), CallError> {
    let c = &api.clients.backend_services;
    let req =
        c.insert().set_project(api.project()).set_region(api.region()).set_body(body(id, d)).poller().until_done();
    api.operate(INSERT, req).await.map(|_| ())
}

/// Full update with the fingerprint of `cur`.
pub async fn update(api: &Api<'_>, id: &LoadBalancerId, cur: &BackendService, d: &Desired) -> Result<(), CallError> {
    let c = &api.clients.backend_services;
    let body = body(id, d).set_or_clear_fingerprint(cur.fingerprint.clone());
    let req = c
        .update()
        .set_project(api.project())
        .set_region(api.region())
        .set_backend_service(d.name.clone())
        .set_body(body)
        .poller()
        .until_done();
    api.operate(UPDATE, req).await.map(|_| ())
}

/// Delete; `Ok` when already gone.
pub async fn delete(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.backend_services;
    let req =
        c.delete().set_project(api.project()).set_region(api.region()).set_backend_service(name).poller().until_done();
    match api.operate(DELETE, req).await {
        Err(e) if e.is_not_found() => Ok(()),
        other => other.map(|_| ()),
    }
}
