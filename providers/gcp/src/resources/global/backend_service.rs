//! Global backend services (`EXTERNAL_MANAGED`, HTTP): one per backend of an Ingress, sending to
//! the cluster's instance groups on the backend's named port (`port<nodePort>`), checked by its
//! own health check. Updated in place with a full `update` carrying the fingerprint just read (a
//! stale one is a 412, retried by the next pass).

use cloudlb_provider::LoadBalancerId;
use google_cloud_compute_v1::model::{Backend, BackendService, backend, backend_service};
use google_cloud_lro::Poller;

use super::{all_pages, name_prefix_filter};
use crate::clients::{Api, gone};
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};

pub const GET: &str = "compute.backendServices.get";
pub const LIST: &str = "compute.backendServices.list";
pub const INSERT: &str = "compute.backendServices.insert";
pub const UPDATE: &str = "compute.backendServices.update";
pub const DELETE: &str = "compute.backendServices.delete";

pub const SCHEME: &str = "EXTERNAL_MANAGED";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    /// `port<nodePort>`; `None` for the fixed-answer service, which has no backends.
    pub port_name: Option<String>,
    /// Health-check link; `None` with `port_name`.
    pub health_check: Option<String>,
    /// Instance-group links.
    pub groups: Vec<String>,
    pub timeout_sec: i32,
}

pub async fn get(api: &Api<'_>, name: &str) -> Result<Option<BackendService>, CallError> {
    let c = &api.clients.global.backend_services;
    api.read(GET, c.get().set_project(api.project()).set_backend_service(name).send()).await
}

/// Every backend service whose name starts with `prefix` (all pages).
pub async fn list(api: &Api<'_>, prefix: &str) -> Result<Vec<BackendService>, CallError> {
    let c = &api.clients.global.backend_services;
    let request = |token: Option<String>| {
        c.list().set_project(api.project()).set_filter(name_prefix_filter(prefix)).set_or_clear_page_token(token).send()
    };
    all_pages(api, LIST, request, |p| (p.items, p.next_page_token)).await
}

fn sorted_tails(list: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = list.into_iter().map(|l| links::tail(&l).to_string()).collect();
    v.sort();
    v
}

pub fn matches(cur: &BackendService, d: &Desired) -> bool {
    cur.load_balancing_scheme.as_ref().and_then(|s| s.name()) == Some(SCHEME)
        && cur.protocol.as_ref().and_then(|p| p.name()) == Some("HTTP")
        && cur.port_name == d.port_name
        && sorted_tails(cur.health_checks.clone()) == sorted_tails(d.health_check.clone())
        && sorted_tails(cur.backends.iter().filter_map(|b| b.group.clone())) == sorted_tails(d.groups.clone())
        && cur.timeout_sec == Some(d.timeout_sec)
}

fn body(id: &LoadBalancerId, d: &Desired) -> BackendService {
    let backends = d.groups.iter().map(|g| {
        Backend::new()
            .set_group(g.clone())
            .set_balancing_mode(backend::BalancingMode::Utilization)
            .set_capacity_scaler(1.0)
    });
    BackendService::new()
        .set_name(d.name.clone())
        .set_description(ownership::description(Owner::Service(id), ownership::BACKEND_SERVICE))
        .set_load_balancing_scheme(backend_service::LoadBalancingScheme::from(SCHEME))
        .set_protocol(backend_service::Protocol::Http)
        .set_or_clear_port_name(d.port_name.clone())
        .set_health_checks(d.health_check.clone())
        .set_backends(backends)
        .set_timeout_sec(d.timeout_sec)
}

pub async fn insert(api: &Api<'_>, id: &LoadBalancerId, d: &Desired) -> Result<(), CallError> {
    let c = &api.clients.global.backend_services;
    let req = c.insert().set_project(api.project()).set_body(body(id, d)).poller().until_done();
    api.operate(INSERT, req).await.map(|_| ())
}

/// Full update with the fingerprint of `cur`.
pub async fn update(api: &Api<'_>, id: &LoadBalancerId, cur: &BackendService, d: &Desired) -> Result<(), CallError> {
    let c = &api.clients.global.backend_services;
    let body = body(id, d).set_or_clear_fingerprint(cur.fingerprint.clone());
    let req =
        c.update().set_project(api.project()).set_backend_service(d.name.clone()).set_body(body).poller().until_done();
    api.operate(UPDATE, req).await.map(|_| ())
}

pub async fn delete(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.global.backend_services;
    gone(
        api.operate(DELETE, c.delete().set_project(api.project()).set_backend_service(name).poller().until_done())
            .await,
    )
}
