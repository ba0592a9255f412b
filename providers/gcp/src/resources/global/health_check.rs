//! Global health checks, one per backend service (same name): HTTP on the backend's node port, the
//! path from the Ingress or Service annotation, else `/`. No fingerprint: a change is a full update.

use cloudlb_provider::LoadBalancerId;
use google_cloud_compute_v1::model::{HTTPHealthCheck, HealthCheck, health_check};
use google_cloud_lro::Poller;

use super::{all_pages, name_prefix_filter};
use crate::clients::{Api, gone};
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};

pub const LIST: &str = "compute.healthChecks.list";
pub const INSERT: &str = "compute.healthChecks.insert";
pub const UPDATE: &str = "compute.healthChecks.update";
pub const DELETE: &str = "compute.healthChecks.delete";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub port: u16,
    pub path: String,
    pub interval: i32,
    pub timeout: i32,
    pub healthy: i32,
    pub unhealthy: i32,
}

pub fn link(api: &Api<'_>, name: &str) -> String {
    links::global(api.config, "healthChecks", name)
}

/// Every health check whose name starts with `prefix` (all pages).
pub async fn list(api: &Api<'_>, prefix: &str) -> Result<Vec<HealthCheck>, CallError> {
    let c = &api.clients.global.health_checks;
    let request = |token: Option<String>| {
        c.list().set_project(api.project()).set_filter(name_prefix_filter(prefix)).set_or_clear_page_token(token).send()
    };
    all_pages(api, LIST, request, |p| (p.items, p.next_page_token)).await
}

pub fn matches(cur: &HealthCheck, d: &Desired) -> bool {
    let http = cur.http_health_check.as_ref();
    cur.r#type.as_ref().and_then(|t| t.name()) == Some("HTTP")
        && http.and_then(|x| x.port) == Some(i32::from(d.port))
        && http.and_then(|x| x.request_path.as_deref()).unwrap_or("/") == d.path
        && cur.check_interval_sec == Some(d.interval)
        && cur.timeout_sec == Some(d.timeout)
        && cur.healthy_threshold == Some(d.healthy)
        && cur.unhealthy_threshold == Some(d.unhealthy)
}

fn body(id: &LoadBalancerId, d: &Desired) -> HealthCheck {
    HealthCheck::new()
        .set_name(d.name.clone())
        .set_description(ownership::description(Owner::Service(id), ownership::HEALTH_CHECK))
        .set_type(health_check::Type::Http)
        .set_http_health_check(HTTPHealthCheck::new().set_port(i32::from(d.port)).set_request_path(d.path.clone()))
        .set_check_interval_sec(d.interval)
        .set_timeout_sec(d.timeout)
        .set_healthy_threshold(d.healthy)
        .set_unhealthy_threshold(d.unhealthy)
}

pub async fn insert(api: &Api<'_>, id: &LoadBalancerId, d: &Desired) -> Result<(), CallError> {
    let c = &api.clients.global.health_checks;
    api.operate(INSERT, c.insert().set_project(api.project()).set_body(body(id, d)).poller().until_done())
        .await
        .map(|_| ())
}

pub async fn update(api: &Api<'_>, id: &LoadBalancerId, d: &Desired) -> Result<(), CallError> {
    let c = &api.clients.global.health_checks;
    let req = c
        .update()
        .set_project(api.project())
        .set_health_check(d.name.clone())
        .set_body(body(id, d))
        .poller()
        .until_done();
    api.operate(UPDATE, req).await.map(|_| ())
}

pub async fn delete(api: &Api<'_>, name: &str) -> Result<(), CallError> {
    let c = &api.clients.global.health_checks;
    gone(api.operate(DELETE, c.delete().set_project(api.project()).set_health_check(name).poller().until_done()).await)
}
