//! Regional health checks: the per-Service HTTP check of an `externalTrafficPolicy: Local`
//! Service (its `healthCheckNodePort`), or the cluster's shared node check on kube-proxy's
//! `:10256/healthz`. Health checks have no fingerprint: a change is a full `update` (PUT).
//!
//! The shared check is deleted only when no backend service uses it any more: the delete is tried
//! and Compute's "in use" answer (synchronous or inside the operation) means "keep it".

use cloudlb_provider::ProviderError;
use google_cloud_compute_v1::model::{HTTPHealthCheck, HealthCheck, health_check};
use google_cloud_lro::Poller;

use crate::clients::Api;
use crate::errors::CallError;
use crate::links;
use crate::ownership::{self, Owner};
use crate::plan::Health;

pub const GET: &str = "compute.regionHealthChecks.get";
pub const INSERT: &str = "compute.regionHealthChecks.insert";
pub const UPDATE: &str = "compute.regionHealthChecks.update";
pub const DELETE: &str = "compute.regionHealthChecks.delete";

pub async fn get(api: &Api<'_>, name: &str) -> Result<Option<HealthCheck>, CallError> {
    let c = &api.clients.health_checks;
    api.read(GET, c.get().set_project(api.project()).set_region(api.region()).set_health_check(name).send()).await
}

pub fn link(api: &Api<'_>, name: &str) -> String {
    links::regional(api.config, "healthChecks", name)
}

fn body(h: &Health, description: String) -> HealthCheck {
    HealthCheck::new()
        .set_name(h.name.clone())
        .set_description(description)
        .set_type(health_check::Type::Http)
        .set_http_health_check(HTTPHealthCheck::new().set_port(i32::from(h.port)).set_request_path(h.path.clone()))
        .set_check_interval_sec(h.interval)
        .set_timeout_sec(h.timeout)
        .set_healthy_threshold(h.healthy)
        .set_unhealthy_threshold(h.unhealthy)
}

fn matches(cur: &HealthCheck, h: &Health) -> bool {
    let http = cur.http_health_check.as_ref();
    cur.r#type.as_ref().and_then(|t| t.name()) == Some("HTTP")
        && http.and_then(|x| x.port) == Some(i32::from(h.port))
        && http.and_then(|x| x.request_path.as_deref()).unwrap_or("/") == h.path
        && cur.check_interval_sec == Some(h.interval)
        && cur.timeout_sec == Some(h.timeout)
        && cur.healthy_threshold == Some(h.healthy)
        && cur.unhealthy_threshold == Some(h.unhealthy)
}

/// Find (ownership checked), create or correct the health check of `h`; its self-link.
pub async fn ensure(api: &Api<'_>, owner: Owner<'_>, h: &Health) -> Result<String, ProviderError> {
    let role = if h.shared { ownership::NODE_HEALTH_CHECK } else { ownership::HEALTH_CHECK };
    let description = ownership::description(owner, role);
    let c = &api.clients.health_checks;
    let mut _changing = None;
    let current = match get(api, &h.name).await? {
        None if h.shared => {
            _changing = Some(api.changing_shared.lock().await);
            get(api, &h.name).await?
        }
        current => current,
    };
    let cur = match current {
        Some(cur) => cur,
        None => {
            let req = c
                .insert()
                .set_project(api.project())
                .set_region(api.region())
                .set_body(body(h, description.clone()))
                .poller()
                .until_done();
            match api.operate(INSERT, req).await {
                Ok(_) => return Ok(link(api, &h.name)),
                // The cluster's shared check, made by another ensure since we read: converge that.
                Err(e) if e.is_already_exists() => get(api, &h.name).await?.ok_or(e)?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    ownership::check(GET, owner, &format!("health check {}", h.name), cur.description.as_deref())?;
    if !matches(&cur, h) {
        let req = c
            .update()
            .set_project(api.project())
            .set_region(api.region())
            .set_health_check(h.name.clone())
            .set_body(body(h, description))
            .poller()
            .until_done();
        api.operate(UPDATE, req).await?;
    }
    Ok(link(api, &h.name))
}

/// What a delete did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Gone,
    Absent,
    /// A backend service still uses it (only expected of the shared check).
    InUse,
}

pub async fn delete(api: &Api<'_>, name: &str) -> Result<Deleted, CallError> {
    let c = &api.clients.health_checks;
    let req =
        c.delete().set_project(api.project()).set_region(api.region()).set_health_check(name).poller().until_done();
    match api.operate(DELETE, req).await {
        Ok(_) => Ok(Deleted::Gone),
        Err(e) if e.is_not_found() => Ok(Deleted::Absent),
        Err(e) if e.is_in_use() => Ok(Deleted::InUse),
        Err(e) => Err(e),
    }
}
